//! How a PR gets into the base branch. Directly, one merge at a time: each merge moves
//! main, after which GitHub computes every open PR's mergeability again (`mergeable: null`
//! for a moment, and a merge then may answer "Base branch was modified"), so a merge that
//! follows one of tugboat's own first reads that GitHub knows again (a read, not a refused
//! write). Or, on a branch whose rules require one, through the merge queue: GitHub refuses
//! a direct merge there ("Changes must be made through the merge queue"), so the PR is
//! queued and the queue merges it; the next cycle's watch verifies the commit the queue
//! made (the PR's merge commit), as it does any merged PR labelled `verifying`.

use std::time::Duration;

use tokio::time::Instant;

use super::watch::VERIFYING;
use super::{Action, At, Cause, Engine, Step, StepError};
use crate::domain::provenance::same_login;
use crate::ports::{PortError, PortResult, Proposal, PullRequest, QueueState};

/// How long after one of its merges tugboat first makes sure GitHub knows a PR's
/// mergeability again before it merges the next.
const RECOMPUTE: Duration = Duration::from_secs(10);

impl Engine {
    /// Merge PR `number` at `head`, after the merge before it (one at a time), once GitHub
    /// knows its mergeability again; a merge refused because main moved under it is tried
    /// once more when GitHub knows again. GitHub's answer to the last try, or `None` when
    /// GitHub was still computing (no write: the next cycle merges).
    pub(super) async fn merge_in_turn(
        &self,
        number: u64,
        head: &str,
        title: &str,
    ) -> Result<Option<PortResult<String>>, StepError> {
        let forge = &self.ports.forge;
        let mut last = self.last_merge.lock().await;
        if last.is_some_and(|t| t.elapsed() < RECOMPUTE)
            && !self.mergeability_known(number, false).await?
        {
            tracing::info!(
                pr = number,
                "GitHub is still computing whether it can merge; merging next cycle"
            );
            return Ok(None);
        }
        let mut merged = forge.merge(number, head, title).await;
        // Main moved under the merge (another merge just landed): once GitHub has computed the
        // PR's mergeability again, a merge goes through.
        let base_moved = |e: &PortError| e.refused_for("base branch was modified");
        if merged.as_ref().is_err_and(base_moved) && self.mergeability_known(number, true).await? {
            merged = forge.merge(number, head, title).await;
        }
        if merged.is_ok() {
            *last = Some(Instant::now());
        }
        Ok(Some(merged))
    }

    /// Wait (a few seconds at most) until GitHub knows whether PR `number` can merge,
    /// polling it as GitHub advises for `mergeable: null` (reads: no write); `refused`: a
    /// merge was just refused, so wait before the first look. `false` when it still did not
    /// know.
    async fn mergeability_known(&self, number: u64, refused: bool) -> Result<bool, StepError> {
        let first = if refused { 250 } else { 0 };
        for wait_ms in [first, 100, 200, 400, 800] {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            let pr = self.ports.forge.pull(number).await.at(Step::Merge)?;
            if pr.mergeable.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Queue the PR at `head`, or say where it stands: queued (its position), or removed by
    /// the queue since `head` was pushed (a failure, said once on the PR; queued again only
    /// at a new head, so a failing CI costs no write per cycle).
    pub(super) async fn through_queue(
        &self,
        pr: &PullRequest,
        head: &Proposal,
    ) -> Result<Action, StepError> {
        let forge = &self.ports.forge;
        let queued = |position| Action::Queued {
            number: pr.number,
            url: pr.url.clone(),
            position,
        };
        let me = forge.me().await.at(Step::Merge)?;
        match forge.queue_state(pr.number).await.at(Step::Merge)? {
            QueueState::Queued { position } => return Ok(queued(position)),
            // Taken out by tugboat itself (a hold, since lifted): queued again.
            QueueState::Removed { by, .. } if same_login(&by, &me) => {}
            QueueState::Removed { reason, at, .. } if at >= head.committed_at => {
                self.say_removed(pr.number, &reason).await?;
                let cause = Cause::RemovedFromQueue {
                    pr: pr.number,
                    reason,
                };
                return Err(StepError::new(Step::Merge, cause));
            }
            QueueState::Removed { .. } | QueueState::Absent => {}
        }
        // Labelled first, as before a merge: the queue may merge it while tugboat is down.
        if !pr.labels.iter().any(|l| l == VERIFYING) {
            forge
                .add_labels(pr.number, &[VERIFYING.to_owned()])
                .await
                .at(Step::Merge)?;
        }
        let position = forge.enqueue(pr.number, &head.head).await.at(Step::Merge)?;
        tracing::info!(pr = pr.number, position, "queued in the merge queue");
        Ok(queued(position))
    }

    /// A person held PR `number` (`/hold`): on a merge-queue branch, take it out of the
    /// queue, which would merge it otherwise.
    pub(super) async fn hold_queued(&self, number: u64, by: &str) -> Result<(), StepError> {
        if !self.branch_rules().await?.merge_queue {
            return Ok(());
        }
        let forge = &self.ports.forge;
        if let QueueState::Queued { .. } = forge.queue_state(number).await.at(Step::Merge)? {
            forge.dequeue(number).await.at(Step::Merge)?;
            tracing::info!(pr = number, by, "held: taken out of the merge queue");
        }
        Ok(())
    }

    /// Say on PR `number` that the queue removed it, once.
    async fn say_removed(&self, number: u64, reason: &str) -> Result<(), StepError> {
        let forge = &self.ports.forge;
        let text = format!(
            "The merge queue removed this pull request: {reason}. tugboat queues it again when \
             its head changes (a newer image to promote)."
        );
        let me = forge.me().await.at(Step::Merge)?;
        let said = forge
            .comments(number)
            .await
            .at(Step::Merge)?
            .iter()
            .any(|c| same_login(&c.user, &me) && c.body.trim() == text);
        if said {
            return Ok(());
        }
        forge.comment(number, &text).await.at(Step::Merge)
    }
}
