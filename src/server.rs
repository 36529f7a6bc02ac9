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
use prometheus_client::metrics::histogram::Histogram;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabels {
    pub severity: String,
}

/// The rescan's metrics.
#[derive(Clone)]
pub struct RescanMetrics {
    /// Rescans by result (`ok`, `partial`: some image or service failed, `error`).
    pub runs: Family<CycleLabels, Counter>,
    pub images: Counter,
    pub new_findings: Family<SeverityLabels, Counter>,
    pub duration: Family<CycleLabels, Histogram, fn() -> Histogram>,
    pub last_success: Gauge<i64, AtomicI64>,
}

fn rescan_buckets() -> Histogram {
    // From seconds (a handful of images already scanned today) to the 30-minute default wait.
    Histogram::new([1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0])
}

impl RescanMetrics {
    fn new() -> Self {
        Self {
            runs: Family::default(),
            images: Counter::default(),
            new_findings: Family::default(),
            duration: Family::new_with_constructor(rescan_buckets),
            last_success: Gauge::default(),
        }
    }

    /// Record a finished rescan, or a failed one (`report` is `None`).
    pub fn record(&self, report: Option<&crate::engine::rescan::RescanReport>, now: i64) {
        let result = match report {
            None => "error",
            Some(r) if r.failed() => "partial",
            Some(_) => "ok",
        };
        let labels = CycleLabels {
            result: result.into(),
        };
        self.runs.get_or_create(&labels).inc();
        let Some(r) = report else { return };
        self.duration
            .get_or_create(&labels)
            .observe(r.duration.as_secs_f64());
        self.images.inc_by(r.images as u64);
        for (sev, n) in &r.new_findings {
            self.new_findings
                .get_or_create(&SeverityLabels {
                    severity: sev.as_str().to_owned(),
                })
                .inc_by(*n);
        }
        if result == "ok" {
            self.last_success.set(now);
        }
    }
}

/// The metrics tugboat exports.
pub struct Metrics {
    registry: Registry,
    pub cycles: Family<CycleLabels, Counter>,
    pub decisions: Family<OutcomeLabels, Counter>,
    pub last_success: Gauge<i64, AtomicI64>,
    pub rescan: RescanMetrics,
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
        let rescan = RescanMetrics::new();
        registry.register(
            "rescans",
            "Rescans of deployed images by result",
            rescan.runs.clone(),
        );
        registry.register(
            "rescan_images",
            "Deployed images (distinct digests) rescanned",
            rescan.images.clone(),
        );
        registry.register(
            "rescan_new_findings",
            "Findings new since the last rescan, by severity",
            rescan.new_findings.clone(),
        );
        registry.register_with_unit(
            "rescan_duration",
            "How long rescans took, by result",
            prometheus_client::registry::Unit::Seconds,
            rescan.duration.clone(),
        );
        registry.register(
            "last_successful_rescan_timestamp_seconds",
            "When the last rescan finished with every image and issue handled",
            rescan.last_success.clone(),
        );
        Self {
            registry,
            cycles,
            decisions,
            last_success,
            rescan,
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
