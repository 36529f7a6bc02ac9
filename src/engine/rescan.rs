//! The rescan of everything deployed: find what each environment runs now (the GitOps
//! repository's base branch and Argo CD's `summary.images`, by digest), get fresh findings
//! (StartImageScan, spread out, for basic scanning; Inspector's current findings for
//! enhanced), and keep one security issue per service in step with them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::{Engine, Mode, deployed_reference, evidence};
use crate::config::ServiceConfig;
use crate::domain::gate::{self, GateDecision, ScanReport, ScanStatus, Severity};
use crate::domain::image::{self, Digest, ImageRef};
use crate::domain::policy;
use crate::domain::rescan::{self, Deployed, IssueStep, Outcome, Row};
use crate::domain::select::{self, ImageRecord};
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
    Failed(String),
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

impl Engine {
    /// Rescan what `scope` covers and bring each service's security issue up to date.
    /// A failure in one service is reported in its entry and never stops the others.
    pub async fn rescan(&self, scope: &Scope) -> Result<RescanReport, PortError> {
        let started = Instant::now();
        self.ports.repo.sync().await?;
        let scan_type = match self.cfg.rescan.scan_type {
            Some(t) => t,
            None => self.ports.registry.scan_type().await?,
        };
        let docs = self.policy_documents().await;
        let services: Vec<&ServiceConfig> = self
            .cfg
            .services
            .iter()
            .filter(|s| scope.service.as_ref().is_none_or(|n| *n == s.name))
            .collect();
        // The futures are collected first: a lazy `map` in the stream makes the future not
        // provably `Send` for every lifetime, which `tokio::spawn` needs.
        let lookups: Vec<_> = services
            .into_iter()
            .map(|svc| self.inventory(svc, docs.as_ref(), scope.environment.as_deref()))
            .collect();
        let inventories: Vec<Inventory<'_>> = futures_util::stream::iter(lookups)
            .buffered(self.cfg.engine.concurrency)
            .collect()
            .await;

        // Each digest once, whichever services and environments run it.
        let mut digests: Vec<(Digest, &ServiceConfig)> = Vec::new();
        for inv in &inventories {
            for d in &inv.deployed {
                if !digests.iter().any(|(x, _)| *x == d.digest) {
                    digests.push((d.digest.clone(), inv.svc));
                }
            }
        }
        let mut failed_starts: HashMap<Digest, String> = HashMap::new();
        let (mut scans_started, mut already_scanned_today) = (0, 0);
        if scan_type == ScanType::Basic && !scope.dry_run {
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
                    Ok(ScanStart::Started) => scans_started += 1,
                    Ok(ScanStart::AlreadyScannedToday) => already_scanned_today += 1,
                    Err(e) => {
                        tracing::warn!(service = %svc.name, %digest, error = %e, "could not start a scan");
                        failed_starts.insert(digest.clone(), e.to_string());
                    }
                }
            }
        }
        let deadline = Instant::now()
            + if scope.dry_run {
                Duration::ZERO
            } else {
                self.cfg.rescan.wait
            };
        let reads: Vec<_> = digests
            .iter()
            .map(|(digest, svc)| {
                let failed = failed_starts.get(digest).cloned();
                async move {
                    let r = match failed {
                        Some(e) => Err(format!("StartImageScan failed: {e}")),
                        None => self.fresh_report(svc, digest, deadline).await,
                    };
                    (digest.clone(), r)
                }
            })
            .collect();
        let reports: HashMap<Digest, Result<ScanReport, String>> =
            futures_util::stream::iter(reads)
                .buffer_unordered(self.cfg.engine.concurrency)
                .collect()
                .await;
        // Later promotion cycles gate on the fresh findings, not on those cached at push time.
        for (digest, r) in &reports {
            if let Ok(r) = r
                && r.status == ScanStatus::Complete
            {
                self.scans.insert(digest.clone(), r.clone());
            }
        }

        let today = self.clock.now().date_naive();
        // One listing for every service's issue: a call per service would spend GitHub's
        // rate limit on a large fleet.
        let open_issues = self
            .ports
            .forge
            .open_issues(&rescan::security_labels())
            .await
            .map_err(|e| e.to_string());
        let mut out = Vec::new();
        let mut new_findings: BTreeMap<Severity, u64> = BTreeMap::new();
        for inv in inventories {
            let s = self
                .report_service(
                    inv,
                    &reports,
                    &open_issues,
                    today,
                    scope.environment.as_deref(),
                    scope.dry_run,
                )
                .await;
            // Each new finding once per image, however many environments run it.
            let mut seen = std::collections::BTreeSet::new();
            for r in &s.rows {
                for f in r.findings.iter().filter(|f| r.new.contains(&f.id)) {
                    if seen.insert((r.deployed.digest.clone(), f.id.clone())) {
                        *new_findings.entry(f.severity).or_insert(0) += 1;
                    }
                }
            }
            out.push(s);
        }
        Ok(RescanReport {
            scan_type,
            services: out,
            images: digests.len(),
            scans_started,
            already_scanned_today,
            new_findings,
            duration: started.elapsed(),
        })
    }

    /// What one service deploys now in the environments in scope.
    async fn inventory<'a>(
        &self,
        svc: &'a ServiceConfig,
        docs: Result<&Vec<policy::PolicyDocument>, &String>,
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
            Err(e) => inv.problems.push(e.clone()),
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
            for r in refs {
                let digest = r.digest.clone().or_else(|| {
                    r.tag
                        .as_ref()
                        .and_then(|t| select::find_tag(&inv.images, t))
                        .map(|c| c.digest)
                });
                let Some(digest) = digest else {
                    inv.problems.push(format!(
                        "{}: {r} is deployed, but the registry has no such tag",
                        env.name
                    ));
                    continue;
                };
                if !inv
                    .deployed
                    .iter()
                    .any(|d| d.environment == env.name && d.digest == digest)
                {
                    inv.deployed.push(Deployed {
                        environment: env.name.clone(),
                        reference: r.to_string(),
                        digest,
                    });
                }
            }
        }
        inv
    }

    /// The findings of `digest`, waiting until `deadline` while its scan runs.
    async fn fresh_report(
        &self,
        svc: &ServiceConfig,
        digest: &Digest,
        deadline: Instant,
    ) -> Result<ScanReport, String> {
        loop {
            let r = self
                .ports
                .registry
                .scan_report(svc.registry_id.as_deref(), &svc.repository, digest)
                .await
                .map_err(|e| e.to_string())?;
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
        reports: &HashMap<Digest, Result<ScanReport, String>>,
        open_issues: &Result<Vec<Issue>, String>,
        today: chrono::NaiveDate,
        scope_env: Option<&str>,
        dry_run: bool,
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
        let results: Vec<(Deployed, Outcome)> = inv
            .deployed
            .into_iter()
            .map(|d| {
                let outcome = match (
                    reports.get(&d.digest),
                    policy.environments.get(&d.environment),
                ) {
                    (Some(Ok(r)), Some(p)) => rescan::judge(r, &p.scan, today),
                    (Some(Err(e)), _) => Outcome::Unknown { reason: e.clone() },
                    (None, _) | (_, None) => Outcome::Unknown {
                        reason: "not scanned".to_owned(),
                    },
                };
                (d, outcome)
            })
            .collect();
        let forge = &self.ports.forge;
        let labels = rescan::issue_labels(&svc.name);
        let marker = rescan::issue_marker(&svc.name);
        let existing = match open_issues {
            Ok(all) => all.iter().find(|i| i.body.contains(&marker)).cloned(),
            Err(e) => {
                out.issue = IssueAction::Failed(e.clone());
                return out;
            }
        };
        let previous = existing
            .as_ref()
            .and_then(|i| rescan::State::parse(&i.body))
            .unwrap_or_default();
        let mut results = results;
        let extra = rescan::carried(
            &previous,
            &results,
            |env| scope_env.is_none_or(|e| e == env),
            out.problems.is_empty(),
        );
        results.extend(extra);
        let (rows, state) = rescan::compare(&svc.name, results, &previous, today);
        let newest = self.newest(svc, &policy, &inv.images, &rows, today).await;
        let body = evidence::issue_body(&evidence::IssueText {
            service: &svc.name,
            rows: &rows,
            state: &state,
            day: today,
            newest,
            policy_path: &self.cfg.policy.ssm_path,
        });
        let title = evidence::issue_title(&svc.name);
        let step = rescan::issue_step(
            &rows,
            existing.as_ref().map(|i| (i.number, i.body.as_str())),
            &body,
        );
        for r in rows.iter().filter(|r| r.blocked) {
            tracing::warn!(service = %svc.name, environment = %r.deployed.environment, digest = %r.deployed.digest, reasons = ?r.reasons, "deployed digest now fails the scan gate; blocked for further promotion");
        }
        out.issue = if dry_run {
            match step {
                IssueStep::Nothing => IssueAction::None,
                IssueStep::Unchanged { number } => IssueAction::Unchanged {
                    number,
                    url: existing.map(|i| i.url).unwrap_or_default(),
                },
                IssueStep::Open => IssueAction::Would("open"),
                IssueStep::Update { .. } => IssueAction::Would("update"),
                IssueStep::Close { .. } => IssueAction::Would("close"),
            }
        } else {
            let url = existing.as_ref().map(|i| i.url.clone()).unwrap_or_default();
            let written =
                match step {
                    IssueStep::Nothing => Ok(IssueAction::None),
                    IssueStep::Unchanged { number } => Ok(IssueAction::Unchanged { number, url }),
                    IssueStep::Open => forge.open_issue(&title, &body, &labels).await.map(|i| {
                        IssueAction::Opened {
                            number: i.number,
                            url: i.url,
                        }
                    }),
                    IssueStep::Update { number, notify } => {
                        let r = forge.update_issue(number, &title, &body, true).await;
                        match r {
                            Ok(()) if notify => forge
                                .comment(number, &evidence::issue_comment(&rows, false))
                                .await
                                .map(|()| IssueAction::Updated { number, url }),
                            Ok(()) => Ok(IssueAction::Updated { number, url }),
                            Err(e) => Err(e),
                        }
                    }
                    IssueStep::Close { number } => {
                        match forge.update_issue(number, &title, &body, false).await {
                            Ok(()) => forge
                                .comment(number, &evidence::issue_comment(&rows, true))
                                .await
                                .map(|()| IssueAction::Closed { number, url }),
                            Err(e) => Err(e),
                        }
                    }
                };
            written.unwrap_or_else(|e| IssueAction::Failed(e.to_string()))
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
        let verdict = match self.scan(svc, &c.digest, Mode::Plan).await {
            Ok(r) => match gate::gate(&r, &p.scan, today) {
                GateDecision::Pass { .. } => "passes the gate".to_owned(),
                GateDecision::Block { reasons, .. } => format!("blocked: {}", reasons.join("; ")),
                GateDecision::Wait { reason } => reason,
            },
            Err(e) => format!("scan unavailable: {e}"),
        };
        Some(format!("`{}` ({verdict})", c.tag))
    }
}
