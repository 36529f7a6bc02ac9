//! Whether a deployment runs a merged promotion, judged from one look at the Argo CD
//! application (no I/O: what needs the repository, such as "does this revision include the
//! merge commit", is decided outside and passed in).

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
    /// Whether the operation syncs the merge commit (or a descendant of it).
    pub for_merge: bool,
}

/// One look at the application.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub sync_status: SyncStatus,
    pub health: Health,
    pub health_message: Option<&'a str>,
    /// The revision shown (any source's, for a multi-source application) is the merge commit
    /// or descends from it.
    pub at_merge: bool,
    /// `reconciledAt` is not before the merge.
    pub reconciled_after_merge: bool,
    pub operation: Option<OperationView<'a>>,
    /// `summary.images` lists the promoted reference.
    pub runs_image: bool,
}

/// What one look says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every condition holds.
    Healthy,
    /// Not yet: what is still missing.
    Waiting(String),
    /// It will not get there: Argo CD's own words.
    Failed(String),
}

/// Judge one look. Healthy only when the revision is the merge, it is `Synced`, `Healthy`,
/// reconciled after the merge, runs the promoted image, and no operation for the merge has
/// failed or is still running. `Degraded` or `Missing` at the merge, or a failed operation
/// for it, is a failure; anything else waits.
pub fn judge(o: &Observation<'_>) -> Verdict {
    // Argo CD's words come from the application's resources: quoted inert.
    let with = |m: Option<&str>| {
        m.map(|m| format!(": {}", super::markdown::inert(m)))
            .unwrap_or_default()
    };
    if let Some(op) = o.operation.filter(|op| op.for_merge) {
        if matches!(op.phase, OperationPhase::Failed | OperationPhase::Error) {
            return Verdict::Failed(format!("sync operation {}{}", op.phase, with(op.message)));
        }
        if op.phase.running() {
            return Verdict::Waiting(format!("sync operation {}", op.phase));
        }
    }
    if o.at_merge && matches!(o.health, Health::Degraded | Health::Missing) {
        return Verdict::Failed(format!("health {}{}", o.health, with(o.health_message)));
    }
    let missing: Vec<&str> = [
        (!o.at_merge, "revision is not the merge commit yet"),
        (o.sync_status != SyncStatus::Synced, "not Synced"),
        (o.health != Health::Healthy, "not Healthy"),
        (!o.reconciled_after_merge, "not reconciled since the merge"),
        (!o.runs_image, "the promoted image is not running"),
    ]
    .into_iter()
    .filter_map(|(missing, what)| missing.then_some(what))
    .collect();
    if missing.is_empty() {
        Verdict::Healthy
    } else {
        Verdict::Waiting(format!(
            "sync {}, health {}: {}",
            o.sync_status,
            o.health,
            missing.join(", ")
        ))
    }
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
            at_merge: true,
            reconciled_after_merge: true,
            operation: Some(OperationView {
                phase: OperationPhase::Succeeded,
                message: None,
                for_merge: true,
            }),
            runs_image: true,
        }
    }

    #[test]
    fn every_condition_holding_is_healthy() {
        assert_eq!(judge(&healthy()), Verdict::Healthy);
    }

    #[test]
    fn each_missing_condition_waits_and_is_named() {
        type Change = fn(&mut Observation<'static>);
        let cases: [(Change, &str); 5] = [
            (|o| o.at_merge = false, "revision is not the merge commit"),
            (|o| o.sync_status = SyncStatus::OutOfSync, "not Synced"),
            (|o| o.health = Health::Progressing, "not Healthy"),
            (|o| o.reconciled_after_merge = false, "not reconciled"),
            (|o| o.runs_image = false, "image is not running"),
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
    fn degraded_or_missing_at_the_merge_fails_with_argo_cds_message() {
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
    fn degraded_before_the_merge_is_reached_still_waits() {
        let mut o = healthy();
        o.at_merge = false;
        o.health = Health::Degraded;
        assert!(matches!(judge(&o), Verdict::Waiting(_)));
    }

    #[test]
    fn a_failed_operation_for_the_merge_fails_but_an_older_one_does_not_count() {
        let mut o = healthy();
        o.operation = Some(OperationView {
            phase: OperationPhase::Failed,
            message: Some("one or more objects failed to apply"),
            for_merge: true,
        });
        assert_eq!(
            judge(&o),
            Verdict::Failed("sync operation Failed: one or more objects failed to apply".into())
        );
        o.operation = Some(OperationView {
            phase: OperationPhase::Failed,
            message: None,
            for_merge: false,
        });
        assert_eq!(judge(&o), Verdict::Healthy);
    }

    #[test]
    fn a_running_operation_for_the_merge_waits_even_when_health_looks_good() {
        let mut o = healthy();
        o.operation = Some(OperationView {
            phase: OperationPhase::Running,
            message: None,
            for_merge: true,
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
