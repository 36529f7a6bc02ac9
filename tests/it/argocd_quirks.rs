//! Verification against an Argo CD that behaves as the real one does, each quirk set through
//! the stand-in's `POST /_sandbox/quirks` as an operator's test would: the comparison moves
//! to the merge before anything is synced, an application is Degraded before the fix ships,
//! `summary.images` is empty, the manifests stop rendering.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use crate::common::{assert_healthy, row, setup};
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
    policy(&sb, "environments:\n  dev:\n    rollback: auto\n");
    quirk(&sb, "degraded-before", 0).await;
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    // The comparison reached the merge while the old objects were still Degraded: that is
    // no verdict on the fix, which turns Healthy once synced.
    assert_healthy(&r, SVC, "dev");
    let pulls = sb.github.pulls();
    assert!(
        pulls
            .iter()
            .all(|p| !p.head.starts_with("tugboat/rollback/")),
        "no rollback: {:?}",
        pulls.iter().map(|p| &p.head).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_whose_summary_lists_no_images_still_verifies() {
    let (sb, engine, _w) = setup().await;
    quirk(&sb, "no-summary-images", 0).await;
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_healthy(&r, SVC, "dev");
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
    let looks = |sb: &Sandbox| {
        sb.argocd
            .calls()
            .get("GET application (refresh)")
            .copied()
            .unwrap_or(0)
    };
    let before = looks(&sb);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let reason = failed_reason(&r);
    assert!(
        reason.contains("ComparisonError") && reason.contains("kustomize build"),
        "Argo CD's own words: {reason}"
    );
    assert!(
        looks(&sb) - before <= 2,
        "failed within a look or two, not at the 10m timeout: {} looks",
        looks(&sb) - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_canary_is_never_failed_nor_rolled_back_and_verifies_once_it_goes_on() {
    let (sb, engine, _w) = setup().await;
    policy(
        &sb,
        "environments:\n  dev:\n    rollback: auto\n    health_timeout: 1s\n",
    );
    // The Rollout pauses for 2 s after the sync: past the 1 s health timeout.
    quirk(&sb, "paused", 2).await;
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Merged {
        verification: Verification::Unknown { reason },
        ..
    } = &row(&r, SVC, "dev").action
    else {
        panic!("{:?}", row(&r, SVC, "dev"))
    };
    assert!(reason.contains("paused"), "{reason}");
    // Looked at again each cycle (the PR stays `verifying`) until the Rollout goes on.
    let mut healthy = false;
    for _ in 0..8 {
        let r = engine.cycle(Mode::Apply).await.unwrap();
        if let Action::Merged {
            verification: Verification::Healthy { .. },
            ..
        } = &row(&r, SVC, "dev").action
        {
            healthy = true;
            break;
        }
    }
    assert!(healthy, "verified Healthy once the pause ended");
    let pulls = sb.github.pulls();
    assert!(
        pulls
            .iter()
            .all(|p| !p.head.starts_with("tugboat/rollback/")),
        "a paused canary is never rolled back"
    );
    assert!(
        pulls
            .iter()
            .all(|p| !p.labels.iter().any(|l| l == "tugboat:bad"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_degraded_shorter_than_the_grace_is_healthy_and_not_rolled_back() {
    let (sb, engine, _w) = setup().await;
    policy(
        &sb,
        "environments:\n  dev:\n    rollback: auto\n    degraded_grace: 3s\n",
    );
    // Degraded for a second after the sync (an HPA without metrics yet), then Healthy.
    quirk(&sb, "transient-degraded", 1).await;
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_healthy(&r, SVC, "dev");
    assert!(
        sb.github
            .pulls()
            .iter()
            .all(|p| !p.head.starts_with("tugboat/rollback/"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_retries_an_apply_error_fails_in_argo_cds_words_when_its_retries_end() {
    let (sb, engine, _w) = setup().await;
    policy(&sb, "environments:\n  dev:\n    rollback: manual\n");
    quirk(&sb, "retrying", 1).await;
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let reason = failed_reason(&r);
    assert!(
        reason.contains("failed to apply") && reason.contains("retried"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_still_retrying_past_the_retry_limit_fails_without_waiting_for_argo_cd() {
    let (sb, engine, _w) = setup().await;
    policy(
        &sb,
        "environments:\n  dev:\n    rollback: manual\n    retry_limit: 1\n",
    );
    // Argo CD would retry for a minute (attempts 5 s apart); the second attempt is enough.
    quirk(&sb, "retrying", 60).await;
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
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
