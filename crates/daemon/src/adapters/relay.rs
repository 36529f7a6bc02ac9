//! Webhook deliveries that reach a follower, handed on to the leader.
//!
//! Under leader election, the Service in front of the replicas sends each GitHub delivery to
//! any of them; only the leader runs cycles. A follower that receives a delivery verifies it
//! first (an unsigned one goes nowhere), then posts the same body and GitHub headers to the
//! address the leader wrote into the lease, marked as handed on so that it is never passed
//! along again. The leader verifies the signature itself. When the leader cannot be reached,
//! the follower still answers GitHub (the leader's next poll finds the change).

use std::time::Duration;

use axum::http::HeaderMap;
use bytes::Bytes;
use tokio::sync::watch;

/// The header on a delivery a follower handed on: the follower's identity. A delivery that
/// carries it is handled where it arrives.
pub const HANDED_ON_BY: &str = "x-tugboat-handed-on-by";

/// GitHub's headers that the leader needs to verify and read a delivery.
const GITHUB_HEADERS: [&str; 5] = [
    "x-github-event",
    "x-github-delivery",
    "x-hub-signature-256",
    "x-github-hook-id",
    "content-type",
];

/// GitHub gives a delivery 10 s to be answered ("Best practices for using webhooks": respond
/// within 10 seconds); the hand-on must leave the follower time to answer itself.
const HAND_ON_TIMEOUT: Duration = Duration::from_secs(4);

/// A follower's way to the leader.
pub struct Relay {
    http: reqwest::Client,
    /// This replica's identity, named on what it hands on.
    me: String,
    leading: watch::Receiver<bool>,
    /// The leader's address, from the lease.
    leader: watch::Receiver<Option<String>>,
}

/// What the leader answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Relay {
    pub fn new(
        me: &str,
        leading: watch::Receiver<bool>,
        leader: watch::Receiver<Option<String>>,
    ) -> Result<Self, String> {
        let http = super::tls::builder()?
            .user_agent(concat!("tugboat/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(1))
            .timeout(HAND_ON_TIMEOUT)
            .build()
            .map_err(|e| format!("the webhook relay's HTTP client: {e}"))?;
        Ok(Self {
            http,
            me: me.to_owned(),
            leading,
            leader,
        })
    }

    /// Where a delivery that arrived with `headers` goes on to: the leader's address, when
    /// this replica follows, the leader said where, and no replica handed it on before.
    pub fn target(&self, headers: &HeaderMap) -> Option<String> {
        if *self.leading.borrow() || headers.contains_key(HANDED_ON_BY) {
            return None;
        }
        self.leader.borrow().clone()
    }

    /// Post the delivery (`headers`, `body`) to the leader at `target`.
    pub async fn hand_on(
        &self,
        target: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Answer, String> {
        let url = format!("{target}/webhooks/github");
        let mut request = self.http.post(&url).header(HANDED_ON_BY, &self.me);
        for name in GITHUB_HEADERS {
            if let Some(v) = headers.get(name) {
                request = request.header(name, v);
            }
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| format!("POST {url}: reading the answer: {e}"))?;
        Ok(Answer { status, body })
    }
}
