//! The walk over a parsed YAML document that finds its image references: Kubernetes
//! containers, Helm values (`image.repository` + `image.tag`, with a registry key), Kustomize
//! `images:` entries, Argo CD Image Updater annotations, and YAML held in literal blocks.

use super::*;

pub(super) struct Walker<'a> {
    pub src: &'a str,
    pub lines: &'a Lines,
    pub path: Vec<Seg>,
    pub out: Located,
}

/// Keys that name a Helm image's repository, in order of preference.
const REPOSITORY_KEYS: &[&str] = &["repository", "repo", "image"];
const DIGEST_KEYS: &[(&str, bool)] = &[("digest", false), ("sha", true)];

impl Walker<'_> {
    fn push(
        &mut self,
        kind: RefKind,
        at: usize,
        repository: Repository,
        name: Option<String>,
        slots: Slots,
    ) {
        let (tag, digest) = self.current(&slots, &repository);
        let (line, column) = self.lines.at(at);
        self.out.refs.push(Reference {
            kind,
            line,
            column,
            path: render_path(&self.path),
            repository,
            name,
            tag,
            digest,
            slots,
        });
    }

    /// A reference with its own tag scalar (which may read `tag@sha256:…`) and maybe a
    /// digest key, located at the tag.
    fn push_tagged(
        &mut self,
        kind: RefKind,
        repository: Repository,
        (scalar, value): (Scalar, String),
        digest: Option<DigestSlot>,
    ) {
        let at = scalar.site;
        let tag = TagSlot::Scalar {
            with_digest: value.contains('@'),
            scalar,
        };
        self.push(kind, at, repository, None, Slots::Keys { tag, digest });
    }

    /// The tag and digest a reference holds now, read from its slots.
    fn current(&self, slots: &Slots, repository: &Repository) -> (Option<Tag>, Option<Digest>) {
        let text = |s: &Scalar| self.value_of(s.range.clone());
        match slots {
            Slots::Whole { scalar, prefix } => {
                let v = text(scalar);
                let rest = v.get(prefix.len()..).unwrap_or("");
                let image = format!("{repository}{rest}");
                ImageRef::split_loose(&image).map_or((None, None), |(_, t, d)| (t, d))
            }
            Slots::Keys { tag, digest } => {
                let (mut t, mut d) = (None, None);
                if let TagSlot::Scalar {
                    scalar,
                    with_digest,
                } = tag
                {
                    let v = text(scalar);
                    match v.split_once('@') {
                        // `tag@digest`: both parts valid, or the value is unreadable as a
                        // whole (as `ImageRef::split_loose` reads an image string), so that
                        // `1.0.0@` or `1.0.0@sha256:bad` is never half-read as a tag.
                        Some((tv, dv)) if *with_digest => {
                            if let (Ok(tv), Ok(dv)) = (Tag::parse(tv), Digest::parse(dv)) {
                                (t, d) = (Some(tv), Some(dv));
                            }
                        }
                        _ => t = Tag::parse(&v).ok(),
                    }
                }
                if let Some(ds) = digest {
                    let v = text(&ds.scalar);
                    let full = if ds.hex_only && !v.is_empty() {
                        format!("sha256:{v}")
                    } else {
                        v
                    };
                    if let Ok(parsed) = Digest::parse(&full) {
                        d = Some(parsed);
                    }
                }
                (t, d)
            }
        }
    }

    /// The string a scalar holds, read from its raw text so that `1.10` stays `1.10`.
    fn value_of(&self, range: Range<usize>) -> String {
        let raw = &self.src[range];
        match raw.as_bytes().first() {
            Some(b'"') => unquote_double(raw),
            Some(b'\'') => raw
                .strip_prefix('\'')
                .and_then(|r| r.strip_suffix('\''))
                .unwrap_or(raw)
                .replace("''", "'"),
            _ => raw.trim_end().to_owned(),
        }
    }

    pub(super) fn walk(&mut self, n: &SNode) {
        match &n.value {
            Node::Map(entries) => {
                let consumed = self.helm_values(&n.value);
                let parent_is_helm = matches!(self.path.last(), Some(Seg::Key(k)) if k == "helm");
                for (k, v) in entries {
                    let key = k.value.as_str().unwrap_or("");
                    self.path.push(Seg::Key(key.to_owned()));
                    match (key, &v.value) {
                        ("image", Node::Scalar(_)) if consumed != Some("image") => {
                            self.image_string(v);
                        }
                        ("images", Node::Seq(items)) => self.images(items),
                        ("parameters", Node::Seq(items)) if parent_is_helm => {
                            self.helm_parameters(items);
                        }
                        ("values", Node::Scalar(_)) if parent_is_helm => self.embedded(v),
                        _ => self.walk(v),
                    }
                    self.path.pop();
                }
            }
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    self.walk(item);
                    self.path.pop();
                }
            }
            Node::Scalar(_) | Node::Null => {}
        }
    }

    fn images(&mut self, items: &[SNode]) {
        for (i, item) in items.iter().enumerate() {
            self.path.push(Seg::Index(i));
            match &item.value {
                Node::Scalar(_) => self.argo_kustomize_string(item),
                Node::Map(_) => {
                    if !self.kustomize_entry(item) {
                        self.walk(item);
                    }
                }
                _ => self.walk(item),
            }
            self.path.pop();
        }
    }

    /// A plain or quoted scalar (never a block scalar) and the string it holds.
    fn scalar(&self, n: &SNode) -> Option<(Scalar, String)> {
        if !matches!(n.value, Node::Scalar(_)) {
            return None;
        }
        let range = tree::byte_range(n)?;
        let raw = self.src.get(range.clone())?;
        if matches!(raw.as_bytes().first()?, b'*' | b'&' | b'!')
            || tree::block_indicator(self.src, n).is_some()
        {
            return None;
        }
        let value = self.value_of(range.clone());
        let site = tree::site(n).unwrap_or(range.start);
        Some((Scalar { range, site }, value))
    }

    fn key_scalar(&self, map: &Node, key: &str) -> Option<(Scalar, String)> {
        self.scalar(map.get(key)?)
    }

    fn image_string(&mut self, n: &SNode) {
        let Some((s, value)) = self.scalar(n) else {
            return;
        };
        let Some((repository, _, _)) = ImageRef::split_loose(&value) else {
            return;
        };
        let at = s.site;
        let prefix = repository.to_string();
        self.push(
            RefKind::ImageString,
            at,
            repository,
            None,
            Slots::Whole { scalar: s, prefix },
        );
    }

    fn argo_kustomize_string(&mut self, n: &SNode) {
        let Some((s, value)) = self.scalar(n) else {
            return;
        };
        let (name, image) = match value.split_once('=') {
            Some((name, image)) => (Some(name.to_owned()), image),
            None => (None, value.as_str()),
        };
        let Some((repository, _, _)) = ImageRef::split_loose(image) else {
            return;
        };
        let prefix = match &name {
            Some(n) => format!("{n}={repository}"),
            None => repository.to_string(),
        };
        let at = s.site;
        self.push(
            RefKind::ArgoKustomize,
            at,
            repository,
            name,
            Slots::Whole { scalar: s, prefix },
        );
    }

    /// A kustomize `images:` entry; false when the mapping is not one.
    fn kustomize_entry(&mut self, item: &SNode) -> bool {
        let map = &item.value;
        let Some((_, name)) = self.key_scalar(map, "name") else {
            return false;
        };
        let new_name = self.key_scalar(map, "newName").map(|(_, v)| v);
        let tag = self.key_scalar(map, "newTag");
        let digest = self.key_scalar(map, "digest");
        if new_name.is_none() && tag.is_none() && digest.is_none() {
            return false;
        }
        let Ok(repository) = Repository::parse(new_name.as_deref().unwrap_or(&name)) else {
            return true;
        };
        let entry_start = tree::site(item).unwrap_or(0);
        let at = tag
            .as_ref()
            .or(digest.as_ref())
            .map_or(entry_start, |(s, _)| s.site);
        let tag_slot = match tag {
            Some((scalar, v)) => TagSlot::Scalar {
                with_digest: v.contains('@'),
                scalar,
            },
            None if digest.is_some() => {
                TagSlot::Absent("the entry is pinned by digest only; give the new digest")
            }
            None => self.insertion_after_last_key(item, "newTag").map_or(
                TagSlot::Absent(
                    "the entry has no newTag and is not a block mapping that one can be added to; add `newTag:` by hand",
                ),
                TagSlot::Insert,
            ),
        };
        self.push(
            RefKind::Kustomize,
            at,
            repository,
            new_name.is_some().then_some(name),
            Slots::Keys {
                tag: tag_slot,
                digest: digest.map(|(scalar, _)| DigestSlot {
                    scalar,
                    hex_only: false,
                }),
            },
        );
        true
    }

    /// Where a new `key: value` line can go at the end of a block mapping: after the line
    /// of its last value, indented like its last key.
    fn insertion_after_last_key(&self, item: &SNode, key: &'static str) -> Option<Insert> {
        let Node::Map(entries) = &item.value else {
            return None;
        };
        let raw_start = tree::byte_range(item)?.start;
        if self.src.as_bytes().get(raw_start) == Some(&b'{') {
            return None;
        }
        let (last_key, last_value) = entries.last()?;
        if tree::is_alias(last_key) || tree::is_alias(last_value) {
            return None;
        }
        let key_range = tree::byte_range(last_key)?;
        let value_range = tree::byte_range(last_value)?;
        let value_raw = &self.src[value_range.clone()];
        if value_raw.contains('\n') {
            return None;
        }
        let line_start = self.src[..key_range.start].rfind('\n').map_or(0, |i| i + 1);
        let before_key = &self.src[line_start..key_range.start];
        if !before_key.bytes().all(|b| b == b' ' || b == b'-') {
            return None;
        }
        let indent = key_range.start - line_start;
        let rest = &self.src[value_range.end..];
        let (at, eol) = match rest.find('\n') {
            Some(i) if i > 0 && rest.as_bytes()[i - 1] == b'\r' => {
                (value_range.end + i - 1, "\r\n")
            }
            Some(i) => (value_range.end + i, "\n"),
            None if self.src.contains("\r\n") => (self.src.len(), "\r\n"),
            None => (self.src.len(), "\n"),
        };
        Some(Insert {
            at,
            eol,
            indent,
            key,
        })
    }

    /// A Helm-style image mapping; returns which key served as the repository.
    fn helm_values(&mut self, map: &Node) -> Option<&'static str> {
        let (tag_scalar, tag_value) = self.key_scalar(map, "tag")?;
        let (repo_key, repo) = REPOSITORY_KEYS.iter().find_map(|k| {
            let (_, v) = self.key_scalar(map, k)?;
            // `image: repo:tag` beside a `tag:` key is ambiguous: not a repository key.
            (*k != "image" || !has_tag(&v)).then_some((*k, v))
        })?;
        let registry = self.key_scalar(map, "registry").map(|(_, v)| v);
        let repository = with_registry(registry.as_deref(), repo)?;
        let digest = DIGEST_KEYS.iter().find_map(|(k, hex_only)| {
            self.key_scalar(map, k).map(|(scalar, _)| DigestSlot {
                scalar,
                hex_only: *hex_only,
            })
        });
        self.path.push(Seg::Key("tag".into()));
        self.push_tagged(
            RefKind::HelmValues,
            repository,
            (tag_scalar, tag_value),
            digest,
        );
        self.path.pop();
        Some(repo_key)
    }

    /// Argo CD `helm.parameters`: `<p>.repository` (or `<p>.name`) with `<p>.tag`.
    fn helm_parameters(&mut self, items: &[SNode]) {
        let mut params: Vec<(String, usize, &SNode)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let (Some(name), Some(value)) = (
                item.value.get("name").and_then(|n| n.value.as_str()),
                item.value.get("value"),
            ) {
                params.push((name.to_owned(), i, value));
            }
        }
        let find = |name: &str| params.iter().find(|(n, _, _)| n == name);
        for (name, _, value) in &params {
            let Some(prefix) = name
                .strip_suffix("repository")
                .or_else(|| name.strip_suffix("name"))
                .filter(|p| p.is_empty() || p.ends_with('.'))
            else {
                continue;
            };
            let Some((_, tag_index, tag_node)) = find(&format!("{prefix}tag")) else {
                continue;
            };
            let (Some((_, repo)), Some((tag_scalar, tag_value))) =
                (self.scalar(value), self.scalar(tag_node))
            else {
                continue;
            };
            let registry = find(&format!("{prefix}registry"))
                .and_then(|(_, _, n)| self.scalar(n))
                .map(|(_, v)| v);
            let Some(repository) = with_registry(registry.as_deref(), repo) else {
                continue;
            };
            let digest = find(&format!("{prefix}digest"))
                .and_then(|(_, _, n)| self.scalar(n))
                .map(|(scalar, _)| DigestSlot {
                    scalar,
                    hex_only: false,
                });
            self.path.push(Seg::Index(*tag_index));
            self.path.push(Seg::Key("value".into()));
            self.push_tagged(
                RefKind::HelmParameters,
                repository,
                (tag_scalar, tag_value),
                digest,
            );
            self.path.pop();
            self.path.pop();
        }
    }

    /// The YAML inside an Argo CD `helm.values: |` literal block, located in place: each
    /// content line is the block's line minus its indentation, so offsets map back exactly.
    fn embedded(&mut self, n: &SNode) {
        if tree::is_alias(n) {
            return;
        }
        let Some(header) = tree::block_indicator(self.src, n) else {
            return;
        };
        let Some(block) = LiteralBlock::read(self.src, header) else {
            return;
        };
        let Ok(inner) = analyse(&block.content) else {
            return;
        };
        self.path.push(Seg::Block);
        let prefix = render_path(&self.path);
        self.path.pop();
        for mut r in inner.refs {
            if !block.remap_slots(&mut r.slots) {
                continue;
            }
            let at = block.source_at(r.line, r.column);
            let (line, column) = self.lines.at(at);
            r.line = line;
            r.column = column;
            r.path = format!("{prefix}{}", r.path);
            self.out.refs.push(r);
        }
        for (start, uses) in inner.anchors {
            let uses = uses
                .into_iter()
                .map(|u| Use {
                    site: block.to_source(u.site),
                    path: format!("{prefix}{}", u.path),
                })
                .collect();
            self.out.anchors.insert(block.to_source(start), uses);
        }
    }
}

/// A literal block scalar (`|`, `|-`, `|+`) whose content is itself YAML.
struct LiteralBlock {
    content: String,
    /// The block's indentation, which each content line lacks.
    indent: usize,
    content_lines: Lines,
    /// For each content line: the source offset where it starts.
    source_starts: Vec<usize>,
}

impl LiteralBlock {
    fn read(src: &str, header: usize) -> Option<Self> {
        let head_end = src[header..].find('\n')? + header;
        let head = src[header..head_end].trim_end_matches('\r');
        let indicator = head.split('#').next()?.trim_end();
        // Only `|`, `|-` and `|+`: an explicit indentation digit is rare and refused.
        if !matches!(indicator, "|" | "|-" | "|+") {
            return None;
        }
        let body_start = head_end + 1;
        let mut indent = None;
        let mut content = String::new();
        let mut source_starts = Vec::new();
        let mut at = body_start;
        for line in src[body_start..].split_inclusive('\n') {
            let text = line.trim_end_matches(['\n', '\r']);
            let spaces = text.len() - text.trim_start_matches(' ').len();
            let blank = text.trim().is_empty();
            match indent {
                None if blank => {}
                None => indent = Some(spaces),
                Some(n) if !blank && spaces < n => break,
                Some(_) => {}
            }
            let cut = indent.unwrap_or(0).min(spaces).min(text.len());
            if indent.is_none() && !blank {
                return None;
            }
            source_starts.push(at + cut);
            content.push_str(&line[cut..]);
            at += line.len();
        }
        Some(Self {
            indent: indent?,
            content_lines: Lines::new(&content),
            content,
            source_starts,
        })
    }

    fn to_source(&self, offset: usize) -> usize {
        let (line, column) = self.content_lines.at(offset);
        self.source_at(line, column)
    }

    fn source_at(&self, line: usize, column: usize) -> usize {
        self.source_starts
            .get(line - 1)
            .map_or(0, |s| s + column - 1)
    }

    /// Move a scalar to source offsets; false when it spans lines (cannot be mapped).
    fn remap(&self, s: &mut Scalar) -> bool {
        let (l1, _) = self.content_lines.at(s.range.start);
        let (l2, _) = self
            .content_lines
            .at(s.range.end.saturating_sub(1).max(s.range.start));
        if l1 != l2 {
            return false;
        }
        let start = self.to_source(s.range.start);
        s.range = start..start + s.range.len();
        s.site = self.to_source(s.site);
        true
    }

    fn remap_slots(&self, slots: &mut Slots) -> bool {
        match slots {
            Slots::Whole { scalar, .. } => self.remap(scalar),
            Slots::Keys { tag, digest } => {
                let tag_ok = match tag {
                    TagSlot::Scalar { scalar, .. } => self.remap(scalar),
                    TagSlot::Insert(ins) => {
                        ins.at = self.to_source(ins.at);
                        ins.indent += self.indent;
                        true
                    }
                    TagSlot::Absent(_) => true,
                };
                tag_ok && digest.as_mut().is_none_or(|d| self.remap(&mut d.scalar))
            }
        }
    }
}

/// `registry/repository` (a trailing `/` on the registry tolerated), or the repository
/// alone when there is no registry; `None` when that is not a valid repository.
fn with_registry(registry: Option<&str>, repo: String) -> Option<Repository> {
    let full = match registry {
        Some(r) if !r.is_empty() => format!("{}/{}", r.trim_end_matches('/'), repo),
        _ => repo,
    };
    Repository::parse(&full).ok()
}

fn has_tag(v: &str) -> bool {
    ImageRef::split_loose(v).is_some_and(|(_, t, d)| t.is_some() || d.is_some())
}

fn unquote_double(raw: &str) -> String {
    // Enough of YAML's double-quoted escapes for image references; anything stranger is
    // kept verbatim (and then fails the OCI grammar, which refuses it clearly).
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('/') => out.push('/'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}
