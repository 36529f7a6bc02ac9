//! tugboat's HTTP server: `/healthz`, `/readyz` and `/metrics` (Prometheus text).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::telemetry::ApiMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub service: String,
    pub environment: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CycleLabels {
    pub result: String,
}

/// The metrics tugboat exports.
pub struct Metrics {
    registry: Registry,
    pub cycles: Family<CycleLabels, Counter>,
    pub decisions: Family<OutcomeLabels, Counter>,
    pub last_success: Gauge<i64, AtomicI64>,
    /// Seconds since the epoch of the last finished cycle (for readiness).
    pub last_cycle: AtomicI64,
    pub max_cycle_age_secs: i64,
}

impl Metrics {
    /// The metrics, with the adapters' API counters `api` registered beside them.
    pub fn new(max_cycle_age_secs: i64, api: &ApiMetrics) -> Self {
        let mut registry = Registry::with_prefix("tugboat");
        api.register(&mut registry);
        let cycles = Family::<CycleLabels, Counter>::default();
        let decisions = Family::<OutcomeLabels, Counter>::default();
        let last_success = Gauge::<i64, AtomicI64>::default();
        registry.register("cycles", "Reconcile cycles by result", cycles.clone());
        registry.register(
            "decisions",
            "Per-environment decisions by outcome",
            decisions.clone(),
        );
        registry.register(
            "last_successful_cycle_timestamp_seconds",
            "When the last cycle finished without a global error",
            last_success.clone(),
        );
        Self {
            registry,
            cycles,
            decisions,
            last_success,
            last_cycle: AtomicI64::new(0),
            max_cycle_age_secs,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(metrics)
}

async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    let last = m.last_cycle.load(Ordering::Relaxed);
    let age = chrono::Utc::now().timestamp() - last;
    let (code, body) = if last == 0 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ready": false, "failing": "first cycle has not finished"}),
        )
    } else if age > m.max_cycle_age_secs {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ready": false, "failing": format!("last cycle finished {age}s ago")}),
        )
    } else {
        (
            StatusCode::OK,
            serde_json::json!({"ready": true, "last_cycle_age_seconds": age}),
        )
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
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown)
        .await
}
