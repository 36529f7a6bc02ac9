//! The forge as the engine sees it: every body tugboat writes into a PR or issue, and every
//! comment of its holding a block, is sealed (`domain::seal`), and each read back is opened.
//! A body whose seal does not open reads as if it held no block
//! ([`crate::domain::seal::FORGOTTEN`] in their place), is reported once and counted in
//! `tugboat_forged_records_total{kind="seal"}`; a body without a seal, last changed before
//! sealing began, is an earlier tugboat's and is sealed the first time it is read. The rest
//! of the engine never sees a seal.
//!
//! The keys are `github.state_key` ([`crate::trust::KeyRing`]).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::chatops;
use crate::domain::provenance::{Forgery, LabelEvent, same_login};
use crate::domain::seal::{self, Opened, unsealed};
use crate::ports::{
    Access, Check, CheckKind, CheckReport, Checks, Conversation, Forge, Issue, Issues, LabelledPr,
    NewPullRequest, Permission, PortResult, PullRequest, PullRequests, Reaction,
};
use crate::trust::{ForgeryLog, KeyRing};

/// What every block of tugboat's starts with.
const BLOCK: &str = "<!-- tugboat:";

/// The forge, sealing what tugboat writes and opening what it reads.
pub(super) struct Sealed {
    inner: Arc<dyn Forge>,
    ring: Arc<KeyRing>,
    log: Arc<ForgeryLog>,
    /// `github.former_logins`: bodies they wrote are opened as tugboat's.
    former: Vec<String>,
}

/// Who wrote a body read back, and when it last changed, as far as the read says.
struct Origin<'a> {
    number: u64,
    noun: &'static str,
    /// `None` when the read does not say (a single PR): opened as tugboat's.
    author: Option<&'a str>,
    updated_at: Option<DateTime<Utc>>,
}

impl Sealed {
    pub fn new(
        inner: Arc<dyn Forge>,
        ring: Arc<KeyRing>,
        log: Arc<ForgeryLog>,
        former: Vec<String>,
    ) -> Self {
        Self {
            inner,
            ring,
            log,
            former,
        }
    }

    async fn seal(&self, body: &str) -> PortResult<String> {
        Ok(self.ring.keys().await?.seal(body))
    }

    /// `body` as the engine reads it, and whether it is an earlier tugboat's to be sealed.
    async fn open(&self, origin: Origin<'_>, body: &mut String) -> PortResult<bool> {
        if let Some(author) = origin.author {
            let me = self.inner.me().await?;
            if !same_login(author, &me) && !self.former.iter().any(|f| same_login(author, f)) {
                // Not tugboat's: the engine ignores it by its author (`engine::provenance`).
                return Ok(false);
            }
        }
        let opened = match self.ring.keys().await?.open(body, origin.updated_at) {
            // Every record tugboat opens holds a block: one without any lost it to an edit.
            Opened::Plain if origin.author.is_some() => Opened::Forged(seal::forget(body)),
            opened => opened,
        };
        match opened {
            Opened::Plain => Ok(false),
            Opened::Sealed(inner) => {
                *body = inner;
                Ok(false)
            }
            Opened::Legacy => Ok(self.ring.writes()),
            Opened::Forged(stripped) => {
                let why = "its description was changed by someone other than tugboat (its seal does not open): what tugboat recorded there is not read";
                let name = format!("{} #{}", origin.noun, origin.number);
                self.log.report(&name, Forgery::Seal, why);
                *body = stripped;
                Ok(false)
            }
        }
    }

    /// Seal an earlier tugboat's body in place; a failure is logged (it is tried again the
    /// next time the record is read).
    async fn reseal(&self, number: u64, noun: &str, write: PortResult<()>) {
        match write {
            Ok(()) => tracing::info!(
                number,
                "sealed {noun} #{number}, written by an earlier tugboat"
            ),
            Err(e) => {
                tracing::warn!(number, error = %e, "sealing {noun} #{number}, written by an earlier tugboat, failed")
            }
        }
    }

    async fn opened_pr(&self, mut pr: PullRequest) -> PortResult<PullRequest> {
        let origin = Origin {
            number: pr.number,
            noun: "PR",
            author: None,
            updated_at: None,
        };
        self.open(origin, &mut pr.body).await?;
        Ok(pr)
    }
}

#[async_trait]
impl PullRequests for Sealed {
    async fn find_open_pr(&self, branch: &str) -> PortResult<Option<PullRequest>> {
        match self.inner.find_open_pr(branch).await? {
            Some(pr) => self.opened_pr(pr).await.map(Some),
            None => Ok(None),
        }
    }

    async fn pull(&self, number: u64) -> PortResult<PullRequest> {
        let pr = self.inner.pull(number).await?;
        self.opened_pr(pr).await
    }

    async fn labelled_prs(
        &self,
        labels: &[String],
        open_only: bool,
    ) -> PortResult<Vec<LabelledPr>> {
        let mut prs = self.inner.labelled_prs(labels, open_only).await?;
        for pr in &mut prs {
            let origin = Origin {
                number: pr.number,
                noun: "PR",
                author: Some(&pr.author),
                updated_at: pr.updated_at,
            };
            let mut body = std::mem::take(&mut pr.body);
            if self.open(origin, &mut body).await? {
                let sealed = self.seal(&body).await?;
                let write = self.inner.update_pr(pr.number, &pr.title, &sealed).await;
                self.reseal(pr.number, "PR", write).await;
            }
            pr.body = body;
        }
        Ok(prs)
    }

    async fn open_pr(&self, mut pr: NewPullRequest) -> PortResult<PullRequest> {
        pr.body = self.seal(&pr.body).await?;
        let mut opened = self.inner.open_pr(pr).await?;
        opened.body = unsealed(&opened.body).to_owned();
        Ok(opened)
    }

    async fn update_pr(&self, number: u64, title: &str, body: &str) -> PortResult<()> {
        let body = self.seal(body).await?;
        self.inner.update_pr(number, title, &body).await
    }

    async fn close_pr(&self, number: u64, why: &str) -> PortResult<()> {
        self.inner.close_pr(number, why).await
    }

    async fn merge(&self, number: u64, expected_head: &str, title: &str) -> PortResult<String> {
        self.inner.merge(number, expected_head, title).await
    }

    async fn add_labels(&self, number: u64, labels: &[String]) -> PortResult<()> {
        self.inner.add_labels(number, labels).await
    }

    async fn remove_label(&self, number: u64, label: &str) -> PortResult<()> {
        self.inner.remove_label(number, label).await
    }

    async fn relabel(
        &self,
        number: u64,
        add: &[&str],
        remove: &[&str],
        body: Option<&str>,
    ) -> PortResult<()> {
        let sealed = match body {
            Some(b) => Some(self.seal(b).await?),
            None => None,
        };
        self.inner
            .relabel(number, add, remove, sealed.as_deref())
            .await
    }
}

#[async_trait]
impl Issues for Sealed {
    async fn open_issues(&self, labels: &[String]) -> PortResult<Vec<Issue>> {
        let mut issues = self.inner.open_issues(labels).await?;
        for issue in &mut issues {
            let origin = Origin {
                number: issue.number,
                noun: "issue",
                author: Some(&issue.author),
                updated_at: issue.updated_at,
            };
            let mut body = std::mem::take(&mut issue.body);
            if self.open(origin, &mut body).await? {
                let sealed = self.seal(&body).await?;
                let write = self
                    .inner
                    .update_issue(issue.number, &issue.title, &sealed, issue.open)
                    .await;
                self.reseal(issue.number, "issue", write).await;
            }
            issue.body = body;
        }
        Ok(issues)
    }

    async fn open_issue(&self, title: &str, body: &str, labels: &[String]) -> PortResult<Issue> {
        let body = self.seal(body).await?;
        let mut issue = self.inner.open_issue(title, &body, labels).await?;
        issue.body = unsealed(&issue.body).to_owned();
        Ok(issue)
    }

    async fn update_issue(
        &self,
        number: u64,
        title: &str,
        body: &str,
        open: bool,
    ) -> PortResult<()> {
        let body = self.seal(body).await?;
        self.inner.update_issue(number, title, &body, open).await
    }

    async fn pin_issue(&self, number: u64) -> PortResult<()> {
        self.inner.pin_issue(number).await
    }

    async fn label_events(&self, number: u64) -> PortResult<Vec<LabelEvent>> {
        self.inner.label_events(number).await
    }
}

#[async_trait]
impl Conversation for Sealed {
    async fn comment(&self, number: u64, body: &str) -> PortResult<()> {
        let body = self.seal(body).await?;
        self.inner.comment(number, &body).await
    }

    /// tugboat's own comments holding a block (the verification it reported) are opened like
    /// bodies: an earlier tugboat's is one made before sealing began and never edited.
    async fn comments(&self, number: u64) -> PortResult<Vec<chatops::Comment>> {
        let mut comments = self.inner.comments(number).await?;
        for c in &mut comments {
            if !c.body.contains(BLOCK) {
                continue;
            }
            let changed = (!c.edited).then_some(c.created_at);
            let origin = Origin {
                number,
                noun: "a comment on",
                author: Some(&c.user),
                updated_at: changed,
            };
            let mut body = std::mem::take(&mut c.body);
            // An earlier tugboat's comment is left as it is: comments are not written again.
            self.open(origin, &mut body).await?;
            c.body = body;
        }
        Ok(comments)
    }

    async fn reviews(&self, number: u64) -> PortResult<Vec<chatops::Review>> {
        self.inner.reviews(number).await
    }

    async fn react(&self, comment_id: u64, reaction: Reaction) -> PortResult<()> {
        self.inner.react(comment_id, reaction).await
    }

    async fn me(&self) -> PortResult<String> {
        self.inner.me().await
    }
}

#[async_trait]
impl Access for Sealed {
    async fn permission(&self, user: &str) -> PortResult<Permission> {
        self.inner.permission(user).await
    }

    async fn team_member(&self, org: &str, team: &str, user: &str) -> PortResult<bool> {
        self.inner.team_member(org, team, user).await
    }
}

#[async_trait]
impl crate::ports::MergeQueue for Sealed {
    async fn enqueue(&self, number: u64, head: &str) -> PortResult<u32> {
        self.inner.enqueue(number, head).await
    }

    async fn queue_state(&self, number: u64) -> PortResult<crate::ports::QueueState> {
        self.inner.queue_state(number).await
    }

    async fn dequeue(&self, number: u64) -> PortResult<()> {
        self.inner.dequeue(number).await
    }
}

#[async_trait]
impl Checks for Sealed {
    async fn checks(&self, sha: &str) -> PortResult<Vec<Check>> {
        self.inner.checks(sha).await
    }

    async fn report(&self, report: &CheckReport) -> PortResult<()> {
        self.inner.report(report).await
    }

    async fn first_report(&self, sha: &str, kind: CheckKind) -> PortResult<Option<DateTime<Utc>>> {
        self.inner.first_report(sha, kind).await
    }

    async fn pushed_by(&self, branch: &str, sha: &str) -> PortResult<Option<crate::ports::Pushed>> {
        self.inner.pushed_by(branch, sha).await
    }

    async fn rules(&self) -> PortResult<crate::ports::BranchRules> {
        self.inner.rules().await
    }
}
