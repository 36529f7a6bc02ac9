//! The doctor's checks of what a running tugboat uses besides the four systems: the event
//! queue, the leader election's Lease, and the notification sinks (a test delivery to each,
//! only when asked).

use std::collections::BTreeSet;

use futures_util::StreamExt as _;
use tugboat_core::domain::doctor::rules::{self, Coverage, EventKind, EventRule};
use tugboat_core::domain::doctor::{self, Finding, Level};
use tugboat_core::domain::notify::{Kind, Notification};

use crate::adapters::{eventbridge::EventBridge, lease::KubeLease, sqs::Sqs};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::ports::{Election, ErrorKind, EventQueue, PortError};
use crate::telemetry::ApiMetrics;

/// How many TestEventPattern calls are in flight at once: a fleet of hundreds of repositories
/// is asked within the doctor's bound, and throttling slows the SDK's adaptive retries down.
const PARALLEL_TESTS: usize = 8;

/// The event queue answers, its access policy lets EventBridge send to it
/// (GetQueueAttributes: reading it changes nothing), and the EventBridge rules that target it
/// match the pushes and finished scans of the watched repositories under the registry's
/// `scan_type` (`None`: not known).
pub(super) async fn events(
    cfg: &Config,
    conf: &aws_config::SdkConfig,
    api: &ApiMetrics,
    scan_type: Option<&str>,
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
    let (receives, arn) = match queue.policy_and_arn().await {
        Ok((policy, arn)) => (
            doctor::queue_policy(&events.queue_url, policy.as_deref()),
            arn,
        ),
        Err(e) => (
            Finding::new(
                Level::Warning,
                "events",
                &events.queue_url,
                format!("its access policy cannot be read: {}", e.message),
                "give tugboat's role sqs:GetQueueAttributes on it, or check by hand that EventBridge may send to it",
            ),
            None,
        ),
    };
    let mut out = vec![depth, receives];
    if let Some(arn) = arn {
        let bus = EventBridge::new(conf, api);
        out.extend(event_rules(cfg, &bus, &events.queue_url, &arn, scan_type).await);
    }
    out
}

/// The rules of the default bus that send to the queue `arn`, and which watched repositories'
/// events they match (the repositories of the queue's account: another account's registry
/// sends its events to that account's bus).
async fn event_rules(
    cfg: &Config,
    bus: &EventBridge,
    queue_url: &str,
    arn: &str,
    scan_type: Option<&str>,
) -> Vec<Finding> {
    let cannot = |e: &PortError| {
        let fix = if e.kind == ErrorKind::Denied {
            "give tugboat's role events:ListRuleNamesByTarget, events:DescribeRule and events:TestEventPattern (manifests/iam-policy.json), or check by hand that the rules of manifests/aws/events.cfn.yaml send to this queue"
        } else {
            "`tugboat doctor` again; or check by hand that the rules of manifests/aws/events.cfn.yaml send to this queue"
        };
        vec![Finding::new(
            Level::Warning,
            "events",
            queue_url,
            format!("its EventBridge rules cannot be checked: {e}"),
            fix,
        )]
    };
    let Some((region, account)) = rules::queue_home(arn) else {
        return vec![Finding::new(
            Level::Warning,
            "events",
            queue_url,
            format!("its ARN '{arn}' is not an SQS queue's: its EventBridge rules are not checked"),
            "check events.queue_url",
        )];
    };
    let rules = match bus.rules_targeting(arn).await {
        Ok(r) => r,
        Err(e) => return cannot(&e),
    };
    let repositories: BTreeSet<String> = cfg
        .services
        .iter()
        .filter(|s| {
            s.registry_id
                .as_deref()
                .or(cfg.aws.registry_id.as_deref())
                .is_none_or(|r| r == account)
        })
        .map(|s| s.repository.clone())
        .collect();
    if repositories.is_empty() {
        return vec![Finding::ok(
            "events",
            queue_url,
            format!(
                "no watched repository is in the queue's account {account}: their events reach their own account's bus, whose rules are not checked here"
            ),
        )];
    }
    let mut coverage = Vec::new();
    for kind in EventKind::to_test(scan_type) {
        let home = (account.as_str(), region.as_str());
        match unmatched(bus, &rules, kind, &repositories, home).await {
            Ok(unmatched) => coverage.push(Coverage { kind, unmatched }),
            Err(e) => return cannot(&e),
        }
    }
    rules::event_rules(queue_url, &rules, repositories.len(), &coverage)
}

/// The repositories whose event of `kind` no enabled rule matches, asking EventBridge
/// (TestEventPattern) per repository only for a pattern that names a repository field.
async fn unmatched(
    bus: &EventBridge,
    rules: &[EventRule],
    kind: EventKind,
    repositories: &BTreeSet<String>,
    (account, region): (&str, &str),
) -> Result<BTreeSet<String>, PortError> {
    let mut left = repositories.clone();
    for rule in rules.iter().filter(|r| r.enabled) {
        let Some(pattern) = rule.pattern.as_deref() else {
            continue;
        };
        let per_repository = rules::names_repositories(pattern);
        let ask: Vec<String> = if per_repository {
            left.iter().cloned().collect()
        } else {
            left.iter().take(1).cloned().collect()
        };
        let answers = futures_util::stream::iter(ask)
            .map(|repo| async move {
                let event = rules::sample_event(kind, &repo, account, region);
                (repo, bus.matches(pattern, &event).await)
            })
            .buffer_unordered(PARALLEL_TESTS)
            .collect::<Vec<_>>()
            .await;
        for (repo, answer) in answers {
            match answer {
                Ok(true) if per_repository => {
                    left.remove(&repo);
                }
                Ok(true) => left.clear(),
                Ok(false) => {}
                Err(e) => {
                    let rule = &rule.name;
                    let message = format!("rule {rule}: {}", e.message);
                    return Err(PortError::new(e.system, e.operation, e.kind, message));
                }
            }
        }
    }
    Ok(left)
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
