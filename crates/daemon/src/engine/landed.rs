//! What follows a merge, for one service's promotion, a rollback, or a group's PR alike:
//! every member verified, reported and settled (`verified`), then each member's row, each
//! member that failed under `rollback: auto` rolled back alone. `resume` finishes a merge
//! whose verification a stop interrupted: the PR still carries `tugboat:verifying`.

use futures_util::future::join_all;

use super::verified::{Contexts, Found, Landed, Landing};
use super::watch::{VERIFYING, Watched};
use super::{Action, At, Cause, Engine, Step, StepError, Timing, Verification, deploy};
use crate::domain::group::{GroupError, GroupState, Outcome};
use crate::ports::LabelledPr;

/// A member's row: its service, and what its environment did.
pub(super) type Row = (String, Action);

impl Engine {
    /// Verify, report and settle every member of PR `m`, merged a moment ago or resumed;
    /// then each verified member's row, its rollback first when it is bad now.
    pub(super) async fn land(
        &self,
        m: &Landing<'_>,
        mut landed: Landed,
        context: &Contexts<'_>,
    ) -> Result<Vec<Row>, StepError> {
        let found = self.verified(m, &mut landed, context).await?;
        Ok(self.rows(m, &landed, found, context).await)
    }

    /// Finish the verification of a PR labelled `tugboat:verifying` (tugboat stopped before
    /// settling it): the rows of the members verified now (none when there was nothing to
    /// do). A group's block is read afresh: this cycle's commands may have changed it.
    pub(super) async fn resume(
        &self,
        w: &Watched,
        context: &Contexts<'_>,
    ) -> Result<Vec<Row>, StepError> {
        let forge = &self.ports.forge;
        let Some(at) = w.pr.merged_at else {
            if !w.pr.open {
                // Closed without a merge: nothing was deployed.
                forge
                    .remove_label(w.pr.number, VERIFYING)
                    .await
                    .at(Step::Settle)?;
            }
            // Still open: the promotion step merges it and verifies then.
            return Ok(Vec::new());
        };
        let pr = forge.pull(w.pr.number).await.at(Step::Verify)?;
        if !self.merged_into_base(&pr) {
            // Not deployed by main: nothing to verify, settle or roll back; unlabelled so
            // that it is not read again.
            forge
                .remove_label(pr.number, VERIFYING)
                .await
                .at(Step::Settle)?;
            return Ok(Vec::new());
        }
        let Some(sha) = pr.merge_sha.clone() else {
            return Err(StepError::new(
                Step::Verify,
                Cause::NoMergeCommit(pr.number),
            ));
        };
        let (landed, body) = match &w.group {
            None => (Landed::one(w.state.clone()), w.pr.body.clone()),
            Some(_) => {
                let state = GroupState::parse(&pr.body).map_err(|e| own_state(pr.number, &e))?;
                (Landed::group(state), pr.body)
            }
        };
        let labelled = LabelledPr {
            body,
            ..w.pr.clone()
        };
        let m = Landing {
            pr: &labelled,
            sha: &sha,
            at,
        };
        if landed.one.is_some()
            && let Some(healthy) = self.reported(m.pr.number).await?
        {
            // An earlier version commented the outcome before the stop: only the labels
            // were left to do.
            tracing::info!(healthy, "verification was reported before a restart");
            return self.settle_reported(&m, landed, healthy, context).await;
        }
        tracing::info!(pr = m.pr.number, merge = %sha, "resuming the verification of a merged promotion");
        self.land(&m, landed, context).await
    }

    /// Settle the outcome a comment reported before a restart. A healthy one has no row (it
    /// was counted then); a failed promotion's rollback follows its labels, so it had not
    /// started: it is made now, as a fresh failure's is (else main would go on deploying a
    /// bad image that no `verifying` or `deployed` record names, which the hold check takes
    /// for a person's change).
    async fn settle_reported(
        &self,
        m: &Landing<'_>,
        mut landed: Landed,
        healthy: bool,
        context: &Contexts<'_>,
    ) -> Result<Vec<Row>, StepError> {
        let v = if healthy {
            Verification::Healthy {
                after: std::time::Duration::ZERO,
                automated: None,
                evidence: None,
            }
        } else {
            Verification::Failed {
                reason: "reported before a restart".into(),
            }
        };
        let checked = landed
            .members
            .members
            .iter()
            .map(|x| (x.service.clone(), Ok((v.clone(), self.clock.now()))))
            .collect();
        let found = Found {
            checked,
            fresh: false,
        };
        self.settled(m, &mut landed, &found, context).await?;
        if healthy || landed.rollback_of().is_some() {
            return Ok(Vec::new());
        }
        Ok(self.rows(m, &landed, found, context).await)
    }

    /// Every verified member's row, each bad member's rollback first (a PR of its lines
    /// alone), all at once.
    async fn rows(
        &self,
        m: &Landing<'_>,
        landed: &Landed,
        found: Found,
        context: &Contexts<'_>,
    ) -> Vec<Row> {
        let rows = found
            .checked
            .into_iter()
            .map(|(service, result)| async move {
                let action = match result {
                    Err(error) => Action::Failed { error },
                    Ok(verified) => {
                        self.member_action(m, landed, &service, verified, context)
                            .await
                    }
                };
                (service, action)
            });
        join_all(rows).await
    }

    /// A verified member's row: merged; or rolled back (bad, `rollback: auto`); or, for a
    /// rollback PR, the rollback.
    async fn member_action(
        &self,
        m: &Landing<'_>,
        landed: &Landed,
        service: &str,
        (verification, verified_at): (Verification, chrono::DateTime<chrono::Utc>),
        context: &Contexts<'_>,
    ) -> Action {
        if let Some(bad) = landed.rollback_of() {
            return self.rolled_back(bad, m, (verification, verified_at)).await;
        }
        let cx = match context(service) {
            Ok(cx) => cx,
            Err(error) => return Action::Failed { error },
        };
        let Some(member) = landed.members.member(service) else {
            return Action::None;
        };
        let w = landed.watched(m.pr, member);
        let timing = Timing {
            verified_at,
            since: deploy::pushed_at(&cx, &w.state),
        };
        if let Verification::Paused { reason } = &verification {
            return self
                .hold_paused(&cx, &w, reason)
                .await
                .unwrap_or_else(|error| Action::Failed { error });
        }
        if member.outcome == Some(Outcome::Bad) {
            tracing::Span::current().record("pr", m.pr.number);
            let mut action = self
                .rollback(&cx, &w)
                .await
                .unwrap_or_else(|error| Action::Failed { error });
            if let Action::RolledBack { promotion, .. } = &mut action {
                *promotion = Some(timing);
            }
            return action;
        }
        Action::Merged {
            number: m.pr.number,
            url: m.pr.url.clone(),
            sha: m.sha.to_owned(),
            verification,
            timing,
        }
    }
}

/// A group PR's block refused at the verification.
fn own_state(pr: u64, e: &GroupError) -> StepError {
    StepError::new(
        Step::Verify,
        Cause::OwnGroupState {
            pr,
            error: e.clone(),
        },
    )
}
