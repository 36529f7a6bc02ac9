//! End-to-end: the real engine through the real adapters against the sandbox stand-ins.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::Arc;

use crate::common::{assert_healthy, row, setup, setup_counted};
use tugboat::config::Config;
use tugboat::domain::plan::Decision;
use tugboat::engine::{Action, Engine, Mode, Verification};
use tugboat::telemetry::{self, ApiMetrics};
use tugboat_sandbox::{self as sandbox, Options, Sandbox, SeedFinding};

fn writes(sb: &Sandbox) -> u64 {
    sb.github
        .calls()
        .iter()
        .filter(|(k, _)| {
            k.starts_with("POST")
                || k.starts_with("PATCH")
                || k.starts_with("PUT")
                || k.as_str() == "git push"
        })
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_tag_is_merged_verified_healthy_and_a_critical_one_is_blocked() {
    let (sb, engine, _w) = setup().await;
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    let critical = SeedFinding {
        id: "CVE-2026-0001".into(),
        severity: "CRITICAL".into(),
        package: Some("openssl".into()),
        status: None,
    };
    sb.aws
        .push("appointment_service", "2.0.0", "COMPLETE", vec![critical]);

    let reports = engine.cycle(Mode::Apply).await.unwrap();

    let user = row(&reports, "user_service", "dev");
    let Action::Merged {
        sha,
        verification,
        number,
        ..
    } = &user.action
    else {
        panic!("{:?}", user.action)
    };
    assert!(
        matches!(verification, Verification::Healthy { .. }),
        "{verification:?}"
    );
    let dev_file = sb
        .github
        .read_file("main", &sandbox::file_of("user_service", "dev"))
        .unwrap();
    assert!(
        dev_file.ends_with("    newTag: \"1.1.0\" # tugboat\n"),
        "{dev_file}"
    );
    let before = sandbox::salon_files()
        .into_iter()
        .find(|(p, _)| *p == sandbox::file_of("user_service", "dev"))
        .unwrap()
        .1;
    assert_eq!(
        dev_file,
        before.replace("\"1.0.0\"", "\"1.1.0\""),
        "only the tag's bytes change"
    );
    let pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.number == *number)
        .unwrap();
    assert!(pr.merged_at.is_some());
    assert!(pr.body.contains("| to | `1.1.0` | `sha256:"), "{}", pr.body);
    assert!(
        pr.body.contains("/salon/promotion/defaults` version 1"),
        "{}",
        pr.body
    );
    assert!(pr.labels.contains(&"env:dev".to_owned()));
    assert!(pr.body.contains("**Deployed.**") && pr.body.contains("Synced and Healthy"));
    assert!(pr.comments.is_empty(), "{:?}", pr.comments);
    let statuses = sb.github.statuses(sha);
    assert!(
        statuses
            .iter()
            .any(|(c, s, _)| c == "tugboat/deploy" && s == "success"),
        "{statuses:?}"
    );

    let appt = row(&reports, "appointment_service", "dev");
    assert_eq!(appt.decision.kind(), "blocked");
    assert!(appt.decision.to_string().contains("CVE-2026-0001"));
    assert!(
        sb.github
            .pulls()
            .iter()
            .all(|p| !p.title.contains("appointment_service"))
    );
    let appt_file = sb
        .github
        .read_file("main", &sandbox::file_of("appointment_service", "dev"))
        .unwrap();
    assert!(appt_file.contains("newTag: \"1.0.0\""));
}

/// GitHub's REST writes since `before` (`calls()` of the stand-in), by route; git pushes,
/// which GitHub's content-creation limit does not count, left out.
fn rest_writes_since(
    sb: &Sandbox,
    before: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    sb.github
        .calls()
        .into_iter()
        .filter(|(k, _)| {
            ["POST", "PATCH", "PUT", "DELETE"]
                .iter()
                .any(|m| k.starts_with(m))
        })
        .filter_map(|(k, n)| {
            let grown = n - before.get(&k).copied().unwrap_or(0);
            (grown > 0).then_some((k, grown))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_promotion_verified_healthy_and_its_prod_pr_cost_nine_rest_writes() {
    let (sb, engine, _w) = setup().await;
    let writes = |before| {
        let grown = rest_writes_since(&sb, &before);
        let total: u64 = grown.values().sum();
        (grown.into_iter().collect::<Vec<_>>(), total)
    };
    let map = |pairs: &[(&str, u64)]| -> Vec<(String, u64)> {
        pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
    };

    // The first promotion: dev's PR opened with its labels (`verifying` among them, as it
    // merges by itself), the gate's status, the merge, the deploy status, one issue edit
    // settling the labels with the outcome in the body; then prod's PR, its labels and its
    // gate status.
    sb.aws.push("staff_management", "1.1.0", "COMPLETE", vec![]);
    let before = sb.github.calls();
    engine.cycle(Mode::Apply).await.unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(
        row(&r, "staff_management", "prod").action,
        Action::AwaitingApproval { .. }
    ));
    let first = map(&[
        ("PATCH issue", 1),
        ("POST labels", 2),
        ("POST pulls", 2),
        ("POST status", 3),
        ("PUT merge", 1),
    ]);
    assert_eq!(writes(before), (first, 9));
    // What `tugboat plan` counts: 7 with `deployed` to move, less 1 for the first promotion.
    use tugboat::report::{WRITES_FOR_APPROVAL, WRITES_SELF_MERGING};
    assert_eq!(WRITES_SELF_MERGING - 1 + WRITES_FOR_APPROVAL, 9);

    // The next one: the same in dev, plus `deployed` moved off the previous promotion; prod's
    // open PR is brought to the new tag in place (its body, and the gate status of its head).
    sb.aws.push("staff_management", "1.2.0", "COMPLETE", vec![]);
    let before = sb.github.calls();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(
        row(&r, "staff_management", "dev").action,
        Action::Merged { .. }
    ));
    let next = map(&[
        ("DELETE label", 1),
        ("PATCH issue", 1),
        ("PATCH pull", 1),
        ("POST labels", 1),
        ("POST pulls", 1),
        ("POST status", 3),
        ("PUT merge", 1),
    ]);
    assert_eq!(writes(before), (next, 9));
    assert_eq!(
        WRITES_SELF_MERGING + 2,
        9,
        "and 2 for prod's PR brought up to date"
    );
}

/// The sandbox's policy with dev and prod grouped.
pub(crate) const GROUPED_POLICY: &str = "environments:
  dev:
    auto_merge: true
    checks_settle: 0s
    health_timeout: 30s
    degraded_grace: 2s
    scan: {thresholds: {CRITICAL: 0, HIGH: 0}}
    group: {name: base-image, window: 0s}
  prod:
    auto_merge: false
    approvals: 1
    approvers: [salon/platform-leads]
    checks_settle: 0s
    health_timeout: 10m
    scan: {thresholds: {CRITICAL: 0, HIGH: 0}}
    group: {name: base-image, window: 0s}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_services_grouped_promoted_in_dev_and_proposed_for_prod_cost_the_nine_writes_of_one() {
    let (sb, engine, _w) = setup().await;
    sb.aws
        .put_parameter("/salon/promotion/defaults", GROUPED_POLICY, "String");
    let services: Vec<String> = sb.fleet.services.iter().map(|(s, _)| s.clone()).collect();
    for svc in &services {
        sb.aws.push(svc, "1.1.0", "COMPLETE", vec![]);
    }
    let before = sb.github.calls();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in &services {
        assert_healthy(&r, svc, "dev");
    }
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in &services {
        assert!(
            matches!(row(&r, svc, "prod").action, Action::AwaitingApproval { .. }),
            "{svc}: {:?}",
            row(&r, svc, "prod")
        );
    }
    // dev: the group's PR with its labels, its gate status, the merge, one deploy status for
    // all six, one issue edit settling them; prod: one PR, its labels, its gate status.
    let grown = rest_writes_since(&sb, &before);
    let expected: std::collections::BTreeMap<String, u64> = [
        ("PATCH issue", 1),
        ("POST labels", 2),
        ("POST pulls", 2),
        ("POST status", 3),
        ("PUT merge", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(grown, expected);
    let prs = sb.github.pulls();
    let heads: Vec<&str> = prs.iter().map(|p| p.head.as_str()).collect();
    assert_eq!(
        heads,
        [
            "tugboat/group/dev/base-image",
            "tugboat/group/prod/base-image"
        ]
    );

    // The next rebuild: dev's six, plus the older dev group marked superseded (it is no
    // record any more) in the edit that drops its `deployed`; then prod's PR is brought to
    // the new tags in place (its body, and the gate status of its head).
    for svc in &services {
        sb.aws.push(svc, "1.2.0", "COMPLETE", vec![]);
    }
    let before = sb.github.calls();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in &services {
        assert_healthy(&r, svc, "dev");
    }
    let grown: u64 = rest_writes_since(&sb, &before).values().sum();
    assert_eq!(grown, 7, "{:?}", rest_writes_since(&sb, &before));
    let before = sb.github.calls();
    engine.cycle(Mode::Apply).await.unwrap();
    let grown: u64 = rest_writes_since(&sb, &before).values().sum();
    assert_eq!(grown, 2, "{:?}", rest_writes_since(&sb, &before));
    assert_eq!(
        sb.github.pulls().len(),
        3,
        "dev's two groups and prod's one"
    );
    let first = &sb.github.pulls()[0];
    assert!(
        !first.labels.contains(&"tugboat:deployed".to_owned()),
        "{:?}",
        first.labels
    );
    assert!(first.body.contains("\"outcome\":\"superseded\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_cycle_with_nothing_new_makes_no_commit_no_pr_and_no_comment() {
    let (sb, engine, _w) = setup().await;
    sb.aws.push("staff_management", "1.2.0", "COMPLETE", vec![]);
    engine.cycle(Mode::Apply).await.unwrap();
    // The next cycle opens the prod PR (dev now runs 1.2.0 healthy); after that, nothing is new.
    engine.cycle(Mode::Apply).await.unwrap();
    let main_before = sb.github.branch_sha("main");
    let writes_before = writes(&sb);
    let scans_before = sb.aws.calls().get("DescribeImageScanFindings").copied();
    let prs_before = sb.github.pulls().len();

    let reports = engine.cycle(Mode::Apply).await.unwrap();

    assert_eq!(sb.github.branch_sha("main"), main_before);
    assert_eq!(writes(&sb), writes_before, "{:?}", sb.github.calls());
    assert_eq!(sb.github.pulls().len(), prs_before);
    assert_eq!(
        sb.aws.calls().get("DescribeImageScanFindings").copied(),
        scans_before,
        "no repeated scan call for a known digest"
    );
    assert!(matches!(
        row(&reports, "staff_management", "prod").action,
        Action::AwaitingApproval { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_call_metrics_of_an_idle_cycle_match_what_the_stand_ins_received() {
    let (sb, engine, _w, api) = setup_counted().await;
    engine.cycle(Mode::Apply).await.unwrap();
    let (aws0, gh0, argo0) = (sb.aws.calls(), sb.github.calls(), sb.argocd.calls());
    let before = api.snapshot();

    engine.cycle(Mode::Apply).await.unwrap();

    let grown = api.since(&before);
    let count = |system: &str, operation: &str| telemetry::count(&grown, system, operation).calls;
    let received = |now: std::collections::BTreeMap<String, u64>,
                    was: &std::collections::BTreeMap<String, u64>,
                    key: &str| {
        now.get(key).copied().unwrap_or(0) - was.get(key).copied().unwrap_or(0)
    };
    let services = sandbox::SALON_SERVICES.len() as u64;
    assert_eq!(count("ecr", "DescribeImages"), services, "{grown:?}");
    assert_eq!(received(sb.aws.calls(), &aws0, "DescribeImages"), services);
    assert_eq!(count("ecr", "DescribeImageScanFindings"), 0, "{grown:?}");
    assert_eq!(
        count("github", "pulls/list"),
        received(sb.github.calls(), &gh0, "GET pulls")
    );
    assert_eq!(
        count("argocd", "ApplicationService_Get"),
        received(sb.argocd.calls(), &argo0, "GET application")
    );
    // One fetch per cycle, and one request for it: nothing is new, so the ref advertisement
    // is all, and the credentials go with it (no 401 challenge first).
    assert_eq!(count("git", "fetch"), 1, "{grown:?}");
    assert_eq!(received(sb.github.calls(), &gh0, "git fetch"), 1);
    assert!(
        grown.values().all(|c| c.errors == 0 && c.retries == 0),
        "{grown:?}"
    );
    let writes: u64 = grown
        .iter()
        .filter(|(k, _)| k.is_write())
        .map(|(_, c)| c.calls)
        .sum();
    assert_eq!(writes, 0, "an idle cycle writes nothing: {grown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_is_read_on_its_interval_and_again_on_demand() {
    let (_sb, engine, _w, api) = setup_counted().await;
    let reads = || telemetry::count(&api.snapshot(), "ssm", "GetParametersByPath").calls;
    engine.cycle(Mode::Plan).await.unwrap();
    assert_eq!(reads(), 1);
    engine.cycle(Mode::Plan).await.unwrap();
    assert_eq!(
        reads(),
        1,
        "within policy.refresh the cached policy is used"
    );
    engine.refresh_policy();
    engine.cycle(Mode::Plan).await.unwrap();
    assert_eq!(reads(), 2, "refresh_policy (SIGHUP) forces one read");
    engine.cycle(Mode::Plan).await.unwrap();
    assert_eq!(reads(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_pushed_from_outside_with_put_image_is_promoted() {
    let (sb, engine, _w) = setup().await;
    let body = serde_json::json!({"repositoryName": "reports_analytics", "imageTag": "1.5.0", "imageManifest": "{\"schemaVersion\":2,\"x\":\"outside\"}"});
    let resp = reqwest::Client::new()
        .post(format!("{}/", sb.aws_url))
        .header(
            "X-Amz-Target",
            "AmazonEC2ContainerRegistry_V20150921.PutImage",
        )
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(
        row(&reports, "reports_analytics", "dev").action,
        Action::Merged { .. }
    ));
    let f = sb
        .github
        .read_file("main", &sandbox::file_of("reports_analytics", "dev"))
        .unwrap();
    assert!(f.contains("  tag: 1.5.0\n"), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_blocks_its_service_and_the_others_carry_on() {
    let (sb, engine, _w) = setup().await;
    sb.aws.put_parameter(
        "/salon/promotion/services/user_service",
        "environments:\n  dev:\n    auto_merg: true\n",
        "String",
    );
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    sb.aws.push("staff_management", "1.1.0", "COMPLETE", vec![]);
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Failed { error } = &row(&reports, "user_service", "dev").action else {
        panic!()
    };
    let message = error.to_string();
    assert!(
        message.contains("/salon/promotion/services/user_service") && message.contains("auto_merg"),
        "{message}"
    );
    assert!(matches!(
        row(&reports, "staff_management", "dev").action,
        Action::Merged { .. }
    ));
    // The plan says blocked, naming the parameter and the field, in the table and in JSON.
    let plan = engine.cycle(Mode::Plan).await.unwrap();
    let user = row(&plan, "user_service", "dev");
    assert_eq!(user.decision.kind(), "blocked", "{:?}", user.decision);
    let json = tugboat::report::json(&plan);
    let rows = json["rows"].as_array().unwrap();
    let r = rows
        .iter()
        .find(|r| r["service"] == "user_service" && r["environment"] == "dev")
        .unwrap();
    assert_eq!(r["decision"], "blocked");
    assert!(
        r["reasons"][0].as_str().unwrap().contains("auto_merg"),
        "{r}"
    );
    let table = tugboat::report::table(&plan);
    let line = table
        .lines()
        .find(|l| l.starts_with("user_service") && l.contains(" dev "))
        .unwrap();
    assert!(
        line.contains("blocked") && line.contains("auto_merg"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_tag_is_reported_not_healthy_on_the_pr_and_its_merge_commit() {
    let (sb, engine, _w) = setup().await;
    sb.aws
        .push("service_management", "1.1.0", "COMPLETE", vec![]);
    sb.argocd.mark_crashing(&format!(
        "{}:1.1.0",
        sandbox::image_of("service_management")
    ));
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Merged {
        sha, verification, ..
    } = &row(&reports, "service_management", "dev").action
    else {
        panic!()
    };
    let Verification::Failed { reason } = verification else {
        panic!("{verification:?}")
    };
    assert!(reason.contains("Degraded"), "{reason}");
    assert!(
        sb.github
            .statuses(sha)
            .iter()
            .any(|(c, s, _)| c == "tugboat/deploy" && s == "failure")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_writes_nothing_and_explains_each_decision() {
    let (sb, engine, _w) = setup().await;
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    sb.aws.push("staff_management", "1.1.0", "PENDING", vec![]);
    let reports = engine.cycle(Mode::Plan).await.unwrap();
    assert_eq!(writes(&sb), 0);
    assert_eq!(
        row(&reports, "user_service", "dev").decision.kind(),
        "promote"
    );
    assert_eq!(
        row(&reports, "staff_management", "dev")
            .decision
            .to_string(),
        "waiting: waiting for scan to complete"
    );
    let table = tugboat::report::table(&reports);
    assert!(table.starts_with("SERVICE"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_git_token_fails_clearly_without_looping() {
    tugboat::app::init_crypto();
    let sb = Sandbox::start(Options::default()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let text = sb.config_toml(&work.path().join("w"));
    let bad = work.path().join("bad-token");
    std::fs::write(&bad, "not-the-token").unwrap();
    let text = text.replace(
        &sb.dir().join("github-token").display().to_string(),
        &bad.display().to_string(),
    );
    let engine = crate::common::engine_from(&sb, &text, &ApiMetrics::default()).await;
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        engine.cycle(Mode::Apply),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(err.system, "git");
    assert!(!err.to_string().contains("not-the-token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_control_surface_adds_collaborators_and_comments_as_people() {
    let (sb, engine, _w) = setup().await;
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    engine.cycle(Mode::Apply).await.unwrap();
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { number, .. } = row(&reports, "user_service", "prod").action
    else {
        panic!()
    };
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/_sandbox/collaborators", sb.github_url))
        .json(&serde_json::json!({"user": "alice", "permission": "write"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .post(format!("{}/_sandbox/comments", sb.github_url))
        .json(&serde_json::json!({"pr": number, "user": "alice", "body": "/approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let perm: serde_json::Value = http
        .get(format!(
            "{}/repos/salon/salon-gitops/collaborators/alice/permission",
            sb.github_url
        ))
        .bearer_auth(&sb.github_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(perm["permission"], "write");
    let pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .unwrap();
    assert!(
        pr.comments
            .contains(&("alice".to_owned(), "/approve".to_owned()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_its_window_a_promotion_waits_with_its_pr_open_and_names_the_next_opening() {
    let (sb, engine, _w) = setup().await;
    // A one-hour window every day, starting two hours from now: closed now.
    let start = chrono::Utc::now() + chrono::Duration::hours(2);
    let end = start + chrono::Duration::hours(1);
    sb.aws.put_parameter(
        "/salon/promotion/services/user_service",
        &format!(
            "environments:\n  dev:\n    windows:\n    - days: [MON-SUN]\n      hours: '{}-{}'\n",
            start.format("%H:%M"),
            end.format("%H:%M")
        ),
        "String",
    );
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    let plan = engine.cycle(Mode::Plan).await.unwrap();
    let Decision::Waiting { reason, .. } = &row(&plan, "user_service", "dev").decision else {
        panic!("{:?}", row(&plan, "user_service", "dev"))
    };
    assert!(
        reason.starts_with("outside its promotion windows; the next opens "),
        "{reason}"
    );
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let Action::WaitingForWindow { opens, .. } = &row(&reports, "user_service", "dev").action
    else {
        panic!("{:?}", row(&reports, "user_service", "dev").action)
    };
    let opens = opens.expect("the next opening");
    assert!(
        (opens - start).num_seconds().abs() < 60,
        "{opens} vs {start}"
    );
    assert_eq!(sb.github.pulls().len(), 1, "the PR is open for review");
    assert!(
        sb.github.pulls()[0]
            .body
            .contains("It merges only inside its promotion windows (`Mon,Tue,Wed,Thu,Fri,Sat,Sun "),
        "{}",
        sb.github.pulls()[0].body
    );
    assert!(sb.github.pulls()[0].merged_at.is_none());

    // The window opens (here: the policy's window moves to now); the waiting PR merges.
    let now = chrono::Utc::now();
    sb.aws.put_parameter(
        "/salon/promotion/services/user_service",
        &format!(
            "environments:\n  dev:\n    windows:\n    - days: [MON-SUN]\n      hours: '{}-{}'\n",
            (now - chrono::Duration::minutes(5)).format("%H:%M"),
            (now + chrono::Duration::minutes(55)).format("%H:%M")
        ),
        "String",
    );
    engine.refresh_policy();
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    crate::common::assert_healthy(&reports, "user_service", "dev");
    let dev: Vec<_> = sb
        .github
        .pulls()
        .into_iter()
        .filter(|p| p.head == "tugboat/dev/user_service")
        .collect();
    assert_eq!(dev.len(), 1, "the same PR merged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_environment_waits_out_its_soak_after_the_previous_one_is_healthy() {
    let (sb, engine, _w) = setup().await;
    sb.aws.put_parameter(
        "/salon/promotion/services/user_service",
        "environments:\n  prod:\n    auto_merge: true\n    checks_settle: 0s\n    soak: 1h\n",
        "String",
    );
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    engine.cycle(Mode::Apply).await.unwrap();
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let prod = row(&reports, "user_service", "prod");
    let Decision::Waiting { candidate, reason } = &prod.decision else {
        panic!("{:?}", prod.decision)
    };
    assert_eq!(candidate.as_ref().map(|c| c.tag.as_str()), Some("1.1.0"));
    assert!(reason.starts_with("soaking in dev until "), "{reason}");
    assert!(reason.ends_with("left)"), "{reason}");
    assert_eq!(prod.action, Action::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_git_ledger_lets_exactly_one_of_two_replicas_claim_a_slot() {
    use tugboat::ports::Ledger;
    tugboat::app::init_crypto();
    let sb = Sandbox::start(Options::default()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let replica = |dir: &str| crate::common::git_clone(&sb, &work.path().join(dir));
    let (a, b) = (replica("a"), replica("b"));
    let monday = chrono::DateTime::parse_from_rfc3339("2026-11-23T06:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(a.last_run("rescan").await.unwrap(), None);

    // Both claim the same slot at once: one wins, and both then see it recorded.
    let (x, y) = tokio::join!(a.claim("rescan", monday), b.claim("rescan", monday));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(x ^ y, "exactly one claim wins: {x} {y}");
    assert_eq!(b.last_run("rescan").await.unwrap(), Some(monday));
    assert!(!a.claim("rescan", monday).await.unwrap(), "never twice");

    // The next slot, and another job beside it, are claimed in turn.
    let next = monday + chrono::Duration::days(7);
    assert!(b.claim("rescan", next).await.unwrap());
    assert!(a.claim("policy_refresh", monday).await.unwrap());
    assert_eq!(a.last_run("rescan").await.unwrap(), Some(next));
    assert_eq!(b.last_run("policy_refresh").await.unwrap(), Some(monday));

    // Opening a PR: of two replicas claiming the same change at once, exactly one may, and
    // a claim for another job at the same moment does not make either lose (the ledger is
    // read again when another claim moved it).
    let ttl = std::time::Duration::from_secs(120);
    let branch = "tugboat/dev/user_service";
    let what = "Promote user_service to dev: 1.1.0";
    let (x, y, z) = tokio::join!(
        a.claim_change(branch, what, ttl),
        b.claim_change(branch, what, ttl),
        a.claim("nightly", monday),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(x ^ y, "exactly one opens the PR: {x} {y}");
    assert!(z.unwrap(), "an unrelated claim still wins");
    let winner = if x { &a } else { &b };
    assert!(
        winner.claim_change(branch, what, ttl).await.unwrap(),
        "its own claim"
    );
    let loser = if x { &b } else { &a };
    assert!(!loser.claim_change(branch, what, ttl).await.unwrap());
    assert!(
        loser
            .claim_change(branch, "Promote user_service to dev: 1.2.0", ttl)
            .await
            .unwrap(),
        "another change of the branch is free"
    );
    // The ledger lives on its own branch; main is untouched.
    assert!(sb.github.branch_sha("tugboat-ledger").is_some());
    assert_eq!(
        sb.github.read_file("main", "schedules.json"),
        None,
        "nothing written to main"
    );
}

fn cve(id: &str, severity: &str) -> SeedFinding {
    SeedFinding {
        id: id.into(),
        severity: severity.into(),
        package: Some("openssl".into()),
        status: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_critical_in_a_deployed_image_opens_one_issue_blocks_the_digest_and_the_fix_closes_it()
 {
    use tugboat::engine::rescan::{IssueAction, Scope};
    let (sb, engine, _w) = setup().await;
    // dev runs 1.1.0 (clean when it shipped); prod still runs 1.0.0.
    let shipped = sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    engine.cycle(Mode::Apply).await.unwrap();
    let security = |sb: &Sandbox| {
        sb.github
            .issues()
            .into_iter()
            .filter(|i| i.labels.contains(&"security".to_owned()))
            .collect::<Vec<_>>()
    };

    // A CVE is published against the deployed image: the Monday rescan finds it.
    sb.aws.set_scan(
        "user_service",
        &shipped,
        "COMPLETE",
        vec![cve("CVE-2026-4242", "CRITICAL")],
    );
    let dry = engine
        .rescan(&Scope {
            dry_run: true,
            ..Scope::default()
        })
        .await
        .unwrap();
    let user = dry
        .services
        .iter()
        .find(|s| s.service == "user_service")
        .unwrap();
    assert_eq!(user.issue, IssueAction::Would("open"));
    assert_eq!(dry.scans_started, 0, "a dry run starts no scan");
    assert!(security(&sb).is_empty(), "a dry run writes no issue");

    let before = writes(&sb);
    let report = engine.rescan(&Scope::default()).await.unwrap();
    assert_eq!(
        report.images, 7,
        "six services at 1.0.0, and user_service 1.1.0 in dev"
    );
    assert_eq!((report.scans_started, report.already_scanned_today), (7, 0));
    let user = report
        .services
        .iter()
        .find(|s| s.service == "user_service")
        .unwrap();
    let IssueAction::Opened { number, .. } = user.issue.clone() else {
        panic!("{:?}", user.issue)
    };
    let dev = user
        .rows
        .iter()
        .find(|r| r.deployed.environment == "dev")
        .unwrap();
    assert!(dev.blocked && dev.new == ["CVE-2026-4242"], "{dev:?}");
    assert!(
        report
            .services
            .iter()
            .filter(|s| s.service != "user_service")
            .all(|s| s.issue == IssueAction::None),
        "clean services get no issue"
    );
    assert_eq!(writes(&sb) - before, 1, "one issue opened, nothing else");
    let issues = security(&sb);
    assert_eq!(issues.len(), 1);
    let issue = &issues[0];
    assert_eq!(issue.number, number);
    assert_eq!(
        issue.labels,
        ["tugboat", "security", "service:user_service"]
    );
    assert!(
        issue.body.contains(
            "### dev — `123456789012.dkr.ecr.eu-north-1.amazonaws.com/user_service:1.1.0`"
        ),
        "{}",
        issue.body
    );
    assert!(
        issue.body.contains(
            &format!("| [CVE-2026-4242](https://nvd.nist.gov/vuln/detail/CVE-2026-4242) | CRITICAL | openssl | - | {} |", chrono::Utc::now().date_naive())
        ),
        "{}",
        issue.body
    );
    assert!(issue.body.contains("**blocked**"), "{}", issue.body);

    // The blocked digest is not carried to prod.
    let plan = engine.cycle(Mode::Plan).await.unwrap();
    let prod = row(&plan, "user_service", "prod");
    assert_eq!(prod.decision.kind(), "blocked", "{}", prod.decision);
    assert!(prod.decision.to_string().contains("CVE-2026-4242"));

    // A second rescan the same day: already scanned today, nothing new, nothing written.
    let before = writes(&sb);
    let again = engine.rescan(&Scope::default()).await.unwrap();
    assert_eq!((again.scans_started, again.already_scanned_today), (0, 7));
    let user = again
        .services
        .iter()
        .find(|s| s.service == "user_service")
        .unwrap();
    assert!(matches!(user.issue, IssueAction::Unchanged { number: n, .. } if n == number));
    assert_eq!(writes(&sb), before, "an unchanged rescan writes nothing");

    // A rescan of prod alone neither drops dev's findings nor closes the issue.
    let prod_only = engine
        .rescan(&Scope {
            environment: Some("prod".into()),
            ..Scope::default()
        })
        .await
        .unwrap();
    assert!(!prod_only.failed(), "{prod_only:?}");
    let issues = security(&sb);
    assert_eq!((issues.len(), issues[0].state.as_str()), (1, "open"));
    assert!(
        issues[0].body.contains("CVE-2026-4242"),
        "{}",
        issues[0].body
    );
    assert!(!tugboat::report::rescan_table(&prod_only).contains(" dev "));

    // Another finding appears: the same issue is updated, and a comment tells subscribers.
    sb.aws.set_scan(
        "user_service",
        &shipped,
        "COMPLETE",
        vec![
            cve("CVE-2026-4242", "CRITICAL"),
            cve("CVE-2026-5000", "HIGH"),
        ],
    );
    let third = engine.rescan(&Scope::default()).await.unwrap();
    let user = third
        .services
        .iter()
        .find(|s| s.service == "user_service")
        .unwrap();
    assert!(
        matches!(user.issue, IssueAction::Updated { number: n, .. } if n == number),
        "{:?}",
        user.issue
    );
    let issues = security(&sb);
    assert_eq!(issues.len(), 1, "never a second issue");
    assert!(
        issues[0]
            .body
            .contains("CVE-2026-5000) | HIGH | openssl | - | 20")
    );
    assert!(
        issues[0]
            .comments
            .last()
            .unwrap()
            .1
            .contains("CVE-2026-5000")
    );

    // The findings are fixed (the vendor withdrew them, or a rebuild shipped under the same
    // digest is impossible, so here the scanner simply stops reporting them): closed.
    sb.aws
        .set_scan("user_service", &shipped, "COMPLETE", vec![]);
    let fixed = engine.rescan(&Scope::default()).await.unwrap();
    let user = fixed
        .services
        .iter()
        .find(|s| s.service == "user_service")
        .unwrap();
    assert!(matches!(user.issue, IssueAction::Closed { number: n, .. } if n == number));
    let issues = security(&sb);
    assert_eq!((issues.len(), issues[0].state.as_str()), (1, "closed"));
    assert!(
        issues[0]
            .body
            .contains("Gone since the last rescan: CVE-2026-4242, CVE-2026-5000."),
        "{}",
        issues[0].body
    );
    assert!(!fixed.failed(), "{fixed:?}");
    let plan = engine.cycle(Mode::Plan).await.unwrap();
    assert_ne!(
        row(&plan, "user_service", "prod").decision.kind(),
        "blocked"
    );
    // Clean and closed: a further rescan leaves the closed issue alone.
    let quiet = engine.rescan(&Scope::default()).await.unwrap();
    assert!(quiet.services.iter().all(|s| s.issue == IssueAction::None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_enhanced_scanning_the_rescan_starts_no_scan_and_names_images_whose_eligibility_expired()
 {
    use tugboat::engine::rescan::{IssueAction, Scope};
    let (sb, engine, _w) = setup().await;
    sb.aws.set_enhanced_scanning(true);
    let digest = sb.aws.digest("user_service", "1.0.0").unwrap();
    sb.aws
        .set_scan("user_service", &digest, "SCAN_ELIGIBILITY_EXPIRED", vec![]);
    let report = engine
        .rescan(&Scope {
            service: Some("user_service".into()),
            environment: Some("prod".into()),
            dry_run: false,
        })
        .await
        .unwrap();
    assert_eq!(report.scan_type, tugboat::ports::ScanType::Enhanced);
    assert_eq!(report.scans_started, 0);
    assert_eq!(
        sb.aws.calls().get("StartImageScan"),
        None,
        "Inspector rescans by itself"
    );
    assert_eq!(report.services.len(), 1, "only the service asked for");
    let svc = &report.services[0];
    assert_eq!(svc.rows.len(), 1, "only prod: {:?}", svc.rows);
    assert_eq!(svc.rows[0].deployed.environment, "prod");
    let why = svc.rows[0].unknown.clone().unwrap();
    assert!(why.contains("scan eligibility expired"), "{why}");
    assert_eq!(svc.issue, IssueAction::None, "nothing known to report");
    assert!(
        report.failed(),
        "an image without a fresh result fails the run"
    );
    let table = tugboat::report::rescan_table(&report);
    assert!(
        table.contains("no fresh scan: its scan eligibility expired"),
        "{table}"
    );
    assert!(
        table.contains("1 image(s), enhanced scanning: 0 scan(s) started"),
        "{table}"
    );
}

/// The prod promotion PR of `svc` after dev took `tag` (two cycles).
async fn prod_pr(sb: &Sandbox, engine: &Engine, svc: &str, tag: &str) -> u64 {
    sb.aws.push(svc, tag, "COMPLETE", vec![]);
    engine.cycle(Mode::Apply).await.unwrap();
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { number, .. } = row(&reports, svc, "prod").action else {
        panic!("{:?}", row(&reports, svc, "prod"))
    };
    number
}

fn replies_to(sb: &Sandbox, number: u64, user: &str) -> Vec<String> {
    sb.github
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .unwrap()
        .comments
        .into_iter()
        .filter(|(u, b)| u == "tugboat[bot]" && b.starts_with(&format!("@{user} ")))
        .map(|(_, b)| b)
        .collect()
}

fn reactions(sb: &Sandbox, comment: u64) -> Vec<(String, String)> {
    sb.github
        .comment_records()
        .into_iter()
        .find(|c| c.id == comment)
        .unwrap()
        .reactions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_approver_of_the_current_head_can_merge_prod_and_a_hold_stops_it() {
    let (sb, engine, _w) = setup().await;
    // The salon's prod policy: one approval from salon/platform-leads.
    crate::common::approver(&sb, "alice");
    sb.github.add_collaborator("mallory", "write"); // write access, but not a platform lead
    sb.github
        .add_team_member("salon", "platform-leads", "reader");
    sb.github.add_collaborator("reader", "read"); // a lead without write access
    let number = prod_pr(&sb, &engine, "user_service", "1.1.0").await;
    sb.advance(std::time::Duration::from_secs(1)); // comments are stamped to the second

    let m = sb.github.comment_as(number, "mallory", "/approve").unwrap();
    let r = sb
        .github
        .comment_as(number, "reader", "/APPROVE please")
        .unwrap();
    let d = sb
        .github
        .comment_as(number, "dev", "/hold\nwaiting for the release notes")
        .unwrap();
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let prod = row(&reports, "user_service", "prod");
    assert!(
        matches!(&prod.action, Action::Held { by, .. } if by == "dev"),
        "{:?}",
        prod.action
    );
    assert_eq!(
        replies_to(&sb, number, "mallory"),
        ["@mallory `/approve`: not done: @mallory is not an approver for this environment."]
    );
    assert_eq!(replies_to(&sb, number, "reader").len(), 1);
    assert!(reactions(&sb, m).is_empty() && reactions(&sb, r).is_empty());
    assert_eq!(
        reactions(&sb, d),
        [("tugboat[bot]".to_owned(), "+1".to_owned())]
    );
    let pr = |sb: &Sandbox| {
        sb.github
            .pulls()
            .into_iter()
            .find(|p| p.number == number)
            .unwrap()
    };
    assert!(
        pr(&sb).body.contains("**On hold** (by @dev)"),
        "{}",
        pr(&sb).body
    );

    // Quiet cycles answer nothing again and write nothing; once tugboat has read its own
    // replies, the comment list is not modified and costs a 304.
    let comments_before = pr(&sb).comments.len();
    let before = writes(&sb);
    engine.cycle(Mode::Apply).await.unwrap();
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        (writes(&sb), pr(&sb).comments.len()),
        (before, comments_before)
    );
    assert!(
        sb.github
            .calls()
            .get("GET comments 304")
            .copied()
            .unwrap_or(0)
            > 0,
        "polling uses conditional requests: {:?}",
        sb.github.calls()
    );

    // dev (read access) cannot lift its own hold; alice approves and lifts it.
    sb.github.comment_as(number, "dev", "/unhold").unwrap();
    let a = sb.github.comment_as(number, "alice", "/approve").unwrap();
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(reactions(&sb, a).len(), 1);
    assert!(replies_to(&sb, number, "dev")[0].contains("only an approver can lift a hold"));
    assert!(
        pr(&sb).body.contains("approved at this commit: @alice"),
        "{}",
        pr(&sb).body
    );

    // Before it merges, dev runs a newer tag: the PR moves to it, and alice's approval of the
    // earlier commit no longer counts.
    sb.aws.push("user_service", "1.2.0", "COMPLETE", vec![]);
    engine.cycle(Mode::Apply).await.unwrap(); // dev takes 1.2.0
    let reports = engine.cycle(Mode::Apply).await.unwrap(); // the prod PR moves to 1.2.0
    assert!(matches!(
        row(&reports, "user_service", "prod").action,
        Action::Held { .. }
    ));
    assert!(pr(&sb).title.ends_with("1.2.0"));
    sb.advance(std::time::Duration::from_secs(1)); // comments are stamped to the second
    sb.github.comment_as(number, "alice", "/unhold").unwrap();
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(
            row(&reports, "user_service", "prod").action,
            Action::AwaitingApproval { .. }
        ),
        "the approval was for the earlier commit: {:?}",
        row(&reports, "user_service", "prod").action
    );
    // Edited comments are not commands.
    let e = sb.github.comment_as(number, "alice", "looks fine").unwrap();
    sb.github.edit_comment(e, "/approve");
    engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        replies_to(&sb, number, "alice")
            .iter()
            .any(|r| r.contains("edited"))
    );

    sb.github.comment_as(number, "alice", "/approve").unwrap();
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Merged { verification, .. } = &row(&reports, "user_service", "prod").action else {
        panic!("{:?}", row(&reports, "user_service", "prod").action)
    };
    assert!(
        matches!(verification, Verification::Healthy { .. }),
        "{verification:?}"
    );
    assert!(
        sb.github
            .read_file("main", &sandbox::file_of("user_service", "prod"))
            .unwrap()
            .contains("1.2.0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn githubs_example_deliveries_are_verified_deduplicated_and_wake_the_loop() {
    use tugboat::webhook::Webhook;
    // GitHub's own example payloads (npm @octokit/webhooks-examples, installed by scripts/test).
    let examples: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/node_modules/@octokit/webhooks-examples/api.github.com/index.json"
        ))
        .expect("run scripts/test, which installs @octokit/webhooks-examples"),
    )
    .unwrap();
    let wake = Arc::new(tugboat::engine::Inbox::default());
    let secret = "whsec-test-7f3a"; // pragma: allowlist secret (a test fixture)
    let hook = Arc::new(Webhook::new(
        Arc::new(tugboat::credentials::Rotating::fixed(
            tugboat::secret::Secret::new(secret),
            "github.webhook_secret",
        )),
        wake.clone(),
    ));
    let metrics = Arc::new(tugboat::metrics::Metrics::new(600, &ApiMetrics::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/github", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, tugboat::server::router(metrics, Some(hook))).await
    });
    let sign = |body: &[u8]| {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let http = reqwest::Client::new();
    let post = |event: &str, delivery: String, body: Vec<u8>, signature: Option<String>| {
        let mut r = http
            .post(&url)
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", delivery)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(s) = signature {
            r = r.header("X-Hub-Signature-256", s);
        }
        r.send()
    };
    let mut delivered = 0;
    for event in [
        "ping",
        "issue_comment",
        "pull_request",
        "check_run",
        "check_suite",
    ] {
        let group = examples
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == event)
            .unwrap();
        for (i, example) in group["examples"].as_array().unwrap().iter().enumerate() {
            let body = serde_json::to_vec(example).unwrap();
            let id = format!("{event}-{i}");
            let r = post(event, id.clone(), body.clone(), Some(sign(&body)))
                .await
                .unwrap();
            let want = if event == "ping" { 200 } else { 202 };
            assert_eq!(r.status(), want, "{id}: {}", r.text().await.unwrap());
            // A redelivery of the same id is acknowledged and dropped.
            let again = post(event, id.clone(), body.clone(), Some(sign(&body)))
                .await
                .unwrap();
            assert_eq!(again.text().await.unwrap(), "already received\n");
            // Unsigned or wrongly signed: 401 and not a word more.
            let unsigned = post(event, format!("{id}-x"), body.clone(), None)
                .await
                .unwrap();
            assert_eq!(unsigned.status(), 401);
            assert!(unsigned.text().await.unwrap().is_empty());
            let forged = post(event, format!("{id}-y"), body, Some(sign(b"other")))
                .await
                .unwrap();
            assert_eq!(forged.status(), 401);
            delivered += 1;
        }
    }
    assert!(delivered >= 40, "{delivered} examples");

    // A command on a pull request wakes the run loop.
    let command = serde_json::json!({"action": "created", "issue": {"number": 12, "pull_request": {"url": "x"}},
        "comment": {"id": 1, "body": "/approve", "user": {"login": "alice", "type": "User"}}});
    let body = serde_json::to_vec(&command).unwrap();
    let woken = wake.notified();
    let r = post(
        "issue_comment",
        "cmd-1".into(),
        body.clone(),
        Some(sign(&body)),
    )
    .await
    .unwrap();
    assert_eq!(r.text().await.unwrap(), "queued: a command on #12\n");
    tokio::time::timeout(std::time::Duration::from_secs(1), woken)
        .await
        .expect("the loop is woken");
    // More than the body limit: refused before anything is read into the handler.
    let big = vec![b' '; tugboat::webhook::MAX_BODY + 1];
    let r = post("ping", "big".into(), big.clone(), Some(sign(&big)))
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

/// How many rounds the two-replica race runs: each round pushes a new tag of three services
/// and runs both replicas' cycles at the same moment, twice (a merge that lost a race to the
/// other replica's push is done by the next cycle, before the next tag supersedes it).
const RACING_ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_for_20_rounds_open_one_pr_per_promotion_merge_it_once_and_report_it_once()
 {
    let sb = crate::common::start(Options::default()).await;
    let work = tempfile::tempdir().unwrap();
    // The sandbox's configuration lifts the pacing of GitHub writes (60 promotions' writes
    // would take minutes at GitHub's 80 a minute, which this test is not about).
    let replica = |dir: &str| sb.config_toml(&work.path().join(dir));
    let api = ApiMetrics::default();
    let first = crate::common::engine_from(&sb, &replica("first"), &api).await;
    let second = crate::common::engine_from(&sb, &replica("second"), &api).await;
    let services = ["user_service", "staff_management", "reports_analytics"];
    for round in 0..RACING_ROUNDS {
        let tag = format!("1.{}.0", round + 1);
        for svc in services {
            sb.aws.push(svc, &tag, "COMPLETE", vec![]);
        }
        sb.advance(std::time::Duration::from_secs(60));
        // Both replicas work on the same new tags at the same moment.
        for _ in 0..2 {
            let (a, b) = tokio::join!(first.cycle(Mode::Apply), second.cycle(Mode::Apply));
            let (a, b) = (a.unwrap(), b.unwrap());
            for svc in services {
                for r in [row(&a, svc, "dev"), row(&b, svc, "dev")] {
                    assert!(
                        !matches!(r.action, Action::Failed { .. }),
                        "round {round}, {svc}: {:?}",
                        r.action
                    );
                }
            }
        }
    }
    // The numbers this proves, over 20 rounds × 3 services = 60 racing promotions:
    // 60 PRs opened (one per promotion, none closed unmerged as a duplicate), 60 merges,
    // 60 verification reports (one per merged PR), and every PR carrying its own tag.
    let prs: Vec<_> = sb
        .github
        .pulls()
        .into_iter()
        .filter(|p| p.head.starts_with("tugboat/dev/"))
        .collect();
    let merged = prs.iter().filter(|p| p.merged_at.is_some()).count();
    let closed_unmerged: Vec<u64> = prs
        .iter()
        .filter(|p| p.state == "closed" && p.merged_at.is_none())
        .map(|p| p.number)
        .collect();
    let promotions = RACING_ROUNDS * services.len();
    assert_eq!(closed_unmerged, Vec::<u64>::new(), "no duplicate PR");
    assert_eq!((prs.len(), merged), (promotions, promotions));
    for p in &prs {
        let reports = crate::common::verification_reports(p);
        assert_eq!(
            reports.len(),
            1,
            "PR #{} is reported once: {reports:?}",
            p.number
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_rate_limit_pauses_every_request_until_it_resets_and_nothing_else_stops() {
    let (sb, engine, _w) = setup().await;
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    sb.github.throttle(1, false);
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Failed { error } = &row(&reports, "user_service", "dev").action else {
        panic!("{:?}", row(&reports, "user_service", "dev").action)
    };
    let message = error.to_string();
    assert!(message.contains("rate limit"), "{message}");
    assert_eq!(
        sb.github.calls().get("GET rate_limit"),
        None,
        "the answer's x-ratelimit-reset said when it resets"
    );
    // Paused: the next cycle sends GitHub nothing, says why, and the other services' rows
    // are still computed.
    let before = sb.github.calls();
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let after = sb.github.calls();
    let api: u64 = after
        .iter()
        .filter(|(k, _)| !k.starts_with("git "))
        .map(|(k, v)| v - before.get(k).copied().unwrap_or(0))
        .sum();
    assert_eq!(api, 0, "{before:?} -> {after:?}");
    let Action::Failed { error } = &row(&reports, "user_service", "dev").action else {
        panic!()
    };
    let message = error.to_string();
    assert!(
        message.contains("not sent: GitHub's rate limit is used up; requests resume in 29s")
            || message.contains("not sent: GitHub's rate limit is used up; requests resume in 30s"),
        "{message}"
    );
    assert_eq!(reports.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_between_the_push_and_the_pr_ends_after_a_restart_with_one_pr_and_one_merge() {
    use tugboat::domain::image::{Repository, Tag};
    let (sb, _engine, work) = setup().await;
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    // What a tugboat stopped right after its push leaves: the branch, and no PR.
    let cfg = Config::parse(
        &sb.config_toml(&work.path().join("w")),
        "sandbox.toml",
        std::iter::empty(),
    )
    .unwrap();
    let ports = tugboat::app::ports(&cfg, &ApiMetrics::default())
        .await
        .unwrap();
    ports.repo.sync().await.unwrap();
    let path = sandbox::file_of("user_service", "dev");
    let text = ports.repo.read(&path).await.unwrap().unwrap();
    let edited = tugboat::manifest::set_image(
        &text,
        &Repository::parse(&sandbox::image_of("user_service")).unwrap(),
        &Tag::parse("1.1.0").unwrap(),
        None,
    )
    .unwrap();
    let pushed = ports
        .repo
        .propose(
            "tugboat/dev/user_service",
            vec![(path.clone(), edited.text.clone())],
            "Promote user_service to dev: 1.1.0",
            tugboat::ports::Base::Untouched,
        )
        .await
        .unwrap();
    assert!(pushed.pushed && sb.github.pulls().is_empty());

    let restarted = crate::common::engine(&sb, &work, &ApiMetrics::default()).await;
    let r = restarted.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(
            row(&r, "user_service", "dev").action,
            Action::Merged {
                verification: Verification::Healthy { .. },
                ..
            }
        ),
        "{:?}",
        row(&r, "user_service", "dev")
    );
    restarted.cycle(Mode::Apply).await.unwrap();
    let dev: Vec<_> = sb
        .github
        .pulls()
        .into_iter()
        .filter(|p| p.head == "tugboat/dev/user_service")
        .collect();
    assert_eq!(dev.len(), 1, "one PR");
    assert!(dev[0].merged_at.is_some());
    assert_eq!(sb.github.calls().get("PUT merge"), Some(&1), "one merge");
    assert_eq!(
        sb.github.read_file("main", &path).unwrap(),
        edited.text,
        "main has the pushed change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_between_the_approval_and_the_merge_ends_after_a_restart_with_one_merge() {
    let (sb, engine, work) = setup().await;
    crate::common::approver(&sb, "alice");
    let number = prod_pr(&sb, &engine, "user_service", "1.1.0").await;
    sb.advance(std::time::Duration::from_secs(1)); // comments are stamped to the second
    sb.github.comment_as(number, "alice", "/approve").unwrap();
    // The tugboat that saw the PR stops before it merges; a new one starts.
    drop(engine);
    let restarted = crate::common::engine(&sb, &work, &ApiMetrics::default()).await;
    let r = restarted.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "user_service", "prod").action, Action::Merged { number: n, .. } if n == number),
        "{:?}",
        row(&r, "user_service", "prod")
    );
    let r = restarted.cycle(Mode::Apply).await.unwrap();
    assert_eq!(row(&r, "user_service", "prod").action, Action::None);
    let prod: Vec<_> = sb
        .github
        .pulls()
        .into_iter()
        .filter(|p| p.head == "tugboat/prod/user_service")
        .collect();
    assert_eq!(prod.len(), 1);
    assert_eq!(
        sb.github.calls().get("PUT merge"),
        Some(&2),
        "dev's merge and prod's, once each"
    );
    // The approval was answered once, by the first tugboat or the second, never twice.
    let thumbs: usize = sb
        .github
        .comment_records()
        .iter()
        .filter(|c| c.user == "alice")
        .map(|c| c.reactions.len())
        .sum();
    assert_eq!(thumbs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_github_login_configured_tugboat_never_asks_who_it_is() {
    // A GitHub App installation token cannot call GET /user; `github.login` says it instead.
    let sb = crate::common::start(Options::default()).await;
    let work = tempfile::tempdir().unwrap();
    let toml = sb.config_toml(&work.path().join("w")).replace(
        "base_branch = \"main\"\n",
        "base_branch = \"main\"\nlogin = \"tugboat[bot]\"\n",
    );
    let engine = crate::common::engine_from(&sb, &toml, &Default::default()).await;
    crate::common::approver(&sb, "alice");
    let number = prod_pr(&sb, &engine, "user_service", "1.1.0").await;
    sb.advance(std::time::Duration::from_secs(1)); // comments are stamped to the second
    sb.github.comment_as(number, "alice", "/approve").unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(
            row(&r, "user_service", "prod").action,
            Action::Merged { .. }
        ),
        "{:?}",
        row(&r, "user_service", "prod")
    );
    assert_eq!(sb.github.calls().get("GET user"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_cycle_with_prs_awaiting_approval_costs_github_only_not_modified_answers() {
    let (sb, engine, _w) = setup().await;
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    sb.aws.push("staff_management", "1.1.0", "COMPLETE", vec![]);
    engine.cycle(Mode::Apply).await.unwrap(); // dev merged, prod PRs opened
    engine.cycle(Mode::Apply).await.unwrap(); // the lists read once with their ETags
    assert_eq!(
        engine.longest_health_timeout(),
        std::time::Duration::from_secs(600),
        "prod's 10m: a cycle may verify that long, and readiness allows for it"
    );
    let before = sb.github.calls();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(
        row(&r, "user_service", "prod").action,
        Action::AwaitingApproval { .. }
    ));
    let after = sb.github.calls();
    let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    let rest: Vec<(&String, u64)> = after
        .keys()
        .filter(|k| !k.starts_with("git ") && !k.ends_with(" 304"))
        .map(|k| (k, delta(k)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(!rest.is_empty());
    for (k, n) in &rest {
        // Every request of the cycle was conditional and answered 304 (no rate limit used).
        assert_eq!(delta(&format!("{k} 304")), *n, "{k}: {rest:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_pr_whose_image_a_rescan_now_refuses_is_closed_saying_why() {
    use tugboat::engine::rescan::Scope;
    let (sb, engine, _w) = setup().await;
    let digest = sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    let number = prod_pr(&sb, &engine, "user_service", "1.1.0").await;
    // A CVE is published against the image the prod PR promotes.
    sb.aws.set_scan(
        "user_service",
        &digest,
        "COMPLETE",
        vec![cve("CVE-2026-5150", "CRITICAL")],
    );
    engine.rescan(&Scope::default()).await.unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let prod = row(&r, "user_service", "prod");
    assert!(
        matches!(prod.decision, Decision::Blocked { .. }),
        "{prod:?}"
    );
    assert!(
        matches!(prod.action, Action::Closed { number: n, .. } if n == number),
        "{prod:?}"
    );
    let pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .unwrap();
    assert_eq!(pr.state, "closed");
    assert!(pr.merged_at.is_none());
    let why = &pr.comments.last().unwrap().1;
    assert!(
        why.starts_with("Closed: tugboat no longer promotes `1.1.0`")
            && why.contains("CVE-2026-5150"),
        "{why}"
    );
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(row(&r, "user_service", "prod").action, Action::None);
}

/// The head commit of pull request `number`.
fn pr_head(sb: &Sandbox, number: u64) -> String {
    let head = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .unwrap()
        .head;
    sb.github.branch_sha(&head).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_survives_unrelated_merges_and_a_persons_push_to_the_branch_voids_it() {
    let (sb, engine, _w) = setup().await;
    sb.aws.put_parameter(
        "/salon/promotion/services/user_service",
        "environments:\n  prod:\n    approvals: 2\n",
        "String",
    );
    crate::common::approver(&sb, "alice");
    crate::common::approver(&sb, "bob");
    let number = prod_pr(&sb, &engine, "user_service", "1.1.0").await;
    sb.advance(std::time::Duration::from_secs(1)); // comments are stamped to the second
    sb.github.comment_as(number, "alice", "/approve").unwrap();
    engine.cycle(Mode::Apply).await.unwrap();
    let head = pr_head(&sb, number);
    let statuses = sb.github.statuses(&head).len();

    // Two other services are promoted in dev: main moves twice.
    for svc in ["staff_management", "appointment_service"] {
        let main = sb.github.branch_sha("main");
        sb.aws.push(svc, "1.1.0", "COMPLETE", vec![]);
        let r = engine.cycle(Mode::Apply).await.unwrap();
        crate::common::assert_healthy(&r, svc, "dev");
        assert_ne!(sb.github.branch_sha("main"), main);
        assert!(matches!(
            row(&r, "user_service", "prod").action,
            Action::AwaitingApproval { .. }
        ));
    }
    assert_eq!(pr_head(&sb, number), head, "the PR was not rewritten");
    assert_eq!(
        sb.github.statuses(&head).len(),
        statuses,
        "no status rewritten"
    );

    // A person pushes to the branch: alice's approval was for the earlier commit.
    sb.advance(std::time::Duration::from_secs(1));
    let branch = "tugboat/prod/user_service";
    sb.github
        .commit_as(branch, "apps/user_service/NOTES.md", "why\n", "mallory")
        .unwrap();
    sb.advance(std::time::Duration::from_secs(1));
    sb.github.comment_as(number, "bob", "/approve").unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(
            row(&r, "user_service", "prod").action,
            Action::AwaitingApproval { .. }
        ),
        "one approval of the new head is not two: {:?}",
        row(&r, "user_service", "prod").action
    );
    assert_ne!(pr_head(&sb, number), head);
    assert!(
        replies_to(&sb, number, "bob")
            .iter()
            .any(|c| c.contains("approve again")),
        "bob, who approved the pushed commit, is told"
    );
    assert_eq!(
        sb.github
            .read_file("main", &sandbox::file_of("user_service", "prod")),
        Some(
            sandbox::salon_files()
                .into_iter()
                .find(|(p, _)| *p == sandbox::file_of("user_service", "prod"))
                .unwrap()
                .1
        ),
        "prod was not promoted"
    );
}

/// The persistent clone of the engine working in `work`.
/// No row of a cycle's report failed; `when` says which cycle.
fn assert_no_failed_row(reports: &[tugboat::engine::EnvReport], when: &str) {
    let failed: Vec<_> = reports
        .iter()
        .filter(|r| matches!(r.action, Action::Failed { .. }))
        .collect();
    assert!(failed.is_empty(), "{when}: {failed:?}");
}

fn clone_dir(work: &tempfile::TempDir) -> std::path::PathBuf {
    work.path().join("w").join("gitops.git")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_file_left_by_a_killed_tugboat_is_removed_and_promotions_carry_on() {
    let (sb, engine, work) = setup().await;
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    crate::common::assert_healthy(
        &engine.cycle(Mode::Apply).await.unwrap(),
        "user_service",
        "dev",
    );
    // What `kill -9` while git updated a ref leaves behind, from before this process.
    let lock = clone_dir(&work).join("refs/remotes/origin/tugboat/dev/user_service.lock");
    std::fs::write(&lock, "").unwrap();
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    sb.aws.push("user_service", "1.2.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    crate::common::assert_healthy(&r, "user_service", "dev");
    assert!(!lock.exists(), "the stale lock is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_with_missing_objects_is_moved_aside_and_fetched_anew() {
    let (sb, engine, work) = setup().await;
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    crate::common::assert_healthy(
        &engine.cycle(Mode::Apply).await.unwrap(),
        "user_service",
        "dev",
    );
    // A pack and loose objects lost (a disk that filled up, a kill mid-write).
    let objects = clone_dir(&work).join("objects");
    std::fs::remove_dir_all(&objects).unwrap();
    std::fs::create_dir_all(objects.join("pack")).unwrap();
    sb.aws.push("user_service", "1.2.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    crate::common::assert_healthy(&r, "user_service", "dev");
    let aside: Vec<_> = std::fs::read_dir(work.path().join("w"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("gitops.damaged-")
        })
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the damaged clone is kept aside for a post-mortem"
    );
    // The server's repository was never touched: main holds both promotions.
    assert!(
        sb.github
            .read_file("main", &sandbox::file_of("user_service", "dev"))
            .unwrap()
            .contains("1.2.0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_merges_of_one_pr_at_the_same_moment_merge_it_once_as_on_github() {
    let (sb, engine, _w) = setup().await;
    let number = prod_pr(&sb, &engine, "user_service", "1.1.0").await;
    let main = sb.github.branch_sha("main").unwrap();
    let url = format!(
        "{}/repos/salon/salon-gitops/pulls/{number}/merge",
        sb.github_url
    );
    let client = reqwest::Client::new();
    let merge = || {
        client
            .put(&url)
            .bearer_auth(&sb.github_token)
            .header("user-agent", "tugboat-test")
            .json(&serde_json::json!({"merge_method": "squash"}))
            .send()
    };
    let (a, b) = tokio::join!(merge(), merge());
    let mut codes = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    codes.sort_unstable();
    assert_eq!(codes, [200, 405], "one merge, one refusal");
    let head = sb.github.branch_sha("main").unwrap();
    let (parents, _) = sb.github.commit(&head).unwrap();
    assert_eq!(parents, vec![main], "main moved by exactly one commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_branch_that_protection_wants_up_to_date_is_rebased_and_its_approvers_told() {
    let (sb, engine, _w) = setup().await;
    sb.github.require_up_to_date(true);
    crate::common::approver(&sb, "alice");
    let number = prod_pr(&sb, &engine, "user_service", "1.1.0").await;
    // An unrelated dev promotion moves main; the prod PR is kept (its files are untouched).
    sb.aws.push("staff_management", "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    crate::common::assert_healthy(&r, "staff_management", "dev");
    let kept = pr_head(&sb, number);
    sb.advance(std::time::Duration::from_secs(1)); // comments are stamped to the second
    sb.github.comment_as(number, "alice", "/approve").unwrap();
    // Approved, but main protection refuses a branch that is behind: tugboat rebases it.
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(
            row(&r, "user_service", "prod").action,
            Action::Updated { .. }
        ),
        "{:?}",
        row(&r, "user_service", "prod").action
    );
    assert_ne!(pr_head(&sb, number), kept);
    assert!(
        replies_to(&sb, number, "alice")
            .iter()
            .any(|c| c.contains("up to date with main") && c.contains("approve again")),
        "{:?}",
        replies_to(&sb, number, "alice")
    );
    // Approved again on the new head, it merges.
    sb.advance(std::time::Duration::from_secs(1));
    sb.github.comment_as(number, "alice", "/approve").unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    crate::common::assert_healthy(&r, "user_service", "prod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_pr_that_protection_wants_up_to_date_is_rebased_and_its_approvers_told() {
    let (sb, engine, _w) = setup().await;
    sb.aws
        .put_parameter("/salon/promotion/defaults", GROUPED_POLICY, "String");
    crate::common::approver(&sb, "alice");
    let services: Vec<String> = sb.fleet.services.iter().map(|(s, _)| s.clone()).collect();
    for svc in &services {
        sb.aws.push(svc, "1.1.0", "COMPLETE", vec![]);
    }
    engine.cycle(Mode::Apply).await.unwrap();
    engine.cycle(Mode::Apply).await.unwrap();
    let pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.head == "tugboat/group/prod/base-image")
        .unwrap();
    // Main moves under an unrelated file: the group's branch is kept, but protection wants it
    // up to date before it merges.
    sb.github.require_up_to_date(true);
    sb.github
        .commit_as("main", "docs/notes.md", "unrelated\n", "someone")
        .unwrap();
    let kept = pr_head(&sb, pr.number);
    sb.advance(std::time::Duration::from_secs(1));
    sb.github
        .comment_as(pr.number, "alice", "/approve")
        .unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in &services {
        let a = &row(&r, svc, "prod").action;
        assert!(matches!(a, Action::Updated { .. }), "{svc}: {a:?}");
    }
    assert_ne!(pr_head(&sb, pr.number), kept);
    assert!(
        replies_to(&sb, pr.number, "alice")
            .iter()
            .any(|c| c.contains("up to date with main") && c.contains("approve again")),
        "{:?}",
        replies_to(&sb, pr.number, "alice")
    );
    // Approved again on the new head, the whole group merges.
    sb.advance(std::time::Duration::from_secs(1));
    sb.github
        .comment_as(pr.number, "alice", "/approve")
        .unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    for svc in &services {
        assert_healthy(&r, svc, "prod");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_a_released_lease_passes_at_once_and_a_killed_leaders_after_it_expires() {
    use crate::common::election::{QUICK, candidate, stand_in, until_leading};
    let kube = stand_in();
    let (url, _server) = kube.start().await.unwrap();
    let a = candidate(&url, "tugboat-a", QUICK).await;
    until_leading(&a).await;
    let b = candidate(&url, "tugboat-b", QUICK).await;
    tokio::time::sleep(QUICK.lease_duration * 2).await;
    assert!(
        *a.leading.borrow() && !*b.leading.borrow(),
        "a leads, b stands by"
    );
    assert_eq!(
        kube.holder("tugboat", "tugboat").as_deref(),
        Some("tugboat-a")
    );

    // SIGTERM: a releases the lease; b takes it at its next try.
    a.stop.send(true).unwrap();
    let handover = until_leading(&b).await;
    assert!(handover < QUICK.retry_period * 3, "{handover:?}");
    assert!(!*a.leading.borrow());

    // kill -9: b's lease stays b's until it expires, then c takes it.
    b.task.abort();
    let c = candidate(&url, "tugboat-c", QUICK).await;
    let failover = until_leading(&c).await;
    assert!(
        failover >= QUICK.lease_duration,
        "not before the lease expired: {failover:?}"
    );
    assert!(
        failover < QUICK.lease_duration + QUICK.retry_period * 3,
        "{failover:?}"
    );
    println!("handover on release {handover:?}, failover after a kill {failover:?} (1 s lease)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_over_http_says_which_server_refused_what_and_never_shows_the_token() {
    use tugboat::adapters::git::Git;
    use tugboat::ports::{ErrorKind, GitOpsRepo};
    tugboat::app::init_crypto();
    let sb = Sandbox::start(Options::default()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let open = |dir: &str, url: &str, token: &str| {
        Git::open(
            &work.path().join(dir),
            url,
            "main",
            std::sync::Arc::new(tugboat::credentials::Rotating::fixed(
                tugboat::secret::Secret::new(token),
                "github.token",
            )),
            &ApiMetrics::default(),
        )
        .unwrap()
    };
    let repo = format!("{}/git/salon/salon-gitops.git", sb.github_url);

    // The right token fetches main, in one request per step.
    let head = open("ok", &repo, &sb.github_token).sync().await.unwrap();
    assert_eq!(Some(head), sb.github.branch_sha("main"));

    // A wrong token: refused credentials (not a network failure), naming the URL, not the token.
    let wrong = "not-the-token-4f2a"; // pragma: allowlist secret
    let e = open("wrong", &repo, wrong).sync().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied, "{e}");
    assert!(
        e.message.contains("refused the credentials (HTTP 401"),
        "{e}"
    );
    assert!(e.message.contains("/git/salon/salon-gitops.git"), "{e}");
    assert!(!e.message.contains(wrong), "{e}");

    // No repository there.
    let missing = format!("{}/git/salon/no-such-repo.git", sb.github_url);
    let e = open("missing", &missing, &sb.github_token)
        .sync()
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(e.message.contains("no git repository at"), "{e}");

    // A web server that is not a git server answers 200 with a page: said so, with its type.
    let page =
        axum::Router::new().fallback(|| async { axum::response::Html("<html>login</html>") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = format!(
        "http://{}/salon/salon-gitops.git",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, page).await });
    let e = open("web", &web, &sb.github_token)
        .sync()
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains("does not speak git's smart HTTP protocol: content type 'text/html"),
        "{e}"
    );

    // Nothing listening: a transient network failure.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}/x.git", closed.local_addr().unwrap());
    drop(closed);
    let e = open("gone", &gone, &sb.github_token)
        .sync()
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(
        e.message.contains("git over HTTP to http://127.0.0.1:"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_token_rotated_in_ssm_is_read_at_its_first_refusal_and_the_cycle_goes_on() {
    let sb = Sandbox::start(Options::default()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let param = "/salon/tugboat/github-token";
    sb.aws
        .put_parameter(param, &sb.github_token, "SecureString");
    let toml: String = sb
        .config_toml(&work.path().join("w"))
        .lines()
        .map(|l| {
            if l.starts_with("token = { file =") && l.contains("github-token") {
                format!("token = {{ ssm = \"{param}\" }}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(toml.contains(param), "{toml}");
    let api = ApiMetrics::default();
    let engine = crate::common::engine_from(&sb, &toml, &api).await;
    sb.aws.push("staff_management", "1.2.0", "COMPLETE", vec![]);
    engine.cycle(Mode::Apply).await.unwrap();
    assert!(!sb.github.pulls().is_empty());

    // The token is rotated: GitHub accepts only the new one, and SSM holds it.
    let rotated = "gh-rotated-5b1e"; // pragma: allowlist secret (a test fixture)
    sb.github.rotate_token(rotated);
    sb.aws.put_parameter(param, rotated, "SecureString");
    let reads = |sb: &Sandbox| sb.aws.calls().get("GetParameter").copied().unwrap_or(0);
    let before = reads(&sb);
    sb.aws.push("user_service", "2.0.0", "COMPLETE", vec![]);

    let reports = engine.cycle(Mode::Apply).await.unwrap();

    // The cycle's first request (the fetch) was refused, the token read again once, and the
    // fetch and everything after it went on with the new one: no row failed.
    assert_eq!(reads(&sb) - before, 1, "exactly one refresh");
    assert_no_failed_row(&reports, "after the rotation");
    assert!(
        sb.github
            .pulls()
            .iter()
            .any(|p| p.head.contains("user_service")),
        "{:?}",
        sb.github.pulls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_a_github_app_tugboat_lives_through_token_expiries_renewing_once_each() {
    let sb = Sandbox::start(Options::default()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let api = ApiMetrics::default();
    let toml = sb.config_toml_as_app(&work.path().join("w"));
    assert!(
        toml.contains("[github.app]") && !toml.contains("github-token"),
        "{toml}"
    );
    let engine = crate::common::engine_from(&sb, &toml, &api).await;
    // Connecting found the installation, read the App's slug and got a first token.
    assert_eq!(sb.github.app.tokens_issued(), 1);
    let pushes = [
        ("staff_management", "1.2.0"),
        ("user_service", "2.0.0"),
        ("appointment_service", "3.1.0"),
    ];
    for (round, (svc, tag)) in pushes.into_iter().enumerate() {
        // An hour passes: every token issued so far has expired.
        sb.github.app.expire_tokens();
        sb.aws.push(svc, tag, "COMPLETE", vec![]);

        let reports = engine.cycle(Mode::Apply).await.unwrap();

        assert_no_failed_row(&reports, &format!("round {round}"));
        assert_eq!(
            sb.github.app.tokens_issued(),
            round + 2,
            "one renewal per expiry (the cycle's first refused request), shared by git and REST"
        );
        assert!(
            sb.github.pulls().iter().any(|p| p.head.contains(svc)),
            "round {round}: {:?}",
            sb.github.pulls()
        );
    }
    assert!(
        sb.github.app.refused_jwts().is_empty(),
        "{:?}",
        sb.github.app.refused_jwts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_unreadable_app_key_is_an_error_naming_the_app_and_never_the_key() {
    let sb = Sandbox::start(Options::default()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let toml = sb.config_toml_as_app(&work.path().join("w"));
    let key_file = sb.dir().join("github-app.pem");
    let try_with = |pem: &str| {
        std::fs::write(&key_file, pem).unwrap();
        let cfg = Config::parse(&toml, "tugboat.toml", std::iter::empty()).unwrap();
        let sb_clock = sb.clock();
        async move {
            match tugboat::app::ports_on(&cfg, &ApiMetrics::default(), sb_clock).await {
                Ok(_) => panic!("connected with a wrong key"),
                Err(e) => format!("{e:#}"),
            }
        }
    };

    // Another App's key (a revoked one looks the same): GitHub refuses the JWT.
    let other = tugboat_sandbox::github_app::App::generate().unwrap();
    let e = try_with(other.private_key_pem()).await;
    assert!(e.contains("GitHub App 424242"), "{e}");
    assert!(
        e.contains("HTTP 401") && e.contains("wrong or revoked private key"),
        "{e}"
    );
    let body_line = other.private_key_pem().lines().nth(1).unwrap();
    assert!(!e.contains(body_line) && !e.contains("PRIVATE KEY"), "{e}");
    assert_eq!(sb.github.app.tokens_issued(), 0);
    assert!(!sb.github.app.refused_jwts().is_empty());

    // Not a key at all.
    let e = try_with("hunter2\n").await;
    assert!(
        e.contains("GitHub App 424242: the private key is not an RSA key in PEM"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_an_app_commits_are_made_and_signed_by_github_so_a_main_requiring_signed_commits_merges_them()
 {
    let sb = Sandbox::start(Options::default()).await.unwrap();
    sb.github.require_signed_commits(true);
    let work = tempfile::tempdir().unwrap();
    let api = ApiMetrics::default();
    let app =
        crate::common::engine_from(&sb, &sb.config_toml_as_app(&work.path().join("a")), &api).await;
    sb.aws.push(
        "user_service",
        "1.1.0",
        "COMPLETE",
        vec![SeedFinding {
            id: "CVE-2026-1111".into(),
            severity: "MEDIUM".into(),
            package: Some("zlib".into()),
            status: None,
        }],
    );

    let r = app.cycle(Mode::Apply).await.unwrap();

    let Action::Merged {
        number,
        sha,
        verification,
        ..
    } = &row(&r, "user_service", "dev").action
    else {
        panic!("{:?}", row(&r, "user_service", "dev"))
    };
    assert!(
        matches!(verification, Verification::Healthy { .. }),
        "{verification:?}"
    );
    let pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.number == *number)
        .unwrap();
    let head = pr.closed_head.clone().unwrap();
    assert!(
        sb.github.verified(&head),
        "the promotion commit is GitHub's, signed"
    );
    let (parents, message) = sb.github.commit(&head).unwrap();
    assert_eq!(parents.len(), 1);
    assert!(
        message.starts_with("Promote user_service to dev: 1.1.0"),
        "{message}"
    );
    // The byte-exact edit is the same whichever way it travels: only the image line changed.
    let path = "apps/user_service/overlays/dev/kustomization.yaml";
    let (before, after) = (
        sb.github.read_at(&parents[0], path),
        sb.github.read_at(&head, path),
    );
    let (before, after) = (before.unwrap(), after.unwrap());
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(before.lines().count(), after.lines().count());

    // The gate and the deploy are check runs with summaries, not commit statuses.
    assert!(sb.github.statuses(&head).is_empty() && sb.github.statuses(sha).is_empty());
    let gate = sb.github.check_runs(&head);
    let gate = gate
        .iter()
        .find(|c| c.name == "tugboat/scan-gate")
        .expect("gate check run");
    assert_eq!(
        (gate.status.as_str(), gate.conclusion.as_deref()),
        ("completed", Some("success"))
    );
    let summary = gate.summary.clone().unwrap();
    assert!(
        summary.contains("| severity | findings | allowed |"),
        "{summary}"
    );
    assert!(
        summary.contains("| MEDIUM | 1 |") && summary.contains("CVE-2026-1111"),
        "{summary}"
    );
    assert!(summary.contains("### Policy"), "{summary}");
    let deploy = sb.github.check_runs(sha);
    let deploy = deploy
        .iter()
        .find(|c| c.name == "tugboat/deploy")
        .expect("deploy check run");
    assert_eq!(deploy.conclusion.as_deref(), Some("success"));
    let app_name = sandbox::app_name("user_service", "dev");
    assert_eq!(
        deploy.details_url.as_deref(),
        Some(format!("{}/applications/{app_name}", sb.argocd_url).as_str())
    );
    assert!(
        deploy
            .summary
            .as_deref()
            .unwrap()
            .contains("Synced and Healthy")
    );
    // Four writes made each commit (blob, tree, commit, ref), one per PR (dev's, and the
    // next environment's opened after dev turned Healthy).
    let calls = sb.github.calls();
    for op in [
        "POST git/blobs",
        "POST git/trees",
        "POST git/commits",
        "POST git/refs",
    ] {
        assert_eq!(calls.get(op), calls.get("POST pulls"), "{op}: {calls:?}");
    }

    // A token install pushes its commits (unsigned): the same protection refuses the merge,
    // and the row says why.
    let token =
        crate::common::engine_from(&sb, &sb.config_toml(&work.path().join("t")), &api).await;
    sb.aws.push("staff_management", "1.1.0", "COMPLETE", vec![]);
    let r = token.cycle(Mode::Apply).await.unwrap();
    let Action::Failed { error } = &row(&r, "staff_management", "dev").action else {
        panic!("{:?}", row(&r, "staff_management", "dev"))
    };
    let error = error.to_string();
    assert!(
        error.contains("verified signatures")
            && error.contains("pushed with a token")
            && error.contains("[github.app]"),
        "the refusal says why the commits are unsigned: {error}"
    );
    let open = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.head.contains("staff_management"))
        .unwrap();
    assert!(
        !sb.github
            .verified(&sb.github.branch_sha(&open.head).unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_of_the_gate_check_scans_the_image_again_and_reports_the_gate_anew() {
    use tugboat::webhook::{Outcome, Webhook};
    let sb = Sandbox::start(Options::default()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let engine = crate::common::engine_from(
        &sb,
        &sb.config_toml_as_app(&work.path().join("w")),
        &ApiMetrics::default(),
    )
    .await;
    sb.aws.put_parameter(
        "/salon/promotion/services/user_service",
        "environments:\n  dev:\n    auto_merge: false\n",
        "String",
    );
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { number, .. } = row(&r, "user_service", "dev").action else {
        panic!("{:?}", row(&r, "user_service", "dev"))
    };
    let pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .unwrap();
    let head = sb.github.branch_sha(&pr.head).unwrap();
    assert_eq!(sb.github.check_runs(&head).len(), 1);

    // A person clicks "Re-run" on the gate check; GitHub tells the App by webhook.
    let secret = "whsec-rerun"; // pragma: allowlist secret (a test fixture)
    let hook = Webhook::new(
        Arc::new(tugboat::credentials::Rotating::fixed(
            tugboat::secret::Secret::new(secret),
            "github.webhook_secret",
        )),
        engine.inbox(),
    );
    let body = serde_json::to_vec(&serde_json::json!({"action": "rerequested",
        "check_run": {"name": "tugboat/scan-gate", "head_sha": head,
                      "pull_requests": [{"number": number}]}}))
    .unwrap();
    let signature = {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let outcome = hook
        .handle(Some("check_run"), Some("d-1"), Some(&signature), &body)
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Queued(_)), "{outcome:?}");
    // Meanwhile the scanner learned of a MEDIUM finding (within the policy).
    let digest = sb.aws.digest("user_service", "1.1.0").unwrap();
    sb.aws.set_scan(
        "user_service",
        &digest,
        "COMPLETE",
        vec![SeedFinding {
            id: "CVE-2026-2222".into(),
            severity: "MEDIUM".into(),
            package: None,
            status: None,
        }],
    );
    let scans = |sb: &Sandbox| sb.aws.calls().get("StartImageScan").copied().unwrap_or(0);
    let before = scans(&sb);

    engine.cycle(Mode::Apply).await.unwrap(); // the re-run: a new scan starts
    assert_eq!(scans(&sb), before + 1);
    for _ in 0..3 {
        engine.cycle(Mode::Apply).await.unwrap(); // the scan completes; the gate is judged
    }

    let runs = sb.github.check_runs(&head);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    let newest = runs.last().unwrap();
    assert_eq!(newest.conclusion.as_deref(), Some("success"));
    assert!(
        newest.summary.as_deref().unwrap().contains("CVE-2026-2222"),
        "{newest:#?}"
    );
    assert_eq!(scans(&sb), before + 1, "one re-run, one scan");
}

/// The GitHub adapter as `tugboat run` builds it, with its token, spending `budget`.
async fn github_spending(
    sb: &Sandbox,
    budget: tugboat::adapters::github::WriteBudget,
) -> tugboat::adapters::github::GitHub {
    crate::common::github_adapter(sb)
        .await
        .with_write_budget(budget)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_paced_to_githubs_secondary_limits_are_never_refused_and_a_client_over_them_is_refused_as_by_github()
 {
    use std::time::{Duration, Instant};
    use tugboat::adapters::github::WriteBudget;
    use tugboat::ports::{Conversation, ErrorKind, Issues};
    let sb = crate::common::start(Options::default()).await;
    // GitHub's minute and hour, shrunk to half a second and three seconds.
    let (minute, hour) = ((3, Duration::from_millis(500)), (6, Duration::from_secs(3)));
    sb.github.enforce_write_limits(&[minute, hour]);
    let paced = github_spending(&sb, WriteBudget::with_windows(minute, hour)).await;
    let started = Instant::now();
    let issue = paced.open_issue("the budget", "", &[]).await.unwrap();
    for i in 0..7 {
        paced
            .comment(issue.number, &format!("write {i}"))
            .await
            .unwrap();
    }
    // Eight writes: three at once, three half a second later, the last two once the first
    // three are three seconds old.
    assert!(
        started.elapsed() >= Duration::from_millis(2_900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        sb.github.refused_writes(),
        0,
        "paced writes are never refused"
    );

    let eager = github_spending(&sb, WriteBudget::new(10_000, 600_000)).await;
    let refused = {
        let mut refused = None;
        for i in 0..10 {
            if let Err(e) = eager.comment(issue.number, &format!("eager {i}")).await {
                refused = Some(e);
                break;
            }
        }
        refused.expect("the sandbox refuses writes over its limits")
    };
    assert_eq!(refused.kind, ErrorKind::Throttled, "{refused}");
    assert!(
        refused.to_string().contains("secondary rate limit"),
        "{refused}"
    );
    assert!(sb.github.refused_writes() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_githubs_own_figures_on_a_clock_a_thousand_times_faster_the_hourly_cap_pauses_the_501st_write_and_loses_none()
 {
    use std::time::{Duration, Instant};
    use tugboat::adapters::github::WriteBudget;
    use tugboat::ports::{Conversation, Issues};
    let sb = crate::common::start(Options::default()).await;
    // 80 a minute and 500 an hour, on a clock where an hour lasts 3.6 s.
    let scaled = |d: Duration| d / 1000;
    let minute = (80, scaled(Duration::from_secs(60)));
    let hour = (500, scaled(Duration::from_secs(3600)));
    sb.github.enforce_write_limits(&[minute, hour]);
    let budget = WriteBudget::with_windows(minute, hour);
    let github = github_spending(&sb, budget.clone()).await;
    let started = Instant::now();
    let issue = github.open_issue("the hourly cap", "", &[]).await.unwrap();
    let mut done = vec![started.elapsed()];
    for i in 1..520 {
        github
            .comment(issue.number, &format!("write {i}"))
            .await
            .unwrap();
        done.push(started.elapsed());
        if i == 499 {
            assert_eq!(budget.remaining().1, 0, "the hour's 500 are spent");
        }
    }
    // The first 500 go at the minute's pace (80 per 60 ms); the 501st waits for the first
    // to be an hour (3.6 s) old.
    let (first_500, the_501st) = (done[499], done[500]);
    assert!(first_500 < hour.1, "{first_500:?}");
    assert!(the_501st >= hour.1, "{the_501st:?}");
    assert_eq!(sb.github.refused_writes(), 0, "none refused");
    let comments = github.comments(issue.number).await.unwrap();
    assert_eq!(comments.len(), 519, "none lost");
    println!(
        "500 writes in {first_500:?}; the 501st at {the_501st:?}, 520 in {:?}",
        done[519]
    );
}

// Images as CI really pushes them (issue 36): Buildx's image indexes, their platforms'
// scans, signature tags and Inspector's timing, through the real ECR adapter.

/// Whether no PR names `service`.
fn no_pr_of(sb: &Sandbox, service: &str) -> bool {
    sb.github.pulls().iter().all(|p| !p.title.contains(service))
}

fn platform(arch: &str, findings: Vec<SeedFinding>) -> tugboat_sandbox::aws::SeedPlatform {
    tugboat_sandbox::aws::SeedPlatform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: None,
        findings,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buildx_index_with_clean_platforms_is_promoted_by_its_own_digest() {
    let (sb, engine, _w) = setup().await;
    let pushed = sb.aws.push_index(
        "user_service",
        "1.1.0",
        vec![platform("amd64", vec![]), platform("arm64", vec![])],
        (true, sandbox::aws::SeedSignature::Valid),
    );
    assert_eq!(pushed.attestations.len(), 2, "one attestation per platform");
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    assert_healthy(&reports, "user_service", "dev");
    let pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.title.contains("user_service") && p.title.contains("dev"))
        .unwrap();
    assert!(
        pr.body
            .contains(&format!("| to | `1.1.0` | `{}`", pushed.digest)),
        "the index's digest is what the tag resolves to: {}",
        pr.body
    );
    assert!(
        pr.body
            .contains("each platform image's own scan gated (linux/amd64, linux/arm64)"),
        "{}",
        pr.body
    );
    for child in pushed.platforms.values().chain(&pushed.attestations) {
        assert!(
            !pr.body.contains(child.as_str()),
            "no child digest is pinned"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_with_a_critical_finding_on_arm64_only_is_blocked_naming_the_platform() {
    let (sb, engine, _w) = setup().await;
    sb.aws.push_index(
        "user_service",
        "1.1.0",
        vec![
            platform("amd64", vec![]),
            platform("arm64", vec![cve("CVE-2026-4242", "CRITICAL")]),
        ],
        (true, sandbox::aws::SeedSignature::Valid),
    );
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let Decision::Blocked { reasons, .. } = &row(&reports, "user_service", "dev").decision else {
        panic!("{:?}", row(&reports, "user_service", "dev").decision)
    };
    assert_eq!(
        reasons,
        &["linux/arm64: 1 CRITICAL finding(s) exceed the threshold of 0 (CVE-2026-4242)"]
    );
    assert!(no_pr_of(&sb, "user_service"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_without_a_platform_the_policy_requires_is_refused_naming_it() {
    let (sb, engine, _w) = setup().await;
    sb.aws.put_parameter(
        "/salon/promotion/services/user_service",
        "environments:\n  dev:\n    platforms: [linux/amd64, linux/arm64]\n",
        "String",
    );
    sb.aws.push_index(
        "user_service",
        "1.1.0",
        vec![platform("amd64", vec![])],
        (true, sandbox::aws::SeedSignature::Valid),
    );
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let dev = row(&reports, "user_service", "dev");
    assert_eq!(dev.decision.kind(), "blocked", "{:?}", dev.decision);
    assert!(
        dev.decision
            .to_string()
            .contains("the image has no linux/arm64 image (it has linux/amd64)"),
        "{}",
        dev.decision
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_tag_pushed_after_the_image_never_becomes_the_candidate() {
    let (sb, engine, _w) = setup().await;
    sb.aws.put_parameter(
        "/salon/promotion/services/user_service",
        "environments:\n  dev:\n    tag: {ordering: pushed_at}\n",
        "String",
    );
    let digest = sb.aws.push("user_service", "abc123", "COMPLETE", vec![]);
    let sig = sb
        .aws
        .push_signature("user_service", &digest, chrono::Duration::seconds(1));
    assert!(sig.starts_with("sha256-") && sig.ends_with(".sig"), "{sig}");
    sb.advance(std::time::Duration::from_secs(2));
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    assert_healthy(&reports, "user_service", "dev");
    let f = sb
        .github
        .read_file("main", &sandbox::file_of("user_service", "dev"))
        .unwrap();
    assert!(f.contains("abc123") && !f.contains(".sig"), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enhanced_report_that_is_empty_for_its_first_seconds_is_not_taken_as_clean() {
    let (sb, engine, _w) = setup().await;
    sb.aws.set_enhanced_scanning(true);
    sb.aws
        .set_inspector_delay(std::time::Duration::from_secs(30));
    sb.aws.push(
        "user_service",
        "1.1.0",
        "COMPLETE",
        vec![cve("CVE-2026-3131", "CRITICAL")],
    );
    let plan = engine.cycle(Mode::Plan).await.unwrap();
    let dev = row(&plan, "user_service", "dev");
    assert_eq!(dev.decision.kind(), "waiting", "{:?}", dev.decision);
    sb.advance(std::time::Duration::from_secs(31));
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let dev = row(&reports, "user_service", "dev");
    assert_eq!(dev.decision.kind(), "blocked", "{:?}", dev.decision);
    assert!(dev.decision.to_string().contains("CVE-2026-3131"));
    assert!(no_pr_of(&sb, "user_service"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suppressed_inspector_finding_does_not_count_and_the_evidence_says_so() {
    let (sb, engine, _w) = setup().await;
    sb.aws.set_enhanced_scanning(true);
    let mut suppressed = cve("CVE-2026-5151", "CRITICAL");
    suppressed.status = Some("SUPPRESSED".into());
    sb.aws
        .push("user_service", "1.1.0", "COMPLETE", vec![suppressed]);
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    assert_healthy(&reports, "user_service", "dev");
    let pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.title.contains("user_service"))
        .unwrap();
    assert!(
        pr.body
            .contains("not counted, as Inspector reports them: CVE-2026-5151 (SUPPRESSED)"),
        "{}",
        pr.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cve_inspector_adds_to_the_digest_dev_runs_blocks_the_prod_promotion_next_cycle() {
    let (sb, engine, work) = setup().await;
    sb.aws.set_enhanced_scanning(true);
    let pushed = sb.aws.push_index(
        "user_service",
        "1.1.0",
        vec![platform("amd64", vec![]), platform("arm64", vec![])],
        (true, sandbox::aws::SeedSignature::Valid),
    );
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    assert_healthy(&reports, "user_service", "dev");
    let api = ApiMetrics::default();
    let cfg = Config::parse(
        &sb.config_toml(&work.path().join("w")),
        "sandbox.toml",
        std::iter::empty(),
    )
    .unwrap();
    let queue = tugboat::app::event_queue(&cfg, &api).await.unwrap();
    let listener = tugboat::events::Listener::new(
        queue,
        tugboat::events::Routes::of(&cfg),
        engine.inbox(),
        Arc::new(tugboat::metrics::Metrics::new(600, &api)),
        sb.clock(),
    );
    while !listener.poll().await.unwrap().is_empty() {} // what the pushes sent
    // Tuesday: a CVE is published; Inspector re-scans the arm64 image and says so.
    let arm64 = &pushed.platforms["linux/arm64"];
    sb.aws.set_scan(
        "user_service",
        arm64,
        "COMPLETE",
        vec![cve("CVE-2026-7777", "CRITICAL")],
    );
    assert!(!listener.poll().await.unwrap().is_empty());
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let prod = row(&reports, "user_service", "prod");
    assert_eq!(prod.decision.kind(), "blocked", "{:?}", prod.decision);
    assert!(
        prod.decision.to_string().contains("linux/arm64")
            && prod.decision.to_string().contains("CVE-2026-7777"),
        "{}",
        prod.decision
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_without_scan_on_push_gets_its_candidates_scan_started_by_tugboat() {
    let (sb, engine, _w) = setup().await;
    let starts = |sb: &Sandbox| sb.aws.calls().get("StartImageScan").copied().unwrap_or(0);
    sb.aws.push("user_service", "1.1.0", "NONE", vec![]);
    let plan = engine.cycle(Mode::Plan).await.unwrap();
    let dev = row(&plan, "user_service", "dev");
    assert!(
        dev.decision.to_string().contains(
            "no scan yet: the repository does not scan on push, and tugboat starts a scan"
        ),
        "{}",
        dev.decision
    );
    assert_eq!(starts(&sb), 0, "a plan writes nothing, in ECR either");
    let first = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(starts(&sb), 1, "{:?}", row(&first, "user_service", "dev"));
    let second = engine.cycle(Mode::Apply).await.unwrap();
    let reports = if matches!(
        row(&first, "user_service", "dev").action,
        Action::Merged { .. }
    ) {
        first
    } else {
        second
    };
    assert_healthy(&reports, "user_service", "dev");
    assert_eq!(starts(&sb), 1, "one scan, not one per cycle");
}

/// ECR repositories are MUTABLE by default: a tag-only promotion says the scanned digest may
/// not be what runs; `mutable_tags: refuse` blocks it; a repository made IMMUTABLE is quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_only_promotion_from_mutable_tags_is_warned_about_or_refused_by_policy() {
    let (sb, engine, _w) = setup().await;
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    sb.aws.push("staff_management", "1.1.0", "COMPLETE", vec![]);
    sb.aws
        .push("reports_analytics", "1.1.0", "COMPLETE", vec![]);
    sb.aws.set_tag_mutability("reports_analytics", "IMMUTABLE");
    sb.aws.put_parameter(
        "/salon/promotion/services/staff_management",
        "environments:\n  dev:\n    mutable_tags: refuse\n",
        "String",
    );
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    assert_healthy(&reports, "user_service", "dev");
    let body = |svc: &str| {
        sb.github
            .pulls()
            .into_iter()
            .find(|p| p.title.contains(svc))
            .map(|p| p.body)
            .unwrap_or_default()
    };
    assert!(
        body("user_service").contains("warning: the repository's tags are MUTABLE"),
        "{}",
        body("user_service")
    );
    let staff = row(&reports, "staff_management", "dev");
    assert_eq!(staff.decision.kind(), "blocked", "{:?}", staff.decision);
    assert!(staff.decision.to_string().contains("mutable_tags: refuse"));
    assert!(no_pr_of(&sb, "staff_management"));
    assert_healthy(&reports, "reports_analytics", "dev");
    assert!(!body("reports_analytics").contains("MUTABLE"));
}
