//! Grouped promotions over the in-memory fake: formation, exclusion, per-member rollback,
//! restarts and replicas, and the ChatOps rules on a group PR.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::Duration as Span;

use super::fake::{TestClock, World, fleet_config, fleet_file, fleet_values};
use super::{Action, Engine, EnvReport, Mode, Verification};
use crate::domain::group::{GroupState, Outcome};
use crate::ports::{ErrorKind, Permission};

const SERVICES: [&str; 3] = ["api", "billing", "catalog"];
const BRANCH: &str = "tugboat/group/dev/base-image";

/// dev groups every service in `base-image` (a 2-minute window), merges by itself and rolls
/// back by itself; prod is as in the salon.
const GROUPED: &str = r#"
version: 1
environments:
  dev:
    tag: {pattern: '^(?P<version>\d+\.\d+\.\d+)$', ordering: semver}
    scan: {thresholds: {CRITICAL: 0}}
    auto_merge: true
    health_timeout: 2m
    rollback: auto
    group: {name: base-image, window: 2m, max: 50}
  prod:
    scan: {thresholds: {CRITICAL: 0}}
    auto_merge: false
    approvals: 1
    soak: 1h
    health_timeout: 2m
"#;

fn fleet(policy: &str) -> (Arc<World>, Arc<TestClock>, Engine) {
    let (w, clock) = World::fleet(&SERVICES, policy);
    let engine = Engine::new(fleet_config(&SERVICES), w.ports()).with_clock(clock.clone());
    (w, clock, engine)
}

fn row(r: &[EnvReport], service: &str, env: &str) -> EnvReport {
    r.iter()
        .find(|x| x.service == service && x.environment == env)
        .unwrap()
        .clone()
}

fn dev_file(w: &World, service: &str) -> String {
    w.main_file(&fleet_file(service, "dev"))
}

fn group_prs(w: &World) -> Vec<super::fake::Pr> {
    w.prs().into_iter().filter(|p| p.branch == BRANCH).collect()
}

fn state(pr: &super::fake::Pr) -> GroupState {
    GroupState::parse(&pr.body).unwrap()
}

fn merged_healthy(a: &Action) -> bool {
    matches!(
        a,
        Action::Merged {
            verification: Verification::Healthy { .. },
            ..
        }
    )
}

#[tokio::test(start_paused = true)]
async fn a_group_gathers_for_its_window_then_promotes_every_ready_service_in_one_pr() {
    let (w, clock, engine) = fleet(GROUPED);
    w.push("1.1.0", 'b');
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in SERVICES {
        let reason = row(&r, svc, "dev").decision.to_string();
        assert!(reason.contains("gathering group `base-image`"), "{reason}");
    }
    assert!(w.prs().is_empty(), "nothing opens while the window is open");

    clock.advance(Span::minutes(2));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let prs = group_prs(&w);
    assert_eq!((w.prs().len(), prs.len()), (1, 1), "one PR for the group");
    for svc in SERVICES {
        let a = row(&r, svc, "dev").action;
        assert!(merged_healthy(&a), "{svc}: {a:?}");
        assert_eq!(dev_file(&w, svc), fleet_values(svc, "1.1.0"), "byte-exact");
    }
    let pr = &prs[0];
    assert!(pr.labels.contains("tugboat:deployed") && !pr.labels.contains("tugboat:verifying"));
    assert!(pr.labels.contains("group:base-image") && pr.labels.contains("env:dev"));
    let s = state(pr);
    assert!(
        s.members
            .iter()
            .all(|m| m.outcome == Some(Outcome::Healthy)),
        "{s:?}"
    );
    for svc in SERVICES {
        assert!(
            pr.body
                .contains(&format!("<details><summary><code>{svc}</code>")),
            "each service's evidence is collapsed in the body"
        );
    }
    assert!(
        pr.body.contains("3 of 3 service(s) run Synced and Healthy"),
        "{}",
        pr.body
    );
    assert_eq!(
        w.calls("report"),
        2,
        "one gate check and one deploy check for the group"
    );

    // The next cycle finds every service deployed: nothing more is written.
    clock.advance(Span::minutes(1));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in SERVICES {
        assert_eq!(row(&r, svc, "dev").decision.kind(), "up-to-date");
    }
    assert_eq!(w.prs().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_held_service_leaves_the_group_and_the_others_ride_without_it() {
    let (w, clock, engine) = fleet(GROUPED);
    w.push("1.1.0", 'b');
    clock.advance(Span::minutes(2));
    engine.cycle(Mode::Apply).await.unwrap();
    let first = group_prs(&w)[0].number;
    // A person puts billing back by hand: tugboat holds billing in dev.
    clock.advance(Span::minutes(5));
    w.commit_as(
        &fleet_file("billing", "dev"),
        &fleet_values("billing", "1.0.0"),
        "oncall",
    );
    w.push("1.2.0", 'c');
    clock.advance(Span::minutes(2));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(row(&r, "billing", "dev").decision.kind(), "held");
    for svc in ["api", "catalog"] {
        let a = row(&r, svc, "dev").action;
        assert!(merged_healthy(&a), "{svc}: {a:?}");
        assert_eq!(dev_file(&w, svc), fleet_values(svc, "1.2.0"));
    }
    assert_eq!(
        dev_file(&w, "billing"),
        fleet_values("billing", "1.0.0"),
        "the hold stands"
    );
    let prs = group_prs(&w);
    assert_eq!(prs.len(), 2);
    let second = prs.iter().find(|p| p.number != first).unwrap();
    let members: Vec<String> = state(second)
        .members
        .into_iter()
        .map(|m| m.service)
        .collect();
    assert_eq!(
        members,
        ["api", "catalog"],
        "the held service is not a member"
    );
    // The first PR: api and catalog superseded; billing's record is its own business (the
    // hold), and the PR stays billing's record of 1.1.0 until the hold is resolved.
    let first = prs.iter().find(|p| p.number == first).unwrap();
    let outcomes: Vec<_> = state(first)
        .members
        .into_iter()
        .map(|m| (m.service, m.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("api".to_owned(), Some(Outcome::Superseded)),
            ("billing".to_owned(), Some(Outcome::Healthy)),
            ("catalog".to_owned(), Some(Outcome::Superseded)),
        ]
    );
    assert!(
        first.labels.contains("tugboat:deployed"),
        "billing still needs it"
    );
}

#[tokio::test(start_paused = true)]
async fn one_members_crash_rolls_back_only_that_member_and_marks_only_its_image_bad() {
    let (w, clock, engine) = fleet(GROUPED);
    w.breaks("billing:1.1.0");
    w.push("1.1.0", 'b');
    clock.advance(Span::minutes(2));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let billing = row(&r, "billing", "dev").action;
    assert!(
        matches!(
            billing,
            Action::RolledBack {
                promotion: Some(_),
                ..
            }
        ),
        "{billing:?}"
    );
    assert_eq!(
        dev_file(&w, "billing"),
        fleet_values("billing", "1.0.0"),
        "reverted"
    );
    for svc in ["api", "catalog"] {
        assert!(merged_healthy(&row(&r, svc, "dev").action));
        assert_eq!(dev_file(&w, svc), fleet_values(svc, "1.1.0"), "{svc} stays");
    }
    let group = &group_prs(&w)[0];
    assert!(group.labels.contains("tugboat:deployed") && group.labels.contains("tugboat:bad"));
    let s = state(group);
    assert_eq!(s.member("billing").unwrap().outcome, Some(Outcome::Bad));
    assert_eq!(s.member("api").unwrap().outcome, Some(Outcome::Healthy));
    let rollback = w
        .pr_from("tugboat/rollback/dev/billing")
        .expect("a rollback PR of billing alone");
    assert!(rollback.merged_at.is_some());

    // Next cycle: billing's 1.1.0 is bad, so it is blocked; the others are up to date.
    clock.advance(Span::minutes(3));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(row(&r, "billing", "dev").decision.kind(), "blocked");
    assert_eq!(row(&r, "api", "dev").decision.kind(), "up-to-date");
    assert_eq!(w.prs().len(), 2, "the group PR and billing's rollback");
}

#[tokio::test(start_paused = true)]
async fn a_restart_between_opening_and_merging_and_a_second_replica_still_end_with_one_group_pr() {
    let (w, clock, engine) = fleet(GROUPED);
    w.push("1.1.0", 'b');
    clock.advance(Span::minutes(2));
    w.fail("merge", ErrorKind::Transient);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(
        row(&r, "api", "dev").action,
        Action::Failed { .. }
    ));
    assert_eq!(group_prs(&w).len(), 1, "opened, not merged");
    drop(engine);
    w.heal("merge");
    // Restarted, and a second replica at once.
    let one = Engine::new(fleet_config(&SERVICES), w.ports()).with_clock(clock.clone());
    let two = Engine::new(fleet_config(&SERVICES), w.ports()).with_clock(clock.clone());
    clock.advance(Span::seconds(30));
    let (a, b) = tokio::join!(one.cycle(Mode::Apply), two.cycle(Mode::Apply));
    let (a, b) = (a.unwrap(), b.unwrap());
    let prs = group_prs(&w);
    assert_eq!((w.prs().len(), prs.len()), (1, 1), "still one PR");
    assert!(prs[0].merged_at.is_some());
    for svc in SERVICES {
        assert_eq!(dev_file(&w, svc), fleet_values(svc, "1.1.0"));
        let merged = [&a, &b]
            .iter()
            .filter(|r| matches!(row(r, svc, "dev").action, Action::Merged { .. }))
            .count();
        assert!(merged <= 1, "{svc} merged once");
    }
    assert_eq!(w.calls("merge"), 2, "the failed attempt and one merge");
}

#[tokio::test(start_paused = true)]
async fn a_group_pr_obeys_approvers_head_bound_approvals_and_hold_and_a_newer_tag_updates_it_in_place()
 {
    let (w, clock, engine) = fleet(&for_approval());
    w.push("1.1.0", 'b');
    clock.advance(Span::minutes(2));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(
        row(&r, "api", "dev").action,
        Action::AwaitingApproval { .. }
    ));
    let pr = group_prs(&w)[0].number;

    // A reader's approval does not count.
    w.allow("mallory", Permission::Read);
    clock.advance(Span::seconds(5));
    w.say(pr, "mallory", "/approve");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(
        row(&r, "billing", "dev").action,
        Action::AwaitingApproval { .. }
    ));

    // An approver's /hold holds the whole PR, even approved.
    w.allow("alice", Permission::Write);
    clock.advance(Span::seconds(5));
    w.say(pr, "alice", "/hold");
    w.say(pr, "alice", "/approve");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in SERVICES {
        assert!(
            matches!(row(&r, svc, "dev").action, Action::Held { .. }),
            "{svc}"
        );
    }

    // A newer tag rewrites the same PR: alice's approval was for the old head.
    clock.advance(Span::seconds(5));
    w.say(pr, "alice", "/unhold");
    w.push("1.2.0", 'c');
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(
        row(&r, "api", "dev").action,
        Action::AwaitingApproval { .. }
    ));
    let prs = group_prs(&w);
    assert_eq!((prs.len(), prs[0].number), (1, pr), "updated in place");
    assert!(prs[0].title.contains("3 service(s)"));
    assert!(
        state(&prs[0])
            .members
            .iter()
            .all(|m| m.tag.as_ref().unwrap().as_str() == "1.2.0")
    );
    assert!(
        w.comments_on(pr).iter().any(|c| c.starts_with("@alice — ")),
        "alice is told to approve again"
    );

    clock.advance(Span::seconds(5));
    w.say(pr, "alice", "/approve");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in SERVICES {
        assert!(merged_healthy(&row(&r, svc, "dev").action), "{svc}");
        assert_eq!(dev_file(&w, svc), fleet_values(svc, "1.2.0"));
    }
}

#[tokio::test(start_paused = true)]
async fn commands_on_a_merged_group_pr_name_their_service_and_act_on_it_alone() {
    let (w, clock, engine) = fleet(GROUPED);
    w.push("1.1.0", 'b');
    clock.advance(Span::minutes(2));
    engine.cycle(Mode::Apply).await.unwrap();
    let pr = group_prs(&w)[0].number;
    w.allow("alice", Permission::Write);

    // Unnamed, it is not done, and says how.
    clock.advance(Span::seconds(5));
    w.say(pr, "alice", "/rollback");
    engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        w.comments_on(pr)
            .iter()
            .any(|c| c.contains("name the service it is for (`/rollback <service>`)")),
        "{:?}",
        w.comments_on(pr)
    );
    assert!(
        SERVICES
            .iter()
            .all(|s| dev_file(&w, s) == fleet_values(s, "1.1.0"))
    );

    // Named: billing alone is marked bad and rolled back.
    clock.advance(Span::seconds(5));
    w.say(pr, "alice", "/rollback billing");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let a = row(&r, "billing", "dev").action;
    assert!(
        matches!(a, Action::RolledBack { bad, .. } if bad == pr),
        "{a:?}"
    );
    assert_eq!(dev_file(&w, "billing"), fleet_values("billing", "1.0.0"));
    for svc in ["api", "catalog"] {
        assert_eq!(dev_file(&w, svc), fleet_values(svc, "1.1.0"), "{svc} stays");
    }
    let group = group_prs(&w).into_iter().find(|p| p.number == pr).unwrap();
    assert_eq!(
        state(&group).member("billing").unwrap().outcome,
        Some(Outcome::Bad)
    );
    assert!(group.labels.contains("tugboat:bad") && group.labels.contains("tugboat:deployed"));
    clock.advance(Span::minutes(1));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(row(&r, "billing", "dev").decision.kind(), "blocked");

    // /unblock billing clears its mark (and `bad`, which no member needs now): it is
    // promoted again, in a new group PR.
    clock.advance(Span::seconds(5));
    w.say(pr, "alice", "/unblock billing");
    engine.cycle(Mode::Apply).await.unwrap();
    let group = group_prs(&w).into_iter().find(|p| p.number == pr).unwrap();
    assert!(!group.labels.contains("tugboat:bad"), "{:?}", group.labels);
    clock.advance(Span::minutes(3));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(merged_healthy(&row(&r, "billing", "dev").action));
    assert_eq!(dev_file(&w, "billing"), fleet_values("billing", "1.1.0"));
    assert_eq!(group_prs(&w).len(), 2);

    // /hold catalog holds catalog's environment: the hold's issue opens.
    clock.advance(Span::seconds(5));
    w.say(pr, "alice", "/hold catalog");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(
            row(&r, "catalog", "dev").action,
            Action::EnvironmentHeld { .. }
        ),
        "{:?}",
        row(&r, "catalog", "dev")
    );
    assert_eq!(w.issues().len(), 1);
}

/// The grouped policy with dev's PRs waiting for an approval.
fn for_approval() -> String {
    GROUPED.replace(
        "    auto_merge: true\n    health_timeout: 2m\n    rollback: auto\n    group",
        "    auto_merge: false\n    approvals: 1\n    health_timeout: 2m\n    rollback: auto\n    group",
    )
}

#[tokio::test(start_paused = true)]
async fn a_passing_error_leaves_an_open_group_pr_as_it_is_and_rescan_scans_every_member() {
    let (w, clock, engine) = fleet(&for_approval());
    w.push("1.1.0", 'b');
    clock.advance(Span::minutes(2));
    engine.cycle(Mode::Apply).await.unwrap();
    let pr = group_prs(&w)[0].number;

    // A passing ECR error: every step fails, and the group's PR is not closed, nor rewritten
    // (which would void its approvals).
    w.fail("list_images", ErrorKind::Transient);
    let pushes = w.calls("propose");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(
        row(&r, "api", "dev").action,
        Action::Failed { .. }
    ));
    w.heal("list_images");
    let open = group_prs(&w);
    assert!(
        open[0].open && state(&open[0]).members.len() == 3,
        "{open:?}"
    );
    assert_eq!(w.calls("propose"), pushes, "nothing pushed");

    // /rescan scans every member's image.
    w.allow("alice", Permission::Write);
    clock.advance(Span::seconds(5));
    w.say(pr, "alice", "/rescan");
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(w.calls("start_scan"), SERVICES.len());
}
