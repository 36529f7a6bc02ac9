//! The event listener: ECR pushes, deletions and finished scans, and Inspector results, from
//! an SQS queue that EventBridge rules fill. Each event wakes only the services that watch its
//! repository, which then reconcile as usual (the gate still reads the findings from ECR: an
//! event is a hint, never evidence). Polling stays the reconciler: a lost event costs
//! latency, never correctness.
//!
//! Messages are untrusted input. A malformed body, an unknown `detail-type`, a repository
//! nobody watches, an event from another account or region, or an oversized body is logged
//! once, counted by outcome and deleted; it wakes nothing. Duplicates (SQS delivers at least
//! once) and events older than the service's last look are dropped too.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::events::{self, Change, Event, Refusal};
use crate::engine::Inbox;
use crate::metrics::Metrics;
use crate::ports::{EventQueue, PortResult, QueuedMessage};

/// An event older than a service's last look by more than this is stale (the look saw it);
/// the margin absorbs the clock skew between AWS and this host.
const STALE_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// How many event ids are remembered to drop redeliveries.
const REMEMBERED: usize = 4096;

/// The longest pause after the queue failed (doubling from a second).
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Which services each repository feeds, and whose events are believed.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    region: String,
    accounts: BTreeSet<String>,
    /// (registry account, or `None` for the caller's own) and repository → services.
    repositories: BTreeMap<(Option<String>, String), Vec<String>>,
}

impl Routes {
    pub fn of(cfg: &Config) -> Self {
        let mut repositories: BTreeMap<_, Vec<String>> = BTreeMap::new();
        for s in &cfg.services {
            repositories
                .entry((s.registry_id.clone(), s.repository.clone()))
                .or_default()
                .push(s.name.clone());
        }
        Self {
            region: cfg.aws.region.clone(),
            accounts: cfg
                .events
                .as_ref()
                .map(|e| e.accounts.clone())
                .unwrap_or_default(),
            repositories,
        }
    }

    /// The services `e` concerns, or why none.
    fn services(&self, e: &Event) -> Result<Vec<String>, Outcome> {
        if e.region != self.region || !self.accounts.contains(&e.account) {
            return Err(Outcome::Foreign(format!(
                "account {} in {}",
                e.account, e.region
            )));
        }
        let mut found: Vec<String> = [Some(e.account.clone()), None]
            .into_iter()
            .filter_map(|account| self.repositories.get(&(account, e.repository.clone())))
            .flatten()
            .cloned()
            .collect();
        found.dedup();
        if found.is_empty() {
            return Err(Outcome::Unwatched(e.repository.clone()));
        }
        Ok(found)
    }
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// These services reconcile now.
    Wake(Vec<String>),
    /// An event already handled (SQS delivered it again).
    Duplicate,
    /// Older than every concerned service's last look.
    Stale,
    /// A repository no service watches.
    Unwatched(String),
    /// From an account or region tugboat does not believe.
    Foreign(String),
    /// Not an event tugboat uses.
    Refused(Refusal),
}

impl Outcome {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Wake(_) => "wake",
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
            Self::Unwatched(_) => "unwatched",
            Self::Foreign(_) => "foreign",
            Self::Refused(r) => r.as_str(),
        }
    }
}

/// Event ids seen lately, oldest first.
#[derive(Debug, Default)]
struct Seen {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl Seen {
    fn first(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

/// Reads the queue and wakes services through the engine's inbox.
pub struct Listener {
    queue: Arc<dyn EventQueue>,
    routes: Routes,
    inbox: Arc<Inbox>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    seen: Mutex<Seen>,
}

impl Listener {
    pub fn new(
        queue: Arc<dyn EventQueue>,
        routes: Routes,
        inbox: Arc<Inbox>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            queue,
            routes,
            inbox,
            metrics,
            clock,
            seen: Mutex::default(),
        }
    }

    /// What one message means (it is not acted on here).
    pub fn judge(&self, message: &QueuedMessage) -> Outcome {
        let event = match events::parse(&message.body) {
            Ok(e) => e,
            Err(r) => return Outcome::Refused(r),
        };
        let services = match self.routes.services(&event) {
            Ok(s) => s,
            Err(outcome) => return outcome,
        };
        // New findings for a digest tugboat may have cached as clean: forget them whether
        // or not the event is stale for the listing, since the listing holds no findings.
        // Scan and Inspector events name the platform images' digests, which is what the
        // cache keys an image index's scans by.
        if matches!(event.change, Change::Scanned | Change::Inspected)
            && let Some(digest) = &event.digest
        {
            self.inbox.forget_scan(digest.clone());
        }
        let fresh: Vec<String> = services
            .into_iter()
            .filter(|s| !stale(event.time, self.inbox.looked_at(s)))
            .collect();
        if fresh.is_empty() {
            return Outcome::Stale;
        }
        let first = self.seen.lock().map_or(true, |mut s| s.first(&event.id));
        if !first {
            return Outcome::Duplicate;
        }
        tracing::info!(
            event = %event.id,
            change = event.change.as_str(),
            repository = %event.repository,
            services = ?fresh,
            "event: reconciling now"
        );
        Outcome::Wake(fresh)
    }

    /// Receive once (a long poll), wake the services the messages concern (each once), and
    /// delete every message read, used or not. The outcomes, in order.
    pub async fn poll(&self) -> PortResult<Vec<Outcome>> {
        let messages = self.queue.receive().await?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes: Vec<Outcome> = messages.iter().map(|m| self.judge(m)).collect();
        let mut wake = BTreeSet::new();
        for (m, outcome) in messages.iter().zip(&outcomes) {
            self.metrics.events.outcome(outcome.label());
            match outcome {
                Outcome::Wake(services) => wake.extend(services.iter().cloned()),
                Outcome::Duplicate | Outcome::Stale => {
                    tracing::debug!(message = %m.id, outcome = outcome.label(), "event dropped");
                }
                other => {
                    tracing::warn!(message = %m.id, outcome = other.label(), why = %describe(other), "event queue message dropped");
                }
            }
        }
        if !wake.is_empty() {
            self.inbox.wake_services(wake.iter().map(String::as_str));
        }
        let receipts: Vec<String> = messages.into_iter().map(|m| m.receipt).collect();
        if let Err(e) = self.queue.delete(&receipts).await {
            // They come back after the visibility timeout, as duplicates.
            tracing::warn!(error = %e, "could not delete handled event messages");
        }
        Ok(outcomes)
    }

    /// Poll until `stop`; when the queue fails, back off (doubling to five minutes) and say
    /// so in the metrics and `/readyz`, while the cycles keep polling ECR.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        self.set_state(Ok(()));
        match self.queue.depth().await {
            Ok(n) => tracing::info!(waiting = n, "listening to the event queue"),
            Err(e) => {
                tracing::error!(error = %e, "the event queue cannot be read; retrying with backoff")
            }
        }
        let mut backoff = Duration::from_secs(1);
        loop {
            let polled = tokio::select! {
                p = self.poll() => p,
                _ = stop.changed() => return,
            };
            match polled {
                Ok(_) => {
                    backoff = Duration::from_secs(1);
                    self.set_state(Ok(()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, seconds = backoff.as_secs(), "the event queue failed; backing off (polling continues)");
                    self.set_state(Err(e.metric_label().to_owned()));
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn set_state(&self, state: Result<(), String>) {
        self.metrics.events.queue_up.set(i64::from(state.is_ok()));
        if let Ok(mut e) = self.metrics.ready.events.lock() {
            let since = match (&*e, &state) {
                (Some(Err((_, since))), Err(_)) => *since,
                _ => self.clock.now().timestamp(),
            };
            *e = Some(state.map_err(|why| (why, since)));
        }
    }
}

/// Whether an event at `time` is older than the service's last look at `looked`.
fn stale(time: DateTime<Utc>, looked: Option<DateTime<Utc>>) -> bool {
    looked.is_some_and(|l| time + STALE_MARGIN < l)
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Unwatched(repo) => format!("no service watches repository '{repo}'"),
        Outcome::Foreign(from) => {
            format!("an event from {from}, not a configured account and region")
        }
        Outcome::Refused(r) => r.to_string(),
        other => other.label().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::clock::TokioClock;
    use crate::domain::image::Digest;
    use crate::engine::fake::{self, FakeQueue, push_event};
    use crate::ports::ErrorKind;
    use crate::telemetry::ApiMetrics;

    const QUEUE: &str = "[events]\nqueue_url = \"https://sqs.eu-north-1.amazonaws.com/123456789012/tugboat-events\"\n";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .into()
    }

    fn digest(seed: char) -> Digest {
        Digest::parse(&format!("sha256:{}", seed.to_string().repeat(64))).unwrap()
    }

    fn listener() -> (Arc<FakeQueue>, Arc<Inbox>, Arc<Metrics>, Listener) {
        let cfg = fake::config("", QUEUE);
        let queue = Arc::new(FakeQueue::default());
        let inbox = Arc::new(Inbox::default());
        let metrics = Arc::new(Metrics::new(600, &ApiMetrics::default()));
        let l = Listener::new(
            queue.clone(),
            Routes::of(&cfg),
            inbox.clone(),
            metrics.clone(),
            Arc::new(TokioClock::starting_at(now())),
        );
        (queue, inbox, metrics, l)
    }

    fn counted(m: &Metrics, outcome: &str) -> u64 {
        m.events
            .messages
            .get_or_create(&crate::metrics::EventOutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .get()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_fifty_pushes_to_one_repository_wakes_its_service_once() {
        let (queue, inbox, metrics, l) = listener();
        let bodies: Vec<String> = (0..50)
            .map(|i| {
                let seed = char::from(b'a' + u8::try_from(i % 6).unwrap());
                push_event(
                    &format!("e{i}"),
                    "user_service",
                    &format!("1.{i}.0"),
                    &digest(seed),
                    now(),
                )
            })
            .collect();
        queue.send(&bodies);
        for _ in 0..5 {
            let outcomes = l.poll().await.unwrap();
            assert_eq!(outcomes.len(), 10);
            assert!(
                outcomes
                    .iter()
                    .all(|o| *o == Outcome::Wake(vec!["user_service".into()]))
            );
        }
        let wanted = inbox.take_wanted();
        assert_eq!(wanted.services, BTreeSet::from(["user_service".to_owned()]));
        assert!(
            !wanted.all,
            "an event wakes its service, not the whole cycle"
        );
        assert_eq!(
            queue.deleted().len(),
            50,
            "every handled message is deleted"
        );
        assert_eq!(counted(&metrics, "wake"), 50);
    }

    #[tokio::test(start_paused = true)]
    async fn unusable_messages_are_counted_by_kind_deleted_and_wake_nothing() {
        let (queue, inbox, metrics, l) = listener();
        let d = digest('a');
        let push = push_event("p1", "user_service", "1.1.0", &d, now());
        inbox.looked("user_service", now() + chrono::Duration::minutes(5));
        let bodies = vec![
            "{not json".to_owned(),
            push.replace("ECR Image Action", "ECR Replication Action"),
            push.replace("\"user_service\"", "\"nobody_watches\""),
            push.replace("123456789012", "999999999999"),
            push.replace("eu-north-1", "us-east-1"),
            format!("{push}{}", " ".repeat(crate::domain::events::MAX_BODY)),
            // Pushed four minutes before the service's images were last listed.
            push_event("p0", "user_service", "1.0.9", &d, now()),
        ];
        queue.send(&bodies);
        let outcomes = l.poll().await.unwrap();
        let labels: Vec<&str> = outcomes.iter().map(Outcome::label).collect();
        assert_eq!(
            labels,
            [
                "malformed",
                "unused",
                "unwatched",
                "foreign",
                "foreign",
                "oversized",
                "stale"
            ]
        );
        assert_eq!(inbox.take_wanted(), crate::engine::Wanted::default());
        assert_eq!(
            queue.deleted().len(),
            bodies.len(),
            "each is deleted, never retried"
        );
        assert_eq!(counted(&metrics, "foreign"), 2);
        assert_eq!(counted(&metrics, "wake"), 0);
        assert!(
            describe(&outcomes[2]).contains("'nobody_watches'"),
            "{}",
            describe(&outcomes[2])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_redelivered_event_is_a_duplicate_and_wakes_nothing_again() {
        let (queue, inbox, metrics, l) = listener();
        let push = push_event("p1", "user_service", "1.1.0", &digest('a'), now());
        queue.send(std::slice::from_ref(&push));
        queue.send(&[push]);
        assert_eq!(
            l.poll().await.unwrap(),
            [Outcome::Wake(vec!["user_service".into()])]
        );
        inbox.take_wanted();
        assert_eq!(l.poll().await.unwrap(), [Outcome::Duplicate]);
        assert_eq!(inbox.take_wanted(), crate::engine::Wanted::default());
        assert_eq!(counted(&metrics, "duplicate"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_queue_is_backed_off_from_said_in_readyz_and_rejoined() {
        let (queue, _inbox, metrics, l) = listener();
        let l = Arc::new(l);
        queue.fail(Some(ErrorKind::Throttled));
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn({
            let l = l.clone();
            async move { l.run(stopped).await }
        });
        // Receives at 0, 1, 3, 7, 15 and 31 s: the pause doubles.
        tokio::time::sleep(Duration::from_secs(40)).await;
        assert_eq!(queue.receives(), 6);
        assert_eq!(metrics.events.queue_up.get(), 0);
        let state = metrics.ready.events.lock().unwrap().clone();
        assert!(
            matches!(&state, Some(Err((why, _))) if why == "throttled"),
            "{state:?}"
        );
        queue.fail(None);
        tokio::time::sleep(Duration::from_secs(64)).await;
        assert_eq!(metrics.events.queue_up.get(), 1, "answered again: up");
        assert_eq!(*metrics.ready.events.lock().unwrap(), Some(Ok(())));
        stop.send(true).unwrap();
        running.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_stops_doubling_at_five_minutes() {
        let (queue, _inbox, _metrics, l) = listener();
        queue.fail(Some(ErrorKind::Transient));
        let (stop, stopped) = watch::channel(false);
        let l = Arc::new(l);
        let running = tokio::spawn({
            let l = l.clone();
            async move { l.run(stopped).await }
        });
        // 1+2+…+256 = 511 s for nine pauses, then one every 300 s.
        tokio::time::sleep(Duration::from_secs(511 + 3 * 300 + 1)).await;
        assert_eq!(queue.receives(), 13);
        stop.send(true).unwrap();
        running.await.unwrap();
    }
}
