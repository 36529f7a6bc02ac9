//! Narrow, domain-shaped interfaces to the outside systems. The engine sees only these;
//! `adapters/` implements them with the real client crates; the tests drive them through the
//! wire-level stand-ins of `sandbox/`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::domain::chatops;
pub use crate::domain::deploy::{Health, OperationPhase, SyncStatus};
use crate::domain::gate::ScanReport;
use crate::domain::image::Digest;
use crate::domain::index::PlatformImage;
use crate::domain::policy::PolicyDocument;
pub use crate::domain::provenance::LabelEvent;
use crate::domain::select::ImageRecord;
use crate::secret::Secret;

mod signatures;
pub use signatures::{PublicKeys, Signatures, StoredSignature};

/// How an outside call failed, which decides whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Network trouble or a 5xx: try again next cycle.
    Transient,
    /// Rate limited: back off.
    Throttled,
    /// The thing asked for does not exist.
    NotFound,
    /// Authentication or permission refused (401/403).
    Denied,
    /// The request was refused as invalid or conflicting (4xx).
    Rejected,
}

/// A failed call to an outside system, naming the system and the operation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{system} {operation}: {message}")]
pub struct PortError {
    pub system: &'static str,
    pub operation: &'static str,
    pub kind: ErrorKind,
    pub message: String,
}

impl PortError {
    pub fn new(
        system: &'static str,
        operation: &'static str,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            system,
            operation,
            kind,
            message: message.into(),
        }
    }

    /// Whether the system refused the call saying `words` (lower case) in its message.
    pub fn refused_for(&self, words: &str) -> bool {
        self.kind == ErrorKind::Rejected && self.message.to_ascii_lowercase().contains(words)
    }

    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self.kind {
            ErrorKind::Transient => "transient",
            ErrorKind::Throttled => "throttled",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Denied => "denied",
            ErrorKind::Rejected => "rejected",
        }
    }
}

pub type PortResult<T> = Result<T, PortError>;

/// Whether an image can still be pulled from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pullable {
    Yes,
    /// Listed, but with this `imageStatus` (`ARCHIVED`, `ACTIVATING`): pulls fail.
    NotActive(String),
    /// Not in the repository (deleted, or expired by a lifecycle rule).
    Gone,
}

/// What asking for a new scan of an image did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStart {
    Started,
    /// ECR basic scanning allows one scan per image per 24 hours; this image had its scan.
    AlreadyScannedToday,
    /// ECR will not scan this image at all, in its words: an image index
    /// (`UnsupportedImageTypeException`) or an archived image (`ImageArchivedException`).
    Refused(String),
}

impl ScanStart {
    /// ECR's refusal to scan, as the error of the StartImageScan that asked.
    pub fn refusal(why: String) -> PortError {
        PortError::new("ecr", "StartImageScan", ErrorKind::Rejected, why)
    }
}

/// How the registry scans images, which decides how a rescan gets fresh findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanType {
    /// ECR basic scanning: a scan runs on push or on request (`StartImageScan`, once a day).
    Basic,
    /// Amazon Inspector (enhanced) scanning: images are rescanned continuously; starting a
    /// scan is neither needed nor allowed.
    Enhanced,
}

impl ScanType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Enhanced => "enhanced",
        }
    }
}

/// Where images come from (ECR).
#[async_trait]
pub trait Registry: Send + Sync {
    /// The scanning the registry of this account uses (GetRegistryScanningConfiguration).
    async fn scan_type(&self) -> PortResult<ScanType>;
    /// Every tagged image of a repository.
    async fn list_images(
        &self,
        registry_id: Option<&str>,
        repository: &str,
    ) -> PortResult<Vec<ImageRecord>>;
    /// The scan result of one digest, all findings pages.
    async fn scan_report(
        &self,
        registry_id: Option<&str>,
        repository: &str,
        digest: &Digest,
    ) -> PortResult<ScanReport>;
    /// The platform images of the image index `digest` (BatchGetImage), attestation
    /// manifests and `unknown/unknown` entries left out. A digest is content: the answer
    /// never changes, so callers cache it.
    async fn platforms(
        &self,
        registry_id: Option<&str>,
        repository: &str,
        digest: &Digest,
    ) -> PortResult<Vec<PlatformImage>>;
    /// The repository's `imageTagMutability` as ECR words it (`MUTABLE`, `IMMUTABLE`,
    /// `IMMUTABLE_WITH_EXCLUSION`, `MUTABLE_WITH_EXCLUSION`), from DescribeRepositories.
    async fn tag_mutability(
        &self,
        registry_id: Option<&str>,
        repository: &str,
    ) -> PortResult<String>;
    /// Whether `digest` can still be pulled (DescribeImages by digest): present and ACTIVE,
    /// not archived, expired by a lifecycle rule or deleted.
    async fn pullable(
        &self,
        registry_id: Option<&str>,
        repository: &str,
        digest: &Digest,
    ) -> PortResult<Pullable>;
    /// Start a basic scan of one digest (StartImageScan). Never retried by the client: a
    /// `LimitExceededException` means the image was already scanned today, not throttling.
    async fn start_scan(
        &self,
        registry_id: Option<&str>,
        repository: &str,
        digest: &Digest,
    ) -> PortResult<ScanStart>;
}

/// Where the policy and referenced secrets live (SSM Parameter Store).
#[async_trait]
pub trait ParameterStore: Send + Sync {
    /// Every parameter below `path`, recursively, decrypted.
    async fn documents(&self, path: &str) -> PortResult<Vec<PolicyDocument>>;
    /// One SecureString parameter.
    async fn secret(&self, name: &str) -> PortResult<Secret>;
    /// Create SecureString `name` holding `value` unless it exists: whether this call
    /// created it (another replica may have been first).
    async fn create_secret(&self, name: &str, value: &Secret) -> PortResult<bool>;
}

/// A message from the event queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub id: String,
    /// What deletes it.
    pub receipt: String,
    pub body: String,
}

/// Where notifications go (a Slack incoming webhook, a signed JSON webhook): the daemon's,
/// outside the reconcile path.
#[async_trait]
pub trait Sink: Send + Sync {
    /// The sink's name in the configuration (errors, logs, metric labels).
    fn name(&self) -> &str;
    /// Deliver `n` once. `id` names the delivery (the same on every attempt); `now` is the
    /// attempt's time (a webhook signs it).
    async fn send(
        &self,
        n: &crate::domain::notify::Notification,
        id: &str,
        now: DateTime<Utc>,
    ) -> PortResult<()>;
}

/// Where ECR and Inspector events arrive (an SQS queue fed by EventBridge rules).
#[async_trait]
pub trait EventQueue: Send + Sync {
    /// Wait up to [`LONG_POLL`] for up to ten messages (an empty list when none came).
    async fn receive(&self) -> PortResult<Vec<QueuedMessage>>;
    /// Delete handled messages, by their receipts.
    async fn delete(&self, receipts: &[String]) -> PortResult<()>;
    /// Whether the queue can be read: its approximate number of waiting messages.
    async fn depth(&self) -> PortResult<u64>;
}

/// How long [`EventQueue::receive`] waits for a message (SQS's longest long poll).
pub const LONG_POLL: std::time::Duration = std::time::Duration::from_secs(20);

/// What `propose` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The branch head after the call.
    pub head: String,
    /// When the head commit was made: approvals before it are for an earlier commit. The
    /// adapter reads the commit's date, which is whatever its author wrote; for a head it
    /// kept, the engine replaces it with when GitHub recorded tugboat's first report on it
    /// (`Engine::own_head`).
    pub committed_at: DateTime<Utc>,
    /// Whether a new commit was pushed (false: the branch already made this change).
    pub pushed: bool,
    /// The head this push replaced, and when that was committed (approvals of it are void).
    pub replaced: Option<(String, DateTime<Utc>)>,
}

/// Which base a proposed branch may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// Any ancestor of main whose copies of the branch's files main has not changed: merges
    /// to main that leave them alone do not rewrite the branch.
    Untouched,
    /// The current main only (a protected branch that must be up to date before it merges).
    Current,
    /// Never the remote branch's head: a new commit on the current main (the head there was
    /// not tugboat's).
    Fresh,
}

/// The GitOps repository (a persistent local clone of it).
#[async_trait]
pub trait GitOpsRepo: Send + Sync {
    /// Fetch the remote; returns the base branch's head commit.
    async fn sync(&self) -> PortResult<String>;
    /// A file's text at the fetched base head; `None` when absent.
    async fn read(&self, path: &str) -> PortResult<Option<String>>;
    /// A file's text as main had it just before `commit` (at its first parent, fetching once
    /// if `commit` is unknown); `None` when absent there. What a merge replaced, from history
    /// rather than from anything a person can edit.
    async fn read_before(&self, commit: &str, path: &str) -> PortResult<Option<String>>;
    /// A file's text as `commit` has it (fetching once if `commit` is unknown); `None` when
    /// absent there. What a merge made, from history.
    async fn read_at(&self, commit: &str, path: &str) -> PortResult<Option<String>>;
    /// Commit `files` on top of the base head as `branch` and force-push it, unless the
    /// remote branch already makes exactly this change: on the current base, or (with
    /// [`Base::Untouched`]) on an earlier base whose copies of `files` main has not changed
    /// since (then its head stays, and so do its approvals).
    async fn propose(
        &self,
        branch: &str,
        files: Vec<(String, String)>,
        message: &str,
        base: Base,
    ) -> PortResult<Proposal>;
    /// Whether `commit` is `ancestor` or descends from it (fetching once if `commit` is unknown).
    async fn includes(&self, commit: &str, ancestor: &str) -> PortResult<bool>;
    /// The newest commit of the fetched base branch (following first parents, at most
    /// [`HISTORY_DEPTH`] back) that changed any of `paths`; `None` when none in that depth did.
    async fn last_change(&self, paths: &[String]) -> PortResult<Option<CommitInfo>>;
}

/// How far back [`GitOpsRepo::last_change`] looks.
pub const HISTORY_DEPTH: usize = 1000;

/// A commit as people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub sha: String,
    /// The author's name.
    pub author: String,
    /// The first line of its message.
    pub summary: String,
    pub at: DateTime<Utc>,
}

/// Where scheduled runs are recorded, visible to every replica (in the GitOps repository), so
/// that a slot runs at most once however many tugboats are up or restart.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// The latest slot recorded for `job`.
    async fn last_run(&self, job: &str) -> PortResult<Option<DateTime<Utc>>>;
    /// Record `slot` for `job` unless it (or a later slot) is already recorded. Atomic against
    /// other writers: exactly one of several concurrent claims of a slot returns `true`.
    async fn claim(&self, job: &str, slot: DateTime<Utc>) -> PortResult<bool>;
    /// Claim the opening of the PR on branch `key` for the change `what`: `true` unless another
    /// replica claimed the same change there less than `ttl` ago. Atomic like `claim`: of two
    /// replicas about to open the same PR, exactly one may.
    async fn claim_change(
        &self,
        key: &str,
        what: &str,
        ttl: std::time::Duration,
    ) -> PortResult<bool>;
    /// Record, for each announcement, that `change` of the state `key` was announced: `true`
    /// for each one recorded now, `false` for one the ledger already holds (announced before,
    /// by this tugboat before a restart or by another replica). Atomic like `claim`: of two
    /// replicas announcing the same change, exactly one gets `true`. The parcel of each one
    /// recorded now is kept in the same write (the outbox), under this process's name, until
    /// [`Ledger::delivered`] says every sink has it.
    async fn announce(&self, changes: &[Announcement]) -> PortResult<Vec<bool>>;
    /// Take over the outbox's parcels that nobody is delivering any more, and return them:
    /// those of a dead predecessor of this process (the clone's earlier owner) at once,
    /// another process's once `others_after` has passed since it took them (it may be dead).
    /// Atomic like `claim`: a parcel is taken by one process; it is then this one's.
    async fn undelivered(&self, others_after: std::time::Duration) -> PortResult<Vec<Parcel>>;
    /// Record that the sinks named have their parcels (`(parcel id, sink)`), delivered or
    /// given up on; a parcel every sink has leaves the outbox. Ids not in it are ignored.
    async fn delivered(&self, done: &[(String, String)]) -> PortResult<()>;
}

pub use crate::domain::notify::{Announcement, Parcel};

/// A lease as read, with the version a write must name (optimistic concurrency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub record: crate::domain::lease::Record,
    pub version: String,
}

/// Leader election's lease (a Kubernetes `coordination.k8s.io/v1` Lease).
#[async_trait]
pub trait Election: Send + Sync {
    /// The lease; `None` when it does not exist yet.
    async fn read(&self) -> PortResult<Option<Versioned>>;
    /// Write the lease: create it (`version` `None`) or replace the version read. `false`
    /// when another replica wrote it first (a conflict): read it again.
    async fn write(
        &self,
        record: &crate::domain::lease::Record,
        version: Option<&str>,
    ) -> PortResult<bool>;
}

/// A pull request as the engine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
    pub head_sha: String,
    pub title: String,
    pub body: String,
    pub merged: bool,
    pub merge_sha: Option<String>,
    /// Its labels, as read (or as set when tugboat opened it).
    pub labels: Vec<String>,
    /// The branch it merges into (`base.ref`): a person with write access can change it.
    pub base: String,
    /// The branch it merges (`head.ref`).
    pub branch: String,
    /// Who opened it (`user.login`; empty for a deleted account).
    pub author: String,
    /// Whether GitHub can merge it: `None` while GitHub computes it (for a moment after the
    /// base moves), and in lists, which do not carry it.
    pub mergeable: Option<bool>,
}

/// A pull request to open.
#[derive(Debug, Clone)]
pub struct NewPullRequest {
    pub branch: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
}

pub use crate::domain::checks::{Check, CheckState};
pub use crate::domain::merge::SyncWindows;
pub use crate::domain::rules::{BranchRules, QueueState};

/// A commit status tugboat sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    Success,
    Pending,
    Failure,
    Error,
}

impl StatusState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Pending => "pending",
            Self::Failure => "failure",
            Self::Error => "error",
        }
    }
}

/// An issue in the GitOps repository (tugboat's security reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub number: u64,
    pub url: String,
    pub title: String,
    pub body: String,
    pub open: bool,
    /// Who opened it (`user.login`).
    pub author: String,
    /// When anything about it last changed (`updated_at`; labelling moves it).
    pub updated_at: Option<DateTime<Utc>>,
}

/// A pull request found by its labels (merged promotions that tugboat still looks after).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledPr {
    pub number: u64,
    pub url: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub open: bool,
    /// When it was merged; `None` when it was not.
    pub merged_at: Option<DateTime<Utc>>,
    /// Who opened it (`user.login`).
    pub author: String,
    /// When anything about it last changed (`updated_at`; labelling moves it).
    pub updated_at: Option<DateTime<Utc>>,
}

/// A user's permission on the GitOps repository (GitHub's `permission` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Admin,
    Maintain,
    Write,
    Triage,
    Read,
    /// No access, an unknown login, or a word this version does not know.
    None,
}

impl Permission {
    /// GitHub's word; an unknown word grants nothing.
    pub fn parse(word: &str) -> Self {
        match word {
            "admin" => Self::Admin,
            "maintain" => Self::Maintain,
            "write" => Self::Write,
            "triage" => Self::Triage,
            "read" => Self::Read,
            _ => Self::None,
        }
    }

    /// GitHub's word for it (`none` for none).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Maintain => "maintain",
            Self::Write => "write",
            Self::Triage => "triage",
            Self::Read => "read",
            Self::None => "none",
        }
    }

    /// Whether it allows pushing to the repository (what an approver needs).
    pub fn writes(self) -> bool {
        matches!(self, Self::Admin | Self::Maintain | Self::Write)
    }
}

/// A reaction tugboat puts on a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// 👍: the command was carried out.
    PlusOne,
    /// 👀: seen.
    Eyes,
}

impl Reaction {
    /// GitHub's `content` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PlusOne => "+1",
            Self::Eyes => "eyes",
        }
    }
}

/// How pull requests are merged (`github.merge_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMethod {
    #[default]
    Squash,
    Merge,
    Rebase,
}

impl MergeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Squash => "squash",
            Self::Merge => "merge",
            Self::Rebase => "rebase",
        }
    }
}

/// The Git host's pull requests: the promotions and rollbacks.
#[async_trait]
pub trait PullRequests: Send + Sync {
    /// The open PR whose head is `branch`, if any.
    async fn find_open_pr(&self, branch: &str) -> PortResult<Option<PullRequest>>;
    /// One pull request, open or not.
    async fn pull(&self, number: u64) -> PortResult<PullRequest>;
    /// Every pull request that carries all of `labels` (only the open ones with `open_only`),
    /// oldest first (a conditional request: an unchanged list costs no rate limit).
    async fn labelled_prs(&self, labels: &[String], open_only: bool)
    -> PortResult<Vec<LabelledPr>>;
    async fn open_pr(&self, pr: NewPullRequest) -> PortResult<PullRequest>;
    async fn update_pr(&self, number: u64, title: &str, body: &str) -> PortResult<()>;
    /// Close a pull request without merging it, saying why in a comment.
    async fn close_pr(&self, number: u64, why: &str) -> PortResult<()>;
    /// Merge only if the head is still `expected_head`; returns the merge commit.
    async fn merge(&self, number: u64, expected_head: &str, title: &str) -> PortResult<String>;
    async fn add_labels(&self, number: u64, labels: &[String]) -> PortResult<()>;
    /// Remove a label; removing one the PR does not carry is not an error.
    async fn remove_label(&self, number: u64, label: &str) -> PortResult<()>;
    /// Add `add` and remove `remove` (and, given `body`, replace the body) in one write: what
    /// several would cost otherwise, when GitHub's write budget is what limits tugboat. The
    /// labels are read just before; a label a person adds within that round trip is lost.
    /// Nothing is written when nothing would change.
    async fn relabel(
        &self,
        number: u64,
        add: &[&str],
        remove: &[&str],
        body: Option<&str>,
    ) -> PortResult<()>;
}

/// The conversation on pull requests and issues.
#[async_trait]
pub trait Conversation: Send + Sync {
    /// Comment on a pull request or an issue.
    async fn comment(&self, number: u64, body: &str) -> PortResult<()>;
    /// Every comment on a pull request or issue, oldest first (a conditional request: an
    /// unchanged list costs no rate limit).
    async fn comments(&self, number: u64) -> PortResult<Vec<chatops::Comment>>;
    /// Every review of a pull request, oldest first.
    async fn reviews(&self, number: u64) -> PortResult<Vec<chatops::Review>>;
    async fn react(&self, comment_id: u64, reaction: Reaction) -> PortResult<()>;
    /// The login tugboat acts as.
    async fn me(&self) -> PortResult<String>;
}

/// Who may do what on the repository.
#[async_trait]
pub trait Access: Send + Sync {
    /// A user's permission on the repository.
    async fn permission(&self, user: &str) -> PortResult<Permission>;
    /// Whether `user` is an active member of the team `org/team`.
    async fn team_member(&self, org: &str, team: &str, user: &str) -> PortResult<bool>;
}

/// Which of tugboat's own checks a report is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// The scan gate's decision on a promotion PR's head.
    Gate,
    /// The deploy verification of a merge commit.
    Deploy,
}

impl CheckKind {
    /// The status context, and the check run's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gate => crate::domain::webhook::GATE_CHECK,
            Self::Deploy => "tugboat/deploy",
        }
    }

    /// The kind named `name`, if tugboat makes it.
    pub fn named(name: &str) -> Option<Self> {
        [Self::Gate, Self::Deploy]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// One of tugboat's checks on a commit. The adapter makes it a commit status for a token and
/// a check run for a GitHub App (GitHub allows check runs to Apps only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub sha: String,
    pub kind: CheckKind,
    /// `Pending` and `Error` are not final: a check run stays in progress.
    pub state: StatusState,
    /// One line: a status's description (cut to 140 characters), a check run's title.
    pub title: String,
    /// Markdown for a check run's summary; a status has no room for it.
    pub summary: String,
    /// Where to look further: a status's target URL, a check run's details URL.
    pub link: Option<String>,
}

/// A branch update as GitHub recorded it: who made it (`None`: a user GitHub no longer
/// knows, or no user) and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub actor: Option<String>,
    pub at: DateTime<Utc>,
}

/// The checks a merge waits for, and tugboat's own.
#[async_trait]
pub trait Checks: Send + Sync {
    /// A commit's checks other than tugboat's own: its statuses (the newest of each context)
    /// and its check runs (the newest of each name), in both auth modes.
    async fn checks(&self, sha: &str) -> PortResult<Vec<Check>>;
    async fn report(&self, report: &CheckReport) -> PortResult<()>;
    /// When tugboat first reported its own check `kind` on `sha`, as GitHub recorded it: a
    /// status created by tugboat's login, or a check run of tugboat's App (which nobody else
    /// can create). `None` when it never did.
    async fn first_report(&self, sha: &str, kind: CheckKind) -> PortResult<Option<DateTime<Utc>>>;
    /// Who pointed `branch` at `sha`, and when, as GitHub recorded it (the repository's
    /// activity: the newest push, force push or creation of the branch that left it at
    /// `sha`). `None` when GitHub has no such record, or keeps none that tugboat may read.
    async fn pushed_by(&self, branch: &str, sha: &str) -> PortResult<Option<Pushed>>;
    /// What the base branch's active rulesets require of a merge. Rules tugboat may not
    /// read are named in `unreadable`, not an error.
    async fn rules(&self) -> PortResult<BranchRules>;
}

/// tugboat's issues (the security reports of the rescan).
#[async_trait]
pub trait Issues: Send + Sync {
    /// Every open issue (never a pull request) that carries all of `labels`, oldest first.
    async fn open_issues(&self, labels: &[String]) -> PortResult<Vec<Issue>>;
    async fn open_issue(&self, title: &str, body: &str, labels: &[String]) -> PortResult<Issue>;
    /// Replace an issue's title and body, and open or close it.
    async fn update_issue(
        &self,
        number: u64,
        title: &str,
        body: &str,
        open: bool,
    ) -> PortResult<()>;
    /// Pin an issue to the repository's issue list (refused when the token may not, or the
    /// repository has its most pinned issues already).
    async fn pin_issue(&self, number: u64) -> PortResult<()>;
    /// Who added and removed the labels of a pull request or issue, oldest first (its issue
    /// events): a label counts as tugboat's only if tugboat added it.
    async fn label_events(&self, number: u64) -> PortResult<Vec<LabelEvent>>;
}

/// The base branch's merge queue, on a branch whose rules require one: a PR is merged by
/// the queue, never directly.
#[async_trait]
pub trait MergeQueue: Send + Sync {
    /// Queue PR `number`, whose head must still be `head`; its position.
    async fn enqueue(&self, number: u64, head: &str) -> PortResult<u32>;
    /// Where PR `number` stands in the queue.
    async fn queue_state(&self, number: u64) -> PortResult<QueueState>;
    /// Take PR `number` out of the queue (a person held it).
    async fn dequeue(&self, number: u64) -> PortResult<()>;
}

/// The Git host (GitHub), every role of it: one adapter implements them all, and the engine
/// calls each role's methods through this one handle.
pub trait Forge: PullRequests + Conversation + Access + Checks + Issues + MergeQueue {}

impl<T: PullRequests + Conversation + Access + Checks + Issues + MergeQueue + ?Sized> Forge for T {}

/// Sync and health of an Argo CD Application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStatus {
    pub sync_status: SyncStatus,
    /// `status.sync.revision` (single source).
    pub revision: Option<String>,
    /// `status.sync.revisions` (multi-source applications: one per source).
    pub revisions: Vec<String>,
    pub health: Health,
    pub health_message: Option<String>,
    pub reconciled_at: Option<DateTime<Utc>>,
    /// When the current revision was deployed (the newest `status.history` entry).
    pub deployed_at: Option<DateTime<Utc>>,
    pub images: Vec<String>,
    /// The last (or running) operation, `status.operationState`.
    pub operation: Option<Operation>,
    /// Whether the application syncs by itself (`spec.syncPolicy.automated`).
    pub automated: bool,
    /// `status.conditions`: (type, message), errors and warnings alike.
    pub conditions: Vec<(String, String)>,
}

impl AppStatus {
    /// Every revision the application was compared to, single- or multi-source.
    pub fn all_revisions(&self) -> Vec<&str> {
        self.revision
            .iter()
            .chain(self.revisions.iter())
            .map(String::as_str)
            .collect()
    }

    /// The first error condition, in Argo CD's words: its condition types that end in
    /// `Error` (`ComparisonError`, `InvalidSpecError`, `SyncError`, `UnknownError`; the
    /// others are warnings), as `pkg/apis/application/v1alpha1/types.go` names them.
    pub fn error_condition(&self) -> Option<String> {
        self.conditions
            .iter()
            .find(|(kind, _)| kind.ends_with("Error"))
            .map(|(kind, message)| format!("{kind}: {message}"))
    }
}

/// An Argo CD sync operation (`status.operationState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub phase: OperationPhase,
    pub message: Option<String>,
    /// The revisions the operation syncs (`operation.sync.revision(s)`, else `syncResult`).
    pub revisions: Vec<String>,
    /// The user who started it (`operation.initiatedBy.username`); `None` when Argo CD's
    /// automated sync did.
    pub initiated_by: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    /// How many times it was retried (`retryCount`, under `syncPolicy.retry`).
    pub retry_count: u32,
    /// A hook it runs now, as "PreSync Job/migrate" (`syncResult.resources[]` with a
    /// `hookType` and `hookPhase: Running`).
    pub hook: Option<String>,
}

/// What asking Argo CD to sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStart {
    Started,
    /// Another operation is already in progress: wait for it, then look again.
    Busy(String),
}

/// One application's status at each of its changes, as Argo CD streams them; it ends when
/// the stream does (its time bound, or a dropped connection).
pub type AppEvents =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = PortResult<AppStatus>> + Send>>;

/// The deployer (Argo CD).
#[async_trait]
pub trait Deployer: Send + Sync {
    /// The application's status; with `refresh`, ask for a refresh first.
    async fn app(&self, name: &str, refresh: bool) -> PortResult<AppStatus>;
    /// Ask the application to sync `revision` (for applications without automated sync).
    async fn sync(&self, name: &str, revision: &str) -> PortResult<SyncStart>;
    /// The application's sync windows now.
    async fn sync_windows(&self, name: &str) -> PortResult<SyncWindows>;
    /// The images its live workloads and pods run (`…/resource-tree`, every node's
    /// `images`), for when `summary.images` says nothing.
    async fn workload_images(&self, name: &str) -> PortResult<Vec<String>>;
    /// Watch the application for up to `lasting`: its status now, then at each change
    /// (Argo CD's application event stream). An error when no stream can be opened.
    async fn watch(&self, name: &str, lasting: std::time::Duration) -> PortResult<AppEvents>;
}
