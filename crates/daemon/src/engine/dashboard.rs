//! The promotion dashboard issue: the table of every service × environment
//! (`domain::dashboard`), kept in one open issue labelled `tugboat` and `dashboard`.
//!
//! - It is edited only when its body changes (the body renders the same for the same facts).
//! - It is found by its labels and its block, so a restart updates the same issue; of two
//!   open ones (two replicas racing before the claim below existed) the oldest is kept and
//!   the others are closed.
//! - Before creating it, tugboat claims the creation in the ledger, so a second replica that
//!   finds none at the same moment waits for the first one's instead of opening another.
//! - It takes no commands: `/resume` and the rest go where the change is (the hold issue,
//!   the promotion PR), which keeps one place per decision and the approvers' rules there.

use crate::domain::dashboard::{LABELS, Row, TITLE, is_dashboard, render, short_digest};
use crate::domain::plan::Decision;
use crate::domain::signature::{SignatureCheck, Signer};
use crate::ports::{Issue, PortResult};

use super::{Action, Engine, EnvReport};

/// How long a claim to create the dashboard keeps other replicas from creating it.
const CREATE_CLAIM: std::time::Duration = std::time::Duration::from_secs(600);

/// What publishing the dashboard did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    Created(u64),
    Updated(u64),
    Unchanged(u64),
    /// Another replica claimed its creation moments ago.
    LeftToOther,
}

impl Published {
    /// A word for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created(_) => "created",
            Self::Updated(_) => "updated",
            Self::Unchanged(_) => "unchanged",
            Self::LeftToOther => "left_to_other",
        }
    }
}

/// The dashboard's row for one environment's report.
pub fn row_of(r: &EnvReport) -> Row {
    // What main deploys once this step is done: a merge in it moved it to the candidate; a
    // rollback moved it back to a version the report does not name (the next cycle reads it).
    let candidate = r.decision.candidate();
    let (running, digest) = match (&r.action, candidate) {
        (Action::Merged { .. }, Some(c)) => (Some(c.tag.to_string()), Some(c.digest.to_string())),
        (Action::RolledBack { .. }, _) => (None, None),
        _ => (
            r.deployed.as_deref().map(crate::notify::version),
            r.deployed_digest.clone(),
        ),
    };
    let failed = match &r.action {
        Action::Failed { error } => Some(error.to_string()),
        _ => None,
    };
    let (hold, refused) = flags(&r.decision);
    Row {
        service: r.service.clone(),
        environment: r.environment.clone(),
        running,
        digest,
        candidate: candidate.map(|c| match &r.signature {
            Some(SignatureCheck::Verified(s)) => format!("{} · {}", c.tag, short_signer(&s.signer)),
            _ => c.tag.to_string(),
        }),
        decision: if failed.is_some() {
            "error".into()
        } else {
            r.decision.kind().into()
        },
        reason: failed.unwrap_or_else(|| reason(r)),
        pr: pr(&r.action),
        hold,
        refused,
    }
}

/// Who signed, in the few characters a table cell has: the key's fingerprint, shortened.
fn short_signer(signer: &Signer) -> String {
    match signer {
        Signer::Key { fingerprint, .. } => {
            format!(
                "signed by sha256:{}",
                fingerprint.get(..12).unwrap_or(fingerprint)
            )
        }
        Signer::Certificate { subject, .. } => format!("signed by {subject}"),
    }
}

/// The open PR of a row: number, link, and the approvals it still needs.
fn pr(action: &Action) -> Option<(u64, String, Option<usize>)> {
    match action {
        Action::AwaitingApproval {
            number,
            url,
            approvals,
            ..
        } => Some((*number, url.clone(), approvals.missing())),
        Action::Opened { number, url }
        | Action::Updated { number, url }
        | Action::WaitingForChecks { number, url, .. }
        | Action::AwaitingReview { number, url, .. }
        | Action::Queued { number, url, .. }
        | Action::WaitingForWindow { number, url, .. }
        | Action::WaitingForSyncWindow { number, url, .. } => Some((*number, url.clone(), None)),
        _ => None,
    }
}

/// Why the row stands as it does, in words that do not change from one look to the next.
fn reason(r: &EnvReport) -> String {
    match (&r.action, &r.decision) {
        (
            Action::Merged {
                number,
                verification,
                ..
            },
            _,
        ) => {
            format!("merged #{number}: {}", outcome(verification))
        }
        (
            Action::RolledBack {
                bad,
                number,
                verification,
                ..
            },
            _,
        ) => {
            format!("#{bad} rolled back by #{number}: {}", outcome(verification))
        }
        (_, Decision::UpToDate { .. } | Decision::Promote { .. }) => String::new(),
        (_, Decision::Blocked { reasons, .. }) => reasons.join("; "),
        (
            _,
            Decision::BlockedByPolicy { reason }
            | Decision::Waiting { reason, .. }
            | Decision::NoCandidate { reason },
        ) => reason.clone(),
        (_, Decision::Held { hold, .. }) => hold.detail.clone(),
    }
}

/// A hold (with where to resume it), and a refused or bad digest.
fn flags(decision: &Decision) -> (Option<String>, Option<String>) {
    match decision {
        Decision::Held { hold, issue } => {
            let cause = hold.cause.as_str();
            let hold = match issue {
                Some(n) => format!("{cause} (#{n}; /resume there)"),
                None => cause.to_owned(),
            };
            (Some(hold), None)
        }
        Decision::Blocked { candidate, .. } => {
            let digest = short_digest(candidate.digest.as_str());
            let refused = format!("{} {digest}", candidate.tag);
            (None, Some(refused))
        }
        _ => (None, None),
    }
}

/// A verification in words that do not change from one look to the next (no durations).
fn outcome(v: &super::Verification) -> String {
    match v {
        super::Verification::Healthy { .. } => "Healthy".into(),
        other => other.summary(),
    }
}

impl Engine {
    /// Create the dashboard issue with `rows`, or edit it when its body differs.
    pub async fn publish_dashboard(&self, rows: &[Row]) -> PortResult<Published> {
        let forge = &self.ports.forge;
        let labels: Vec<String> = LABELS.iter().map(|l| (*l).to_owned()).collect();
        let me = forge.me().await?;
        // A person's issue that looks like the dashboard is not adopted (nor closed).
        let found: Vec<Issue> = forge
            .open_issues(&labels)
            .await?
            .into_iter()
            .filter(|i| is_dashboard(&i.body) && self.authored(&i.into(), &me))
            .collect();
        let now = self.clock.now();
        let Some((keep, extra)) = found.split_first() else {
            if !self
                .ports
                .ledger
                .claim_change("dashboard", "create the dashboard issue", CREATE_CLAIM)
                .await?
            {
                return Ok(Published::LeftToOther);
            }
            let body = render(rows, None, now);
            let created = forge.open_issue(TITLE, &body, &labels).await?;
            tracing::info!(issue = created.number, "dashboard issue created");
            // Where the token may pin: a refusal leaves it unpinned, which is all it costs.
            if let Err(e) = forge.pin_issue(created.number).await {
                tracing::warn!(issue = created.number, error = %e, "cannot pin the dashboard issue; pin it by hand");
            }
            return Ok(Published::Created(created.number));
        };
        for other in extra {
            tracing::warn!(
                issue = other.number,
                kept = keep.number,
                "a second dashboard issue; closing it"
            );
            let note = format!(
                "{}\n\nA duplicate of #{}, which tugboat keeps up to date.",
                other.body, keep.number
            );
            forge
                .update_issue(other.number, &other.title, &note, false)
                .await?;
        }
        let body = render(rows, Some(&keep.body), now);
        if body == keep.body && keep.title == TITLE {
            return Ok(Published::Unchanged(keep.number));
        }
        forge.update_issue(keep.number, TITLE, &body, true).await?;
        Ok(Published::Updated(keep.number))
    }
}
