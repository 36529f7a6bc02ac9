//! Property tests of the manifest editor over random valid tags, quoting styles, line
//! endings, final newlines and reference shapes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use proptest::prelude::*;
use tugboat::domain::image::{Repository, Tag};
use tugboat::manifest::{locate, plain_is_string, set_image};

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, biased towards version-like tags that
/// YAML would read as numbers.
fn tag() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}",
        "[0-9]{1,3}(\\.[0-9]{1,3}){0,2}",
        "v[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}(-rc[0-9])?",
        Just("1.10".to_owned()),
        Just("true".to_owned()),
        Just("1e3".to_owned()),
        "[A-Za-z0-9_][A-Za-z0-9_.-]{127}",
    ]
}

#[derive(Debug, Clone, Copy)]
enum Quote {
    Plain,
    Single,
    Double,
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Container,
    Helm,
    Kustomize,
    ArgoString,
}

fn quoted(q: Quote, v: &str) -> String {
    match q {
        Quote::Plain if plain_is_string(v) => v.to_owned(),
        Quote::Plain | Quote::Double => format!("\"{v}\""),
        Quote::Single => format!("'{v}'"),
    }
}

/// The string the reference scalar of `shape` holds for tag `t`.
fn value(shape: Shape, t: &str) -> String {
    match shape {
        Shape::Container => format!("r.io/app:{t}"),
        Shape::Helm | Shape::Kustomize => t.to_owned(),
        Shape::ArgoString => format!("app=r.io/app:{t}"),
    }
}

/// How a scalar written as `q` really reads: a plain one that would not read back as a
/// string is written double-quoted (by this template and by the editor alike).
fn effective(q: Quote, v: &str) -> Quote {
    match q {
        Quote::Plain if !plain_is_string(v) => Quote::Double,
        other => other,
    }
}

/// A document of the given shape: the `r.io/app` reference holds `t` written as `q`, the
/// `r.io/other` one holds `other` written as `oq`; lines joined by `eol`.
fn document(
    shape: Shape,
    q: Quote,
    t: &str,
    (oq, other): (Quote, &str),
    eol: &str,
    final_newline: bool,
) -> String {
    let v = value(shape, t);
    let lines: Vec<String> = match shape {
        Shape::Container => vec![
            "# a comment: image: r.io/app:0".into(),
            "spec:".into(),
            "  containers:".into(),
            format!("  - image: {}   # keep me", quoted(q, &v)),
            "  - image: r.io/other:1.0".into(),
        ],
        Shape::Helm => vec![
            "image:".into(),
            "  repository: r.io/app".into(),
            format!(
                "  tag: {} # {{\"$imagepolicy\": \"ns:app:tag\"}}",
                quoted(q, &v)
            ),
            "other:".into(),
            "  repository: r.io/other".into(),
            format!("  tag: {}", quoted(oq, other)),
        ],
        Shape::Kustomize => vec![
            "images:".into(),
            "- name: app".into(),
            "  newName: r.io/app".into(),
            format!("  newTag: {}", quoted(q, &v)),
            "- name: r.io/other".into(),
            format!("  newTag: {}", quoted(oq, other)),
        ],
        Shape::ArgoString => vec![
            "spec:".into(),
            "  source:".into(),
            "    kustomize:".into(),
            "      images:".into(),
            format!("      - {}", quoted(q, &v)),
        ],
    };
    let mut s = lines.join(eol);
    if final_newline {
        s.push_str(eol);
    }
    s
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Container),
        Just(Shape::Helm),
        Just(Shape::Kustomize),
        Just(Shape::ArgoString)
    ]
}

fn quote() -> impl Strategy<Value = Quote> {
    prop_oneof![Just(Quote::Plain), Just(Quote::Single), Just(Quote::Double)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn a_bump_writes_what_the_template_would_and_bumping_back_restores_every_byte(
        shape in shape(),
        q in quote(),
        from in tag(),
        to in tag(),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let other = (q, from.as_str());
        let src = document(shape, q, &from, other, eol, final_newline);
        let repo = Repository::parse("r.io/app").unwrap();
        let to_tag = Tag::parse(&to).unwrap();
        let edited = set_image(&src, &repo, &to_tag, None).unwrap();
        // The quoting rule: a quoted scalar keeps its quote; a plain one stays plain unless
        // the new value would not read back as a string. The other image is untouched.
        let style = effective(q, &value(shape, &from));
        let expected = document(shape, style, &to, other, eol, final_newline);
        prop_assert_eq!(&edited.text, &expected);
        let now = locate(&edited.text).unwrap();
        prop_assert!(now.iter().filter(|r| r.is_for(&repo)).all(|r| r.tag.as_ref() == Some(&to_tag)));
        prop_assert_eq!(edited.changes.is_empty(), from == to);

        // Back to the original tag: byte-identical, except that a plain tag which had to be
        // quoted on the way (`a` -> `"1.10"`) stays quoted on the way back (`"a"`).
        let back = set_image(&edited.text, &repo, &Tag::parse(&from).unwrap(), None).unwrap();
        let after_style = effective(style, &value(shape, &to));
        prop_assert_eq!(&back.text, &document(shape, after_style, &from, other, eol, final_newline));
        if matches!((style, after_style), (Quote::Plain, Quote::Plain) | (Quote::Single | Quote::Double, _)) {
            prop_assert_eq!(&back.text, &src);
        }
    }
}
