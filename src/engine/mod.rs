//! The reconcile engine: one level-triggered cycle over every service and environment.
//!
//! Each cycle recomputes what should be from the registry, the policy, the GitOps repository,
//! the forge and the deployer, and acts on the difference. It keeps no state of its own beyond
//! caches (policy documents, completed scans by digest) that only save calls.

mod commands;
pub mod deploy;
pub mod evidence;
pub mod rescan;

use commands::Commands;
pub mod scheduler;

use scheduler::{Clock, SystemClock};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{Config, EnvConfig, ServiceConfig};
use crate::domain::gate::{self, Finding, GateDecision, ScanReport, ScanStatus, Severity};
use crate::domain::image::{self, Digest, ImageRef};
use crate::domain::plan::{self, Decision, Position};
use crate::domain::policy::{self, EnvPolicy, PolicyDocument, PolicySource, ServicePolicy};
use crate::domain::select::{self, Candidate, ImageRecord};
use crate::domain::window;
use crate::manifest;
use crate::ports::{
    ChecksState, Deployer, ErrorKind, Forge, GitOpsRepo, Ledger, NewPullRequest, ParameterStore,
    PortError, PullRequest, Registry, StatusState,
};

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
    },
    /// A promotion marked bad (PR `bad`) was reverted by PR `number`.
    RolledBack {
        bad: u64,
        number: u64,
        url: String,
        verification: Verification,
    },
    Failed {
        message: String,
    },
}

/// How a merged promotion turned out in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    Healthy {
        after: Duration,
    },
    /// It did not become Healthy (Argo CD's words, or the health timeout).
    Failed {
        reason: String,
    },
    /// Argo CD could not be read (refused token, missing application, unreachable): not
    /// known, so never rolled back for; verified again next cycle.
    Unknown {
        reason: String,
    },
}

impl Verification {
    /// One line for comments and tables.
    pub fn summary(&self) -> String {
        match self {
            Self::Healthy { after } => format!("Healthy after {:.1}s", after.as_secs_f64()),
            Self::Failed { reason } => format!("not Healthy: {reason}"),
            Self::Unknown { reason } => format!("not verified: {reason}"),
        }
    }
}

/// Why a promotion ready to merge waits.
enum Hold {
    /// Outside the environment's promotion windows (the next opening, when known).
    Window { opens: Option<DateTime<Utc>> },
    /// An Argo CD sync window denies syncs (the active windows).
    SyncWindow { windows: Vec<String> },
}

impl Hold {
    /// What the PR's row says.
    fn action(self, number: u64, url: String) -> Action {
        match self {
            Self::Window { opens } => Action::WaitingForWindow { number, url, opens },
            Self::SyncWindow { windows } => Action::WaitingForSyncWindow {
                number,
                url,
                windows,
            },
        }
    }

    /// What `plan` says.
    fn reason(&self) -> String {
        match self {
            Self::Window { opens: Some(t) } => format!(
                "outside its promotion windows; the next opens {}",
                t.format("%a %Y-%m-%d %H:%M UTC")
            ),
            Self::Window { opens: None } => "outside its promotion windows".to_owned(),
            Self::SyncWindow { windows } => format!(
                "an Argo CD sync window denies syncs ({})",
                windows.join("; ")
            ),
        }
    }
}

/// One row of a cycle's outcome.
#[derive(Debug, Clone)]
pub struct EnvReport {
    pub service: String,
    pub environment: String,
    pub deployed: Option<String>,
    pub decision: Decision,
    pub action: Action,
    pub policy: Vec<PolicySource>,
    /// When the scan gate refused the candidate: the severities over their thresholds (empty
    /// when it refused an image without a usable scan).
    pub rejected: Option<Vec<Severity>>,
}

/// How many complete scan reports the engine keeps: several per service and environment of a
/// large fleet, bounded so that a long-running tugboat does not keep every digest it ever saw.
const SCAN_CACHE_ENTRIES: usize = 16_384;

/// How many (commenter, approver list) answers the engine keeps for `APPROVER_TTL`.
const APPROVER_CACHE_ENTRIES: usize = 4_096;

/// The engine, holding its caches between cycles.
pub struct Engine {
    cfg: Arc<Config>,
    ports: Ports,
    policy_docs: Mutex<Option<(Instant, Vec<PolicyDocument>)>>,
    /// Set by [`Engine::refresh_policy`]: the next cycle re-reads the policy whatever its age.
    policy_stale: AtomicBool,
    /// Complete scan reports by digest; bounded (older digests are read again if needed).
    scans: quick_cache::sync::Cache<Digest, ScanReport>,
    /// (user, the environment's approver list) → whether the user may approve, and when
    /// that was checked; bounded (a commenter beyond it is checked again).
    approver_cache: quick_cache::sync::Cache<(String, String), (Instant, bool)>,
    /// The longest `health_timeout` of any policy read since start, in seconds: a cycle that
    /// verifies a merge may take that long.
    longest_health_timeout: std::sync::atomic::AtomicU64,
    /// Where the engine reads the time of day (soak, windows, expiring ignores, merge times).
    clock: Arc<dyn Clock>,
}

impl Engine {
    pub fn new(cfg: Arc<Config>, ports: Ports) -> Self {
        Self {
            cfg,
            ports,
            policy_docs: Mutex::new(None),
            policy_stale: AtomicBool::new(false),
            scans: quick_cache::sync::Cache::new(SCAN_CACHE_ENTRIES),
            approver_cache: quick_cache::sync::Cache::new(APPROVER_CACHE_ENTRIES),
            longest_health_timeout: std::sync::atomic::AtomicU64::new(0),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same engine reading the time from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
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
        self.ports.repo.sync().await?;
        let docs = self.policy_documents().await;
        let watch = self.watch(mode).await;
        if let Err(e) = &watch {
            tracing::error!(error = %e, "merged promotions unknown: nothing is promoted this cycle");
        }
        let runs = self
            .cfg
            .services
            .iter()
            .map(|svc| self.service(svc, docs.as_ref(), watch.as_ref(), mode));
        // A bounded number of services at once, reported in configuration order.
        let reports: Vec<Vec<EnvReport>> = futures_util::stream::iter(runs)
            .buffered(self.cfg.engine.concurrency)
            .collect()
            .await;
        Ok(reports.into_iter().flatten().collect())
    }

    async fn policy_documents(&self) -> Result<Vec<PolicyDocument>, String> {
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
                None => Err(format!("policy unavailable: {e}")),
            },
        }
    }

    async fn service(
        &self,
        svc: &ServiceConfig,
        docs: Result<&Vec<PolicyDocument>, &String>,
        watch: Result<&deploy::Watch, &String>,
        mode: Mode,
    ) -> Vec<EnvReport> {
        let env_names: Vec<String> = svc.environments.iter().map(|e| e.name.clone()).collect();
        let failed_all = |message: String, sources: Vec<PolicySource>| {
            tracing::error!(service = %svc.name, %message, "service blocked");
            svc.environments
                .iter()
                .map(|e| EnvReport {
                    service: svc.name.clone(),
                    environment: e.name.clone(),
                    deployed: None,
                    decision: Decision::NoCandidate {
                        reason: message.clone(),
                    },
                    action: Action::Failed {
                        message: message.clone(),
                    },
                    policy: sources.clone(),
                    rejected: None,
                })
                .collect()
        };
        let policy = match docs {
            Ok(docs) => {
                match policy::resolve(docs, &self.cfg.policy.ssm_path, &svc.name, &env_names) {
                    Ok(p) => p,
                    Err(e) => return failed_all(format!("blocked by invalid policy: {e}"), vec![]),
                }
            }
            Err(e) => return failed_all(e.clone(), vec![]),
        };
        if let Some(longest) = policy.environments.values().map(|p| p.health_timeout).max() {
            self.longest_health_timeout
                .fetch_max(longest.as_secs(), Ordering::Relaxed);
        }
        let images = match self
            .ports
            .registry
            .list_images(svc.registry_id.as_deref(), &svc.repository)
            .await
        {
            Ok(i) => i,
            Err(e) => return failed_all(e.to_string(), policy.sources.clone()),
        };
        let mut out = Vec::new();
        let mut upstream: Option<(&EnvConfig, Option<ImageRef>)> = None;
        for env in &svc.environments {
            // Every log line of this step carries the service, the environment and, once
            // known, the PR number (recorded on this span by `promote`).
            let span = tracing::info_span!(
                "promotion",
                service = %svc.name,
                environment = %env.name,
                pr = tracing::field::Empty
            );
            let report = self
                .environment(svc, env, &policy, &images, upstream.as_ref(), watch, mode)
                .instrument(span)
                .await;
            let mut deployed = report
                .deployed
                .as_deref()
                .and_then(|d| ImageRef::parse(d).ok());
            // This step changed what the environment deploys: the next environment reads
            // the new reference, not the one of the cycle's start.
            if matches!(
                report.action,
                Action::Merged { .. } | Action::RolledBack { .. }
            ) && self.ports.repo.sync().await.is_ok()
                && let Ok(files) = self.read_files(env).await
                && let Ok(now) = deployed_reference(&files, svc)
            {
                deployed = now;
            }
            if let Action::Failed { message } = &report.action {
                tracing::error!(service = %svc.name, environment = %env.name, %message, "promotion step failed");
            }
            out.push(report);
            upstream = Some((env, deployed));
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    async fn environment(
        &self,
        svc: &ServiceConfig,
        env: &EnvConfig,
        policy: &ServicePolicy,
        images: &[ImageRecord],
        upstream: Option<&(&EnvConfig, Option<ImageRef>)>,
        watch: Result<&deploy::Watch, &String>,
        mode: Mode,
    ) -> EnvReport {
        let mut report = EnvReport {
            service: svc.name.clone(),
            environment: env.name.clone(),
            deployed: None,
            decision: Decision::NoCandidate {
                reason: String::new(),
            },
            action: Action::None,
            policy: policy.sources.clone(),
            rejected: None,
        };
        let Some(env_policy) = policy.environments.get(&env.name) else {
            report.action = Action::Failed {
                message: format!("no policy for environment {}", env.name),
            };
            return report;
        };
        // What main deploys now.
        let files = match self.read_files(env).await {
            Ok(f) => f,
            Err(message) => {
                report.decision = Decision::NoCandidate {
                    reason: message.clone(),
                };
                report.action = Action::Failed { message };
                return report;
            }
        };
        let deployed = match deployed_reference(&files, svc) {
            Ok(d) => d,
            Err(message) => {
                report.decision = Decision::NoCandidate {
                    reason: message.clone(),
                };
                report.action = Action::Failed { message };
                return report;
            }
        };
        report.deployed = deployed.as_ref().map(ToString::to_string);
        // Merged promotions first: an interrupted verification, `/rollback`, a bad digest
        // still deployed.
        if mode == Mode::Apply
            && let Ok(watch) = watch
            && let Some(action) = self
                .aftercare(svc, env, env_policy, policy, deployed.as_ref(), watch)
                .await
        {
            report.action = action;
            return report;
        }

        // The candidate: the registry's newest eligible tag, or what the previous environment runs healthy.
        let candidate = match upstream {
            None => select::eligible(images, &env_policy.tag).into_iter().next(),
            Some((prev, prev_deployed)) => match self
                .upstream_candidate(prev, app_name(prev, policy), prev_deployed.as_ref(), images)
                .await
            {
                Ok(None) => None,
                Ok(Some((c, deployed_at))) => {
                    if let Err(reason) =
                        plan::soaked(env_policy.soak, deployed_at, self.clock.now(), &prev.name)
                    {
                        report.decision = Decision::Waiting {
                            candidate: Some(c),
                            reason,
                        };
                        return report;
                    }
                    Some(c)
                }
                Err(reason) => {
                    report.decision = Decision::Waiting {
                        candidate: None,
                        reason,
                    };
                    return report;
                }
            },
        };
        let Some(candidate) = candidate else {
            report.decision = Decision::NoCandidate {
                reason: match upstream {
                    None => "no tag matches the policy's tag rule".into(),
                    Some((prev, _)) => format!("{} deploys nothing of this service", prev.name),
                },
            };
            return report;
        };
        let deployed_record = deployed
            .as_ref()
            .and_then(|d| d.tag.as_ref())
            .and_then(|t| select::find_tag(images, t));
        match plan::position(
            deployed.as_ref(),
            deployed_record.as_ref(),
            &candidate,
            &env_policy.tag,
        ) {
            Position::Deployed => {
                report.decision = Decision::UpToDate {
                    deployed: format!("{}", candidate.tag),
                };
                return report;
            }
            Position::Behind => {
                report.decision = Decision::UpToDate {
                    deployed: format!(
                        "{} (newer than candidate {})",
                        deployed_record.map_or_else(String::new, |r| r.tag.to_string()),
                        candidate.tag
                    ),
                };
                return report;
            }
            Position::Ahead => {}
        }
        // A digest marked bad (it failed somewhere and was rolled back) is never promoted.
        let watch = match watch {
            Ok(w) => w,
            Err(e) => {
                report.decision = Decision::Waiting {
                    candidate: Some(candidate),
                    reason: e.clone(),
                };
                report.action = Action::Failed { message: e.clone() };
                return report;
            }
        };
        if let Some(bad) = watch.bad_digest(&svc.name, &candidate.digest) {
            let reasons = vec![format!(
                "marked bad after it failed in {} (PR #{}); an approver can comment /unblock there",
                bad.state.environment, bad.pr.number
            )];
            if mode == Mode::Apply {
                report.action = self
                    .close_refused(watch, svc, env, &candidate, &reasons)
                    .await;
            }
            report.decision = Decision::Blocked { candidate, reasons };
            return report;
        }
        let scan = match self.scan(svc, &candidate.digest, mode).await {
            Ok(r) => r,
            Err(e) => {
                report.decision = Decision::Waiting {
                    candidate: Some(candidate),
                    reason: format!("scan findings unavailable: {e}"),
                };
                report.action = Action::Failed {
                    message: e.to_string(),
                };
                return report;
            }
        };
        let gate = gate::gate(&scan, &env_policy.scan, self.clock.now().date_naive());
        if let GateDecision::Block { counts, .. } = &gate {
            report.rejected = Some(
                env_policy
                    .scan
                    .thresholds
                    .iter()
                    .filter(|(sev, max)| counts.get(sev).copied().unwrap_or(0) > **max)
                    .map(|(sev, _)| *sev)
                    .collect(),
            );
        }
        report.decision = plan::decide(deployed.as_ref(), candidate.clone(), &gate);
        if mode == Mode::Plan && matches!(report.decision, Decision::Promote { .. }) {
            // What the merge would wait for, said in the plan as it is on the PR.
            let held = match self.hold(env, env_policy, policy).await {
                Ok(hold) => hold.map(|h| h.reason()),
                Err(e) => Some(e),
            };
            if let Some(reason) = held {
                report.decision = Decision::Waiting {
                    candidate: Some(candidate),
                    reason,
                };
            }
            return report;
        }
        if mode == Mode::Plan || !matches!(report.decision, Decision::Promote { .. }) {
            if let Decision::Blocked { reasons, .. } = &report.decision {
                tracing::warn!(service = %svc.name, environment = %env.name, tag = %candidate.tag, reasons = ?reasons, "candidate blocked by the scan gate");
                if mode == Mode::Apply {
                    report.action = self
                        .close_refused(watch, svc, env, &candidate, reasons)
                        .await;
                }
            }
            return report;
        }
        report.action = match self
            .promote(
                svc,
                env,
                env_policy,
                policy,
                &files,
                deployed.as_ref(),
                &candidate,
                &gate,
                &scan.findings,
                watch,
            )
            .await
        {
            Ok(a) => a,
            Err(e) => Action::Failed { message: e },
        };
        report
    }

    async fn read_files(&self, env: &EnvConfig) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        for path in &env.files {
            match self.ports.repo.read(path).await {
                Ok(Some(text)) => out.push((path.clone(), text)),
                Ok(None) => return Err(format!("{path} does not exist on the base branch")),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(out)
    }

    /// The previous environment's deployed image, once Argo CD runs it Synced and Healthy,
    /// with the time Argo CD deployed it there.
    async fn upstream_candidate(
        &self,
        prev: &EnvConfig,
        prev_app: &str,
        deployed: Option<&ImageRef>,
        images: &[ImageRecord],
    ) -> Result<Option<(Candidate, Option<DateTime<Utc>>)>, String> {
        let Some(d) = deployed else { return Ok(None) };
        let Some(tag) = &d.tag else { return Ok(None) };
        let Some(record) = select::find_tag(images, tag) else {
            return Err(format!(
                "{} deploys {tag}, which the registry no longer has",
                prev.name
            ));
        };
        let app = self
            .ports
            .deployer
            .app(prev_app, false)
            .await
            .map_err(|e| format!("cannot read {}'s health: {e}", prev.name))?;
        let wanted = ImageRef {
            repository: d.repository.clone(),
            tag: Some(tag.clone()),
            digest: Some(record.digest.clone()),
        };
        let runs = image::runs(&app.images, &wanted);
        if app.sync_status == "Synced" && app.health == "Healthy" && runs {
            Ok(Some((record, app.deployed_at)))
        } else if app.sync_status == "Synced" && app.health == "Healthy" {
            Err(format!(
                "{}'s application does not run {tag} yet (it runs {})",
                prev.name,
                app.images.join(", ")
            ))
        } else {
            Err(format!(
                "{} is not yet Synced and Healthy with {tag} (sync {}, health {})",
                prev.name, app.sync_status, app.health
            ))
        }
    }

    /// The scan report of a digest: cached once complete, polled within `scan_wait` while pending.
    async fn scan(
        &self,
        svc: &ServiceConfig,
        digest: &Digest,
        mode: Mode,
    ) -> Result<ScanReport, PortError> {
        if let Some(r) = self.scans.get(digest) {
            return Ok(r);
        }
        let deadline = Instant::now()
            + if mode == Mode::Plan {
                Duration::ZERO
            } else {
                self.cfg.engine.scan_wait
            };
        loop {
            let r = self
                .ports
                .registry
                .scan_report(svc.registry_id.as_deref(), &svc.repository, digest)
                .await?;
            let pending = matches!(r.status, ScanStatus::Pending | ScanStatus::InProgress);
            if !pending {
                if r.status == ScanStatus::Complete {
                    self.scans.insert(digest.clone(), r.clone());
                }
                return Ok(r);
            }
            if Instant::now() >= deadline {
                return Ok(r);
            }
            tokio::time::sleep(Duration::from_secs(2).min(self.cfg.engine.scan_wait)).await;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn promote(
        &self,
        svc: &ServiceConfig,
        env: &EnvConfig,
        env_policy: &EnvPolicy,
        policy: &ServicePolicy,
        files: &[(String, String)],
        deployed: Option<&ImageRef>,
        to: &Candidate,
        gate: &GateDecision,
        findings: &[Finding],
        watch: &deploy::Watch,
    ) -> Result<Action, String> {
        let branch = evidence::branch(&svc.name, &env.name);
        let mut edited = Vec::new();
        for (path, text) in files {
            let refs = manifest::locate(text).map_err(|e| format!("{path}: {e}"))?;
            let pinned = env_policy.pin_digest
                || refs
                    .iter()
                    .any(|r| r.is_for(&svc.image) && r.digest.is_some());
            let e = manifest::set_image(text, &svc.image, &to.tag, pinned.then_some(&to.digest))
                .map_err(|e| format!("{path}: {e}"))?;
            edited.push((path.clone(), e.text));
        }
        let file_names: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
        let title = evidence::title_of(&svc.name, &env.name, &to.tag);
        let message = format!(
            "{title}\n\n{} {} -> {}@{}\n",
            svc.image,
            deployed
                .and_then(|d| d.tag.as_ref())
                .map_or("(none)".to_owned(), ToString::to_string),
            to.tag,
            to.digest
        );
        let wanted = edited.clone();
        let p = self
            .ports
            .repo
            .propose(&branch, edited, &message)
            .await
            .map_err(|e| e.to_string())?;
        let forge = &self.ports.forge;
        let existing = forge
            .find_open_pr(&branch)
            .await
            .map_err(|e| e.to_string())?;
        // Comment commands and reviews on the open PR: approvals of this head, a hold, and
        // an answer to every new command.
        let commands = match &existing {
            Some(pr) => {
                tracing::Span::current().record("pr", pr.number);
                let target = commands::Target {
                    number: pr.number,
                    body: &pr.body,
                    merged: pr.merged,
                    head_sha: &p.head,
                    head_at: p.committed_at,
                    digest: &to.digest,
                };
                self.commands(svc, env_policy, &target).await?
            }
            None => {
                // About to open a PR: first make sure main does not have the change already
                // (another tugboat may have opened and merged it since this cycle fetched).
                if self.on_main(&wanted).await? {
                    tracing::info!("main already has this promotion (another tugboat merged it)");
                    return Ok(Action::None);
                }
                Commands::default()
            }
        };
        let ev = evidence::Evidence {
            service: &svc.name,
            environment: &env.name,
            image: svc.image.as_str(),
            from: deployed,
            to,
            gate,
            findings,
            policy: env_policy,
            sources: &policy.sources,
            files: &file_names,
            approvals: &commands.approvals,
            held_by: commands.held_by.as_deref(),
            answered_through: commands.answered_through,
        };
        let body = evidence::body(&ev);
        let (pr, opened) = match existing {
            Some(pr) => {
                if pr.title != title || pr.body != body {
                    forge
                        .update_pr(pr.number, &title, &body)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                (pr, false)
            }
            None => {
                let labels = vec![
                    "tugboat".to_owned(),
                    format!("env:{}", env.name),
                    format!("service:{}", svc.name),
                ];
                let opened = forge
                    .open_pr(NewPullRequest {
                        branch: branch.clone(),
                        title: title.clone(),
                        body: body.clone(),
                        labels,
                    })
                    .await;
                match opened {
                    Ok(pr) => {
                        tracing::Span::current().record("pr", pr.number);
                        tracing::info!(tag = %to.tag, "opened promotion pull request");
                        (pr, true)
                    }
                    // Another replica opened it between our look and our request (GitHub
                    // refuses a second PR for the same head): use that one.
                    Err(e) if e.kind == ErrorKind::Rejected => {
                        let Some(pr) = forge
                            .find_open_pr(&branch)
                            .await
                            .map_err(|e| e.to_string())?
                        else {
                            // ... and maybe merged it already.
                            if self.on_main(&wanted).await? {
                                return Ok(Action::None);
                            }
                            return Err(e.to_string());
                        };
                        tracing::info!(
                            pr = pr.number,
                            "another tugboat opened this promotion PR first"
                        );
                        (pr, false)
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        if p.pushed || opened {
            let counts = gate
                .counts()
                .map(|c| {
                    c.iter()
                        .map(|(s, n)| format!("{s} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let desc = if counts.is_empty() {
                "scan gate passed".to_owned()
            } else {
                format!("scan gate passed: {counts}")
            };
            forge
                .set_status(&p.head, StatusState::Success, "tugboat/scan-gate", &desc)
                .await
                .map_err(|e| e.to_string())?;
        }
        if opened && self.on_main(&wanted).await? {
            // Another tugboat merged the same promotion (maybe this very PR) meanwhile.
            match forge
                .close_pr(
                    pr.number,
                    "Closed: another tugboat replica merged this same promotion a moment ago, so this PR has nothing left to do.",
                )
                .await
            {
                Ok(()) => tracing::warn!("closed a PR that another tugboat made redundant"),
                // Already merged (by the other replica): nothing to close.
                Err(e) if e.kind == ErrorKind::Rejected => {}
                Err(e) => return Err(e.to_string()),
            }
            return Ok(Action::None);
        }
        if let Some(by) = commands.held_by {
            return Ok(Action::Held {
                number: pr.number,
                url: pr.url,
                by,
            });
        }
        let needed = env_policy.approvals.max(1) as usize;
        if !env_policy.auto_merge && commands.approvals.len() < needed {
            return Ok(Action::AwaitingApproval {
                number: pr.number,
                url: pr.url,
            });
        }
        if let Some(hold) = self.hold(env, env_policy, policy).await? {
            return Ok(hold.action(pr.number, pr.url));
        }
        let app = app_name(env, policy);
        match forge.checks(&p.head).await.map_err(|e| e.to_string())? {
            ChecksState::Success | ChecksState::None => {}
            ChecksState::Pending => {
                return Ok(Action::WaitingForChecks {
                    number: pr.number,
                    url: pr.url,
                });
            }
            ChecksState::Failure => {
                return Err(format!("checks failed on PR #{}; not merging", pr.number));
            }
        }
        // Labelled before the merge, so that a stop right after it still gets verified.
        forge
            .add_labels(pr.number, &[deploy::VERIFYING.to_owned()])
            .await
            .map_err(|e| e.to_string())?;
        let merged_at = self.clock.now();
        let sha = match forge.merge(pr.number, &p.head, &title).await {
            Ok(sha) => sha,
            // Merged by another tugboat a moment ago: nothing left to do here.
            Err(e) if e.kind == ErrorKind::Rejected && self.on_main(&wanted).await? => {
                tracing::info!(error = %e, "main already has this promotion (another tugboat merged it)");
                return Ok(Action::None);
            }
            Err(e) => return Err(e.to_string()),
        };
        tracing::info!(merge = %sha, "merged promotion");
        let state = evidence::PromotionState::parse(&body)
            .map_err(|e| format!("the body tugboat wrote for PR #{}: {e}", pr.number))?;
        let image = state.reference(&svc.image);
        let verification = self
            .verify_and_report(pr.number, &sha, merged_at, app, env_policy, &image, &state)
            .await;
        let written = PullRequest {
            title: title.clone(),
            body: body.clone(),
            ..pr.clone()
        };
        let watched = deploy::Watched::merged(&written, merged_at, state);
        self.settle(env, env_policy, &watched, &verification, watch)
            .await?;
        if matches!(verification, Verification::Failed { .. })
            && env_policy.rollback == policy::RollbackMode::Auto
        {
            return self.rollback(svc, env, env_policy, policy, &watched).await;
        }
        Ok(Action::Merged {
            number: pr.number,
            url: pr.url,
            sha,
            verification,
        })
    }

    /// A candidate the gate (or a bad mark) refuses may have an open PR from before (a rescan
    /// found a CVE, or it failed elsewhere): close it, saying why, so that nobody approves
    /// evidence that no longer holds.
    async fn close_refused(
        &self,
        watch: &deploy::Watch,
        svc: &ServiceConfig,
        env: &EnvConfig,
        candidate: &Candidate,
        reasons: &[String],
    ) -> Action {
        let Some(w) = watch.open_promotion(&svc.name, &env.name, &candidate.digest) else {
            return Action::None;
        };
        let why = format!(
            "Closed: tugboat no longer promotes `{}` (`{}`): {}. A new PR opens when a tag passes.",
            candidate.tag,
            candidate.digest,
            reasons.join("; ")
        );
        match self.ports.forge.close_pr(w.pr.number, &why).await {
            Ok(()) => {
                tracing::warn!(pr = w.pr.number, "closed a PR whose image is now refused");
                Action::Closed {
                    number: w.pr.number,
                    url: w.pr.url.clone(),
                }
            }
            Err(e) => Action::Failed {
                message: e.to_string(),
            },
        }
    }

    /// Why a promotion of this environment may not merge now: outside its promotion windows,
    /// or an Argo CD sync window denies syncs. The one rule for the merge and for `plan`.
    async fn hold(
        &self,
        env: &EnvConfig,
        env_policy: &EnvPolicy,
        policy: &ServicePolicy,
    ) -> Result<Option<Hold>, String> {
        if let Err(opens) = window::open_at(&env_policy.windows, self.clock.now()) {
            return Ok(Some(Hold::Window { opens }));
        }
        let w = self
            .ports
            .deployer
            .sync_windows(app_name(env, policy))
            .await
            .map_err(|e| format!("cannot read the sync windows: {e}"))?;
        Ok((!w.can_sync).then_some(Hold::SyncWindow { windows: w.active }))
    }

    /// Whether the base branch, fetched now, already holds exactly these file contents.
    async fn on_main(&self, files: &[(String, String)]) -> Result<bool, String> {
        self.ports.repo.sync().await.map_err(|e| e.to_string())?;
        for (path, text) in files {
            let now = self
                .ports
                .repo
                .read(path)
                .await
                .map_err(|e| e.to_string())?;
            if now.as_deref() != Some(text.as_str()) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The reference of the service's image that the environment's files deploy.
/// The Argo CD application of an environment: the policy's, else the configured one.
fn app_name<'a>(env: &'a EnvConfig, policy: &'a ServicePolicy) -> &'a str {
    policy
        .environments
        .get(&env.name)
        .and_then(|p| p.application.as_deref())
        .unwrap_or(&env.argocd_application)
}

fn deployed_reference(
    files: &[(String, String)],
    svc: &ServiceConfig,
) -> Result<Option<ImageRef>, String> {
    let mut found: Option<ImageRef> = None;
    for (path, text) in files {
        let refs = manifest::locate(text).map_err(|e| format!("{path}: {e}"))?;
        let mine: Vec<_> = refs.iter().filter(|r| r.is_for(&svc.image)).collect();
        if mine.is_empty() {
            let err = manifest::ManifestError::NotFound {
                repository: svc.image.to_string(),
                found: refs.iter().map(|r| r.repository.to_string()).collect(),
            };
            return Err(format!("{path}: {err}"));
        }
        for r in mine {
            let this = ImageRef {
                repository: svc.image.clone(),
                tag: r.tag.clone(),
                digest: r.digest.clone(),
            };
            if found.is_none() {
                found = Some(this);
            }
        }
    }
    Ok(found.filter(|f| f.tag.is_some() || f.digest.is_some()))
}
