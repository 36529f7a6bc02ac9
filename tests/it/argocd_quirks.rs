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
    let Action::Merged {
        verification: Verification::Failed { reason },
        ..
    } = &row(&r, SVC, "dev").action
    else {
        panic!("{:?}", row(&r, SVC, "dev"))
    };
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
