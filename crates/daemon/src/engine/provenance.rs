//! Trust only what tugboat wrote. Its memory (labelled pull requests, hold issues, the
//! dashboard, security issues) lives where people can write too, so a record counts only
//! when tugboat's own login opened it, and a label only when tugboat's login added it (the
//! issue events' `actor`). What was checked is kept by the record's `updated_at` and labels:
//! a record nobody touched costs no call the next cycle. Anything else is ignored, reported
//! once in the log and counted in `tugboat_forged_records_total{kind}`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::pr::Change;
use super::{At, Engine, Step, StepError};
use crate::config::{EnvConfig, ServiceConfig};
use crate::domain::chatops;
use crate::domain::hold::{Cause as HoldCause, Hold};
use crate::domain::image::ImageRef;
use crate::domain::promotion::PromotionState;
use crate::domain::provenance::{self, Forgery, same_login};
use crate::domain::select::find_tag;
use crate::ports::{Base, CheckKind, Issue, LabelledPr, Proposal, PullRequest};
use crate::trust::ForgeryLog;

/// How many records' checked labels are kept (a record beyond it is checked again).
const CHECKED_ENTRIES: usize = 4_096;

/// What was checked of one record: when it last changed and its labels then, and what its
/// events say of them.
#[derive(Clone)]
struct Checked {
    updated_at: DateTime<Utc>,
    labels: Vec<String>,
    found: Arc<Found>,
}

/// What a record's label events say: which labels tugboat added, and which were removed
/// (by anyone) since a listing that still shows them was read.
struct Found {
    own: BTreeSet<String>,
    gone: BTreeSet<String>,
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
        let found = self.own_labels(&record, &me, step).await?;
        if found.own.contains(label) {
            return Ok(true);
        }
        if found.gone.contains(label) {
            // Removed between the listing and the events (by a verification that ended, or
            // another replica): not on the record any more, and nobody forged it.
            tracing::debug!(
                number = record.number,
                label,
                "label removed since the listing was read"
            );
            return Ok(false);
        }
        let why = format!("its label `{label}` was added by someone other than tugboat");
        self.forged(&record, Forgery::Label, &why);
        Ok(false)
    }

    /// Whether `login` is tugboat: the login it acts as now (`me`), or one it acted as before
    /// (`github.former_logins`).
    pub(super) fn is_me(&self, login: &str, me: &str) -> bool {
        same_login(login, me)
            || self
                .cfg
                .github
                .former_logins
                .iter()
                .any(|f| same_login(login, f))
    }

    /// Whether tugboat (`me`) opened `record`; reported when it did not.
    pub(super) fn authored(&self, record: &Record<'_>, me: &str) -> bool {
        if self.is_me(record.author, me) {
            return true;
        }
        let why = format!("opened by {}, not by tugboat ({me})", shown(record.author));
        self.forged(record, Forgery::Author, &why);
        false
    }

    /// What the events of `record` say of its labels (read again, or from the cache when the
    /// record has not changed since they were read). A listing is one read and the events
    /// another, so a label the listing shows may have been removed in between: such an
    /// answer is not kept, as the listing it describes is already out of date.
    async fn own_labels(
        &self,
        record: &Record<'_>,
        me: &str,
        step: Step,
    ) -> Result<Arc<Found>, StepError> {
        let cached = self.provenance.checked.get(&record.number);
        if let (Some(c), Some(at)) = (&cached, record.updated_at)
            && c.updated_at == at
            && c.labels == record.labels
        {
            return Ok(Arc::clone(&c.found));
        }
        let events = self
            .ports
            .forge
            .label_events(record.number)
            .await
            .at(step)?;
        let found = Arc::new(Found {
            own: provenance::applied_by(&events, |l| self.is_me(l, me)),
            gone: provenance::removed(&events),
        });
        let current = !record.labels.iter().any(|l| found.gone.contains(l));
        if let (Some(updated_at), true) = (record.updated_at, current) {
            self.provenance.checked.insert(
                record.number,
                Checked {
                    updated_at,
                    labels: record.labels.to_vec(),
                    found: Arc::clone(&found),
                },
            );
        }
        Ok(found)
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

    /// Open PR `pr` of tugboat's branch, if it is tugboat's and still merges into the base
    /// branch. A person with write access can open a PR from tugboat's branch (GitHub then
    /// refuses tugboat's own, one open PR per branch), or retarget tugboat's, whose merge
    /// would then land elsewhere than main: such a PR is closed, saying why, reported
    /// (`kind="author"` or `"base"`), and tugboat opens its own.
    pub(super) async fn own_open(
        &self,
        pr: Option<PullRequest>,
    ) -> Result<Option<PullRequest>, StepError> {
        let Some(pr) = pr else {
            return Ok(None);
        };
        let base = &self.cfg.github.base_branch;
        let me = self.ports.forge.me().await.at(Step::PullRequest)?;
        let record = Record {
            number: pr.number,
            author: &pr.author,
            updated_at: None,
            labels: &[],
            noun: "PR",
        };
        let said = if !self.authored(&record, &me) {
            format!(
                "This pull request was opened by {} from tugboat's branch `{}`, and tugboat merges only its own: it is closed, and tugboat opens its own.",
                shown(&pr.author),
                pr.branch
            )
        } else if pr.base != *base {
            let why = format!(
                "it was retargeted to `{}`; tugboat merges only into `{base}`",
                pr.base
            );
            self.forged(&record, Forgery::Base, &why);
            format!(
                "This pull request was retargeted to `{}`, and tugboat merges only into `{base}`: it is closed, and tugboat opens a new one.",
                pr.base
            )
        } else {
            return Ok(Some(pr));
        };
        self.ports
            .forge
            .close_pr(pr.number, &said)
            .await
            .at(Step::PullRequest)?;
        Ok(None)
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
        let known = match reported {
            Some(at) => Some(at),
            None => self.pushed_by_me(&change.branch, &head.head).await?,
        };
        if let Some(at) = known {
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

    /// When tugboat pushed `head` to `branch`, if GitHub's record of the push says tugboat
    /// did: a head pushed by a process that stopped before it reported on it (killed, or
    /// its lease lost) is still its own. A record GitHub will not show is no record.
    async fn pushed_by_me(
        &self,
        branch: &str,
        head: &str,
    ) -> Result<Option<DateTime<Utc>>, StepError> {
        let Some(pushed) = self
            .ports
            .forge
            .pushed_by(branch, head)
            .await
            .at(Step::Propose)?
        else {
            return Ok(None);
        };
        let me = self.ports.forge.me().await.at(Step::Propose)?;
        let mine = pushed.actor.as_deref().is_some_and(|a| self.is_me(a, &me));
        Ok(mine.then_some(pushed.at))
    }

    /// A merged PR of tugboat's whose record was lost (someone edited its body, and its seal
    /// no longer opens: `engine::seal`), rebuilt from what history and GitHub say, never from
    /// the edited text: its service and environment from its branch (`tugboat/<env>/<svc>`,
    /// a configured pair), the image and what it replaced from main's files at the merge
    /// commit and at its first parent ([`Engine::merged_images`]), and every comment so far
    /// counted as answered (the PR is told to post a command again). The rebuilt record
    /// replaces the edited description, sealed. A PR that cannot be rebuilt so (a rollback's,
    /// a group's, one merged elsewhere, an image no longer listed) is returned as it is, and
    /// stays ignored.
    pub(super) async fn rebuilt(&self, pr: LabelledPr) -> Result<LabelledPr, StepError> {
        let step = Step::Watch;
        let full = self.ports.forge.pull(pr.number).await.at(step)?;
        let (Some(sha), true) = (&full.merge_sha, self.merged_into_base(&full)) else {
            return Ok(pr);
        };
        let Some((svc, env)) = self.branch_of(&full.branch) else {
            return Ok(pr);
        };
        let Some((image, from)) = self.merged_images(sha, svc, env).await? else {
            return Ok(pr);
        };
        let comments = self.ports.forge.comments(pr.number).await.at(step)?;
        let me = self.ports.forge.me().await.at(step)?;
        let notice = format!(
            "**tugboat rebuilt this record.** Its description was changed by someone other than tugboat, so it was replaced by what git history shows: `{}` in `{}` runs `{image}` since merge commit `{sha}`.\n",
            svc.name, env.name
        );
        let state = PromotionState {
            service: svc.name.clone(),
            environment: env.name.clone(),
            tag: image.tag,
            digest: image.digest,
            from,
            answered_through: comments.iter().map(|c| c.id).max().unwrap_or(0),
            rollback_of: None,
            auto_sync: None,
        };
        let body = state.write_into(&notice);
        self.ports
            .forge
            .update_pr(pr.number, &pr.title, &body)
            .await
            .at(step)?;
        let commands = comments
            .iter()
            .any(|c| !same_login(&c.user, &me) && chatops::parse(&c.body).is_some());
        if commands {
            self.ports
                .forge
                .comment(pr.number, super::commands::LOST_NOTICE)
                .await
                .at(step)?;
        }
        tracing::warn!(
            pr = pr.number,
            "rebuilt the record of PR #{} from its branch and merge commit",
            pr.number
        );
        Ok(LabelledPr { body, ..pr })
    }

    /// A hold issue of tugboat's whose record was lost (someone edited its body), rebuilt so
    /// that the edit lifts nothing: the service and environment from the labels tugboat
    /// added to it (`service:…`, `env:…`, from its issue events), held as if by a `/hold`
    /// until an approver comments `/resume`, every comment so far counted as answered. The
    /// rebuilt record replaces the edited description, sealed. One whose labels do not name
    /// a configured pair is returned as it is (and ignored).
    pub(super) async fn rebuilt_hold(&self, issue: Issue) -> Result<Issue, StepError> {
        let step = Step::Hold;
        let me = self.ports.forge.me().await.at(step)?;
        let found = self.own_labels(&(&issue).into(), &me, step).await?;
        let named = |prefix: &str| {
            let mut it = found.own.iter().filter_map(|l| l.strip_prefix(prefix));
            it.next().filter(|_| it.next().is_none())
        };
        let pair = named("service:").zip(named("env:"));
        let Some((svc, env)) =
            pair.and_then(|(s, e)| self.branch_of(&super::evidence::branch(s, e)))
        else {
            return Ok(issue);
        };
        let comments = self.ports.forge.comments(issue.number).await.at(step)?;
        let hold = Hold {
            service: svc.name.clone(),
            environment: env.name.clone(),
            cause: HoldCause::Command,
            by: None,
            commit: None,
            since: issue.updated_at.unwrap_or_else(|| self.clock.now()),
            deployed: None,
            detail: "tugboat's record of this hold was changed by someone other than tugboat, so it was rebuilt: the environment stays held until an approver comments /resume".to_owned(),
            answered_through: comments.iter().map(|c| c.id).max().unwrap_or(0),
        };
        let body = hold.write_into(&format!(
            "**tugboat rebuilt this hold.** Its description was changed by someone other than tugboat. `{}` stays held in `{}` until an approver comments `/resume` here.\n",
            svc.name, env.name
        ));
        self.ports
            .forge
            .update_issue(issue.number, &issue.title, &body, true)
            .await
            .at(step)?;
        let commands = comments
            .iter()
            .any(|c| !same_login(&c.user, &me) && chatops::parse(&c.body).is_some());
        if commands {
            let notice = super::commands::LOST_NOTICE.replace("pull request", "issue");
            self.ports
                .forge
                .comment(issue.number, &notice)
                .await
                .at(step)?;
        }
        tracing::warn!(
            issue = issue.number,
            "rebuilt the hold of issue #{}",
            issue.number
        );
        Ok(Issue { body, ..issue })
    }

    /// What merge commit `sha` deployed of `svc` in `env` (with its digest: when the files
    /// name only a tag, the digest the tag names in the registry now), and what main ran
    /// there before it (its first parent). `None` when it deployed nothing listed.
    async fn merged_images(
        &self,
        sha: &str,
        svc: &ServiceConfig,
        env: &EnvConfig,
    ) -> Result<Option<(ImageRef, Option<ImageRef>)>, StepError> {
        let step = Step::Watch;
        let (mut after, mut before) = (Vec::new(), Vec::new());
        for path in &env.files {
            if let Some(text) = self.ports.repo.read_at(sha, path).await.at(step)? {
                after.push((path.clone(), text));
            }
            if let Some(text) = self.ports.repo.read_before(sha, path).await.at(step)? {
                before.push((path.clone(), text));
            }
        }
        let from = super::reads::deployed_reference(&before, svc)?;
        let Some(mut image) = super::reads::deployed_reference(&after, svc)? else {
            return Ok(None);
        };
        if image.digest.is_none()
            && let Some(tag) = &image.tag
        {
            let registry = svc.registry_id.as_deref();
            let listed = self.ports.registry.list_images(registry, &svc.repository);
            image.digest = find_tag(&listed.await.at(step)?, tag).map(|c| c.digest);
        }
        Ok(image.digest.is_some().then_some((image, from)))
    }

    /// The configured service and environment a promotion branch is for.
    fn branch_of(&self, branch: &str) -> Option<(&ServiceConfig, &EnvConfig)> {
        let (env, svc) = branch.strip_prefix("tugboat/")?.split_once('/')?;
        let svc = self.cfg.services.iter().find(|s| s.name == svc)?;
        let env = svc.environments.iter().find(|e| e.name == env)?;
        (super::evidence::branch(&svc.name, &env.name) == branch).then_some((svc, env))
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
