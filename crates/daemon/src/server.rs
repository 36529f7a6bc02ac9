//! tugboat's HTTP server: `/healthz`, `/readyz`, `/metrics` (Prometheus text) and, when a
//! secret is configured, `POST /webhooks/github`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::webhook::{Outcome, Refusal, Webhook};

/// The routes; `/webhooks/github` only when a webhook secret is configured.
pub fn router(metrics: Arc<Metrics>, webhook: Option<Arc<Webhook>>) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(metrics);
    if let Some(w) = webhook {
        r = r.route(
            "/webhooks/github",
            post(github_webhook)
                .layer(DefaultBodyLimit::max(crate::webhook::MAX_BODY))
                .with_state(w),
        );
    }
    r
}

/// A GitHub delivery: 401 with no detail unless signed with the secret; answered at once (the
/// work is a wake-up of the run loop).
async fn github_webhook(
    State(w): State<Arc<Webhook>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match w
        .handle(
            h("x-github-event"),
            h("x-github-delivery"),
            h("x-hub-signature-256"),
            &body,
        )
        .await
    {
        Ok(Outcome::Pong) => (StatusCode::OK, "pong\n").into_response(),
        Ok(Outcome::Duplicate) => (StatusCode::OK, "already received\n").into_response(),
        Ok(Outcome::Queued(why)) => {
            (StatusCode::ACCEPTED, format!("queued: {why}\n")).into_response()
        }
        Ok(Outcome::Ignored(why)) => {
            (StatusCode::ACCEPTED, format!("ignored: {why}\n")).into_response()
        }
        Err(Refusal::Unauthorized) => StatusCode::UNAUTHORIZED.into_response(),
        Err(Refusal::Malformed(why)) => {
            (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
        }
    }
}

/// Ready when the config is loaded (it is, or the server would not run), the policy has been
/// read, the last cycle finished recently, and no outside system failed every call of it. A
/// follower under leader election is ready, and says `standby`.
/// The body names each check; it carries counts, never messages that could hold secrets.
async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.standby.load(Ordering::Relaxed) {
        // Ready to take over: a follower runs no cycle, so none can be late.
        let body = json!({"ready": true, "standby": true, "failing": [],
                          "checks": {"config": {"ok": true}, "leader": {"ok": true, "detail": "standby: another replica holds the lease"}}});
        return (StatusCode::OK, axum::Json(body));
    }
    let last = m.ready.last_cycle.load(Ordering::Relaxed);
    let age = chrono::Utc::now().timestamp() - last;
    let mut failing = Vec::new();
    let cycle = if last == 0 {
        failing.push("last_cycle");
        json!({"ok": false, "detail": "the first cycle has not finished"})
    } else if age > m.max_cycle_age_secs() {
        failing.push("last_cycle");
        json!({"ok": false, "detail": format!("the last cycle finished {age}s ago (limit {}s)", m.max_cycle_age_secs())})
    } else {
        json!({"ok": true, "age_seconds": age})
    };
    let policy = m.ready.policy_loaded.load(Ordering::Relaxed);
    if !policy {
        failing.push("policy");
    }
    let unreachable = m
        .ready
        .unreachable
        .lock()
        .map(|u| u.clone())
        .unwrap_or_default();
    if !unreachable.is_empty() {
        failing.push("dependencies");
    }
    let mut body = json!({
        "ready": failing.is_empty(),
        "failing": failing,
        "checks": {
            "config": {"ok": true},
            "policy": {"ok": policy},
            "last_cycle": cycle,
            "dependencies": {"ok": unreachable.is_empty(), "unreachable": unreachable},
        }
    });
    // Events only speed things up: a queue that does not answer is reported, never failing.
    let events = m.ready.events.lock().map(|e| e.clone()).unwrap_or_default();
    if let Some(state) = events {
        body["checks"]["events"] = match state {
            Ok(()) => json!({"ok": true}),
            Err((why, since)) => json!({"ok": false, "since": since,
                "detail": format!("the event queue does not answer ({why}); polling every cycle meanwhile")}),
        };
    }
    let code = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body))
}

async fn metrics_text(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    webhook: Option<Arc<Webhook>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, webhook))
        .with_graceful_shutdown(shutdown)
        .await
}
