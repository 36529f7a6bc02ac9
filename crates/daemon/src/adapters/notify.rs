//! Notification sinks (reqwest): a Slack incoming webhook (Block Kit), and a generic JSON
//! webhook signed with HMAC-SHA256.
//!
//! Both URLs are secrets (a Slack webhook URL is its own credential), read through
//! [`Rotating`] and never formatted: errors name the sink and the answer, and reqwest's
//! errors lose their URL before they are worded. Redirects are not followed (a sink that
//! answers one is misconfigured, and following it would send the payload elsewhere).
//!
//! The webhook's signature: `X-Tugboat-Signature-256: sha256=<hex>` where `<hex>` is
//! HMAC-SHA256 with the sink's secret over `<X-Tugboat-Timestamp>.<body>`; the timestamp is
//! the Unix time of the attempt, so a receiver can refuse replays older than a few minutes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::credentials::Rotating;
use crate::domain::notify::Notification;
use crate::ports::{ErrorKind, PortError, PortResult, Sink};
use crate::secret::Secret;

/// How long one delivery attempt may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a sink's error answer an error repeats.
const ANSWER_SHOWN: usize = 200;

/// What a sink speaks.
enum Wire {
    Slack,
    Webhook { secret: Arc<Rotating> },
}

/// One configured sink.
pub struct HttpSink {
    name: String,
    url: Arc<Rotating>,
    wire: Wire,
    http: reqwest::Client,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn client() -> PortResult<reqwest::Client> {
    let refused = |e: String| PortError::new("notify", "client", ErrorKind::Rejected, e);
    super::tls::builder()
        .map_err(refused)?
        .user_agent(concat!("tugboat/", env!("CARGO_PKG_VERSION")))
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| refused(e.without_url().to_string()))
}

impl HttpSink {
    /// A Slack incoming webhook at `url`.
    pub fn slack(name: &str, url: Arc<Rotating>) -> PortResult<Self> {
        Ok(Self {
            name: name.to_owned(),
            url,
            wire: Wire::Slack,
            http: client()?,
        })
    }

    /// A JSON webhook at `url`, each body signed with `secret`.
    pub fn webhook(name: &str, url: Arc<Rotating>, secret: Arc<Rotating>) -> PortResult<Self> {
        Ok(Self {
            name: name.to_owned(),
            url,
            wire: Wire::Webhook { secret },
            http: client()?,
        })
    }

    fn error(&self, kind: ErrorKind, message: String) -> PortError {
        let system = match self.wire {
            Wire::Slack => "slack",
            Wire::Webhook { .. } => "webhook",
        };
        PortError::new(
            system,
            "send",
            kind,
            format!("sink '{}': {message}", self.name),
        )
    }

    async fn request(
        &self,
        n: &Notification,
        id: &str,
        now: DateTime<Utc>,
    ) -> PortResult<reqwest::RequestBuilder> {
        let url = self.url.current().await;
        let req = self.http.post(url.expose());
        Ok(match &self.wire {
            Wire::Slack => req.json(&n.slack_message()),
            Wire::Webhook { secret } => {
                let body = n
                    .webhook_body(id, &now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .to_string();
                let timestamp = now.timestamp().to_string();
                let signature = sign(&secret.current().await, &timestamp, body.as_bytes())
                    .map_err(|m| self.error(ErrorKind::Rejected, m))?;
                req.header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("X-Tugboat-Event", n.kind.as_str())
                    .header("X-Tugboat-Delivery", id)
                    .header("X-Tugboat-Timestamp", timestamp)
                    .header("X-Tugboat-Signature-256", signature)
                    .body(body)
            }
        })
    }
}

/// `sha256=<hex>` of HMAC-SHA256 with `secret` over `<timestamp>.<body>`.
pub fn sign(secret: &Secret, timestamp: &str, body: &[u8]) -> Result<String, String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| "the signing secret cannot key HMAC-SHA256".to_owned())?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// What a status means for a retry.
fn kind_of(status: reqwest::StatusCode) -> ErrorKind {
    match status.as_u16() {
        429 => ErrorKind::Throttled,
        401 | 403 => ErrorKind::Denied,
        404 | 410 => ErrorKind::NotFound,
        408 | 500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Rejected,
    }
}

#[async_trait]
impl Sink for HttpSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, n: &Notification, id: &str, now: DateTime<Utc>) -> PortResult<()> {
        let req = self.request(n, id, now).await?;
        let resp = req.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                format!("no answer within {}s", TIMEOUT.as_secs())
            } else {
                format!("cannot reach it: {}", e.without_url())
            };
            self.error(ErrorKind::Transient, what)
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            return Err(self.error(
                ErrorKind::Rejected,
                format!(
                    "answered {status}, a redirect, which tugboat does not follow: check the URL"
                ),
            ));
        }
        let body = resp.text().await.unwrap_or_default();
        let mut shown: String = body.trim().chars().take(ANSWER_SHOWN).collect();
        if shown.is_empty() {
            shown = "(no body)".into();
        }
        Err(self.error(kind_of(status), format!("answered {status}: {shown}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_the_timestamp_a_dot_and_the_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
        let sig = sign(&Secret::new("s3cret"), "1700000000", br#"{"a":1}"#).unwrap();
        assert_eq!(
            sig,
            "sha256=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }

    #[test]
    fn statuses_map_to_retry_decisions() {
        use reqwest::StatusCode as S;
        assert_eq!(kind_of(S::TOO_MANY_REQUESTS), ErrorKind::Throttled);
        assert_eq!(kind_of(S::BAD_GATEWAY), ErrorKind::Transient);
        assert_eq!(kind_of(S::REQUEST_TIMEOUT), ErrorKind::Transient);
        assert_eq!(kind_of(S::FORBIDDEN), ErrorKind::Denied);
        assert_eq!(kind_of(S::GONE), ErrorKind::NotFound);
        assert_eq!(kind_of(S::BAD_REQUEST), ErrorKind::Rejected);
    }
}
