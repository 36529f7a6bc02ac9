//! GitHub webhooks: verify the signature before anything else, drop redeliveries, and turn an
//! event that matters (`domain::webhook::classify`) into a wake-up of the run loop, which then
//! handles it by the same path as polling (so a lost delivery costs only latency, never a
//! command).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::credentials::Rotating;
use crate::domain::webhook::{self, Meaning};
use crate::engine::Inbox;
use crate::secret::Secret;

/// The largest body accepted; tugboat's events are a few kilobytes.
pub const MAX_BODY: usize = 1024 * 1024;

/// How many deliveries (each by its id and by its body's digest) are remembered to drop
/// redeliveries and replays.
const REMEMBERED: usize = 4096;

/// Whether `signature` (the `X-Hub-Signature-256` header, `sha256=<hex>`) is the HMAC-SHA256
/// of `body` under `secret`, compared in constant time.
pub fn verify(secret: &Secret, body: &[u8], signature: Option<&str>) -> bool {
    let Some(hex_sig) = signature.and_then(|s| s.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// What a verified delivery led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pong,
    /// A cycle was asked for (why).
    Queued(String),
    Ignored(String),
    Duplicate,
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Missing or wrong signature: 401, and nothing more is said.
    Unauthorized,
    /// Signed, but not a GitHub delivery tugboat can read: 400 with the reason.
    Malformed(String),
}

/// The webhook receiver's state.
pub struct Webhook {
    /// Read again when it rotates, and at once when a delivery's signature does not match.
    secret: std::sync::Arc<Rotating>,
    seen: Mutex<(VecDeque<String>, HashSet<String>)>,
    /// The engine's: what the run loop reconciles next, and re-runs of the gate check.
    inbox: std::sync::Arc<Inbox>,
    /// Under leader election, the way to the leader for a delivery a follower received.
    relay: Option<crate::adapters::relay::Relay>,
}

impl Webhook {
    pub fn new(secret: std::sync::Arc<Rotating>, inbox: std::sync::Arc<Inbox>) -> Self {
        Self {
            secret,
            seen: Mutex::default(),
            inbox,
            relay: None,
        }
    }

    /// Hand deliveries that need a cycle on to the leader while this replica follows.
    #[must_use]
    pub fn with_relay(mut self, relay: crate::adapters::relay::Relay) -> Self {
        self.relay = Some(relay);
        self
    }

    /// The way to the leader, under leader election.
    pub fn relay(&self) -> Option<&crate::adapters::relay::Relay> {
        self.relay.as_ref()
    }

    /// Handle one delivery: `event` and `delivery` are the `X-GitHub-Event` and
    /// `X-GitHub-Delivery` headers. Only a verified body is parsed.
    pub async fn handle(
        &self,
        event: Option<&str>,
        delivery: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Outcome, Refusal> {
        let secret = self.secret.current().await;
        if !verify(&secret, body, signature) {
            // GitHub may already sign with a rotated secret: read it again (at most every
            // few seconds) and check once more.
            match self.secret.refused(&secret).await {
                Some(newer) if verify(&newer, body, signature) => {}
                _ => return Err(Refusal::Unauthorized),
            }
        }
        let event = event.ok_or_else(|| Refusal::Malformed("no X-GitHub-Event header".into()))?;
        let delivery =
            delivery.ok_or_else(|| Refusal::Malformed("no X-GitHub-Delivery header".into()))?;
        let meaning = webhook::classify(event, body).map_err(Refusal::Malformed)?;
        if !self.first_delivery(delivery, body) {
            return Ok(Outcome::Duplicate);
        }
        let outcome = match meaning {
            Meaning::Pong => Outcome::Pong,
            Meaning::Wake { why, number } => {
                // Only the service of that PR or issue, when the last cycle knew it.
                match number {
                    Some(n) => self.inbox.wake_subject(n),
                    None => self.inbox.wake_all(),
                }
                Outcome::Queued(why)
            }
            Meaning::Rerun { prs, why } => {
                for pr in prs {
                    self.inbox.rerun(pr);
                    self.inbox.wake_subject(pr);
                }
                Outcome::Queued(why)
            }
            Meaning::Ignored(why) => Outcome::Ignored(why),
        };
        if let Outcome::Queued(why) = &outcome {
            tracing::info!(event, delivery, reason = %why, "webhook: a cycle is due");
        }
        Ok(outcome)
    }

    /// Whether neither delivery `id` nor `body` was seen before. GitHub's signature covers the
    /// body, not the delivery id: a captured delivery replayed under a new id is still the
    /// same body, so both are remembered.
    fn first_delivery(&self, id: &str, body: &[u8]) -> bool {
        let Ok(mut g) = self.seen.lock() else {
            return true;
        };
        let (order, set) = &mut *g;
        let keys = [
            format!("id:{id}"),
            format!(
                "body:{}",
                hex::encode(<Sha256 as sha2::Digest>::digest(body))
            ),
        ];
        if keys.iter().any(|k| set.contains(k)) {
            return false;
        }
        for k in keys {
            set.insert(k.clone());
            order.push_back(k);
        }
        while order.len() > 2 * REMEMBERED
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn githubs_documented_signature_example_verifies() {
        // From GitHub's "Validating webhook deliveries": secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        let secret = Secret::new("It's a Secret to Everybody");
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify(&secret, b"Hello, World!", Some(sig)));
        assert!(!verify(&secret, b"Hello, World?", Some(sig)));
        assert!(!verify(
            &secret,
            b"Hello, World!",
            Some(&sig.replace("sha256=", "sha1="))
        ));
        assert!(!verify(&secret, b"Hello, World!", Some("sha256=zz")));
        assert!(!verify(&secret, b"Hello, World!", None));
    }

    fn fixed(secret: &str) -> std::sync::Arc<Rotating> {
        std::sync::Arc::new(Rotating::fixed(
            Secret::new(secret),
            "github.webhook_secret",
        ))
    }

    #[tokio::test]
    async fn a_redelivery_is_dropped_and_only_commands_on_promotion_prs_wake_the_loop() {
        let inbox = std::sync::Arc::new(Inbox::default());
        let w = Webhook::new(fixed("s"), inbox.clone());
        let comment = br#"{"action":"created","issue":{"number":7,"pull_request":{}},"comment":{"body":"/approve","user":{"type":"User"}}}"#;
        let sig = sign("s", comment);
        let go = |d: &'static str| w.handle(Some("issue_comment"), Some(d), Some(&sig), comment);
        assert_eq!(
            go("d-1").await,
            Ok(Outcome::Queued("a command on #7".into()))
        );
        // #7 is no PR the last cycle knew: everything is reconciled.
        assert!(inbox.take_wanted().all);
        assert_eq!(go("d-1").await, Ok(Outcome::Duplicate));
        assert_eq!(
            go("d-replayed").await,
            Ok(Outcome::Duplicate),
            "the same signed body under a new delivery id is a replay"
        );
        assert_eq!(inbox.take_wanted(), crate::engine::Wanted::default());
        assert_eq!(
            w.handle(
                Some("issue_comment"),
                Some("d-2"),
                Some("sha256=00"),
                comment
            )
            .await,
            Err(Refusal::Unauthorized)
        );
        let chat = br#"{"action":"created","issue":{"number":7,"pull_request":{}},"comment":{"body":"thanks!","user":{"type":"User"}}}"#;
        assert_eq!(
            w.handle(
                Some("issue_comment"),
                Some("d-3"),
                Some(&sign("s", chat)),
                chat
            )
            .await,
            Ok(Outcome::Ignored("not a command".into()))
        );
        let bad = b"not json";
        assert!(matches!(
            w.handle(Some("push"), Some("d-4"), Some(&sign("s", bad)), bad).await,
            Err(Refusal::Malformed(m)) if m.starts_with("the body is not JSON")
        ));
    }

    #[tokio::test]
    async fn a_delivery_signed_with_a_rotated_secret_is_accepted_once_the_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhook-secret");
        std::fs::write(&path, "old").unwrap();
        let secret = Rotating::file(&path, "github.webhook_secret")
            .await
            .unwrap();
        let w = Webhook::new(std::sync::Arc::new(secret), std::sync::Arc::default());
        // Each delivery's body differs (GitHub's `zen` is picked at random): the same body
        // again would be a replay.
        let deliver = |d: &'static str, key: &str| {
            let ping = format!(r#"{{"zen":"Keep it logically awesome ({d}).","hook_id":1}}"#);
            let sig = sign(key, ping.as_bytes());
            let w = &w;
            async move {
                w.handle(Some("ping"), Some(d), Some(&sig), ping.as_bytes())
                    .await
            }
        };
        assert_eq!(deliver("d-1", "old").await, Ok(Outcome::Pong));
        // The secret rotates: the file changes, and GitHub signs with the new one.
        std::fs::write(&path, "new-secret").unwrap();
        assert_eq!(deliver("d-2", "new-secret").await, Ok(Outcome::Pong));
        assert_eq!(deliver("d-3", "old").await, Err(Refusal::Unauthorized));
    }
}
