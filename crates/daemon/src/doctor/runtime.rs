//! The doctor's checks of what a running tugboat uses besides the four systems: the event
//! queue, the leader election's Lease, and the notification sinks (a test delivery to each,
//! only when asked).

use tugboat_core::domain::doctor::{self, Finding, Level};
use tugboat_core::domain::notify::{Kind, Notification};

use crate::adapters::{lease::KubeLease, sqs::Sqs};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::ports::{Election, ErrorKind, EventQueue};
use crate::telemetry::ApiMetrics;

/// The event queue answers, and its access policy lets EventBridge send to it
/// (GetQueueAttributes: reading it changes nothing).
pub(super) async fn events(
    cfg: &Config,
    conf: &aws_config::SdkConfig,
    api: &ApiMetrics,
) -> Vec<Finding> {
    let Some(events) = &cfg.events else {
        return Vec::new();
    };
    let queue = Sqs::new(conf, &events.queue_url, api);
    let depth = match queue.depth().await {
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
    };
    if depth.level == Level::Error {
        return vec![depth];
    }
    let receives = match queue.policy().await {
        Ok(policy) => doctor::queue_policy(&events.queue_url, policy.as_deref()),
        Err(e) => Finding::new(
            Level::Warning,
            "events",
            &events.queue_url,
            format!("its access policy cannot be read: {}", e.message),
            "give tugboat's role sqs:GetQueueAttributes on it, or check by hand that EventBridge may send to it",
        ),
    };
    vec![depth, receives]
}

/// The Lease can be read, created and updated (its RBAC), when election is on.
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
    let lease = KubeLease::new(client.clone(), &e.namespace, &e.lease, api);
    let read = lease.read().await;
    let mut denied = Vec::new();
    for verb in ["create", "update"] {
        match KubeLease::may(client.clone(), &e.namespace, &e.lease, verb, api).await {
            Ok(true) => {}
            Ok(false) => denied.push(verb),
            Err(err) => {
                return vec![Finding::new(
                    Level::Error,
                    "election",
                    at,
                    format!("whether it may be written cannot be asked: {}", err.message),
                    "check the API server (a SelfSubjectAccessReview, as `kubectl auth can-i` makes)",
                )];
            }
        }
    }
    if !denied.is_empty() && read.is_ok() {
        return vec![Finding::new(
            Level::Error,
            "election",
            &at,
            format!(
                "readable, but the ServiceAccount may not {} it: no replica can lead, so none promotes",
                denied.join(" or ")
            ),
            "give the ServiceAccount a Role with get, create and update on leases (the chart's and the kustomize base's rbac.yaml)",
        )];
    }
    vec![match read {
        Ok(found) => Finding::ok(
            "election",
            at,
            match found {
                Some(_) => "readable, and may be created and updated",
                None => {
                    "readable, and may be created and updated; it does not exist yet (the first replica creates it)"
                }
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
