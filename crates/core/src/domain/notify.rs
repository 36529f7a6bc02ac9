//! Notifications: what tugboat tells people where they already talk (Slack, or a system of
//! their own through a signed webhook), and the words and payloads it uses.
//!
//! A [`Notification`] names the state it belongs to (`key`: a kind, a service and an
//! environment) and the change that state went through (`change`: the merge, the candidate,
//! the PR head…). The daemon records the pair in its ledger before sending, so a change is
//! announced at most once however often the cycles see it, across restarts and replicas.
//! This module is pure: it renders payloads, and [`Filter`] chooses a sink's notifications.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A promotion merged, and Argo CD runs it Healthy.
    Promoted,
    /// The scan gate refused a new candidate.
    Blocked,
    /// A promotion PR's head waits for an approver.
    AwaitingApproval,
    /// A bad promotion was reverted, and the revert runs Healthy.
    RolledBack,
    /// An environment is held: a person changed it, or an approver said `/hold`.
    Held,
    /// The weekly rescan found new findings in a deployed image.
    NewFindings,
    /// A system tugboat depends on has failed every call for several cycles.
    Unhealthy,
    /// A test delivery (`tugboat doctor --send-test`): nothing happened. Not an event a sink
    /// can subscribe to ([`Kind::ALL`]); sent to every sink once, when asked.
    Test,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Promoted,
        Kind::Blocked,
        Kind::AwaitingApproval,
        Kind::RolledBack,
        Kind::Held,
        Kind::NewFindings,
        Kind::Unhealthy,
    ];

    /// The event's name in configuration, payloads and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Promoted => "promoted",
            Kind::Blocked => "blocked",
            Kind::AwaitingApproval => "awaiting_approval",
            Kind::RolledBack => "rolled_back",
            Kind::Held => "held",
            Kind::NewFindings => "new_findings",
            Kind::Unhealthy => "unhealthy",
            Kind::Test => "test",
        }
    }

    /// The kind named `s` (as in configuration).
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn emoji(self) -> &'static str {
        match self {
            Kind::Promoted => ":white_check_mark:",
            Kind::Blocked => ":no_entry:",
            Kind::AwaitingApproval => ":hourglass_flowing_sand:",
            Kind::RolledBack => ":rewind:",
            Kind::Held => ":raised_hand:",
            Kind::NewFindings => ":rotating_light:",
            Kind::Unhealthy => ":warning:",
            Kind::Test => ":wave:",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A link a person follows from the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub title: String,
    pub url: String,
}

/// One thing to tell people. Serialized as the ledger's outbox keeps it until every sink
/// has it (tugboat's own record, sealed; never a payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub kind: Kind,
    /// `None` for tugboat's own health.
    pub service: Option<String>,
    pub environment: Option<String>,
    /// What ran before, and what runs (or would run) now.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Why, in one or a few lines.
    pub reason: String,
    /// The PR, the Argo CD application, the advisories.
    pub pr: Option<Link>,
    pub application: Option<Link>,
    pub advisories: Vec<Link>,
    /// The state this belongs to; at most one change of it is announced at a time.
    pub key: String,
    /// The change: the same `change` under the same `key` is never announced twice.
    pub change: String,
}

/// One change to record as announced, with what to deliver when it is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub key: String,
    pub change: String,
    /// `None`: recorded only (a recovery), nothing to deliver.
    pub parcel: Option<Parcel>,
}

/// A notification in the ledger's outbox: kept until each sink it is owed to has it, so that
/// a process killed between recording a change and delivering it loses nothing (its
/// successor, or another replica, delivers it under the same delivery id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parcel {
    /// The delivery id: the same on every attempt and every redelivery.
    pub id: String,
    pub notification: Notification,
    /// The sinks that do not have it yet, by name.
    pub sinks: Vec<String>,
}

impl Notification {
    /// A notification of `kind` about `service` in `environment`, keyed by the three.
    pub fn new(kind: Kind, service: &str, environment: Option<&str>, change: String) -> Self {
        let key = match environment {
            Some(env) => format!("{kind}/{service}/{env}"),
            None => format!("{kind}/{service}"),
        };
        Self {
            kind,
            service: Some(service.to_owned()),
            environment: environment.map(str::to_owned),
            from: None,
            to: None,
            reason: String::new(),
            pr: None,
            application: None,
            advisories: Vec::new(),
            key,
            change,
        }
    }

    /// The headline: what happened to what, in plain words.
    pub fn title(&self) -> String {
        let service = self.service.as_deref().unwrap_or("tugboat");
        let env = self.environment.as_deref().unwrap_or("");
        match self.kind {
            Kind::Promoted => format!("{service} promoted to {env}"),
            Kind::Blocked => format!("{service} blocked by the scan gate in {env}"),
            Kind::AwaitingApproval => format!("{service} waits for approval in {env}"),
            Kind::RolledBack => format!("{service} rolled back in {env}"),
            Kind::Held => format!("{service} held in {env}"),
            Kind::NewFindings => format!("{service}: new findings in a deployed image"),
            Kind::Unhealthy => format!("tugboat cannot reach {service}"),
            Kind::Test => format!("a test notification from tugboat doctor to {service}"),
        }
    }

    /// `from → to`, when either is known.
    pub fn transition(&self) -> Option<String> {
        match (&self.from, &self.to) {
            (None, None) => None,
            (from, to) => Some(format!(
                "{} → {}",
                from.as_deref().unwrap_or("(none)"),
                to.as_deref().unwrap_or("(none)")
            )),
        }
    }

    fn links(&self) -> impl Iterator<Item = &Link> {
        self.pr
            .iter()
            .chain(self.application.iter())
            .chain(self.advisories.iter())
    }

    /// The generic webhook's JSON body. `id` names the delivery (the same on every retry);
    /// `sent_at` is RFC 3339.
    pub fn webhook_body(&self, id: &str, sent_at: &str) -> Value {
        json!({
            "id": id,
            "event": self.kind.as_str(),
            "title": self.title(),
            "service": self.service,
            "environment": self.environment,
            "from": self.from,
            "to": self.to,
            "reason": self.reason,
            "links": {
                "pull_request": self.pr.as_ref().map(|l| &l.url),
                "application": self.application.as_ref().map(|l| &l.url),
                "advisories": self.advisories.iter().map(|l| &l.url).collect::<Vec<_>>(),
            },
            "key": self.key,
            "change": self.change,
            "sent_at": sent_at,
        })
    }

    /// A Slack incoming webhook's message: Block Kit blocks, and `text` as the fallback that
    /// notifications and screen readers show.
    pub fn slack_message(&self) -> Value {
        let title = self.title();
        let mut blocks = vec![json!({
            "type": "header",
            "text": {"type": "plain_text", "text": clip(&title, 150), "emoji": true},
        })];
        let mut fields = Vec::new();
        if let Some(service) = &self.service {
            let label = if self.kind == Kind::Unhealthy {
                "System"
            } else {
                "Service"
            };
            fields.push(mrkdwn(&format!("*{label}*\n{}", escape(service))));
        }
        if let Some(env) = &self.environment {
            fields.push(mrkdwn(&format!("*Environment*\n{}", escape(env))));
        }
        if let Some(t) = self.transition() {
            fields.push(mrkdwn(&format!("*From → to*\n`{}`", escape(&t))));
        }
        if !fields.is_empty() {
            blocks.push(json!({"type": "section", "fields": fields}));
        }
        if !self.reason.is_empty() {
            let text = format!("{} {}", self.kind.emoji(), escape(&self.reason));
            blocks.push(json!({"type": "section", "text": mrkdwn(&clip(&text, 3000))}));
        }
        let buttons: Vec<Value> = self
            .links()
            .take(25)
            .enumerate()
            .map(|(i, l)| {
                json!({
                    "type": "button",
                    "action_id": format!("link-{i}"),
                    "text": {"type": "plain_text", "text": clip(&l.title, 75)},
                    "url": l.url,
                })
            })
            .collect();
        if !buttons.is_empty() {
            blocks.push(json!({"type": "actions", "elements": buttons}));
        }
        blocks.push(json!({
            "type": "context",
            "elements": [mrkdwn(&format!("tugboat · `{}`", escape(self.kind.as_str())))],
        }));
        json!({"text": format!("{} {}", self.kind.emoji(), title), "blocks": blocks})
    }
}

fn mrkdwn(text: &str) -> Value {
    json!({"type": "mrkdwn", "text": text})
}

/// Slack's three control characters, escaped as its documentation asks.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters (Block Kit's limits), an ellipsis marking a cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The advisories a gate's or a rescan's words name (`CVE-2024-1234`, `GHSA-xxxx-xxxx-xxxx`),
/// each once, in order, with the page that describes it.
pub fn advisories_in(text: &str) -> Vec<Link> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
    for word in words {
        let url = if is_cve(word) {
            format!("https://nvd.nist.gov/vuln/detail/{word}")
        } else if is_ghsa(word) {
            format!("https://github.com/advisories/{word}")
        } else {
            continue;
        };
        if seen.insert(word) {
            out.push(Link {
                title: word.to_owned(),
                url,
            });
        }
    }
    out
}

fn is_cve(w: &str) -> bool {
    let mut parts = w.split('-');
    parts.next() == Some("CVE")
        && parts
            .next()
            .is_some_and(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))
        && parts
            .next()
            .is_some_and(|n| n.len() >= 4 && n.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_none()
}

fn is_ghsa(w: &str) -> bool {
    let parts: Vec<&str> = w.split('-').collect();
    parts.len() == 4
        && parts[0] == "GHSA"
        && parts[1..]
            .iter()
            .all(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Which notifications a sink takes: by kind and by environment (empty: all). Tugboat's own
/// health has no environment and passes any environment filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub events: BTreeSet<Kind>,
    pub environments: BTreeSet<String>,
}

impl Filter {
    pub fn admits(&self, n: &Notification) -> bool {
        let kind = self.events.is_empty() || self.events.contains(&n.kind);
        let env = match &n.environment {
            None => true,
            Some(e) => self.environments.is_empty() || self.environments.contains(e),
        };
        kind && env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked() -> Notification {
        let mut n = Notification::new(
            Kind::Blocked,
            "user_service",
            Some("prod"),
            "1.4.0@sha256:ab".into(),
        );
        n.from = Some("1.3.0".into());
        n.to = Some("1.4.0".into());
        n.reason = "CVE-2024-3094 (CRITICAL) in xz-utils <5.6.2>; GHSA-abcd-1234-wxyz".into();
        n.advisories = advisories_in(&n.reason);
        n.application = Some(Link {
            title: "Argo CD".into(),
            url: "https://argocd.example/applications/argocd/user-prod".into(),
        });
        n
    }

    #[test]
    fn a_notification_is_keyed_by_its_kind_service_and_environment() {
        let n = blocked();
        assert_eq!(n.key, "blocked/user_service/prod");
        let health = Notification::new(Kind::Unhealthy, "github", None, "failing".into());
        assert_eq!(health.key, "unhealthy/github");
    }

    #[test]
    fn advisories_are_found_once_each_with_their_page_and_nothing_else_is() {
        let found = advisories_in(
            "CVE-2024-3094, CVE-2024-3094 and GHSA-abcd-1234-wxyz; CVE-24-1 CVE-2024-12 GHSA-ab-cd",
        );
        let urls: Vec<&str> = found.iter().map(|l| l.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://nvd.nist.gov/vuln/detail/CVE-2024-3094",
                "https://github.com/advisories/GHSA-abcd-1234-wxyz"
            ]
        );
    }

    #[test]
    fn a_filter_admits_by_kind_and_environment_and_health_passes_any_environment() {
        let f = Filter {
            events: [Kind::Blocked, Kind::Unhealthy].into(),
            environments: ["prod".to_owned()].into(),
        };
        assert!(f.admits(&blocked()));
        let mut dev = blocked();
        dev.environment = Some("dev".into());
        assert!(!f.admits(&dev));
        let promoted = Notification::new(Kind::Promoted, "user_service", Some("prod"), "x".into());
        assert!(!f.admits(&promoted));
        let health = Notification::new(Kind::Unhealthy, "github", None, "failing".into());
        assert!(f.admits(&health));
        assert!(Filter::default().admits(&dev));
    }

    #[test]
    fn the_slack_message_has_a_header_the_facts_the_reason_and_link_buttons() {
        let m = blocked().slack_message();
        assert_eq!(
            m["text"],
            ":no_entry: user_service blocked by the scan gate in prod"
        );
        let blocks = m["blocks"].as_array().unwrap();
        let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["header", "section", "section", "actions", "context"]
        );
        assert_eq!(
            blocks[1]["fields"][2]["text"],
            "*From → to*\n`1.3.0 → 1.4.0`"
        );
        // Slack's control characters are escaped in mrkdwn.
        assert!(
            blocks[2]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("xz-utils &lt;5.6.2&gt;")
        );
        let buttons: Vec<&str> = blocks[3]["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["url"].as_str().unwrap())
            .collect();
        assert_eq!(buttons.len(), 3, "{buttons:?}");
        assert!(buttons[0].starts_with("https://argocd.example/"));
    }

    #[test]
    fn block_kit_limits_are_kept_for_long_words() {
        let mut n = blocked();
        n.service = Some("s".repeat(400));
        n.reason = "r".repeat(5000);
        let m = n.slack_message();
        let header = m["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(header.chars().count(), 150);
        let reason = m["blocks"][2]["text"]["text"].as_str().unwrap();
        assert_eq!(reason.chars().count(), 3000);
    }

    #[test]
    fn the_webhook_body_carries_the_event_the_facts_and_the_links() {
        let b = blocked().webhook_body("d-1", "2026-12-02T10:00:00Z");
        assert_eq!(b["event"], "blocked");
        assert_eq!(b["id"], "d-1");
        assert_eq!(b["service"], "user_service");
        assert_eq!(b["to"], "1.4.0");
        assert_eq!(b["links"]["advisories"].as_array().unwrap().len(), 2);
        assert_eq!(b["links"]["pull_request"], Value::Null);
        assert_eq!(b["key"], "blocked/user_service/prod");
    }

    #[test]
    fn every_kind_reads_back_from_its_name() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{k}\""));
        }
        assert_eq!(Kind::parse("deployed"), None);
    }
}
