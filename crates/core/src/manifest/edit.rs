//! Changing exactly the bytes of the tag and digest scalars of image references.

use std::collections::HashSet;
use std::ops::Range;

use super::refs::{self, DigestSlot, Located, ManifestError, Reference, Scalar, Slots, TagSlot};
use crate::domain::image::{Digest, Repository, Tag};

/// One changed reference, for `FILE:LINE: old -> new` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub line: usize,
    pub old: String,
    pub new: String,
}

/// The result of an edit: the new text and what changed (empty when already there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    pub text: String,
    pub changes: Vec<Change>,
}

/// Point every reference of `repository` in `src` at `tag` (and `digest`, when given).
///
/// Only the bytes of the tag and digest scalars change (and, for a kustomize entry that has
/// no `newTag` yet, one `newTag:` line is added). Without a digest, an image string's old
/// digest (and a `tag@sha256:…` value's) is dropped, so it cannot keep pointing at the old
/// image; a separate digest key cannot be dropped without restructuring the file, so that
/// edit is refused.
pub fn set_image(
    src: &str,
    repository: &Repository,
    tag: &Tag,
    digest: Option<&Digest>,
) -> Result<Edited, ManifestError> {
    set_reference(src, repository, Some(tag), digest)
}

/// As [`set_image`], but `tag: None` keeps each reference's tag and changes only its digest
/// (which must then be given): `repo@sha256:old` stays digest-only.
pub fn set_reference(
    src: &str,
    repository: &Repository,
    tag: Option<&Tag>,
    digest: Option<&Digest>,
) -> Result<Edited, ManifestError> {
    let located = refs::analyse(src)?;
    let mine: Vec<&Reference> = located
        .refs
        .iter()
        .filter(|r| r.is_for(repository))
        .collect();
    if mine.is_empty() {
        let mut found: Vec<String> = located
            .refs
            .iter()
            .map(|r| r.repository.to_string())
            .collect();
        found.sort();
        found.dedup();
        return Err(ManifestError::NotFound {
            repository: repository.to_string(),
            found,
        });
    }
    if tag.is_none() && digest.is_none() {
        return Err(refuse(mine[0], "give a tag, a digest or both".into()));
    }
    let mut splices: Vec<Splice> = Vec::new();
    let mut changes = Vec::new();
    for r in &mine {
        let before = splices.len();
        plan(src, r, tag, digest, &mut splices)?;
        let unchanged = splices[before..]
            .iter()
            .all(|s| src.get(s.range.clone()) == Some(s.text.as_str()));
        if !unchanged {
            changes.push(Change {
                line: r.line,
                old: r.image(),
                new: new_image(r, tag, digest),
            });
        }
    }
    check_anchors(src, &located, &mine, &splices, repository)?;
    splices.sort_by_key(|s| (s.range.start, s.range.end));
    splices.dedup_by(|a, b| a.range == b.range && a.text == b.text);
    if let Some(w) = splices
        .windows(2)
        .find(|w| w[0].range.end > w[1].range.start || w[0].range == w[1].range)
    {
        let (line, column) = refs::Lines::new(src).at(w[1].range.start);
        return Err(ManifestError::Refused {
            line,
            column,
            message: "two references of this repository share these bytes but would be written differently; refusing an ambiguous edit".into(),
        });
    }
    let mut text = String::with_capacity(src.len() + 80);
    let mut at = 0;
    for s in &splices {
        text.push_str(&src[at..s.range.start]);
        text.push_str(&s.text);
        at = s.range.end;
    }
    text.push_str(&src[at..]);
    Ok(Edited { text, changes })
}

/// Replace `range` with `text`; `site` is the use being written (differs for an alias).
struct Splice {
    range: Range<usize>,
    site: Option<usize>,
    text: String,
}

impl Splice {
    fn scalar(src: &str, s: &Scalar, value: &str) -> Self {
        Self {
            range: s.range.clone(),
            site: Some(s.site),
            text: render(&src[s.range.clone()], value),
        }
    }
}

fn refuse(r: &Reference, message: String) -> ManifestError {
    ManifestError::Refused {
        line: r.line,
        column: r.column,
        message,
    }
}

fn plan(
    src: &str,
    r: &Reference,
    tag: Option<&Tag>,
    digest: Option<&Digest>,
    out: &mut Vec<Splice>,
) -> Result<(), ManifestError> {
    match &r.slots {
        Slots::Whole { scalar, prefix } => {
            let value = whole(prefix, tag.or(r.tag.as_ref()), digest);
            out.push(Splice::scalar(src, scalar, &value));
        }
        Slots::Keys {
            tag: tag_slot,
            digest: digest_slot,
        } => {
            let digest_in_tag = matches!(
                tag_slot,
                TagSlot::Scalar {
                    with_digest: true,
                    ..
                }
            );
            match (tag_slot, tag) {
                (TagSlot::Scalar { scalar, .. }, Some(t)) => {
                    let mut value = t.to_string();
                    if let (true, Some(d)) = (digest_in_tag, digest) {
                        value.push('@');
                        value.push_str(d.as_str());
                    }
                    out.push(Splice::scalar(src, scalar, &value));
                }
                (TagSlot::Scalar { scalar, .. }, None) if digest_in_tag => {
                    let (Some(old), Some(d)) = (&r.tag, digest) else {
                        return Err(refuse(
                            r,
                            "the tag value holds a digest but no tag to keep".into(),
                        ));
                    };
                    out.push(Splice::scalar(src, scalar, &format!("{old}@{d}")));
                }
                (TagSlot::Insert(ins), Some(t)) => out.push(Splice {
                    range: ins.at..ins.at,
                    site: None,
                    text: format!(
                        "{}{:indent$}{}: {}",
                        ins.eol,
                        "",
                        ins.key,
                        render("", t.as_str()),
                        indent = ins.indent
                    ),
                }),
                (TagSlot::Absent(why), Some(_)) if digest_slot.is_none() || digest.is_none() => {
                    return Err(refuse(
                        r,
                        format!("'{}' has no tag to change: {why}", r.repository),
                    ));
                }
                _ => {}
            }
            plan_digest(
                src,
                r,
                digest_slot.as_ref(),
                tag,
                digest,
                digest_in_tag,
                out,
            )?;
        }
    }
    Ok(())
}

/// A whole reference's new text: `prefix`, then `:tag` and `@digest` when there are.
fn whole(prefix: &str, tag: Option<&Tag>, digest: Option<&Digest>) -> String {
    let mut value = prefix.to_owned();
    if let Some(t) = tag {
        value.push(':');
        value.push_str(t.as_str());
    }
    if let Some(d) = digest {
        value.push('@');
        value.push_str(d.as_str());
    }
    value
}

/// The edit of a reference's separate digest key (`slot`), if any: the new digest written
/// (hex only when the key holds only hex), or why it cannot be.
fn plan_digest(
    src: &str,
    r: &Reference,
    slot: Option<&DigestSlot>,
    tag: Option<&Tag>,
    digest: Option<&Digest>,
    digest_in_tag: bool,
    out: &mut Vec<Splice>,
) -> Result<(), ManifestError> {
    match (slot, digest) {
        (Some(ds), Some(d)) => {
            let value = if ds.hex_only {
                d.as_str().split_once(':').map_or(d.as_str(), |(_, h)| h)
            } else {
                d.as_str()
            };
            out.push(Splice::scalar(src, &ds.scalar, value));
        }
        (Some(_), None) if r.digest.is_some() && !digest_in_tag => {
            return Err(refuse(
                r,
                format!(
                    "'{}' is pinned by a digest key; give the new digest too (--digest sha256:…)",
                    r.repository
                ),
            ));
        }
        (None, Some(_)) if tag.is_none() && !digest_in_tag => {
            return Err(refuse(
                r,
                format!("'{}' has no digest key to write a digest to", r.repository),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// The reference as it reads after the edit.
fn new_image(r: &Reference, tag: Option<&Tag>, digest: Option<&Digest>) -> String {
    let mut s = r.repository.to_string();
    if let Some(t) = tag.or(r.tag.as_ref()) {
        s.push(':');
        s.push_str(t.as_str());
    }
    let keeps_digest = match &r.slots {
        Slots::Whole { .. } => true,
        Slots::Keys {
            tag: TagSlot::Scalar {
                with_digest: true, ..
            },
            ..
        } => true,
        Slots::Keys { digest: d, .. } => d.is_some(),
    };
    if let Some(d) = digest.filter(|_| keeps_digest) {
        s.push('@');
        s.push_str(d.as_str());
    }
    s
}

/// An anchored scalar may be written only when every use of it is a reference being bumped.
fn check_anchors(
    src: &str,
    located: &Located,
    mine: &[&Reference],
    splices: &[Splice],
    repository: &Repository,
) -> Result<(), ManifestError> {
    if located.anchors.is_empty() {
        return Ok(());
    }
    let sites: HashSet<usize> = splices.iter().filter_map(|s| s.site).collect();
    for s in splices {
        let Some(uses) = located.anchors.get(&s.range.start) else {
            continue;
        };
        let others: Vec<&refs::Use> = uses.iter().filter(|u| !sites.contains(&u.site)).collect();
        if others.is_empty() {
            continue;
        }
        let lines = refs::Lines::new(src);
        let listed: Vec<String> = others
            .iter()
            .map(|u| format!("line {} ({})", lines.at(u.site).0, u.path))
            .collect();
        let r = mine
            .iter()
            .find(|r| s.site.is_some_and(|site| lines.at(site).0 == r.line))
            .unwrap_or(&mine[0]);
        let anchor = anchor_name(src, s.range.start)
            .map_or_else(|| "an anchor".to_owned(), |n| format!("anchor &{n}"));
        return Err(refuse(
            r,
            format!(
                "the value is shared through {anchor} (line {}), which is also used by {}; those are not references of '{repository}', so changing it would change them too. Give this image its own value first",
                lines.at(s.range.start).0,
                listed.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The name of the anchor written just before `value_start` (`&name value`).
fn anchor_name(src: &str, value_start: usize) -> Option<&str> {
    let before = src[..value_start].trim_end_matches([' ', '\t']);
    let start = before
        .rfind(|c: char| c.is_whitespace())
        .map_or(0, |i| i + 1);
    before[start..].strip_prefix('&')
}

/// Write `value` in the quoting style of `old_raw`. A plain scalar that YAML would not read
/// back as a string (`1.10`, `true`, `null`, `1e3`, …) is double-quoted.
pub(super) fn render(old_raw: &str, value: &str) -> String {
    match old_raw.as_bytes().first() {
        Some(b'"') => format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")),
        Some(b'\'') => format!("'{}'", value.replace('\'', "''")),
        _ if plain_is_string(value) => value.to_owned(),
        _ => format!("\"{value}\""),
    }
}

/// Whether a plain scalar with this text is read as a string by YAML 1.1 and 1.2 readers.
pub fn plain_is_string(v: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~", ".inf", "-.inf", "+.inf",
        ".nan",
    ];
    if v.is_empty() || WORDS.iter().any(|w| w.eq_ignore_ascii_case(v)) {
        return false;
    }
    !reads_as_number(v)
}

/// Integers, floats, exponents, hex/octal/binary and sexagesimal numbers, as YAML 1.1/1.2 resolve them.
fn reads_as_number(v: &str) -> bool {
    use std::sync::OnceLock;
    static RE: OnceLock<Option<regex::Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(
            r"^(?:[-+]?(?:[0-9][0-9_]*)?\.?[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?0x[0-9a-fA-F_]+|[-+]?0o?[0-7_]+|[-+]?0b[01_]+|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?)$",
        )
        .ok()
    })
    .as_ref()
    .is_none_or(|re| re.is_match(v) && v.bytes().any(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::locate;

    fn repo(s: &str) -> Repository {
        Repository::parse(s).unwrap()
    }
    fn tag(s: &str) -> Tag {
        Tag::parse(s).unwrap()
    }
    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }
    fn bump(src: &str, r: &str, t: &str) -> String {
        set_image(src, &repo(r), &tag(t), None).unwrap().text
    }

    #[test]
    fn a_deployment_keeps_every_other_byte() {
        let src = "apiVersion: apps/v1\r\nkind: Deployment # keep\r\nspec:\r\n  template:\r\n    spec:\r\n      initContainers:\r\n        - image: \"reg.io/app:1.0\"   # init\r\n      containers:\r\n        - name: app\r\n          image: reg.io/app:1.0\r\n        - image: reg.io/sidecar:1.0";
        let e = set_image(src, &repo("reg.io/app"), &tag("1.1"), None).unwrap();
        assert_eq!(e.text, src.replace("reg.io/app:1.0", "reg.io/app:1.1"));
        assert_eq!(e.changes.len(), 2);
        assert_eq!(
            e.changes[0],
            Change {
                line: 7,
                old: "reg.io/app:1.0".into(),
                new: "reg.io/app:1.1".into()
            }
        );
    }

    #[test]
    fn a_byte_order_mark_stays() {
        let src = "\u{feff}image: reg.io/app:1.0\n";
        assert_eq!(
            bump(src, "reg.io/app", "2.0"),
            "\u{feff}image: reg.io/app:2.0\n"
        );
    }

    #[test]
    fn a_plain_tag_that_would_read_as_a_number_is_quoted() {
        let src =
            "image:\n  repository: reg.io/app\n  tag: 1.9 # {\"$imagepolicy\": \"flux:app:tag\"}\n";
        let e = bump(src, "reg.io/app", "1.10");
        assert_eq!(
            e,
            "image:\n  repository: reg.io/app\n  tag: \"1.10\" # {\"$imagepolicy\": \"flux:app:tag\"}\n"
        );
        let back = bump(&e, "reg.io/app", "v2");
        assert!(
            back.contains("tag: \"v2\" #"),
            "quoted stays quoted: {back}"
        );
        for word in [
            "2", "true", "null", "1e3", "0x1F", "1_000", "0o17", "yes", "NO",
        ] {
            let e = bump("image: {repository: r.io/a, tag: v1}\n", "r.io/a", word);
            assert!(e.contains(&format!("tag: \"{word}\"")), "{word}: {e}");
        }
        let single = bump("image: {repository: r.io/a, tag: 'v1'}\n", "r.io/a", "1.10");
        assert!(single.contains("tag: '1.10'"), "{single}");
    }

    #[test]
    fn kustomize_entries_match_by_name_or_new_name() {
        let src = "images:\n- name: app\n  newName: reg.io/team/app\n  newTag: '1.0'\n- name: other\n  newTag: 2.0.0\n";
        assert!(bump(src, "reg.io/team/app", "1.1").contains("newTag: '1.1'\n"));
        assert!(bump(src, "app", "1.2").contains("newTag: '1.2'\n"));
    }

    #[test]
    fn a_kustomize_entry_without_new_tag_gets_one_line_indented_like_its_keys() {
        let src = "images:\r\n  - name: busybox\r\n    newName: ghcr.io/c/busybox # mirror\r\n  - name: x\r\n    newTag: v1\r\n";
        assert_eq!(
            bump(src, "ghcr.io/c/busybox", "1.37"),
            "images:\r\n  - name: busybox\r\n    newName: ghcr.io/c/busybox # mirror\r\n    newTag: \"1.37\"\r\n  - name: x\r\n    newTag: v1\r\n"
        );
        let no_eol = "images:\n- name: b\n  newName: r.io/b";
        assert_eq!(
            bump(no_eol, "r.io/b", "v2"),
            "images:\n- name: b\n  newName: r.io/b\n  newTag: v2"
        );
        let flow = "images:\n- {name: b, newName: r.io/b}\n";
        let err = set_image(flow, &repo("r.io/b"), &tag("v2"), None).unwrap_err();
        assert!(err.to_string().contains("add `newTag:` by hand"), "{err}");
    }

    #[test]
    fn a_kustomize_entry_pinned_by_digest_only_takes_a_new_digest() {
        let src = format!("images:\n- name: r.io/app\n  digest: {}\n", digest('a'));
        let e = set_image(&src, &repo("r.io/app"), &tag("v2"), Some(&digest('b'))).unwrap();
        assert_eq!(
            e.text,
            src.replace(&digest('a').to_string(), digest('b').as_str())
        );
        let err = set_image(&src, &repo("r.io/app"), &tag("v2"), None).unwrap_err();
        assert!(err.to_string().contains("give the new digest"), "{err}");
    }

    #[test]
    fn a_registry_with_a_port_is_not_a_tag() {
        assert_eq!(
            bump(
                "image: localhost:5000/app:1.0\n",
                "localhost:5000/app",
                "2.0"
            ),
            "image: localhost:5000/app:2.0\n"
        );
    }

    #[test]
    fn a_missing_repository_lists_what_the_file_has() {
        let e = set_image(
            "a:\n  image: x.io/one:1\nb:\n  image: x.io/two:2\n",
            &repo("x.io/three"),
            &tag("3"),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "no image reference for repository 'x.io/three'; the file references: x.io/one, x.io/two"
        );
    }

    #[test]
    fn a_digest_is_added_to_an_image_string_and_dropped_without_one() {
        let d = digest('a');
        let src = "image: x.io/app:1.0\n";
        let pinned = set_image(src, &repo("x.io/app"), &tag("1.1"), Some(&d)).unwrap();
        assert_eq!(pinned.text, format!("image: x.io/app:1.1@{d}\n"));
        assert_eq!(pinned.changes[0].new, format!("x.io/app:1.1@{d}"));
        let unpinned = set_image(&pinned.text, &repo("x.io/app"), &tag("1.2"), None).unwrap();
        assert_eq!(unpinned.text, "image: x.io/app:1.2\n");
        let digest_only = format!("image: x.io/app@{d}\n");
        let tagged = set_image(
            &digest_only,
            &repo("x.io/app"),
            &tag("3"),
            Some(&digest('b')),
        );
        assert_eq!(
            tagged.unwrap().text,
            format!("image: x.io/app:3@{}\n", digest('b'))
        );
        let kept = set_reference(&digest_only, &repo("x.io/app"), None, Some(&digest('b')));
        assert_eq!(
            kept.unwrap().text,
            format!("image: x.io/app@{}\n", digest('b'))
        );
    }

    #[test]
    fn helm_digest_keys_are_written_and_never_left_stale() {
        let src =
            "image:\n  registry: docker.io\n  repository: org/app\n  tag: 1.0\n  digest: \"\"\n";
        let plain = bump(src, "docker.io/org/app", "1.1");
        assert!(plain.contains("tag: \"1.1\"\n  digest: \"\""), "{plain}");
        let pinned = set_image(
            src,
            &repo("docker.io/org/app"),
            &tag("1.2"),
            Some(&digest('c')),
        )
        .unwrap();
        assert!(
            pinned
                .text
                .contains(&format!("digest: \"{}\"", digest('c')))
        );
        let err =
            set_image(&pinned.text, &repo("docker.io/org/app"), &tag("1.3"), None).unwrap_err();
        assert!(err.to_string().contains("pinned by a digest key"), "{err}");
        let sha = "image:\n  repository: r.io/k\n  tag: v1\n  sha: \"\"\n";
        let e = set_image(sha, &repo("r.io/k"), &tag("v2"), Some(&digest('d'))).unwrap();
        assert!(
            e.text.contains(&format!("sha: \"{}\"", "d".repeat(64))),
            "{}",
            e.text
        );
    }

    #[test]
    fn a_tag_value_holding_a_digest_keeps_that_form() {
        let src = format!(
            "image:\n  repository: r.io/db\n  tag: 26.6.0@{}\n",
            digest('a')
        );
        let refs = locate(&src).unwrap();
        assert_eq!(refs[0].tag.as_ref().map(Tag::as_str), Some("26.6.0"));
        assert_eq!(refs[0].digest, Some(digest('a')));
        let e = set_image(&src, &repo("r.io/db"), &tag("26.7.0"), Some(&digest('b'))).unwrap();
        assert!(e.text.ends_with(&format!("tag: 26.7.0@{}\n", digest('b'))));
        let dropped = bump(&src, "r.io/db", "27.0.0");
        assert!(dropped.ends_with("tag: 27.0.0\n"), "{dropped}");
    }

    #[test]
    fn a_tag_value_with_a_broken_digest_is_not_half_read_as_a_tag() {
        // Found by the manifest_bytes fuzz target: `0.0.0@` was read as tag 0.0.0, and an
        // edit then dropped the stray `@` unannounced.
        for broken in ["0.0.0@", "0.0.0@sha256:abc"] {
            let src = format!("image:\n  repository: r.io/db\n  tag: {broken}\n");
            let refs = locate(&src).unwrap();
            assert_eq!(
                (refs[0].tag.as_ref(), refs[0].digest.as_ref()),
                (None, None),
                "{broken}"
            );
        }
    }

    #[test]
    fn an_image_line_inside_a_block_scalar_is_not_touched() {
        let src = "data:\n  script: |\n    image: x.io/app:1.0\nimage: x.io/app:1.0\n";
        assert_eq!(
            bump(src, "x.io/app", "2.0"),
            "data:\n  script: |\n    image: x.io/app:1.0\nimage: x.io/app:2.0\n"
        );
    }

    #[test]
    fn setting_the_tag_that_is_already_there_changes_nothing() {
        let src = "image: x.io/app:1.0\n";
        let e = set_image(src, &repo("x.io/app"), &tag("1.0"), None).unwrap();
        assert_eq!(e.text, src);
        assert!(e.changes.is_empty());
    }

    #[test]
    fn invalid_yaml_is_an_error_with_line_and_column() {
        let err = set_image("a: b\nc: [\n", &repo("x.io/app"), &tag("1"), None).unwrap_err();
        let ManifestError::Parse { line, column, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(*line >= 2 && *column >= 1, "{err}");
        assert!(
            err.to_string().starts_with("not valid YAML at line"),
            "{err}"
        );
    }

    #[test]
    fn argo_cd_kustomize_image_strings_keep_their_name_prefix() {
        let src = "spec:\n  source:\n    kustomize:\n      images:\n      - app=reg.io/app:1.0\n";
        assert!(bump(src, "reg.io/app", "1.5").ends_with("- app=reg.io/app:1.5\n"));
    }

    #[test]
    fn argo_cd_helm_parameters_pair_repository_and_tag_by_prefix() {
        let src = "helm:\n  parameters:\n  - name: image.repository\n    value: r.io/admin\n    forcestring: true\n  - name: image.tag\n    value: \"0.2\"\n    forcestring: true\n  - name: sidecar.image.name\n    value: r.io/side\n  - name: sidecar.image.tag\n    value: v1\n";
        let e = bump(src, "r.io/admin", "0.3");
        assert_eq!(e, src.replace("\"0.2\"", "\"0.3\""));
        let side = bump(src, "r.io/side", "v2");
        assert_eq!(side, src.replace("value: v1", "value: v2"));
        let refs = locate(src).unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].path, "helm.parameters[1].value");
    }

    #[test]
    fn an_argo_cd_helm_values_block_is_edited_in_place() {
        let src = "spec:\n  source:\n    helm:\n      values: |\n        master:\n          image: r.io/locust:2.32.4 # pinned\n\n        worker:\n          image: r.io/locust:2.32.4\n        other: |\n          image: r.io/locust:1\n    path: x\n";
        let e = set_image(src, &repo("r.io/locust"), &tag("2.33.0"), None).unwrap();
        assert_eq!(
            e.text,
            src.replacen("r.io/locust:2.32.4", "r.io/locust:2.33.0", 2)
        );
        assert_eq!(e.changes.iter().map(|c| c.line).collect::<Vec<_>>(), [6, 9]);
        let refs = locate(src).unwrap();
        assert_eq!(refs[0].path, "spec.source.helm.values|master.image");
        assert_eq!((refs[0].line, refs[0].column), (6, 18));
    }

    #[test]
    fn a_helm_values_block_with_an_explicit_indentation_indicator_is_not_read() {
        let src = "helm:\n  values: |2\n      image: r.io/a:1\n";
        assert!(locate(src).unwrap().is_empty());
    }

    #[test]
    fn helm_maps_accept_repo_and_image_as_the_repository_key() {
        let src = "a:\n  image:\n    repo: r.io/a\n    tag: v1\nb:\n  image:\n    registry: ghcr.io\n    image: org/b\n    tag: latest\n";
        let refs = locate(src).unwrap();
        let names: Vec<String> = refs.iter().map(Reference::image).collect();
        assert_eq!(names, ["r.io/a:v1", "ghcr.io/org/b:latest"]);
    }

    #[test]
    fn an_anchor_used_only_by_this_repository_is_edited_once() {
        let src = "a:\n  image:\n    repository: r.io/t\n    tag: &t v1 # shared\nb:\n  image:\n    repository: r.io/t\n    tag: *t\n";
        let e = set_image(src, &repo("r.io/t"), &tag("v2"), None).unwrap();
        assert_eq!(e.text, src.replace("&t v1", "&t v2"));
        assert_eq!(e.changes.len(), 2);
    }

    #[test]
    fn an_anchor_shared_with_anything_else_is_refused_naming_the_other_users() {
        let src = "labels:\n  version: &v v1\nimage:\n  repository: r.io/t\n  tag: *v\nother:\n  image:\n    repository: r.io/u\n    tag: *v\n";
        let err = set_image(src, &repo("r.io/t"), &tag("v2"), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("line 5, column 8:"), "{msg}");
        assert!(msg.contains("anchor &v (line 2)"), "{msg}");
        assert!(msg.contains("line 2 (labels.version)"), "{msg}");
        assert!(msg.contains("line 9 (other.image.tag)"), "{msg}");
    }
}
