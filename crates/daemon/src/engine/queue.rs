//! Merging through the base branch's merge queue, when its rules require one: GitHub
//! refuses a direct merge there ("Changes must be made through the merge queue"), so the PR
//! is queued and the queue merges it; the next cycle's watch verifies the commit the queue
//! made (the PR's merge commit), as it does any merged PR labelled `verifying`.

use super::watch::VERIFYING;
use super::{Action, At, Cause, Engine, Step, StepError};
use crate::domain::provenance::same_login;
use crate::ports::{Proposal, PullRequest, QueueState};

impl Engine {
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
        match forge.queue_state(pr.number).await.at(Step::Merge)? {
            QueueState::Queued { position } => return Ok(queued(position)),
            QueueState::Removed { reason, at } if at >= head.committed_at => {
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
