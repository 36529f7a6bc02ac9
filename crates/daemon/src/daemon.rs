//! `tugboat run`: reconcile cycles on the interval (or at once when woken by SIGHUP, a
//! webhook or a finished rescan), cron-scheduled jobs claimed in the ledger, a rescan beside
//! the cycles (never two at once), and `/healthz`, `/readyz`, `/metrics` and the webhook
//! endpoint, until shutdown.
//!
//! [`run`] wires it from a configuration; [`Daemon`] is the loop itself, over any ports and
//! clock, which is what the tests drive in paused time.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::dashboard::Row;
use crate::engine::EnvReport;
use crate::engine::rescan::Scope;
use crate::engine::scheduler::{self, Due, Job};
use crate::engine::{Engine, Inbox, Mode, Wanted};
use crate::events::{Listener, Routes};
use crate::metrics::Metrics;
use crate::notify::{Health, Notifier, Route};
use crate::ports::EventQueue;
use crate::telemetry::{ApiCounts, ApiMetrics};

/// Run the daemon on `cfg` until `shutdown` resolves.
pub async fn run(
    cfg: Arc<Config>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let api = ApiMetrics::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let signal = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let Some(ports) = start_ports(&cfg, &api, stop_rx.clone()).await? else {
        return Ok(()); // stopped while starting
    };
    let engine = Engine::new(cfg.clone(), ports);
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("binding {}", cfg.server.listen))?;
    let mut daemon = Daemon::new(cfg.clone(), engine, api.clone(), Arc::new(SystemClock));
    if let Some(queue) = crate::app::event_queue(&cfg, &api).await {
        daemon = daemon.with_events(queue);
    }
    let routes = crate::app::notification_routes(&cfg).await?;
    if !routes.is_empty() {
        daemon = daemon.with_notifications(routes);
    }
    let daemon = Arc::new(daemon);
    let election = match &cfg.election {
        Some(e) => Some(Election::start(e, &api).await?),
        None => None,
    };
    let webhook = match crate::app::webhook_secret(&cfg).await? {
        Some(secret) => {
            let hook = crate::webhook::Webhook::new(secret, daemon.engine.inbox());
            Some(Arc::new(match &election {
                Some(e) => hook.with_relay(e.relay().map_err(anyhow::Error::msg)?),
                None => hook,
            }))
        }
        None => None,
    };
    tracing::info!(
        listen = %listener.local_addr()?,
        webhooks = webhook.is_some(),
        events = daemon.events.is_some(),
        "serving /healthz, /readyz, /metrics{}",
        if webhook.is_some() { " and /webhooks/github" } else { "" }
    );
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(crate::server::serve(
        listener,
        daemon.metrics.clone(),
        webhook,
        async move {
            let _ = server_stop.changed().await;
        },
    ));
    #[cfg(unix)]
    let hangup = tokio::spawn(on_hangup(daemon.clone()));
    match election {
        None => daemon.cycles(stop_rx).await,
        Some(e) => {
            let (release_tx, release_rx) = watch::channel(false);
            let leading = e.leading.clone();
            let electing = tokio::spawn(e.elector.run(e.leading_tx, release_rx));
            daemon.lead(leading, stop_rx).await;
            // Stopped: release the lease so a follower takes over at once.
            let _ = release_tx.send(true);
            let _ = electing.await;
        }
    }
    signal.abort();
    #[cfg(unix)]
    hangup.abort();
    let _ = server.await;
    Ok(())
}

/// How long `tugboat run` keeps trying to start while an outside system fails for now (a
/// 5xx, a cut connection, GitHub's secondary rate limit): within the Deployment's
/// startupProbe (30 probes 2 s apart). Then it exits with the last error, and Kubernetes
/// restarts it with its own backoff.
const STARTUP_PATIENCE: Duration = Duration::from_secs(45);

/// The adapters, tried again (1 s, 2 s, 4 s… apart) while what fails is transient, for at
/// most [`STARTUP_PATIENCE`]; `None` when stopped meanwhile. A refusal or a mistake in the
/// configuration fails at once: no retry can mend it.
async fn start_ports(
    cfg: &Config,
    api: &ApiMetrics,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<crate::engine::Ports>> {
    let began = tokio::time::Instant::now();
    let mut pause = Duration::from_secs(1);
    loop {
        let e = match crate::app::owned_ports(cfg, api).await {
            Ok(ports) => return Ok(Some(ports)),
            Err(e) => e,
        };
        if !crate::app::is_transient(&e) || began.elapsed() + pause > STARTUP_PATIENCE {
            return Err(e);
        }
        let error = format!("{e:#}");
        tracing::warn!(error, retry_in = ?pause, "cannot start yet: an outside system is failing for now; trying again");
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return Ok(None),
        }
        pause = (pause * 2).min(Duration::from_secs(16));
    }
}

/// A replica's part in leader election: its candidate for the lease, and whether it leads.
struct Election {
    elector: crate::leader::Elector,
    leading_tx: watch::Sender<bool>,
    leading: watch::Receiver<bool>,
    identity: String,
}

impl Election {
    async fn start(e: &crate::config::ElectionConfig, api: &ApiMetrics) -> anyhow::Result<Self> {
        let (leading_tx, leading) = watch::channel(false);
        let lease = crate::app::lease(e, api).await?;
        let elector =
            crate::leader::Elector::new(lease, &e.identity, e.timing, Arc::new(SystemClock))
                .with_address(e.address.clone());
        if e.address.is_none() {
            tracing::info!(
                "election.address is not set: a webhook delivery that reaches a follower waits for the leader's next poll"
            );
        }
        Ok(Self {
            elector,
            leading_tx,
            leading,
            identity: e.identity.clone(),
        })
    }

    /// The way to the leader for webhook deliveries this replica receives while it follows.
    fn relay(&self) -> Result<crate::adapters::relay::Relay, String> {
        crate::adapters::relay::Relay::new(
            &self.identity,
            self.leading.clone(),
            self.elector.leader(),
        )
    }
}

/// SIGHUP: re-read the policy now and run a cycle without waiting for the interval.
#[cfg(unix)]
async fn on_hangup(daemon: Arc<Daemon>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: the policy will be re-read and a cycle run now");
        daemon.engine.refresh_policy();
        daemon.wake.notify_one();
    }
}

/// The daemon's loop and what it shares with the server and the signal handlers.
pub struct Daemon {
    cfg: Arc<Config>,
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    api: ApiMetrics,
    /// Woken by SIGHUP, webhooks and finished rescans: a cycle runs now.
    pub wake: Arc<Notify>,
    /// The time of day of the scheduler and of the metrics.
    clock: Arc<dyn Clock>,
    /// A scheduled rescan runs beside the cycles (it may wait long for scans); never two.
    rescan_lock: Arc<Mutex<()>>,
    /// `/readyz` fails when no cycle finished for this long (plus the longest health timeout).
    max_age: i64,
    /// The event queue's listener, when `[events]` is configured; it runs while this replica
    /// runs cycles (the leader), so one replica consumes the queue.
    events: Option<Arc<Listener>>,
    /// Where cycles and rescans hand what they announce, when `[notify]` has sinks.
    notifier: Option<Notifier>,
    /// The dependencies' health across cycles, for `unhealthy` notifications.
    health: std::sync::Mutex<Health>,
    /// The dashboard's rows by service and environment, from the last cycle that reconciled
    /// each (`None` until a full cycle ran), and one publication at a time.
    dashboard: std::sync::Mutex<Option<BTreeMap<(String, String), Row>>>,
    publishing: Arc<Mutex<()>>,
    /// Cycles numbered as they start, and which one last announced each service.
    cycles_started: std::sync::atomic::AtomicU64,
    freshness: crate::notify::Freshness,
}

impl Daemon {
    pub fn new(cfg: Arc<Config>, engine: Engine, api: ApiMetrics, clock: Arc<dyn Clock>) -> Self {
        let max_age = i64::try_from(cfg.engine.interval.as_secs() * 3 + 600).unwrap_or(i64::MAX);
        Self {
            metrics: Arc::new(Metrics::new(max_age, &api)),
            engine: Arc::new(engine),
            cfg,
            api,
            wake: Arc::new(Notify::new()),
            clock,
            rescan_lock: Arc::new(Mutex::new(())),
            max_age,
            events: None,
            notifier: None,
            health: std::sync::Mutex::new(Health::new(3)),
            dashboard: std::sync::Mutex::new(None),
            publishing: Arc::new(Mutex::new(())),
            cycles_started: std::sync::atomic::AtomicU64::new(0),
            freshness: crate::notify::Freshness::default(),
        }
    }

    /// Send what cycles and rescans announce to `routes` (the `[notify]` sinks), each change
    /// once (recorded in the ledger first), outside the reconcile path.
    #[must_use]
    pub fn with_notifications(mut self, routes: Vec<Route>) -> Self {
        let (after, attempts) = self
            .cfg
            .notify
            .as_ref()
            .map_or((3, 5), |n| (n.unhealthy_after, n.attempts));
        self.health = std::sync::Mutex::new(Health::new(after));
        self.notifier = Some(Notifier::start(
            routes,
            self.engine.ports().ledger.clone(),
            self.clock.clone(),
            self.metrics.notify.clone(),
            attempts,
        ));
        self
    }

    /// Listen to `queue` for ECR and Inspector events, each waking only its services.
    #[must_use]
    pub fn with_events(mut self, queue: Arc<dyn EventQueue>) -> Self {
        self.events = Some(Arc::new(Listener::new(
            queue,
            Routes::of(&self.cfg),
            self.engine.inbox(),
            self.metrics.clone(),
            self.clock.clone(),
        )));
        self
    }

    /// Cycles until `stop` turns true; a cycle under way is abandoned then (every step is
    /// safe to redo). Rescans still running are abandoned too: their issue writes are
    /// level-triggered and the next rescan redoes them.
    ///
    /// A full cycle runs at start and then an interval after the last one ended; a wake or a
    /// scheduled job asks for one at once. Events and webhooks ask for their services only:
    /// a cycle of just those starts at once, beside any cycle already running, unless one
    /// still reconciles such a service (then it waits for that service, not for the cycle).
    pub async fn cycles(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let (due_tx, mut due_rx) = mpsc::channel::<Due>(8);
        let scheduler = self.scheduler(due_tx);
        let mut rescans = JoinSet::new();
        let listening = self.events.clone().map(|l| {
            tokio::spawn({
                let stop = stop.clone();
                async move { l.run(stop).await }
            })
        });
        let inbox = self.engine.inbox();
        inbox.release_all();
        let mut running = FuturesUnordered::new();
        let mut wanted = Wanted {
            all: true,
            ..Wanted::default()
        };
        let mut next_full: Option<tokio::time::Instant> = None;
        loop {
            while let Some(scope) = self.claim(&inbox, &mut wanted, running.len()) {
                running.push(self.cycle(scope));
            }
            let interval_ends = next_full.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                Some(full) = running.next(), if !running.is_empty() => if full {
                    next_full = Some(tokio::time::Instant::now() + self.cfg.engine.interval);
                },
                () = tokio::time::sleep_until(interval_ends), if next_full.is_some() => {
                    wanted.all = true;
                    next_full = None;
                }
                () = self.wake.notified() => wanted.all = true,
                () = inbox.notified() => wanted.add(inbox.take_wanted()),
                Some(due) = due_rx.recv() => {
                    self.on_due(&due, &mut rescans);
                    wanted.all = true;
                }
                _ = stop.changed() => break,
            }
        }
        tracing::info!("shutting down");
        drop(running);
        inbox.release_all();
        if let Some(s) = scheduler {
            s.abort();
        }
        if let Some(l) = listening {
            l.abort();
        }
        rescans.shutdown().await;
    }

    /// What to reconcile next, claimed in `inbox`: `Some(None)` for every service (only when
    /// no cycle runs; the services asked for meanwhile are part of it), `Some(Some(s))` for
    /// the services asked for that no running cycle holds, or `None` for nothing now.
    fn claim(
        &self,
        inbox: &Inbox,
        wanted: &mut Wanted,
        running: usize,
    ) -> Option<Option<BTreeSet<String>>> {
        if running >= self.cfg.engine.concurrency {
            return None;
        }
        if wanted.all {
            if running > 0 || inbox.is_busy() {
                return None;
            }
            *wanted = Wanted::default();
            let every = self.cfg.services.iter().map(|s| s.name.clone()).collect();
            inbox.claim(&every);
            return Some(None);
        }
        let known: BTreeSet<String> = wanted
            .services
            .iter()
            .filter(|s| self.cfg.services.iter().any(|c| &c.name == *s))
            .cloned()
            .collect();
        let free = inbox.claim(&known);
        // Asked for while a cycle holds them: they wait in `wanted` for their release.
        wanted
            .services
            .retain(|s| known.contains(s) && !free.contains(s));
        (!free.is_empty()).then_some(Some(free))
    }

    /// Under leader election: stand by until this replica leads, then run cycles until `stop`
    /// or until leadership is lost; a cycle under way is abandoned then, as on a stop (every
    /// step is safe to redo), so a replica that lost the lease stops acting at once.
    pub async fn lead(
        self: &Arc<Self>,
        mut leading: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            self.metrics.ready.standby.store(true, Ordering::Relaxed);
            tokio::select! {
                led = leading.wait_for(|l| *l) => if led.is_err() { break },
                _ = stop.changed() => break,
            }
            self.metrics.ready.standby.store(false, Ordering::Relaxed);
            let (term_tx, term_rx) = watch::channel(false);
            let (mut lost, mut stopped) = (leading.clone(), stop.clone());
            let term = tokio::spawn(async move {
                tokio::select! {
                    _ = lost.wait_for(|l| !*l) => {}
                    _ = stopped.changed() => {}
                }
                let _ = term_tx.send(true);
            });
            self.cycles(term_rx).await;
            term.abort();
            if *stop.borrow() {
                break;
            }
            tracing::warn!("leadership lost: standing by");
        }
    }

    /// One reconcile cycle (of only the services in `scope`, when given), recorded in the
    /// metrics and the log. Whether it was a full one.
    async fn cycle(&self, scope: Option<BTreeSet<String>>) -> bool {
        let seq = self.cycles_started.fetch_add(1, Ordering::Relaxed);
        let before = self.api.snapshot();
        let started = tokio::time::Instant::now();
        if let Some(services) = &scope {
            tracing::info!(services = ?services, "reconciling the services an event or a webhook concerned");
            self.metrics.events.scoped_cycles.inc();
        }
        let result = self.engine.cycle_of(Mode::Apply, scope.as_ref()).await;
        let calls = self.api.since(&before);
        let error = result.as_ref().err().map(ToString::to_string);
        if let Some(e) = &error {
            tracing::error!(error = %e, "cycle failed");
        }
        let outcome = match (&result, &error) {
            (Ok(reports), _) => Ok(reports.as_slice()),
            (Err(_), e) => Err(e.as_deref().unwrap_or_default()),
        };
        let now = self.clock.now();
        self.metrics
            .record_cycle(outcome, scope.is_none(), started.elapsed(), &calls, now);
        self.metrics.record_forged(&self.engine.take_forged());
        self.metrics
            .ready
            .policy_loaded
            .store(self.engine.policy_loaded(), Ordering::Relaxed);
        // A cycle verifies merges inline: it may take a health timeout longer than usual.
        let verifying = i64::try_from(self.engine.longest_health_timeout().as_secs());
        self.metrics
            .set_max_cycle_age_secs(self.max_age.saturating_add(verifying.unwrap_or(i64::MAX)));
        log_calls(&calls);
        if let Ok(reports) = &result {
            self.publish_dashboard(reports, scope.is_none());
        }
        if let Some(notifier) = &self.notifier {
            if let Ok(reports) = &result {
                let notes = crate::notify::of_cycle(reports, &self.cfg.argocd.url);
                notifier.submit(self.freshness.admit(seq, notes));
            }
            let observed = self.health.lock().map(|mut h| h.observe(&calls));
            if let Ok(observed) = observed {
                notifier.observed(observed);
            }
        }
        scope.is_none()
    }

    /// Bring the dashboard's rows up to date with a cycle's `reports` (all of them when
    /// `full`) and publish them beside the cycles, one publication after another.
    fn publish_dashboard(&self, reports: &[EnvReport], full: bool) {
        if !self.cfg.github.dashboard {
            return;
        }
        let rows = {
            let Ok(mut table) = self.dashboard.lock() else {
                return;
            };
            if full {
                *table = Some(BTreeMap::new());
            }
            let Some(table) = table.as_mut() else {
                return; // no full cycle yet: the table would miss services
            };
            for r in reports {
                let key = (r.service.clone(), r.environment.clone());
                table.insert(key, crate::engine::dashboard::row_of(r));
            }
            table.values().cloned().collect::<Vec<Row>>()
        };
        let (engine, lock, metrics) = (
            self.engine.clone(),
            self.publishing.clone(),
            self.metrics.clone(),
        );
        tokio::spawn(async move {
            let _one_at_a_time = lock.lock().await;
            let result = match engine.publish_dashboard(&rows).await {
                Ok(p) => p.as_str(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot publish the dashboard issue");
                    "error"
                }
            };
            metrics
                .dashboard
                .get_or_create(&crate::metrics::ResultLabels {
                    result: result.to_owned(),
                })
                .inc();
        });
    }

    /// The cron-scheduled jobs, each slot claimed in the GitOps repository's ledger so that
    /// replicas and restarts never run it twice.
    fn scheduler(&self, due: mpsc::Sender<Due>) -> Option<tokio::task::JoinHandle<()>> {
        if self.cfg.schedules.is_empty() {
            return None;
        }
        let jobs = self
            .cfg
            .schedules
            .iter()
            .map(|s| Job {
                name: s.name.clone(),
                schedule: s.schedule.clone(),
                grace: chrono::Duration::from_std(s.grace).unwrap_or(chrono::Duration::MAX),
            })
            .collect();
        let ledger = self.engine.ports().ledger.clone();
        Some(tokio::spawn(scheduler::run(
            jobs,
            self.clock.clone(),
            ledger,
            due,
        )))
    }

    /// A scheduled slot is due: refresh the policy, or start a rescan; a cycle follows.
    fn on_due(self: &Arc<Self>, due: &Due, rescans: &mut JoinSet<()>) {
        tracing::info!(job = %due.job, slot = %due.slot, "scheduled cycle");
        match due.job.as_str() {
            "policy_refresh" => self.engine.refresh_policy(),
            "rescan" => match self.rescan_lock.clone().try_lock_owned() {
                Ok(guard) => {
                    let me = self.clone();
                    rescans.spawn(async move {
                        let _running = guard;
                        me.rescan().await;
                    });
                }
                Err(_) => {
                    tracing::warn!(slot = %due.slot, "the previous rescan is still running; this slot is skipped");
                }
            },
            _ => {}
        }
    }

    /// Rescan everything deployed, then wake a cycle: newer tags that pass the gate get their
    /// promotion PRs now.
    async fn rescan(&self) {
        let result = self.engine.rescan(&Scope::default()).await;
        let now = self.clock.now().timestamp();
        match &result {
            Ok(r) => {
                tracing::info!(
                    images = r.images,
                    started = r.scans_started,
                    failed = r.failed(),
                    seconds = r.duration.as_secs_f64(),
                    "rescan finished"
                );
                self.metrics.rescan.record(Some(r), now);
                if let Some(notifier) = &self.notifier {
                    notifier.submit(crate::notify::of_rescan(r));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "rescan failed");
                self.metrics.rescan.record(None, now);
            }
        }
        self.wake.notify_one();
    }
}

/// One log line with the API calls a cycle made, e.g. `ecr DescribeImages=6 github pulls/list=4`.
pub fn log_calls(calls: &ApiCounts) {
    let total: u64 = calls.values().map(|c| c.calls).sum();
    let errors: u64 = calls.values().map(|c| c.errors).sum();
    let by_operation = calls
        .iter()
        .map(|(k, c)| format!("{} {}={}", k.system, k.operation, c.calls))
        .collect::<Vec<_>>()
        .join(" ");
    // Cycles of other services may run meanwhile: their calls are counted here too.
    tracing::info!(total, errors, calls = %by_operation, "API calls while the cycle ran");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;
    use crate::clock::TokioClock;
    use crate::engine::fake::{self, World};

    /// The fake salon on a clock that moves with tokio's (paused) clock.
    fn salon() -> (Arc<World>, Arc<dyn Clock>) {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(
            chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:30Z")
                .unwrap()
                .into(),
        ));
        (World::salon_on(clock.clone()), clock)
    }

    /// A daemon over the fake world, on a clock that moves with tokio's (paused) clock.
    fn daemon(engine: &str, extra: &str) -> (Arc<World>, Arc<Daemon>) {
        let cfg = fake::config(engine, extra);
        let (w, clock) = salon();
        let engine = Engine::new(cfg.clone(), w.ports()).with_clock(clock.clone());
        let d = Daemon::new(cfg, engine, ApiMetrics::default(), clock);
        (w, Arc::new(d))
    }

    /// The value of a metric line, e.g. `tugboat_cycles_total{result="ok"}`.
    fn metric(d: &Daemon, line: &str) -> Option<f64> {
        d.metrics.encode().lines().find_map(|l| {
            l.strip_prefix(line)
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn cycles_run_on_the_interval_until_shutdown_and_each_is_recorded() {
        let (w, d) = daemon("interval = \"10s\"", "");
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn({
            let d = d.clone();
            async move { d.cycles(stopped).await }
        });
        tokio::time::sleep(Duration::from_secs(35)).await;
        stop.send(true).unwrap();
        running.await.unwrap();
        // At 0, 10, 20 and 30 s.
        assert_eq!(metric(&d, "tugboat_cycles_total{result=\"ok\"}"), Some(4.0));
        assert_eq!(
            w.calls("documents"),
            1,
            "the policy is cached between cycles"
        );
        assert!(d.engine.policy_loaded());
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_runs_no_cycle_says_standby_and_acts_only_while_it_leads() {
        let (w, d) = daemon("interval = \"10s\"", "");
        let (lead, leading) = watch::channel(false);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn({
            let d = d.clone();
            async move { d.lead(leading, stopped).await }
        });
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert_eq!(w.calls("list_images"), 0, "a follower acts on nothing");
        assert!(d.metrics.ready.standby.load(Ordering::Relaxed));
        lead.send(true).unwrap();
        tokio::time::sleep(Duration::from_secs(25)).await;
        // At 35, 45 and 55 s.
        assert_eq!(metric(&d, "tugboat_cycles_total{result=\"ok\"}"), Some(3.0));
        assert!(!d.metrics.ready.standby.load(Ordering::Relaxed));
        lead.send(false).unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            metric(&d, "tugboat_cycles_total{result=\"ok\"}"),
            Some(3.0),
            "lost: no more cycles"
        );
        assert!(d.metrics.ready.standby.load(Ordering::Relaxed));
        stop.send(true).unwrap();
        running.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_push_events_promotes_at_once_in_one_scoped_cycle_despite_a_ten_minute_interval()
     {
        let (w, d) = daemon(
            "interval = \"10m\"",
            "[events]\nqueue_url = \"https://sqs.eu-north-1.amazonaws.com/123456789012/q\"\n",
        );
        let queue = Arc::new(fake::FakeQueue::default());
        let d = Arc::new(Arc::into_inner(d).unwrap().with_events(queue.clone()));
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn({
            let d = d.clone();
            async move { d.cycles(stopped).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(metric(&d, "tugboat_cycles_total{result=\"ok\"}"), Some(1.0));
        let digest = w.push("1.1.0", 'b');
        let now = d.clock.now();
        let burst: Vec<String> = (0..50)
            .map(|i| fake::push_event(&format!("e{i}"), "user_service", "1.1.0", &digest, now))
            .collect();
        queue.send(&burst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            w.main_file(fake::DEV),
            fake::values("1.1.0"),
            "the event promoted it without waiting for the interval"
        );
        assert_eq!(
            metric(&d, "tugboat_scoped_cycles_total"),
            Some(1.0),
            "one reconcile for the burst"
        );
        assert_eq!(metric(&d, "tugboat_cycles_total{result=\"ok\"}"), Some(2.0));
        assert_eq!(queue.deleted().len(), 50);
        assert_eq!(metric(&d, "tugboat_event_queue_up"), Some(1.0));
        stop.send(true).unwrap();
        running.await.unwrap();
    }

    fn services(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn a_service_held_by_a_running_cycle_waits_for_its_release_while_others_start_beside_it()
    {
        let (_w, d) = daemon(
            "",
            "[[services]]\nname = \"booking\"\nrepository = \"booking\"\n[[services.environments]]\nname = \"dev\"\nfiles = [\"apps/booking/dev/values.yaml\"]\nargocd_application = \"booking-dev\"\n",
        );
        let inbox = d.engine.inbox();
        let mut wanted = Wanted {
            all: true,
            ..Wanted::default()
        };
        assert_eq!(
            d.claim(&inbox, &mut wanted, 0),
            Some(None),
            "the first cycle is full"
        );
        assert!(inbox.is_busy());
        // The full cycle finished booking but still verifies user_service.
        inbox.release("booking");
        wanted.add(Wanted {
            services: services(&["user_service", "booking", "nobody"]),
            all: false,
        });
        assert_eq!(
            d.claim(&inbox, &mut wanted, 1),
            Some(Some(services(&["booking"]))),
            "booking starts beside the full cycle"
        );
        assert_eq!(
            wanted.services,
            services(&["user_service"]),
            "an unknown name is dropped"
        );
        assert_eq!(d.claim(&inbox, &mut wanted, 2), None, "user_service waits");
        inbox.release("user_service");
        assert_eq!(
            d.claim(&inbox, &mut wanted, 1),
            Some(Some(services(&["user_service"])))
        );
        assert_eq!(wanted, Wanted::default());
    }

    #[tokio::test]
    async fn a_full_cycle_waits_until_no_cycle_runs_and_takes_the_services_asked_for_meanwhile() {
        let (_w, d) = daemon("", "");
        let inbox = d.engine.inbox();
        let mut wanted = Wanted {
            services: services(&["user_service"]),
            all: false,
        };
        assert_eq!(
            d.claim(&inbox, &mut wanted, 0),
            Some(Some(services(&["user_service"])))
        );
        wanted.add(Wanted {
            services: services(&["user_service"]),
            all: true,
        });
        assert_eq!(d.claim(&inbox, &mut wanted, 1), None, "a cycle still runs");
        inbox.release("user_service");
        assert_eq!(
            d.claim(&inbox, &mut wanted, 1),
            None,
            "it has not ended yet"
        );
        assert_eq!(d.claim(&inbox, &mut wanted, 0), Some(None));
        assert_eq!(
            wanted,
            Wanted::default(),
            "the full cycle covers user_service"
        );
        assert_eq!(d.claim(&inbox, &mut wanted, 1), None);
    }

    /// Seconds of paused time.
    async fn pass(secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_scripted_week_of_promotions_and_a_rollback_yields_the_delivery_figures() {
        let (w, d) = daemon("", "");
        // Every deploy runs Progressing for 45 s before it turns Healthy (or Degraded).
        w.warm_up(chrono::Duration::seconds(45));
        let figure = |line: &str| metric(&d, line).unwrap_or(-1.0);
        // Monday: 1.1.0 is pushed, and dev promotes it five minutes later.
        w.push("1.1.0", 'b');
        pass(300).await;
        d.cycle(None).await;
        // Two hours on (dev's soak is 1 h), prod's PR waits for an approval.
        pass(2 * 3600).await;
        d.cycle(None).await;
        let waiting_since = d.clock.now().timestamp() as f64;
        assert_eq!(
            figure("tugboat_awaiting_approval_since_timestamp_seconds{environment=\"prod\"}"),
            waiting_since,
            "the wait starts at the PR head's commit"
        );
        let prod = w
            .prs()
            .into_iter()
            .find(|p| p.branch == "tugboat/prod/user_service")
            .expect("prod's PR");
        // An hour later alice approves it, and the next cycle merges it.
        pass(3600).await;
        w.allow("alice", crate::ports::Permission::Write);
        w.say(prod.number, "alice", "/approve");
        pass(1).await;
        d.cycle(None).await;
        assert_eq!(
            figure("tugboat_awaiting_approval_since_timestamp_seconds{environment=\"prod\"}"),
            0.0
        );
        // Wednesday: 1.2.0 crashes in dev; tugboat rolls it back.
        pass(2 * 86400).await;
        w.breaks("1.2.0");
        w.push("1.2.0", 'c');
        pass(600).await;
        d.cycle(None).await;
        assert_eq!(w.main_file(fake::DEV), fake::values("1.1.0"), "rolled back");

        let dev = |name: &str| figure(&format!("tugboat_{name}{{environment=\"dev\"}}"));
        assert_eq!(
            figure("tugboat_deployments_total{environment=\"dev\",result=\"healthy\"}"),
            1.0
        );
        assert_eq!(
            figure("tugboat_deployments_total{environment=\"dev\",result=\"failed\"}"),
            1.0,
            "the crashed promotion counts, though its step ended in the rollback"
        );
        assert_eq!(
            figure("tugboat_deployments_total{environment=\"prod\",result=\"healthy\"}"),
            1.0
        );
        assert_eq!(
            dev("rollbacks_total"),
            1.0,
            "change failure rate 1 of 2 in dev"
        );
        assert_eq!(
            figure("tugboat_rollbacks_total{environment=\"prod\"}"),
            -1.0,
            "none in prod"
        );
        // Push → Healthy: 5 min + the 45 s warm-up (within a 1 s poll).
        assert_eq!(dev("lead_time_seconds_count"), 1.0);
        let lead = dev("lead_time_seconds_sum");
        assert!((345.0..=347.0).contains(&lead), "dev lead time {lead}");
        let prod_lead = figure("tugboat_lead_time_seconds_sum{environment=\"prod\"}");
        // Pushed at 0; dev's cycle ends at 345 s; prod's PR opens 2 h later, is approved an
        // hour after that, merged a second later, and Healthy 45 s on.
        let want = (345 + 2 * 3600 + 3600 + 1 + 45) as f64;
        assert!(
            (want..=want + 2.0).contains(&prod_lead),
            "prod lead time {prod_lead}, want {want}"
        );
        // Failure detected (after its 45 s warm-up, Degraded) → the rollback Healthy after its
        // own 45 s warm-up.
        assert_eq!(dev("time_to_restore_seconds_count"), 1.0);
        let restore = dev("time_to_restore_seconds_sum");
        assert!(
            (45.0..=47.0).contains(&restore),
            "time to restore {restore}"
        );
    }

    /// A daemon like [`daemon`] over `w`, announcing to `sink`.
    fn notifying(w: &Arc<World>, clock: Arc<dyn Clock>, sink: &Arc<fake::FakeSink>) -> Daemon {
        let cfg = fake::config("", "");
        let engine = Engine::new(cfg.clone(), w.ports()).with_clock(clock.clone());
        let route = Route {
            sink: sink.clone(),
            filter: crate::domain::notify::Filter::default(),
        };
        Daemon::new(cfg, engine, ApiMetrics::default(), clock).with_notifications(vec![route])
    }

    #[tokio::test(start_paused = true)]
    async fn a_week_of_changes_is_announced_once_each_and_a_restart_announces_nothing_again() {
        let (w, clock) = salon();
        w.warm_up(chrono::Duration::seconds(45));
        let sink = fake::FakeSink::named("slack");
        let d = notifying(&w, clock.clone(), &sink);
        w.push("1.1.0", 'b');
        pass(300).await;
        d.cycle(None).await;
        // dev's soak passes; prod's PR waits for an approval, cycle after cycle.
        pass(2 * 3600).await;
        d.cycle(None).await;
        pass(600).await;
        d.cycle(None).await;
        pass(600).await;
        d.cycle(None).await;
        // 1.2.0 crashes in dev: tugboat rolls it back.
        w.breaks("1.2.0");
        w.push("1.2.0", 'c');
        pass(600).await;
        d.cycle(None).await;
        // An on-call engineer pins dev by hand: the environment is held.
        pass(600).await;
        w.commit_as(fake::DEV, &fake::values("1.0.0"), "oncall");
        d.cycle(None).await;
        pass(600).await;
        d.cycle(None).await;
        pass(10).await;
        assert_eq!(
            sink.log(),
            [
                "promoted user_service/dev",
                "awaiting_approval user_service/prod",
                "rolled_back user_service/dev",
                "held user_service/dev",
            ]
        );
        let held = &sink.sent()[3];
        assert!(held.reason.contains("/resume"), "{}", held.reason);
        assert!(
            held.pr
                .as_ref()
                .is_some_and(|l| l.title.starts_with("Hold issue"))
        );

        // A restart: a new daemon (no memory) over the same world and ledger.
        drop(d);
        let again = fake::FakeSink::named("slack");
        let d = notifying(&w, clock, &again);
        d.cycle(None).await;
        pass(600).await;
        d.cycle(None).await;
        pass(10).await;
        assert_eq!(
            again.log(),
            Vec::<String>::new(),
            "nothing is announced twice"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_dashboard_issue_is_created_once_edited_only_on_change_and_kept_across_restarts() {
        use crate::ports::Issues;
        let (w, clock) = salon();
        let tugboat = || {
            let mut cfg = (*fake::config("", "")).clone();
            cfg.github.dashboard = true;
            let cfg = Arc::new(cfg);
            let engine = Engine::new(cfg.clone(), w.ports()).with_clock(clock.clone());
            Arc::new(Daemon::new(
                cfg,
                engine,
                ApiMetrics::default(),
                clock.clone(),
            ))
        };
        let dashboards = || {
            w.issues()
                .into_iter()
                .filter(|i| i.open && i.labels.contains("dashboard"))
                .collect::<Vec<_>>()
        };
        let d = tugboat();
        d.cycle(None).await;
        pass(1).await;
        let [dash] = dashboards().try_into().expect("one dashboard");
        assert!(dash.labels.contains("tugboat"));
        assert_eq!(
            w.pinned(),
            [dash.number].into(),
            "pinned where the token may"
        );
        for env in ["dev", "prod"] {
            assert!(
                dash.body
                    .contains(&format!("| user_service | {env} | 1.0.0 `")),
                "{}",
                dash.body
            );
        }
        let edits = w.calls("update_issue");
        pass(600).await;
        d.cycle(None).await;
        pass(1).await;
        assert_eq!(w.calls("update_issue"), edits, "nothing changed, no edit");

        w.push("1.1.0", 'b');
        pass(60).await;
        d.cycle(None).await;
        pass(1).await;
        assert_eq!(
            w.calls("update_issue"),
            edits + 1,
            "one edit for the change"
        );
        let body = dashboards()[0].body.clone();
        assert!(body.contains("| user_service | dev | 1.1.0 `"), "{body}");
        assert!(body.contains("| user_service | prod | 1.0.0 `"), "{body}");
        assert!(metric(&d, "tugboat_dashboard_updates_total{result=\"updated\"}") == Some(1.0));

        // A restart, and a stray second dashboard (two replicas racing): one stays.
        let stray = w.seal(&render_stray(crate::domain::seal::unsealed(&body)));
        w.open_issue(
            "tugboat: promotion dashboard",
            &stray,
            &["tugboat".into(), "dashboard".into()],
        )
        .await
        .unwrap();
        let again = tugboat();
        again.cycle(None).await;
        pass(1).await;
        let left = dashboards();
        assert_eq!(left.len(), 1, "the newer one is closed");
        assert_eq!(left[0].number, dash.number, "the oldest is kept");

        // No dashboard while another replica has just claimed its creation.
        for i in dashboards() {
            w.update_issue(i.number, &i.title, &i.body, false)
                .await
                .unwrap();
        }
        // The other replica claimed the creation a moment ago.
        crate::ports::Ledger::claim_change(
            &*w,
            "dashboard",
            "create the dashboard issue",
            Duration::from_secs(600),
        )
        .await
        .unwrap();
        w.claims_are_foreign();
        let rows = [crate::domain::dashboard::Row::default()];
        let published = again.engine.publish_dashboard(&rows).await.unwrap();
        assert_eq!(published, crate::engine::dashboard::Published::LeftToOther);
        assert!(dashboards().is_empty());
    }

    /// A dashboard body another replica might have written.
    fn render_stray(body: &str) -> String {
        format!("{body}\n(another replica's)")
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_runs_a_cycle_at_once_without_waiting_for_the_interval() {
        let (w, d) = daemon("interval = \"1h\"", "");
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn({
            let d = d.clone();
            async move { d.cycles(stopped).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(metric(&d, "tugboat_cycles_total{result=\"ok\"}"), Some(1.0));
        w.push("1.1.0", 'b');
        d.wake.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(metric(&d, "tugboat_cycles_total{result=\"ok\"}"), Some(2.0));
        assert_eq!(
            w.main_file(fake::DEV),
            fake::values("1.1.0"),
            "woken, it promoted"
        );
        stop.send(true).unwrap();
        running.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_scheduled_rescan_runs_beside_the_cycles_once_per_slot_and_wakes_a_cycle() {
        let (w, d) = daemon(
            "interval = \"1h\"",
            "[schedules.rescan]\ncron = \"*/5 * * * *\"\ngrace = \"0s\"",
        );
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn({
            let d = d.clone();
            async move { d.cycles(stopped).await }
        });
        // 10:00:30 → 10:11: the slots of 10:05 and 10:10.
        tokio::time::sleep(Duration::from_secs(630)).await;
        stop.send(true).unwrap();
        running.await.unwrap();
        assert_eq!(
            metric(&d, "tugboat_rescans_total{result=\"ok\"}"),
            Some(2.0)
        );
        assert_eq!(w.calls("claim"), 2, "each slot claimed once in the ledger");
        // The first cycle; then per slot, one when it falls due and one when its rescan
        // finished and woke the loop.
        assert_eq!(metric(&d, "tugboat_cycles_total{result=\"ok\"}"), Some(5.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cycle_under_way_is_abandoned_at_shutdown() {
        let (w, d) = daemon("interval = \"10s\"", "");
        w.push("1.1.0", 'b');
        // Dev never turns healthy: the cycle verifies for its 2 m health timeout.
        w.app(
            "user-service-dev",
            fake::DEV,
            crate::ports::Health::Progressing,
        );
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn({
            let d = d.clone();
            async move { d.cycles(stopped).await }
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        stop.send(true).unwrap();
        running.await.unwrap();
        assert_eq!(metric(&d, "tugboat_cycles_total{result=\"ok\"}"), None);
        assert!(
            tokio::time::Instant::now().elapsed() < Duration::from_secs(1),
            "stopped at once"
        );
    }
}
