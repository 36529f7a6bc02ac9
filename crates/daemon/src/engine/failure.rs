//! Why a step of the engine failed, typed, so that a report says it in words and a metric
//! counts it by step and kind (`tugboat_step_failures_total{step,kind}`).

use thiserror::Error;

use crate::domain::promotion::StateError;
use crate::manifest::ManifestError;
use crate::ports::PortError;

/// The step of a reconcile that failed. Its label is bounded (one per variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Reading or resolving the policy.
    Policy,
    /// Listing the registry's images.
    Registry,
    /// Reading the labelled promotion PRs.
    Watch,
    /// Reading the environment's files on the base branch.
    Read,
    /// Reading an image's scan findings.
    Scan,
    /// Editing the manifests.
    Edit,
    /// Committing and pushing the branch.
    Propose,
    /// Finding, opening or updating the pull request and its statuses.
    PullRequest,
    /// Reading and answering comment commands.
    Commands,
    /// Deciding the merge (sync windows, checks) and merging.
    Merge,
    /// Finishing the verification of a merged promotion.
    Verify,
    /// Moving the labels after a verification.
    Settle,
    /// Closing a PR whose image is now refused.
    Close,
    /// Reverting a bad promotion.
    Rollback,
    /// Keeping a service's security issue in step with a rescan.
    Issue,
    /// Seeing, recording or lifting an environment's hold.
    Hold,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::Registry => "registry",
            Self::Watch => "watch",
            Self::Hold => "hold",
            Self::Read => "read",
            Self::Scan => "scan",
            Self::Edit => "edit",
            Self::Propose => "propose",
            Self::PullRequest => "pull_request",
            Self::Commands => "commands",
            Self::Merge => "merge",
            Self::Verify => "verify",
            Self::Settle => "settle",
            Self::Close => "close",
            Self::Rollback => "rollback",
            Self::Issue => "issue",
        }
    }
}

/// What went wrong, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Cause {
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("{path}: {error}")]
    Manifest { path: String, error: ManifestError },
    #[error("{path} does not exist on the base branch")]
    MissingFile { path: String },
    #[error("policy unavailable: {0}")]
    PolicyUnavailable(PortError),
    #[error("blocked by invalid policy: {0}")]
    InvalidPolicy(String),
    #[error("no policy for environment {0}")]
    NoEnvironmentPolicy(String),
    #[error("cannot read the PRs labelled {label}: {error}")]
    Watch {
        label: &'static str,
        error: PortError,
    },
    #[error("cannot read the sync windows: {0}")]
    SyncWindows(PortError),
    #[error("checks failed on PR #{pr}: {}; not merging", failed.join(", "))]
    ChecksFailed { pr: u64, failed: Vec<String> },
    #[error("the merge queue removed PR #{pr}: {reason}; queued again once its head changes")]
    RemovedFromQueue { pr: u64, reason: String },
    #[error("the body tugboat wrote for PR #{pr}: {error}")]
    OwnState { pr: u64, error: StateError },
    #[error("the body tugboat wrote for group PR #{pr}: {error}")]
    OwnGroupState {
        pr: u64,
        error: crate::domain::group::GroupError,
    },
    #[error("{service} is not configured in environment {environment}")]
    NotConfigured {
        service: String,
        environment: String,
    },
    #[error("PR #{0} is merged but has no merge commit")]
    NoMergeCommit(u64),
    #[error(
        "PR #{0} is marked bad but recorded no earlier image: nothing to roll back to; revert it by hand"
    )]
    NothingToRollBackTo(u64),
    #[error("StartImageScan failed: {0}")]
    StartScan(PortError),
    #[error("the rollback PR #{pr} could not be merged ({error}); merge it by hand")]
    RollbackNotMerged { pr: u64, error: PortError },
}

impl Cause {
    /// A bounded label: the outside system's failure kind, or the engine's own reason.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Port(e)
            | Self::PolicyUnavailable(e)
            | Self::Watch { error: e, .. }
            | Self::SyncWindows(e)
            | Self::StartScan(e)
            | Self::RollbackNotMerged { error: e, .. } => e.metric_label(),
            Self::Manifest { .. } => "manifest",
            Self::MissingFile { .. } => "missing_file",
            Self::InvalidPolicy(_) | Self::NoEnvironmentPolicy(_) => "invalid_policy",
            Self::ChecksFailed { .. } => "checks_failed",
            Self::RemovedFromQueue { .. } => "removed_from_queue",
            Self::OwnState { .. } | Self::OwnGroupState { .. } => "state_block",
            Self::NotConfigured { .. } => "not_configured",
            Self::NoMergeCommit(_) => "inconsistent",
            Self::NothingToRollBackTo(_) => "no_earlier_image",
        }
    }
}

/// A failed engine step: which step, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{cause}")]
pub struct StepError {
    pub step: Step,
    pub cause: Cause,
}

impl StepError {
    pub fn new(step: Step, cause: impl Into<Cause>) -> Self {
        Self {
            step,
            cause: cause.into(),
        }
    }

    /// The bounded `kind` label of `tugboat_step_failures_total`.
    pub fn metric_label(&self) -> &'static str {
        self.cause.kind()
    }
}

/// Name the step a fallible call belongs to: `repo.propose(…).await.at(Step::Propose)?`.
pub trait At<T> {
    fn at(self, step: Step) -> Result<T, StepError>;
}

impl<T, E: Into<Cause>> At<T> for Result<T, E> {
    fn at(self, step: Step) -> Result<T, StepError> {
        self.map_err(|e| StepError::new(step, e))
    }
}

/// A manifest problem of `path`, met in `step`.
pub(super) fn manifest_error(
    step: Step,
    path: &str,
    error: crate::manifest::ManifestError,
) -> StepError {
    StepError::new(
        step,
        Cause::Manifest {
            path: path.to_owned(),
            error,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ErrorKind;

    #[test]
    fn a_step_error_reads_as_its_cause_and_labels_by_the_outside_systems_kind() {
        let port = PortError::new("github", "merge", ErrorKind::Throttled, "slow down");
        let e: Result<(), _> = Err(port.clone());
        let e = e.at(Step::Merge).unwrap_err();
        assert_eq!(e.to_string(), "github merge: slow down");
        assert_eq!((e.step.as_str(), e.metric_label()), ("merge", "throttled"));
        let own = StepError::new(
            Step::Merge,
            Cause::ChecksFailed {
                pr: 7,
                failed: vec!["lint".into()],
            },
        );
        assert_eq!(own.to_string(), "checks failed on PR #7: lint; not merging");
        assert_eq!(own.metric_label(), "checks_failed");
        let wrapped = StepError::new(Step::Policy, Cause::PolicyUnavailable(port));
        assert_eq!(wrapped.metric_label(), "throttled");
        assert!(
            wrapped
                .to_string()
                .starts_with("policy unavailable: github merge")
        );
    }
}
