//! The rescan of everything deployed: find what each environment runs now (the GitOps
//! repository's base branch and Argo CD's `summary.images`, by digest), get fresh findings
//! (StartImageScan, spread out, for basic scanning; Inspector's current findings for
//! enhanced), and keep one security issue per service in step with them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::{At, Cause, Engine, Mode, Step, StepError, deployed_reference, evidence};
use crate::config::{EnvConfig, ServiceConfig};
use crate::domain::gate::{self, GateDecision, PlatformScan, ScanReport, ScanStatus, Severity};
use crate::domain::image::{self, Digest, ImageRef};
use crate::domain::index::{ImageKind, Platform};
use crate::domain::policy;
use crate::domain::rescan::{self, Deployed, IssueStep, Outcome, Row};
use crate::domain::select::{self, ImageRecord};
use crate::domain::signature::SignatureCheck;
use crate::ports::{Issue, PortError, ScanStart, ScanType};

/// Which deployments a rescan covers.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub service: Option<String>,
    pub environment: Option<String>,
    /// Read findings and say what would change, without starting scans or writing issues.
    pub dry_run: bool,
}

/// What happened to a service's security issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueAction {
    /// No findings, no issue.
    None,
    Unchanged {
        number: u64,
        url: String,
    },
    Opened {
        number: u64,
        url: String,
    },
    Updated {
        number: u64,
        url: String,
    },
    Closed {
        number: u64,
        url: String,
    },
    /// Dry run: what a real run would do.
    Would(&'static str),
    Failed(StepError),
}

/// The rescan of one service.
#[derive(Debug, Clone)]
pub struct ServiceRescan {
    pub service: String,
    pub rows: Vec<Row>,
    /// Deployments that could not be rescanned (unreadable files, unknown tags, Argo CD errors).
    pub problems: Vec<String>,
    pub issue: IssueAction,
}

/// The outcome of a whole rescan.
#[derive(Debug, Clone)]
pub struct RescanReport {
    pub scan_type: ScanType,
    pub services: Vec<ServiceRescan>,
    /// Distinct digests looked at.
    pub images: usize,
    pub scans_started: usize,
    pub already_scanned_today: usize,
    /// New findings (counted under the policy) by severity.
    pub new_findings: BTreeMap<Severity, u64>,
    pub duration: Duration,
}

impl RescanReport {
    /// Whether anything failed (a service, an issue write, an image without a fresh result).
    pub fn failed(&self) -> bool {
        self.services.iter().any(|s| {
            !s.problems.is_empty()
                || matches!(s.issue, IssueAction::Failed(_))
                || s.rows.iter().any(|r| r.in_scope && r.unknown.is_some())
        })
    }
}

/// One service's deployed images, found before any scan is touched.
struct Inventory<'a> {
    svc: &'a ServiceConfig,
    policy: Option<policy::ServicePolicy>,
    images: Vec<ImageRecord>,
    deployed: Vec<Deployed>,
    problems: Vec<String>,
}

/// The findings read for each digest: a report, or why there is none.
type Reports = HashMap<Digest, Result<ScanReport, StepError>>;

/// Deployed image indexes → their platform images, each with its platform.
type Indexes = HashMap<Digest, Vec<(Option<Platform>, Digest)>>;

/// Put each deployed index's report beside its platforms' reports: the platforms' findings
/// merged, each naming the platforms that have it; an error of any platform is the index's.
fn fold_indexes(reports: &mut Reports, indexes: &Indexes) {
    for (index, parts) in indexes {
        let mut scans = Vec::with_capacity(parts.len());
        let mut failed = None;
        for (platform, part) in parts {
            match reports.get(part) {
                Some(Ok(r)) => scans.push(PlatformScan {
                    platform: platform.clone(),
                    report: r.clone(),
                }),
                Some(Err(e)) => failed = Some(e.clone()),
                None => {}
            }
        }
        let folded = match failed {
            Some(e) => Err(e),
            None => Ok(gate::merged(&scans)),
        };
        reports.insert(index.clone(), folded);
    }
}

/// What asking for new scans did.
#[derive(Default)]
struct Starts {
    started: usize,
    already_scanned_today: usize,
    failed: HashMap<Digest, PortError>,
}

impl Engine {
    /// The open security issues tugboat opened: a person's issue carrying the marker of a
    /// service's report is not read (its state would steer what counts as new).
    async fn own_security_issues(&self) -> Result<Vec<Issue>, StepError> {
        let forge = &self.ports.forge;
        let me = forge.me().await.at(Step::Issue)?;
        let issues = forge
            .open_issues(&rescan::security_labels())
            .await
            .at(Step::Issue)?;
        Ok(issues
            .into_iter()
            .filter(|i| self.authored(&i.into(), &me))
            .collect())
    }

    /// Rescan what `scope` covers and bring each service's security issue up to date.
    /// A failure in one service is reported in its entry and never stops the others.
    pub async fn rescan(&self, scope: &Scope) -> Result<RescanReport, PortError> {
        let started = Instant::now();
        self.ports.repo.sync().await?;
        let scan_type = match self.cfg.rescan.scan_type {
            Some(t) => t,
            None => self.ports.registry.scan_type().await?,
        };
        let inventories = self.inventories(scope).await;
        let (digests, indexes) = self.scan_targets(&inventories).await;
        let starts = if scan_type == ScanType::Basic && !scope.dry_run {
            self.start_scans(&digests).await
        } else {
            Starts::default()
        };
        let mut reports = self.fresh_reports(&digests, &starts, scope.dry_run).await;
        fold_indexes(&mut reports, &indexes);
        let today = self.clock.now().date_naive();
        // One listing for every service's issue: a call per service would spend GitHub's
        // rate limit on a large fleet.
        let open_issues = self.own_security_issues().await;
        let mut services = Vec::new();
        for inv in inventories {
            let s = self
                .report_service(inv, &reports, &open_issues, today, scope)
                .await;
            services.push(s);
        }
        Ok(RescanReport {
            scan_type,
            new_findings: new_findings(&services),
            services,
            images: digests.len(),
            scans_started: starts.started,
            already_scanned_today: starts.already_scanned_today,
            duration: started.elapsed(),
        })
    }

    /// What each service in scope deploys now, a bounded number of services at once.
    async fn inventories<'a>(&'a self, scope: &Scope) -> Vec<Inventory<'a>> {
        let docs = self.policy_documents().await;
        // The futures are collected first: a lazy `map` in the stream makes the future not
        // provably `Send` for every lifetime, which `tokio::spawn` needs.
        let lookups: Vec<_> = self
            .cfg
            .services
            .iter()
            .filter(|s| scope.service.as_ref().is_none_or(|n| *n == s.name))
            .map(|svc| self.inventory(svc, docs.as_ref(), scope.environment.as_deref()))
            .collect();
        futures_util::stream::iter(lookups)
            .buffered(self.cfg.engine.concurrency)
            .collect()
            .await
    }

    /// Each digest to scan once, whichever services and environments run it: a deployed
    /// image index is scanned through its platform images (ECR scans no index), and the
    /// indexes are returned with their children to fold the reports back.
    async fn scan_targets<'a>(
        &self,
        inventories: &[Inventory<'a>],
    ) -> (Vec<(Digest, &'a ServiceConfig)>, Indexes) {
        let mut digests: Vec<(Digest, &ServiceConfig)> = Vec::new();
        let mut indexes = Indexes::new();
        for inv in inventories {
            for d in &inv.deployed {
                let kind = select::kind_of(&inv.images, &d.digest);
                let parts = match self.scanned_parts(inv.svc, &d.digest, &kind).await {
                    Ok(parts) => {
                        if kind == ImageKind::Index {
                            indexes.insert(d.digest.clone(), parts.clone());
                        }
                        parts
                    }
                    // Scanned as it is: the index's own answer says what is wrong.
                    Err(e) => {
                        tracing::warn!(service = %inv.svc.name, digest = %d.digest, error = %e, "cannot read the image index's platforms");
                        vec![(None, d.digest.clone())]
                    }
                };
                for (_, t) in parts {
                    if !digests.iter().any(|(x, _)| *x == t) {
                        digests.push((t, inv.svc));
                    }
                }
            }
        }
        (digests, indexes)
    }

    /// Ask for a basic scan of every digest, spread out over time.
    async fn start_scans(&self, digests: &[(Digest, &ServiceConfig)]) -> Starts {
        let mut starts = Starts::default();
        for (i, (digest, svc)) in digests.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(self.cfg.rescan.spread).await;
            }
            match self
                .ports
                .registry
                .start_scan(svc.registry_id.as_deref(), &svc.repository, digest)
                .await
            {
                Ok(ScanStart::Started) => starts.started += 1,
                Ok(ScanStart::AlreadyScannedToday) => starts.already_scanned_today += 1,
                Ok(ScanStart::Refused(why)) => {
                    tracing::warn!(service = %svc.name, %digest, why = %why, "ECR will not scan this image");
                    starts
                        .failed
                        .insert(digest.clone(), ScanStart::refusal(why));
                }
                Err(e) => {
                    tracing::warn!(service = %svc.name, %digest, error = %e, "could not start a scan");
                    starts.failed.insert(digest.clone(), e);
                }
            }
        }
        starts
    }

    /// The findings of every digest, waiting up to `rescan.wait` for running scans. Complete
    /// reports replace the cached ones: later promotion cycles gate on the fresh findings.
    async fn fresh_reports(
        &self,
        digests: &[(Digest, &ServiceConfig)],
        starts: &Starts,
        dry_run: bool,
    ) -> Reports {
        let wait = if dry_run {
            Duration::ZERO
        } else {
            self.cfg.rescan.wait
        };
        let deadline = Instant::now() + wait;
        let reads: Vec<_> = digests
            .iter()
            .map(|(digest, svc)| {
                let failed = starts.failed.get(digest).cloned();
                async move {
                    let r = match failed {
                        Some(e) => Err(StepError::new(Step::Scan, Cause::StartScan(e))),
                        None => self
                            .fresh_report(svc, digest, deadline)
                            .await
                            .at(Step::Scan),
                    };
                    (digest.clone(), r)
                }
            })
            .collect();
        let reports: Reports = futures_util::stream::iter(reads)
            .buffer_unordered(self.cfg.engine.concurrency)
            .collect()
            .await;
        for (digest, r) in &reports {
            if let Ok(r) = r
                && r.status == ScanStatus::Complete
            {
                self.scans.insert(digest.clone(), r.clone());
            }
        }
        reports
    }

    /// What one service deploys now in the environments in scope.
    async fn inventory<'a>(
        &self,
        svc: &'a ServiceConfig,
        docs: Result<&Vec<policy::PolicyDocument>, &StepError>,
        only_env: Option<&str>,
    ) -> Inventory<'a> {
        let mut inv = Inventory {
            svc,
            policy: None,
            images: Vec::new(),
            deployed: Vec::new(),
            problems: Vec::new(),
        };
        let env_names: Vec<String> = svc.environments.iter().map(|e| e.name.clone()).collect();
        match docs {
            Ok(docs) => {
                match policy::resolve(docs, &self.cfg.policy.ssm_path, &svc.name, &env_names) {
                    Ok(p) => inv.policy = Some(p),
                    Err(e) => inv.problems.push(format!("invalid policy: {e}")),
                }
            }
            Err(e) => inv.problems.push(e.to_string()),
        }
        match self
            .ports
            .registry
            .list_images(svc.registry_id.as_deref(), &svc.repository)
            .await
        {
            Ok(i) => inv.images = i,
            Err(e) => {
                inv.problems.push(e.to_string());
                return inv;
            }
        }
        for env in svc
            .environments
            .iter()
            .filter(|e| only_env.is_none_or(|n| n == e.name))
        {
            let refs = self.deployed_in(&mut inv, env).await;
            inv.add(env, refs);
        }
        inv
    }

    /// What one environment deploys: its files' reference and the images Argo CD reports.
    async fn deployed_in(&self, inv: &mut Inventory<'_>, env: &EnvConfig) -> Vec<ImageRef> {
        let svc = inv.svc;
        let mut refs: Vec<ImageRef> = Vec::new();
        match self
            .read_files(env)
            .await
            .and_then(|f| deployed_reference(&f, svc))
        {
            Ok(Some(r)) => refs.push(r),
            Ok(None) => {}
            Err(e) => inv.problems.push(format!("{}: {e}", env.name)),
        }
        let app = inv
            .policy
            .as_ref()
            .map_or(env.argocd_application.as_str(), |p| super::app_name(env, p));
        match self.ports.deployer.app(app, false).await {
            Ok(status) => refs.extend(image::of_repository(&status.images, &svc.image)),
            Err(e) => {
                tracing::warn!(service = %svc.name, environment = %env.name, error = %e, "Argo CD's images unavailable; rescanning what the repository deploys")
            }
        }
        refs
    }

    /// The findings of `digest`, waiting until `deadline` while its scan runs.
    async fn fresh_report(
        &self,
        svc: &ServiceConfig,
        digest: &Digest,
        deadline: Instant,
    ) -> Result<ScanReport, PortError> {
        loop {
            let r = self
                .ports
                .registry
                .scan_report(svc.registry_id.as_deref(), &svc.repository, digest)
                .await?;
            let running = matches!(r.status, ScanStatus::Pending | ScanStatus::InProgress);
            if !running || Instant::now() >= deadline {
                return Ok(r);
            }
            let pause = self
                .cfg
                .rescan
                .poll
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
        }
    }

    /// Judge one service's deployed images and bring its issue in step.
    async fn report_service(
        &self,
        inv: Inventory<'_>,
        reports: &Reports,
        open_issues: &Result<Vec<Issue>, StepError>,
        today: chrono::NaiveDate,
        scope: &Scope,
    ) -> ServiceRescan {
        let svc = inv.svc;
        let mut out = ServiceRescan {
            service: svc.name.clone(),
            rows: Vec::new(),
            problems: inv.problems,
            issue: IssueAction::None,
        };
        let Some(policy) = inv.policy else {
            return out;
        };
        let existing = match open_issues {
            Ok(all) => {
                let marker = rescan::issue_marker(&svc.name);
                all.iter().find(|i| i.body.contains(&marker)).cloned()
            }
            Err(e) => {
                out.issue = IssueAction::Failed(e.clone());
                return out;
            }
        };
        let previous = existing
            .as_ref()
            .and_then(|i| rescan::State::parse(&i.body))
            .unwrap_or_default();
        let mut results = outcomes(inv.deployed, reports, &policy, today);
        let extra = rescan::carried(
            &previous,
            &results,
            |env| scope.environment.as_deref().is_none_or(|e| e == env),
            out.problems.is_empty(),
        );
        results.extend(extra);
        let (mut rows, state) = rescan::compare(&svc.name, results, &previous, today);
        self.reverify(svc, &inv.images, &policy, &mut rows).await;
        let newest = self.newest(svc, &policy, &inv.images, &rows, today).await;
        let body = evidence::issue_body(&evidence::IssueText {
            service: &svc.name,
            rows: &rows,
            state: &state,
            day: today,
            newest,
            policy_path: &self.cfg.policy.ssm_path,
        });
        for r in rows.iter().filter(|r| r.blocked) {
            tracing::warn!(service = %svc.name, environment = %r.deployed.environment, digest = %r.deployed.digest, reasons = ?r.reasons, "deployed digest now fails the scan gate; blocked for further promotion");
        }
        let step = rescan::issue_step(
            &rows,
            existing.as_ref().map(|i| (i.number, i.body.as_str())),
            &body,
        );
        let url = existing.map(|i| i.url).unwrap_or_default();
        out.issue = if scope.dry_run {
            would(step, url)
        } else {
            self.write_issue(svc, step, &body, &rows, url).await
        };
        if let IssueAction::Opened { number, .. }
        | IssueAction::Updated { number, .. }
        | IssueAction::Closed { number, .. } = &out.issue
        {
            tracing::info!(service = %svc.name, issue = number, action = ?step, "security issue brought up to date");
        }
        out.rows = rows;
        out
    }

    /// Carry out one step on a service's security issue.
    async fn write_issue(
        &self,
        svc: &ServiceConfig,
        step: IssueStep,
        body: &str,
        rows: &[Row],
        url: String,
    ) -> IssueAction {
        let forge = &self.ports.forge;
        let title = evidence::issue_title(&svc.name);
        let written = match step {
            IssueStep::Nothing => Ok(IssueAction::None),
            IssueStep::Unchanged { number } => Ok(IssueAction::Unchanged { number, url }),
            IssueStep::Open => {
                let labels = rescan::issue_labels(&svc.name);
                forge
                    .open_issue(&title, body, &labels)
                    .await
                    .map(|i| IssueAction::Opened {
                        number: i.number,
                        url: i.url,
                    })
            }
            IssueStep::Update { number, notify } => {
                match forge.update_issue(number, &title, body, true).await {
                    Ok(()) if notify => forge
                        .comment(number, &evidence::issue_comment(rows, false))
                        .await
                        .map(|()| IssueAction::Updated { number, url }),
                    Ok(()) => Ok(IssueAction::Updated { number, url }),
                    Err(e) => Err(e),
                }
            }
            IssueStep::Close { number } => {
                match forge.update_issue(number, &title, body, false).await {
                    Ok(()) => forge
                        .comment(number, &evidence::issue_comment(rows, true))
                        .await
                        .map(|()| IssueAction::Closed { number, url }),
                    Err(e) => Err(e),
                }
            }
        };
        written.unwrap_or_else(|e| IssueAction::Failed(StepError::new(Step::Issue, e)))
    }

    /// The newest tag of the first environment's tag rule and what the gate says of it now.
    async fn newest(
        &self,
        svc: &ServiceConfig,
        policy: &policy::ServicePolicy,
        images: &[ImageRecord],
        rows: &[Row],
        today: chrono::NaiveDate,
    ) -> Option<String> {
        let first = svc.environments.first()?;
        let p = policy.environments.get(&first.name)?;
        let c = select::eligible(images, &p.tag).into_iter().next()?;
        if rows.iter().any(|r| r.deployed.digest == c.digest) {
            return Some(format!("`{}`, which is deployed (above)", c.tag));
        }
        let kind = select::kind_of(images, &c.digest);
        let verdict = match self.image_scan(svc, &c.digest, &kind, Mode::Plan).await {
            Ok(r) => match gate::gate_image(&r, &p.scan, today) {
                GateDecision::Pass { .. } => "passes the gate".to_owned(),
                GateDecision::Block { reasons, .. } => format!("blocked: {}", reasons.join("; ")),
                GateDecision::Wait { reason } => reason,
            },
            Err(e) => format!("scan unavailable: {e}"),
        };
        Some(format!("`{}` ({verdict})", c.tag))
    }
}

impl Inventory<'_> {
    /// Record what `env` deploys, by digest (a tag the registry no longer has is a problem).
    fn add(&mut self, env: &EnvConfig, refs: Vec<ImageRef>) {
        for r in refs {
            let digest = r.digest.clone().or_else(|| {
                r.tag
                    .as_ref()
                    .and_then(|t| select::find_tag(&self.images, t))
                    .map(|c| c.digest)
            });
            let Some(digest) = digest else {
                self.problems.push(format!(
                    "{}: {r} is deployed, but the registry has no such tag",
                    env.name
                ));
                continue;
            };
            if !self
                .deployed
                .iter()
                .any(|d| d.environment == env.name && d.digest == digest)
            {
                self.deployed.push(Deployed {
                    environment: env.name.clone(),
                    reference: r.to_string(),
                    digest,
                });
            }
        }
    }
}

impl Engine {
    /// Verify again the signature of each deployed image whose environment requires one,
    /// and block (and explain) a row whose signature no longer verifies: its key was taken
    /// out of the policy or rotated away, or the signature was deleted. A check that cannot
    /// be made now changes nothing.
    async fn reverify(
        &self,
        svc: &ServiceConfig,
        images: &[ImageRecord],
        policy: &policy::ServicePolicy,
        rows: &mut [Row],
    ) {
        for row in rows.iter_mut().filter(|r| r.in_scope) {
            let Some(p) = policy.environments.get(&row.deployed.environment) else {
                continue;
            };
            if !p.signatures.required {
                continue;
            }
            let digest = &row.deployed.digest;
            match self
                .signature_check(svc, images, digest, &p.signatures)
                .await
            {
                Ok(SignatureCheck::Verified(_)) => {}
                Ok(SignatureCheck::Unverified { reason }) => {
                    tracing::warn!(service = %svc.name, environment = %row.deployed.environment, %digest, %reason, "a deployed image's signature no longer verifies");
                    row.blocked = true;
                    row.signature = Some(reason);
                }
                Err(why) => {
                    tracing::warn!(service = %svc.name, %digest, error = %why, "cannot verify a deployed image's signature again");
                }
            }
        }
    }
}

/// Each deployment judged under its environment's policy.
fn outcomes(
    deployed: Vec<Deployed>,
    reports: &Reports,
    policy: &policy::ServicePolicy,
    today: chrono::NaiveDate,
) -> Vec<(Deployed, Outcome)> {
    deployed
        .into_iter()
        .map(|d| {
            let outcome = match (
                reports.get(&d.digest),
                policy.environments.get(&d.environment),
            ) {
                (Some(Ok(r)), Some(p)) => rescan::judge(r, &p.scan, today),
                (Some(Err(e)), _) => Outcome::Unknown {
                    reason: e.to_string(),
                },
                (None, _) | (_, None) => Outcome::Unknown {
                    reason: "not scanned".to_owned(),
                },
            };
            (d, outcome)
        })
        .collect()
}

/// What a dry run says a real run would do to the issue.
fn would(step: IssueStep, url: String) -> IssueAction {
    match step {
        IssueStep::Nothing => IssueAction::None,
        IssueStep::Unchanged { number } => IssueAction::Unchanged { number, url },
        IssueStep::Open => IssueAction::Would("open"),
        IssueStep::Update { .. } => IssueAction::Would("update"),
        IssueStep::Close { .. } => IssueAction::Would("close"),
    }
}

/// New findings (counted under the policy) by severity: each once per image, however many
/// environments run it.
fn new_findings(services: &[ServiceRescan]) -> BTreeMap<Severity, u64> {
    let mut out: BTreeMap<Severity, u64> = BTreeMap::new();
    for s in services {
        let mut seen = std::collections::BTreeSet::new();
        for r in &s.rows {
            for f in r.findings.iter().filter(|f| r.new.contains(&f.id)) {
                if seen.insert((r.deployed.digest.clone(), f.id.clone())) {
                    *out.entry(f.severity).or_insert(0) += 1;
                }
            }
        }
    }
    out
}
