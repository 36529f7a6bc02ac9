//! Whether a deployment runs a merged promotion, judged from one look at the Argo CD
//! application (no I/O: what needs the repository, such as "does this revision include the
//! merge commit", is decided outside and passed in).

/// An operation (`status.operationState`), as far as the judgement needs it.
#[derive(Debug, Clone, Copy)]
pub struct OperationView<'a> {
    pub phase: &'a str,
    pub message: Option<&'a str>,
    /// Whether the operation syncs the merge commit (or a descendant of it).
    pub for_merge: bool,
}

/// One look at the application.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub sync_status: &'a str,
    pub health: &'a str,
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
    let with = |m: Option<&str>| m.map(|m| format!(": {m}")).unwrap_or_default();
    if let Some(op) = o.operation.filter(|op| op.for_merge) {
        if matches!(op.phase, "Failed" | "Error") {
            return Verdict::Failed(format!("sync operation {}{}", op.phase, with(op.message)));
        }
        if matches!(op.phase, "Running" | "Terminating") {
            return Verdict::Waiting(format!("sync operation {}", op.phase));
        }
    }
    if o.at_merge && matches!(o.health, "Degraded" | "Missing") {
        return Verdict::Failed(format!("health {}{}", o.health, with(o.health_message)));
    }
    let missing: Vec<&str> = [
        (!o.at_merge, "revision is not the merge commit yet"),
        (o.sync_status != "Synced", "not Synced"),
        (o.health != "Healthy", "not Healthy"),
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
            sync_status: "Synced",
            health: "Healthy",
            health_message: None,
            at_merge: true,
            reconciled_after_merge: true,
            operation: Some(OperationView {
                phase: "Succeeded",
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
            (|o| o.sync_status = "OutOfSync", "not Synced"),
            (|o| o.health = "Progressing", "not Healthy"),
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
        o.health = "Degraded";
        o.health_message = Some("CrashLoopBackOff");
        assert_eq!(
            judge(&o),
            Verdict::Failed("health Degraded: CrashLoopBackOff".into())
        );
        o.health = "Missing";
        o.health_message = None;
        assert_eq!(judge(&o), Verdict::Failed("health Missing".into()));
    }

    #[test]
    fn degraded_before_the_merge_is_reached_still_waits() {
        let mut o = healthy();
        o.at_merge = false;
        o.health = "Degraded";
        assert!(matches!(judge(&o), Verdict::Waiting(_)));
    }

    #[test]
    fn a_failed_operation_for_the_merge_fails_but_an_older_one_does_not_count() {
        let mut o = healthy();
        o.operation = Some(OperationView {
            phase: "Failed",
            message: Some("one or more objects failed to apply"),
            for_merge: true,
        });
        assert_eq!(
            judge(&o),
            Verdict::Failed("sync operation Failed: one or more objects failed to apply".into())
        );
        o.operation = Some(OperationView {
            phase: "Failed",
            message: None,
            for_merge: false,
        });
        assert_eq!(judge(&o), Verdict::Healthy);
    }

    #[test]
    fn a_running_operation_for_the_merge_waits_even_when_health_looks_good() {
        let mut o = healthy();
        o.operation = Some(OperationView {
            phase: "Running",
            message: None,
            for_merge: true,
        });
        assert_eq!(judge(&o), Verdict::Waiting("sync operation Running".into()));
    }

    #[test]
    fn only_hex_revisions_are_taken_for_commits() {
        assert!(is_commit(&"0a".repeat(20)));
        assert!(!is_commit("1.2.3"));
        assert!(!is_commit("main"));
        assert!(!is_commit("abc"));
    }
}
