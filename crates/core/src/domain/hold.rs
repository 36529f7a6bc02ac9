//! Holds: where a person and tugboat disagree about an environment, the person wins.
//!
//! An environment is held when someone changed what it runs behind tugboat's back (a commit
//! on main that tugboat did not make puts another image there than tugboat last promoted; an
//! Argo CD rollback; automated sync turned off after tugboat's last promotion), when an
//! approver asked for it (`/hold` on the merged promotion it runs), when a rollback would
//! deploy an image that is gone or refused by the gate, or when a Rollout stays paused past
//! the environment's `pause_timeout` after a merge. A held environment gets
//! no promotion and none of its PRs is touched until an approver comments `/resume`.
//!
//! The hold lives in a GitHub issue (labels `tugboat:hold`, `service:…`, `env:…`, and the
//! block below), so a restart or a second replica reads the same hold. This module is the
//! rule and the block; the engine gathers the facts and writes the issue.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::block;
use super::image::{self, ImageRef};
use super::promotion::PromotionState;

/// Where a hold issue's body keeps its machine-readable state.
pub const HOLD_MARKER: &str = "<!-- tugboat:hold ";
/// The label of hold issues.
pub const HOLD_LABEL: &str = "tugboat:hold";

/// Why an environment is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// A commit on main that tugboat did not make changed the image (a manual rollback, a
    /// hand-pinned tag).
    ManualChange,
    /// Someone rolled the Argo CD application back (or synced an older revision) after
    /// tugboat's last promotion.
    ArgoRollback,
    /// The application's automated sync was turned off after tugboat's last promotion.
    AutoSyncOff,
    /// An approver commented `/hold` on the promotion the environment runs.
    Command,
    /// A rollback was due, but the image to go back to can no longer be pulled: archived,
    /// expired by a lifecycle rule, or deleted (ECR user guide, "Archiving an image";
    /// lifecycle policies). A rollback PR to it would only trade one outage for another
    /// (ImagePullBackOff).
    RollbackTargetGone,
    /// A rollback was due, but the image to go back to does not pass the environment's scan
    /// gate (a finding disclosed since it ran, a scan not complete): tugboat writes nothing
    /// into an environment that the gate would refuse as a candidate.
    RollbackTargetBlocked,
    /// A Rollout stayed paused at a step past the environment's `pause_timeout` after the
    /// merge (`on_pause: wait`): a person promotes or aborts it; tugboat never rolls a
    /// paused canary back.
    PausedRollout,
}

impl Cause {
    /// A short word for metric labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ManualChange => "manual-change",
            Self::ArgoRollback => "argocd-rollback",
            Self::AutoSyncOff => "auto-sync-off",
            Self::Command => "command",
            Self::RollbackTargetGone => "rollback-target-gone",
            Self::RollbackTargetBlocked => "rollback-target-blocked",
            Self::PausedRollout => "paused-rollout",
        }
    }

    /// Whether resuming means tugboat's record of its last promotion no longer stands (the
    /// environment was changed by hand): after `/resume` it promotes again from what runs.
    pub fn forgets_record(self) -> bool {
        !matches!(
            self,
            Self::Command
                | Self::RollbackTargetGone
                | Self::RollbackTargetBlocked
                | Self::PausedRollout
        )
    }
}

/// A hold, as its issue records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub service: String,
    pub environment: String,
    pub cause: Cause,
    /// Who made the change or asked for the hold, when known.
    #[serde(default)]
    pub by: Option<String>,
    /// The commit on main that made the change (manual changes).
    #[serde(default)]
    pub commit: Option<String>,
    /// When tugboat saw it (or when the change was made, when known).
    pub since: DateTime<Utc>,
    /// What the environment deployed on main when it was held.
    #[serde(default)]
    pub deployed: Option<String>,
    /// What happened, in a sentence.
    pub detail: String,
    /// Comment commands up to this id have been answered.
    #[serde(default)]
    pub answered_through: u64,
}

/// Where a hold issue records that its hold was lifted (by whom, when): a hold issue a
/// person reopens after that holds nothing again (its body is sealed, `domain::seal`).
pub const LIFTED_MARKER: &str = "<!-- tugboat:lifted ";

/// Who lifted a hold, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifted {
    pub by: String,
    pub at: DateTime<Utc>,
}

impl Lifted {
    /// The lift recorded in `body`, if any.
    pub fn parse(body: &str) -> Option<Self> {
        block::read(body, LIFTED_MARKER)
    }

    /// `body` with this lift recorded.
    pub fn write_into(&self, body: &str) -> String {
        block::write(body, LIFTED_MARKER, self)
    }
}

impl Hold {
    /// The hold block of an issue body; `None` when it has none that parses (the issue is
    /// then not tugboat's record of a hold).
    pub fn parse(body: &str) -> Option<Self> {
        block::read(body, HOLD_MARKER)
    }

    /// `body` with this hold in its block.
    pub fn write_into(&self, body: &str) -> String {
        block::write(body, HOLD_MARKER, self)
    }

    /// The labels of this hold's issue.
    pub fn labels(service: &str, environment: &str) -> Vec<String> {
        vec![
            HOLD_LABEL.to_owned(),
            format!("service:{service}"),
            format!("env:{environment}"),
        ]
    }
}

/// What Argo CD shows about the environment's application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFacts {
    /// `spec.syncPolicy.automated` is set.
    pub automated: bool,
    /// The images the application runs (`summary.images`).
    pub images: Vec<String>,
    /// The last operation: who started it (`None` when Argo CD's automation did) and when.
    pub last_operation: Option<(Option<String>, DateTime<Utc>)>,
}

/// tugboat's record of its last promotion to the environment: the merged PR labelled
/// `tugboat:deployed`.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub state: &'a PromotionState,
    pub merged_at: DateTime<Utc>,
}

/// What the hold rule looks at.
pub struct Facts<'a> {
    /// The environment's open hold, if its issue exists.
    pub open: Option<&'a Hold>,
    /// What main's files deploy now.
    pub deployed: Option<&'a ImageRef>,
    /// tugboat's last promotion there, if it has one.
    pub record: Option<Record<'a>>,
    /// The application, when it was read.
    pub app: Option<&'a AppFacts>,
}

/// What the rule says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// tugboat may act.
    Free,
    /// Held already (its issue exists).
    Held(&'a Hold),
    /// Held from now on, for this cause and reason.
    New(Cause, String),
}

/// The hold rule, in order: an open hold stands; without a record of tugboat's own
/// promotion nothing can have been overridden; main deploying something else than tugboat
/// promoted is a manual change; then Argo CD: a person's operation after the promotion that
/// left the promoted image not running is a rollback, and automated sync off where the
/// promotion found it on is a person taking over.
pub fn check<'a>(f: &Facts<'a>) -> Verdict<'a> {
    if let Some(hold) = f.open {
        return Verdict::Held(hold);
    }
    let Some(record) = f.record else {
        return Verdict::Free;
    };
    let promoted = record.state.target_text();
    if !f.deployed.is_some_and(|d| record.state.is_deployed_as(d)) {
        let now = f.deployed.map_or("nothing".to_owned(), ToString::to_string);
        return Verdict::New(
            Cause::ManualChange,
            format!("main deploys {now}, not {promoted} that tugboat promoted"),
        );
    }
    let Some(app) = f.app else {
        return Verdict::Free;
    };
    if let Some((Some(user), at)) = &app.last_operation
        && *at > record.merged_at
        && let Some(wanted) = f.deployed
        && !image::runs(&app.images, wanted)
    {
        return Verdict::New(
            Cause::ArgoRollback,
            format!(
                "@{user} ran an Argo CD operation at {} and the application no longer runs {promoted}",
                at.format("%Y-%m-%d %H:%M UTC")
            ),
        );
    }
    if record.state.auto_sync == Some(true) && !app.automated {
        return Verdict::New(
            Cause::AutoSyncOff,
            format!(
                "the application's automated sync was turned off after tugboat promoted {promoted}"
            ),
        );
    }
    Verdict::Free
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::image::{Digest, Tag};

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn promoted(auto_sync: Option<bool>) -> PromotionState {
        PromotionState {
            service: "api".into(),
            environment: "dev".into(),
            tag: Some(Tag::parse("1.1.0").unwrap()),
            digest: Some(Digest::parse(D1).unwrap()),
            from: None,
            answered_through: 0,
            rollback_of: None,
            auto_sync,
        }
    }

    fn r(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    fn app(automated: bool, image: &str, op: Option<(Option<&str>, &str)>) -> AppFacts {
        AppFacts {
            automated,
            images: vec![image.to_owned()],
            last_operation: op.map(|(u, at)| (u.map(str::to_owned), t(at))),
        }
    }

    fn hold() -> Hold {
        Hold {
            service: "api".into(),
            environment: "dev".into(),
            cause: Cause::Command,
            by: Some("alice".into()),
            commit: None,
            since: t("2026-11-30T10:00:00Z"),
            deployed: None,
            detail: "asked".into(),
            answered_through: 0,
        }
    }

    #[test]
    fn the_rule_table_holds_for_each_kind_of_disagreement_and_only_then() {
        let state = promoted(Some(true));
        let record = Record {
            state: &state,
            merged_at: t("2026-11-30T09:00:00Z"),
        };
        let promoted_image = format!("reg/api:1.1.0@{D1}");
        let old_image = format!("reg/api:1.0.0@{D2}");
        let on_main = Some(r(&promoted_image));
        let rolled = Some(r(&old_image));
        let later = "2026-11-30T11:00:00Z";
        let earlier = "2026-11-30T08:00:00Z";
        let open = hold();
        #[rustfmt::skip]
        let cases = [
            ("an open hold stands", true, &rolled, false, None, "held"),
            ("no record of tugboat's own: nothing overridden", false, &rolled, false, None, "free"),
            ("main deploys what tugboat promoted", false, &on_main, true, Some(app(true, &promoted_image, None)), "free"),
            ("main deploys another image", false, &rolled, true, None, "manual-change"),
            ("main deploys nothing of the service", false, &None, true, None, "manual-change"),
            ("a person's Argo CD rollback after the promotion", false, &on_main, true, Some(app(false, &old_image, Some((Some("oncall"), later)))), "argocd-rollback"),
            ("an automated operation is not a person", false, &on_main, true, Some(app(true, &old_image, Some((None, later)))), "free"),
            ("an operation before the promotion is not an override", false, &on_main, true, Some(app(true, &old_image, Some((Some("oncall"), earlier)))), "free"),
            ("a person's sync that runs the promoted image", false, &on_main, true, Some(app(true, &promoted_image, Some((Some("oncall"), later)))), "free"),
            ("automated sync turned off", false, &on_main, true, Some(app(false, &promoted_image, None)), "auto-sync-off"),
        ];
        for (name, is_open, deployed, has_record, app, want) in cases {
            let facts = Facts {
                open: is_open.then_some(&open),
                deployed: deployed.as_ref(),
                record: has_record.then_some(record),
                app: app.as_ref(),
            };
            let got = match check(&facts) {
                Verdict::Free => "free",
                Verdict::Held(_) => "held",
                Verdict::New(cause, _) => cause.as_str(),
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn automated_sync_off_is_no_hold_when_the_promotion_found_it_off_or_did_not_record_it() {
        for auto_sync in [Some(false), None] {
            let state = promoted(auto_sync);
            let record = Record {
                state: &state,
                merged_at: t("2026-11-30T09:00:00Z"),
            };
            let on_main = r(&format!("reg/api:1.1.0@{D1}"));
            let manual = app(false, &format!("reg/api:1.1.0@{D1}"), None);
            let facts = Facts {
                open: None,
                deployed: Some(&on_main),
                record: Some(record),
                app: Some(&manual),
            };
            assert_eq!(check(&facts), Verdict::Free, "{auto_sync:?}");
        }
    }

    #[test]
    fn a_manual_change_says_what_main_deploys_and_what_tugboat_promoted() {
        let state = promoted(None);
        let record = Record {
            state: &state,
            merged_at: t("2026-11-30T09:00:00Z"),
        };
        let rolled = r("reg/api:1.0.0");
        let facts = Facts {
            open: None,
            deployed: Some(&rolled),
            record: Some(record),
            app: None,
        };
        let Verdict::New(Cause::ManualChange, why) = check(&facts) else {
            panic!("not held")
        };
        assert_eq!(
            why,
            "main deploys reg/api:1.0.0, not 1.1.0 (sha256:111111111111) that tugboat promoted"
        );
    }

    #[test]
    fn a_hold_reads_back_from_the_issue_body_it_was_written_into() {
        let h = Hold {
            detail: "tricky --> <!-- tugboat:hold {}".into(),
            commit: Some("abc123".into()),
            ..hold()
        };
        let body = h.write_into("tugboat holds api in dev.\n");
        assert!(body.starts_with("tugboat holds api in dev.\n"));
        assert_eq!(Hold::parse(&body), Some(h));
        assert_eq!(Hold::parse("no block here"), None);
        assert!(Cause::ManualChange.forgets_record() && !Cause::Command.forgets_record());
    }
}
