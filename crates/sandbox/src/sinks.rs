//! Notification sinks on loopback: a Slack-compatible incoming webhook and a generic webhook
//! that checks tugboat's signature, both recording what they received for
//! `GET /_sandbox/notifications` (served on the GitHub stand-in's address).
//!
//! The Slack stand-in answers as Slack does: `200 ok`, or `400` with Slack's error word
//! (`invalid_payload`, `no_text`, `invalid_blocks`) when a message breaks Block Kit's
//! documented limits; an unknown hook path is `404 no_service`. The webhook stand-in answers
//! `401` to a missing or wrong signature (and still records the attempt, unverified). Either
//! can be told to fail the next N deliveries (`POST /_sandbox/notifications/fail`), to test
//! retries.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use tugboat::clock::Clock;

use crate::SandboxClock;

/// The Slack stand-in's hook path (the shape of Slack's `/services/T…/B…/…`).
pub const SLACK_HOOK: &str = "/services/T0SANDBOX/B0SANDBOX/sandbox";

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `slack` or `webhook`.
    pub sink: &'static str,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The answer's status.
    pub status: u16,
    /// The webhook's `X-Tugboat-Event` and whether its signature verified.
    pub event: Option<String>,
    pub verified: Option<bool>,
    pub body: Value,
}

impl Received {
    fn json(&self) -> Value {
        json!({
            "sink": self.sink,
            "at": self.at.to_rfc3339(),
            "status": self.status,
            "event": self.event,
            "verified": self.verified,
            "body": self.body,
        })
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Per sink: how many more deliveries to fail, and with which status.
    failing: Vec<(&'static str, u32, u16)>,
}

/// Both sinks and what they received.
#[derive(Clone)]
pub struct Sinks {
    inner: Arc<Mutex<Inner>>,
    secret: String,
    clock: SandboxClock,
}

impl Sinks {
    /// Sinks whose webhook checks signatures made with `secret`.
    pub fn new(secret: &str, clock: SandboxClock) -> Self {
        Self {
            inner: Arc::default(),
            secret: secret.to_owned(),
            clock,
        }
    }

    /// The secret the webhook stand-in checks signatures with.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The sinks' own endpoints: `POST /services/…` (Slack) and `POST /webhook`.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/services/{team}/{bot}/{key}", post(slack))
            .route("/webhook", post(webhook))
            .with_state(self.clone())
    }

    /// The inspection endpoints, for the GitHub stand-in's address.
    pub fn inspect_router(&self) -> axum::Router {
        axum::Router::new()
            .route("/_sandbox/notifications", get(list))
            .route("/_sandbox/notifications/fail", post(fail))
            .with_state(self.clone())
    }

    /// Everything received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Fail the next `times` deliveries to `sink` (`slack` or `webhook`) with `status`.
    pub fn fail_next(&self, sink: &str, times: u32, status: u16) {
        let sink = if sink == "slack" { "slack" } else { "webhook" };
        let mut g = self.lock();
        g.failing.retain(|(s, _, _)| *s != sink);
        g.failing.push((sink, times, status));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A status to fail with, when the sink was told to fail.
    fn injected(&self, sink: &str) -> Option<u16> {
        let mut g = self.lock();
        let entry = g
            .failing
            .iter_mut()
            .find(|(s, n, _)| *s == sink && *n > 0)?;
        entry.1 -= 1;
        Some(entry.2)
    }

    fn record(&self, r: Received) {
        self.lock().received.push(r);
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(ts), Some(sig)) = (
            header("x-tugboat-timestamp"),
            header("x-tugboat-signature-256"),
        ) else {
            return false;
        };
        let Some(hex_sig) = sig.strip_prefix("sha256=") else {
            return false;
        };
        let Ok(given) = hex::decode(hex_sig) else {
            return false;
        };
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, self.secret.as_bytes());
        let mut signed = ts.as_bytes().to_vec();
        signed.push(b'.');
        signed.extend_from_slice(body);
        aws_lc_rs::hmac::verify(&key, &signed, &given).is_ok()
    }
}

async fn slack(
    State(s): State<Sinks>,
    Path((team, bot, key)): Path<(String, String, String)>,
    body: Bytes,
) -> (StatusCode, String) {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let (status, answer) = if format!("/services/{team}/{bot}/{key}") != SLACK_HOOK {
        (StatusCode::NOT_FOUND, "no_service".to_owned())
    } else if let Some(code) = s.injected("slack") {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, "sandbox: failing as asked".to_owned())
    } else {
        match parsed.as_ref().map(block_kit_error) {
            None => (StatusCode::BAD_REQUEST, "invalid_payload".to_owned()),
            Some(Some(error)) => (StatusCode::BAD_REQUEST, error),
            Some(None) => (StatusCode::OK, "ok".to_owned()),
        }
    };
    s.record(Received {
        sink: "slack",
        at: s.clock.now(),
        status: status.as_u16(),
        event: None,
        verified: None,
        body: parsed.unwrap_or(Value::Null),
    });
    (status, answer)
}

async fn webhook(State(s): State<Sinks>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let verified = s.verify(&headers, &body);
    let status = if !verified {
        StatusCode::UNAUTHORIZED
    } else if let Some(code) = s.injected("webhook") {
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    } else {
        StatusCode::NO_CONTENT
    };
    s.record(Received {
        sink: "webhook",
        at: s.clock.now(),
        status: status.as_u16(),
        event: headers
            .get("x-tugboat-event")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        verified: Some(verified),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    status
}

async fn list(State(s): State<Sinks>) -> Json<Value> {
    Json(Value::Array(
        s.received().iter().map(Received::json).collect(),
    ))
}

#[derive(Deserialize)]
struct FailRequest {
    sink: String,
    times: u32,
    #[serde(default = "server_error")]
    status: u16,
}

fn server_error() -> u16 {
    500
}

async fn fail(State(s): State<Sinks>, Json(req): Json<FailRequest>) -> StatusCode {
    s.fail_next(&req.sink, req.times, req.status);
    StatusCode::NO_CONTENT
}

/// The first of Block Kit's documented limits a message breaks, in Slack's error words
/// (<https://docs.slack.dev/reference/block-kit/blocks>): at most 50 blocks; a header's
/// plain text at most 150 characters; a section's text at most 3000, its fields at most 10 of
/// at most 2000 each; an actions block at most 25 elements; a button's text at most 75 and
/// its URL at most 3000; a context block at most 10 elements.
pub fn block_kit_error(message: &Value) -> Option<String> {
    let text = message.get("text").and_then(Value::as_str);
    let Some(blocks) = message.get("blocks") else {
        return text.is_none().then(|| "no_text".to_owned());
    };
    let Some(blocks) = blocks.as_array() else {
        return Some("invalid_blocks_format".to_owned());
    };
    if blocks.len() > 50 {
        return Some("invalid_blocks".to_owned());
    }
    blocks
        .iter()
        .enumerate()
        .find_map(|(i, b)| block_error(b).map(|why| format!("invalid_blocks: blocks[{i}]: {why}")))
}

fn chars(v: &Value) -> Option<usize> {
    v.as_str().map(|s| s.chars().count())
}

fn text_error(t: &Value, max: usize, plain_only: bool) -> Option<String> {
    let kind = t.get("type").and_then(Value::as_str);
    match kind {
        Some("plain_text") => {}
        Some("mrkdwn") if !plain_only => {}
        other => return Some(format!("text type {other:?} is not allowed here")),
    }
    match chars(&t["text"]) {
        None | Some(0) => Some("text must not be empty".into()),
        Some(n) if n > max => Some(format!("text is {n} characters, over {max}")),
        _ => None,
    }
}

fn block_error(b: &Value) -> Option<String> {
    match b.get("type").and_then(Value::as_str) {
        Some("header") => text_error(&b["text"], 150, true),
        Some("section") => {
            let fields = b.get("fields").and_then(Value::as_array);
            if b.get("text").is_none() && fields.is_none() {
                return Some("a section needs text or fields".into());
            }
            if let Some(t) = b.get("text")
                && let Some(e) = text_error(t, 3000, false)
            {
                return Some(e);
            }
            let fields = fields.map(Vec::as_slice).unwrap_or_default();
            if fields.len() > 10 {
                return Some(format!("{} fields, over 10", fields.len()));
            }
            fields.iter().find_map(|f| text_error(f, 2000, false))
        }
        Some("actions") => {
            let elements = b["elements"].as_array()?;
            if elements.is_empty() || elements.len() > 25 {
                return Some(format!("{} elements, not 1 to 25", elements.len()));
            }
            elements.iter().find_map(button_error)
        }
        Some("context") => {
            let elements = b["elements"].as_array()?;
            if elements.is_empty() || elements.len() > 10 {
                return Some(format!("{} elements, not 1 to 10", elements.len()));
            }
            elements.iter().find_map(|e| text_error(e, 3000, false))
        }
        Some("divider") => None,
        other => Some(format!(
            "block type {other:?} is not one tugboat should send"
        )),
    }
}

fn button_error(e: &Value) -> Option<String> {
    if e.get("type").and_then(Value::as_str) != Some("button") {
        return Some("only buttons are expected in an actions block".into());
    }
    if let Some(err) = text_error(&e["text"], 75, true) {
        return Some(format!("button {err}"));
    }
    match chars(&e["url"]) {
        Some(n) if n > 3000 => Some(format!("button url is {n} characters, over 3000")),
        Some(_) | None => None,
    }
}
