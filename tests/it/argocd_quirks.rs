//! Verification against an Argo CD that behaves as the real one does, each quirk set through
//! the stand-in's `POST /_sandbox/quirks` as an operator's test would: the comparison moves
//! to the merge before anything is synced, an application is Degraded before the fix ships,
//! `summary.images` is empty, the manifests stop rendering, a Rollout pauses, a PreSync hook
//! runs longer than the health timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use crate::common::{assert_healthy, row, setup};
use tugboat::domain::deploy::Evidence;
use tugboat::engine::{Action, Mode, Verification};
use tugboat_sandbox::{Sandbox, app_name};

const SVC: &str = "user_service";

/// Set `quirk` on dev's application through the stand-in's endpoint.
async fn quirk(sb: &Sandbox, quirk: &str, seconds: u64) {
    let resp = reqwest::Client::new()
        .post(format!("{}/_sandbox/quirks", sb.argocd_url))
        .json(&serde_json::json!({
            "application": app_name(SVC, "dev"),
            "quirk": quirk,
            "seconds": seconds,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        204,
        "{quirk}: {}",
        resp.text().await.unwrap()
    );
}

/// Set dev's policy (`yaml`) and a quirk of its application, push 1.1.0 and run a cycle.
async fn promote(
    sb: &Sandbox,
    engine: &tugboat::engine::Engine,
    yaml: &str,
    (name, seconds): (&str, u64),
) -> Vec<tugboat::engine::EnvReport> {
    policy(sb, yaml);
    quirk(sb, name, seconds).await;
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    engine.cycle(Mode::Apply).await.unwrap()
}

/// Why dev's merge was verified failed (a panic when it was not).
fn failed_reason(r: &[tugboat::engine::EnvReport]) -> String {
    match &row(r, SVC, "dev").action {
        Action::Merged {
            verification: Verification::Failed { reason },
            ..
        } => reason.clone(),
        other => panic!("not a failed verification: {other:?}"),
    }
}

fn policy(sb: &Sandbox, yaml: &str) {
    sb.aws
        .put_parameter(&format!("/salon/promotion/services/{SVC}"), yaml, "String");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_for_a_degraded_application_is_verified_healthy_once_synced_not_rolled_back() {
    let (sb, engine, _w) = setup().await;
    let r = promote(
        &sb,
        &engine,
        "environments:\n  dev:\n    rollback: auto\n",
        ("degraded-before", 0),
    )
    .await;
    // The comparison reached the merge while the old objects were still Degraded: that is
    // no verdict on the fix, which turns Healthy once synced.
    assert_healthy(&r, SVC, "dev");
    never_rolled_back(&sb);
}

/// Why dev's merge could not be verified yet (a panic when it was verified).
fn unknown_reason(r: &[tugboat::engine::EnvReport]) -> String {
    match &row(r, SVC, "dev").action {
        Action::Merged {
            verification: Verification::Unknown { reason },
            ..
        } => reason.clone(),
        other => panic!("not an unknown verification: {other:?}"),
    }
}

/// Run cycles until dev's merge is verified Healthy (the PR stays `verifying` until then),
/// at most `cycles`; then check that nothing was rolled back or marked bad.
async fn healthy_within(sb: &Sandbox, engine: &tugboat::engine::Engine, cycles: usize) {
    let mut healthy = false;
    for _ in 0..cycles {
        let r = engine.cycle(Mode::Apply).await.unwrap();
        if matches!(
            row(&r, SVC, "dev").action,
            Action::Merged {
                verification: Verification::Healthy { .. },
                ..
            }
        ) {
            healthy = true;
            break;
        }
    }
    assert!(healthy, "verified Healthy within {cycles} cycles");
    never_rolled_back(sb);
}

/// No rollback PR, no promotion marked bad.
fn never_rolled_back(sb: &Sandbox) {
    let pulls = sb.github.pulls();
    assert!(
        pulls
            .iter()
            .all(|p| !p.head.starts_with("tugboat/rollback/")),
        "no rollback: {:?}",
        pulls.iter().map(|p| &p.head).collect::<Vec<_>>()
    );
    assert!(
        pulls
            .iter()
            .all(|p| !p.labels.iter().any(|l| l == "tugboat:bad"))
    );
}

/// What showed dev's Healthy verification (a panic when it was not Healthy).
fn evidence(r: &[tugboat::engine::EnvReport]) -> Option<Evidence> {
    match &row(r, SVC, "dev").action {
        Action::Merged {
            verification: Verification::Healthy { evidence, .. },
            ..
        } => *evidence,
        other => panic!("not a Healthy verification: {other:?}"),
    }
}

/// The body of the promotion PR of dev (the only one).
fn promotion_body(sb: &Sandbox) -> String {
    let pulls = sb.github.pulls();
    let pr = pulls
        .iter()
        .find(|p| p.head.starts_with("tugboat/") && !p.head.starts_with("tugboat/rollback/"))
        .expect("a promotion PR");
    pr.body.clone()
}

/// How many times dev's application was read, and how many of those asked a refresh.
fn reads(sb: &Sandbox) -> (u64, u64) {
    let calls = sb.argocd.calls_of(&app_name(SVC, "dev"));
    let get = |k: &str| calls.get(k).copied().unwrap_or(0);
    let refreshes = get("GET application (refresh)") + get("GET application (hard refresh)");
    (get("GET application") + refreshes, refreshes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_whose_summary_lists_no_images_verifies_by_its_resource_tree_and_says_so() {
    let (sb, engine, _w) = setup().await;
    quirk(&sb, "no-summary-images", 0).await;
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(evidence(&r), Some(Evidence::ResourceTree));
    let body = promotion_body(&sb);
    assert!(
        body.contains("resource tree"),
        "the PR says which evidence: {body}"
    );
    assert!(
        sb.argocd
            .calls()
            .get("GET resource-tree")
            .is_some_and(|n| *n >= 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_follows_the_event_stream_with_one_refresh_and_no_polling() {
    let (sb, engine, _w) = setup().await;
    // Degraded for a second after the sync: several changes before Healthy.
    quirk(&sb, "transient-degraded", 1).await;
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    let app = app_name(SVC, "dev");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(evidence(&r), Some(Evidence::Summary));
    let calls = sb.argocd.calls_of(&app);
    let get = |k: &str| calls.get(k).copied().unwrap_or(0);
    // The cycle reads the application once before the merge; the verification refreshes it
    // at its first look, then follows the stream: no polling every 200 ms, and no more
    // refresh within a minute (`argocd.refresh_interval`). A look by reading comes when a
    // Degraded's grace ends (2 s here) whatever the stream says.
    assert_eq!(get("GET stream"), 1, "{calls:?}");
    assert_eq!(get("GET application (refresh)"), 1, "{calls:?}");
    assert!(get("GET application") <= 2, "{calls:?}");
    assert_eq!(get("GET resource-tree"), 0, "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_git_webhook_argo_cd_compares_the_merge_at_tugboats_refresh_not_minutes_later() {
    let (sb, engine, _w) = setup().await;
    // Argo CD polls Git every three minutes; only a refresh makes it compare sooner.
    sb.argocd.set_git_webhook(false);
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Merged {
        verification: Verification::Healthy { after, .. },
        ..
    } = &row(&r, SVC, "dev").action
    else {
        panic!("{:?}", row(&r, SVC, "dev"))
    };
    assert!(
        after.as_secs() < 30,
        "seconds, not Argo CD's 3-minute poll: {after:?}"
    );
    assert_eq!(reads(&sb).1, 1, "one refresh did it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_that_buffers_the_stream_a_verification_polls_instead() {
    let (sb, engine, _w) = setup().await;
    sb.argocd.buffer_streams(true);
    quirk(&sb, "transient-degraded", 1).await;
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    let app = app_name(SVC, "dev");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(evidence(&r), Some(Evidence::Summary));
    let calls = sb.argocd.calls_of(&app);
    let get = |k: &str| calls.get(k).copied().unwrap_or(0);
    assert_eq!(get("GET stream"), 1, "tried once: {calls:?}");
    assert!(get("GET application") >= 3, "polled instead: {calls:?}");
    assert_eq!(get("GET application (refresh)"), 1, "{calls:?}");
    // The next verification does not try again for a while: straight to polling.
    sb.aws.push(SVC, "1.2.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(evidence(&r).is_some());
    assert_eq!(sb.argocd.calls_of(&app).get("GET stream"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_paused_past_its_pause_timeout_holds_the_environment_and_is_never_rolled_back() {
    let (sb, engine, _w) = setup().await;
    let r = promote(&sb, &engine, "environments:\n  dev:\n    rollback: auto\n    pause_timeout: 1s\n    health_timeout: 5s\n", ("paused", 600)).await;
    let action = &row(&r, SVC, "dev").action;
    let Action::EnvironmentHeld { issue, cause, .. } = action else {
        panic!("held: {action:?}")
    };
    assert_eq!(cause.as_str(), "paused-rollout");
    let issues = sb.github.issues();
    let held = issues
        .iter()
        .find(|i| i.number == *issue)
        .expect("the hold issue");
    assert!(
        held.body.contains("Rollout") && held.body.contains("/resume"),
        "{}",
        held.body
    );
    // The promotion stays `verifying` (verified again after `/resume`); nothing rolled back.
    let pulls = sb.github.pulls();
    let pr = pulls
        .iter()
        .find(|p| p.merged_at.is_some())
        .expect("the merged promotion");
    assert!(
        pr.labels.iter().any(|l| l == "tugboat:verifying"),
        "{:?}",
        pr.labels
    );
    assert!(
        pulls
            .iter()
            .all(|p| !p.head.starts_with("tugboat/rollback/"))
    );
    // Held: the next cycle does nothing there.
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        !matches!(row(&r, SVC, "dev").action, Action::Merged { .. }),
        "{:?}",
        row(&r, SVC, "dev").action
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_canary_counts_as_deployed_under_on_pause_accept() {
    let (sb, engine, _w) = setup().await;
    let r = promote(
        &sb,
        &engine,
        "environments:\n  dev:\n    on_pause: accept\n",
        ("paused", 600),
    )
    .await;
    assert_eq!(evidence(&r), Some(Evidence::PausedAccepted));
    let body = promotion_body(&sb);
    assert!(body.contains("on_pause: accept"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presync_hook_longer_than_the_health_timeout_is_waited_on_and_named() {
    let (sb, engine, _w) = setup().await;
    // A 3 s migration Job before the apply: past the 1 s health timeout.
    let r = promote(
        &sb,
        &engine,
        "environments:\n  dev:\n    rollback: auto\n    health_timeout: 1s\n",
        ("presync-hook", 3),
    )
    .await;
    let reason = unknown_reason(&r);
    let job = format!("PreSync Job/{}-migrate", app_name(SVC, "dev"));
    assert!(
        reason.contains(&job) && reason.contains("hook_timeout"),
        "{reason}"
    );
    // Healthy once the migration ended.
    healthy_within(&sb, &engine, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_still_running_past_its_hook_timeout_fails_naming_the_hook() {
    let (sb, engine, _w) = setup().await;
    let r = promote(&sb, &engine, "environments:\n  dev:\n    rollback: manual\n    health_timeout: 2s\n    hook_timeout: 1s\n", ("presync-hook", 600)).await;
    let reason = failed_reason(&r);
    let job = format!("PreSync Job/{}-migrate", app_name(SVC, "dev"));
    assert!(
        reason.contains(&job) && reason.contains("hook_timeout 1s"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comparison_error_fails_the_verification_at_its_first_look_in_argo_cds_words() {
    let (sb, engine, _w) = setup().await;
    policy(
        &sb,
        "environments:\n  dev:\n    rollback: manual\n    health_timeout: 10m\n",
    );
    quirk(&sb, "comparison-error", 600).await;
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    let looks = |sb: &Sandbox| reads(sb).1;
    let before = looks(&sb);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let reason = failed_reason(&r);
    assert!(
        reason.contains("ComparisonError") && reason.contains("kustomize build"),
        "Argo CD's own words: {reason}"
    );
    // Its first look (the one that refreshes) failed it: not a second refresh, let alone
    // the 10m timeout.
    assert_eq!(
        looks(&sb) - before,
        1,
        "failed at its first look, not at the 10m timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_canary_is_never_failed_nor_rolled_back_and_verifies_once_it_goes_on() {
    let (sb, engine, _w) = setup().await;
    // The Rollout pauses for 2 s after the sync: past the 1 s health timeout.
    let r = promote(
        &sb,
        &engine,
        "environments:\n  dev:\n    rollback: auto\n    health_timeout: 1s\n",
        ("paused", 2),
    )
    .await;
    let reason = unknown_reason(&r);
    assert!(reason.contains("paused"), "{reason}");
    // Looked at again each cycle (the PR stays `verifying`) until the Rollout goes on.
    healthy_within(&sb, &engine, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_degraded_shorter_than_the_grace_is_healthy_and_not_rolled_back() {
    let (sb, engine, _w) = setup().await;
    // Degraded for a second after the sync (an HPA without metrics yet), then Healthy.
    let r = promote(
        &sb,
        &engine,
        "environments:\n  dev:\n    rollback: auto\n    degraded_grace: 3s\n",
        ("transient-degraded", 1),
    )
    .await;
    assert_healthy(&r, SVC, "dev");
    never_rolled_back(&sb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_retries_an_apply_error_fails_in_argo_cds_words_when_its_retries_end() {
    let (sb, engine, _w) = setup().await;
    let r = promote(
        &sb,
        &engine,
        "environments:\n  dev:\n    rollback: manual\n",
        ("retrying", 1),
    )
    .await;
    let reason = failed_reason(&r);
    assert!(
        reason.contains("failed to apply") && reason.contains("retried"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_still_retrying_past_the_retry_limit_fails_without_waiting_for_argo_cd() {
    let (sb, engine, _w) = setup().await;
    // Argo CD would retry for a minute (attempts 5 s apart); the second attempt is enough.
    let r = promote(
        &sb,
        &engine,
        "environments:\n  dev:\n    rollback: manual\n    retry_limit: 1\n",
        ("retrying", 60),
    )
    .await;
    // Not "timed out after 30s": the retry limit ended it, in Argo CD's words.
    let reason = failed_reason(&r);
    assert!(
        reason.starts_with(
            "sync operation still failing after 1 retries: one or more objects failed to apply"
        ) && reason.contains("Retrying attempt #2"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_quirk_is_refused_with_the_ones_there_are() {
    let (sb, _engine, _w) = setup().await;
    let resp = reqwest::Client::new()
        .post(format!("{}/_sandbox/quirks", sb.argocd_url))
        .json(&serde_json::json!({"application": app_name(SVC, "dev"), "quirk": "gremlins"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let said = resp.text().await.unwrap();
    assert!(
        said.contains("degraded-before") && said.contains("retrying"),
        "{said}"
    );
}
