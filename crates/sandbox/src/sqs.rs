//! A stand-in for SQS speaking the AWS JSON 1.0 protocol (`X-Amz-Target: AmazonSQS.*`), as
//! aws-sdk-sqs does: `ReceiveMessage` with long polling and visibility timeouts,
//! `DeleteMessage(Batch)`, `GetQueueAttributes`, `SendMessage` and `GetQueueUrl`. The ECR
//! stand-in's events for pushes and finished scans reach the events queue through the
//! EventBridge stand-in's rules (`eventbridge.rs`). Signatures are not checked.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tugboat::clock::Clock as _;

use super::SandboxClock;
use super::aws::REGISTRY_ID;

/// The queue that EventBridge would fill with ECR and Inspector events.
pub const EVENTS_QUEUE: &str = "tugboat-events";

/// SQS's default visibility timeout: a received message comes back after it unless deleted.
const VISIBILITY: chrono::Duration = chrono::Duration::seconds(30);

/// The region the sandbox's events claim (the printed config's).
pub const REGION: &str = "eu-north-1";

#[derive(Debug, Clone)]
struct Message {
    id: String,
    body: String,
    receives: u64,
}

#[derive(Debug, Default)]
struct Queue {
    ready: VecDeque<Message>,
    /// Received and not yet deleted: receipt → (visible again at, the message).
    in_flight: BTreeMap<String, (DateTime<Utc>, Message)>,
    /// Its access policy (the `Policy` attribute), an IAM policy document.
    policy: Option<String>,
}

#[derive(Default)]
struct Inner {
    queues: BTreeMap<String, Queue>,
    sent: u64,
    /// Every event body ever put on a queue, for tests and the demo.
    history: Vec<(String, String)>,
    /// Answer every request with this error code (a throttled or broken queue).
    failing: Option<String>,
}

/// The shared state of the SQS stand-in.
#[derive(Clone)]
pub struct Sqs {
    inner: Arc<Mutex<Inner>>,
    arrived: Arc<tokio::sync::Notify>,
    clock: SandboxClock,
}

/// The events queue's access policy as manifests/aws/events.cfn.yaml gives it
/// (`EventsQueuePolicy`): EventBridge's rules may send to it.
fn events_policy() -> String {
    let queue = format!("arn:aws:sqs:{REGION}:{REGISTRY_ID}:{EVENTS_QUEUE}");
    let rule = format!("arn:aws:events:{REGION}:{REGISTRY_ID}:rule/tugboat-ecr-image-action");
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "EventBridgeRulesOfThisStackSend", "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": queue, "Condition": {"ArnEquals": {"aws:SourceArn": [rule]}}}]})
    .to_string()
}

impl Default for Sqs {
    fn default() -> Self {
        Self::with_clock(SandboxClock::default())
    }
}

impl Sqs {
    /// A stand-in with the events queue, stamping from `clock`.
    pub fn with_clock(clock: SandboxClock) -> Self {
        let s = Self {
            inner: Arc::default(),
            arrived: Arc::default(),
            clock,
        };
        let events = Queue {
            policy: Some(events_policy()),
            ..Queue::default()
        };
        s.lock().queues.insert(EVENTS_QUEUE.into(), events);
        s
    }

    /// The access policy of queue `name`.
    pub fn policy(&self, name: &str) -> Option<String> {
        self.lock().queues.get(name)?.policy.clone()
    }

    /// Replace the access policy of queue `name` (`None`: none), as `SetQueueAttributes`
    /// would.
    pub fn set_policy(&self, name: &str, policy: Option<&str>) {
        if let Some(q) = self.lock().queues.get_mut(name) {
            q.policy = policy.map(str::to_owned);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The URL of queue `name` under the stand-in's endpoint `base`.
    pub fn queue_url(base: &str, name: &str) -> String {
        format!("{base}/{REGISTRY_ID}/{name}")
    }

    /// Put `body` on queue `name` (a no-op for a queue that does not exist); its message id.
    pub fn send(&self, name: &str, body: &str) -> Option<String> {
        let mut g = self.lock();
        g.sent += 1;
        let id = message_id(g.sent);
        let queue = g.queues.get_mut(name)?;
        queue.ready.push_back(Message {
            id: id.clone(),
            body: body.to_owned(),
            receives: 0,
        });
        g.history.push((name.to_owned(), body.to_owned()));
        drop(g);
        self.arrived.notify_waiters();
        Some(id)
    }

    /// The id of the next EventBridge event of `detail_type` (unique, stable for a seed).
    pub fn next_event_id(&self, detail_type: &str) -> String {
        event_id(self.lock().sent + 1, detail_type)
    }

    /// Put copies of the last `n` bodies sent to queue `name` on it again, each a message of
    /// its own: a standard queue delivers "at least once", so a consumer receives some
    /// messages twice ("Amazon SQS at-least-once delivery", the SQS Developer Guide). Returns
    /// how many were put back.
    pub fn redeliver(&self, name: &str, n: usize) -> usize {
        let bodies: Vec<String> = {
            let g = self.lock();
            let mine: Vec<&String> = g
                .history
                .iter()
                .filter(|(q, _)| q == name)
                .map(|(_, b)| b)
                .collect();
            mine.iter().rev().take(n).map(|b| (*b).clone()).collect()
        };
        bodies
            .iter()
            .filter(|b| self.send(name, b).is_some())
            .count()
    }

    /// The bodies put on queue `name` so far, oldest first (received or not).
    pub fn sent(&self, name: &str) -> Vec<String> {
        self.lock()
            .history
            .iter()
            .filter(|(q, _)| q == name)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Messages waiting on queue `name` (not received, or back after their visibility timeout).
    pub fn waiting(&self, name: &str) -> usize {
        let now = self.clock.now();
        let mut g = self.lock();
        g.queues.get_mut(name).map_or(0, |q| {
            q.requeue(now);
            q.ready.len()
        })
    }

    /// Make every SQS request fail with `code` (e.g. `RequestThrottled`), or work again.
    pub fn fail_with(&self, code: Option<&str>) {
        self.lock().failing = code.map(str::to_owned);
    }

    /// Answer one SQS operation.
    pub async fn handle(&self, op: &str, req: &Value) -> Response {
        if let Some(code) = self.lock().failing.clone() {
            return error(&code, "the sandbox's queue was told to fail", true);
        }
        let Some(name) = queue_name(req) else {
            return error(
                "InvalidAddress",
                "QueueUrl (or QueueName) is required",
                false,
            );
        };
        if !self.lock().queues.contains_key(&name) {
            return error(
                "QueueDoesNotExist",
                "The specified queue does not exist.",
                false,
            );
        }
        match op {
            "ReceiveMessage" => self.receive(&name, req).await,
            "DeleteMessage" => {
                let receipt = req.get("ReceiptHandle").and_then(Value::as_str);
                match receipt.map(|r| self.delete(&name, r)) {
                    Some(true) => ok(json!({})),
                    _ => error(
                        "ReceiptHandleIsInvalid",
                        "The input receipt handle is invalid.",
                        false,
                    ),
                }
            }
            "DeleteMessageBatch" => self.delete_batch(&name, req),
            "GetQueueAttributes" => self.attributes(&name, req),
            "SendMessage" => {
                let Some(body) = req.get("MessageBody").and_then(Value::as_str) else {
                    return error("MissingParameter", "MessageBody is required", false);
                };
                let id = self.send(&name, body);
                ok(json!({"MessageId": id}))
            }
            "GetQueueUrl" => ok(json!({"QueueUrl": format!("/{REGISTRY_ID}/{name}")})),
            other => error(
                "UnsupportedOperation",
                &format!("the sandbox's SQS does not serve {other}"),
                false,
            ),
        }
    }

    async fn receive(&self, name: &str, req: &Value) -> Response {
        let max = req
            .get("MaxNumberOfMessages")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        if !(1..=10).contains(&max) {
            return error(
                "InvalidParameterValue",
                &format!(
                    "Value {max} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
                ),
                false,
            );
        }
        let wait = req
            .get("WaitTimeSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if wait > 20 {
            return error(
                "InvalidParameterValue",
                &format!(
                    "Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
                ),
                false,
            );
        }
        let visibility = req
            .get("VisibilityTimeout")
            .and_then(Value::as_i64)
            .map_or(VISIBILITY, chrono::Duration::seconds);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let taken = self.take(name, max as usize, visibility);
            if !taken.is_empty() || tokio::time::Instant::now() >= deadline {
                return ok(json!({ "Messages": taken }));
            }
            tokio::select! {
                () = arrived => {}
                () = tokio::time::sleep_until(deadline) => {}
                // Messages whose visibility timeout ends come back without a send.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    fn take(&self, name: &str, max: usize, visibility: chrono::Duration) -> Vec<Value> {
        let now = self.clock.now();
        let mut g = self.lock();
        let Some(q) = g.queues.get_mut(name) else {
            return Vec::new();
        };
        q.requeue(now);
        let mut out = Vec::new();
        while out.len() < max {
            let Some(mut m) = q.ready.pop_front() else {
                break;
            };
            m.receives += 1;
            let receipt = receipt_of(&m.id, m.receives);
            out.push(json!({
                "MessageId": m.id,
                "ReceiptHandle": receipt,
                "Body": m.body,
                "Attributes": {"ApproximateReceiveCount": m.receives.to_string()},
            }));
            q.in_flight.insert(receipt, (now + visibility, m));
        }
        out
    }

    fn delete(&self, name: &str, receipt: &str) -> bool {
        self.lock()
            .queues
            .get_mut(name)
            .is_some_and(|q| q.in_flight.remove(receipt).is_some())
    }

    fn delete_batch(&self, name: &str, req: &Value) -> Response {
        let entries = req
            .get("Entries")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if entries.is_empty() || entries.len() > 10 {
            return error(
                if entries.is_empty() {
                    "EmptyBatchRequest"
                } else {
                    "TooManyEntriesInBatchRequest"
                },
                "a batch holds 1 to 10 entries",
                false,
            );
        }
        let (mut done, mut failed) = (Vec::new(), Vec::new());
        for e in &entries {
            let id = e.get("Id").and_then(Value::as_str).unwrap_or_default();
            let receipt = e
                .get("ReceiptHandle")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if self.delete(name, receipt) {
                done.push(json!({"Id": id}));
            } else {
                failed.push(
                    json!({"Id": id, "SenderFault": true, "Code": "ReceiptHandleIsInvalid",
                                   "Message": "The input receipt handle is invalid."}),
                );
            }
        }
        ok(json!({"Successful": done, "Failed": failed}))
    }

    /// The attributes asked for by `AttributeNames` (`All`: every one), as SQS answers
    /// ("AttributeNames: A list of attributes for which to retrieve information … All –
    /// Returns all values", SQS API reference, GetQueueAttributes): the counts, `QueueArn`,
    /// and `Policy` ("The policy of the queue") when the queue has one.
    fn attributes(&self, name: &str, req: &Value) -> Response {
        let asked: Vec<&str> = req
            .get("AttributeNames")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let wants = |a: &str| asked.contains(&a) || asked.contains(&"All");
        let now = self.clock.now();
        let mut g = self.lock();
        let Some(q) = g.queues.get_mut(name) else {
            return error(
                "QueueDoesNotExist",
                "The specified queue does not exist.",
                false,
            );
        };
        q.requeue(now);
        let mut out = serde_json::Map::new();
        if wants("ApproximateNumberOfMessages") {
            out.insert(
                "ApproximateNumberOfMessages".into(),
                json!(q.ready.len().to_string()),
            );
        }
        if wants("ApproximateNumberOfMessagesNotVisible") {
            out.insert(
                "ApproximateNumberOfMessagesNotVisible".into(),
                json!(q.in_flight.len().to_string()),
            );
        }
        if wants("QueueArn") {
            out.insert(
                "QueueArn".into(),
                json!(format!("arn:aws:sqs:{REGION}:{REGISTRY_ID}:{name}")),
            );
        }
        if let Some(p) = q.policy.as_ref().filter(|_| wants("Policy")) {
            out.insert("Policy".into(), json!(p));
        }
        ok(json!({ "Attributes": out }))
    }
}

impl Queue {
    /// Messages whose visibility timeout ended are ready again (SQS delivers at least once).
    fn requeue(&mut self, now: DateTime<Utc>) {
        let expired: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, (until, _))| *until <= now)
            .map(|(r, _)| r.clone())
            .collect();
        for r in expired {
            if let Some((_, m)) = self.in_flight.remove(&r) {
                self.ready.push_back(m);
            }
        }
    }
}

/// The queue a request names: the last segment of `QueueUrl` (the host is the endpoint's).
fn queue_name(req: &Value) -> Option<String> {
    let url = req.get("QueueUrl").and_then(Value::as_str);
    let name = url
        .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
        .or_else(|| req.get("QueueName").and_then(Value::as_str))?;
    (!name.is_empty()).then(|| name.to_owned())
}

fn hash(parts: &str) -> String {
    hex::encode(Sha256::digest(parts.as_bytes()))
}

fn message_id(n: u64) -> String {
    let h = hash(&format!("message {n}"));
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn event_id(n: u64, detail_type: &str) -> String {
    let h = hash(&format!("event {n} {detail_type}"));
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn receipt_of(id: &str, receives: u64) -> String {
    format!("AQEB{}", hash(&format!("{id} {receives}")))
}

fn ok(v: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
        v.to_string(),
    )
        .into_response()
}

/// An SQS error as the JSON protocol sends it, with the query-compatible code header the SDK
/// reads (`AWS.SimpleQueueService.NonExistentQueue` for a missing queue).
fn error(code: &str, message: &str, server: bool) -> Response {
    let query_code = match code {
        "QueueDoesNotExist" => "AWS.SimpleQueueService.NonExistentQueue",
        other => other,
    };
    let status = if server {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_REQUEST
    };
    let fault = if server { "Receiver" } else { "Sender" };
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                "application/x-amz-json-1.0".to_owned(),
            ),
            (
                header::HeaderName::from_static("x-amzn-query-error"),
                format!("{query_code};{fault}"),
            ),
        ],
        json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": message}).to_string(),
    )
        .into_response()
}
