//! Finding image references in YAML manifests.
//!
//! Recognised shapes (anywhere in a document, so Flux HelmRelease `spec.values`, Argo CD
//! `helm.valuesObject` and umbrella charts work too):
//! - `image: repo[:tag][@digest]` — containers, init/ephemeral containers, Helm string values;
//! - a mapping with a tag key (`tag`) and a repository key (`repository`, `repo`, or `image`
//!   holding a bare repository), optionally `registry` and a digest key (`digest`, `sha`) —
//!   Helm values;
//! - `images:` entries with `name` / `newName` / `newTag` / `digest` — kustomize;
//! - `images:` string entries `name=newName:tag` or `name:tag` — Argo CD `kustomize.images`;
//! - `helm.parameters` entries `{name: <p>.repository|<p>.name, value}` with their
//!   `<p>.tag` (and `<p>.registry`, `<p>.digest`) siblings — Argo CD Applications and
//!   `.argocd-source-<app>.yaml` write-back files;
//! - the YAML inside an Argo CD `helm.values: |` literal block, read in place.
//!
//! A reference is matched by its repository, never by its tag value. Scalars in block
//! strings other than `helm.values` (a ConfigMap's script, say) are never references.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;

use thiserror::Error;

mod walk;

use walk::Walker;

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
    /// Argo CD `helm.parameters` entries.
    HelmParameters,
}

/// One image reference in a file.
#[derive(Debug, Clone)]
pub struct Reference {
    pub kind: RefKind,
    /// 1-based line and column of the scalar holding the tag (or the whole reference, or the
    /// entry when it has no tag yet).
    pub line: usize,
    pub column: usize,
    /// Where it is, as a key path (`spec.template.spec.containers[0].image`).
    pub path: String,
    /// The effective repository (kustomize: `newName`, else `name`).
    pub repository: Repository,
    /// For kustomize: the `name` the entry matches in the resources, when it differs.
    pub name: Option<String>,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
    pub(super) slots: Slots,
}

#[derive(Debug, Clone)]
pub(super) enum Slots {
    /// The whole reference is one scalar; `prefix` (e.g. `name=repo`) is kept verbatim.
    Whole { scalar: Scalar, prefix: String },
    /// Separate tag and digest scalars.
    Keys {
        tag: TagSlot,
        digest: Option<DigestSlot>,
    },
}

#[derive(Debug, Clone)]
pub(super) enum TagSlot {
    /// A scalar holding the tag; `with_digest` when it reads `tag@sha256:…`.
    Scalar { scalar: Scalar, with_digest: bool },
    /// No tag key, but one can be added as a new line (a block-style kustomize entry).
    Insert(Insert),
    /// No tag key and no safe way to add one; the message says what to do.
    Absent(&'static str),
}

#[derive(Debug, Clone)]
pub(super) struct DigestSlot {
    pub scalar: Scalar,
    /// The key holds only the hex part (`sha:` in some charts).
    pub hex_only: bool,
}

/// A new `key: value` line to add at `at` (the end of a line, before its line break).
#[derive(Debug, Clone)]
pub(super) struct Insert {
    pub at: usize,
    pub eol: &'static str,
    pub indent: usize,
    pub key: &'static str,
}

/// A scalar's bytes in the source.
#[derive(Debug, Clone)]
pub(super) struct Scalar {
    /// The bytes that hold the value (the anchor's value for an alias).
    pub range: Range<usize>,
    /// Where this use is (the alias itself, for an alias).
    pub site: usize,
}

/// A problem with a manifest or with the edit asked of it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestError {
    #[error("not valid YAML at line {line}, column {column}: {message}")]
    Parse {
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "no image reference for repository '{repository}'; the file references: {}",
        list_or_none(found)
    )]
    NotFound {
        repository: String,
        found: Vec<String>,
    },
    #[error("line {line}, column {column}: {message}")]
    Refused {
        line: usize,
        column: usize,
        message: String,
    },
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

/// One place where an anchored scalar is used (the anchor itself or an alias of it).
#[derive(Debug, Clone)]
pub(super) struct Use {
    pub site: usize,
    pub path: String,
}

/// Everything `locate` learns about a file.
#[derive(Debug, Default)]
pub(super) struct Located {
    pub refs: Vec<Reference>,
    /// For each anchored scalar (by the start of its value): every place it is used.
    pub anchors: HashMap<usize, Vec<Use>>,
}

/// Every image reference in `src` (all documents), in file order.
pub fn locate(src: &str) -> Result<Vec<Reference>, ManifestError> {
    Ok(analyse(src)?.refs)
}

/// Line and column (1-based, in bytes) of byte offsets in a text.
pub(super) struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    pub fn new(src: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            src.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Self { starts }
    }

    pub fn at(&self, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|s| *s <= offset).max(1);
        (line, offset - self.starts[line - 1] + 1)
    }
}

pub(super) fn analyse(src: &str) -> Result<Located, ManifestError> {
    let docs = tree::parse_documents(src).map_err(|e| ManifestError::Parse {
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    let lines = Lines::new(src);
    let mut w = Walker {
        src,
        lines: &lines,
        path: Vec::new(),
        out: Located::default(),
    };
    for (i, d) in docs.iter().enumerate() {
        if docs.len() > 1 {
            w.path.push(Seg::Doc(i));
        }
        w.walk(d);
        w.path.clear();
    }
    let mut aliased = std::collections::HashSet::new();
    for d in &docs {
        collect_aliased(d, &mut aliased);
    }
    if !aliased.is_empty() {
        for (i, d) in docs.iter().enumerate() {
            let mut path = Vec::new();
            if docs.len() > 1 {
                path.push(Seg::Doc(i));
            }
            collect_uses(d, &aliased, &mut path, &mut w.out.anchors);
        }
    }
    let mut out = w.out;
    out.refs.sort_by_key(|r| (r.line, r.column));
    Ok(out)
}

#[derive(Debug, Clone)]
enum Seg {
    Doc(usize),
    Key(String),
    Index(usize),
    Block,
}

fn render_path(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Doc(i) => {
                let _ = write!(s, "(document {})", i + 1);
            }
            Seg::Key(k) => {
                if !s.is_empty() && !s.ends_with('|') {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
            Seg::Block => s.push('|'),
        }
    }
    s
}

fn collect_aliased(n: &SNode, out: &mut std::collections::HashSet<usize>) {
    if tree::is_alias(n)
        && let Some(r) = tree::byte_range(n)
    {
        out.insert(r.start);
    }
    match &n.value {
        Node::Map(es) => es.iter().for_each(|(_, v)| collect_aliased(v, out)),
        Node::Seq(items) => items.iter().for_each(|i| collect_aliased(i, out)),
        Node::Scalar(_) | Node::Null => {}
    }
}

fn collect_uses(
    n: &SNode,
    aliased: &std::collections::HashSet<usize>,
    path: &mut Vec<Seg>,
    out: &mut HashMap<usize, Vec<Use>>,
) {
    match &n.value {
        Node::Map(es) => {
            for (k, v) in es {
                path.push(Seg::Key(k.value.as_str().unwrap_or("?").to_owned()));
                collect_uses(v, aliased, path, out);
                path.pop();
            }
        }
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                collect_uses(item, aliased, path, out);
                path.pop();
            }
        }
        Node::Scalar(_) | Node::Null => {
            if let (Some(r), Some(site)) = (tree::byte_range(n), tree::site(n))
                && aliased.contains(&r.start)
            {
                out.entry(r.start).or_default().push(Use {
                    site,
                    path: render_path(path),
                });
            }
        }
    }
}
