//! Trust only what tugboat wrote. Its memory (labelled pull requests, hold issues, the
//! dashboard, security issues) lives where people can write too, so a record counts only
//! when tugboat's own login opened it, and a label only when tugboat's login added it (the
//! issue events' `actor`). What was checked is kept by the record's `updated_at` and labels:
//! a record nobody touched costs no call the next cycle. Anything else is ignored, reported
//! once in the log and counted in `tugboat_forged_records_total{kind}`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::promote::Change;
use super::{At, Engine, Step, StepError};
use crate::domain::provenance::{self, Forgery};
use crate::ports::{Base, CheckKind, Issue, LabelledPr, Proposal, PullRequest};
use crate::trust::ForgeryLog;

/// How many records' checked labels are kept (a record beyond it is checked again).
const CHECKED_ENTRIES: usize = 4_096;

/// What was checked of one record: when it last changed and its labels then, and which of
/// them tugboat added.
#[derive(Clone)]
struct Checked {
    updated_at: DateTime<Utc>,
    labels: Vec<String>,
    own: Arc<BTreeSet<String>>,
}

/// The engine's memory of who wrote its records.
pub(super) struct Provenance {
    checked: quick_cache::sync::Cache<u64, Checked>,
    /// Heads of its branches this process pushed, or found reported by tugboat on GitHub,
    /// with the time approvals of them count from.
    heads: quick_cache::sync::Cache<String, DateTime<Utc>>,
    /// The forged records found (shared with the forge's seal and the ledger).
    pub log: Arc<ForgeryLog>,
}

impl Provenance {
    pub fn new(log: Arc<ForgeryLog>) -> Self {
        Self {
            checked: quick_cache::sync::Cache::new(CHECKED_ENTRIES),
            heads: quick_cache::sync::Cache::new(CHECKED_ENTRIES),
            log,
        }
    }
}

/// A record on the forge: a pull request or an issue, as listed.
pub(super) struct Record<'a> {
    pub number: u64,
    pub author: &'a str,
    pub updated_at: Option<DateTime<Utc>>,
    /// Its labels as listed (empty when the listing does not give them).
    pub labels: &'a [String],
    /// What it is, for the warning: "PR", "issue".
    pub noun: &'static str,
}

impl<'a> From<&'a LabelledPr> for Record<'a> {
    fn from(pr: &'a LabelledPr) -> Self {
        Self {
            number: pr.number,
            author: &pr.author,
            updated_at: pr.updated_at,
            labels: &pr.labels,
            noun: "PR",
        }
    }
}

impl<'a> From<&'a Issue> for Record<'a> {
    fn from(i: &'a Issue) -> Self {
        Self {
            number: i.number,
            author: &i.author,
            updated_at: i.updated_at,
            labels: &[],
            noun: "issue",
        }
    }
}

impl Engine {
    /// Whether tugboat wrote `record` and (given `label`) added that label to it itself.
    pub(super) async fn own_record(
        &self,
        record: Record<'_>,
        label: Option<&str>,
        step: Step,
    ) -> Result<bool, StepError> {
        let me = self.ports.forge.me().await.at(step)?;
        if !self.authored(&record, &me) {
            return Ok(false);
        }
        let Some(label) = label else {
            return Ok(true);
        };
        if self.own_labels(&record, &me, step).await?.contains(label) {
            return Ok(true);
        }
        let why = format!("its label `{label}` was added by someone other than tugboat");
        self.forged(&record, Forgery::Label, &why);
        Ok(false)
    }

    /// Whether tugboat (`me`) opened `record`; reported when it did not.
    pub(super) fn authored(&self, record: &Record<'_>, me: &str) -> bool {
        if provenance::same_login(record.author, me) {
            return true;
        }
        let why = format!("opened by {}, not by tugboat ({me})", shown(record.author));
        self.forged(record, Forgery::Author, &why);
        false
    }

    /// The labels of `record` that tugboat added (from its events, or from the cache when
    /// the record has not changed since they were read).
    async fn own_labels(
        &self,
        record: &Record<'_>,
        me: &str,
        step: Step,
    ) -> Result<Arc<BTreeSet<String>>, StepError> {
        let cached = self.provenance.checked.get(&record.number);
        if let (Some(c), Some(at)) = (&cached, record.updated_at)
            && c.updated_at == at
            && c.labels == record.labels
        {
            return Ok(Arc::clone(&c.own));
        }
        let events = self
            .ports
            .forge
            .label_events(record.number)
            .await
            .at(step)?;
        let own = Arc::new(provenance::applied_by(&events, me));
        if let Some(updated_at) = record.updated_at {
            self.provenance.checked.insert(
                record.number,
                Checked {
                    updated_at,
                    labels: record.labels.to_vec(),
                    own: Arc::clone(&own),
                },
            );
        }
        Ok(own)
    }

    /// Whether merged PR `pr` (one of tugboat's) merged into the configured base branch: a
    /// person with write access can retarget it and merge it elsewhere, and what merged
    /// there is not deployed by main. Reported when it did not.
    pub(super) fn merged_into_base(&self, pr: &PullRequest) -> bool {
        let base = &self.cfg.github.base_branch;
        if pr.base == *base {
            return true;
        }
        let record = Record {
            number: pr.number,
            author: "",
            updated_at: None,
            labels: &[],
            noun: "PR",
        };
        let why = format!("it merged into `{}`, not into `{base}`", pr.base);
        self.forged(&record, Forgery::Base, &why);
        false
    }

    /// `head`, proposed for `change`, as tugboat's own: a head it pushed now counts from now;
    /// a head it kept counts only when tugboat pushed it (this process remembers it, or
    /// GitHub recorded tugboat's gate report on it), and from when that report was recorded,
    /// never from the commit's self-declared date. A kept head tugboat did not push is
    /// replaced by a fresh commit of the same change, which voids every approval of it; the
    /// replaced head is returned with it.
    pub(super) async fn own_head(
        &self,
        change: &Change,
        head: Proposal,
    ) -> Result<(Proposal, Option<String>), StepError> {
        if head.pushed {
            self.provenance
                .heads
                .insert(head.head.clone(), head.committed_at);
            return Ok((head, None));
        }
        if let Some(at) = self.provenance.heads.get(&head.head) {
            return Ok((
                Proposal {
                    committed_at: at,
                    ..head
                },
                None,
            ));
        }
        let reported = self
            .ports
            .forge
            .first_report(&head.head, CheckKind::Gate)
            .await
            .at(Step::Propose)?;
        if let Some(at) = reported {
            self.provenance.heads.insert(head.head.clone(), at);
            return Ok((
                Proposal {
                    committed_at: at,
                    ..head
                },
                None,
            ));
        }
        let foreign = head.head;
        tracing::warn!(branch = %change.branch, head = %foreign, kind = Forgery::Push.as_str(), "a head tugboat did not push: replacing it with tugboat's own commit (its approvals are void)");
        self.count_forged(Forgery::Push);
        let fresh = self.propose(change, Base::Fresh).await?;
        self.provenance
            .heads
            .insert(fresh.head.clone(), fresh.committed_at);
        Ok((fresh, Some(foreign)))
    }

    /// Report a forged record once: a warning naming it and a count by kind.
    pub(super) fn forged(&self, record: &Record<'_>, kind: Forgery, why: &str) {
        let name = format!("{} #{}", record.noun, record.number);
        self.provenance.log.report(&name, kind, why);
    }

    /// One more forged record of `kind` for the metrics.
    fn count_forged(&self, kind: Forgery) {
        self.provenance.log.count(kind);
    }

    /// The forged records found since the last call, by kind (for the metrics).
    pub fn take_forged(&self) -> BTreeMap<Forgery, u64> {
        self.provenance.log.take()
    }
}

/// A login as quoted in a warning (a deleted account has none).
fn shown(login: &str) -> &str {
    if login.is_empty() {
        "a deleted account"
    } else {
        login
    }
}
