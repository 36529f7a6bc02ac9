//! The `[notify]` and `[events]` sections: where announcements go, and the event queue that wakes tugboat.

use super::*;

/// `[notify]`: where people hear what happened.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub(super) unhealthy_after: Option<u32>,
    pub(super) attempts: Option<u32>,
    #[serde(default)]
    pub(super) sinks: std::collections::BTreeMap<String, RawSink>,
}

/// `[notify.sinks.<name>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    pub(super) kind: SinkKind,
    pub(super) url: SecretRef,
    pub(super) secret: Option<SecretRef>,
    pub(super) events: Option<Vec<String>>,
    pub(super) environments: Option<Vec<String>>,
}

/// What a notification sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// A Slack incoming webhook (Block Kit).
    Slack,
    /// A JSON webhook, signed with HMAC-SHA256.
    Webhook,
}

/// Notifications: the sinks, and when tugboat calls itself unhealthy.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Cycles in a row in which a system failed every call before `unhealthy` is sent.
    pub unhealthy_after: u32,
    /// Delivery attempts per notification and sink (backing off 1 s, 2 s, 4 s… up to a minute).
    pub attempts: u32,
    pub sinks: Vec<SinkConfig>,
}

/// One sink: what it speaks, where (a secret: a Slack webhook URL is a credential), its
/// signing secret (webhooks), and which notifications it takes.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    pub url: SecretRef,
    pub secret: Option<SecretRef>,
    pub filter: crate::domain::notify::Filter,
}

pub(super) fn notify(
    raw: RawNotify,
    services: &[RawService],
    f: &Fields<'_>,
) -> Result<Option<NotifyConfig>, ConfigError> {
    let unhealthy_after = raw.unhealthy_after.unwrap_or(3);
    if unhealthy_after == 0 {
        return Err(f.err("notify.unhealthy_after", "must be at least 1 (cycles)"));
    }
    let attempts = raw.attempts.unwrap_or(5);
    if !(1..=20).contains(&attempts) {
        return Err(f.err(
            "notify.attempts",
            format!("{attempts} is not between 1 and 20"),
        ));
    }
    if raw.sinks.is_empty() {
        return Ok(None);
    }
    let environments: BTreeSet<&str> = services
        .iter()
        .flat_map(|s| s.environments.iter().map(|e| e.name.as_str()))
        .collect();
    let sinks = raw
        .sinks
        .into_iter()
        .map(|(name, sink)| self::sink(name, sink, &environments, f))
        .collect::<Result<_, _>>()?;
    Ok(Some(NotifyConfig {
        unhealthy_after,
        attempts,
        sinks,
    }))
}

pub(super) fn sink(
    name: String,
    raw: RawSink,
    environments: &BTreeSet<&str>,
    f: &Fields<'_>,
) -> Result<SinkConfig, ConfigError> {
    use crate::domain::notify::{Filter, Kind};
    let at = |field: &str| format!("notify.sinks.{name}.{field}");
    if !valid_name(&name) || name.len() > 40 {
        return Err(f.err(
            &format!("notify.sinks.{name}"),
            "a sink's name must be at most 40 letters, digits, '_' or '-'",
        ));
    }
    match (raw.kind, &raw.secret) {
        (SinkKind::Webhook, None) => {
            return Err(f.err(
                &at("secret"),
                "a webhook sink signs what it sends: give its secret (e.g. { env = \"NAME\" })",
            ));
        }
        (SinkKind::Slack, Some(_)) => {
            return Err(f.err(
                &at("secret"),
                "a Slack sink has no signing secret (its URL is the credential)",
            ));
        }
        _ => {}
    }
    let mut filter = Filter::default();
    for e in raw.events.unwrap_or_default() {
        let kind = Kind::parse(&e).ok_or_else(|| {
            let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            f.err(
                &at("events"),
                format!("'{e}' is not one of: {}", all.join(", ")),
            )
        })?;
        filter.events.insert(kind);
    }
    for env in raw.environments.unwrap_or_default() {
        if !environments.contains(env.as_str()) {
            let known: Vec<&str> = environments.iter().copied().collect();
            return Err(f.err(
                &at("environments"),
                format!(
                    "'{env}' is no service's environment (known: {})",
                    known.join(", ")
                ),
            ));
        }
        filter.environments.insert(env);
    }
    Ok(SinkConfig {
        name,
        kind: raw.kind,
        url: raw.url,
        secret: raw.secret,
        filter,
    })
}

/// `[events]`: ECR and Inspector events from an SQS queue that EventBridge rules fill.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    pub(super) queue_url: Option<String>,
    pub(super) accounts: Option<Vec<String>>,
}

/// The event queue: where ECR pushes and scans arrive within seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    pub queue_url: String,
    /// The AWS accounts whose events are believed (the queue's own and the configured
    /// registries', unless listed); an event from any other is dropped.
    pub accounts: std::collections::BTreeSet<String>,
}

pub(super) fn events(
    raw: RawEvents,
    aws: &RawAws,
    services: &[RawService],
    f: &Fields<'_>,
) -> Result<Option<EventsConfig>, ConfigError> {
    let Some(queue_url) = raw.queue_url else {
        if raw.accounts.is_some() {
            return Err(f.err(
                "events.accounts",
                "given without events.queue_url".to_owned(),
            ));
        }
        return Ok(None);
    };
    f.http_url("events.queue_url", &queue_url)?;
    // https://sqs.<region>.amazonaws.com/<account>/<name>
    let owner = queue_url
        .split('/')
        .nth(3)
        .filter(|a| aws_account(a) && queue_url.split('/').nth(4).is_some_and(|n| !n.is_empty()))
        .ok_or_else(|| {
            f.err(
                "events.queue_url",
                format!("'{queue_url}' is not a queue URL of the form https://sqs.<region>.amazonaws.com/<account>/<queue>"),
            )
        })?;
    let accounts = match raw.accounts {
        Some(list) => {
            if let Some(bad) = list.iter().find(|a| !aws_account(a)) {
                return Err(f.err(
                    "events.accounts",
                    format!("'{bad}' is not a 12-digit AWS account id"),
                ));
            }
            list.into_iter().collect()
        }
        None => std::iter::once(owner.to_owned())
            .chain(aws.registry_id.iter().cloned())
            .chain(services.iter().filter_map(|s| s.registry_id.clone()))
            .collect(),
    };
    Ok(Some(EventsConfig {
        queue_url,
        accounts,
    }))
}
