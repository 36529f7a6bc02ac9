//! Which of a commit's checks a merge waits for, and what they add up to.
//!
//! GitHub reports CI two ways: commit statuses (the combined-status API) and check runs
//! (GitHub Actions and other Apps), which the combined status never includes. A workflow's
//! runs appear only once it is queued, seconds after the push, so "no checks yet" is not
//! "no checks": the merge waits `checks_settle` after the last push for them to appear.

/// One check of a commit as GitHub reports it: a commit status (its context) or a check
/// run (its name), the newest of each name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub state: CheckState,
}

/// The state of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    /// Completed successfully (also `neutral` and `skipped` check runs, which GitHub lets
    /// a required check pass with).
    Success,
    /// Queued or in progress.
    Pending,
    /// Failed, errored, cancelled or timed out.
    Failure,
}

/// The checks of a head, judged against what the merge waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecksState {
    /// Every check the merge waits for passed.
    Success,
    /// Waiting for these checks (empty: for any check to report, within `checks_settle`).
    Pending { waiting: Vec<String> },
    /// These checks failed.
    Failure { failed: Vec<String> },
    /// No check reported within `checks_settle`, and none is expected by name: nothing to
    /// wait for.
    None,
    /// Checks expected by name that did not report within `checks_settle` (a workflow
    /// that does not run on tugboat's branches, a misspelt name): never merged without them.
    Missing { names: Vec<String> },
}

/// Judge a head's checks. `expected` names the checks that must pass (the policy's
/// `checks`); empty means every check that reports.
/// `settled` says whether `checks_settle` has passed since the last push.
pub fn judge(seen: &[Check], expected: &[String], settled: bool) -> ChecksState {
    let named = |name: &str| seen.iter().find(|c| c.name == name);
    let in_scope: Vec<&Check> = if expected.is_empty() {
        seen.iter().collect()
    } else {
        expected.iter().filter_map(|n| named(n)).collect()
    };
    let with = |state: CheckState| -> Vec<String> {
        in_scope
            .iter()
            .filter(|c| c.state == state)
            .map(|c| c.name.clone())
            .collect()
    };
    let failed = with(CheckState::Failure);
    if !failed.is_empty() {
        return ChecksState::Failure { failed };
    }
    let missing: Vec<String> = expected
        .iter()
        .filter(|n| named(n).is_none())
        .cloned()
        .collect();
    let mut waiting = with(CheckState::Pending);
    if !missing.is_empty() && settled {
        return ChecksState::Missing { names: missing };
    }
    waiting.extend(missing);
    if !waiting.is_empty() {
        return ChecksState::Pending { waiting };
    }
    match (in_scope.is_empty(), settled) {
        (true, false) => ChecksState::Pending {
            waiting: Vec::new(),
        },
        (true, true) => ChecksState::None,
        (false, _) => ChecksState::Success,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, state: CheckState) -> Check {
        Check {
            name: name.into(),
            state,
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn no_check_yet_is_waited_on_until_the_settle_time_passes_then_counts_as_none() {
        assert_eq!(
            judge(&[], &[], false),
            ChecksState::Pending {
                waiting: Vec::new()
            }
        );
        assert_eq!(judge(&[], &[], true), ChecksState::None);
    }

    #[test]
    fn a_check_expected_by_name_is_waited_on_then_named_as_missing_never_passed() {
        let lint = names(&["lint"]);
        assert_eq!(
            judge(&[], &lint, false),
            ChecksState::Pending {
                waiting: names(&["lint"])
            }
        );
        assert_eq!(
            judge(&[check("build", CheckState::Success)], &lint, true),
            ChecksState::Missing {
                names: names(&["lint"])
            },
            "another check passing is no stand-in for the expected one"
        );
    }

    #[test]
    fn with_expected_names_only_those_checks_count() {
        let seen = [
            check("lint", CheckState::Success),
            check("flaky-e2e", CheckState::Failure),
            check("docs", CheckState::Pending),
        ];
        assert_eq!(judge(&seen, &names(&["lint"]), false), ChecksState::Success);
        assert_eq!(
            judge(&seen, &[], true),
            ChecksState::Failure {
                failed: names(&["flaky-e2e"])
            },
            "without names, every check that reports counts"
        );
    }

    #[test]
    fn a_failure_wins_over_pending_and_missing_checks() {
        let seen = [
            check("lint", CheckState::Failure),
            check("test", CheckState::Pending),
        ];
        assert_eq!(
            judge(&seen, &names(&["lint", "test", "kubeconform"]), true),
            ChecksState::Failure {
                failed: names(&["lint"])
            }
        );
    }

    #[test]
    fn pending_checks_are_named_with_the_expected_ones_not_reported_yet() {
        let seen = [check("test", CheckState::Pending)];
        assert_eq!(
            judge(&seen, &names(&["test", "lint"]), false),
            ChecksState::Pending {
                waiting: names(&["test", "lint"])
            }
        );
        assert_eq!(
            judge(&seen, &[], false),
            ChecksState::Pending {
                waiting: names(&["test"])
            }
        );
    }

    #[test]
    fn checks_that_reported_and_passed_merge_before_the_settle_time() {
        let seen = [check("lint", CheckState::Success)];
        assert_eq!(judge(&seen, &[], false), ChecksState::Success);
        assert_eq!(judge(&seen, &names(&["lint"]), false), ChecksState::Success);
    }
}
