//! The promotion plan: for one service and environment, what should change and why.

use std::fmt;

use chrono::{DateTime, Utc};

use super::gate::GateDecision;
use super::hold::Hold;
use super::image::ImageRef;
use super::select::{Candidate, TagRule};

/// Where a candidate stands against what the GitOps repository deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The candidate is what is deployed.
    Deployed,
    /// What is deployed is newer than the candidate: never promote backwards.
    Behind,
    /// The candidate is newer: a promotion is possible.
    Ahead,
}

/// Compare a candidate with the deployed reference. `deployed_record` is the registry's
/// record of the deployed tag, when the registry still has it.
pub fn position(
    deployed: Option<&ImageRef>,
    deployed_record: Option<&Candidate>,
    candidate: &Candidate,
    rule: &TagRule,
) -> Position {
    let Some(d) = deployed else {
        return Position::Ahead;
    };
    let same_tag = d.tag.as_ref() == Some(&candidate.tag);
    let same_digest = d.digest.as_ref().is_none_or(|x| *x == candidate.digest);
    if same_tag && same_digest {
        return Position::Deployed;
    }
    if let Some(rec) = deployed_record
        && rule.accepts(&rec.tag)
        && rule.compare(rec, candidate).is_gt()
    {
        return Position::Behind;
    }
    Position::Ahead
}

/// The plan for one service in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    UpToDate {
        deployed: String,
    },
    Promote {
        from: Option<String>,
        to: Candidate,
    },
    Blocked {
        candidate: Candidate,
        reasons: Vec<String>,
    },
    /// The service's policy refuses to be read (fail closed): nothing is promoted, and the
    /// reason names the parameter and the field.
    BlockedByPolicy {
        reason: String,
    },
    Waiting {
        candidate: Option<Candidate>,
        reason: String,
    },
    NoCandidate {
        reason: String,
    },
    /// A person changed the environment behind tugboat's back, or an approver held it:
    /// nothing is promoted there, and none of its PRs touched, until an approver resumes.
    /// `issue`: the hold's issue (none yet in a plan).
    Held {
        hold: Hold,
        issue: Option<u64>,
    },
}

impl Decision {
    /// A short lowercase word for tables and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UpToDate { .. } => "up-to-date",
            Self::Promote { .. } => "promote",
            Self::Blocked { .. } | Self::BlockedByPolicy { .. } => "blocked",
            Self::Waiting { .. } => "waiting",
            Self::NoCandidate { .. } => "no-candidate",
            Self::Held { .. } => "held",
        }
    }

    pub fn candidate(&self) -> Option<&Candidate> {
        match self {
            Self::Promote { to, .. } => Some(to),
            Self::Blocked { candidate, .. } => Some(candidate),
            Self::Waiting { candidate, .. } => candidate.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UpToDate { deployed } => write!(f, "up to date at {deployed}"),
            Self::Promote { from, to } => write!(
                f,
                "promote {} -> {} ({})",
                from.as_deref().map_or("(nothing)", short_tag),
                to.tag,
                to.digest.short()
            ),
            Self::Blocked { candidate, reasons } => {
                write!(f, "{} blocked: {}", candidate.tag, reasons.join("; "))
            }
            Self::BlockedByPolicy { reason } => write!(f, "blocked: {reason}"),
            Self::Waiting { reason, .. } => write!(f, "waiting: {reason}"),
            Self::NoCandidate { reason } => write!(f, "no candidate: {reason}"),
            Self::Held { hold, issue } => {
                write!(f, "held: {}", hold.detail)?;
                if let Some(commit) = &hold.commit {
                    write!(f, " (commit {})", &commit[..commit.len().min(12)])?;
                }
                if let Some(by) = &hold.by {
                    write!(f, " by @{by}")?;
                }
                match issue {
                    Some(n) => write!(f, "; an approver comments /resume on #{n}"),
                    None => write!(f, "; an approver comments /resume on its hold issue"),
                }
            }
        }
    }
}

/// The tag (or digest) part of a reference, for tables.
fn short_tag(r: &str) -> &str {
    let last = r.rsplit('/').next().unwrap_or(r);
    last.split_once(':').map_or(last, |(_, t)| t)
}

/// Whether a candidate has run long enough in the previous environment (`prev`), measured
/// from when Argo CD deployed it there. Unknown deployment time with a soak set: wait (fail
/// closed), saying why.
pub fn soaked(
    soak: std::time::Duration,
    deployed_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    prev: &str,
) -> Result<(), String> {
    if soak.is_zero() {
        return Ok(());
    }
    let Some(since) = deployed_at else {
        return Err(format!(
            "soak of {} in {prev} cannot be measured: Argo CD reports no deployment time",
            humantime::format_duration(soak)
        ));
    };
    let soak = chrono::Duration::from_std(soak).unwrap_or(chrono::Duration::MAX);
    let ready = since
        .checked_add_signed(soak)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if now >= ready {
        return Ok(());
    }
    let left = (ready - now).to_std().unwrap_or_default();
    Err(format!(
        "soaking in {prev} until {} ({} left)",
        ready.format("%Y-%m-%d %H:%M UTC"),
        humantime::format_duration(std::time::Duration::from_secs(left.as_secs()))
    ))
}

/// Decide for a candidate that is ahead of what is deployed, given its gate result.
pub fn decide(deployed: Option<&ImageRef>, candidate: Candidate, gate: &GateDecision) -> Decision {
    match gate {
        GateDecision::Pass { .. } => Decision::Promote {
            from: deployed.map(ToString::to_string),
            to: candidate,
        },
        GateDecision::Block { reasons, .. } => Decision::Blocked {
            candidate,
            reasons: reasons.clone(),
        },
        GateDecision::Wait { reason } => Decision::Waiting {
            candidate: Some(candidate),
            reason: reason.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soak_waits_until_its_time_and_fails_closed_without_a_deployment_time() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let hour = std::time::Duration::from_secs(3600);
        let since = Some(at("2026-11-23T10:00:00Z"));
        assert_eq!(
            soaked(hour, since, at("2026-11-23T11:00:00Z"), "dev"),
            Ok(())
        );
        assert_eq!(
            soaked(hour, since, at("2026-11-23T10:20:00Z"), "dev"),
            Err("soaking in dev until 2026-11-23 11:00 UTC (40m left)".into())
        );
        assert!(
            soaked(hour, None, at("2026-11-23T10:20:00Z"), "dev")
                .unwrap_err()
                .contains("cannot be measured")
        );
        assert_eq!(
            soaked(
                std::time::Duration::ZERO,
                None,
                at("2026-11-23T10:20:00Z"),
                "dev"
            ),
            Ok(())
        );
    }
    use crate::domain::image::{Digest, Tag};
    use chrono::{TimeZone, Utc};

    fn cand(tag: &str, n: u8, t: i64) -> Candidate {
        Candidate {
            tag: Tag::parse(tag).unwrap(),
            digest: Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap(),
            pushed_at: Utc.timestamp_opt(t, 0).unwrap(),
        }
    }

    #[test]
    fn the_deployed_tag_is_not_promoted_again() {
        let c = cand("1.2.0", 1, 1);
        let d = ImageRef::parse("r.example.com/app:1.2.0").unwrap();
        assert_eq!(
            position(Some(&d), Some(&c), &c, &TagRule::default()),
            Position::Deployed
        );
    }

    #[test]
    fn promotion_only_goes_forward() {
        let rule = TagRule::default();
        let newer = cand("1.3.0", 2, 2);
        let older = cand("1.2.0", 1, 1);
        let d = ImageRef::parse("r.example.com/app:1.3.0").unwrap();
        assert_eq!(
            position(Some(&d), Some(&newer), &older, &rule),
            Position::Behind
        );
        let d = ImageRef::parse("r.example.com/app:1.2.0").unwrap();
        assert_eq!(
            position(Some(&d), Some(&older), &newer, &rule),
            Position::Ahead
        );
    }

    #[test]
    fn the_same_tag_with_a_different_digest_is_a_promotion() {
        let c = cand("1.2.0", 2, 1);
        let d = ImageRef::parse(&format!(
            "r.example.com/app:1.2.0@sha256:{}",
            "01".repeat(32)
        ))
        .unwrap();
        assert_eq!(
            position(Some(&d), None, &c, &TagRule::default()),
            Position::Ahead
        );
    }

    #[test]
    fn a_blocking_gate_becomes_a_blocked_decision_with_reasons() {
        let gate = GateDecision::Block {
            counts: Default::default(),
            reasons: vec!["1 CRITICAL".into()],
        };
        let d = decide(None, cand("1.0.0", 1, 1), &gate);
        assert_eq!(d.kind(), "blocked");
        assert_eq!(d.to_string(), "1.0.0 blocked: 1 CRITICAL");
    }
}
