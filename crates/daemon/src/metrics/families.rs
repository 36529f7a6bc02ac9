//! The label sets and the metric families `Metrics` registers: delivery (DORA), rescans,
//! events and notifications, each with its buckets.

use super::*;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HoldLabels {
    pub service: String,
    pub environment: String,
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceEnvLabels {
    pub service: String,
    pub environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub service: String,
    pub environment: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabels {
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    pub service: String,
    pub environment: String,
    /// A severity over its threshold, or `UNSCANNED` for an image without a usable scan.
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The engine step that failed (`propose`, `merge`, …).
    pub step: String,
    /// Why: the outside system's failure kind, or the engine's own reason.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvLabels {
    pub environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    pub environment: String,
    /// `healthy`, or `failed`: it did not become Healthy.
    pub result: String,
}

pub(super) type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub(super) fn lead_time_buckets() -> Histogram {
    // From a push promoted at once (minutes) to one that waited for a soak, an approval and
    // a window (days, weeks).
    Histogram::new([
        300.0,
        900.0,
        1800.0,
        3600.0,
        4.0 * 3600.0,
        12.0 * 3600.0,
        86400.0,
        3.0 * 86400.0,
        7.0 * 86400.0,
        30.0 * 86400.0,
    ])
}

pub(super) fn restore_buckets() -> Histogram {
    // An automatic rollback restores in minutes; one a person asks for, in hours.
    Histogram::new([
        60.0,
        120.0,
        300.0,
        600.0,
        1800.0,
        3600.0,
        4.0 * 3600.0,
        86400.0,
    ])
}

/// DORA's four delivery figures, from what tugboat sees: deployments (their frequency),
/// lead time from push to Healthy, change failures (rollbacks ÷ deployments) and time to
/// restore. Each merged change counts once, when its verification ends (Healthy or not), in
/// whichever cycle or process ends it; Prometheus' `increase()` carries them over restarts.
#[derive(Clone)]
pub struct DeliveryMetrics {
    pub deployments: Family<DeploymentLabels, Counter>,
    pub rollbacks: Family<EnvLabels, Counter>,
    pub lead_time: Histograms<EnvLabels>,
    pub time_to_restore: Histograms<EnvLabels>,
}

impl DeliveryMetrics {
    pub(super) fn new(registry: &mut Registry) -> Self {
        let m = Self {
            deployments: Family::default(),
            rollbacks: Family::default(),
            lead_time: Family::new_with_constructor(lead_time_buckets),
            time_to_restore: Family::new_with_constructor(restore_buckets),
        };
        registry.register(
            "deployments",
            "Promotions merged and verified, by environment and result (healthy, failed); rollbacks not included",
            m.deployments.clone(),
        );
        registry.register(
            "rollbacks",
            "Rollbacks merged and verified, by environment (change failure rate: these ÷ deployments)",
            m.rollbacks.clone(),
        );
        registry.register_with_unit(
            "lead_time",
            "From an image's push to Argo CD running it Healthy, by environment",
            Unit::Seconds,
            m.lead_time.clone(),
        );
        registry.register_with_unit(
            "time_to_restore",
            "From a failure detected (tugboat marking the promotion bad) to its rollback running Healthy, by environment",
            Unit::Seconds,
            m.time_to_restore.clone(),
        );
        m
    }

    /// Count a merged change whose verification ended (an `Unknown` one is verified again
    /// and counted then).
    pub(super) fn record(&self, environment: &str, action: &Action) {
        let env = EnvLabels {
            environment: environment.to_owned(),
        };
        let (verification, timing, rollback) = match action {
            Action::Merged {
                verification,
                timing,
                ..
            } => (verification, timing, false),
            Action::RolledBack {
                verification,
                timing,
                promotion,
                ..
            } => {
                if promotion.is_some() {
                    self.deployment(environment, "failed");
                }
                (verification, timing, true)
            }
            _ => return,
        };
        let healthy = match verification {
            Verification::Healthy { .. } => true,
            Verification::Failed { .. } => false,
            Verification::Unknown { .. } | Verification::Paused { .. } => return,
        };
        let took = timing
            .since
            .map(|since| (timing.verified_at - since).num_milliseconds().max(0) as f64 / 1000.0);
        if rollback {
            self.rollbacks.get_or_create(&env).inc();
            if let (true, Some(secs)) = (healthy, took) {
                self.time_to_restore.get_or_create(&env).observe(secs);
            }
            return;
        }
        self.deployment(environment, if healthy { "healthy" } else { "failed" });
        if let (true, Some(secs)) = (healthy, took) {
            self.lead_time.get_or_create(&env).observe(secs);
        }
    }

    pub(super) fn deployment(&self, environment: &str, result: &str) {
        self.deployments
            .get_or_create(&DeploymentLabels {
                environment: environment.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }
}

pub(super) fn cycle_buckets() -> Histogram {
    Histogram::new([0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0])
}

pub(super) fn push_to_pr_buckets() -> Histogram {
    // Minutes to days: an image waits for its scan, a soak or a window before its PR.
    Histogram::new([
        60.0,
        300.0,
        900.0,
        3600.0,
        4.0 * 3600.0,
        86400.0,
        7.0 * 86400.0,
    ])
}

pub(super) fn merge_to_healthy_buckets() -> Histogram {
    Histogram::new([5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0])
}

pub(super) fn rescan_buckets() -> Histogram {
    // From seconds (everything already scanned today) to the 30-minute default wait.
    Histogram::new([1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0])
}

/// The rescan's metrics.
#[derive(Clone)]
pub struct RescanMetrics {
    /// Rescans by result (`ok`, `partial`: some image or service failed, `error`).
    pub runs: Family<ResultLabels, Counter>,
    pub images: Counter,
    pub new_findings: Family<SeverityLabels, Counter>,
    pub duration: Histograms<ResultLabels>,
    pub last_success: Gauge<i64, AtomicI64>,
}

impl RescanMetrics {
    pub(super) fn new(registry: &mut Registry) -> Self {
        let m = Self {
            runs: Family::default(),
            images: Counter::default(),
            new_findings: Family::default(),
            duration: Family::new_with_constructor(rescan_buckets),
            last_success: Gauge::default(),
        };
        registry.register(
            "rescans",
            "Rescans of deployed images by result",
            m.runs.clone(),
        );
        registry.register(
            "rescan_images",
            "Deployed images (distinct digests) rescanned",
            m.images.clone(),
        );
        registry.register(
            "rescan_new_findings",
            "Findings new since the last rescan, by severity",
            m.new_findings.clone(),
        );
        registry.register_with_unit(
            "rescan_duration",
            "How long rescans took, by result",
            Unit::Seconds,
            m.duration.clone(),
        );
        registry.register(
            "last_successful_rescan_timestamp_seconds",
            "When the last rescan finished with every image and issue handled",
            m.last_success.clone(),
        );
        m
    }

    /// Record a finished rescan, or a failed one (`report` is `None`).
    pub fn record(&self, report: Option<&RescanReport>, now: i64) {
        let result = match report {
            None => "error",
            Some(r) if r.failed() => "partial",
            Some(_) => "ok",
        };
        let labels = ResultLabels {
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

/// Labels of an event message's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventOutcomeLabels {
    pub outcome: String,
}

/// The event queue's metrics (`[events]`).
#[derive(Clone, Default)]
pub struct EventMetrics {
    /// Messages by outcome: `wake`, `duplicate`, `stale`, `unwatched`, `foreign`, `unused`,
    /// `malformed`, `oversized`.
    pub messages: Family<EventOutcomeLabels, Counter>,
    /// 1 while the queue answers, 0 while tugboat backs off from it (polling carries on).
    pub queue_up: Gauge,
    /// Reconciles of some services only, woken by events or webhooks.
    pub scoped_cycles: Counter,
}

impl EventMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "event_messages",
            "Event queue messages by outcome (only `wake` woke a service)",
            self.messages.clone(),
        );
        registry.register(
            "event_queue_up",
            "Whether the event queue answered the last receive (1) or is backed off from (0)",
            self.queue_up.clone(),
        );
        registry.register(
            "scoped_cycles",
            "Reconciles of only the services an event or a webhook concerned",
            self.scoped_cycles.clone(),
        );
    }

    /// Count a message's outcome.
    pub fn outcome(&self, outcome: &str) {
        self.messages
            .get_or_create(&EventOutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// Labels of a notification's outcome at one sink.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub sink: String,
    pub event: String,
    pub result: String,
}

/// Labels of one sink.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

/// The notifications' metrics (`[notify]`).
#[derive(Clone, Default)]
pub struct NotifyMetrics {
    /// Per sink and event: `sent`, `failed` (every attempt failed, or the sink refused it),
    /// `dropped` (never tried: the ledger could not record it, or the queue was full).
    pub notifications: Family<NotificationLabels, Counter>,
    /// Delivery attempts after a failed one, per sink.
    pub retries: Family<SinkLabels, Counter>,
}

impl NotifyMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "notifications",
            "Notifications per sink and event, by result (sent, failed after every attempt, dropped unsent)",
            self.notifications.clone(),
        );
        registry.register(
            "notification_retries",
            "Notification delivery attempts that retried a failed one, per sink",
            self.retries.clone(),
        );
    }

    /// Count a notification's `result` at `sink`.
    pub fn count(&self, sink: &str, event: &str, result: &str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                sink: sink.to_owned(),
                event: event.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }
}
