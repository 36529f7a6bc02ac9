//! The merge waits for CI as GitHub reports it (`domain::checks`), over the fake: checks
//! not reported yet, failing, and expected by name but never reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Duration as Span;

use super::Action;
use super::Mode;
use super::tests::{row, world};
use crate::ports::CheckState;

fn waiting(a: &Action) -> Option<(Vec<String>, bool)> {
    match a {
        Action::WaitingForChecks {
            checks,
            never_reported,
            ..
        } => Some((checks.clone(), *never_reported)),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn an_auto_merge_promotion_waits_for_ci_to_report_until_checks_settle_passes() {
    let (w, clock, engine) = world();
    w.set_ci(&[]);
    w.push("1.1.0", 'b');
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        waiting(&row(&r, "dev").action),
        Some((Vec::new(), false)),
        "no check yet is not no checks: {:?}",
        row(&r, "dev").action
    );
    assert!(w.prs()[0].merged_at.is_none());
    clock.advance(Span::seconds(61));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::Merged { .. }),
        "nothing reported within checks_settle: nothing to wait for: {:?}",
        row(&r, "dev").action
    );
}

#[tokio::test(start_paused = true)]
async fn a_ci_check_that_reports_late_and_fails_is_never_merged_and_is_named() {
    let (w, clock, engine) = world();
    w.set_ci(&[]);
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::seconds(3));
    w.set_ci(&[("lint", CheckState::Pending)]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        waiting(&row(&r, "dev").action),
        Some((vec!["lint".to_owned()], false))
    );
    clock.advance(Span::seconds(120));
    w.set_ci(&[("lint", CheckState::Failure)]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Failed { error } = &row(&r, "dev").action else {
        panic!("{:?}", row(&r, "dev").action)
    };
    assert!(error.to_string().contains("lint"), "{error}");
    assert!(
        w.prs()[0].merged_at.is_none(),
        "a failing check is never merged"
    );
}

#[tokio::test(start_paused = true)]
async fn a_check_the_policy_expects_that_never_reports_is_named_and_never_merged() {
    let (w, clock, engine) = world();
    w.set_policy(
        "/salon/promotion/services/user_service",
        "environments:\n  dev:\n    checks: [kubeconform]\n    checks_settle: 30s\n",
    );
    w.set_ci(&[("lint", CheckState::Success)]);
    w.push("1.1.0", 'b');
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        waiting(&row(&r, "dev").action),
        Some((vec!["kubeconform".to_owned()], false))
    );
    clock.advance(Span::seconds(31));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        waiting(&row(&r, "dev").action),
        Some((vec!["kubeconform".to_owned()], true)),
        "{:?}",
        row(&r, "dev").action
    );
    assert!(w.prs()[0].merged_at.is_none());
    let text = crate::report::table(&r);
    assert!(
        text.contains("kubeconform") && text.contains("never reported"),
        "{text}"
    );
    w.set_ci(&[
        ("lint", CheckState::Success),
        ("kubeconform", CheckState::Success),
    ]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::Merged { .. }),
        "{:?}",
        row(&r, "dev").action
    );
}

fn rules(f: impl FnOnce(&mut crate::ports::BranchRules)) -> crate::ports::BranchRules {
    let mut r = crate::ports::BranchRules {
        branch: "main".into(),
        ..Default::default()
    };
    f(&mut r);
    r
}

#[tokio::test(start_paused = true)]
async fn checks_the_branch_requires_are_waited_for_when_the_policy_names_none() {
    let (w, clock, engine) = world();
    w.set_rules(rules(|r| r.required_checks = vec!["kubeconform".into()]));
    w.set_ci(&[("lint", CheckState::Success)]);
    w.push("1.1.0", 'b');
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        waiting(&row(&r, "dev").action),
        Some((vec!["kubeconform".to_owned()], false)),
        "a passing check that the branch does not require is not enough"
    );
    clock.advance(Span::seconds(61));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        waiting(&row(&r, "dev").action),
        Some((vec!["kubeconform".to_owned()], true))
    );
    assert_eq!(w.calls("merge"), 0, "never merged, never refused");
    w.set_ci(&[("kubeconform", CheckState::Success)]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::Merged { .. }),
        "{:?}",
        row(&r, "dev").action
    );
}

#[tokio::test(start_paused = true)]
async fn reviews_github_requires_are_asked_for_once_and_the_promotion_merges_once_a_writer_reviews()
{
    let (w, _, engine) = world();
    w.set_rules(rules(|r| r.required_reviews = 1));
    w.push("1.1.0", 'b');
    for _ in 0..3 {
        let r = engine.cycle(Mode::Apply).await.unwrap();
        assert!(
            matches!(
                row(&r, "dev").action,
                Action::AwaitingReview { missing: 1, .. }
            ),
            "{:?}",
            row(&r, "dev").action
        );
    }
    let number = w.prs()[0].number;
    let notices: Vec<String> = w
        .comments_on(number)
        .into_iter()
        .filter(|c| c.contains("GitHub requires 1 approving review"))
        .collect();
    assert_eq!(notices.len(), 1, "said once: {notices:?}");
    assert_eq!(
        w.calls("merge"),
        0,
        "no merge tried while a review is missing"
    );
    assert_eq!(
        w.calls("rules"),
        1,
        "the branch's rules are read once per 5 minutes"
    );
    let text = crate::report::table(&engine.cycle(Mode::Apply).await.unwrap());
    assert!(text.contains("bypass list"), "{text}");

    // A review by someone who may not write does not count, as on GitHub.
    w.review(number, "visitor", "APPROVED", "any");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(
        row(&r, "dev").action,
        Action::AwaitingReview { .. }
    ));
    w.allow("ana", crate::ports::Permission::Write);
    w.review(number, "ana", "APPROVED", "any");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::Merged { .. }),
        "{:?}",
        row(&r, "dev").action
    );
}

/// The salon's world on a main that requires a merge queue, with 1.1.0 pushed.
fn queue_world() -> (
    std::sync::Arc<super::fake::World>,
    std::sync::Arc<super::fake::TestClock>,
    super::Engine,
) {
    let (w, clock, engine) = world();
    w.set_rules(rules(|r| r.merge_queue = true));
    w.push("1.1.0", 'b');
    (w, clock, engine)
}

#[tokio::test(start_paused = true)]
async fn a_merge_queue_branch_gets_the_promotion_queued_once_and_verified_after_the_queue_merges_it()
 {
    let (w, _, engine) = queue_world();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::Queued { position: 1, .. }),
        "{:?}",
        row(&r, "dev").action
    );
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(row(&r, "dev").action, Action::Queued { .. }));
    assert_eq!(w.calls("enqueue"), 1, "queued once");
    assert_eq!(w.calls("merge"), 0, "never merged directly");
    let text = crate::report::table(&r);
    assert!(text.contains("in the merge queue (position 1)"), "{text}");
    w.queue_merges();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::Merged { .. }),
        "the queue's merge is verified: {:?}",
        row(&r, "dev").action
    );
}

#[tokio::test(start_paused = true)]
async fn a_promotion_the_merge_queue_removes_is_reported_once_and_not_queued_again_at_the_same_head()
 {
    let (w, clock, engine) = queue_world();
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::seconds(30));
    let number = w.prs()[0].number;
    w.queue_removes(number, "the required checks failed");
    for _ in 0..2 {
        let r = engine.cycle(Mode::Apply).await.unwrap();
        let Action::Failed { error } = &row(&r, "dev").action else {
            panic!("{:?}", row(&r, "dev").action)
        };
        assert!(
            error.to_string().contains("removed PR") && error.to_string().contains("checks failed"),
            "{error}"
        );
    }
    assert_eq!(w.calls("enqueue"), 1, "not queued again at the same head");
    let said = w
        .comments_on(number)
        .into_iter()
        .filter(|c| c.contains("The merge queue removed this pull request"))
        .count();
    assert_eq!(said, 1);
    // A newer image is a new head: queued again.
    clock.advance(Span::seconds(30));
    w.push("1.2.0", 'c');
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::Queued { .. }),
        "{:?}",
        row(&r, "dev").action
    );
    assert_eq!(w.calls("enqueue"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hold_takes_a_queued_promotion_out_of_the_merge_queue_and_lifting_it_queues_it_again() {
    let (w, clock, engine) = queue_world();
    w.allow("alice", crate::ports::Permission::Write);
    engine.cycle(Mode::Apply).await.unwrap();
    let number = w.prs()[0].number;
    clock.advance(Span::seconds(5));
    w.say(number, "alice", "/hold");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::Held { .. }),
        "{:?}",
        row(&r, "dev").action
    );
    assert_eq!(
        w.calls("dequeue"),
        1,
        "a held PR is not left for the queue to merge"
    );
    clock.advance(Span::seconds(5));
    w.say(number, "alice", "/unhold");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::Queued { .. }),
        "taken out by tugboat itself, so queued again: {:?}",
        row(&r, "dev").action
    );
    assert_eq!(w.calls("enqueue"), 2);
}
