//! Leader election: one replica acts (cycles, schedules, rescans), the others stand by. The
//! rule is `domain::lease`; this is the loop around it, over the [`Election`] port: try the
//! lease every `retry_period`, say through a watch channel whether this replica may act, stop
//! acting when a renewal has not succeeded for `renew_deadline` (before the lease can expire
//! for the others), and release the lease on shutdown so a follower takes over at once.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::domain::lease::{self, Record, Step, Timing};
use crate::ports::{Election, PortResult};

/// A candidate for the lease.
pub struct Elector {
    lease: Arc<dyn Election>,
    /// This replica's identity in the lease (its pod name).
    me: String,
    timing: Timing,
    clock: Arc<dyn Clock>,
    /// Where this replica takes webhook deliveries its followers hand on, written into the
    /// lease while it holds it.
    address: Option<String>,
    /// Where the current holder takes them, when another replica holds the lease.
    leader: watch::Sender<Option<String>>,
}

/// What the elector remembers between tries: the record last seen, and when it was first
/// seen as it is (the lease expires that long after, by this replica's clock).
#[derive(Default)]
struct Seen {
    record: Option<(Record, DateTime<Utc>)>,
}

impl Elector {
    pub fn new(lease: Arc<dyn Election>, me: &str, timing: Timing, clock: Arc<dyn Clock>) -> Self {
        Self {
            lease,
            me: me.to_owned(),
            timing,
            clock,
            address: None,
            leader: watch::channel(None).0,
        }
    }

    /// Advertise `address` (a URL of this replica's server) in the lease while leading.
    #[must_use]
    pub fn with_address(mut self, address: Option<String>) -> Self {
        self.address = address;
        self
    }

    /// Where the replica that holds the lease takes webhook deliveries, while another one
    /// than this holds it and has said where (`None` otherwise).
    pub fn leader(&self) -> watch::Receiver<Option<String>> {
        self.leader.subscribe()
    }

    /// Run until `stop` turns true, keeping `leading` true exactly while this replica holds
    /// the lease and renewed it less than `renew_deadline` ago. On stop, a leader releases it.
    pub async fn run(self, leading: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let mut seen = Seen::default();
        let mut renewed: Option<Instant> = None;
        loop {
            match self.try_once(&mut seen).await {
                Ok(true) => renewed = Some(Instant::now()),
                // Someone else holds it (or wrote it first): not ours.
                Ok(false) => renewed = None,
                // Not known: a leader keeps acting until its renew deadline.
                Err(e) => tracing::warn!(error = %e, "the lease could not be read or written"),
            }
            let acting = renewed.is_some_and(|at| at.elapsed() < self.timing.renew_deadline);
            leading.send_if_modified(|was| {
                if *was == acting {
                    return false;
                }
                if acting {
                    tracing::info!(identity = %self.me, "leading: this replica acts now");
                } else {
                    tracing::warn!(identity = %self.me, "not leading: this replica stands by");
                }
                *was = acting;
                true
            });
            tokio::select! {
                () = tokio::time::sleep(self.timing.retry_period) => {}
                _ = stop.changed() => break,
            }
        }
        if *leading.borrow() {
            leading.send_replace(false);
            match self.release().await {
                Ok(()) => tracing::info!(identity = %self.me, "released the lease"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not release the lease; it expires by itself")
                }
            }
        }
    }

    /// One try: take or renew the lease if the rule says so. `true` when it is ours now.
    async fn try_once(&self, seen: &mut Seen) -> PortResult<bool> {
        let now = self.clock.now();
        let current = self.lease.read().await?;
        let observed = match (&current, &seen.record) {
            (Some(v), Some((record, at))) if v.record == *record => *at,
            _ => now,
        };
        seen.record = current.as_ref().map(|v| (v.record.clone(), observed));
        let record = current.as_ref().map(|v| &v.record);
        match lease::step(record, observed, &self.me, now, &self.timing) {
            Step::Wait { holder, until } => {
                tracing::debug!(holder = %holder, until = %until, "the lease is held");
                let address = record.and_then(|r| r.address.clone());
                self.leader.send_if_modified(|was| {
                    let changed = *was != address;
                    *was = address;
                    changed
                });
                Ok(false)
            }
            Step::Write(mut mine) => {
                self.leader.send_if_modified(|was| was.take().is_some());
                mine.address = self.address.clone();
                let version = current.as_ref().map(|v| v.version.as_str());
                self.lease.write(&mine, version).await
            }
        }
    }

    /// Leave the lease without a holder, so that a follower takes it at its next try.
    async fn release(&self) -> PortResult<()> {
        let Some(current) = self.lease.read().await? else {
            return Ok(());
        };
        if current.record.holder.as_deref() != Some(self.me.as_str()) {
            return Ok(());
        }
        self.lease
            .write(&lease::released(&current.record), Some(&current.version))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::clock::TokioClock;
    use crate::ports::{ErrorKind, PortError, Versioned};

    /// An API server's Lease in memory: versions, and conflicts on a stale one.
    #[derive(Default)]
    struct MemLease {
        lease: Mutex<Option<Versioned>>,
        down: Mutex<bool>,
    }

    #[async_trait]
    impl Election for MemLease {
        async fn read(&self) -> PortResult<Option<Versioned>> {
            if *self.down.lock().unwrap() {
                return Err(PortError::new("mem", "read", ErrorKind::Transient, "down"));
            }
            Ok(self.lease.lock().unwrap().clone())
        }
        async fn write(&self, record: &Record, version: Option<&str>) -> PortResult<bool> {
            if *self.down.lock().unwrap() {
                return Err(PortError::new("mem", "write", ErrorKind::Transient, "down"));
            }
            let mut l = self.lease.lock().unwrap();
            if l.as_ref().map(|v| v.version.as_str()) != version {
                return Ok(false);
            }
            let next = l
                .as_ref()
                .map_or(1, |v| v.version.parse::<u64>().unwrap() + 1);
            *l = Some(Versioned {
                record: record.clone(),
                version: next.to_string(),
            });
            Ok(true)
        }
    }

    type Candidate = (
        watch::Receiver<bool>,
        watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    );

    fn candidate(lease: &Arc<MemLease>, me: &str) -> Candidate {
        let (leading_tx, leading_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let elector = Elector::new(
            lease.clone(),
            me,
            Timing::default(),
            Arc::new(TokioClock::starting_at(
                "2026-12-01T00:00:00Z".parse().unwrap(),
            )),
        );
        let task = tokio::spawn(elector.run(leading_tx, stop_rx));
        (leading_rx, stop_tx, task)
    }

    #[tokio::test(start_paused = true)]
    async fn one_replica_leads_a_released_lease_passes_at_once_and_a_lost_one_after_it_expires() {
        let lease = Arc::new(MemLease::default());
        let (a, a_stop, _) = candidate(&lease, "a");
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (b, b_stop, _) = candidate(&lease, "b");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(*a.borrow() && !*b.borrow(), "a leads, b stands by");

        // a shuts down: it releases the lease, and b leads at its next try.
        a_stop.send(true).unwrap();
        let t0 = Instant::now();
        let mut b2 = b.clone();
        b2.wait_for(|l| *l).await.unwrap();
        assert!(t0.elapsed() <= Duration::from_secs(2), "{:?}", t0.elapsed());
        b_stop.send(true).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_cannot_renew_stops_acting_before_its_lease_can_expire() {
        let lease = Arc::new(MemLease::default());
        let (a, _a_stop, _) = candidate(&lease, "a");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(*a.borrow());
        // The API server is unreachable: a stops at its renew deadline (10 s), before the
        // lease it renewed last could expire for anyone else (15 s).
        *lease.down.lock().unwrap() = true;
        let t0 = Instant::now();
        let mut a2 = a.clone();
        a2.wait_for(|l| !*l).await.unwrap();
        let stopped = t0.elapsed();
        assert!(stopped <= Duration::from_secs(10), "{stopped:?}");
        assert!(stopped < Timing::default().lease_duration);
    }

    #[tokio::test(start_paused = true)]
    async fn a_killed_leaders_lease_is_taken_once_it_expires() {
        let lease = Arc::new(MemLease::default());
        let (a, _a_stop, a_task) = candidate(&lease, "a");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(*a.borrow());
        a_task.abort(); // killed: no release
        let (b, _b_stop, _) = candidate(&lease, "b");
        let t0 = Instant::now();
        let mut b2 = b.clone();
        b2.wait_for(|l| *l).await.unwrap();
        let took = t0.elapsed();
        assert!(took <= Duration::from_secs(15 + 2), "{took:?}");
    }
}
