//! The reconcile engine: one level-triggered cycle over every service and environment.
//!
//! Each cycle recomputes what should be from the registry, the policy, the GitOps repository,
//! the forge and the deployer, and acts on the difference. It keeps no state of its own beyond
//! caches (policy documents, completed scans by digest) that only save calls.

mod commands;
mod context;
pub mod dashboard;
pub mod deploy;
mod environment;
pub mod evidence;
mod failure;
#[cfg(test)]
pub(crate) mod fake;
mod group;
#[cfg(test)]
mod group_tests;
mod hold;
mod merged;
mod pipeline;
mod pr;
mod promote;
mod provenance;
#[cfg(test)]
mod provenance_tests;
pub mod rescan;
mod rollback;
pub mod scheduler;
mod seal;
#[cfg(test)]
mod tests;

use context::{EnvCtx, Upstream};
use environment::deployed_reference;
pub use failure::{At, Cause, Step, StepError};

use scheduler::{Clock, SystemClock};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{Config, EnvConfig, ServiceConfig};
use crate::domain::gate::{ScanReport, Severity};
use crate::domain::image::{Digest, ImageRef};
use crate::domain::index::PlatformImage;
use crate::domain::plan::Decision;
use crate::domain::policy::{self, PolicyDocument, PolicySource, ServicePolicy};
use crate::ports::{Deployer, Forge, GitOpsRepo, Ledger, ParameterStore, PortError, Registry};
use crate::trust::{ForgeryLog, KeyRing};

/// The outside world, as the engine sees it.
#[derive(Clone)]
pub struct Ports {
    pub registry: Arc<dyn Registry>,
    pub params: Arc<dyn ParameterStore>,
    pub repo: Arc<dyn GitOpsRepo>,
    pub forge: Arc<dyn Forge>,
    pub deployer: Arc<dyn Deployer>,
    /// Where scheduled runs are recorded (the scheduler's, not the cycle's).
    pub ledger: Arc<dyn Ledger>,
    /// The keys that seal tugboat's records (`github.state_key`), shared with the ledger.
    pub keys: Arc<KeyRing>,
    /// The records found forged, by whichever port found them.
    pub forged: Arc<ForgeryLog>,
}

/// Whether a cycle may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    /// Read only: what would happen and why (`tugboat plan`).
    Plan,
}

/// What tugboat did about one service in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Opened {
        number: u64,
        url: String,
    },
    Updated {
        number: u64,
        url: String,
    },
    AwaitingApproval {
        number: u64,
        url: String,
        /// The PR's head commit, which approvals are bound to.
        head: String,
        approvals: Approvals,
        /// When the PR's head was committed: approvals are bound to it, so the wait for
        /// them starts there (from the branch, so a restart measures the same).
        since: DateTime<Utc>,
    },
    /// The environment was found changed by a person (or an approver held it): tugboat
    /// opened the hold's issue.
    EnvironmentHeld {
        issue: u64,
        url: String,
        cause: crate::domain::hold::Cause,
    },
    /// Someone commented `/hold`.
    Held {
        number: u64,
        url: String,
        by: String,
    },
    WaitingForChecks {
        number: u64,
        url: String,
    },
    /// Ready to merge, but outside the environment's promotion windows.
    WaitingForWindow {
        number: u64,
        url: String,
        opens: Option<DateTime<Utc>>,
    },
    /// Ready to merge, but an Argo CD sync window denies syncs now.
    WaitingForSyncWindow {
        number: u64,
        url: String,
        windows: Vec<String>,
    },
    /// An open PR whose image the gate (or a bad mark) now refuses was closed.
    Closed {
        number: u64,
        url: String,
    },
    Merged {
        number: u64,
        url: String,
        sha: String,
        verification: Verification,
        timing: Timing,
    },
    /// A promotion marked bad (PR `bad`) was reverted by PR `number`.
    RolledBack {
        bad: u64,
        number: u64,
        url: String,
        verification: Verification,
        timing: Timing,
        /// The failed promotion this step merged and verified just before rolling it back
        /// (`rollback: auto`), so that it counts as a deployment too; `None` when the bad
        /// promotion was merged in an earlier step.
        promotion: Option<Timing>,
    },
    /// A step failed: which, and why.
    Failed {
        error: StepError,
    },
}

/// Where a promotion's approvals stand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvals {
    /// How many the environment needs.
    pub needed: u32,
    /// Who approved the current head (`None`: not read, as in a plan, which reads no PR).
    pub given: Option<Vec<String>>,
    /// Who may approve: the environment's listed logins and `org/team`s (empty: anyone
    /// with write access to the GitOps repository).
    pub from: Vec<String>,
}

impl Approvals {
    /// How many more approvals it takes, when who approved is known.
    pub fn missing(&self) -> Option<usize> {
        let given = self.given.as_ref()?.len();
        Some((self.needed.max(1) as usize).saturating_sub(given))
    }
}

/// How a merged promotion turned out in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    Healthy {
        after: Duration,
        /// Whether the application synced by itself then (`None`: not seen, a restart).
        automated: Option<bool>,
    },
    /// It did not become Healthy (Argo CD's words, or the health timeout).
    Failed { reason: String },
    /// Argo CD could not be read (refused token, missing application, unreachable): not
    /// known, so never rolled back for; verified again next cycle.
    Unknown { reason: String },
}

impl Verification {
    /// One line for comments and tables.
    pub fn summary(&self) -> String {
        match self {
            Self::Healthy { after, .. } => format!("Healthy after {:.1}s", after.as_secs_f64()),
            Self::Failed { reason } => format!("not Healthy: {reason}"),
            Self::Unknown { reason } => format!("not verified: {reason}"),
        }
    }
}

/// When a merged change's verification ended, and the moment the delivery figures measure
/// it from (`/metrics`' lead time and time to restore).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// When the verification ended, on the engine's clock.
    pub verified_at: DateTime<Utc>,
    /// A promotion: when its image was pushed (`None`: the registry no longer lists it). A
    /// rollback: when the failure it undoes was detected, which is when tugboat marked the
    /// promotion bad (its comment's time; `None` when that comment cannot be read).
    pub since: Option<DateTime<Utc>>,
}

/// One row of a cycle's outcome.
#[derive(Debug, Clone)]
pub struct EnvReport {
    pub service: String,
    pub environment: String,
    /// The environment's Argo CD application (the policy's, else the configured one).
    pub application: String,
    pub deployed: Option<String>,
    /// The digest main deploys: the reference's own, else the registry's for its tag.
    pub deployed_digest: Option<String>,
    pub decision: Decision,
    pub action: Action,
    pub policy: Vec<PolicySource>,
    /// When the scan gate refused the candidate: the severities over their thresholds (empty
    /// when it refused an image without a usable scan).
    pub rejected: Option<Vec<Severity>>,
    /// For a promotion that needs approvals: how many, from whom, and (apply) who gave one.
    pub approvals: Option<Approvals>,
    /// The group the environment promotes in, when its policy groups it.
    pub group: Option<crate::domain::group::Rule>,
}

/// How many complete scan reports the engine keeps: several per service and environment of a
/// large fleet, bounded so that a long-running tugboat does not keep every digest it ever saw.
const SCAN_CACHE_ENTRIES: usize = 16_384;

/// How many (commenter, approver list) answers the engine keeps for `APPROVER_TTL`.
const APPROVER_CACHE_ENTRIES: usize = 4_096;

/// What every service's step of a cycle shares.
#[derive(Clone, Copy)]
struct Run<'a> {
    docs: Result<&'a Vec<PolicyDocument>, &'a StepError>,
    watch: Result<&'a deploy::Watch, &'a StepError>,
    mode: Mode,
    /// Where grouped environments leave their promotions (apply only).
    gathered: Option<&'a group::Gathered>,
}

/// The engine, holding its caches between cycles.
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

    fn know_subjects(&self, subjects: std::collections::HashMap<u64, String>) {
        if let Ok(mut s) = self.subjects.lock() {
            *s = subjects;
        }
    }
}

pub struct Engine {
    cfg: Arc<Config>,
    ports: Ports,
    policy_docs: Mutex<Option<(Instant, Vec<PolicyDocument>)>>,
    /// Set by [`Engine::refresh_policy`]: the next cycle re-reads the policy whatever its age.
    policy_stale: AtomicBool,
    /// Complete scan reports by digest; bounded (older digests are read again if needed).
    scans: quick_cache::sync::Cache<Digest, ScanReport>,
    /// (registry, repository) → its tag mutability, and when it was read.
    mutability: quick_cache::sync::Cache<(Option<String>, String), (Instant, String)>,
    /// Image indexes by digest → their platform images (content-addressed: never stale).
    indexes: quick_cache::sync::Cache<Digest, Arc<Vec<PlatformImage>>>,
    /// (user, the environment's approver list) → whether the user may approve, and when
    /// that was checked; bounded (a commenter beyond it is checked again).
    approver_cache: quick_cache::sync::Cache<(String, String), (Instant, bool)>,
    /// The longest `health_timeout` of any policy read since start, in seconds: a cycle that
    /// verifies a merge may take that long.
    longest_health_timeout: std::sync::atomic::AtomicU64,
    /// Where the engine reads the time of day (soak, windows, expiring ignores, merge times).
    clock: Arc<dyn Clock>,
    /// Re-runs asked for by webhook.
    inbox: Arc<Inbox>,
    /// Open PRs whose gate check is reported again once their image is judged anew (a re-run).
    gate_due: Mutex<std::collections::BTreeSet<u64>>,
    /// Held while a group PR's block is read and rewritten (`Engine::supersede`).
    group_writes: tokio::sync::Mutex<()>,
    /// Who wrote the records the engine read (what was checked, what was reported).
    provenance: provenance::Provenance,
    /// The keys that seal its records (`engine::seal`).
    keys: Arc<KeyRing>,
}

impl Engine {
    pub fn new(cfg: Arc<Config>, mut ports: Ports) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let keys = Arc::clone(&ports.keys);
        let provenance = provenance::Provenance::new(Arc::clone(&ports.forged));
        ports.forge = Arc::new(seal::Sealed::new(
            ports.forge,
            Arc::clone(&keys),
            Arc::clone(&ports.forged),
            cfg.github.former_logins.clone(),
        ));
        Self {
            cfg,
            ports,
            policy_docs: Mutex::new(None),
            policy_stale: AtomicBool::new(false),
            scans: quick_cache::sync::Cache::new(SCAN_CACHE_ENTRIES),
            indexes: quick_cache::sync::Cache::new(SCAN_CACHE_ENTRIES),
            mutability: quick_cache::sync::Cache::new(APPROVER_CACHE_ENTRIES),
            approver_cache: quick_cache::sync::Cache::new(APPROVER_CACHE_ENTRIES),
            longest_health_timeout: std::sync::atomic::AtomicU64::new(0),
            clock,
            keys,
            inbox: Arc::default(),
            gate_due: Mutex::default(),
            group_writes: tokio::sync::Mutex::default(),
            provenance,
        }
    }

    /// Where webhooks leave requests for this engine's cycles.
    pub fn inbox(&self) -> Arc<Inbox> {
        Arc::clone(&self.inbox)
    }

    /// The same engine reading the time from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.keys.set_clock(Arc::clone(&clock));
        self.clock = clock;
        self
    }

    /// The longest `health_timeout` of any policy read since start: how long a cycle may
    /// spend verifying one merge (for readiness).
    pub fn longest_health_timeout(&self) -> Duration {
        Duration::from_secs(self.longest_health_timeout.load(Ordering::Relaxed))
    }

    /// The outside world this engine works on.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Whether a policy has been read from SSM since start (for readiness).
    pub fn policy_loaded(&self) -> bool {
        self.policy_docs.lock().is_ok_and(|g| g.is_some())
    }

    /// Make the next cycle re-read the policy from SSM instead of waiting out
    /// `policy.refresh` (on SIGHUP). If that read fails, the last policy read stays in force.
    pub fn refresh_policy(&self) {
        self.policy_stale.store(true, Ordering::Relaxed);
    }

    /// One reconcile cycle. Errors of one service are reported in its rows, never abort others.
    pub async fn cycle(&self, mode: Mode) -> Result<Vec<EnvReport>, PortError> {
        self.cycle_of(mode, None).await
    }

    /// A cycle of only the services in `only` (all of them with `None`): what an event or a
    /// webhook about one service asks for. It reads the same shared state as a full cycle.
    ///
    /// In [`Mode::Apply`], each service is released from the [`Inbox`]'s claims as its
    /// reconcile ends (all of them when the cycle fails before any started), so a request
    /// that waited for it can run while the rest of this cycle goes on.
    pub async fn cycle_of(
        &self,
        mode: Mode,
        only: Option<&std::collections::BTreeSet<String>>,
    ) -> Result<Vec<EnvReport>, PortError> {
        let result = self.reconcile(mode, only).await;
        if result.is_err() && mode == Mode::Apply {
            for svc in self.cfg.services.iter() {
                if only.is_none_or(|o| o.contains(&svc.name)) {
                    self.inbox.release(&svc.name);
                }
            }
        }
        result
    }

    async fn reconcile(
        &self,
        mode: Mode,
        only: Option<&std::collections::BTreeSet<String>>,
    ) -> Result<Vec<EnvReport>, PortError> {
        for digest in self.inbox.take_rescanned() {
            self.scans.remove(&digest);
        }
        self.keys.set_writes(mode == Mode::Apply);
        // Read (or made) before anything is read from the forge: a key that cannot be had
        // fails the cycle here, with what is wrong with it.
        self.keys.keys().await?;
        self.ports.repo.sync().await?;
        let docs = self.policy_documents().await;
        let watch = self.watch(mode).await;
        match &watch {
            Err(e) => {
                tracing::error!(error = %e, "merged promotions unknown: nothing is promoted this cycle");
            }
            Ok(w) if mode == Mode::Apply => self.inbox.know_subjects(w.subjects()),
            Ok(_) => {}
        }
        let gathered = group::Gathered::default();
        let gathering = (mode == Mode::Apply).then_some(&gathered);
        // Collected first: a lazy `map` in the stream makes the cycle's future not provably
        // `Send` for every lifetime, which `tokio::spawn` needs.
        let runs: Vec<_> = self
            .cfg
            .services
            .iter()
            .filter(|svc| only.is_none_or(|o| o.contains(&svc.name)))
            .map(|svc| async {
                let run = Run {
                    docs: docs.as_ref(),
                    watch: watch.as_ref(),
                    mode,
                    gathered: gathering,
                };
                let reports = self.service(svc, &run).await;
                // A grouped service is released after the group step, which acts for it.
                let grouped = only.is_none() && reports.iter().any(|r| r.group.is_some());
                if mode == Mode::Apply && !grouped {
                    self.inbox.release(&svc.name);
                }
                reports
            })
            .collect();
        // A bounded number of services at once, reported in configuration order.
        let reports: Vec<Vec<EnvReport>> = futures_util::stream::iter(runs)
            .buffered(self.cfg.engine.concurrency)
            .collect()
            .await;
        let mut reports: Vec<EnvReport> = reports.into_iter().flatten().collect();
        if mode == Mode::Apply {
            self.group_step(gathered, watch.as_ref(), only, &mut reports)
                .await;
        }
        Ok(reports)
    }

    /// The group steps, in a full cycle, over every service's rows. A cycle of some services
    /// only (an event) cannot form a group, which all its services' facts decide: it asks
    /// for a full cycle instead.
    async fn group_step(
        &self,
        gathered: group::Gathered,
        watch: Result<&deploy::Watch, &StepError>,
        only: Option<&std::collections::BTreeSet<String>>,
        reports: &mut [EnvReport],
    ) {
        if only.is_some() {
            if gathered.has_riders() {
                self.inbox.wake_all();
            }
            return;
        }
        // A service whose step failed this cycle (an ECR error, say) said nothing about its
        // group: the group step must not take that for "no longer ready".
        let failed: std::collections::BTreeSet<(String, String)> = reports
            .iter()
            .filter(|r| matches!(r.action, Action::Failed { .. }))
            .map(|r| (r.service.clone(), r.environment.clone()))
            .collect();
        let updates = self
            .groups(gathered, watch, &failed, self.clock.now())
            .await;
        for u in updates {
            let Some(row) = reports
                .iter_mut()
                .find(|r| r.service == u.service && r.environment == u.environment)
            else {
                continue;
            };
            if matches!(row.action, Action::Failed { .. })
                && matches!(u.action, Action::Failed { .. })
            {
                continue; // the service's own step said first, and more precisely, what failed
            }
            if let Some(decision) = u.decision {
                row.decision = decision;
            }
            if let Action::Failed { error } = &u.action {
                tracing::error!(service = %u.service, environment = %u.environment, step = error.step.as_str(), kind = error.metric_label(), %error, "group step failed");
            }
            if let Action::AwaitingApproval { approvals, .. } = &u.action {
                row.approvals = Some(approvals.clone());
            }
            row.action = u.action;
        }
        let grouped: std::collections::BTreeSet<&str> = reports
            .iter()
            .filter(|r| r.group.is_some())
            .map(|r| r.service.as_str())
            .collect();
        for service in grouped {
            self.inbox.release(service);
        }
    }

    async fn policy_documents(&self) -> Result<Vec<PolicyDocument>, StepError> {
        let cached = self.policy_docs.lock().ok().and_then(|g| g.clone());
        if let Some((at, docs)) = &cached
            && at.elapsed() < self.cfg.policy.refresh
            && !self.policy_stale.load(Ordering::Relaxed)
        {
            return Ok(docs.clone());
        }
        match self.ports.params.documents(&self.cfg.policy.ssm_path).await {
            Ok(docs) => {
                if let Ok(mut g) = self.policy_docs.lock() {
                    *g = Some((Instant::now(), docs.clone()));
                }
                self.policy_stale.store(false, Ordering::Relaxed);
                Ok(docs)
            }
            Err(e) => match cached {
                Some((_, docs)) => {
                    tracing::warn!(error = %e, "policy refresh failed; keeping the last policy read");
                    Ok(docs)
                }
                None => Err(StepError::new(Step::Policy, Cause::PolicyUnavailable(e))),
            },
        }
    }

    /// One service, environment by environment in the configured order: each environment's
    /// candidate is what the previous one runs. `now` is read once, for every environment.
    async fn service(&self, svc: &ServiceConfig, run: &Run<'_>) -> Vec<EnvReport> {
        let Run {
            docs,
            watch,
            mode,
            gathered,
        } = *run;
        let now = self.clock.now();
        if mode == Mode::Apply {
            self.inbox.looked(&svc.name, now);
        }
        let policy = match self.service_policy(svc, docs) {
            Ok(p) => p,
            Err(e) => return failed_all(svc, &e, &[]),
        };
        let images = match self
            .ports
            .registry
            .list_images(svc.registry_id.as_deref(), &svc.repository)
            .await
            .at(Step::Registry)
        {
            Ok(i) => i,
            Err(e) => return failed_all(svc, &e, &policy.sources),
        };
        if let Some(g) = gathered {
            let seat = group::Seat {
                policy: policy.clone(),
                images: images.clone(),
            };
            g.seat(&svc.name, seat);
        }
        let mut out = Vec::new();
        let mut upstream: Option<Upstream<'_>> = None;
        for env in &svc.environments {
            let app = app_name(env, &policy);
            let Some(env_policy) = policy.environments.get(&env.name) else {
                let e = StepError::new(Step::Policy, Cause::NoEnvironmentPolicy(env.name.clone()));
                out.push(EnvReport::failed(svc, env, &e, &policy.sources));
                upstream = Some(Upstream::new(env, app, None));
                continue;
            };
            let cx = EnvCtx {
                svc,
                env,
                policy: &policy,
                env_policy,
                app,
                mode,
                now,
                images: &images,
                watch,
                upstream: upstream.as_ref(),
                gathered,
            };
            // Every log line of this step carries the service, the environment and, once
            // known, the PR number (recorded on this span by the promotion steps).
            let span = tracing::info_span!(
                "promotion",
                service = %svc.name,
                environment = %env.name,
                pr = tracing::field::Empty
            );
            let report = self.environment(&cx).instrument(span).await;
            let deployed = self.deployed_after(&cx, &report).await;
            if let Action::Failed { error } = &report.action {
                tracing::error!(service = %svc.name, environment = %env.name, step = error.step.as_str(), kind = error.metric_label(), %error, "promotion step failed");
            }
            out.push(report);
            upstream = Some(Upstream::new(env, app, deployed));
        }
        out
    }

    /// The service's policy, resolved from the documents read this cycle.
    fn service_policy(
        &self,
        svc: &ServiceConfig,
        docs: Result<&Vec<PolicyDocument>, &StepError>,
    ) -> Result<ServicePolicy, StepError> {
        let docs = docs.map_err(Clone::clone)?;
        let env_names: Vec<String> = svc.environments.iter().map(|e| e.name.clone()).collect();
        let policy = policy::resolve(docs, &self.cfg.policy.ssm_path, &svc.name, &env_names)
            .map_err(|e| StepError::new(Step::Policy, Cause::InvalidPolicy(e.to_string())))?;
        if let Some(longest) = policy.environments.values().map(|p| p.health_timeout).max() {
            self.longest_health_timeout
                .fetch_max(longest.as_secs(), Ordering::Relaxed);
        }
        Ok(policy)
    }

    /// What the environment deploys once its step is done: when the step merged, the next
    /// environment reads the new reference, not the one of the cycle's start.
    async fn deployed_after(&self, cx: &EnvCtx<'_>, report: &EnvReport) -> Option<ImageRef> {
        let before = report
            .deployed
            .as_deref()
            .and_then(|d| ImageRef::parse(d).ok());
        if !matches!(
            report.action,
            Action::Merged { .. } | Action::RolledBack { .. }
        ) || self.ports.repo.sync().await.is_err()
        {
            return before;
        }
        match self.read_files(cx.env).await {
            Ok(files) => deployed_reference(&files, cx.svc).unwrap_or(before),
            Err(_) => before,
        }
    }
}

impl EnvReport {
    /// The row of an environment whose step failed before it could decide anything. A policy
    /// that refuses to be read blocks the environment (fail closed), and stays a failure that
    /// `tugboat once` exits non-zero for and the step-failure metric counts.
    fn failed(
        svc: &ServiceConfig,
        env: &EnvConfig,
        error: &StepError,
        sources: &[PolicySource],
    ) -> Self {
        let blocked = matches!(
            error.cause,
            Cause::InvalidPolicy(_) | Cause::NoEnvironmentPolicy(_)
        );
        let reason = error.to_string();
        let decision = if blocked {
            Decision::BlockedByPolicy { reason }
        } else {
            Decision::NoCandidate { reason }
        };
        Self {
            service: svc.name.clone(),
            environment: env.name.clone(),
            application: env.argocd_application.clone(),
            deployed: None,
            deployed_digest: None,
            decision,
            action: Action::Failed {
                error: error.clone(),
            },
            policy: sources.to_vec(),
            rejected: None,
            approvals: None,
            group: None,
        }
    }
}

/// Every environment of a service whose policy or images could not be read.
fn failed_all(svc: &ServiceConfig, error: &StepError, sources: &[PolicySource]) -> Vec<EnvReport> {
    tracing::error!(service = %svc.name, step = error.step.as_str(), %error, "service blocked");
    svc.environments
        .iter()
        .map(|env| EnvReport::failed(svc, env, error, sources))
        .collect()
}

/// The Argo CD application of an environment: the policy's, else the configured one.
fn app_name<'a>(env: &'a EnvConfig, policy: &'a ServicePolicy) -> &'a str {
    policy
        .environments
        .get(&env.name)
        .and_then(|p| p.application.as_deref())
        .unwrap_or(&env.argocd_application)
}
