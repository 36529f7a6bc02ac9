//! Counting what tugboat asks of the outside world: calls, errors and retries per system
//! and operation. The adapters record into one [`ApiMetrics`]; `/metrics` exports it and the
//! CLI prints it. Labels are bounded: systems and operation names are fixed strings.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ApiLabels {
    /// `ecr`, `ssm`, `github`, `argocd` or `git`.
    pub system: String,
    /// The API's own operation name (AWS operation, GitHub / Argo CD operationId, git verb).
    pub operation: String,
}

impl ApiLabels {
    /// Whether the operation changes the GitOps repository, its pull requests or its issues.
    pub fn is_write(&self) -> bool {
        matches!(
            (self.system.as_str(), self.operation.as_str()),
            ("git", "push")
                | (
                    "github",
                    "pulls/create"
                        | "pulls/update"
                        | "pulls/merge"
                        | "issues/add-labels"
                        | "issues/remove-label"
                        | "issues/create-comment"
                        | "issues/create"
                        | "issues/update"
                        | "graphql/pin-issue"
                        | "reactions/create-for-issue-comment"
                        | "repos/create-commit-status"
                        | "checks/create"
                        | "git/create-blob"
                        | "git/create-tree"
                        | "git/create-commit"
                        | "git/create-ref"
                        | "git/update-ref"
                )
        )
    }
}

/// A snapshot of the counters, by (system, operation).
pub type ApiCounts = BTreeMap<ApiLabels, ApiCount>;

/// Calls and errors per system in a snapshot (all its operations together).
pub fn by_system(counts: &ApiCounts) -> BTreeMap<&str, (u64, u64)> {
    let mut by_system: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (k, c) in counts {
        let e = by_system.entry(k.system.as_str()).or_default();
        e.0 += c.calls;
        e.1 += c.errors;
    }
    by_system
}

/// One operation's counts in a snapshot (zero when it was never called).
pub fn count(counts: &ApiCounts, system: &str, operation: &str) -> ApiCount {
    counts
        .get(&labels(system, operation))
        .copied()
        .unwrap_or_default()
}

/// Calls, errors and retries by system and operation. Cloning shares the counters.
#[derive(Clone, Debug, Default)]
pub struct ApiMetrics {
    calls: Family<ApiLabels, Counter>,
    errors: Family<ApiLabels, Counter>,
    retries: Family<ApiLabels, Counter>,
    /// The same counts, readable back (prometheus-client families cannot be iterated).
    tally: Arc<Mutex<ApiCounts>>,
    /// Rate budgets of the systems that have one (GitHub's writes), read at each scrape.
    budgets: Arc<Mutex<Vec<Arc<dyn Budget>>>>,
}

/// A rate budget an adapter spends: what is left of it now, by window, and how many
/// requests wait for it.
pub trait Budget: std::fmt::Debug + Send + Sync {
    /// The system it belongs to (a metric label).
    fn system(&self) -> &'static str;
    /// Requests left in each window (`minute`, `hour`), now.
    fn remaining(&self) -> Vec<(&'static str, usize)>;
    /// Requests waiting for their turn.
    fn waiting(&self) -> usize;
}

/// Exports the budgets at each scrape, so the figures are those of the moment.
#[derive(Debug)]
struct BudgetCollector(Arc<Mutex<Vec<Arc<dyn Budget>>>>);

impl Collector for BudgetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let budgets: Vec<Arc<dyn Budget>> = self
            .0
            .lock()
            .map(|b| b.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        if budgets.is_empty() {
            return Ok(());
        }
        let mut left = encoder.encode_descriptor(
            "write_budget_remaining",
            "Content-creating requests left in each window of the system's rate budget",
            None,
            MetricType::Gauge,
        )?;
        for b in &budgets {
            for (window, n) in b.remaining() {
                let labels = [("system", b.system()), ("window", window)];
                ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                    .encode(left.encode_family(&labels)?)?;
            }
        }
        let mut waiting = encoder.encode_descriptor(
            "write_budget_waiting",
            "Content-creating requests waiting for the system's rate budget",
            None,
            MetricType::Gauge,
        )?;
        for b in &budgets {
            let labels = [("system", b.system())];
            ConstGauge::new(i64::try_from(b.waiting()).unwrap_or(i64::MAX))
                .encode(waiting.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// One line of [`ApiMetrics::snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiCount {
    pub calls: u64,
    pub errors: u64,
    pub retries: u64,
}

fn labels(system: &str, operation: &str) -> ApiLabels {
    ApiLabels {
        system: system.to_owned(),
        operation: operation.to_owned(),
    }
}

impl ApiMetrics {
    /// Register the counters as `tugboat_api_calls_total`, `…_errors_total`, `…_retries_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "api_calls",
            "Requests sent to outside systems (every attempt and page counts)",
            self.calls.clone(),
        );
        registry.register(
            "api_errors",
            "Requests to outside systems that failed (transport error or error status)",
            self.errors.clone(),
        );
        registry.register(
            "api_retries",
            "Requests that were retries of a failed or throttled attempt",
            self.retries.clone(),
        );
        registry.register_collector(Box::new(BudgetCollector(self.budgets.clone())));
    }

    /// Export `budget` as `tugboat_write_budget_remaining{system,window}` and
    /// `tugboat_write_budget_waiting{system}`.
    pub fn watch_budget(&self, budget: Arc<dyn Budget>) {
        if let Ok(mut b) = self.budgets.lock() {
            b.retain(|known| known.system() != budget.system());
            b.push(budget);
        }
    }

    pub fn call(&self, system: &str, operation: &str) {
        self.calls.get_or_create(&labels(system, operation)).inc();
        self.bump(system, operation, |c| c.calls += 1);
    }

    pub fn error(&self, system: &str, operation: &str) {
        self.errors.get_or_create(&labels(system, operation)).inc();
        self.bump(system, operation, |c| c.errors += 1);
    }

    pub fn retry(&self, system: &str, operation: &str) {
        self.retries.get_or_create(&labels(system, operation)).inc();
        self.bump(system, operation, |c| c.retries += 1);
    }

    /// Count one call and, when `result` is an error, one error.
    pub fn record<T, E>(&self, system: &str, operation: &str, result: &Result<T, E>) {
        self.call(system, operation);
        if result.is_err() {
            self.error(system, operation);
        }
    }

    /// Every counter so far, by (system, operation).
    pub fn snapshot(&self) -> ApiCounts {
        self.tally
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn bump(&self, system: &str, operation: &str, f: impl FnOnce(&mut ApiCount)) {
        let mut g = self
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(g.entry(labels(system, operation)).or_default());
    }

    /// How much each counter grew since `before`; unchanged ones are left out.
    pub fn since(&self, before: &ApiCounts) -> ApiCounts {
        self.snapshot()
            .into_iter()
            .filter_map(|(k, now)| {
                let was = before.get(&k).copied().unwrap_or_default();
                let d = ApiCount {
                    calls: now.calls - was.calls,
                    errors: now.errors - was.errors,
                    retries: now.retries - was.retries,
                };
                (d != ApiCount::default()).then_some((k, d))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_errors_and_retries_are_counted_per_system_and_operation() {
        let m = ApiMetrics::default();
        m.record::<(), ()>("ecr", "DescribeImages", &Ok(()));
        m.record::<(), ()>("ecr", "DescribeImages", &Err(()));
        m.retry("ecr", "DescribeImages");
        m.call("github", "pulls/list");
        let before = m.snapshot();
        assert_eq!(
            before[&labels("ecr", "DescribeImages")],
            ApiCount {
                calls: 2,
                errors: 1,
                retries: 1
            }
        );
        assert_eq!(before[&labels("github", "pulls/list")].calls, 1);
        m.call("github", "pulls/list");
        let grown = m.since(&before);
        assert_eq!(count(&grown, "github", "pulls/list").calls, 1);
        assert_eq!(count(&grown, "ecr", "DescribeImages"), ApiCount::default());
        assert_eq!(grown.len(), 1);
        assert_eq!(grown[&labels("github", "pulls/list")].calls, 1);
    }

    #[test]
    fn writes_are_pushes_and_github_changes_not_reads() {
        for (system, op) in [
            ("git", "push"),
            ("github", "pulls/create"),
            ("github", "pulls/update"),
            ("github", "pulls/merge"),
            ("github", "issues/add-labels"),
            ("github", "issues/create-comment"),
            ("github", "repos/create-commit-status"),
        ] {
            assert!(labels(system, op).is_write(), "{system} {op}");
        }
        for (system, op) in [
            ("git", "fetch"),
            ("github", "pulls/list"),
            ("github", "repos/get-combined-status-for-ref"),
            ("ecr", "DescribeImages"),
            ("argocd", "ApplicationService_Get"),
        ] {
            assert!(!labels(system, op).is_write(), "{system} {op}");
        }
    }

    #[test]
    fn the_exported_names_are_the_conventional_totals() {
        let m = ApiMetrics::default();
        m.call("ssm", "GetParametersByPath");
        let mut registry = Registry::with_prefix("tugboat");
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap_or_default();
        assert!(
            text.contains(
                "tugboat_api_calls_total{system=\"ssm\",operation=\"GetParametersByPath\"} 1"
            ),
            "{text}"
        );
    }
}
