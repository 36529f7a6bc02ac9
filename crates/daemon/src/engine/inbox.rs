//! What arrives between cycles, by webhook or event, for the run loop and the next cycle.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::domain::image::Digest;

/// Requests that arrive between cycles, by webhook or event, for the run loop and the next
/// cycle. Only hints: a lost one (a restart) costs latency or a click, never a wrong
/// promotion, since every cycle reads the systems of record.
#[derive(Debug, Default)]
pub struct Inbox {
    /// Pull requests whose gate check a person asked to run again.
    reruns: Mutex<std::collections::BTreeSet<u64>>,
    /// What the run loop should reconcile now.
    wanted: Mutex<Wanted>,
    /// When each service's images were last listed (events older than that are stale).
    looked: Mutex<std::collections::HashMap<String, DateTime<Utc>>>,
    /// Open tugboat PRs and hold issues by number → their service (from the last cycle).
    subjects: Mutex<std::collections::HashMap<u64, String>>,
    /// Digests whose findings changed (an ECR scan or Inspector event): the next look at
    /// them reads the registry again instead of the cache.
    rescanned: Mutex<std::collections::BTreeSet<Digest>>,
    /// Services that a running cycle reconciles and has not finished yet: a request for one
    /// of them waits for it (two cycles never reconcile one service at once).
    busy: Mutex<std::collections::BTreeSet<String>>,
    notify: tokio::sync::Notify,
}

/// What the run loop should reconcile next: some services, or everything.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub services: std::collections::BTreeSet<String>,
    pub all: bool,
}

impl Wanted {
    /// Ask for `other` too.
    pub fn add(&mut self, other: Self) {
        self.all |= other.all;
        self.services.extend(other.services);
    }
}

/// How many re-run requests (and services) wait at most: a flood cannot grow them further.
const INBOX_LIMIT: usize = 1024;

impl Inbox {
    /// Ask for the gate of PR `number` to run again (its image scanned again).
    pub fn rerun(&self, number: u64) {
        if let Ok(mut r) = self.reruns.lock()
            && (r.len() < INBOX_LIMIT || r.contains(&number))
        {
            r.insert(number);
        }
    }

    /// Whether a re-run of PR `number` was asked for; taking it answers it.
    pub fn take_rerun(&self, number: u64) -> bool {
        self.reruns.lock().is_ok_and(|mut r| r.remove(&number))
    }

    /// Reconcile these services now (coalesced: a service asked for many times before the
    /// loop takes them is reconciled once).
    pub fn wake_services<'a>(&self, services: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut w) = self.wanted.lock() {
            for s in services {
                if w.services.len() >= INBOX_LIMIT {
                    w.all = true;
                    break;
                }
                w.services.insert(s.to_owned());
            }
        }
        self.notify.notify_one();
    }

    /// The findings of `digest` changed: Inspector re-scans continuously and updates the
    /// findings of an unchanged digest when a new CVE is published (ECR user guide, "Scan
    /// images for software vulnerabilities"), and says so with an event.
    pub fn forget_scan(&self, digest: Digest) {
        if let Ok(mut r) = self.rescanned.lock()
            && (r.len() < INBOX_LIMIT || r.contains(&digest))
        {
            r.insert(digest);
        }
    }

    /// The digests whose findings changed since the last call.
    pub fn take_rescanned(&self) -> Vec<Digest> {
        self.rescanned
            .lock()
            .map(|mut r| std::mem::take(&mut *r).into_iter().collect())
            .unwrap_or_default()
    }

    /// Reconcile everything now.
    pub fn wake_all(&self) {
        if let Ok(mut w) = self.wanted.lock() {
            w.all = true;
        }
        self.notify.notify_one();
    }

    /// Reconcile the service of PR or issue `number` now, or everything when it is not one
    /// the last cycle knew.
    pub fn wake_subject(&self, number: u64) {
        let known = self
            .subjects
            .lock()
            .ok()
            .and_then(|s| s.get(&number).cloned());
        match known {
            Some(service) => self.wake_services([service.as_str()]),
            None => self.wake_all(),
        }
    }

    /// Wait until something is wanted.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Take what is wanted, leaving nothing.
    pub fn take_wanted(&self) -> Wanted {
        self.wanted
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    /// When `service`'s images were last listed.
    pub fn looked_at(&self, service: &str) -> Option<DateTime<Utc>> {
        self.looked
            .lock()
            .ok()
            .and_then(|l| l.get(service).copied())
    }

    pub(crate) fn looked(&self, service: &str, at: DateTime<Utc>) {
        if let Ok(mut l) = self.looked.lock() {
            l.insert(service.to_owned(), at);
        }
    }

    /// Claim for a new cycle those of `services` that no running cycle holds.
    pub fn claim(
        &self,
        services: &std::collections::BTreeSet<String>,
    ) -> std::collections::BTreeSet<String> {
        self.busy
            .lock()
            .map(|mut busy| {
                let free: std::collections::BTreeSet<String> =
                    services.difference(&busy).cloned().collect();
                busy.extend(free.iter().cloned());
                free
            })
            .unwrap_or_default()
    }

    /// Whether some running cycle still holds a service.
    pub fn is_busy(&self) -> bool {
        self.busy.lock().is_ok_and(|b| !b.is_empty())
    }

    /// `service`'s reconcile finished: a request that waited for it can run now.
    pub fn release(&self, service: &str) {
        if self.busy.lock().is_ok_and(|mut b| b.remove(service)) {
            self.notify.notify_one();
        }
    }

    /// Every claim is void (the cycles holding them were abandoned).
    pub fn release_all(&self) {
        if let Ok(mut b) = self.busy.lock() {
            b.clear();
        }
    }

    pub(super) fn know_subjects(&self, subjects: std::collections::HashMap<u64, String>) {
        if let Ok(mut s) = self.subjects.lock() {
            *s = subjects;
        }
    }
}
