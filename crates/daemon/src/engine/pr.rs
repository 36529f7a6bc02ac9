//! A pull request's plumbing, shared by every change tugboat proposes (a promotion of one
//! service or a group, a rollback): commit and push the change, open the PR or bring it up
//! to date, report the gate's check, say on it what tugboat did, and look at main.

use super::{At, Engine, Step, StepError};
use crate::ports::{
    Base, CheckKind, CheckReport, ErrorKind, NewPullRequest, Proposal, PullRequest, StatusState,
};

/// A change to the GitOps repository on its own branch: a promotion or a rollback.
pub(super) struct Change {
    pub branch: String,
    pub title: String,
    /// The commit message.
    pub message: String,
    /// The edited files, whole.
    pub files: Vec<(String, String)>,
}

/// How long a replica's claim to open a PR keeps the others from opening it: long enough for
/// it to open the PR (a moment), short enough that a replica stopped between its claim and
/// the PR (or a PR a person closed) does not stop the promotion for long.
const CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(120);

impl Engine {
    /// Commit the change on its branch and push it (nothing is pushed when the branch
    /// already makes it on a `base` it may keep).
    pub(super) async fn propose(&self, change: &Change, base: Base) -> Result<Proposal, StepError> {
        self.ports
            .repo
            .propose(&change.branch, change.files.clone(), &change.message, base)
            .await
            .at(Step::Propose)
    }

    /// Bring the open PR of the change (`existing`, tugboat's own: see `own_open`) up to
    /// date, or open it. `None` when another tugboat merged the change meanwhile; otherwise
    /// the PR and whether this call opened it.
    pub(super) async fn publish(
        &self,
        change: &Change,
        existing: Option<PullRequest>,
        body: &str,
        labels: Vec<String>,
    ) -> Result<Option<(PullRequest, bool)>, StepError> {
        let forge = &self.ports.forge;
        if let Some(pr) = existing {
            tracing::Span::current().record("pr", pr.number);
            if pr.title != change.title || pr.body != body {
                forge
                    .update_pr(pr.number, &change.title, body)
                    .await
                    .at(Step::PullRequest)?;
            }
            let written = PullRequest {
                title: change.title.clone(),
                body: body.to_owned(),
                ..pr
            };
            return Ok(Some((written, false)));
        }
        // Only the replica that claimed this change opens its PR: another one, about to open
        // it too, might otherwise do so just after the first one merged it (a duplicate).
        // A ledger that cannot be written does not stop a promotion or a rollback: GitHub's one
        // open PR per branch still holds, and only the narrow race after a merge is open then.
        let claimed = match self
            .ports
            .ledger
            .claim_change(&change.branch, &change.title, CLAIM_TTL)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim opening this PR; opening it unclaimed");
                true
            }
        };
        if !claimed {
            tracing::info!(branch = %change.branch, "another tugboat claimed opening this PR; it opens it");
            return Ok(None);
        }
        failpoint!("claim");
        let opened = forge
            .open_pr(NewPullRequest {
                branch: change.branch.clone(),
                title: change.title.clone(),
                body: body.to_owned(),
                labels,
            })
            .await;
        match opened {
            Ok(pr) => {
                failpoint!("open-pr");
                tracing::Span::current().record("pr", pr.number);
                tracing::info!(title = %change.title, "opened pull request");
                Ok(Some((pr, true)))
            }
            // Another replica opened it between our look and our request (GitHub refuses a
            // second PR for the same head): use that one, or see that it merged it already.
            Err(e) if e.kind == ErrorKind::Rejected => {
                match forge
                    .find_open_pr(&change.branch)
                    .await
                    .at(Step::PullRequest)?
                {
                    Some(pr) => {
                        tracing::info!(pr = pr.number, "another tugboat opened this PR first");
                        Ok(Some((pr, false)))
                    }
                    None if self.on_main(&change.files).await? => Ok(None),
                    None => Err(StepError::new(Step::PullRequest, e)),
                }
            }
            Err(e) => Err(StepError::new(Step::PullRequest, e)),
        }
    }

    /// Say on the PR that its branch held a head tugboat did not push, which tugboat replaced.
    pub(super) async fn say_foreign_push(
        &self,
        pr: &PullRequest,
        foreign: &str,
        head: &str,
    ) -> Result<(), StepError> {
        let short = |s: &str| s.chars().take(7).collect::<String>();
        let text = format!(
            "The head of this branch, `{}`, was not pushed by tugboat. tugboat replaced it with its own commit `{}` making the same change: approvals given before now do not count; approvers, please review and approve again.",
            short(foreign),
            short(head)
        );
        self.ports
            .forge
            .comment(pr.number, &text)
            .await
            .at(Step::PullRequest)
    }

    /// Tell the approvers whose approvals a rebase voided that they must approve again.
    pub(super) async fn say_rebased(
        &self,
        change: &Change,
        pr: &PullRequest,
        head: &Proposal,
        dropped: &[String],
        why: &str,
    ) -> Result<(), StepError> {
        let who: Vec<String> = dropped.iter().map(|u| format!("@{u}")).collect();
        let files: Vec<String> = change.files.iter().map(|(f, _)| format!("`{f}`")).collect();
        let text = format!(
            "{} — tugboat rewrote this PR's branch ({}) onto the current main (now `{}`): {why}. Approvals are for the commit they were given on, so yours no longer count: approve again to let it merge.",
            who.join(" "),
            files.join(", "),
            &head.head[..12.min(head.head.len())],
        );
        tracing::info!(pr = pr.number, dropped = ?dropped, "a rebase voided approvals");
        self.ports
            .forge
            .comment(pr.number, &text)
            .await
            .at(Step::Commands)
    }

    /// The gate's check (`tugboat/scan-gate`) on a new head: its title and summary.
    pub(super) async fn gate_report(
        &self,
        head: &str,
        gate: &(String, String),
    ) -> Result<(), StepError> {
        let report = CheckReport {
            sha: head.to_owned(),
            kind: CheckKind::Gate,
            state: StatusState::Success,
            title: gate.0.clone(),
            summary: gate.1.clone(),
            link: None,
        };
        self.ports.forge.report(&report).await.at(Step::PullRequest)
    }

    /// Close a PR just opened whose promotion another tugboat merged meanwhile.
    pub(super) async fn close_redundant(&self, pr: &PullRequest) -> Result<(), StepError> {
        let why = "Closed: another tugboat replica merged this same promotion a moment ago, so this PR has nothing left to do.";
        match self.ports.forge.close_pr(pr.number, why).await {
            Ok(()) => tracing::warn!("closed a PR that another tugboat made redundant"),
            // Already merged (by the other replica): nothing to close.
            Err(e) if e.kind == ErrorKind::Rejected => {}
            Err(e) => return Err(StepError::new(Step::PullRequest, e)),
        }
        Ok(())
    }

    /// Whether the base branch, fetched now, already holds exactly these file contents.
    pub(super) async fn on_main(&self, files: &[(String, String)]) -> Result<bool, StepError> {
        self.ports.repo.sync().await.at(Step::Propose)?;
        for (path, text) in files {
            let now = self.ports.repo.read(path).await.at(Step::Propose)?;
            if now.as_deref() != Some(text.as_str()) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
