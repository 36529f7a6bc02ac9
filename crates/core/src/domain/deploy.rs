//! Whether a deployment runs a merged promotion, judged from one look at the Argo CD
//! application (no I/O: what needs the repository, such as "does this revision include the
//! merge commit", is decided outside and passed in).

use std::time::Duration;

use super::policy::OnPause;

/// An enum of Argo CD's words, each with an `Unknown` for a word this version does not know.
macro_rules! argo_words {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant,)+
            /// A word this version of tugboat does not know (or none).
            Unknown,
        }

        impl $name {
            /// Argo CD's word.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Unknown => "Unknown",
                }
            }

            /// The value of Argo CD's word.
            pub fn parse(word: &str) -> Self {
                match word {
                    $($text => Self::$variant,)+
                    _ => Self::Unknown,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

argo_words! {
    /// An application's sync status (`status.sync.status`).
    SyncStatus {
        Synced = "Synced",
        OutOfSync = "OutOfSync",
    }
}

argo_words! {
    /// An application's health (`status.health.status`).
    Health {
        Healthy = "Healthy",
        Progressing = "Progressing",
        Degraded = "Degraded",
        Suspended = "Suspended",
        Missing = "Missing",
    }
}

argo_words! {
    /// The phase of a sync operation (`status.operationState.phase`).
    OperationPhase {
        Running = "Running",
        Terminating = "Terminating",
        Succeeded = "Succeeded",
        Failed = "Failed",
        Error = "Error",
    }
}

impl OperationPhase {
    /// Whether the operation is still under way.
    pub fn running(self) -> bool {
        matches!(self, Self::Running | Self::Terminating)
    }
}

/// An operation (`status.operationState`), as far as the judgement needs it.
#[derive(Debug, Clone, Copy)]
pub struct OperationView<'a> {
    pub phase: OperationPhase,
    pub message: Option<&'a str>,
    /// Whether the operation syncs the merge commit (or a descendant of it): what it syncs
    /// (`operation.sync.revision`, else `syncResult.revision`), never the comparison's.
    pub for_merge: bool,
    /// How many times it was retried (`operationState.retryCount`): under
    /// `syncPolicy.retry` a failed attempt is put back to `Running`, its message ending
    /// "Retrying attempt #N at <time>." (`controller/appcontroller.go`).
    pub retries: u32,
    /// A PreSync or Sync hook it runs now (`syncResult.resources[]` with a `hookType` and
    /// `hookPhase: Running`), named "PreSync Job/migrate": Argo CD's gitops-engine waits
    /// for it ("waiting for completion of hook …") before it applies the next wave.
    pub hook: Option<&'a str>,
}

/// What `status.summary.images` says of the promoted image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// It lists the promoted reference.
    Promoted,
    /// It lists the promoted repository, at other references only (the old pods).
    Other,
    /// It lists nothing of the promoted repository, or nothing at all. The summary is built
    /// from live pods, empty when none can start and on some Argo CD releases altogether
    /// (argo-cd#27861, argo-cd#19670): no evidence either way.
    Nothing,
}

/// One look at the application.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub sync_status: SyncStatus,
    pub health: Health,
    pub health_message: Option<&'a str>,
    /// The comparison (`status.sync.revision`, or any source's of `revisions`) is the merge
    /// commit or descends from it. Argo CD's swagger: the revision "the comparison has been
    /// performed to"; it moves on a refresh, before anything is synced (argo-cd#7629).
    pub compared_at_merge: bool,
    /// `reconciledAt` is not before the merge.
    pub reconciled_after_merge: bool,
    /// The last or running operation (`status.operationState`).
    pub operation: Option<OperationView<'a>>,
    pub listed: Listed,
    /// An error condition of the application (`status.conditions`: a `ComparisonError`
    /// when the manifests no longer render), in Argo CD's words.
    pub condition_error: Option<&'a str>,
    /// How long the health has been `Degraded` or `Missing` since the merge was synced, as
    /// the looks so far saw it (zero at the first such look).
    pub degraded_for: Duration,
    /// How long that may last before it is a failure (the policy's `degraded_grace`).
    pub degraded_grace: Duration,
    /// How many retries of a failing apply to wait out (the policy's `retry_limit`).
    pub retry_limit: u32,
    /// What the resource tree (`GET …/resource-tree`: the images of the application's pods
    /// and workloads) says of the promoted image, when it was read: only when the summary
    /// lists nothing of the promoted repository.
    pub tree: Option<Listed>,
}

impl Observation<'_> {
    /// Whether the merge commit is what runs: an operation for it has succeeded, or the
    /// comparison at the merge reports `Synced`. Until then the health is the old objects'.
    pub fn merge_synced(&self) -> bool {
        let op = self.operation.filter(|op| op.for_merge);
        op.is_some_and(|op| op.phase == OperationPhase::Succeeded)
            || (self.compared_at_merge && self.sync_status == SyncStatus::Synced)
    }

    /// Whether the health says the objects are unhealthy (`Degraded`, `Missing`).
    pub fn unhealthy(&self) -> bool {
        matches!(self.health, Health::Degraded | Health::Missing)
    }
}

/// What one look says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Synced and Healthy at the merge, and what showed the promoted image runs.
    Healthy(Evidence),
    /// Not yet: what is still missing.
    Waiting(String),
    /// An Argo Rollouts pause: health `Suspended` while the operation for the merge runs
    /// ("waiting for healthy state of argoproj.io/Rollout"), for minutes, hours, or until a
    /// person promotes it (argo-cd#25054). No failure, however long it lasts: the policy's
    /// `on_pause` says what it means ([`on_pause`]).
    Paused(String),
    /// A PreSync or Sync hook of the merge's operation runs (a migration Job): waited on up
    /// to the policy's `hook_timeout`, beyond the `health_timeout`.
    Hook(String),
    /// It will not get there: Argo CD's own words.
    Failed(String),
}

/// What showed that the promoted image runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// `summary.images` lists it.
    Summary,
    /// The summary lists nothing of its repository; the resource tree's pods and workloads
    /// run it.
    ResourceTree,
    /// Neither the summary nor the resource tree lists anything of its repository: the
    /// merge commit, synced and Healthy.
    SyncedMerge,
    /// A Rollout paused at a step under the merge's operation, counted as deployed
    /// (`on_pause: accept`).
    PausedAccepted,
}

impl Evidence {
    /// What showed it, in a sentence's words.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Summary => "summary.images lists the promoted image",
            Self::ResourceTree => {
                "summary.images lists no image of the repository; the resource tree's workloads run the promoted image"
            }
            Self::SyncedMerge => {
                "neither summary.images nor the resource tree lists an image of the repository; the merge commit is synced and Healthy"
            }
            Self::PausedAccepted => {
                "a Rollout paused at a step under the merge's sync counts as deployed (on_pause: accept)"
            }
        }
    }

    /// A short word for the JSON report (`--output json`).
    pub fn word(self) -> &'static str {
        match self {
            Self::Summary => "summary",
            Self::ResourceTree => "resource-tree",
            Self::SyncedMerge => "synced-merge",
            Self::PausedAccepted => "paused-accepted",
        }
    }
}

/// What a paused Rollout means now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Wait on: it may be a timed pause step, or a person about to promote it.
    Wait,
    /// Counts as deployed (`on_pause: accept`).
    Accept,
    /// Paused past the `pause_timeout`: hold the environment and tell people; never a
    /// rollback (a paused canary serves traffic as its steps planned).
    Hold,
}

/// What a Rollout paused `since_merge` after the merge means under the policy's `on_pause`
/// and `pause_timeout`. Measured from the merge, which every replica and restart reads the
/// same, so that a restart does not wait a new `pause_timeout`.
pub fn on_pause(rule: OnPause, since_merge: Duration, pause_timeout: Duration) -> Pause {
    match rule {
        OnPause::Accept => Pause::Accept,
        OnPause::Wait if since_merge >= pause_timeout => Pause::Hold,
        OnPause::Wait => Pause::Wait,
    }
}

/// The Rollout a paused operation waits for, from Argo CD's message "waiting for healthy
/// state of argoproj.io/Rollout/<name>" (gitops-engine's sync context).
pub fn paused_rollout(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("argoproj.io/Rollout/")?;
    let name = rest.split(|c: char| c.is_whitespace() || c == ',').next()?;
    (!name.is_empty()).then_some(name)
}

/// Judge one look. Health counts only once the merge commit is what runs: an operation for
/// it has succeeded, or the comparison at the merge reports `Synced` (an automated sync, or a
/// commit that leaves the application's manifests as they were). Until then the health is
/// the old objects' and says nothing of the promotion. The cases, in order:
///
/// | look | verdict | Argo CD's behaviour |
/// |---|---|---|
/// | an error condition after the merge | failed, in its words | a `ComparisonError` means the manifests at the target revision do not render; no sync can succeed |
/// | an operation for the merge `Failed`/`Error` | failed, in its words | `operationState.phase` |
/// | an operation for the merge running, health `Suspended` | paused | an Argo Rollouts pause step (argo-cd#25054) |
/// | an operation for the merge retried past the retry limit | failed, in its words | `syncPolicy.retry`: the operation stays `Running` between attempts, counting `retryCount` |
/// | an operation for the merge running a PreSync/Sync hook | hook: waited on up to `hook_timeout` | gitops-engine waits for a hook's completion before the next wave ("waiting for completion of hook …") |
/// | an operation for the merge running | waiting | waves run; health is not final |
/// | not synced at the merge | waiting | `sync.revision` is the comparison's, not what was synced (argo-cd#7629) |
/// | synced, `Degraded`/`Missing` shorter than the grace | waiting | rollouts pass through it: HPA metrics not yet there, KEDA's `HPAMetricsUnavailable` (argo-cd#28522, argo-cd#6287) |
/// | synced, `Degraded`/`Missing` for the grace | failed | the merge's objects stay unhealthy |
/// | synced, `Healthy`, reconciled, image listed by the summary | healthy (summary) | `summary.images`, built from live pods |
/// | the same, the summary silent, the resource tree lists it | healthy (resource tree) | the summary is empty on some releases (argo-cd#27861, argo-cd#19670); the tree's nodes carry `images` |
/// | the same, neither lists anything of the repository | healthy (synced merge) | no evidence either way: the merge is what runs, Healthy |
/// | anything else | waiting, naming what is missing | |
pub fn judge(o: &Observation<'_>) -> Verdict {
    // Argo CD's words come from the application's resources: quoted inert.
    let with = |m: Option<&str>| {
        m.map(|m| format!(": {}", super::markdown::inert(m)))
            .unwrap_or_default()
    };
    if let (Some(error), true) = (o.condition_error, o.reconciled_after_merge) {
        return Verdict::Failed(format!(
            "Argo CD cannot compare the merge{}",
            with(Some(error))
        ));
    }
    let op = o.operation.filter(|op| op.for_merge);
    if let Some(op) = op {
        if matches!(op.phase, OperationPhase::Failed | OperationPhase::Error) {
            return Verdict::Failed(format!("sync operation {}{}", op.phase, with(op.message)));
        }
        if op.phase.running() && o.health == Health::Suspended {
            let why = op.message.or(o.health_message);
            let rollout = why
                .and_then(paused_rollout)
                .map(|r| format!("Rollout {} ", super::markdown::inert(r)))
                .unwrap_or_default();
            return Verdict::Paused(format!("{rollout}paused (health Suspended){}", with(why)));
        }
        if op.phase.running() && op.retries > o.retry_limit {
            return Verdict::Failed(format!(
                "sync operation still failing after {} retries{}",
                o.retry_limit,
                with(op.message)
            ));
        }
        if let (true, Some(hook)) = (op.phase.running(), op.hook) {
            return Verdict::Hook(format!(
                "hook {} running{}",
                super::markdown::inert(hook),
                with(op.message)
            ));
        }
        if op.phase.running() {
            return Verdict::Waiting(format!("sync operation {}{}", op.phase, with(op.message)));
        }
    }
    if !o.merge_synced() {
        return Verdict::Waiting(format!(
            "sync {}, health {} (not the merge's yet): the merge commit is not synced",
            o.sync_status, o.health
        ));
    }
    if o.unhealthy() {
        return degraded(o, &with(o.health_message));
    }
    // The summary first; when it lists nothing of the repository, the resource tree.
    let (shown, by) = match (o.listed, o.tree) {
        (Listed::Nothing, Some(tree)) => (tree, Evidence::ResourceTree),
        (listed, _) => (listed, Evidence::Summary),
    };
    let missing: Vec<&str> = [
        (!o.compared_at_merge, "revision is not the merge commit yet"),
        (o.sync_status != SyncStatus::Synced, "not Synced"),
        (o.health != Health::Healthy, "not Healthy"),
        (!o.reconciled_after_merge, "not reconciled since the merge"),
        (shown == Listed::Other, "the promoted image is not running"),
    ]
    .into_iter()
    .filter_map(|(missing, what)| missing.then_some(what))
    .collect();
    if !missing.is_empty() {
        return Verdict::Waiting(format!(
            "sync {}, health {}: {}",
            o.sync_status,
            o.health,
            missing.join(", ")
        ));
    }
    Verdict::Healthy(match shown {
        Listed::Promoted => by,
        Listed::Other | Listed::Nothing => Evidence::SyncedMerge,
    })
}

/// A synced merge whose objects are unhealthy: a failure once that lasted the grace, else a
/// wait that says how long it has lasted.
fn degraded(o: &Observation<'_>, said: &str) -> Verdict {
    let secs = |d: Duration| d.as_secs();
    if o.degraded_for >= o.degraded_grace {
        let lasted = if o.degraded_grace.is_zero() {
            String::new()
        } else {
            format!(" for {}s", secs(o.degraded_for))
        };
        return Verdict::Failed(format!("health {}{lasted}{said}", o.health));
    }
    Verdict::Waiting(format!(
        "health {} for {}s of a {}s grace{said}",
        o.health,
        secs(o.degraded_for),
        secs(o.degraded_grace)
    ))
}

/// Whether a revision can be a Git commit (a multi-source application also lists Helm chart
/// versions, which are never the merge commit).
pub fn is_commit(revision: &str) -> bool {
    (7..=64).contains(&revision.len()) && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Observation<'static> {
        Observation {
            sync_status: SyncStatus::Synced,
            health: Health::Healthy,
            health_message: None,
            compared_at_merge: true,
            reconciled_after_merge: true,
            operation: Some(OperationView {
                phase: OperationPhase::Succeeded,
                message: None,
                for_merge: true,
                retries: 0,
                hook: None,
            }),
            listed: Listed::Promoted,
            condition_error: None,
            degraded_for: Duration::ZERO,
            degraded_grace: Duration::ZERO,
            retry_limit: 3,
            tree: None,
        }
    }

    /// Compared to the merge by a refresh, nothing synced yet: OutOfSync, the old objects'
    /// health, the last operation an older one.
    fn compared_only(health: Health) -> Observation<'static> {
        Observation {
            sync_status: SyncStatus::OutOfSync,
            health,
            operation: Some(OperationView {
                phase: OperationPhase::Succeeded,
                message: None,
                for_merge: false,
                retries: 0,
                hook: None,
            }),
            ..healthy()
        }
    }

    #[test]
    fn every_condition_holding_is_healthy_by_the_summary() {
        assert_eq!(judge(&healthy()), Verdict::Healthy(Evidence::Summary));
    }

    #[test]
    fn each_missing_condition_waits_and_is_named() {
        type Change = fn(&mut Observation<'static>);
        let cases: [(Change, &str); 4] = [
            (|o| o.sync_status = SyncStatus::OutOfSync, "not Synced"),
            (|o| o.health = Health::Progressing, "not Healthy"),
            (|o| o.reconciled_after_merge = false, "not reconciled"),
            (|o| o.listed = Listed::Other, "image is not running"),
        ];
        for (change, named) in cases {
            let mut o = healthy();
            change(&mut o);
            match judge(&o) {
                Verdict::Waiting(why) => assert!(why.contains(named), "{why}"),
                other => panic!("{named}: {other:?}"),
            }
        }
    }

    #[test]
    fn degraded_or_missing_once_the_merge_is_synced_fails_with_argo_cds_message() {
        let mut o = healthy();
        o.health = Health::Degraded;
        o.health_message = Some("CrashLoopBackOff");
        assert_eq!(
            judge(&o),
            Verdict::Failed("health Degraded: CrashLoopBackOff".into())
        );
        o.health = Health::Missing;
        o.health_message = None;
        assert_eq!(judge(&o), Verdict::Failed("health Missing".into()));
    }

    #[test]
    fn degraded_after_the_sync_waits_out_its_grace_then_fails_saying_how_long() {
        let mut o = healthy();
        o.health = Health::Degraded;
        o.health_message = Some("HPA: unable to get metrics for resource cpu");
        o.degraded_grace = Duration::from_secs(60);
        o.degraded_for = Duration::from_secs(20);
        assert_eq!(
            judge(&o),
            Verdict::Waiting(
                "health Degraded for 20s of a 60s grace: HPA: unable to get metrics for resource cpu"
                    .into()
            )
        );
        o.degraded_for = Duration::from_secs(61);
        assert_eq!(
            judge(&o),
            Verdict::Failed(
                "health Degraded for 61s: HPA: unable to get metrics for resource cpu".into()
            )
        );
    }

    #[test]
    fn an_app_compared_to_the_merge_but_not_synced_waits_whatever_its_old_health() {
        // argo-cd#7629: a refresh moves `sync.revision` to the merge before any sync; the
        // health is still the old objects' (the usual case of a fix for a Degraded app).
        for health in [Health::Degraded, Health::Missing, Health::Healthy] {
            match judge(&compared_only(health)) {
                Verdict::Waiting(why) => assert!(why.contains("not synced"), "{why}"),
                other => panic!("{health}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_comparison_at_the_merge_that_reports_synced_counts_without_an_operation() {
        // An automated sync whose operation was replaced, or a commit that leaves the
        // application's manifests as they were: Synced at the merge, no operation for it.
        let mut o = healthy();
        o.operation = None;
        assert_eq!(judge(&o), Verdict::Healthy(Evidence::Summary));
        o.compared_at_merge = false;
        assert!(matches!(judge(&o), Verdict::Waiting(_)));
    }

    #[test]
    fn a_summary_that_lists_nothing_of_the_repository_is_no_evidence_against() {
        let mut o = healthy();
        o.listed = Listed::Nothing;
        assert_eq!(judge(&o), Verdict::Healthy(Evidence::SyncedMerge));
    }

    #[test]
    fn a_silent_summary_falls_back_to_the_resource_tree_and_says_so() {
        let mut o = healthy();
        o.listed = Listed::Nothing;
        o.tree = Some(Listed::Promoted);
        assert_eq!(judge(&o), Verdict::Healthy(Evidence::ResourceTree));
        o.tree = Some(Listed::Nothing);
        assert_eq!(judge(&o), Verdict::Healthy(Evidence::SyncedMerge));
        // The tree's pods still run the old image: not there yet.
        o.tree = Some(Listed::Other);
        match judge(&o) {
            Verdict::Waiting(why) => assert!(why.contains("image is not running"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A summary that lists the repository is not second-guessed by the tree.
        o.listed = Listed::Promoted;
        assert_eq!(judge(&o), Verdict::Healthy(Evidence::Summary));
    }

    #[test]
    fn a_running_hook_of_the_merges_sync_is_named_and_waited_on_as_a_hook() {
        let mut o = healthy();
        o.operation = Some(OperationView {
            phase: OperationPhase::Running,
            message: Some("waiting for completion of hook batch/Job/api-migrate"),
            for_merge: true,
            retries: 0,
            hook: Some("PreSync Job/api-migrate"),
        });
        assert_eq!(
            judge(&o),
            Verdict::Hook(
                "hook PreSync Job/api-migrate running: waiting for completion of hook batch/Job/api-migrate"
                    .into()
            )
        );
    }

    #[test]
    fn a_pause_waits_then_holds_under_wait_and_counts_at_once_under_accept() {
        let hour = Duration::from_secs(3600);
        let at = |mins: u64| Duration::from_secs(mins * 60);
        assert_eq!(on_pause(OnPause::Wait, at(59), hour), Pause::Wait);
        assert_eq!(on_pause(OnPause::Wait, at(60), hour), Pause::Hold);
        assert_eq!(on_pause(OnPause::Accept, at(0), hour), Pause::Accept);
        assert_eq!(on_pause(OnPause::Accept, at(600), hour), Pause::Accept);
    }

    #[test]
    fn the_paused_rollout_is_named_from_argo_cds_message() {
        let m = "waiting for healthy state of argoproj.io/Rollout/checkout, and 1 more";
        assert_eq!(paused_rollout(m), Some("checkout"));
        assert_eq!(paused_rollout("Rollout is paused"), None);
        assert_eq!(paused_rollout("argoproj.io/Rollout/"), None);
    }

    #[test]
    fn a_comparison_error_after_the_merge_fails_at_once_in_argo_cds_words() {
        let mut o = compared_only(Health::Healthy);
        o.sync_status = SyncStatus::Unknown;
        o.condition_error = Some("rpc error: kustomize build failed: missing resource");
        match judge(&o) {
            Verdict::Failed(why) => assert!(why.contains("kustomize build failed"), "{why}"),
            other => panic!("{other:?}"),
        }
        // One from before the merge's comparison says nothing of the merge.
        o.reconciled_after_merge = false;
        assert!(matches!(judge(&o), Verdict::Waiting(_)));
    }

    #[test]
    fn a_failed_operation_for_the_merge_fails_but_an_older_one_does_not_count() {
        let mut o = healthy();
        o.operation = Some(OperationView {
            phase: OperationPhase::Failed,
            message: Some("one or more objects failed to apply"),
            for_merge: true,
            retries: 0,
            hook: None,
        });
        assert_eq!(
            judge(&o),
            Verdict::Failed("sync operation Failed: one or more objects failed to apply".into())
        );
        o.operation = Some(OperationView {
            phase: OperationPhase::Failed,
            message: None,
            for_merge: false,
            retries: 0,
            hook: None,
        });
        assert_eq!(judge(&o), Verdict::Healthy(Evidence::Summary));
    }

    #[test]
    fn a_rollout_paused_under_the_merges_operation_is_paused_not_waiting_nor_failed() {
        let mut o = healthy();
        o.health = Health::Suspended;
        o.operation = Some(OperationView {
            phase: OperationPhase::Running,
            message: Some("waiting for healthy state of argoproj.io/Rollout/api"),
            for_merge: true,
            retries: 0,
            hook: None,
        });
        assert_eq!(
            judge(&o),
            Verdict::Paused(
                "Rollout api paused (health Suspended): waiting for healthy state of argoproj.io/Rollout/api"
                    .into()
            )
        );
    }

    #[test]
    fn a_retrying_sync_waits_its_retries_then_fails_in_argo_cds_words() {
        let mut o = healthy();
        let retrying = |retries: u32| OperationView {
            phase: OperationPhase::Running,
            message: Some("one or more objects failed to apply. Retrying attempt #4 at 10:00AM."),
            for_merge: true,
            retries,
            hook: None,
        };
        o.operation = Some(retrying(3));
        assert!(matches!(judge(&o), Verdict::Waiting(_)), "{:?}", judge(&o));
        o.operation = Some(retrying(4));
        match judge(&o) {
            Verdict::Failed(why) => assert!(
                why.starts_with("sync operation still failing after 3 retries: one or more objects failed to apply")
                    && why.contains("Retrying attempt #4"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_running_operation_for_the_merge_waits_even_when_health_looks_good() {
        let mut o = healthy();
        o.operation = Some(OperationView {
            phase: OperationPhase::Running,
            message: None,
            for_merge: true,
            retries: 0,
            hook: None,
        });
        assert_eq!(judge(&o), Verdict::Waiting("sync operation Running".into()));
    }

    #[test]
    fn argo_cds_words_read_back_as_written_and_an_unknown_word_is_unknown() {
        for h in [
            Health::Healthy,
            Health::Degraded,
            Health::Missing,
            Health::Unknown,
        ] {
            assert_eq!(Health::parse(h.as_str()), h);
        }
        assert_eq!(SyncStatus::parse("OutOfSync"), SyncStatus::OutOfSync);
        assert_eq!(Health::parse("Exploded"), Health::Unknown);
        assert_eq!(OperationPhase::parse(""), OperationPhase::Unknown);
        assert!(OperationPhase::Terminating.running() && !OperationPhase::Failed.running());
    }

    #[test]
    fn only_hex_revisions_are_taken_for_commits() {
        assert!(is_commit(&"0a".repeat(20)));
        assert!(!is_commit("1.2.3"));
        assert!(!is_commit("main"));
        assert!(!is_commit("abc"));
    }
}
