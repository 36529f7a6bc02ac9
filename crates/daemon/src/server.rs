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
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

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
/// work is a wake-up of the run loop). A follower hands a verified delivery that needs a
/// cycle on to the leader, and answers with the leader's answer.
async fn github_webhook(
    State(w): State<Arc<Webhook>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let outcome = w
        .handle(
            h("x-github-event"),
            h("x-github-delivery"),
            h("x-hub-signature-256"),
            &body,
        )
        .await;
    if let Ok(Outcome::Queued(_)) = &outcome
        && let Some(relay) = w.relay()
        && let Some(leader) = relay.target(&headers)
    {
        match relay.hand_on(&leader, &headers, body).await {
            Ok(answer) => {
                tracing::info!(leader = %leader, status = answer.status, delivery = h("x-github-delivery"), "webhook: handed on to the leader");
                let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
                return (status, format!("handed on to the leader: {}", answer.body))
                    .into_response();
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook: cannot hand the delivery on to the leader; it acts at its next poll");
            }
        }
    }
    match outcome {
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

/// How long a client has to send a request's headers: longer only holds a connection for
/// someone sending them a byte at a time (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How many connections are served at once; one more is closed as soon as it is accepted,
/// so that a flood costs connections, never file descriptors or memory without bound.
/// Prometheus, the kubelet's probes and GitHub's deliveries need a handful.
pub const MAX_CONNECTIONS: usize = 256;

/// Serve until `shutdown` resolves, at most [`MAX_CONNECTIONS`] connections at once, each
/// closed when its headers take longer than [`HEADER_READ_TIMEOUT`]. Connections under way
/// finish their request at shutdown.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    webhook: Option<Arc<Webhook>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = TowerToHyperService::new(router(metrics, webhook));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (closing, closed) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(
                limit = MAX_CONNECTIONS,
                "too many connections: closing a new one"
            );
            continue; // dropped: closed at once
        };
        let service = service.clone();
        let mut closing = closing.subscribe();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended");
                    }
                }
                _ = closing.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(slot);
        });
    }
    drop(closed);
    let _ = closing.send(());
    // Wait for the connections under way (each holds a slot) to finish their request.
    let _all = slots.acquire_many(MAX_CONNECTIONS as u32).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::telemetry::ApiMetrics;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// The server on a loopback port, and a way to stop it.
    async fn started() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new(600, &ApiMetrics::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, metrics, None, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// What the server sends before it closes the connection (empty: closed without a word).
    async fn until_closed(c: &mut TcpStream) -> String {
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap_or_default();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_sending_its_headers_a_byte_at_a_time_is_disconnected() {
        let (addr, _stop) = started().await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let answer = until_closed(&mut slow).await;
        assert!(
            started.elapsed() <= HEADER_READ_TIMEOUT + Duration::from_secs(1),
            "closed after {:?}",
            started.elapsed()
        );
        assert!(
            !answer.contains("ok"),
            "no answer to an unfinished request: {answer}"
        );
        let mut fine = TcpStream::connect(addr).await.unwrap();
        fine.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(until_closed(&mut fine).await.ends_with("ok\n"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_beyond_the_limit_is_closed_and_the_others_are_served() {
        let (addr, stop) = started().await;
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0, "each of the first {MAX_CONNECTIONS} is served");
            held.push(c); // kept alive: each holds a slot
        }
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let _ = extra
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        assert_eq!(
            until_closed(&mut extra).await,
            "",
            "closed without an answer"
        );
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut again = TcpStream::connect(addr).await.unwrap();
        again
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(
            until_closed(&mut again).await.ends_with("ok\n"),
            "a freed slot serves again"
        );
        stop.send(()).unwrap();
    }
}
