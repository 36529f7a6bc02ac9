//! May a promotion merge now? The one rule, from facts the engine gathers.
//!
//! The engine reads the cheap facts first (the PR's commands, the clock) and asks the rule;
//! the rule answers either a verdict or which outside fact it needs next ([`Verdict::Read`]),
//! so that a PR still awaiting approval costs no Argo CD or checks call.

use chrono::{DateTime, Utc};

pub use super::checks::ChecksState;

/// Whether the deployer's sync windows let the application sync now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncWindows {
    pub can_sync: bool,
    /// The active windows, described (`deny 0 22 * * * for 8h`).
    pub active: Vec<String>,
}

/// An outside fact the rule may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    SyncWindows,
    Checks,
}

/// What the rule knows about one promotion PR.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// Who holds the PR (`/hold`), if anyone.
    pub held_by: Option<&'a str>,
    /// How many approvers approved the current head.
    pub approvals: usize,
    /// How many approvals the environment needs (at least one counts when it asks for none).
    pub approvals_needed: u32,
    /// Whether the environment merges without approvals.
    pub auto_merge: bool,
    /// Approving reviews GitHub requires on the base branch (0: none), and how many the PR
    /// has from people with write access.
    pub reviews: (u32, usize),
    /// The environment's promotion windows now: `Err` with the next opening when closed.
    pub window: Result<(), Option<DateTime<Utc>>>,
    /// The deployer's sync windows, once read.
    pub sync_windows: Option<SyncWindows>,
    /// The head commit's checks, once read.
    pub checks: Option<ChecksState>,
}

/// The rule's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Merge,
    Held {
        by: String,
    },
    AwaitingApproval,
    /// GitHub requires approving reviews tugboat cannot give: this many more.
    AwaitingReview {
        missing: u32,
    },
    /// Outside the environment's promotion windows (the next opening, when known).
    OutsideWindow {
        opens: Option<DateTime<Utc>>,
    },
    /// A sync window of the deployer denies syncs (the active windows).
    SyncWindowDenies {
        windows: Vec<String>,
    },
    /// Checks still running or not reported yet (empty: waiting for any to report).
    WaitingForChecks {
        waiting: Vec<String>,
    },
    /// Checks expected by name never reported within `checks_settle`.
    ChecksMissing {
        names: Vec<String>,
    },
    ChecksFailed {
        failed: Vec<String>,
    },
    /// Read this fact, then ask again.
    Read(Fact),
}

/// Whether the promotion may merge now, in order: a hold, approvals, the reviews GitHub
/// requires, the promotion windows, the deployer's sync windows, the checks.
pub fn may_merge(f: &Facts<'_>) -> Verdict {
    if let Some(by) = f.held_by {
        return Verdict::Held { by: by.to_owned() };
    }
    if !f.auto_merge && f.approvals < f.approvals_needed.max(1) as usize {
        return Verdict::AwaitingApproval;
    }
    let missing = super::rules::reviews_missing(f.reviews.0, f.reviews.1);
    if missing > 0 {
        return Verdict::AwaitingReview { missing };
    }
    if let Some(v) = windows(&f.window, f.sync_windows.as_ref()) {
        return v;
    }
    match &f.checks {
        None => Verdict::Read(Fact::Checks),
        Some(ChecksState::Success | ChecksState::None) => Verdict::Merge,
        Some(ChecksState::Pending { waiting }) => Verdict::WaitingForChecks {
            waiting: waiting.clone(),
        },
        Some(ChecksState::Missing { names }) => Verdict::ChecksMissing {
            names: names.clone(),
        },
        Some(ChecksState::Failure { failed }) => Verdict::ChecksFailed {
            failed: failed.clone(),
        },
    }
}

/// The part of the rule about time: the promotion windows, then the deployer's sync
/// windows. `None` when both let the merge happen now (also what `plan` says).
pub fn windows(
    window: &Result<(), Option<DateTime<Utc>>>,
    sync: Option<&SyncWindows>,
) -> Option<Verdict> {
    if let Err(opens) = window {
        return Some(Verdict::OutsideWindow { opens: *opens });
    }
    match sync {
        None => Some(Verdict::Read(Fact::SyncWindows)),
        Some(s) if !s.can_sync => Some(Verdict::SyncWindowDenies {
            windows: s.active.clone(),
        }),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> Facts<'static> {
        Facts {
            approvals: 1,
            approvals_needed: 1,
            sync_windows: Some(SyncWindows {
                can_sync: true,
                active: vec![],
            }),
            checks: Some(ChecksState::Success),
            held_by: None,
            auto_merge: false,
            reviews: (0, 0),
            window: Ok(()),
        }
    }

    #[test]
    fn reviews_github_requires_keep_an_auto_merge_waiting_until_they_arrive() {
        let f = Facts {
            auto_merge: true,
            approvals: 0,
            reviews: (1, 0),
            ..ready()
        };
        assert_eq!(may_merge(&f), Verdict::AwaitingReview { missing: 1 });
        let reviewed = Facts {
            reviews: (1, 1),
            ..f.clone()
        };
        assert_eq!(may_merge(&reviewed), Verdict::Merge);
        let held = Facts {
            held_by: Some("ana"),
            ..f
        };
        assert!(matches!(may_merge(&held), Verdict::Held { .. }));
    }

    #[test]
    fn an_approved_promotion_inside_its_windows_with_green_checks_merges() {
        assert_eq!(may_merge(&ready()), Verdict::Merge);
        let no_checks = Facts {
            checks: Some(ChecksState::None),
            ..ready()
        };
        assert_eq!(may_merge(&no_checks), Verdict::Merge);
    }

    #[test]
    fn a_hold_wins_over_everything_else() {
        let f = Facts {
            held_by: Some("alice"),
            window: Err(None),
            checks: Some(ChecksState::Failure {
                failed: vec!["lint".into()],
            }),
            ..ready()
        };
        assert_eq!(may_merge(&f), Verdict::Held { by: "alice".into() });
    }

    #[test]
    fn an_environment_asking_for_no_approvals_still_needs_one_unless_it_auto_merges() {
        let f = Facts {
            approvals: 0,
            approvals_needed: 0,
            ..ready()
        };
        assert_eq!(may_merge(&f), Verdict::AwaitingApproval);
        let auto = Facts {
            auto_merge: true,
            ..f
        };
        assert_eq!(may_merge(&auto), Verdict::Merge);
        let two = Facts {
            approvals: 1,
            approvals_needed: 2,
            ..ready()
        };
        assert_eq!(may_merge(&two), Verdict::AwaitingApproval);
    }

    #[test]
    fn approvals_are_asked_before_any_outside_fact_is_read() {
        let f = Facts {
            approvals: 0,
            sync_windows: None,
            checks: None,
            ..ready()
        };
        assert_eq!(may_merge(&f), Verdict::AwaitingApproval);
    }

    #[test]
    fn the_rule_asks_for_sync_windows_then_checks_and_only_when_they_matter() {
        let f = Facts {
            sync_windows: None,
            checks: None,
            ..ready()
        };
        assert_eq!(may_merge(&f), Verdict::Read(Fact::SyncWindows));
        let closed = Facts {
            window: Err(None),
            ..f.clone()
        };
        assert_eq!(
            may_merge(&closed),
            Verdict::OutsideWindow { opens: None },
            "a closed promotion window needs no Argo CD call"
        );
        let windows_read = Facts {
            sync_windows: ready().sync_windows,
            ..f
        };
        assert_eq!(may_merge(&windows_read), Verdict::Read(Fact::Checks));
    }

    #[test]
    fn a_denying_sync_window_and_pending_or_failed_checks_each_stop_the_merge() {
        let denied = Facts {
            sync_windows: Some(SyncWindows {
                can_sync: false,
                active: vec!["deny 0 22 * * * for 8h".into()],
            }),
            ..ready()
        };
        assert_eq!(
            may_merge(&denied),
            Verdict::SyncWindowDenies {
                windows: vec!["deny 0 22 * * * for 8h".into()]
            }
        );
        let pending = Facts {
            checks: Some(ChecksState::Pending {
                waiting: vec!["lint".into()],
            }),
            ..ready()
        };
        assert_eq!(
            may_merge(&pending),
            Verdict::WaitingForChecks {
                waiting: vec!["lint".into()]
            }
        );
        let failed = Facts {
            checks: Some(ChecksState::Failure {
                failed: vec!["lint".into()],
            }),
            ..ready()
        };
        assert_eq!(
            may_merge(&failed),
            Verdict::ChecksFailed {
                failed: vec!["lint".into()]
            }
        );
        let missing = Facts {
            checks: Some(ChecksState::Missing {
                names: vec!["kubeconform".into()],
            }),
            ..ready()
        };
        assert_eq!(
            may_merge(&missing),
            Verdict::ChecksMissing {
                names: vec!["kubeconform".into()]
            },
            "a check expected by name that never reported is no pass"
        );
    }
}
