//! What `/metrics` exports and `/readyz` reports, fed by the run loop after each cycle and
//! rescan. Labels are bounded: service, environment, outcome, severity and result, never
//! tags, digests or user names.

use crate::domain::provenance::Forgery;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::domain::image::Digest;
use crate::domain::plan::Decision;
use crate::engine::rescan::RescanReport;
use crate::engine::{Action, EnvReport, Verification};
use crate::telemetry::{ApiCounts, ApiMetrics};

mod families;

pub use families::*;

/// What `/readyz` answers from.
#[derive(Default)]
pub struct Readiness {
    /// Seconds since the epoch of the last finished cycle (0: none yet).
    pub last_cycle: AtomicI64,
    pub policy_loaded: AtomicBool,
    /// Systems every call of which failed in the last cycle, with how many.
    pub unreachable: Mutex<BTreeMap<String, String>>,
    /// A follower under leader election: it stands by, so its cycles are not expected.
    pub standby: AtomicBool,
    /// The event queue, when configured: `Ok` while it answers, else why and since when
    /// (seconds since the epoch). Informational: polling carries on without it.
    pub events: Mutex<Option<Result<(), (String, i64)>>>,
}

/// The metrics tugboat exports, and the readiness state beside them.
pub struct Metrics {
    registry: Registry,
    pub cycles: Family<ResultLabels, Counter>,
    pub cycle_duration: Histogram,
    pub decisions: Family<OutcomeLabels, Counter>,
    pub promotions: Family<OutcomeLabels, Counter>,
    pub rejections: Family<RejectionLabels, Counter>,
    pub step_failures: Family<StepLabels, Counter>,
    pub push_to_pr: Histograms<EnvLabels>,
    pub merge_to_healthy: Histograms<EnvLabels>,
    pub pending_approvals: Family<EnvLabels, Gauge>,
    /// Per environment, since when its longest-waiting promotion awaits approval (0: none).
    pub awaiting_since: Family<EnvLabels, Gauge<i64, AtomicI64>>,
    pub delivery: DeliveryMetrics,
    pub holds: Family<HoldLabels, Counter>,
    pub held: Family<ServiceEnvLabels, Gauge>,
    pub last_success: Gauge<i64, AtomicI64>,
    pub rescan: RescanMetrics,
    pub events: EventMetrics,
    pub notify: NotifyMetrics,
    /// Publications of the dashboard issue by result.
    pub dashboard: Family<ResultLabels, Counter>,
    /// Records on the forge that tugboat did not write, ignored, by what gave them away.
    pub forged: Family<KindLabels, Counter>,
    pub ready: Readiness,
    /// How long after the last finished cycle `/readyz` still passes; grows with the longest
    /// health timeout of the policy, since a cycle verifies merges inline.
    max_cycle_age_secs: AtomicI64,
    /// The same, exported, so that an alert on a missed cycle follows the configuration.
    max_cycle_age: Gauge<i64, AtomicI64>,
    /// The digest last refused per (service, environment): a rejection is counted once per
    /// candidate, not once per cycle it stays refused.
    refused: Mutex<HashMap<(String, String), Digest>>,
    /// Since when each (environment, service) awaits an approval (its PR head's commit),
    /// as its last reconcile said (a cycle of some services leaves the others' as they were).
    awaiting: Mutex<BTreeMap<(String, String), Option<i64>>>,
}

impl Metrics {
    /// The metrics, with the adapters' API counters `api` registered beside them.
    pub fn new(max_cycle_age_secs: i64, api: &ApiMetrics) -> Self {
        let mut registry = Registry::with_prefix("tugboat");
        api.register(&mut registry);
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register("build_info", "tugboat's version (always 1)", build);
        let mut m = Self {
            cycles: Family::default(),
            cycle_duration: cycle_buckets(),
            decisions: Family::default(),
            promotions: Family::default(),
            rejections: Family::default(),
            step_failures: Family::default(),
            push_to_pr: Family::new_with_constructor(push_to_pr_buckets),
            merge_to_healthy: Family::new_with_constructor(merge_to_healthy_buckets),
            pending_approvals: Family::default(),
            awaiting_since: Family::default(),
            delivery: DeliveryMetrics::new(&mut registry),
            holds: Family::default(),
            held: Family::default(),
            last_success: Gauge::default(),
            rescan: RescanMetrics::new(&mut registry),
            events: EventMetrics::default(),
            notify: NotifyMetrics::default(),
            dashboard: Family::default(),
            forged: Family::default(),
            ready: Readiness::default(),
            max_cycle_age_secs: AtomicI64::new(max_cycle_age_secs),
            max_cycle_age: Gauge::default(),
            refused: Mutex::default(),
            awaiting: Mutex::default(),
            registry,
        };
        let mut r = std::mem::take(&mut m.registry);
        m.events.register(&mut r);
        m.notify.register(&mut r);
        r.register(
            "dashboard_updates",
            "Publications of the dashboard issue by result (created, updated, unchanged, left_to_other, error)",
            m.dashboard.clone(),
        );
        r.register("cycles", "Reconcile cycles by result", m.cycles.clone());
        for kind in Forgery::ALL {
            // Zero series from the start, so an alert on their increase works at once.
            m.forged
                .get_or_create(&KindLabels {
                    kind: kind.as_str().into(),
                })
                .inc_by(0);
        }
        r.register(
            "forged_records",
            "Records tugboat found on the forge but did not write (a PR or issue someone else opened, a label someone else added, a PR merged into another branch, a state block contradicting git history, a head someone else pushed, a body or comment whose seal does not open, a ledger file whose seal does not verify), each counted once and ignored, by kind",
            m.forged.clone(),
        );
        m.register_cycles(&mut r);
        m.register_waits(&mut r);
        m.registry = r;
        m
    }

    /// The cycles, their decisions and outcomes, and how long promotions take.
    fn register_cycles(&self, r: &mut Registry) {
        r.register_with_unit(
            "cycle_duration",
            "How long reconcile cycles took",
            Unit::Seconds,
            self.cycle_duration.clone(),
        );
        r.register(
            "decisions",
            "Per-environment decisions by outcome, each cycle",
            self.decisions.clone(),
        );
        r.register(
        "promotions",
        "Merged promotions by their verification's outcome (healthy, unhealthy; one not verified yet is counted once it is), rollbacks (rolled_back) and failed steps (error)",
        self.promotions.clone(),
    );
        r.register(
            "gate_rejections",
            "Candidates the scan gate refused, once per candidate, by severity over threshold",
            self.rejections.clone(),
        );
        r.register(
            "step_failures",
            "Failed engine steps, by step and kind of failure",
            self.step_failures.clone(),
        );
        r.register_with_unit(
            "push_to_pr",
            "From the image's push to its promotion PR opening",
            Unit::Seconds,
            self.push_to_pr.clone(),
        );
        r.register_with_unit(
            "merge_to_healthy",
            "From the merge to Argo CD reporting the application Healthy with the image",
            Unit::Seconds,
            self.merge_to_healthy.clone(),
        );
    }

    /// What waits: approvals, holds, and how old the last cycle may be.
    fn register_waits(&self, r: &mut Registry) {
        r.register(
            "pending_approvals",
            "Promotion PRs waiting for approval",
            self.pending_approvals.clone(),
        );
        r.register(
        "awaiting_approval_since_timestamp_seconds",
        "Per environment, when the head of the promotion that has waited longest for approval was committed (0: none waits)",
        self.awaiting_since.clone(),
    );
        r.register(
            "holds",
            "Environments held because a person changed them (or an approver asked), by cause",
            self.holds.clone(),
        );
        r.register(
            "held",
            "1 while tugboat holds the service in the environment (nothing is promoted there)",
            self.held.clone(),
        );
        self.max_cycle_age
            .set(self.max_cycle_age_secs.load(Ordering::Relaxed));
        r.register_with_unit(
        "cycle_max_age",
        "How long after the last finished cycle tugboat still counts as ready (3 intervals + 10 minutes + the longest health timeout)",
        Unit::Seconds,
        self.max_cycle_age.clone(),
    );
        r.register(
            "last_successful_cycle_timestamp_seconds",
            "When the last cycle finished without a global error",
            self.last_success.clone(),
        );
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn max_cycle_age_secs(&self) -> i64 {
        self.max_cycle_age_secs.load(Ordering::Relaxed)
    }

    pub fn set_max_cycle_age_secs(&self, secs: i64) {
        self.max_cycle_age_secs.store(secs, Ordering::Relaxed);
        self.max_cycle_age.set(secs);
    }

    /// Record a finished cycle (`Err`: it failed as a whole) with the API calls it made.
    pub fn record_cycle(
        &self,
        result: Result<&[EnvReport], &str>,
        full: bool,
        took: Duration,
        calls: &ApiCounts,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let secs = now.timestamp();
        self.cycle_duration.observe(took.as_secs_f64());
        self.ready.last_cycle.store(secs, Ordering::Relaxed);
        self.record_calls(calls, full);
        let reports = match result {
            Ok(r) => r,
            Err(_) => {
                self.cycles
                    .get_or_create(&ResultLabels {
                        result: "error".into(),
                    })
                    .inc();
                return;
            }
        };
        self.cycles
            .get_or_create(&ResultLabels {
                result: "ok".into(),
            })
            .inc();
        self.last_success.set(secs);
        self.record_reports(reports, now);
    }

    /// Count the forged records the engine found and ignored (each once).
    pub fn record_forged(&self, found: &BTreeMap<Forgery, u64>) {
        for (kind, n) in found {
            self.forged
                .get_or_create(&KindLabels {
                    kind: kind.as_str().into(),
                })
                .inc_by(*n);
        }
    }

    /// Which systems every call of which failed, for `/readyz`: a full cycle says it for
    /// every system, a cycle of some services only for the systems it called.
    fn record_calls(&self, calls: &ApiCounts, full: bool) {
        let mut unreachable = BTreeMap::new();
        let mut called = BTreeSet::new();
        for (system, (calls, errors)) in crate::telemetry::by_system(calls) {
            called.insert(system.to_owned());
            if calls > 0 && errors == calls {
                unreachable.insert(
                    system.to_owned(),
                    format!("{errors} of {calls} calls failed in the last cycle"),
                );
            }
        }
        if let Ok(mut u) = self.ready.unreachable.lock() {
            if !full {
                u.retain(|system, _| !called.contains(system));
                unreachable.append(&mut u);
            }
            *u = unreachable;
        }
    }

    /// What each environment decided and did.
    fn record_reports(&self, reports: &[EnvReport], now: chrono::DateTime<chrono::Utc>) {
        let mut awaiting = self.awaiting.lock().ok();
        for r in reports {
            let labels = |outcome: &str| OutcomeLabels {
                service: r.service.clone(),
                environment: r.environment.clone(),
                outcome: outcome.into(),
            };
            let outcome = if matches!(r.action, Action::Failed { .. }) {
                "error"
            } else {
                r.decision.kind()
            };
            self.decisions.get_or_create(&labels(outcome)).inc();
            let here = ServiceEnvLabels {
                service: r.service.clone(),
                environment: r.environment.clone(),
            };
            self.held
                .get_or_create(&here)
                .set(i64::from(matches!(r.decision, Decision::Held { .. })));
            if let Some(a) = awaiting.as_mut() {
                let since = match &r.action {
                    Action::AwaitingApproval { since, .. } => Some(since.timestamp()),
                    _ => None,
                };
                a.insert((r.environment.clone(), r.service.clone()), since);
            }
            self.delivery.record(&r.environment, &r.action);
            self.record_action(r, now);
            self.record_rejection(r);
        }
        if let Some(a) = awaiting.as_deref() {
            self.record_awaiting(a);
        }
    }

    /// What `r`'s action adds to the counts: a PR opened, a merge verified, a rollback, a
    /// hold, a failed step.
    fn record_action(&self, r: &EnvReport, now: chrono::DateTime<chrono::Utc>) {
        let labels = |outcome: &str| OutcomeLabels {
            service: r.service.clone(),
            environment: r.environment.clone(),
            outcome: outcome.into(),
        };
        let env = || EnvLabels {
            environment: r.environment.clone(),
        };
        match &r.action {
            Action::Opened { .. } => {
                if let Some(c) = r.decision.candidate() {
                    let waited = (now - c.pushed_at).num_milliseconds().max(0) as f64;
                    self.push_to_pr
                        .get_or_create(&env())
                        .observe(waited / 1000.0);
                }
            }
            Action::Merged { verification, .. } => match verification {
                Verification::Healthy { after, .. } => {
                    self.merge_to_healthy
                        .get_or_create(&env())
                        .observe(after.as_secs_f64());
                    self.promotions.get_or_create(&labels("healthy")).inc();
                }
                Verification::Failed { .. } => {
                    self.promotions.get_or_create(&labels("unhealthy")).inc();
                }
                // Not an outcome yet: verified again next cycle, and counted then, once
                // (Argo CD's failing calls show in `tugboat_api_errors_total`).
                // A paused Rollout holds its environment: counted with the holds.
                Verification::Unknown { .. } | Verification::Paused { .. } => {}
            },
            Action::RolledBack { .. } => {
                self.promotions.get_or_create(&labels("rolled_back")).inc();
            }
            Action::EnvironmentHeld { cause, .. } => {
                self.holds
                    .get_or_create(&HoldLabels {
                        service: r.service.clone(),
                        environment: r.environment.clone(),
                        cause: cause.as_str().to_owned(),
                    })
                    .inc();
            }
            Action::Failed { error } => {
                self.promotions.get_or_create(&labels("error")).inc();
                self.step_failures
                    .get_or_create(&StepLabels {
                        step: error.step.as_str().to_owned(),
                        kind: error.metric_label().to_owned(),
                    })
                    .inc();
            }
            _ => {}
        }
    }

    /// A candidate the gate refused, counted once per candidate by severity.
    fn record_rejection(&self, r: &EnvReport) {
        if let (Some(severities), Decision::Blocked { candidate, .. }) = (&r.rejected, &r.decision)
        {
            let key = (r.service.clone(), r.environment.clone());
            let first = self.refused.lock().is_ok_and(|mut m| {
                m.insert(key, candidate.digest.clone()).as_ref() != Some(&candidate.digest)
            });
            if first {
                let names: Vec<&str> = if severities.is_empty() {
                    vec!["UNSCANNED"]
                } else {
                    severities.iter().map(|s| s.as_str()).collect()
                };
                for severity in names {
                    self.rejections
                        .get_or_create(&RejectionLabels {
                            service: r.service.clone(),
                            environment: r.environment.clone(),
                            severity: severity.to_owned(),
                        })
                        .inc();
                }
            }
        }
    }

    /// Per environment: how many promotions wait for approval, and since when the longest has.
    fn record_awaiting(&self, awaiting: &BTreeMap<(String, String), Option<i64>>) {
        let mut pending: BTreeMap<&str, (i64, Option<i64>)> = BTreeMap::new();
        for ((environment, _), since) in awaiting.iter() {
            let (n, oldest) = pending.entry(environment.as_str()).or_default();
            if let Some(t) = since {
                *n += 1;
                *oldest = Some(oldest.map_or(*t, |o| o.min(*t)));
            }
        }
        for (environment, (n, oldest)) in pending {
            let labels = EnvLabels {
                environment: environment.to_owned(),
            };
            self.pending_approvals.get_or_create(&labels).set(n);
            self.awaiting_since
                .get_or_create(&labels)
                .set(oldest.unwrap_or(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::gate::Severity;
    use crate::domain::image::Tag;
    use crate::domain::select::Candidate;

    use crate::engine::fake::report;

    /// Tag 1.2.0 of user_service, pushed 10 minutes before `now`.
    fn candidate(now: chrono::DateTime<chrono::Utc>) -> Candidate {
        Candidate {
            tag: Tag::parse("1.2.0").unwrap(),
            digest: Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap(),
            pushed_at: now - chrono::Duration::seconds(600),
        }
    }

    /// Dev's row: `candidate` promoted, merged as PR #1 and verified at `verified_at`.
    fn merged(
        candidate: &Candidate,
        verification: Verification,
        verified_at: chrono::DateTime<chrono::Utc>,
    ) -> EnvReport {
        report(
            "dev",
            Decision::Promote {
                from: None,
                to: candidate.clone(),
            },
            Action::Merged {
                number: 1,
                url: String::new(),
                sha: "abc".into(),
                verification,
                timing: crate::engine::Timing {
                    verified_at,
                    since: Some(candidate.pushed_at),
                },
            },
        )
    }

    #[test]
    fn a_merge_argo_cd_could_not_read_is_counted_once_by_the_outcome_a_later_cycle_verifies() {
        let now = chrono::Utc::now();
        let candidate = candidate(now);
        let m = Metrics::new(600, &ApiMetrics::default());
        let unknown = Verification::Unknown {
            reason: "Argo CD answered 503".into(),
        };
        let healthy = Verification::Healthy {
            after: Duration::from_secs(5),
            automated: Some(true),
            evidence: None,
        };
        for verification in [unknown, healthy] {
            let reports = [merged(&candidate, verification, now)];
            let api = ApiCounts::new();
            m.record_cycle(Ok(&reports), true, Duration::ZERO, &api, now);
        }
        let text = m.encode();
        let promotions: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("tugboat_promotions_total{"))
            .collect();
        assert_eq!(
            promotions,
            [
                "tugboat_promotions_total{service=\"user_service\",environment=\"dev\",outcome=\"healthy\"} 1"
            ]
        );
    }

    #[test]
    fn a_cycle_feeds_promotions_latencies_pending_approvals_and_one_rejection_per_candidate() {
        let now = chrono::Utc::now();
        let candidate = candidate(now);
        let mut blocked = report(
            "staging",
            Decision::Blocked {
                candidate: candidate.clone(),
                reasons: vec!["1 CRITICAL".into()],
            },
            Action::None,
        );
        blocked.rejected = Some(vec![Severity::Critical]);
        let reports = vec![
            merged(
                &candidate,
                Verification::Healthy {
                    after: Duration::from_secs(42),
                    automated: Some(true),
                    evidence: None,
                },
                now - chrono::Duration::seconds(100),
            ),
            report(
                "prod",
                Decision::Promote {
                    from: None,
                    to: candidate.clone(),
                },
                Action::AwaitingApproval {
                    number: 2,
                    url: String::new(),
                    head: "abc".into(),
                    approvals: crate::engine::Approvals::default(),
                    since: now - chrono::Duration::seconds(300),
                },
            ),
            blocked,
        ];
        let m = Metrics::new(600, &ApiMetrics::default());
        for _ in 0..3 {
            m.record_cycle(
                Ok(&reports),
                true,
                Duration::from_millis(300),
                &ApiCounts::new(),
                now,
            );
        }
        let text = m.encode();
        for line in [
            "tugboat_build_info{version=\"0.1.0\"} 1",
            "tugboat_promotions_total{service=\"user_service\",environment=\"dev\",outcome=\"healthy\"} 3",
            "tugboat_merge_to_healthy_seconds_sum{environment=\"dev\"} 126.0",
            "tugboat_pending_approvals{environment=\"prod\"} 1",
            "tugboat_pending_approvals{environment=\"dev\"} 0",
            &format!(
                "tugboat_awaiting_approval_since_timestamp_seconds{{environment=\"prod\"}} {}",
                now.timestamp() - 300
            ),
            "tugboat_awaiting_approval_since_timestamp_seconds{environment=\"dev\"} 0",
            "tugboat_deployments_total{environment=\"dev\",result=\"healthy\"} 3",
            "tugboat_lead_time_seconds_sum{environment=\"dev\"} 1500.0",
            "tugboat_gate_rejections_total{service=\"user_service\",environment=\"staging\",severity=\"CRITICAL\"} 1",
            "tugboat_cycle_duration_seconds_count 3",
            "tugboat_cycles_total{result=\"ok\"} 3",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("1.2.0") && !text.contains("sha256"),
            "no tags or digests in labels"
        );
    }

    /// What `/metrics` exports after a cycle that deployed, rolled back, awaited an approval
    /// and failed a step, a rescan, event-queue traffic and a write budget: the `# TYPE`
    /// names (families, without `_total`).
    fn exported_families() -> (BTreeSet<String>, String) {
        #[derive(Debug)]
        struct Writes;
        impl crate::telemetry::Budget for Writes {
            fn system(&self) -> &'static str {
                "github"
            }
            fn remaining(&self) -> Vec<(&'static str, usize)> {
                vec![("minute", 80), ("hour", 500)]
            }
            fn waiting(&self) -> usize {
                0
            }
        }
        // As after a first call (the API counters are created by the adapters' calls).
        let api = ApiMetrics::default();
        api.call("github", "pulls/list");
        api.error("github", "pulls/list");
        api.retry("github", "pulls/list");
        api.watch_budget(std::sync::Arc::new(Writes));
        let m = Metrics::new(600, &api);
        let now = chrono::Utc::now();
        let timing = crate::engine::Timing {
            verified_at: now,
            since: Some(now - chrono::Duration::seconds(600)),
        };
        let healthy = Verification::Healthy {
            after: Duration::from_secs(30),
            automated: Some(true),
            evidence: None,
        };
        let failed = crate::engine::StepError::new(
            crate::engine::Step::Merge,
            crate::engine::Cause::ChecksFailed {
                pr: 3,
                failed: vec!["lint".into()],
            },
        );
        let actions = [
            Action::Merged {
                number: 1,
                url: String::new(),
                sha: "abc".into(),
                verification: healthy.clone(),
                timing,
            },
            Action::RolledBack {
                bad: 1,
                number: 2,
                url: String::new(),
                verification: healthy,
                timing,
                promotion: None,
            },
            Action::AwaitingApproval {
                number: 3,
                url: String::new(),
                head: "abc".into(),
                approvals: crate::engine::Approvals::default(),
                since: now,
            },
            Action::Failed { error: failed },
        ];
        let mut reports: Vec<EnvReport> = actions
            .into_iter()
            .map(|a| {
                let nothing = Decision::NoCandidate { reason: "-".into() };
                report("dev", nothing, a)
            })
            .collect();
        // And a PR opened for a candidate, and a candidate the gate refused.
        let candidate = Candidate {
            tag: Tag::parse("1.2.0").unwrap(),
            digest: Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap(),
            pushed_at: now - chrono::Duration::seconds(60),
        };
        let promote = Decision::Promote {
            from: None,
            to: candidate.clone(),
        };
        let opened = Action::Opened {
            number: 4,
            url: String::new(),
        };
        reports.push(report("staging", promote, opened));
        let refused = Decision::Blocked {
            candidate,
            reasons: vec!["1 CRITICAL".into()],
        };
        let mut blocked = report("prod", refused, Action::None);
        blocked.rejected = Some(vec![Severity::Critical]);
        reports.push(blocked);
        m.record_cycle(Ok(&reports), true, Duration::ZERO, &api.snapshot(), now);
        let rescan = crate::engine::rescan::RescanReport {
            scan_type: crate::ports::ScanType::Basic,
            services: vec![],
            images: 3,
            scans_started: 3,
            already_scanned_today: 0,
            new_findings: [(Severity::High, 1)].into(),
            duration: Duration::from_secs(40),
        };
        m.rescan.record(Some(&rescan), now.timestamp());
        m.events.outcome("wake");
        m.notify.count("slack", "promoted", "sent");
        let text = m.encode();
        let exported = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        (exported, text)
    }

    /// Every `tugboat_…` metric name in `text`, but the recording rules' own names
    /// (`environment:tugboat_…:…`).
    fn queried_metrics(text: &str) -> BTreeSet<&str> {
        let mut queried = BTreeSet::new();
        for (i, _) in text.match_indices("tugboat_") {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if !text[..i].ends_with(':') && end > "tugboat_".len() {
                queried.insert(&rest[..end]);
            }
        }
        queried
    }

    fn assert_exported(what: &str, queried: &BTreeSet<&str>) {
        let (exported, text) = exported_families();
        for name in queried {
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            assert!(
                exported.contains(*name) || exported.contains(family),
                "{what} queries {name}, which /metrics does not export:\n{text}"
            );
        }
    }

    const DASHBOARD: &str = include_str!("../../../helm/tugboat/files/grafana-dashboard.json");

    #[test]
    fn every_metric_the_shipped_prometheus_rules_query_is_exported() {
        let rules = include_str!("../../../helm/tugboat/files/prometheus-rules.yaml");
        let queried = queried_metrics(rules);
        assert!(queried.len() >= 10, "{queried:?}");
        assert_exported("the rules", &queried);
    }

    #[test]
    fn every_shipped_alert_links_its_runbook_section_in_the_manual() {
        let rules = include_str!("../../../helm/tugboat/files/prometheus-rules.yaml");
        let chapter = include_str!("../../../docs/operations.md");
        let base = "https://github.com/salon/tugboat/blob/main/docs/operations.md#";
        let mut alerts = 0;
        for block in rules.split("- alert: ").skip(1) {
            let name = block.split_whitespace().next().unwrap();
            let block = block.split("- record: ").next().unwrap();
            let url = block
                .lines()
                .find_map(|l| l.trim().strip_prefix("runbook_url: "))
                .unwrap_or_else(|| panic!("{name} has no runbook_url"));
            assert_eq!(url, format!("{base}{}", name.to_lowercase()), "{name}");
            assert!(
                chapter.lines().any(|l| l == format!("### {name}")),
                "docs/operations.md has no runbook section `### {name}`"
            );
            alerts += 1;
        }
        assert!(alerts >= 7, "{alerts}");
    }

    #[test]
    fn every_exported_metric_is_in_the_manuals_operations_chapter() {
        let chapter = include_str!("../../../docs/operations.md");
        let (families, _) = exported_families();
        assert!(families.len() >= 30, "{families:?}");
        let missing: Vec<&String> = families
            .iter()
            .filter(|f| !chapter.contains(f.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "metrics docs/operations.md does not name: {missing:?}"
        );
    }

    #[test]
    fn every_metric_the_shipped_grafana_dashboard_queries_is_exported() {
        let queried = queried_metrics(DASHBOARD);
        assert!(queried.len() >= 20, "{queried:?}");
        assert_exported("the dashboard", &queried);
    }

    #[test]
    fn the_grafana_dashboard_is_one_file_whose_panels_fit_and_use_the_chosen_data_source() {
        assert_eq!(
            DASHBOARD,
            include_str!("../../../manifests/grafana-dashboard.json"),
            "manifests/grafana-dashboard.json must be a copy of the chart's"
        );
        let d: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
        assert_eq!(d["uid"], "tugboat-overview");
        let panels = d["panels"].as_array().expect("panels");
        let mut ids = BTreeSet::new();
        let mut queries = 0;
        for p in panels {
            let title = p["title"].as_str().expect("every panel has a title");
            assert!(ids.insert(p["id"].as_u64()), "{title}: a second panel id");
            let (x, w) = (&p["gridPos"]["x"], &p["gridPos"]["w"]);
            let right = x.as_u64().unwrap_or(99) + w.as_u64().unwrap_or(99);
            assert!(right <= 24, "{title}: past Grafana's 24 columns");
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{title}: no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
                let expr = t["expr"].as_str().expect("expr");
                assert!(expr.contains("tugboat_"), "{title}: {expr}");
                queries += 1;
            }
        }
        assert!(queries >= 25, "{queries} queries");
        // What the issue asks to see, by the metric that shows it.
        for wanted in [
            "tugboat_promotions_total",
            "tugboat_gate_rejections_total",
            "tugboat_lead_time_seconds_bucket",
            "tugboat_deployments_total",
            "tugboat_rollbacks_total",
            "tugboat_time_to_restore_seconds_bucket",
            "tugboat_api_calls_total",
            "tugboat_api_errors_total",
            "tugboat_rescan_new_findings_total",
        ] {
            assert!(
                DASHBOARD.contains(wanted),
                "the dashboard never shows {wanted}"
            );
        }
    }

    #[test]
    fn a_system_whose_every_call_failed_is_named_unreachable() {
        let api = ApiMetrics::default();
        api.call("github", "pulls/list");
        api.error("github", "pulls/list");
        api.call("ecr", "DescribeImages");
        let m = Metrics::new(600, &api);
        m.record_cycle(
            Ok(&[]),
            true,
            Duration::ZERO,
            &api.snapshot(),
            chrono::Utc::now(),
        );
        let u = m.ready.unreachable.lock().unwrap().clone();
        assert_eq!(u.len(), 1);
        assert_eq!(u["github"], "1 of 1 calls failed in the last cycle");
    }
}
