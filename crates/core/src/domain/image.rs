//! Validated image names: repositories, tags (OCI grammar), digests and references.
//!
//! Everything that reaches a manifest, a branch name or a PR body passes through these
//! types first, so nothing downstream re-validates.

use std::fmt;

use thiserror::Error;

/// Why a string is not a valid tag, digest, repository or reference.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImageError {
    #[error(
        "tag '{0}' is invalid: a tag is 1 to 128 characters of [A-Za-z0-9_.-] and must not start with '.' or '-'"
    )]
    Tag(String),
    #[error("digest '{0}' is invalid: expected 'sha256:' followed by 64 lowercase hex characters")]
    Digest(String),
    #[error(
        "repository '{0}' is invalid: expected lowercase path components such as 'registry.example.com/team/app'"
    )]
    Repository(String),
    #[error("image reference '{0}' is invalid: {1}")]
    Reference(String, &'static str),
}

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, ImageError> {
        let bytes = s.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 128
            && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(ImageError::Tag(printable(s)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A content digest; only sha256 is accepted, as ECR only produces sha256.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Self, ImageError> {
        let hex = s.strip_prefix("sha256:");
        match hex {
            Some(h)
                if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                Ok(Self(s.to_owned()))
            }
            _ => Err(ImageError::Digest(printable(s))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `sha256:0123456789ab`, for tables and titles.
    pub fn short(&self) -> &str {
        &self.0[..19]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A repository: optional registry host (with optional port) plus a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository(String);

impl Repository {
    pub fn parse(s: &str) -> Result<Self, ImageError> {
        let err = || ImageError::Repository(printable(s));
        if s.is_empty() || s.len() > 255 {
            return Err(err());
        }
        let mut parts = s.split('/').peekable();
        let mut first = true;
        while let Some(part) = parts.next() {
            let is_host = first && parts.peek().is_some() && looks_like_host(part);
            first = false;
            let ok = if is_host {
                valid_host(part)
            } else {
                valid_path_component(part)
            };
            if !ok {
                return Err(err());
            }
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last path component (`user_service` for `…/salon/user_service`).
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn looks_like_host(part: &str) -> bool {
    part.contains('.') || part.contains(':') || part == "localhost"
}

fn valid_host(part: &str) -> bool {
    let (host, port) = match part.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (part, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

fn valid_path_component(part: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = part.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    b.iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
}

/// `repository[:tag][@digest]`: at least one of tag and digest is present.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    pub repository: Repository,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self, ImageError> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d)?)),
            None => (s, None),
        };
        // A ':' after the last '/' separates the tag; one before it is a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(Tag::parse(&rest[at + 1..])?))
            }
            None => (rest, None),
        };
        if tag.is_none() && digest.is_none() {
            return Err(ImageError::Reference(
                printable(s),
                "it names neither a tag nor a digest",
            ));
        }
        Ok(Self {
            repository: Repository::parse(repo)?,
            tag,
            digest,
        })
    }

    /// Whether `other` names the same image: the same repository, and the same digest when
    /// both name one, else the same tag. A sidecar that shares the tag (`envoy:1.1.0` beside
    /// `api:1.1.0`) is not the same image, nor is `api:1.1.0@<another digest>`.
    pub fn same_image(&self, other: &ImageRef) -> bool {
        if self.repository != other.repository {
            return false;
        }
        match (&self.digest, &other.digest) {
            (Some(a), Some(b)) => a == b,
            _ => self.tag.is_some() && self.tag == other.tag,
        }
    }

    /// Split a reference that may lack both tag and digest (e.g. `nginx`).
    pub fn split_loose(s: &str) -> Option<(Repository, Option<Tag>, Option<Digest>)> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).ok()?)),
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(Tag::parse(&rest[at + 1..]).ok()?))
            }
            None => (rest, None),
        };
        Some((Repository::parse(repo).ok()?, tag, digest))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.repository.as_str())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Quote a bad value for an error message without letting control characters through.
pub(crate) fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(140).flat_map(char::escape_debug).collect();
    if s.chars().count() > 140 {
        out.push('…');
    }
    out
}

/// The images of `repository` among `listed` (as Argo CD's `summary.images` spells them);
/// entries that are not image references are skipped.
pub fn of_repository<'a>(
    listed: &'a [String],
    repository: &'a Repository,
) -> impl Iterator<Item = ImageRef> + 'a {
    listed
        .iter()
        .filter_map(|i| ImageRef::parse(i).ok())
        .filter(move |r| &r.repository == repository)
}

/// Whether `listed` (Argo CD's `summary.images`) shows `wanted` running: the one answer to
/// "does it run this image", for upstream readiness, verification and the rescan alike.
pub fn runs(listed: &[String], wanted: &ImageRef) -> bool {
    of_repository(listed, &wanted.repository).any(|r| wanted.same_image(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_oci_grammar() {
        for ok in [
            "1.2.3",
            "v1.2.3-rc.1",
            "_x",
            "latest",
            "A_b-c.d",
            &"a".repeat(128),
        ] {
            assert!(Tag::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".x",
            "-x",
            "a b",
            "a/b",
            "a:b",
            "é",
            &"a".repeat(129),
            "a\n",
        ] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests_must_be_sha256_with_64_lowercase_hex() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert!(Digest::parse(&good).is_ok());
        assert!(Digest::parse(&good.to_uppercase()).is_err());
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(64))).is_err());
    }

    #[test]
    fn a_registry_port_is_not_mistaken_for_a_tag() {
        let r = ImageRef::parse("localhost:5000/app:1.0").unwrap();
        assert_eq!(r.repository.as_str(), "localhost:5000/app");
        assert_eq!(r.tag.unwrap().as_str(), "1.0");
        assert!(ImageRef::parse("localhost:5000/app").is_err());
        let (repo, tag, _) = ImageRef::split_loose("localhost:5000/app").unwrap();
        assert_eq!(repo.as_str(), "localhost:5000/app");
        assert!(tag.is_none());
    }

    #[test]
    fn references_with_tag_and_digest_round_trip() {
        let s = format!(
            "123456789012.dkr.ecr.eu-north-1.amazonaws.com/user_service:1.4.0@sha256:{}",
            "0".repeat(64)
        );
        let r = ImageRef::parse(&s).unwrap();
        assert_eq!(r.repository.name(), "user_service");
        assert_eq!(r.to_string(), s);
    }

    #[test]
    fn error_messages_quote_the_bad_value_without_control_characters() {
        let e = Tag::parse("bad\ttag").unwrap_err().to_string();
        assert!(e.starts_with("tag 'bad\\ttag' is invalid"), "{e}");
    }

    #[test]
    fn a_sidecar_with_the_same_tag_is_not_the_image_and_a_digest_decides_when_both_have_one() {
        let api = "123456789012.dkr.ecr.eu-north-1.amazonaws.com/api";
        let d1 = format!("sha256:{}", "1".repeat(64));
        let d2 = format!("sha256:{}", "2".repeat(64));
        let wanted = ImageRef::parse(&format!("{api}:1.1.0@{d1}")).unwrap();
        let listed = |v: &[String]| runs(v, &wanted);
        assert!(!listed(&[
            "envoyproxy/envoy:1.1.0".into(),
            format!("{api}:1.0.0")
        ]));
        assert!(listed(&[
            "envoyproxy/envoy:1.1.0".into(),
            format!("{api}:1.1.0")
        ]));
        assert!(listed(&[format!("{api}@{d1}")]));
        assert!(!listed(&[format!("{api}:1.1.0@{d2}")]));
        assert!(!listed(&["not a reference".into()]));
        let by_tag = ImageRef::parse(&format!("{api}:1.1.0")).unwrap();
        assert!(runs(&[format!("{api}:1.1.0@{d2}")], &by_tag));
        assert!(!runs(&[format!("{api}@{d2}")], &by_tag));
        let repo = Repository::parse(api).unwrap();
        let mine: Vec<ImageRef> = of_repository(
            &["envoyproxy/envoy:1.1.0".into(), format!("{api}:1.1.0")],
            &repo,
        )
        .collect();
        assert_eq!(mine, vec![by_tag]);
    }
}
