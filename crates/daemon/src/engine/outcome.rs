//! What a cycle did: a row per service and environment, with the action taken and how a
//! merged change turned out.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Cause, StepError};
use crate::config::{EnvConfig, ServiceConfig};
use crate::domain::deploy::Evidence;
use crate::domain::gate::Severity;
use crate::domain::plan::Decision;
use crate::domain::policy::PolicySource;

/// What tugboat did about one service in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Opened {
        number: u64,
        url: String,
    },
    Updated {
        number: u64,
        url: String,
    },
    AwaitingApproval {
        number: u64,
        url: String,
        /// The PR's head commit, which approvals are bound to.
        head: String,
        approvals: Approvals,
        /// When the PR's head was committed: approvals are bound to it, so the wait for
        /// them starts there (from the branch, so a restart measures the same).
        since: DateTime<Utc>,
    },
    /// The environment was found changed by a person (or an approver held it): tugboat
    /// opened the hold's issue.
    EnvironmentHeld {
        issue: u64,
        url: String,
        cause: crate::domain::hold::Cause,
    },
    /// GitHub requires approving reviews before the PR merges, which tugboat cannot give:
    /// this many more (said once on the PR).
    AwaitingReview {
        number: u64,
        url: String,
        missing: u32,
    },
    /// In the base branch's merge queue, at this position: the queue merges it (and the
    /// next cycle verifies what it merged).
    Queued {
        number: u64,
        url: String,
        position: u32,
    },
    /// Someone commented `/hold`.
    Held {
        number: u64,
        url: String,
        by: String,
    },
    /// The merge waits for checks: these are running or not reported yet (empty: waiting
    /// for any to report, within `checks_settle`), or, `never_reported`, were expected by
    /// name and did not report within `checks_settle`.
    WaitingForChecks {
        number: u64,
        url: String,
        checks: Vec<String>,
        never_reported: bool,
    },
    /// Ready to merge, but outside the environment's promotion windows.
    WaitingForWindow {
        number: u64,
        url: String,
        opens: Option<DateTime<Utc>>,
    },
    /// Ready to merge, but an Argo CD sync window denies syncs now.
    WaitingForSyncWindow {
        number: u64,
        url: String,
        windows: Vec<String>,
    },
    /// An open PR whose image the gate (or a bad mark) now refuses was closed.
    Closed {
        number: u64,
        url: String,
    },
    Merged {
        number: u64,
        url: String,
        sha: String,
        verification: Verification,
        timing: Timing,
    },
    /// A promotion marked bad (PR `bad`) was reverted by PR `number`.
    RolledBack {
        bad: u64,
        number: u64,
        url: String,
        verification: Verification,
        timing: Timing,
        /// The failed promotion this step merged and verified just before rolling it back
        /// (`rollback: auto`), so that it counts as a deployment too; `None` when the bad
        /// promotion was merged in an earlier step.
        promotion: Option<Timing>,
    },
    /// A step failed: which, and why.
    Failed {
        error: StepError,
    },
}

/// Where a promotion's approvals stand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvals {
    /// How many the environment needs.
    pub needed: u32,
    /// Who approved the current head (`None`: not read, as in a plan, which reads no PR).
    pub given: Option<Vec<String>>,
    /// Who may approve: the environment's listed logins and `org/team`s (empty: anyone
    /// with write access to the GitOps repository).
    pub from: Vec<String>,
}

impl Approvals {
    /// How many more approvals it takes, when who approved is known.
    pub fn missing(&self) -> Option<usize> {
        let given = self.given.as_ref()?.len();
        Some((self.needed.max(1) as usize).saturating_sub(given))
    }
}

/// How a merged promotion turned out in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    Healthy {
        after: Duration,
        /// Whether the application synced by itself then (`None`: not seen, a restart).
        automated: Option<bool>,
        /// What showed that the promoted image runs (`None`: reported before a restart).
        evidence: Option<Evidence>,
    },
    /// It did not become Healthy (Argo CD's words, or the health timeout).
    Failed { reason: String },
    /// Argo CD could not be read (refused token, missing application, unreachable), or a
    /// Rollout is paused within its `pause_timeout`: not known, so never rolled back for;
    /// verified again next cycle.
    Unknown { reason: String },
    /// A Rollout paused past the environment's `pause_timeout` (`on_pause: wait`): never
    /// rolled back; the environment is held and people are told.
    Paused { reason: String },
}

impl Verification {
    /// One line for comments and tables.
    pub fn summary(&self) -> String {
        match self {
            Self::Healthy {
                after,
                evidence: Some(by),
                ..
            } if *by != Evidence::Summary => format!(
                "Healthy after {:.1}s ({})",
                after.as_secs_f64(),
                by.as_str()
            ),
            Self::Healthy { after, .. } => format!("Healthy after {:.1}s", after.as_secs_f64()),
            Self::Failed { reason } => format!("not Healthy: {reason}"),
            Self::Unknown { reason } => format!("not verified: {reason}"),
            Self::Paused { reason } => format!("paused: {reason}"),
        }
    }
}

/// When a merged change's verification ended, and the moment the delivery figures measure
/// it from (`/metrics`' lead time and time to restore).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// When the verification ended, on the engine's clock.
    pub verified_at: DateTime<Utc>,
    /// A promotion: when its image was pushed (`None`: the registry no longer lists it). A
    /// rollback: when the failure it undoes was detected, which is when tugboat marked the
    /// promotion bad (its comment's time; `None` when that comment cannot be read).
    pub since: Option<DateTime<Utc>>,
}

/// One row of a cycle's outcome.
#[derive(Debug, Clone)]
pub struct EnvReport {
    pub service: String,
    pub environment: String,
    /// The environment's Argo CD application (the policy's, else the configured one).
    pub application: String,
    pub deployed: Option<String>,
    /// The digest main deploys: the reference's own, else the registry's for its tag.
    pub deployed_digest: Option<String>,
    pub decision: Decision,
    pub action: Action,
    pub policy: Vec<PolicySource>,
    /// When the scan gate refused the candidate: the severities over their thresholds (empty
    /// when it refused an image without a usable scan).
    pub rejected: Option<Vec<Severity>>,
    /// For a promotion that needs approvals: how many, from whom, and (apply) who gave one.
    pub approvals: Option<Approvals>,
    /// The group the environment promotes in, when its policy groups it.
    pub group: Option<crate::domain::group::Rule>,
    /// The signature check of the candidate's digest, when the policy verifies signatures.
    pub signature: Option<crate::domain::signature::SignatureCheck>,
}

impl EnvReport {
    /// The row of an environment whose step failed before it could decide anything. A policy
    /// that refuses to be read blocks the environment (fail closed), and stays a failure that
    /// `tugboat once` exits non-zero for and the step-failure metric counts.
    pub(super) fn failed(
        svc: &ServiceConfig,
        env: &EnvConfig,
        error: &StepError,
        sources: &[PolicySource],
    ) -> Self {
        let blocked = matches!(
            error.cause,
            Cause::InvalidPolicy(_) | Cause::NoEnvironmentPolicy(_)
        );
        let reason = error.to_string();
        let decision = if blocked {
            Decision::BlockedByPolicy { reason }
        } else {
            Decision::NoCandidate { reason }
        };
        Self {
            service: svc.name.clone(),
            environment: env.name.clone(),
            application: env.argocd_application.clone(),
            deployed: None,
            deployed_digest: None,
            decision,
            action: Action::Failed {
                error: error.clone(),
            },
            policy: sources.to_vec(),
            rejected: None,
            approvals: None,
            group: None,
            signature: None,
        }
    }
}
