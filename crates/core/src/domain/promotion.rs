//! A promotion PR's machine-readable state: what it promotes, from what, and how far tugboat
//! got with it, kept in a hidden block of the PR body and read back after a restart (or by
//! another replica). Anyone who can edit the PR can edit the block, so what is read back is
//! parsed into the validated image types here, at the boundary, and a block that does not
//! parse is refused with the field and the value.

use serde::{Deserialize, Serialize};

use super::block;
use super::image::{Digest, ImageRef, Repository, Tag};

/// Where a PR body keeps its machine-readable state.
pub const STATE_MARKER: &str = "<!-- tugboat:state ";

/// The state of a promotion (or rollback) PR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionState {
    pub service: String,
    pub environment: String,
    /// The tag promoted (none for a rollback to a digest-only reference).
    pub tag: Option<Tag>,
    /// The digest promoted (none for a rollback to a tag-only reference).
    pub digest: Option<Digest>,
    /// The reference the environment deployed before (what a rollback restores).
    pub from: Option<ImageRef>,
    /// Comment commands up to this id have been answered.
    pub answered_through: u64,
    /// For a rollback PR: the promotion PR it reverts.
    pub rollback_of: Option<u64>,
    /// Whether the application synced by itself when the promotion was verified (recorded
    /// then; a person turning it off afterwards holds the environment).
    pub auto_sync: Option<bool>,
}

/// Why a PR body's state block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the body has no tugboat state block")]
    Missing,
    #[error("the tugboat state block is not the JSON tugboat writes: {0}")]
    Json(String),
    #[error("the tugboat state block's {field} '{value}' is invalid: {reason}")]
    Field {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("the tugboat state block names neither a tag nor a digest")]
    NoImage,
}

/// The block as written: plain strings, an empty string for "none" (as tugboat has always
/// written it, so bodies written before this type still read).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Wire {
    service: String,
    environment: String,
    tag: String,
    digest: String,
    from: Option<String>,
    answered_through: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback_of: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_sync: Option<bool>,
}

fn field<T, E: std::fmt::Display>(
    name: &'static str,
    value: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, StateError> {
    block::optional(value, parse).map_err(|(value, reason)| StateError::Field {
        field: name,
        value,
        reason,
    })
}

impl PromotionState {
    /// The state block of `body`, parsed into validated values.
    pub fn parse(body: &str) -> Result<Self, StateError> {
        let json = block::raw(body, STATE_MARKER).ok_or(StateError::Missing)?;
        let w: Wire = serde_json::from_str(json).map_err(|e| StateError::Json(e.to_string()))?;
        let state = Self {
            tag: field("tag", &w.tag, Tag::parse)?,
            digest: field("digest", &w.digest, Digest::parse)?,
            from: match &w.from {
                Some(f) => field("from", f, ImageRef::parse)?,
                None => None,
            },
            service: w.service,
            environment: w.environment,
            answered_through: w.answered_through,
            rollback_of: w.rollback_of,
            auto_sync: w.auto_sync,
        };
        if state.tag.is_none() && state.digest.is_none() {
            return Err(StateError::NoImage);
        }
        Ok(state)
    }

    /// `body` with this state in its block.
    pub fn write_into(&self, body: &str) -> String {
        let wire = Wire {
            service: self.service.clone(),
            environment: self.environment.clone(),
            tag: block::text(self.tag.as_ref()),
            digest: block::text(self.digest.as_ref()),
            from: self.from.as_ref().map(ToString::to_string),
            answered_through: self.answered_through,
            rollback_of: self.rollback_of,
            auto_sync: self.auto_sync,
        };
        block::write(body, STATE_MARKER, &wire)
    }

    /// The promoted image of `repository`: its tag and digest.
    pub fn image(&self, repository: &Repository) -> ImageRef {
        ImageRef {
            repository: repository.clone(),
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        }
    }

    /// The promoted image as people read it: `repository:tag`, or `repository@digest` when
    /// there is no tag.
    pub fn reference(&self, repository: &Repository) -> ImageRef {
        ImageRef {
            repository: repository.clone(),
            tag: self.tag.clone(),
            digest: if self.tag.is_some() {
                None
            } else {
                self.digest.clone()
            },
        }
    }

    /// The tag as text (empty when there is none).
    pub fn tag_text(&self) -> &str {
        self.tag.as_ref().map_or("", Tag::as_str)
    }

    /// What was promoted, as people read it: `tag (short digest)`, or either alone.
    pub fn target_text(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => format!("{t} ({})", d.short()),
            (Some(t), None) => t.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "nothing".to_owned(),
        }
    }

    /// The digest as text (empty when there is none).
    pub fn digest_text(&self) -> &str {
        self.digest.as_ref().map_or("", Digest::as_str)
    }

    /// Whether `deployed` is the image this state promoted: its digest when the reference
    /// names one, else its tag.
    pub fn is_deployed_as(&self, deployed: &ImageRef) -> bool {
        match &deployed.digest {
            Some(d) => self.digest.as_ref() == Some(d),
            None => deployed.tag.is_some() && deployed.tag == self.tag,
        }
    }
}

/// Read as "answered through": the record of which commands were answered was lost (its body
/// was changed by someone else, `domain::seal`), so every command posted so far counts as
/// answered: none is carried out twice, and people are asked to post again.
pub const LOST: u64 = u64::MAX;

/// The comment id up to which commands were answered, from a PR body's state block (0 when
/// the body has none that parses, [`LOST`] when its blocks were taken out as forged).
pub fn answered_through(body: &str) -> u64 {
    through(
        PromotionState::parse(body).ok().map(|s| s.answered_through),
        body,
    )
}

/// `answered` as read from a body's block, or what its absence means: [`LOST`] when the body
/// was forgotten, 0 (a body that never had one) otherwise.
pub fn through(answered: Option<u64>, body: &str) -> u64 {
    answered.unwrap_or(if super::seal::forgotten(body) {
        LOST
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> String {
        format!("sha256:{}", "a".repeat(64))
    }

    #[test]
    fn a_state_reads_back_as_written_including_blocks_written_as_plain_strings_before() {
        let old = format!(
            "Promote api to dev\n\n<!-- tugboat:state {{\"service\":\"api\",\"environment\":\"dev\",\"tag\":\"1.1.0\",\"digest\":\"{}\",\"from\":\"registry.example.com/api:1.0.0\",\"answered_through\":3}} -->\n",
            digest()
        );
        let s = PromotionState::parse(&old).unwrap();
        assert_eq!(s.tag.as_ref().map(Tag::as_str), Some("1.1.0"));
        assert_eq!(
            s.from.as_ref().map(ToString::to_string).as_deref(),
            Some("registry.example.com/api:1.0.0")
        );
        assert_eq!(s.answered_through, 3);
        let rewritten = PromotionState {
            answered_through: 9,
            ..s.clone()
        }
        .write_into(&old);
        assert_eq!(
            PromotionState::parse(&rewritten).unwrap().answered_through,
            9
        );
        assert_eq!(rewritten.matches(STATE_MARKER).count(), 1);
        let repo = Repository::parse("registry.example.com/api").unwrap();
        assert_eq!(
            s.reference(&repo).to_string(),
            "registry.example.com/api:1.1.0"
        );
        assert!(s.is_deployed_as(&ImageRef::parse("registry.example.com/api:1.1.0").unwrap()));
        assert!(
            !s.is_deployed_as(
                &ImageRef::parse(&format!(
                    "registry.example.com/api@sha256:{}",
                    "b".repeat(64)
                ))
                .unwrap()
            )
        );
    }

    #[test]
    fn a_tampered_block_is_refused_naming_the_field_and_the_value() {
        let body = |tag: &str, digest: &str| {
            format!(
                "<!-- tugboat:state {{\"service\":\"api\",\"environment\":\"dev\",\"tag\":\"{tag}\",\"digest\":\"{digest}\"}} -->"
            )
        };
        let e = PromotionState::parse(&body("1.0;rm -rf", &digest())).unwrap_err();
        assert!(
            matches!(&e, StateError::Field { field: "tag", value, .. } if value == "1.0;rm -rf"),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("the tugboat state block's tag '1.0;rm -rf' is invalid")
        );
        let e = PromotionState::parse(&body("1.0.0", "sha256:short")).unwrap_err();
        assert!(
            matches!(
                e,
                StateError::Field {
                    field: "digest",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            PromotionState::parse(&body("", "")),
            Err(StateError::NoImage)
        );
        assert_eq!(PromotionState::parse("no block"), Err(StateError::Missing));
        assert!(matches!(
            PromotionState::parse("<!-- tugboat:state {\"tag\": -->"),
            Err(StateError::Json(_))
        ));
    }
}
