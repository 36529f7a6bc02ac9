//! Finding image references in YAML manifests and changing exactly their bytes.
//!
//! Recognised shapes (anywhere in a document, so Flux HelmRelease `spec.values`, Argo CD
//! `helm.valuesObject` and umbrella charts work too):
//! - `image: repo[:tag][@digest]` — containers, init/ephemeral containers, Helm string values;
//! - a mapping with `repository` and `tag` (optionally `registry`, `digest`) — Helm values;
//! - `images:` entries with `name` / `newName` / `newTag` / `digest` — kustomize;
//! - `images:` string entries `name=newName:tag` or `name:tag` — Argo CD `kustomize.images`.
//!
//! A reference is matched by its repository, never by its tag value.

use std::ops::Range;

use thiserror::Error;

use super::tree::{self, Node, SNode};
use crate::domain::image::{Digest, ImageRef, Repository, Tag};

/// Which shape a reference was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// `image: repo:tag` as one string.
    ImageString,
    /// Helm-style `repository` + `tag` keys.
    HelmValues,
    /// A kustomize `images:` entry.
    Kustomize,
    /// An Argo CD `kustomize.images` string.
    ArgoKustomize,
}

/// One image reference in a file.
#[derive(Debug, Clone)]
pub struct Reference {
    pub kind: RefKind,
    /// 1-based line of the scalar holding the tag (or the whole reference).
    pub line: usize,
    /// The effective repository (kustomize: `newName`, else `name`).
    pub repository: Repository,
    /// For kustomize: the `name` the entry matches in the resources, when it differs.
    pub name: Option<String>,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
    slots: Slots,
}

#[derive(Debug, Clone)]
enum Slots {
    /// The whole reference is one scalar; `prefix` (e.g. `name=repo`) is kept verbatim.
    Whole { scalar: Scalar, prefix: String },
    /// Separate tag and digest scalars.
    Keys {
        tag: Option<Scalar>,
        digest: Option<Scalar>,
    },
}

#[derive(Debug, Clone)]
struct Scalar {
    range: Range<usize>,
    alias: bool,
}

/// A problem with a manifest or with the edit asked of it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestError {
    #[error("not valid YAML: {0}")]
    Parse(String),
    #[error(
        "no image reference for repository '{repository}'; the file references: {}",
        list_or_none(found)
    )]
    NotFound {
        repository: String,
        found: Vec<String>,
    },
    #[error("line {line}: {message}")]
    Refused { line: usize, message: String },
}

fn list_or_none(found: &[String]) -> String {
    if found.is_empty() {
        "(no images)".to_owned()
    } else {
        found.join(", ")
    }
}

impl Reference {
    /// `repo[:tag][@digest]`, as a person reads it.
    pub fn image(&self) -> String {
        let mut s = self.repository.to_string();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t.as_str());
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }

    /// Whether this reference is one of `repository`.
    pub fn is_for(&self, repository: &Repository) -> bool {
        self.repository == *repository || self.name.as_deref() == Some(repository.as_str())
    }
}

/// Every image reference in `src` (all documents), in file order.
pub fn locate(src: &str) -> Result<Vec<Reference>, ManifestError> {
    let docs =
        tree::parse_documents(src).map_err(|e| ManifestError::Parse(first_line(&e.to_string())))?;
    let mut out = Vec::new();
    for d in &docs {
        walk(src, d, &mut out);
    }
    out.sort_by_key(|r| r.line);
    Ok(out)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_owned()
}

fn walk(src: &str, n: &SNode, out: &mut Vec<Reference>) {
    match &n.value {
        Node::Map(entries) => {
            if let Some(r) = helm_values(src, &n.value) {
                out.push(r);
            }
            for (k, v) in entries {
                match (k.value.as_str(), &v.value) {
                    (Some("image"), Node::Scalar(_)) => out.extend(image_string(src, v)),
                    (Some("images"), Node::Seq(items)) => {
                        for item in items {
                            match &item.value {
                                Node::Scalar(_) => out.extend(argo_kustomize_string(src, item)),
                                Node::Map(_) => match kustomize_entry(src, &item.value) {
                                    Some(r) => out.push(r),
                                    None => walk(src, item, out),
                                },
                                _ => walk(src, item, out),
                            }
                        }
                    }
                    _ => walk(src, v, out),
                }
            }
        }
        Node::Seq(items) => items.iter().for_each(|i| walk(src, i, out)),
        Node::Scalar(_) | Node::Null => {}
    }
}

/// A scalar's span and the string it holds, read from its raw text so that `1.10` stays `1.10`.
fn scalar(src: &str, n: &SNode) -> Option<(Scalar, String)> {
    let range = tree::byte_range(n)?;
    let raw = src.get(range.clone())?;
    let value = match raw.as_bytes().first()? {
        b'"' | b'\'' => n.value.as_str()?.to_owned(),
        b'|' | b'>' | b'*' | b'&' | b'!' => return None,
        _ if matches!(n.value, Node::Scalar(_)) => raw.trim_end().to_owned(),
        _ => return None,
    };
    Some((
        Scalar {
            range,
            alias: tree::is_alias(n),
        },
        value,
    ))
}

fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn image_string(src: &str, n: &SNode) -> Option<Reference> {
    let (s, value) = scalar(src, n)?;
    let (repository, tag, digest) = ImageRef::split_loose(&value)?;
    Some(Reference {
        kind: RefKind::ImageString,
        line: line_of(src, s.range.start),
        name: None,
        slots: Slots::Whole {
            prefix: repository.to_string(),
            scalar: s,
        },
        repository,
        tag,
        digest,
    })
}

fn argo_kustomize_string(src: &str, n: &SNode) -> Option<Reference> {
    let (s, value) = scalar(src, n)?;
    let (name, image) = match value.split_once('=') {
        Some((name, image)) => (Some(name.to_owned()), image),
        None => (None, value.as_str()),
    };
    let (repository, tag, digest) = ImageRef::split_loose(image)?;
    let prefix = match &name {
        Some(n) => format!("{n}={repository}"),
        None => repository.to_string(),
    };
    Some(Reference {
        kind: RefKind::ArgoKustomize,
        line: line_of(src, s.range.start),
        name,
        slots: Slots::Whole { scalar: s, prefix },
        repository,
        tag,
        digest,
    })
}

fn key_scalar(src: &str, map: &Node, key: &str) -> Option<(Scalar, String)> {
    let n = map.get(key)?;
    match n.value {
        Node::Scalar(_) => scalar(src, n),
        _ => None,
    }
}

fn kustomize_entry(src: &str, map: &Node) -> Option<Reference> {
    let (_, name) = key_scalar(src, map, "name")?;
    let new_name = key_scalar(src, map, "newName").map(|(_, v)| v);
    let tag = key_scalar(src, map, "newTag");
    let digest = key_scalar(src, map, "digest");
    if new_name.is_none() && tag.is_none() && digest.is_none() {
        return None;
    }
    let repository = Repository::parse(new_name.as_deref().unwrap_or(&name)).ok()?;
    let line = tag
        .as_ref()
        .or(digest.as_ref())
        .map_or(0, |(s, _)| line_of(src, s.range.start));
    Some(Reference {
        kind: RefKind::Kustomize,
        line,
        name: (new_name.is_some()).then_some(name),
        tag: tag.as_ref().and_then(|(_, v)| Tag::parse(v).ok()),
        digest: digest.as_ref().and_then(|(_, v)| Digest::parse(v).ok()),
        slots: Slots::Keys {
            tag: tag.map(|(s, _)| s),
            digest: digest.map(|(s, _)| s),
        },
        repository,
    })
}

fn helm_values(src: &str, map: &Node) -> Option<Reference> {
    let (_, repo) = key_scalar(src, map, "repository")?;
    let tag = key_scalar(src, map, "tag")?;
    let registry = key_scalar(src, map, "registry").map(|(_, v)| v);
    let full = match registry.as_deref() {
        Some(r) if !r.is_empty() => format!("{}/{}", r.trim_end_matches('/'), repo),
        _ => repo,
    };
    let repository = Repository::parse(&full).ok()?;
    let digest = key_scalar(src, map, "digest");
    Some(Reference {
        kind: RefKind::HelmValues,
        line: line_of(src, tag.0.range.start),
        name: None,
        tag: Tag::parse(&tag.1).ok(),
        digest: digest.as_ref().and_then(|(_, v)| Digest::parse(v).ok()),
        slots: Slots::Keys {
            tag: Some(tag.0),
            digest: digest.map(|(s, _)| s),
        },
        repository,
    })
}

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
/// Only the bytes of the tag and digest scalars change. Without a digest, an image string's
/// old digest is dropped (so it cannot keep pointing at the old image); a separate digest key
/// cannot be dropped without restructuring the file, so that edit is refused.
pub fn set_image(
    src: &str,
    repository: &Repository,
    tag: &Tag,
    digest: Option<&Digest>,
) -> Result<Edited, ManifestError> {
    let refs = locate(src)?;
    let mine: Vec<&Reference> = refs.iter().filter(|r| r.is_for(repository)).collect();
    if mine.is_empty() {
        let mut found: Vec<String> = refs.iter().map(|r| r.repository.to_string()).collect();
        found.sort();
        found.dedup();
        return Err(ManifestError::NotFound {
            repository: repository.to_string(),
            found,
        });
    }
    let mut splices: Vec<(Range<usize>, String)> = Vec::new();
    let mut changes = Vec::new();
    for r in mine {
        let refuse = |message: String| ManifestError::Refused {
            line: r.line,
            message,
        };
        let before = splices.len();
        match &r.slots {
            Slots::Whole { scalar, prefix } => {
                if scalar.alias {
                    return Err(refuse(
                        "the reference is reached through an alias; edit its anchor instead".into(),
                    ));
                }
                let mut value = format!("{prefix}:{tag}");
                if let Some(d) = digest {
                    value.push('@');
                    value.push_str(d.as_str());
                }
                splices.push((
                    scalar.range.clone(),
                    render(&src[scalar.range.clone()], &value),
                ));
            }
            Slots::Keys {
                tag: tag_slot,
                digest: digest_slot,
            } => {
                let Some(ts) = tag_slot else {
                    return Err(refuse(format!(
                        "the kustomize entry for '{}' has no newTag to change; add `newTag:` to it first",
                        r.repository
                    )));
                };
                for s in [Some(ts), digest_slot.as_ref()].into_iter().flatten() {
                    if s.alias {
                        return Err(refuse(
                            "the tag is reached through an alias; edit its anchor instead".into(),
                        ));
                    }
                }
                splices.push((
                    ts.range.clone(),
                    render(&src[ts.range.clone()], tag.as_str()),
                ));
                match (digest_slot, digest) {
                    (Some(ds), Some(d)) => {
                        splices.push((ds.range.clone(), render(&src[ds.range.clone()], d.as_str())))
                    }
                    (Some(_), None) if r.digest.is_some() => {
                        return Err(refuse(format!(
                            "'{}' is pinned by a digest key; give the new digest too (--digest sha256:…)",
                            r.repository
                        )));
                    }
                    _ => {}
                }
            }
        }
        let new_ref = {
            let mut s = format!("{}:{tag}", r.repository);
            if let Some(d) =
                digest.filter(|_| matches!(r.slots, Slots::Whole { .. }) || r.digest.is_some())
            {
                s.push('@');
                s.push_str(d.as_str());
            }
            s
        };
        let unchanged = splices[before..]
            .iter()
            .all(|(range, new)| &src[range.clone()] == new);
        if !unchanged {
            changes.push(Change {
                line: r.line,
                old: r.image(),
                new: new_ref,
            });
        }
    }
    splices.sort_by_key(|(r, _)| r.start);
    splices.dedup_by(|a, b| a.0 == b.0);
    if splices.windows(2).any(|w| w[0].0.end > w[1].0.start) {
        return Err(ManifestError::Refused {
            line: 0,
            message: "two references overlap in the source; refusing an ambiguous edit".into(),
        });
    }
    let mut text = String::with_capacity(src.len() + 80);
    let mut at = 0;
    for (range, new) in &splices {
        text.push_str(&src[at..range.start]);
        text.push_str(new);
        at = range.end;
    }
    text.push_str(&src[at..]);
    Ok(Edited { text, changes })
}

/// Write `value` in the quoting style of `old_raw`. A plain scalar that YAML would not read
/// back as a string (`1.10`, `true`, `null`, `1e3`, …) is double-quoted.
fn render(old_raw: &str, value: &str) -> String {
    match old_raw.as_bytes().first() {
        Some(b'"') => format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")),
        Some(b'\'') => format!("'{}'", value.replace('\'', "''")),
        _ if plain_is_string(value) => value.to_owned(),
        _ => format!("\"{value}\""),
    }
}

/// Whether a plain scalar with this text is read as a string by YAML 1.1 and 1.2 readers.
fn plain_is_string(v: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~", ".inf", "-.inf", "+.inf",
        ".nan",
    ];
    if v.is_empty() || WORDS.iter().any(|w| w.eq_ignore_ascii_case(v)) {
        return false;
    }
    let numeric = regex_lite_number(v);
    !numeric
}

/// Integers, floats, exponents, hex/octal/binary and sexagesimal numbers, as YAML 1.1/1.2 resolve them.
fn regex_lite_number(v: &str) -> bool {
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

    fn repo(s: &str) -> Repository {
        Repository::parse(s).unwrap()
    }
    fn tag(s: &str) -> Tag {
        Tag::parse(s).unwrap()
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
    fn a_plain_tag_that_would_read_as_a_number_is_quoted() {
        let src =
            "image:\n  repository: reg.io/app\n  tag: 1.9 # {\"$imagepolicy\": \"flux:app:tag\"}\n";
        let e = set_image(src, &repo("reg.io/app"), &tag("1.10"), None).unwrap();
        assert_eq!(
            e.text,
            "image:\n  repository: reg.io/app\n  tag: \"1.10\" # {\"$imagepolicy\": \"flux:app:tag\"}\n"
        );
        let back = set_image(&e.text, &repo("reg.io/app"), &tag("v2"), None).unwrap();
        assert!(
            back.text.contains("tag: \"v2\" #"),
            "quoted stays quoted: {}",
            back.text
        );
    }

    #[test]
    fn kustomize_entries_match_by_name_or_new_name() {
        let src = "images:\n- name: app\n  newName: reg.io/team/app\n  newTag: '1.0'\n- name: other\n  newTag: 2.0.0\n";
        let by_new = set_image(src, &repo("reg.io/team/app"), &tag("1.1"), None).unwrap();
        assert!(by_new.text.contains("newTag: '1.1'\n"));
        let by_name = set_image(src, &repo("app"), &tag("1.2"), None).unwrap();
        assert!(by_name.text.contains("newTag: '1.2'\n"));
    }

    #[test]
    fn a_registry_with_a_port_is_not_a_tag() {
        let src = "image: localhost:5000/app:1.0\n";
        let e = set_image(src, &repo("localhost:5000/app"), &tag("2.0"), None).unwrap();
        assert_eq!(e.text, "image: localhost:5000/app:2.0\n");
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
        let d = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let src = "image: x.io/app:1.0\n";
        let pinned = set_image(src, &repo("x.io/app"), &tag("1.1"), Some(&d)).unwrap();
        assert_eq!(pinned.text, format!("image: x.io/app:1.1@{d}\n"));
        let unpinned = set_image(&pinned.text, &repo("x.io/app"), &tag("1.2"), None).unwrap();
        assert_eq!(unpinned.text, "image: x.io/app:1.2\n");
    }

    #[test]
    fn an_image_line_inside_a_block_scalar_is_not_touched() {
        let src = "data:\n  script: |\n    image: x.io/app:1.0\nimage: x.io/app:1.0\n";
        let e = set_image(src, &repo("x.io/app"), &tag("2.0"), None).unwrap();
        assert_eq!(
            e.text,
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
    fn invalid_yaml_is_an_error() {
        assert!(matches!(
            set_image("a: [\n", &repo("x.io/app"), &tag("1"), None),
            Err(ManifestError::Parse(_))
        ));
    }

    #[test]
    fn argo_cd_kustomize_image_strings_keep_their_name_prefix() {
        let src = "spec:\n  source:\n    kustomize:\n      images:\n      - app=reg.io/app:1.0\n";
        let e = set_image(src, &repo("reg.io/app"), &tag("1.5"), None).unwrap();
        assert!(e.text.ends_with("- app=reg.io/app:1.5\n"), "{}", e.text);
    }
}
