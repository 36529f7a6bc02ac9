//! tugboat's records on pull requests: listed (`labelled`: only those tugboat wrote), and
//! changed after the merge: a promotion no longer its environment's (`drop_record`,
//! `supersede`), a digest marked bad, and a group PR's block, which changes only through
//! `update_group` (read afresh, written under the engine's one lock, so that two changes in
//! a cycle both count).

use super::watch::{BAD, DEPLOYED, Watched, watched};
use super::{At, Cause, Engine, Step, StepError};
use crate::domain::group::{GroupState, Member, Outcome};
use crate::domain::promotion::PromotionState;
use crate::domain::promotion::STATE_MARKER;
use crate::domain::seal;

/// How tugboat's comment marking a promotion bad begins.
pub(super) const MARKED_BAD: &str = "Marked bad:";

impl Engine {
    /// The PRs carrying `label`, with their state blocks: only those tugboat opened and
    /// labelled so itself; a PR whose block was edited by hand into something tugboat did not
    /// write is logged and not acted on.
    pub(super) async fn labelled(
        &self,
        label: &'static str,
        open_only: bool,
    ) -> Result<Vec<Watched>, StepError> {
        let prs = self
            .ports
            .forge
            .labelled_prs(&[label.to_owned()], open_only)
            .await
            .map_err(|error| StepError::new(Step::Watch, Cause::Watch { label, error }))?;
        let mut own = Vec::with_capacity(prs.len());
        for pr in prs {
            if !self
                .own_record((&pr).into(), Some(label), Step::Watch)
                .await?
            {
                continue;
            }
            let lost = seal::forgotten(&pr.body) && !pr.body.contains(STATE_MARKER);
            own.push(if lost && pr.merged_at.is_some() {
                self.rebuilt(pr).await?
            } else {
                pr
            });
        }
        Ok(own.into_iter().flat_map(|pr| watched(pr, label)).collect())
    }

    /// `w` is no longer its environment's record: its PR loses `deployed`, or (a group
    /// member) the member is marked superseded, the others' records standing.
    pub(super) async fn drop_record(&self, w: &Watched, step: Step) -> Result<(), StepError> {
        if w.group.is_some() {
            return self.supersede(w.pr.number, &[&w.state.service], step).await;
        }
        self.ports
            .forge
            .remove_label(w.pr.number, DEPLOYED)
            .await
            .at(step)
    }

    /// Mark a promotion's digest bad: it is never promoted again until cleared.
    pub(super) async fn mark_bad(&self, w: &Watched, why: &str) -> Result<(), StepError> {
        let forge = &self.ports.forge;
        forge
            .relabel(w.pr.number, &[BAD], &[DEPLOYED], None)
            .await
            .at(Step::Settle)?;
        forge
            .comment(w.pr.number, &marked_bad_text(&w.state, why))
            .await
            .at(Step::Settle)
    }

    /// Mark `services` of group PR `number` superseded (a later promotion, or a person's
    /// change that a `/resume` accepted, replaced them), dropping `deployed` once no member
    /// is deployed (`update_group`: read afresh, written under the engine's one lock).
    pub(super) async fn supersede(
        &self,
        number: u64,
        services: &[&str],
        step: Step,
    ) -> Result<(), StepError> {
        self.update_group(number, step, &[], |state| {
            let replaced: Vec<(&str, Outcome)> = services
                .iter()
                .filter(|s| state.member(s).is_some_and(Member::deployed))
                .map(|s| (*s, Outcome::Superseded))
                .collect();
            state.record(&replaced);
        })
        .await
    }

    /// Change group PR `number`'s block with `change`, read afresh and written under the
    /// engine's one lock (so that two changes in a cycle both count), adding `add` and
    /// dropping `deployed` and `bad` once no member needs them. A label is never added back
    /// here: a person who removed `bad` cleared the marks.
    pub(super) async fn update_group(
        &self,
        number: u64,
        step: Step,
        add: &[&str],
        change: impl FnOnce(&mut GroupState),
    ) -> Result<(), StepError> {
        let _one_writer = self.group_writes.lock().await;
        let forge = &self.ports.forge;
        let pr = forge.pull(number).await.at(step)?;
        let mut state = match GroupState::parse(&pr.body) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(pr = number, error = %e, "a group PR's block is refused; it is left as it is");
                return Ok(());
            }
        };
        let before = state.clone();
        change(&mut state);
        if state == before && add.is_empty() {
            return Ok(());
        }
        let (_, deployed, bad) = state.labels();
        let mut remove = Vec::new();
        if !deployed {
            remove.push(DEPLOYED);
        }
        if !bad {
            remove.push(BAD);
        }
        forge
            .relabel(number, add, &remove, Some(&state.write_into(&pr.body)))
            .await
            .at(step)
    }
}

/// What tugboat comments when it marks promotion `state` bad, `why`.
pub(super) fn marked_bad_text(state: &PromotionState, why: &str) -> String {
    let back = match &state.from {
        Some(from) => format!(
            "tugboat rolls `{}` in {} back to `{from}`.",
            state.service, state.environment
        ),
        None => "There is no earlier image to roll back to: revert it by hand.".to_owned(),
    };
    format!(
        "{MARKED_BAD} {why}. {back} tugboat will not promote `{}` to any environment again. An approver can comment `/unblock` to clear this.",
        state.digest_text()
    )
}
