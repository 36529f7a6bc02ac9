//! Merging into a protected main as GitHub protects it: the stand-in's rules are set through
//! its one control, `POST /_sandbox/protection`, as a new user's repository would have them
//! (CI that reports check runs seconds after a push, required checks, required reviews,
//! signed commits), and tugboat merges by them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use crate::common::{row, setup};
use serde_json::{Value, json};
use tugboat::engine::{Action, Mode};
use tugboat_sandbox::Sandbox;

/// Set main's rules and the CI through the stand-in's control, as a held-out check would.
async fn protect(sb: &Sandbox, rules: Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/_sandbox/protection", sb.github_url))
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204, "{}", resp.text().await.unwrap());
}

/// user_service's dev waits the default `checks_settle` (60 s) for CI to report, as it would
/// against a real repository (the sandbox's own policy sets 0 s).
fn settle_as_default(sb: &Sandbox) {
    sb.aws.put_parameter(
        "/salon/promotion/services/user_service",
        "environments:\n  dev:\n    checks_settle: 60s\n",
        "String",
    );
}

fn dev(r: &[tugboat::engine::EnvReport]) -> &Action {
    &row(r, "user_service", "dev").action
}

fn open_dev_pr(sb: &Sandbox) -> tugboat_sandbox::github::Pr {
    sb.github
        .pulls()
        .into_iter()
        .find(|p| p.head == "tugboat/dev/user_service" && p.state == "open")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_check_run_that_appears_3s_after_the_push_and_fails_is_never_merged_and_a_passing_one_merges()
 {
    let (sb, engine, _w) = setup().await;
    protect(
        &sb,
        json!({"ci": [{"name": "lint", "after": "3s", "takes": "5s", "conclusion": "failure"}]}),
    )
    .await;
    settle_as_default(&sb);
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(dev(&r), Action::WaitingForChecks { checks, .. } if checks.is_empty()),
        "no run yet is not no CI: {:?}",
        dev(&r)
    );
    sb.advance(Duration::from_secs(4));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(dev(&r), Action::WaitingForChecks { checks, .. } if checks == &["lint"]),
        "{:?}",
        dev(&r)
    );
    sb.advance(Duration::from_secs(5));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Failed { error } = dev(&r) else {
        panic!("{:?}", dev(&r))
    };
    assert!(error.to_string().contains("lint"), "{error}");
    assert!(
        sb.github.pulls().iter().all(|p| p.merged_at.is_none()),
        "a failing check is never merged"
    );

    // CI is fixed: the next push's run passes, and the promotion merges once it completes.
    protect(
        &sb,
        json!({"ci": [{"name": "lint", "after": "3s", "takes": "5s", "conclusion": "success"}]}),
    )
    .await;
    sb.aws.push("user_service", "1.2.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(dev(&r), Action::WaitingForChecks { .. }),
        "{:?}",
        dev(&r)
    );
    sb.advance(Duration::from_secs(4));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(dev(&r), Action::WaitingForChecks { checks, .. } if checks == &["lint"]),
        "still running: {:?}",
        dev(&r)
    );
    sb.advance(Duration::from_secs(5));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    crate::common::assert_healthy(&r, "user_service", "dev");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_check_that_never_reports_is_named_and_costs_no_merge_or_rebase() {
    let (sb, engine, _w) = setup().await;
    protect(&sb, json!({"required_checks": ["kubeconform"]})).await;
    settle_as_default(&sb);
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    engine.cycle(Mode::Apply).await.unwrap();
    sb.advance(Duration::from_secs(61));
    // Main moves meanwhile (another service's promotion): still no rebase of this branch.
    sb.github
        .commit_as("main", "docs/notes.md", "a note\n", "ana")
        .unwrap();
    let before = sb.github.calls();
    for _ in 0..3 {
        let r = engine.cycle(Mode::Apply).await.unwrap();
        assert!(
            matches!(dev(&r), Action::WaitingForChecks { checks, never_reported: true, .. }
                if checks == &["kubeconform"]),
            "{:?}",
            dev(&r)
        );
    }
    let after = sb.github.calls();
    for op in [
        "PUT merge",
        "git push",
        "PATCH git/refs",
        "POST git/commits",
    ] {
        assert_eq!(after.get(op), before.get(op), "{op}: {after:?}");
    }
    let text = tugboat::report::table(&engine.cycle(Mode::Apply).await.unwrap());
    assert!(
        text.contains("kubeconform") && text.contains("never reported"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_reviews_are_asked_for_once_with_no_write_per_cycle_and_the_promotion_merges_once_a_person_reviews()
 {
    let (sb, engine, _w) = setup().await;
    protect(&sb, json!({"required_reviews": 1})).await;
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(dev(&r), Action::AwaitingReview { missing: 1, .. }),
        "{:?}",
        dev(&r)
    );
    let writes = |calls: &std::collections::BTreeMap<String, u64>| -> u64 {
        calls
            .iter()
            .filter(|(op, _)| !op.starts_with("GET ") && !op.starts_with("git fetch"))
            .map(|(_, n)| n)
            .sum()
    };
    let before = writes(&sb.github.calls());
    for _ in 0..3 {
        let r = engine.cycle(Mode::Apply).await.unwrap();
        assert!(matches!(dev(&r), Action::AwaitingReview { .. }));
    }
    assert_eq!(
        writes(&sb.github.calls()),
        before,
        "no write per cycle: {:?}",
        sb.github.calls()
    );
    let pr = open_dev_pr(&sb);
    let notices: Vec<_> = pr
        .comments
        .iter()
        .filter(|(_, body)| body.contains("GitHub requires 1 approving review"))
        .collect();
    assert_eq!(notices.len(), 1, "said once: {:?}", pr.comments);

    // A person with write access reviews: the next cycle merges.
    sb.github.add_collaborator("ana", "write");
    assert!(sb.github.review_as(pr.number, "ana", "APPROVED"));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    crate::common::assert_healthy(&r, "user_service", "dev");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_names_the_branch_rules_and_warns_a_token_install_that_signed_commits_will_refuse_its_merges()
 {
    let (sb, engine, _w) = setup().await;
    protect(
        &sb,
        json!({"required_checks": ["lint", "kubeconform"], "required_reviews": 1,
               "signed_commits": true}),
    )
    .await;
    let (rules, warning) = engine.branch_summary().await.unwrap();
    let text = tugboat::report::branch_text(&rules, warning.as_deref());
    assert!(
        text.starts_with("main requires: checks lint, kubeconform; 1 review; signed commits"),
        "{text}"
    );
    let warning = warning.expect("a token's commits are unsigned");
    assert!(
        warning.contains("every merge will be refused") && warning.contains("[github.app]"),
        "{warning}"
    );

    // As a GitHub App making its commits through the API, GitHub signs them: no warning.
    let work = tempfile::tempdir().unwrap();
    let app = crate::common::engine_from(
        &sb,
        &sb.config_toml_as_app(&work.path().join("a")),
        &Default::default(),
    )
    .await;
    let (_, warning) = app.branch_summary().await.unwrap();
    assert_eq!(warning, None);

    // `{}` lifts every rule.
    protect(&sb, json!({})).await;
    let fresh = crate::common::engine(&sb, &work, &Default::default()).await;
    let (rules, _) = fresh.branch_summary().await.unwrap();
    assert_eq!(rules.to_string(), "main requires nothing of a merge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protection_control_refuses_what_it_does_not_know() {
    let (sb, _engine, _w) = setup().await;
    let resp = reqwest::Client::new()
        .post(format!("{}/_sandbox/protection", sb.github_url))
        .json(&json!({"required_check": ["lint"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let text = resp.text().await.unwrap();
    assert!(text.contains("required_check"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_pr_under_required_reviews_waits_as_one_promotion_does_and_merges_every_member_once_reviewed()
 {
    let (sb, engine, _w) = setup().await;
    protect(&sb, json!({"required_reviews": 1})).await;
    let services = grouped_push(&sb);
    for _ in 0..2 {
        let r = engine.cycle(Mode::Apply).await.unwrap();
        for svc in &services {
            assert!(
                matches!(
                    row(&r, svc, "dev").action,
                    Action::AwaitingReview { missing: 1, .. }
                ),
                "{svc}: {:?}",
                row(&r, svc, "dev").action
            );
        }
    }
    let pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.head == "tugboat/group/dev/base-image")
        .unwrap();
    let notices = pr
        .comments
        .iter()
        .filter(|(_, body)| body.contains("GitHub requires 1 approving review"))
        .count();
    assert_eq!(notices, 1, "said once on the group's PR: {:?}", pr.comments);
    sb.github.add_collaborator("ana", "write");
    assert!(sb.github.review_as(pr.number, "ana", "APPROVED"));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in &services {
        crate::common::assert_healthy(&r, svc, "dev");
    }
}

/// Wait (real time, bounded) until the stand-in's merge queue has merged or dropped PR
/// `number`: its queue moves on its own, every 100 ms.
async fn queue_settles(sb: &Sandbox, number: u64) {
    for _ in 0..100 {
        if !sb.github.queued().contains(&number) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the merge queue still holds #{number}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_queue_branch_gets_its_promotion_merged_by_the_queue_and_verified_at_the_queues_commit()
 {
    let (sb, engine, _w) = setup().await;
    protect(
        &sb,
        json!({"merge_queue": true, "required_checks": ["ci"],
               "ci": [{"name": "ci", "after": "1s", "takes": "1s", "conclusion": "success"}]}),
    )
    .await;
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(dev(&r), Action::WaitingForChecks { checks, .. } if checks == &["ci"]),
        "{:?}",
        dev(&r)
    );
    sb.advance(Duration::from_secs(3));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(dev(&r), Action::Queued { position: 1, .. }),
        "{:?}",
        dev(&r)
    );
    let pr = open_dev_pr(&sb);
    assert_eq!(sb.github.queued(), [pr.number]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(dev(&r), Action::Queued { .. }),
        "still queued: {:?}",
        dev(&r)
    );
    // The queue's commit runs CI too; once it passes there, the queue merges.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sb.advance(Duration::from_secs(3));
    queue_settles(&sb, pr.number).await;
    let merged = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.number == pr.number)
        .unwrap();
    let sha = merged.merge_sha.clone().expect("merged by the queue");
    assert_eq!(sb.github.branch_sha("main").as_deref(), Some(sha.as_str()));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    crate::common::assert_healthy(&r, "user_service", "dev");
    assert_eq!(
        sb.github.calls().get("PUT merge"),
        None,
        "never merged directly"
    );
    let deploy = sb.github.check_runs(&sha);
    let statuses = sb.github.statuses(&sha);
    assert!(
        deploy.iter().any(|c| c.name == "tugboat/deploy")
            || statuses.iter().any(|(c, _, _)| c == "tugboat/deploy"),
        "verified at the queue's commit {sha}: {deploy:?} {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_that_meet_github_computing_mergeability_wait_for_it_and_all_land_in_one_cycle() {
    let (sb, engine, _w) = setup().await;
    protect(&sb, json!({"mergeable_unknown_for": "300ms"})).await;
    let services = ["user_service", "staff_management", "appointment_service"];
    for svc in services {
        sb.aws.push(svc, "1.1.0", "COMPLETE", vec![]);
    }
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in services {
        crate::common::assert_healthy(&r, svc, "dev");
    }
    assert_eq!(
        sb.github.calls().get("PUT merge"),
        Some(&3),
        "no merge refused: each waited (reading) until GitHub knew again"
    );

    // What a PR reads meanwhile: `mergeable: null`, `mergeable_state: unknown`.
    sb.aws.push("user_service", "1.2.0", "COMPLETE", vec![]);
    sb.aws.push("staff_management", "1.2.0", "COMPLETE", vec![]);
    protect(&sb, json!({"mergeable_unknown_for": "1h"})).await;
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let merged = services
        .iter()
        .filter(|s| matches!(row(&r, s, "dev").action, Action::Merged { .. }))
        .count();
    assert_eq!(merged, 1, "one merged; the other waits for GitHub");
    let waiting = ["user_service", "staff_management"]
        .into_iter()
        .find(|s| !matches!(row(&r, s, "dev").action, Action::Merged { .. }))
        .unwrap();
    assert!(
        !matches!(row(&r, waiting, "dev").action, Action::Failed { .. }),
        "GitHub computing is not a failure: {:?}",
        row(&r, waiting, "dev").action
    );
    assert_eq!(
        sb.github.calls().get("PUT merge"),
        Some(&4),
        "and costs no refused write"
    );
    let open = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.state == "open" && p.head.ends_with(waiting))
        .unwrap();
    let pr: Value = reqwest::Client::new()
        .get(format!(
            "{}/repos/salon/salon-gitops/pulls/{}",
            sb.github_url, open.number
        ))
        .bearer_auth(&sb.github_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pr["mergeable"], Value::Null);
    assert_eq!(pr["mergeable_state"], "unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_branch_protection_s_required_checks_are_read_from_the_branch_and_waited_for() {
    let (sb, engine, _w) = setup().await;
    protect(
        &sb,
        json!({"classic_checks": ["ci"],
               "ci": [{"name": "ci", "after": "2s", "takes": "2s", "conclusion": "success"}]}),
    )
    .await;
    let (rules, _) = engine.branch_summary().await.unwrap();
    assert_eq!(rules.to_string(), "main requires: check ci");
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(dev(&r), Action::WaitingForChecks { checks, .. } if checks == &["ci"]),
        "the sandbox's 0 s checks_settle still waits for a check required by name: {:?}",
        dev(&r)
    );
    assert_eq!(sb.github.calls().get("PUT merge"), None);
    sb.advance(Duration::from_secs(5));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    crate::common::assert_healthy(&r, "user_service", "dev");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_on_a_queued_promotion_takes_it_out_of_the_stand_ins_merge_queue_before_it_merges() {
    let (sb, engine, _w) = setup().await;
    // CI on the queue's commit takes a minute: the hold comes first.
    protect(
        &sb,
        json!({"merge_queue": true, "required_checks": ["ci"],
               "ci": [{"name": "ci", "after": "1s", "takes": "60s", "conclusion": "success"}]}),
    )
    .await;
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    engine.cycle(Mode::Apply).await.unwrap();
    sb.advance(Duration::from_secs(62));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(dev(&r), Action::Queued { .. }), "{:?}", dev(&r));
    let pr = open_dev_pr(&sb);
    crate::common::approver(&sb, "alice");
    sb.advance(Duration::from_secs(1));
    sb.github.comment_as(pr.number, "alice", "/hold").unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(dev(&r), Action::Held { .. }), "{:?}", dev(&r));
    assert!(sb.github.queued().is_empty(), "taken out of the queue");
    sb.advance(Duration::from_secs(120));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let open = open_dev_pr(&sb);
    assert!(open.merged_at.is_none(), "never merged while held");
}

/// The six services of the salon, grouped in dev, each pushed 1.1.0; their names.
fn grouped_push(sb: &Sandbox) -> Vec<String> {
    sb.aws.put_parameter(
        "/salon/promotion/defaults",
        crate::e2e::GROUPED_POLICY,
        "String",
    );
    let services: Vec<String> = sb.fleet.services.iter().map(|(s, _)| s.clone()).collect();
    for svc in &services {
        sb.aws.push(svc, "1.1.0", "COMPLETE", vec![]);
    }
    services
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_pr_waits_for_the_branch_s_required_check_and_is_never_merged_when_it_fails() {
    let (sb, engine, _w) = setup().await;
    protect(
        &sb,
        json!({"required_checks": ["lint"],
               "ci": [{"name": "lint", "after": "2s", "takes": "2s", "conclusion": "failure"}]}),
    )
    .await;
    let services = grouped_push(&sb);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in &services {
        assert!(
            matches!(&row(&r, svc, "dev").action, Action::WaitingForChecks { checks, .. } if checks == &["lint"]),
            "{svc}: {:?}",
            row(&r, svc, "dev").action
        );
    }
    sb.advance(Duration::from_secs(5));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in &services {
        let Action::Failed { error } = &row(&r, svc, "dev").action else {
            panic!("{svc}: {:?}", row(&r, svc, "dev").action)
        };
        assert!(error.to_string().contains("lint"), "{error}");
    }
    assert!(sb.github.pulls().iter().all(|p| p.merged_at.is_none()));
    assert_eq!(sb.github.calls().get("PUT merge"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_pr_goes_through_the_merge_queue_and_every_member_is_verified_at_its_commit() {
    let (sb, engine, _w) = setup().await;
    protect(&sb, json!({"merge_queue": true})).await;
    let services = grouped_push(&sb);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in &services {
        assert!(
            matches!(
                row(&r, svc, "dev").action,
                Action::Queued { position: 1, .. }
            ),
            "{svc}: {:?}",
            row(&r, svc, "dev").action
        );
    }
    let pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.head == "tugboat/group/dev/base-image")
        .unwrap();
    queue_settles(&sb, pr.number).await;
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in &services {
        crate::common::assert_healthy(&r, svc, "dev");
    }
    assert_eq!(sb.github.calls().get("PUT merge"), None);
}
