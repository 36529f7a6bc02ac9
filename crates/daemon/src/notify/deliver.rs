//! How notifications are delivered: recorded in the ledger first (once per change), with the notification itself in the ledger's outbox, then handed to every sink
//! whose filter admits it, one task and one queue per sink, each delivery retried with
//! backoff and counted; what each sink has is struck from the outbox as it goes. What a
//! killed process did not deliver, its successor takes over at its start, and another
//! replica after [`OTHERS_AFTER`]. What to announce is `notify`'s.

use super::*;

/// Batches waiting for the ledger; more are dropped (and counted) rather than waited for.
const BATCHES_QUEUED: usize = 64;
/// Deliveries waiting per sink.
const DELIVERIES_QUEUED: usize = 256;
/// How many states' last announced change is kept in memory (the fleet's size, bounded).
const KNOWN_ENTRIES: usize = 16_384;
/// Ledger attempts per batch.
const LEDGER_ATTEMPTS: u32 = 3;
/// The longest pause between two delivery attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How many finished deliveries wait, at most, for the ledger to strike them from the
/// outbox while it cannot be written (memory stays bounded however long GitHub is down).
pub(super) const STRIKES_KEPT: usize = 4096;
/// How often the outbox is looked at for what a dead process left (and once at the start).
const SWEEP_EVERY: Duration = Duration::from_secs(300);
/// How long a parcel another process delivers may stay in the outbox before this one takes
/// it over: far longer than a delivery's attempts (1 + 2 + 4 + 8 s… for the default five).
pub const OTHERS_AFTER: Duration = Duration::from_secs(600);

/// One sink with its filter.
pub struct Route {
    pub sink: Arc<dyn Sink>,
    pub filter: Filter,
}

enum Batch {
    Announce(Vec<Notification>),
    Record(Vec<(String, String)>),
}

/// Which cycle last handed over a notification of each state (`key`), so that a cycle that
/// started earlier but ended later does not announce a state a later cycle has already
/// moved past. Cycles overlap: a cycle woken by an event or a webhook reconciles a service
/// as soon as the full cycle that started before it has finished with that service, and
/// may end first; the ledger remembers only the last change of each state, so the older
/// cycle's view, handed over last, would read as new and be sent again (found by the chaos
/// soak: one "awaiting approval" sent twice for each of two heads). Only the same state is
/// held back: a later cycle's word on another state of the service (prod awaiting approval)
/// says nothing about this one (dev promoted), which was once dropped and never announced
/// (found by the soak too).
#[derive(Debug, Default)]
pub struct Freshness(std::sync::Mutex<HashMap<String, u64>>);

impl Freshness {
    /// `notes` of cycle `seq` (cycles are numbered as they start), without those of a state
    /// that a later cycle has already announced; the rest mark their states.
    pub fn admit(&self, seq: u64, notes: Vec<Notification>) -> Vec<Notification> {
        let Ok(mut last) = self.0.lock() else {
            return notes;
        };
        notes
            .into_iter()
            .filter(|n| {
                if n.service.is_none() {
                    return true; // tugboat's own health: no cycle's view
                }
                let newer = last.get(&n.key).is_some_and(|s| *s > seq);
                if newer {
                    tracing::debug!(key = %n.key, change = %n.change, "a later cycle announced this state; not announcing an older view");
                } else {
                    last.insert(n.key.clone(), seq);
                }
                !newer
            })
            .collect()
    }
}

/// Hands notifications to the ledger and the sinks' tasks.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Batch>,
    sinks: Arc<Vec<(String, Filter)>>,
    metrics: NotifyMetrics,
    /// The ledger's task and the sinks' tasks, for [`Notifier::finish`].
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// What became of each delivery, when kept ([`Notifier::tallied`]).
    tally: Option<Tally>,
}

/// What became of each delivery to each sink, kept for a run that reports it (`tugboat
/// once`); a daemon keeps none (its metrics count them).
#[derive(Clone, Default)]
struct Tally(Arc<std::sync::Mutex<BTreeMap<(String, String), Delivery>>>);

impl Tally {
    fn set(&self, sink: &str, id: &str, n: &Notification, outcome: Outcome) {
        if let Ok(mut map) = self.0.lock() {
            let delivery = Delivery {
                sink: sink.to_owned(),
                event: n.kind.as_str(),
                key: n.key.clone(),
                outcome,
            };
            map.insert((sink.to_owned(), id.to_owned()), delivery);
        }
    }
}

/// One notification's delivery to one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub sink: String,
    pub event: &'static str,
    /// The state it announces (`promoted/service/environment`, …).
    pub key: String,
    pub outcome: Outcome,
}

/// Where a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Every attempt failed, or the sink refused it: the last error.
    Failed(String),
    /// Never tried: why.
    Dropped(String),
    /// Still being tried when the wait for it ended.
    Pending,
}

/// A sink's queue.
struct Lane {
    name: String,
    filter: Filter,
    tx: mpsc::Sender<(Arc<Notification>, String)>,
}

impl Notifier {
    /// Start the ledger task and one delivery task per sink. They end when every
    /// `Notifier` clone is dropped (and their queues are drained).
    pub fn start(
        routes: Vec<Route>,
        ledger: Arc<dyn Ledger>,
        clock: Arc<dyn Clock>,
        metrics: NotifyMetrics,
        attempts: u32,
    ) -> Self {
        Self::spawn(routes, ledger, clock, metrics, attempts, None)
    }

    /// The same, keeping what became of each delivery for [`Notifier::finish`].
    pub fn tallied(
        routes: Vec<Route>,
        ledger: Arc<dyn Ledger>,
        clock: Arc<dyn Clock>,
        metrics: NotifyMetrics,
        attempts: u32,
    ) -> Self {
        let tally = Some(Tally::default());
        Self::spawn(routes, ledger, clock, metrics, attempts, tally)
    }

    fn spawn(
        routes: Vec<Route>,
        ledger: Arc<dyn Ledger>,
        clock: Arc<dyn Clock>,
        metrics: NotifyMetrics,
        attempts: u32,
        tally: Option<Tally>,
    ) -> Self {
        let mut tasks = Vec::new();
        let mut lanes = Vec::new();
        let (done, settled) = mpsc::unbounded_channel();
        if !routes.is_empty() {
            let settler = Settler {
                ledger: ledger.clone(),
            };
            tasks.push(tokio::spawn(settler.run(settled)));
        }
        for route in routes {
            let (tx, rx) = mpsc::channel(DELIVERIES_QUEUED);
            lanes.push(Lane {
                name: route.sink.name().to_owned(),
                filter: route.filter,
                tx,
            });
            let courier = Courier {
                sink: route.sink,
                clock: clock.clone(),
                metrics: metrics.clone(),
                attempts: attempts.max(1),
                tally: tally.clone(),
                done: done.clone(),
            };
            tasks.push(tokio::spawn(courier.run(rx)));
        }
        let sinks = lanes
            .iter()
            .map(|l| (l.name.clone(), l.filter.clone()))
            .collect();
        let (tx, rx) = mpsc::channel(BATCHES_QUEUED);
        let recorder = Recorder {
            ledger,
            lanes,
            metrics: metrics.clone(),
            known: quick_cache::sync::Cache::new(KNOWN_ENTRIES),
            tally: tally.clone(),
            done,
        };
        tasks.push(tokio::spawn(recorder.run(rx)));
        Self {
            tx,
            sinks: Arc::new(sinks),
            metrics,
            tasks: Arc::new(std::sync::Mutex::new(tasks)),
            tally,
        }
    }

    /// Stop taking notifications and wait, up to `within`, for every one handed over to be
    /// recorded and delivered (retries included); then stop trying. What became of each
    /// delivery, when kept ([`Notifier::tallied`]): one still being tried is `Pending`, one
    /// never handed to its sink (the ledger could not record it) is `Dropped`. Other clones
    /// of this notifier must be dropped first, or the wait lasts `within`.
    pub async fn finish(self, within: Duration) -> Vec<Delivery> {
        let tasks = self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        let tally = self.tally.clone();
        drop(self);
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!(within = ?within, "stopped waiting for notifications still being delivered");
            for a in aborts {
                a.abort();
            }
        }
        let Some(Tally(map)) = tally else {
            return Vec::new();
        };
        map.lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Announce `notes` (each change at most once); returns at once.
    pub fn submit(&self, notes: Vec<Notification>) {
        if notes.is_empty() {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(Batch::Announce(notes))) =
            self.tx.try_send(Batch::Announce(notes))
        {
            tracing::warn!(
                count = notes.len(),
                "the notification queue is full; dropping these"
            );
            for n in &notes {
                for (sink, filter) in self.sinks.iter() {
                    if filter.admits(n) {
                        self.metrics.count(sink, n.kind.as_str(), "dropped");
                    }
                }
            }
        }
    }

    /// Record changes that are not announced (a recovery), so that the next one is new.
    pub fn record(&self, changes: Vec<(String, String)>) {
        if !changes.is_empty() {
            let _ = self.tx.try_send(Batch::Record(changes));
        }
    }

    /// Hand over what a cycle's health check found.
    pub fn observed(&self, o: Observed) {
        self.submit(o.send);
        self.record(o.record);
    }
}

/// Records changes in the ledger and passes the new ones to the sinks' lanes.
struct Recorder {
    ledger: Arc<dyn Ledger>,
    lanes: Vec<Lane>,
    metrics: NotifyMetrics,
    /// The last change recorded per key, as the ledger answered: what is known needs no
    /// ledger round trip.
    known: quick_cache::sync::Cache<String, String>,
    tally: Option<Tally>,
    /// Where a parcel no sink will be handed is reported done.
    done: mpsc::UnboundedSender<(String, String)>,
}

impl Recorder {
    /// Handle batches as they come; at the start and every [`SWEEP_EVERY`], first take
    /// over what dead processes left in the outbox.
    async fn run(self, mut rx: mpsc::Receiver<Batch>) {
        if !self.lanes.is_empty() {
            self.sweep().await;
        }
        let mut sweep = tokio::time::Instant::now() + SWEEP_EVERY;
        loop {
            let batch = tokio::select! {
                biased;
                () = tokio::time::sleep_until(sweep), if !self.lanes.is_empty() => {
                    self.sweep().await;
                    sweep = tokio::time::Instant::now() + SWEEP_EVERY;
                    continue;
                }
                batch = rx.recv() => batch,
            };
            let Some(batch) = batch else { break };
            let (notes, records) = match batch {
                Batch::Announce(n) => (n, Vec::new()),
                Batch::Record(r) => (Vec::new(), r),
            };
            self.handle(notes, records).await;
        }
    }

    /// Deliver what a dead process left in the outbox, to the sinks that do not have it.
    async fn sweep(&self) {
        let parcels = match self.ledger.undelivered(OTHERS_AFTER).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the ledger's outbox; trying again later");
                return;
            }
        };
        for p in parcels {
            let n = &p.notification;
            tracing::info!(event = n.kind.as_str(), key = %n.key, delivery = %p.id, sinks = ?p.sinks, "delivering a notification a stopped tugboat did not");
            self.known.insert(n.key.clone(), n.change.clone());
            for gone in p
                .sinks
                .iter()
                .filter(|s| !self.lanes.iter().any(|l| &l.name == *s))
            {
                tracing::info!(sink = %gone, delivery = %p.id, "no such sink any more; not delivering there");
                let _ = self.done.send((p.id.clone(), gone.clone()));
            }
            self.hand_over(Arc::new(p.notification), &p.id, |l| {
                p.sinks.contains(&l.name)
            });
        }
    }

    fn is_known(&self, key: &str, change: &str) -> bool {
        self.known.get(key).is_some_and(|c| c == change)
    }

    async fn handle(&self, notes: Vec<Notification>, records: Vec<(String, String)>) {
        // The last word per key; only what some sink takes, and the ledger may not have.
        let mut wanted: BTreeMap<String, Notification> = BTreeMap::new();
        for n in notes {
            if self.lanes.iter().any(|l| l.filter.admits(&n)) && !self.is_known(&n.key, &n.change) {
                wanted.insert(n.key.clone(), n);
            }
        }
        let wanted: Vec<Notification> = wanted.into_values().collect();
        let mut changes: Vec<(String, String)> = wanted
            .iter()
            .map(|n| (n.key.clone(), n.change.clone()))
            .collect();
        changes.extend(records.into_iter().filter(|(k, c)| !self.is_known(k, c)));
        if changes.is_empty() {
            return;
        }
        let announcements = self.announcements(&wanted, changes.clone());
        match self.announce(&announcements).await {
            Ok(fresh) => {
                for (key, change) in &changes {
                    self.known.insert(key.clone(), change.clone());
                }
                for (n, fresh) in wanted.into_iter().zip(fresh) {
                    if fresh {
                        self.dispatch(n);
                    } else {
                        tracing::debug!(key = %n.key, change = %n.change, "announced before (the ledger has it)");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, count = wanted.len(), "the ledger cannot record notifications; they are not sent (an unhealthy one is)");
                for n in wanted {
                    if n.kind == Kind::Unhealthy {
                        self.dispatch(n);
                    } else {
                        self.count(&n, "dropped");
                        self.tally_all(
                            &n,
                            &Outcome::Dropped(format!("the ledger cannot record it: {e}")),
                        );
                    }
                }
            }
        }
    }

    /// `changes` to record, those of `wanted` with the notification for the outbox (first,
    /// in the same order).
    fn announcements(
        &self,
        wanted: &[Notification],
        changes: Vec<(String, String)>,
    ) -> Vec<Announcement> {
        let mut parcels = wanted.iter().map(|n| Parcel {
            id: delivery_id(n),
            notification: n.clone(),
            sinks: self
                .lanes
                .iter()
                .filter(|l| l.filter.admits(n))
                .map(|l| l.name.clone())
                .collect(),
        });
        changes
            .into_iter()
            .map(|(key, change)| Announcement {
                key,
                change,
                parcel: parcels.next(),
            })
            .collect()
    }

    async fn announce(&self, changes: &[Announcement]) -> PortResult<Vec<bool>> {
        let mut attempt = 1;
        loop {
            match self.ledger.announce(changes).await {
                Ok(fresh) => return Ok(fresh),
                Err(e) if attempt < LEDGER_ATTEMPTS && e.kind != ErrorKind::Rejected => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn count(&self, n: &Notification, result: &str) {
        for lane in self.lanes.iter().filter(|l| l.filter.admits(n)) {
            self.metrics.count(&lane.name, n.kind.as_str(), result);
        }
    }

    /// Keep `outcome` for every sink that takes `n`, when deliveries are tallied.
    fn tally_all(&self, n: &Notification, outcome: &Outcome) {
        if let Some(tally) = &self.tally {
            let id = delivery_id(n);
            for lane in self.lanes.iter().filter(|l| l.filter.admits(n)) {
                tally.set(&lane.name, &id, n, outcome.clone());
            }
        }
    }

    fn dispatch(&self, n: Notification) {
        let id = delivery_id(&n);
        tracing::info!(event = n.kind.as_str(), key = %n.key, delivery = %id, "notifying");
        let n = Arc::new(n);
        self.hand_over(n.clone(), &id, |l| l.filter.admits(&n));
    }

    /// Queue `n` for each sink `to` chooses; one whose queue is full drops it (counted, and
    /// struck from the outbox: a backlog that long is not worth a redelivery).
    fn hand_over(&self, n: Arc<Notification>, id: &str, to: impl Fn(&Lane) -> bool) {
        for lane in self.lanes.iter().filter(|l| to(l)) {
            let outcome = if lane.tx.try_send((n.clone(), id.to_owned())).is_err() {
                tracing::warn!(sink = %lane.name, "the sink's queue is full; dropping a notification");
                self.metrics.count(&lane.name, n.kind.as_str(), "dropped");
                let _ = self.done.send((id.to_owned(), lane.name.clone()));
                Outcome::Dropped("the sink's queue was full".to_owned())
            } else {
                Outcome::Pending
            };
            if let Some(tally) = &self.tally {
                tally.set(&lane.name, id, &n, outcome);
            }
        }
    }
}

/// Strikes what each sink has (delivered, or given up on) from the ledger's outbox, in
/// batches of whatever finished meanwhile. A batch the ledger cannot take is tried again
/// with the next; one still unrecorded at the end stays in the outbox, and the process
/// that takes it over delivers it again under the same delivery id (at least once).
struct Settler {
    ledger: Arc<dyn Ledger>,
}

impl Settler {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<(String, String)>) {
        let mut behind: Vec<(String, String)> = Vec::new();
        while let Some(first) = rx.recv().await {
            behind.push(first);
            while let Ok(more) = rx.try_recv() {
                behind.push(more);
            }
            if self.record(&behind).await {
                behind.clear();
            } else if behind.len() > STRIKES_KEPT {
                // The ledger has been down for that many deliveries: keep the newest; a
                // successor sends the oldest again (at least once), nothing is lost.
                let over = behind.len() - STRIKES_KEPT;
                tracing::warn!(
                    count = over,
                    "too many deliveries wait to be struck from the outbox; forgetting the oldest strikes"
                );
                behind.drain(..over);
            }
        }
        if !behind.is_empty() {
            tracing::warn!(
                count = behind.len(),
                "the ledger did not record these deliveries; whoever takes them over sends them again"
            );
        }
    }

    async fn record(&self, done: &[(String, String)]) -> bool {
        for attempt in 1..=LEDGER_ATTEMPTS {
            match self.ledger.delivered(done).await {
                Ok(()) => return true,
                Err(e) if attempt < LEDGER_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "recording deliveries in the ledger failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, count = done.len(), "the ledger cannot record deliveries now; trying again with the next");
                }
            }
        }
        false
    }
}

/// `1s`, `2s`, `4s`… for attempt 1, 2, 3…, at most [`MAX_BACKOFF`].
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

/// Delivers one sink's notifications in order, each with its retries.
struct Courier {
    sink: Arc<dyn Sink>,
    clock: Arc<dyn Clock>,
    metrics: NotifyMetrics,
    attempts: u32,
    tally: Option<Tally>,
    /// Where each finished delivery is reported, for the outbox.
    done: mpsc::UnboundedSender<(String, String)>,
}

impl Courier {
    async fn run(self, mut rx: mpsc::Receiver<(Arc<Notification>, String)>) {
        while let Some((n, id)) = rx.recv().await {
            failpoint!("notify");
            let outcome = self.deliver(&n, &id).await;
            let _ = self.done.send((id.clone(), self.sink.name().to_owned()));
            let result = match outcome {
                Outcome::Sent => "sent",
                _ => "failed",
            };
            self.metrics
                .count(self.sink.name(), n.kind.as_str(), result);
            if let Some(tally) = &self.tally {
                tally.set(self.sink.name(), &id, &n, outcome);
            }
        }
    }

    async fn deliver(&self, n: &Notification, id: &str) -> Outcome {
        let sink = self.sink.name();
        for attempt in 1..=self.attempts {
            let Err(e) = self.sink.send(n, id, self.clock.now()).await else {
                tracing::info!(
                    sink,
                    event = n.kind.as_str(),
                    delivery = id,
                    attempt,
                    "notification sent"
                );
                return Outcome::Sent;
            };
            let refused = matches!(
                e.kind,
                ErrorKind::Rejected | ErrorKind::NotFound | ErrorKind::Denied
            );
            if refused || attempt == self.attempts {
                tracing::warn!(sink, event = n.kind.as_str(), delivery = id, attempt, error = %e, "notification not delivered; giving up");
                return Outcome::Failed(e.to_string());
            }
            tracing::info!(sink, event = n.kind.as_str(), delivery = id, attempt, error = %e, "notification not delivered; retrying");
            self.metrics
                .retries
                .get_or_create(&crate::metrics::SinkLabels {
                    sink: sink.to_owned(),
                })
                .inc();
            tokio::time::sleep(backoff(attempt)).await;
        }
        Outcome::Failed("no attempt was made".to_owned())
    }
}
