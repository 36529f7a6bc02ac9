//! Runs jobs on cron schedules: sleeps on tokio's clock until the next slot, claims the slot
//! in the shared [`Ledger`] (so two replicas, or a restarted one, never run it twice), then
//! hands it to the caller. At start-up, a slot missed while nobody was running is caught up
//! once if it is at most the job's grace period late.
//!
//! Slots are claimed before they run: a crash during a run loses that run rather than
//! repeating it (at most once per slot). The next slot runs as usual.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::domain::schedule::Schedule;
use crate::ports::Ledger;

/// One scheduled job.
#[derive(Debug, Clone)]
pub struct Job {
    /// A stable name: the ledger key, and what the caller receives.
    pub name: String,
    pub schedule: Schedule,
    /// How late a missed slot may still run at start-up.
    pub grace: chrono::Duration,
}

pub use crate::clock::{Clock, SystemClock, TokioClock};

/// A slot that is due: which job, and the instant it was scheduled for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub job: String,
    pub slot: DateTime<Utc>,
}

/// The receiver of due slots is gone: the scheduler has nobody to run for.
struct Closed;

/// Claim `slot` for `job` and, when this process won it, send it. A ledger error skips the
/// slot (logged): it never runs unclaimed.
async fn fire(
    ledger: &dyn Ledger,
    due: &mpsc::Sender<Due>,
    job: &str,
    slot: DateTime<Utc>,
) -> Result<(), Closed> {
    match ledger.claim(job, slot).await {
        Ok(true) => {
            tracing::info!(job, slot = %slot, "scheduled run");
            due.send(Due {
                job: job.to_owned(),
                slot,
            })
            .await
            .map_err(|_| Closed)
        }
        Ok(false) => Ok(()),
        Err(e) => {
            tracing::error!(job, slot = %slot, error = %e, "cannot record the scheduled run; skipping this slot");
            Ok(())
        }
    }
}

/// Run `jobs` until `due` is closed: send each slot this process claims. Never returns early
/// on errors; a job whose schedule has no further slot is dropped.
pub async fn run(
    jobs: Vec<Job>,
    clock: Arc<dyn Clock>,
    ledger: Arc<dyn Ledger>,
    due: mpsc::Sender<Due>,
) {
    // Catch up what was missed while no tugboat ran.
    let now = clock.now();
    let mut next: Vec<(Job, Option<DateTime<Utc>>)> = Vec::new();
    for job in jobs {
        match ledger.last_run(&job.name).await {
            Ok(last) => {
                if let Some(slot) = job.schedule.missed(last, now, job.grace) {
                    tracing::info!(job = %job.name, slot = %slot, "catching up a missed run");
                    if fire(ledger.as_ref(), &due, &job.name, slot).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(job = %job.name, error = %e, "cannot read the last run; no catch-up this start");
            }
        }
        let first = job.schedule.next_after(now);
        next.push((job, first));
    }
    loop {
        let Some((i, slot)) = next
            .iter()
            .enumerate()
            .filter_map(|(i, (_, s))| s.map(|s| (i, s)))
            .min_by_key(|(_, s)| *s)
        else {
            return;
        };
        let wait = (slot - clock.now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = due.closed() => return,
        }
        let job = &next[i].0;
        if fire(ledger.as_ref(), &due, &job.name, slot).await.is_err() {
            return;
        }
        next[i].1 = job.schedule.next_after(slot.max(clock.now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::PortResult;
    use async_trait::async_trait;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// A shared in-memory ledger, as two replicas would see the Git one.
    #[derive(Default)]
    struct MemLedger(Mutex<BTreeMap<String, DateTime<Utc>>>);

    #[async_trait]
    impl Ledger for MemLedger {
        async fn last_run(&self, job: &str) -> PortResult<Option<DateTime<Utc>>> {
            Ok(self.0.lock().unwrap().get(job).copied())
        }
        async fn claim(&self, job: &str, slot: DateTime<Utc>) -> PortResult<bool> {
            let mut g = self.0.lock().unwrap();
            if g.get(job).is_some_and(|l| *l >= slot) {
                return Ok(false);
            }
            g.insert(job.to_owned(), slot);
            Ok(true)
        }
        async fn claim_change(&self, _: &str, _: &str, _: std::time::Duration) -> PortResult<bool> {
            Ok(true) // the scheduler claims no PR
        }
        async fn announce(&self, changes: &[crate::ports::Announcement]) -> PortResult<Vec<bool>> {
            // The scheduler announces nothing; a ledger that never heard of a change says so.
            Ok(vec![true; changes.len()])
        }
        async fn undelivered(
            &self,
            _: std::time::Duration,
        ) -> PortResult<Vec<crate::ports::Parcel>> {
            Ok(Vec::new()) // nothing announced, nothing to deliver
        }
        async fn delivered(&self, _: &[(String, String)]) -> PortResult<()> {
            Ok(())
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn rescan(zone: &str) -> Job {
        Job {
            name: "rescan".into(),
            schedule: Schedule::parse("0 6 * * MON", zone).unwrap(),
            grace: chrono::Duration::hours(6),
        }
    }

    /// Start `replicas` schedulers at `start` on one ledger, live through `days` of paused
    /// time, and return every slot any of them ran.
    async fn live(
        jobs: Vec<Job>,
        ledger: Arc<MemLedger>,
        start: &str,
        replicas: usize,
        days: u64,
    ) -> Vec<Due> {
        let (tx, mut rx) = mpsc::channel(256);
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(utc(start)));
        let mut tasks = Vec::new();
        for _ in 0..replicas {
            tasks.push(tokio::spawn(run(
                jobs.clone(),
                clock.clone(),
                ledger.clone(),
                tx.clone(),
            )));
        }
        drop(tx);
        tokio::time::sleep(std::time::Duration::from_secs(days * 86_400)).await;
        for t in &tasks {
            t.abort();
        }
        let mut seen = Vec::new();
        while let Ok(d) = rx.try_recv() {
            seen.push(d);
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn a_week_of_paused_time_runs_the_rescan_exactly_once_on_monday_at_six_utc() {
        let ledger = Arc::new(MemLedger::default());
        let seen = live(vec![rescan("UTC")], ledger, "2026-11-19T12:00:00Z", 1, 7).await;
        assert_eq!(
            seen,
            [Due {
                job: "rescan".into(),
                slot: utc("2026-11-23T06:00:00Z")
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn two_replicas_on_one_ledger_run_each_slot_once() {
        let ledger = Arc::new(MemLedger::default());
        let seen = live(vec![rescan("UTC")], ledger, "2026-11-19T12:00:00Z", 2, 15).await;
        let slots: Vec<_> = seen.iter().map(|d| d.slot).collect();
        assert_eq!(
            slots,
            [utc("2026-11-23T06:00:00Z"), utc("2026-11-30T06:00:00Z")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_missed_while_down_is_caught_up_once_after_a_restart() {
        let ledger = Arc::new(MemLedger::default());
        ledger
            .claim("rescan", utc("2026-11-16T06:00:00Z"))
            .await
            .unwrap();
        // Down over Monday 06:00; back at 08:30.
        let seen = live(
            vec![rescan("UTC")],
            ledger.clone(),
            "2026-11-23T08:30:00Z",
            1,
            1,
        )
        .await;
        assert_eq!(
            seen,
            [Due {
                job: "rescan".into(),
                slot: utc("2026-11-23T06:00:00Z")
            }]
        );
        // Restarted again at 09:00: already run, nothing to catch up.
        let seen = live(
            vec![rescan("UTC")],
            ledger.clone(),
            "2026-11-23T09:00:00Z",
            1,
            1,
        )
        .await;
        assert!(seen.is_empty(), "{seen:?}");
        // Back only on Tuesday: beyond the grace period, the slot is skipped.
        let fresh = Arc::new(MemLedger::default());
        let seen = live(vec![rescan("UTC")], fresh, "2026-11-24T09:00:00Z", 1, 1).await;
        assert!(seen.is_empty(), "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_schedule_in_a_time_zone_runs_at_the_local_hour() {
        let ledger = Arc::new(MemLedger::default());
        let seen = live(
            vec![rescan("America/New_York")],
            ledger,
            "2026-11-19T12:00:00Z",
            1,
            7,
        )
        .await;
        // 06:00 EST is 11:00 UTC.
        assert_eq!(seen[0].slot, utc("2026-11-23T11:00:00Z"));
        assert_eq!(seen.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn several_jobs_interleave_in_time_order() {
        let hourly = Job {
            name: "policy_refresh".into(),
            schedule: Schedule::parse("0 * * * *", "UTC").unwrap(),
            grace: chrono::Duration::zero(),
        };
        let ledger = Arc::new(MemLedger::default());
        let seen = live(
            vec![rescan("UTC"), hourly],
            ledger,
            "2026-11-23T03:30:00Z",
            1,
            1,
        )
        .await;
        let names: Vec<&str> = seen.iter().map(|d| d.job.as_str()).collect();
        assert_eq!(seen.len(), 25, "{names:?}");
        assert_eq!(
            names[..4],
            [
                "policy_refresh",
                "policy_refresh",
                "rescan",
                "policy_refresh"
            ]
        );
        assert_eq!(seen[2].slot, utc("2026-11-23T06:00:00Z"));
        assert_eq!(seen[3].slot, utc("2026-11-23T06:00:00Z"));
    }
}
