//! Tag rules and ordering: which of a repository's images is the newest eligible candidate.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::image::{Digest, Tag};
use super::index::{ImageKind, is_supply_chain_tag};

/// One image in a registry: a digest with the tags that point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub digest: Digest,
    pub tags: Vec<Tag>,
    pub pushed_at: DateTime<Utc>,
    /// An image, an index of platform images, or an artifact that is never promoted.
    pub kind: ImageKind,
}

/// A tag the rule accepts, with what it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub tag: Tag,
    pub digest: Digest,
    pub pushed_at: DateTime<Utc>,
}

/// How tags are ordered to find the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagOrdering {
    /// Semantic versions (an optional leading `v` is allowed); pre-releases sort before releases.
    #[default]
    Semver,
    /// Newest `imagePushedAt` first, whatever the tag says.
    PushedAt,
    /// Plain byte-wise string order.
    Lexical,
    /// The tag (or the rule's `version` capture) as an unsigned integer.
    Numeric,
}

/// Which tags may be promoted and how they are ordered.
#[derive(Debug, Clone)]
pub struct TagRule {
    /// Tags must match this; a named capture `version` selects the part that is ordered.
    pub pattern: Option<Regex>,
    /// Tags that are never promoted (`latest` and friends by default).
    pub exclude: Vec<String>,
    pub ordering: TagOrdering,
    /// For semver ordering: only versions matching this requirement.
    pub constraint: Option<semver::VersionReq>,
}

pub const DEFAULT_EXCLUDED_TAGS: &[&str] = &[
    "latest", "main", "master", "develop", "dev", "stable", "edge", "nightly",
];

impl Default for TagRule {
    fn default() -> Self {
        Self {
            pattern: None,
            exclude: DEFAULT_EXCLUDED_TAGS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            ordering: TagOrdering::Semver,
            constraint: None,
        }
    }
}

/// The sortable key of a tag under a rule, or `None` when the rule rejects the tag.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Semver(semver::Version),
    Numeric(u128),
    Text(String),
    Time,
}

impl TagRule {
    fn key(&self, tag: &Tag) -> Option<Key> {
        let s = tag.as_str();
        if self.exclude.iter().any(|e| e == s) {
            return None;
        }
        let version_part = match &self.pattern {
            Some(re) => {
                let caps = re.captures(s)?;
                // The whole tag must match, not a substring of it.
                let whole = caps.get(0)?;
                if whole.start() != 0 || whole.end() != s.len() {
                    return None;
                }
                caps.name("version").map_or(s, |m| m.as_str())
            }
            None => s,
        };
        match self.ordering {
            TagOrdering::Semver => {
                let v =
                    semver::Version::parse(version_part.strip_prefix('v').unwrap_or(version_part))
                        .ok()?;
                if let Some(req) = &self.constraint
                    && !req.matches(&v)
                {
                    return None;
                }
                Some(Key::Semver(v))
            }
            TagOrdering::Numeric => version_part.parse().ok().map(Key::Numeric),
            TagOrdering::Lexical => Some(Key::Text(version_part.to_owned())),
            TagOrdering::PushedAt => Some(Key::Time),
        }
    }

    /// Whether this tag could be promoted at all under the rule.
    pub fn accepts(&self, tag: &Tag) -> bool {
        self.key(tag).is_some()
    }

    /// Compare two candidates under the rule (greater = newer). Both must be accepted.
    pub fn compare(&self, a: &Candidate, b: &Candidate) -> Ordering {
        let by_key = match (self.key(&a.tag), self.key(&b.tag)) {
            (Some(Key::Semver(x)), Some(Key::Semver(y))) => x.cmp(&y),
            (Some(Key::Numeric(x)), Some(Key::Numeric(y))) => x.cmp(&y),
            (Some(Key::Text(x)), Some(Key::Text(y))) => x.cmp(&y),
            _ => Ordering::Equal,
        };
        // Ties (and pushed_at ordering) fall back to push time, then the tag for determinism.
        by_key
            .then(a.pushed_at.cmp(&b.pushed_at))
            .then_with(|| a.tag.cmp(&b.tag))
    }
}

/// Every tag the rule accepts, newest first. Whatever the rule says, an artifact that is not
/// an image (a Helm chart, an SBOM) and a signature or attestation tag (`sha256-<hex>.sig`)
/// are never candidates: under `pushed_at` or `lexical` ordering they would otherwise win,
/// as they are pushed after the image they sign.
pub fn eligible(images: &[ImageRecord], rule: &TagRule) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = images
        .iter()
        .filter(|img| !matches!(img.kind, ImageKind::Artifact(_)))
        .flat_map(|img| {
            img.tags
                .iter()
                .filter(|t| !is_supply_chain_tag(t.as_str()) && rule.accepts(t))
                .map(|t| Candidate {
                    tag: t.clone(),
                    digest: img.digest.clone(),
                    pushed_at: img.pushed_at,
                })
        })
        .collect();
    out.sort_by(|a, b| rule.compare(b, a));
    out
}

/// What the registry stores under `digest`, as its listing says (an image when unlisted).
pub fn kind_of(images: &[ImageRecord], digest: &Digest) -> ImageKind {
    images
        .iter()
        .find(|i| &i.digest == digest)
        .map(|i| i.kind.clone())
        .unwrap_or_default()
}

/// Find the record for a tag, to compare what is deployed with a candidate.
pub fn find_tag(images: &[ImageRecord], tag: &Tag) -> Option<Candidate> {
    images
        .iter()
        .find(|i| i.tags.contains(tag))
        .map(|i| Candidate {
            tag: tag.clone(),
            digest: i.digest.clone(),
            pushed_at: i.pushed_at,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn img(n: u8, tags: &[&str], t: i64) -> ImageRecord {
        ImageRecord {
            digest: Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap(),
            tags: tags.iter().map(|s| Tag::parse(s).unwrap()).collect(),
            pushed_at: Utc.timestamp_opt(t, 0).unwrap(),
            kind: ImageKind::Image,
        }
    }

    #[test]
    fn a_signature_tag_pushed_after_the_image_never_becomes_the_candidate() {
        let sig = format!("sha256-{}.sig", "01".repeat(32));
        let images = [img(1, &["abc123"], 10), img(2, &[sig.as_str()], 11)];
        for ordering in [TagOrdering::PushedAt, TagOrdering::Lexical] {
            let rule = TagRule {
                ordering,
                ..TagRule::default()
            };
            assert_eq!(
                newest(&images, &rule).as_deref(),
                Some("abc123"),
                "{ordering:?}"
            );
        }
    }

    #[test]
    fn an_artifact_that_is_not_an_image_is_never_a_candidate() {
        let mut chart = img(2, &["9.9.9"], 20);
        chart.kind = ImageKind::Artifact("application/vnd.cncf.helm.config.v1+json".into());
        let images = [img(1, &["1.0.0"], 10), chart];
        assert_eq!(
            newest(&images, &TagRule::default()).as_deref(),
            Some("1.0.0")
        );
    }

    fn newest(images: &[ImageRecord], rule: &TagRule) -> Option<String> {
        eligible(images, rule).first().map(|c| c.tag.to_string())
    }

    #[test]
    fn semver_ordering_picks_the_highest_version_not_the_latest_push() {
        let images = [
            img(1, &["1.10.0"], 10),
            img(2, &["1.9.0", "latest"], 20),
            img(3, &["v1.2.0"], 30),
        ];
        assert_eq!(
            newest(&images, &TagRule::default()).as_deref(),
            Some("1.10.0")
        );
    }

    #[test]
    fn pre_releases_sort_before_their_release_and_latest_is_excluded() {
        let images = [
            img(1, &["2.0.0-rc.1"], 30),
            img(2, &["2.0.0"], 10),
            img(3, &["latest"], 40),
        ];
        assert_eq!(
            newest(&images, &TagRule::default()).as_deref(),
            Some("2.0.0")
        );
    }

    #[test]
    fn a_semver_constraint_filters_versions() {
        let rule = TagRule {
            constraint: Some(semver::VersionReq::parse(">=1.4, <2").unwrap()),
            ..TagRule::default()
        };
        let images = [
            img(1, &["2.1.0"], 1),
            img(2, &["1.5.2"], 2),
            img(3, &["1.3.0"], 3),
        ];
        assert_eq!(newest(&images, &rule).as_deref(), Some("1.5.2"));
    }

    #[test]
    fn a_pattern_must_match_the_whole_tag_and_its_version_capture_is_ordered() {
        let rule = TagRule {
            pattern: Some(Regex::new(r"release-(?P<version>\d+\.\d+\.\d+)").unwrap()),
            ..TagRule::default()
        };
        let images = [
            img(1, &["release-1.2.0"], 1),
            img(2, &["release-1.10.0-x"], 2),
            img(3, &["xrelease-9.0.0"], 3),
        ];
        assert_eq!(newest(&images, &rule).as_deref(), Some("release-1.2.0"));
    }

    #[test]
    fn pushed_at_ordering_takes_the_most_recent_push() {
        let rule = TagRule {
            ordering: TagOrdering::PushedAt,
            ..TagRule::default()
        };
        let images = [
            img(1, &["abc123"], 5),
            img(2, &["def456"], 9),
            img(3, &["0aa"], 1),
        ];
        assert_eq!(newest(&images, &rule).as_deref(), Some("def456"));
    }

    #[test]
    fn numeric_ordering_compares_numbers_not_strings() {
        let rule = TagRule {
            ordering: TagOrdering::Numeric,
            ..TagRule::default()
        };
        let images = [
            img(1, &["9"], 5),
            img(2, &["10"], 1),
            img(3, &["build-11"], 9),
        ];
        assert_eq!(newest(&images, &rule).as_deref(), Some("10"));
    }

    #[test]
    fn lexical_ordering_compares_strings() {
        let rule = TagRule {
            ordering: TagOrdering::Lexical,
            ..TagRule::default()
        };
        let images = [img(1, &["2026-01-09"], 5), img(2, &["2026-01-10"], 1)];
        assert_eq!(newest(&images, &rule).as_deref(), Some("2026-01-10"));
    }
}
