//! The doctor's checks of what a running tugboat uses besides the four systems: the event
//! queue, the leader election's Lease, and the notification sinks (a test delivery to each,
//! only when asked).

use tugboat_core::domain::doctor::{Finding, Level};
use tugboat_core::domain::notify::{Kind, Notification};

use crate::adapters::{aws as sdk, lease::KubeLease, sqs::Sqs};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::ports::{Election, ErrorKind, EventQueue};
use crate::telemetry::ApiMetrics;

/// The event queue answers (GetQueueAttributes: reading it changes nothing).
pub(super) async fn events(cfg: &Config, api: &ApiMetrics) -> Vec<Finding> {
    let Some(events) = &cfg.events else {
        return Vec::new();
    };
    let conf = sdk::sdk_config(&cfg.aws).await;
    let queue = Sqs::new(&conf, &events.queue_url, api);
    vec![match queue.depth().await {
        Ok(n) => Finding::ok(
            "events",
            &events.queue_url,
            format!("the queue answers; {n} message(s) waiting"),
        ),
        Err(e) => Finding::new(
            Level::Error,
            "events",
            &events.queue_url,
            format!("the queue cannot be read: {}", e.message),
            "check events.queue_url and give tugboat's role sqs:ReceiveMessage, sqs:DeleteMessage and sqs:GetQueueAttributes on it",
        ),
    }]
}

/// The Lease can be read (its RBAC), when election is on.
pub(super) async fn election(cfg: &Config, api: &ApiMetrics) -> Vec<Finding> {
    let Some(e) = &cfg.election else {
        return Vec::new();
    };
    let at = format!("lease {}/{}", e.namespace, e.lease);
    let client = match KubeLease::client(e.api_url.as_deref()).await {
        Ok(c) => c,
        Err(err) => {
            return vec![Finding::new(
                Level::Warning,
                "election",
                at,
                format!(
                    "the Kubernetes API cannot be reached from here: {}",
                    err.message
                ),
                "run the doctor in the cluster (the chart's doctor.enabled) to check the Lease's RBAC",
            )];
        }
    };
    let lease = KubeLease::new(client, &e.namespace, &e.lease, api);
    vec![match lease.read().await {
        Ok(found) => Finding::ok(
            "election",
            at,
            match found {
                Some(_) => "readable",
                None => "readable; it does not exist yet (the first replica creates it)",
            },
        ),
        Err(err) => Finding::new(
            Level::Error,
            "election",
            at,
            err.message.clone(),
            match err.kind {
                ErrorKind::Denied => {
                    "give the ServiceAccount a Role with get, create and update on leases (the chart's and the kustomize base's rbac.yaml)"
                }
                _ => "check election.namespace and the API server",
            },
        ),
    }]
}

/// Each sink's secrets were read by the secrets' check; with `send_test`, each gets one test
/// notification, and its answer is the finding.
pub(super) async fn sinks(cfg: &Config, send_test: bool) -> Vec<Finding> {
    let Some(notify) = &cfg.notify else {
        return Vec::new();
    };
    if !send_test {
        return notify
            .sinks
            .iter()
            .map(|s| {
                Finding::ok(
                    "notify",
                    &s.name,
                    "configured; not sent to (`--send-test` delivers a test notification)",
                )
            })
            .collect();
    }
    let routes = match crate::app::notification_routes(cfg).await {
        Ok(r) => r,
        Err(e) => {
            return vec![Finding::new(
                Level::Error,
                "notify",
                "(sinks)",
                format!("{e:#}"),
                "make the sinks' URLs and secrets readable",
            )];
        }
    };
    let now = SystemClock.now();
    let mut out = Vec::new();
    for r in routes {
        let name = r.sink.name().to_owned();
        let mut n = Notification::new(Kind::Test, &name, None, now.to_rfc3339());
        n.reason = "tugboat doctor --send-test: a test delivery; nothing happened".to_owned();
        let id = format!("doctor-{}-{name}", now.timestamp());
        out.push(match r.sink.send(&n, &id, now).await {
            Ok(()) => Finding::ok("notify", &name, "a test notification was delivered"),
            Err(e) => Finding::new(
                Level::Error,
                "notify",
                &name,
                format!("the test notification was not delivered: {}", e.message),
                "check the sink's URL (and its secret) and that its receiver accepts tugboat's deliveries",
            ),
        });
    }
    out
}
