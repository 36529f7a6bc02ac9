//! The reconcile engine: one level-triggered cycle over every service and environment.
//!
//! Each cycle recomputes what should be from the registry, the policy, the GitOps repository,
//! the forge and the deployer, and acts on the difference. It keeps no state of its own beyond
//! caches (policy documents, completed scans by digest) that only save calls.
//!
//! Read it bottom-up: `watch`, `reads` and `context` (what a cycle reads and hands on), `pr`,
//! `provenance`, `commands` and `records` (a PR's plumbing, whose records to trust, its
//! commands, the records written after a merge), `pipeline` (a promotion's PR up to its
//! merge), `deploy` (one application's verification), `verified` and `landed` (after any
//! merge: report, settle, roll back; a promotion of one service is a group of one there),
//! `rollback`, `merged` and `hold`, then the steps:
//! `environment` (one service in one environment), `group`, `rescan`, `dashboard`.
//!
//! Where a change goes:
//!
//! | change | file |
//! |---|---|
//! | a new merge condition (a fact GitHub or Argo CD must confirm first) | `domain::merge` (the rule), `pipeline::merge_verdict` (reading the fact) |
//! | a new refusal of a merge by GitHub | `pipeline::merge_refused` |
//! | a new candidate rule | `domain::select`, `domain::plan`; `environment::choose` |
//! | a new scan-gate rule | `domain::gate`; `environment::judge` |
//! | a new verification check after a merge | `domain::deploy` (the verdict), `deploy::verify` |
//! | a new outcome after a merge, or a label it sets | `verified::record`, `verified::labels` |
//! | a new comment command | `domain::chatops` (parse, replay); on an open PR `pipeline::pr_commands`, on a merged one `merged::carry_out` |
//! | a new record of tugboat's on GitHub | `watch` (read), `records` (written), `provenance` (trusted) |

mod commands;
mod context;
pub mod dashboard;
pub mod deploy;
mod environment;
pub mod evidence;
mod failure;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod group;
mod group_pr;
#[cfg(test)]
mod group_tests;
mod hold;
mod inbox;
mod landed;
#[cfg(test)]
mod merge_tests;
mod merged;
mod outcome;
mod pipeline;
mod pr;
mod promote;
mod provenance;
#[cfg(test)]
mod provenance_tests;
mod queue;
mod reads;
mod records;
pub mod rescan;
mod rollback;
mod rules;
pub mod scheduler;
mod seal;
mod signature;
#[cfg(test)]
mod signature_tests;
#[cfg(test)]
mod tests;
mod verified;
mod watch;

use context::{EnvCtx, Upstream};
pub use failure::{At, Cause, Step, StepError};
pub use inbox::{Inbox, Wanted};
pub use outcome::{Action, Approvals, EnvReport, Timing, Verification};
use reads::deployed_reference;

use scheduler::{Clock, SystemClock};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{Config, EnvConfig, ServiceConfig};
use crate::domain::gate::ScanReport;
use crate::domain::image::{Digest, ImageRef};
use crate::domain::index::PlatformImage;
use crate::domain::policy::{self, PolicyDocument, PolicySource, ServicePolicy};
use crate::domain::signature::SignatureCheck;
use crate::ports::{
    Deployer, Forge, GitOpsRepo, Ledger, ParameterStore, PortError, PublicKeys, Registry,
    Signatures,
};
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
    /// cosign's signatures in the registry, and the policy's public keys.
    pub signatures: Arc<dyn Signatures>,
    pub public_keys: Arc<dyn PublicKeys>,
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
    gathered: Option<&'a context::Gathered>,
}

/// The engine, holding its caches between cycles.
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
    /// Signature checks by (signature manifest, digest, keys): content, never stale.
    signatures: quick_cache::sync::Cache<signature::SignatureKey, SignatureCheck>,
    /// Trusted roots by the SHA-256 of their text, parsed once (a root is some kilobytes of
    /// certificates and keys; every environment that verifies keyless signatures names one).
    trust_roots: quick_cache::sync::Cache<String, Arc<crate::signature::keyless::TrustRoot>>,
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
    /// Application → when a verification last asked Argo CD to refresh it.
    refreshed: Mutex<std::collections::HashMap<String, Instant>>,
    /// Until when verifications poll because Argo CD's event stream could not be opened.
    stream_refused: Mutex<Option<Instant>>,
    /// The base branch's rules, and when they were read (`engine::rules`).
    rules_cache: Mutex<Option<(Instant, crate::ports::BranchRules)>>,
    /// Held through each merge (one at a time: each moves main), with when the last one
    /// landed (`engine::queue`).
    last_merge: tokio::sync::Mutex<Option<Instant>>,
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
            signatures: quick_cache::sync::Cache::new(SCAN_CACHE_ENTRIES),
            trust_roots: quick_cache::sync::Cache::new(16),
            mutability: quick_cache::sync::Cache::new(APPROVER_CACHE_ENTRIES),
            approver_cache: quick_cache::sync::Cache::new(APPROVER_CACHE_ENTRIES),
            longest_health_timeout: std::sync::atomic::AtomicU64::new(0),
            clock,
            keys,
            inbox: Arc::default(),
            gate_due: Mutex::default(),
            group_writes: tokio::sync::Mutex::default(),
            provenance,
            refreshed: Mutex::default(),
            stream_refused: Mutex::default(),
            rules_cache: Mutex::default(),
            last_merge: tokio::sync::Mutex::default(),
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
        let gathered = context::Gathered::default();
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
        gathered: context::Gathered,
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
            let seat = context::Seat {
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
