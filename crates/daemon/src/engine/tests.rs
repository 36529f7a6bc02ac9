//! The engine over the in-memory fake (`fake.rs`): its decisions, its calls and its typed
//! failures, in paused time, without a sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{Duration as Span, TimeZone, Utc};

use super::fake::{TestClock, World};
use super::{Action, Engine, Mode, Step, Verification};
use crate::domain::plan::Decision;
use crate::ports::{ErrorKind, Health, Permission};

use super::fake::{DEV, PROD, values};

/// A world where dev and prod run 1.0.0 healthy, and an engine on it.
pub(super) fn world() -> (Arc<World>, Arc<TestClock>, Engine) {
    let (w, clock) = World::salon();
    let engine = Engine::new(super::fake::config("", ""), w.ports()).with_clock(clock.clone());
    (w, clock, engine)
}

pub(super) fn row(r: &[super::EnvReport], env: &str) -> super::EnvReport {
    r.iter().find(|x| x.environment == env).unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn a_new_tag_is_promoted_merged_and_verified_healthy_in_dev_and_labelled_deployed() {
    let (w, _, engine) = world();
    w.push("1.1.0", 'b');
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let dev = row(&r, "dev");
    assert!(
        matches!(
            dev.action,
            Action::Merged {
                verification: Verification::Healthy { .. },
                ..
            }
        ),
        "{:?}",
        dev.action
    );
    assert_eq!(w.main_file(DEV), values("1.1.0"), "byte-exact edit");
    let pr = &w.prs()[0];
    assert!(pr.labels.contains("tugboat:deployed") && !pr.labels.contains("tugboat:verifying"));
    assert!(
        pr.body.contains("**Deployed.** Argo CD reports"),
        "the verification is reported in the PR's body: {}",
        pr.body
    );
    assert!(
        w.comments_on(pr.number).is_empty(),
        "and by no comment repeating it"
    );
}

#[tokio::test(start_paused = true)]
async fn a_prod_promotion_awaiting_approval_costs_no_argo_cd_or_checks_call() {
    let (w, clock, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::hours(2)); // dev's soak of 1 h is over
    let before = (w.calls("sync_windows"), w.calls("checks"));
    assert_eq!(before, (1, 1), "dev's merge read them once");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let prod = row(&r, "prod");
    assert!(
        matches!(prod.action, Action::AwaitingApproval { .. }),
        "{:?}",
        prod.action
    );
    assert_eq!(
        (w.calls("sync_windows"), w.calls("checks")),
        before,
        "prod's merge rule stopped at approvals"
    );
}

#[tokio::test(start_paused = true)]
async fn an_approval_by_a_writer_merges_prod_and_one_by_a_reader_does_not() {
    let (w, clock, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::hours(2));
    engine.cycle(Mode::Apply).await.unwrap();
    let prod_pr = w.pr_from("tugboat/prod/user_service").unwrap();
    w.allow("mallory", Permission::Read);
    clock.advance(Span::seconds(5));
    w.say(prod_pr.number, "mallory", "/approve");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(
        row(&r, "prod").action,
        Action::AwaitingApproval { .. }
    ));
    w.allow("alice", Permission::Write);
    clock.advance(Span::seconds(5));
    w.say(prod_pr.number, "alice", "/approve");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "prod").action, Action::Merged { .. }),
        "{:?}",
        row(&r, "prod").action
    );
    assert_eq!(w.main_file(PROD), values("1.1.0"));
}

#[tokio::test(start_paused = true)]
async fn a_refused_push_is_a_typed_propose_failure_and_the_next_cycle_retries() {
    let (w, _, engine) = world();
    w.push("1.1.0", 'b');
    w.fail("propose", ErrorKind::Throttled);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Failed { error } = row(&r, "dev").action else {
        panic!("{:?}", row(&r, "dev").action)
    };
    assert_eq!(
        (error.step, error.metric_label()),
        (Step::Propose, "throttled")
    );
    assert!(error.to_string().contains("fake propose"), "{error}");
    assert!(w.prs().is_empty(), "nothing was opened");
    w.heal("propose");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::Merged { .. }),
        "{:?}",
        row(&r, "dev").action
    );
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_dev_promotion_is_rolled_back_and_its_digest_marked_bad() {
    let (w, _, engine) = world();
    w.push("1.1.0", 'b');
    w.app("user-service-dev", DEV, Health::Degraded);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let dev = row(&r, "dev");
    assert!(
        matches!(dev.action, Action::RolledBack { .. }),
        "{:?}",
        dev.action
    );
    assert_eq!(
        w.main_file(DEV),
        values("1.0.0"),
        "the previous tag is back"
    );
    let promoted = &w.prs()[0];
    assert!(promoted.labels.contains("tugboat:bad"));
    // The bad digest is never offered again.
    w.app("user-service-dev", DEV, Health::Healthy);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").decision, Decision::Blocked { .. }),
        "{:?}",
        row(&r, "dev").decision
    );
}

#[tokio::test(start_paused = true)]
async fn prod_waits_for_devs_soak_on_the_engines_clock() {
    let (w, clock, engine) = world();
    w.push("1.1.0", 'b');
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Decision::Waiting { reason, .. } = row(&r, "prod").decision else {
        panic!("{:?}", row(&r, "prod").decision)
    };
    assert!(reason.contains("soak"), "{reason}");
    clock.advance(Span::minutes(61));
    let r = engine.cycle(Mode::Plan).await.unwrap();
    assert!(
        matches!(row(&r, "prod").decision, Decision::Promote { .. }),
        "{:?}",
        row(&r, "prod").decision
    );
}

#[tokio::test(start_paused = true)]
async fn an_application_that_never_turns_healthy_fails_at_the_health_timeout_in_paused_time() {
    let (w, _, engine) = world();
    w.push("1.1.0", 'b');
    w.app("user-service-dev", DEV, Health::Progressing);
    let started = tokio::time::Instant::now();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::RolledBack { bad, .. } = row(&r, "dev").action else {
        panic!("{:?}", row(&r, "dev").action)
    };
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(120),
        "it waited out the 2 m health timeout on tokio's clock"
    );
    assert!(
        w.comments_on(bad)
            .iter()
            .any(|c| c.contains("timed out after 2m")),
        "{:?}",
        w.comments_on(bad)
    );
}

const WINDOWED: &str = r#"
environments:
  prod:
    soak: 0s
    windows:
      - days: [MON-THU]
        hours: '09:00-16:00'
        time_zone: UTC
"#;

#[tokio::test(start_paused = true)]
async fn an_approved_prod_promotion_waits_for_its_window_and_merges_when_it_opens() {
    let (w, clock, engine) = world();
    w.set_policy("/salon/promotion/services/user_service", WINDOWED);
    // Friday 2026-12-04 10:00 UTC: outside MON-THU.
    clock.advance(Span::days(3));
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { number, .. } = row(&r, "prod").action else {
        panic!("{:?}", row(&r, "prod").action)
    };
    w.allow("alice", Permission::Write);
    clock.advance(Span::seconds(5));
    w.say(number, "alice", "/approve");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::WaitingForWindow { opens, .. } = row(&r, "prod").action else {
        panic!("{:?}", row(&r, "prod").action)
    };
    let monday = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap();
    assert_eq!(opens, Some(monday));
    let checks = w.calls("sync_windows");
    clock.advance(monday - clock_now(&clock));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "prod").action, Action::Merged { .. }),
        "{:?}",
        row(&r, "prod").action
    );
    assert_eq!(
        w.calls("sync_windows"),
        checks + 1,
        "read once the window opened"
    );
}

fn clock_now(clock: &TestClock) -> chrono::DateTime<Utc> {
    use super::scheduler::Clock as _;
    clock.now()
}

/// Dev promoted 1.1.0 and prod's PR awaits approval; alice (a writer) approved it. Returns
/// the prod PR's number.
async fn approved_prod_pr(w: &World, clock: &TestClock, engine: &Engine) -> u64 {
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::hours(2));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { number, .. } = row(&r, "prod").action else {
        panic!("{:?}", row(&r, "prod").action)
    };
    w.allow("alice", Permission::Write);
    clock.advance(Span::seconds(5));
    w.say(number, "alice", "/approve");
    number
}

#[tokio::test(start_paused = true)]
async fn an_approval_survives_unrelated_merges_to_main_and_they_cost_no_writes() {
    let (w, clock, engine) = world();
    w.set_policy(
        "/salon/promotion/services/user_service",
        "environments:\n  prod:\n    approvals: 2\n",
    );
    let number = approved_prod_pr(&w, &clock, &engine).await;
    let writes = |w: &World| {
        [
            "propose_pushed",
            "report",
            "update_pr",
            "comment",
            "add_labels",
        ]
        .map(|op| w.calls(op))
    };
    engine.cycle(Mode::Apply).await.unwrap(); // answers alice's command
    let before = (writes(&w), w.prs());
    for i in 0..3 {
        clock.advance(Span::minutes(1));
        w.commit_to_main(&format!("apps/other/values-{i}.yaml"), "replicas: 2\n");
        let r = engine.cycle(Mode::Apply).await.unwrap();
        assert!(matches!(
            row(&r, "prod").action,
            Action::AwaitingApproval { .. }
        ));
    }
    let after = (writes(&w), w.prs());
    assert_eq!(after.0, before.0, "no push, status, edit, comment or label");
    assert_eq!(
        after.1[number as usize - 1].title,
        before.1[number as usize - 1].title
    );
    // A second approver: the first approval still counts, so the PR merges.
    w.allow("bob", Permission::Write);
    clock.advance(Span::seconds(5));
    w.say(number, "bob", "/approve");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "prod").action, Action::Merged { .. }),
        "{:?}",
        row(&r, "prod").action
    );
}

#[tokio::test(start_paused = true)]
async fn a_rebase_forced_by_a_change_to_the_prs_file_says_who_must_approve_again() {
    let (w, clock, engine) = world();
    w.set_policy(
        "/salon/promotion/services/user_service",
        "environments:\n  prod:\n    approvals: 2\n",
    );
    let number = approved_prod_pr(&w, &clock, &engine).await;
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::minutes(1));
    // Someone edits prod's file on main (not the image): the PR must be rebased.
    w.commit_to_main(PROD, &format!("{}replicas: 3\n", values("1.0.0")));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(
        row(&r, "prod").action,
        Action::AwaitingApproval { .. }
    ));
    let said = w.comments_on(number);
    let notice = said
        .iter()
        .find(|c| c.contains("approve again"))
        .unwrap_or_else(|| panic!("{said:#?}"));
    assert!(
        notice.starts_with("@alice — tugboat rewrote this PR's branch"),
        "{notice}"
    );
    assert!(
        notice.contains(PROD) && notice.contains("main changed the files"),
        "{notice}"
    );
    // Said once: the next cycle has nothing to rebase and nobody to name.
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        w.comments_on(number)
            .iter()
            .filter(|c| c.contains("approve again"))
            .count(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_newer_tag_moves_an_approved_pr_and_its_approvers_are_told_why() {
    let (w, clock, engine) = world();
    w.set_policy(
        "/salon/promotion/services/user_service",
        "environments:\n  prod:\n    approvals: 2\n",
    );
    let number = approved_prod_pr(&w, &clock, &engine).await;
    engine.cycle(Mode::Apply).await.unwrap();
    w.push("1.2.0", 'c');
    engine.cycle(Mode::Apply).await.unwrap(); // dev takes 1.2.0
    clock.advance(Span::hours(2));
    engine.cycle(Mode::Apply).await.unwrap(); // the prod PR moves to 1.2.0
    let said = w.comments_on(number);
    let notice = said
        .iter()
        .find(|c| c.contains("approve again"))
        .unwrap_or_else(|| panic!("{said:#?}"));
    assert!(
        notice.starts_with("@alice — ") && notice.contains("it promotes a newer tag now"),
        "{notice}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_manual_rollback_on_main_is_held_across_cycles_and_restarts_until_an_approver_resumes() {
    let (w, clock, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(w.main_file(DEV), values("1.1.0"));
    clock.advance(Span::minutes(5));
    w.commit_as(DEV, &values("1.0.0"), "oncall");

    let r = engine.cycle(Mode::Apply).await.unwrap();
    let dev = row(&r, "dev");
    let Decision::Held { hold, issue } = &dev.decision else {
        panic!("{:?}", dev.decision)
    };
    assert_eq!(hold.by.as_deref(), Some("oncall"));
    assert!(
        hold.commit.is_some() && hold.detail.contains("main deploys"),
        "{hold:?}"
    );
    let issue = issue.unwrap();
    assert!(matches!(dev.action, Action::EnvironmentHeld { issue: i, .. } if i == issue));

    // Held for several cycles, and after a restart (a new engine reads the same issue).
    let prs = w.prs().len();
    let engine = Engine::new(super::fake::config("", ""), w.ports()).with_clock(clock.clone());
    for _ in 0..3 {
        clock.advance(Span::minutes(1));
        let r = engine.cycle(Mode::Apply).await.unwrap();
        assert_eq!(row(&r, "dev").decision.kind(), "held");
        assert_eq!(row(&r, "dev").action, Action::None);
    }
    assert_eq!(
        w.main_file(DEV),
        values("1.0.0"),
        "the person's rollback stands"
    );
    assert_eq!(
        (w.prs().len(), w.issues().len()),
        (prs, 1),
        "no new PR, one issue"
    );

    // A reader's /resume is refused; an approver's lifts the hold and promotion goes on.
    w.allow("mallory", Permission::Read);
    w.say(issue, "mallory", "/resume");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(row(&r, "dev").decision.kind(), "held");
    assert!(
        w.comments_on(issue)
            .iter()
            .any(|c| c.contains("not an approver"))
    );
    w.allow("alice", Permission::Write);
    w.say(issue, "alice", "/resume");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(!w.issues()[0].open, "the hold's issue is closed");
    assert!(
        matches!(row(&r, "dev").action, Action::Merged { .. }),
        "{:?}",
        row(&r, "dev")
    );
    assert_eq!(w.main_file(DEV), values("1.1.0"));
    let first = &w.prs()[0];
    assert!(
        !first.labels.contains("tugboat:deployed"),
        "the old record was dropped on resume"
    );
}

#[tokio::test(start_paused = true)]
async fn a_plan_shows_a_manual_change_as_held_without_writing_anything() {
    let (w, clock, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::minutes(5));
    w.commit_as(DEV, &values("1.0.0"), "oncall");
    let writes = |w: &World| {
        (
            w.calls("open_issue"),
            w.calls("comment"),
            w.calls("propose"),
        )
    };
    let before = writes(&w);
    let r = engine.cycle(Mode::Plan).await.unwrap();
    let dev = row(&r, "dev");
    assert_eq!(dev.decision.kind(), "held", "{:?}", dev.decision);
    assert!(
        dev.decision.to_string().contains("by @oncall"),
        "{}",
        dev.decision
    );
    assert_eq!(writes(&w), before);
}

#[tokio::test(start_paused = true)]
async fn an_approvers_hold_on_the_merged_promotion_holds_the_environment_and_resume_keeps_the_record()
 {
    let (w, clock, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    let deployed = w.prs()[0].number;
    w.allow("alice", Permission::Write);
    clock.advance(Span::minutes(1));
    w.say(deployed, "alice", "/hold for the migration");
    w.push("1.2.0", 'c');
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(w.issues().len(), 1, "{:?}", row(&r, "dev"));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(row(&r, "dev").decision.kind(), "held");
    assert_eq!(w.main_file(DEV), values("1.1.0"), "1.2.0 waits");
    clock.advance(Span::minutes(1));
    w.say(deployed, "alice", "/resume");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(!w.issues()[0].open);
    assert!(
        matches!(row(&r, "dev").action, Action::Merged { .. }),
        "{:?}",
        row(&r, "dev")
    );
    assert_eq!(w.main_file(DEV), values("1.2.0"));
}

#[tokio::test(start_paused = true)]
async fn a_pr_another_replica_claimed_is_left_to_it_and_opened_here_once_its_claim_is_stale() {
    let (w, clock, engine) = world();
    w.push("1.1.0", 'b');
    // The other replica claimed this very change a moment ago, then stopped before opening.
    engine.cycle(Mode::Plan).await.unwrap();
    w.fail("open_pr", ErrorKind::Transient);
    engine.cycle(Mode::Apply).await.unwrap(); // claimed here, the open failed
    w.heal("open_pr");
    w.claims_are_foreign();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(row(&r, "dev").action, Action::None, "the claimer opens it");
    assert!(w.prs().is_empty());
    clock.advance(Span::minutes(3)); // the claim is stale: its replica is gone
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::Merged { .. }),
        "{:?}",
        row(&r, "dev")
    );
    assert_eq!(w.prs().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_ledger_that_cannot_be_written_does_not_stop_a_promotion_or_its_report() {
    let (w, _, engine) = world();
    w.push("1.1.0", 'b');
    w.breaks("1.1.0");
    w.fail("claim_change", ErrorKind::Denied);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(
            &row(&r, "dev").action,
            Action::Merged {
                verification: Verification::Failed { .. },
                ..
            } | Action::RolledBack { .. }
        ),
        "{:?}",
        row(&r, "dev").action
    );
    let pr = &w.prs()[0];
    assert_eq!(
        w.comments_on(pr.number)
            .iter()
            .filter(|c| c.contains("did not report"))
            .count(),
        1,
        "the failure is reported once, unclaimed"
    );
}

/// A complete scan report with these CRITICAL findings.
fn scanned(critical: &[&str]) -> crate::domain::gate::ScanReport {
    use crate::domain::gate::{Finding, ScanReport, ScanStatus, Severity};
    ScanReport {
        status: ScanStatus::Complete,
        counts: Default::default(),
        findings: critical
            .iter()
            .map(|id| Finding {
                id: (*id).into(),
                severity: Severity::Critical,
                package: None,
                fixed_in: None,
                url: None,
                platforms: Vec::new(),
            })
            .collect(),
        not_counted: Vec::new(),
    }
}

#[tokio::test(start_paused = true)]
async fn an_index_is_gated_on_its_platform_images_and_pinned_by_its_own_digest() {
    let (w, _, engine) = world();
    w.push_index(
        "1.1.0",
        'b',
        vec![("linux/amd64", scanned(&[])), ("linux/arm64", scanned(&[]))],
    );
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::Merged { .. }),
        "{:?}",
        row(&r, "dev")
    );
    assert_eq!(w.main_file(DEV), values("1.1.0"));
    assert_eq!(w.calls("platforms"), 1, "the index read once");
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        w.calls("platforms"),
        1,
        "and never again for the same digest"
    );
}

#[tokio::test(start_paused = true)]
async fn an_index_with_a_critical_finding_on_one_platform_is_blocked_naming_it() {
    let (w, _, engine) = world();
    w.push_index(
        "1.1.0",
        'b',
        vec![
            ("linux/amd64", scanned(&[])),
            ("linux/arm64", scanned(&["CVE-2026-1"])),
        ],
    );
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Decision::Blocked { reasons, .. } = &row(&r, "dev").decision else {
        panic!("{:?}", row(&r, "dev").decision)
    };
    assert_eq!(
        reasons,
        &["linux/arm64: 1 CRITICAL finding(s) exceed the threshold of 0 (CVE-2026-1)"]
    );
    assert!(w.prs().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_scan_event_makes_the_next_cycle_read_the_findings_again() {
    let (w, clock, engine) = world();
    let digest = w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::hours(2)); // dev's soak is over: prod judges 1.1.0 every cycle
    engine.cycle(Mode::Plan).await.unwrap();
    let reads = w.calls("scan_report");
    engine.cycle(Mode::Plan).await.unwrap();
    assert_eq!(w.calls("scan_report"), reads, "a complete report is cached");
    engine.inbox().forget_scan(digest);
    engine.cycle(Mode::Plan).await.unwrap();
    assert!(w.calls("scan_report") > reads, "read again after the event");
}

#[tokio::test(start_paused = true)]
async fn a_rollback_to_an_image_the_registry_no_longer_has_holds_the_environment_instead() {
    let (w, _, engine) = world();
    let old = crate::domain::image::Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
    w.push("1.1.0", 'b');
    w.breaks("1.1.0");
    w.expire(&old); // a lifecycle rule expired 1.0.0, what dev ran before
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let dev = row(&r, "dev");
    assert!(
        matches!(
            dev.action,
            Action::EnvironmentHeld {
                cause: crate::domain::hold::Cause::RollbackTargetGone,
                ..
            }
        ),
        "{:?}",
        dev.action
    );
    assert_eq!(
        w.main_file(DEV),
        values("1.1.0"),
        "no rollback PR to an image that cannot be pulled"
    );
    // Held: the next cycles open no second hold and still write no rollback.
    let again = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        !matches!(row(&again, "dev").action, Action::EnvironmentHeld { .. }),
        "{:?}",
        row(&again, "dev").action
    );
    assert_eq!(w.main_file(DEV), values("1.1.0"));
}

#[tokio::test(start_paused = true)]
async fn a_rollback_to_an_image_that_no_longer_passes_the_gate_holds_the_environment_instead() {
    let (w, _, engine) = world();
    let old = crate::domain::image::Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
    w.push("1.1.0", 'b');
    w.breaks("1.1.0");
    // A CRITICAL finding disclosed since 1.0.0, what dev ran before, was deployed.
    w.rescanned(&old, scanned(&["CVE-2026-9999"]));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let dev = row(&r, "dev");
    let Action::EnvironmentHeld { issue, cause, .. } = &dev.action else {
        panic!("{:?}", dev.action)
    };
    assert_eq!(*cause, crate::domain::hold::Cause::RollbackTargetBlocked);
    assert_eq!(
        w.main_file(DEV),
        values("1.1.0"),
        "nothing the gate refuses is written, a rollback's image neither"
    );
    let body = w
        .issues()
        .into_iter()
        .find(|i| i.number == *issue)
        .unwrap()
        .body;
    assert!(body.contains("does not pass the scan gate"), "{body}");
}

#[tokio::test(start_paused = true)]
async fn mutable_tags_are_read_once_an_hour_and_only_for_a_passing_tag_only_candidate() {
    let (w, clock, engine) = world();
    w.tag_mutability("MUTABLE");
    engine.cycle(Mode::Plan).await.unwrap();
    assert_eq!(w.calls("tag_mutability"), 0, "nothing to promote: no call");
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Plan).await.unwrap();
    engine.cycle(Mode::Plan).await.unwrap();
    assert_eq!(w.calls("tag_mutability"), 1, "read once, then cached");
    clock.advance(Span::minutes(61));
    tokio::time::advance(std::time::Duration::from_secs(61 * 60)).await;
    engine.cycle(Mode::Plan).await.unwrap();
    assert_eq!(w.calls("tag_mutability"), 2, "read again after an hour");
}

#[tokio::test(start_paused = true)]
async fn an_image_without_a_scan_gets_one_started_and_a_refused_start_blocks_as_before() {
    let (w, _, engine) = world();
    let digest = w.push("1.1.0", 'b');
    w.unscanned(&digest);
    w.fail("start_scan", ErrorKind::Rejected);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let dev = row(&r, "dev");
    assert_eq!(dev.decision.kind(), "blocked", "{:?}", dev);
    assert!(
        dev.decision.to_string().contains("image has no scan"),
        "{}",
        dev.decision
    );
    assert!(
        !matches!(dev.action, Action::Failed { .. }),
        "{:?}",
        dev.action
    );
    w.heal("start_scan");
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        w.calls("start_scan"),
        2,
        "asked again next cycle, now it can"
    );
}
