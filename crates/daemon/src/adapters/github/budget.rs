//! GitHub's secondary rate limit on content-creating requests: at most 80 a minute and 500 an
//! hour (a GitHub Enterprise Server may set others). Writes go one at a time; when the budget
//! is spent, the waiting writes go in priority order as it frees: what moves a promotion
//! (merges, refs) before what opens one (PRs, issues, commits) before what only reports
//! (labels, comments, statuses, check runs). A write whose caller gave up (a cycle abandoned)
//! leaves the queue; none is ever dropped otherwise.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// GitHub's documented secondary limits for content-creating requests.
pub const WRITES_PER_MINUTE: usize = 80;
pub const WRITES_PER_HOUR: usize = 500;

/// How much a write matters when the budget is short; lower goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Merges and ref updates: a promotion or a rollback takes effect.
    Moves = 0,
    /// PRs, issues and commits: a promotion or a rollback is proposed.
    Proposes = 1,
    /// Labels, comments, reactions, statuses and check runs: it is reported.
    Reports = 2,
}

impl Priority {
    /// The priority of a GitHub write operation (its metric label).
    pub fn of(operation: &str) -> Self {
        match operation {
            "pulls/merge" | "git/update-ref" | "git/create-ref" => Self::Moves,
            "pulls/create" | "pulls/update" | "issues/create" | "issues/update"
            | "git/create-blob" | "git/create-tree" | "git/create-commit" => Self::Proposes,
            _ => Self::Reports,
        }
    }
}

/// At most `max` events in any `per`.
#[derive(Debug)]
struct Window {
    max: usize,
    per: Duration,
    times: VecDeque<Instant>,
}

impl Window {
    fn new(max: usize, per: Duration) -> Self {
        Self {
            max,
            per,
            times: VecDeque::new(),
        }
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.per)
        {
            self.times.pop_front();
        }
    }

    /// How long until one more fits, at `now`.
    fn wait(&mut self, now: Instant) -> Duration {
        self.forget_before(now);
        if self.times.len() < self.max {
            return Duration::ZERO;
        }
        let oldest_that_must_age = self.times.len() - self.max;
        self.times
            .get(oldest_that_must_age)
            .map_or(Duration::ZERO, |t| {
                (*t + self.per).saturating_duration_since(now)
            })
    }

    fn remaining(&mut self, now: Instant) -> usize {
        self.forget_before(now);
        self.max.saturating_sub(self.times.len())
    }
}

#[derive(Debug)]
struct State {
    minute: Window,
    hour: Window,
    /// Writes waiting for their turn: (priority, arrival).
    queue: BTreeSet<(Priority, u64)>,
    arrivals: u64,
    /// The write holding its turn until its request is answered (one at a time).
    busy: bool,
}

/// The write budget one GitHub client spends. Cloning shares it.
#[derive(Debug, Clone)]
pub struct WriteBudget {
    state: Arc<Mutex<State>>,
    turn: Arc<Notify>,
}

/// The right to send one write; dropping it lets the next one go.
#[derive(Debug)]
pub struct Turn {
    budget: WriteBudget,
    /// How long the write waited for its turn.
    pub waited: Duration,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.budget.state.lock() {
            let s = &mut *guard;
            s.busy = false;
            // The write counts from its answer: GitHub saw it no later than that, so the
            // window never frees here before it frees there (writes go one at a time, so the
            // newest time is this write's).
            let answered = Instant::now();
            for w in [&mut s.minute, &mut s.hour] {
                if let Some(t) = w.times.back_mut() {
                    *t = answered;
                }
            }
        }
        self.budget.turn.notify_waiters();
    }
}

/// A place in the queue; leaving it (the caller gave up) lets the others on.
struct Ticket<'a> {
    budget: &'a WriteBudget,
    key: (Priority, u64),
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.budget.state.lock() {
            s.queue.remove(&self.key);
        }
        self.budget.turn.notify_waiters();
    }
}

impl WriteBudget {
    /// At most `per_minute` writes in any minute and `per_hour` in any hour.
    pub fn new(per_minute: usize, per_hour: usize) -> Self {
        Self::with_windows(
            (per_minute, Duration::from_secs(60)),
            (per_hour, Duration::from_secs(3_600)),
        )
    }

    /// GitHub's two windows, of other lengths: at most `short.0` writes in any `short.1` and
    /// `long.0` in any `long.1` (tests shrink the minute and the hour to seconds).
    pub fn with_windows(short: (usize, Duration), long: (usize, Duration)) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                minute: Window::new(short.0, short.1),
                hour: Window::new(long.0, long.1),
                queue: BTreeSet::new(),
                arrivals: 0,
                busy: false,
            })),
            turn: Arc::new(Notify::new()),
        }
    }

    /// Wait for the turn of a write of `priority`: no other write under way, none of higher
    /// priority (or of the same, arrived earlier) waiting, and room in both windows.
    pub async fn acquire(&self, priority: Priority) -> Turn {
        let key = {
            let mut s = self.lock();
            s.arrivals += 1;
            let key = (priority, s.arrivals);
            s.queue.insert(key);
            key
        };
        let ticket = Ticket { budget: self, key };
        let arrived = Instant::now();
        let mut said = false;
        loop {
            let notified = self.turn.notified();
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                if s.busy || s.queue.first() != Some(&ticket.key) {
                    None
                } else {
                    let wait = s.minute.wait(now).max(s.hour.wait(now));
                    if wait.is_zero() {
                        s.minute.times.push_back(now);
                        s.hour.times.push_back(now);
                        s.busy = true;
                        s.queue.remove(&ticket.key);
                        Some(Duration::ZERO)
                    } else {
                        Some(wait)
                    }
                }
            };
            match wait {
                Some(w) if w.is_zero() => {
                    drop(ticket);
                    return Turn {
                        budget: self.clone(),
                        waited: arrived.elapsed(),
                    };
                }
                Some(w) => {
                    if !said {
                        said = true;
                        tracing::info!(
                            seconds = w.as_secs_f64(),
                            ?priority,
                            "GitHub's write budget is spent: pacing writes, the most needed first"
                        );
                    }
                    // Woken early by a release or a write given up, it looks again (one of higher
                    // priority may have arrived meanwhile and goes first).
                    tokio::select! {
                        () = tokio::time::sleep(w) => {}
                        () = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Writes left now in the minute and in the hour.
    pub fn remaining(&self) -> (usize, usize) {
        let mut s = self.lock();
        let now = Instant::now();
        (s.minute.remaining(now), s.hour.remaining(now))
    }

    /// Writes waiting for their turn.
    pub fn waiting(&self) -> usize {
        self.lock().queue.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it leaves plain counters behind, still sound to use.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl crate::telemetry::Budget for WriteBudget {
    fn system(&self) -> &'static str {
        "github"
    }

    fn remaining(&self) -> Vec<(&'static str, usize)> {
        let (minute, hour) = WriteBudget::remaining(self);
        vec![("minute", minute), ("hour", hour)]
    }

    fn waiting(&self) -> usize {
        WriteBudget::waiting(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn writes_are_paced_to_80_in_any_minute() {
        let b = WriteBudget::new(80, 500);
        let start = Instant::now();
        for _ in 0..80 {
            let t = b.acquire(Priority::Reports).await;
            assert!(t.waited.is_zero());
            drop(t);
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert_eq!(b.remaining(), (0, 420));
        // The 81st, 8 s after the first: it waits until the first is a minute old.
        drop(b.acquire(Priority::Reports).await);
        assert_eq!(Instant::now() - start, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn the_hourly_cap_holds_writes_until_the_oldest_is_an_hour_old() {
        let b = WriteBudget::new(80, 500);
        let start = Instant::now();
        for _ in 0..500 {
            drop(b.acquire(Priority::Moves).await);
        }
        // 500 writes at 80 a minute: the last batch went in the seventh minute.
        assert!(Instant::now() - start < Duration::from_secs(7 * 60));
        assert_eq!(b.remaining().1, 0);
        drop(b.acquire(Priority::Moves).await);
        assert_eq!(
            Instant::now() - start,
            Duration::from_secs(3_600),
            "the 501st waits for the first to be an hour old"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_budget_frees_waiting_merges_go_before_proposals_before_reports_and_none_is_lost()
     {
        let b = WriteBudget::new(2, 500);
        drop(b.acquire(Priority::Reports).await);
        drop(b.acquire(Priority::Reports).await);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut writers = tokio::task::JoinSet::new();
        for (i, p) in [
            Priority::Reports,
            Priority::Proposes,
            Priority::Reports,
            Priority::Moves,
            Priority::Proposes,
        ]
        .into_iter()
        .enumerate()
        {
            let (b, order) = (b.clone(), order.clone());
            writers.spawn(async move {
                let turn = b.acquire(p).await;
                order.lock().unwrap().push((p, i));
                drop(turn);
            });
            // They arrive in this order, while the budget is spent.
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(b.waiting(), 5);
        while writers.join_next().await.is_some() {}
        assert_eq!(
            *order.lock().unwrap(),
            [
                (Priority::Moves, 3),
                (Priority::Proposes, 1),
                (Priority::Proposes, 4),
                (Priority::Reports, 0),
                (Priority::Reports, 2),
            ]
        );
        assert_eq!(b.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_given_up_while_waiting_leaves_the_queue_and_the_next_one_goes() {
        let b = WriteBudget::new(1, 500);
        drop(b.acquire(Priority::Reports).await);
        let gave_up =
            tokio::time::timeout(Duration::from_secs(5), b.acquire(Priority::Moves)).await;
        assert!(gave_up.is_err());
        assert_eq!(b.waiting(), 0);
        let start = Instant::now();
        let t = b.acquire(Priority::Reports).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(55));
        assert_eq!(t.waited, Duration::from_secs(55));
    }

    #[tokio::test(start_paused = true)]
    async fn writes_go_one_at_a_time() {
        let b = WriteBudget::new(80, 500);
        let first = b.acquire(Priority::Reports).await;
        let second = tokio::time::timeout(Duration::from_secs(1), b.acquire(Priority::Moves)).await;
        assert!(second.is_err(), "a merge waits for the write under way");
        drop(first);
        drop(b.acquire(Priority::Moves).await);
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_show_the_budget_left_in_each_window_at_the_moment_of_the_scrape() {
        let api = crate::telemetry::ApiMetrics::default();
        let b = WriteBudget::new(80, 500);
        api.watch_budget(Arc::new(b.clone()));
        let m = crate::metrics::Metrics::new(600, &api);
        for _ in 0..3 {
            drop(b.acquire(Priority::Proposes).await);
        }
        let text = m.encode();
        for line in [
            "tugboat_write_budget_remaining{system=\"github\",window=\"minute\"} 77",
            "tugboat_write_budget_remaining{system=\"github\",window=\"hour\"} 497",
            "tugboat_write_budget_waiting{system=\"github\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(
            m.encode()
                .contains("tugboat_write_budget_remaining{system=\"github\",window=\"minute\"} 80"),
            "a minute later, without a write"
        );
    }

    #[test]
    fn operations_map_to_priorities() {
        assert_eq!(Priority::of("pulls/merge"), Priority::Moves);
        assert_eq!(Priority::of("git/update-ref"), Priority::Moves);
        assert_eq!(Priority::of("pulls/create"), Priority::Proposes);
        assert_eq!(Priority::of("issues/add-labels"), Priority::Reports);
        assert_eq!(
            Priority::of("repos/create-commit-status"),
            Priority::Reports
        );
        assert_eq!(Priority::of("checks/create"), Priority::Reports);
    }
}
