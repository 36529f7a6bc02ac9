//! Rollback: a bad promotion reverted by a PR of its lines alone, merged at once and
//! verified. What it restores comes from git history and must still be pullable and pass the
//! scan gate; otherwise the environment is held instead, saying why.

use chrono::{DateTime, Utc};

use super::evidence::{self, PromotionState};
use super::failure::manifest_error;
use super::pr::Change;
use super::reads;
use super::verified::{Landed, Landing};
use super::watch::{ROLLBACK, VERIFYING, Watched, merged_now};
use super::{Action, At, Cause, Engine, EnvCtx, Step, StepError};
use crate::domain::gate;
use crate::domain::hold::Cause as HoldCause;
use crate::domain::image::ImageRef;
use crate::domain::provenance::Forgery;
use crate::manifest;
use crate::ports::{Base, ErrorKind, PullRequest, Pullable};

impl Engine {
    /// Why the image a rollback of `bad` would restore can no longer be pulled, if it cannot:
    /// lifecycle rules expire old digests and archiving keeps an image listed but not
    /// pullable (aws/containers-roadmap#1466; ECR user guide, "Archiving an image"), and a
    /// rollback to it would deploy an ImagePullBackOff in the middle of an incident.
    async fn rollback_target_gone(
        &self,
        cx: &EnvCtx<'_>,
        bad: &Watched,
        from: &ImageRef,
    ) -> Result<Option<String>, StepError> {
        let digest = from.digest.clone().or_else(|| {
            let tag = from.tag.as_ref()?;
            crate::domain::select::find_tag(cx.images, tag).map(|c| c.digest)
        });
        let Some(digest) = digest else {
            return Ok(Some(format!(
                "a rollback of #{} is due, but `{from}`, which it would restore, is no longer an active image of the registry (archived, expired by a lifecycle rule, or deleted)",
                bad.pr.number
            )));
        };
        if cx.images.iter().any(|i| i.digest == digest) {
            // Listed this cycle, and the listing holds only active images: no call needed.
            return Ok(None);
        }
        let svc = cx.svc;
        let pullable = self
            .ports
            .registry
            .pullable(svc.registry_id.as_deref(), &svc.repository, &digest)
            .await
            .at(Step::Rollback)?;
        let state = match pullable {
            Pullable::Yes => return Ok(None),
            Pullable::NotActive(status) => format!("{status} in ECR, so pulls of it fail"),
            Pullable::Gone => {
                "no longer in ECR (deleted, or expired by a lifecycle rule)".to_owned()
            }
        };
        Ok(Some(format!(
            "a rollback of #{} is due, but `{from}` ({digest}), which it would restore, is {state}",
            bad.pr.number
        )))
    }

    /// What a rollback of `bad` restores: the reference main's files held just before
    /// tugboat's merge of it (the merge commit's first parent), read from git history, never
    /// the state block's `from`, which anyone with write access can edit. `None` when the
    /// PR did not merge into the base branch, or nothing was deployed before it.
    async fn rollback_target(
        &self,
        cx: &EnvCtx<'_>,
        bad: &Watched,
    ) -> Result<Option<ImageRef>, StepError> {
        let pr = self
            .ports
            .forge
            .pull(bad.pr.number)
            .await
            .at(Step::Rollback)?;
        if !self.merged_into_base(&pr) {
            return Ok(None);
        }
        let Some(sha) = pr.merge_sha else {
            return Err(StepError::new(
                Step::Rollback,
                Cause::NoMergeCommit(pr.number),
            ));
        };
        let mut before = Vec::new();
        for path in &cx.env.files {
            let text = self.ports.repo.read_before(&sha, path).await;
            if let Some(text) = text.at(Step::Rollback)? {
                before.push((path.clone(), text));
            }
        }
        let from = reads::deployed_reference(&before, cx.svc)?;
        if from != bad.state.from {
            let shown =
                |r: &Option<ImageRef>| r.as_ref().map_or("nothing".into(), ToString::to_string);
            let why = format!(
                "its state block says it replaced {}, but main ran {} before its merge {sha}; the rollback restores what main ran",
                shown(&bad.state.from),
                shown(&from)
            );
            self.forged(&(&bad.pr).into(), Forgery::Block, &why);
        }
        Ok(from)
    }

    /// Why the image a rollback of `bad` would restore does not pass the environment's scan
    /// gate, if it does not: a rollback writes into the environment like any promotion, and
    /// the gate decides what may be written there (a finding disclosed since that image ran
    /// blocks it as it would block a candidate).
    async fn rollback_target_blocked(
        &self,
        cx: &EnvCtx<'_>,
        bad: &Watched,
        from: &ImageRef,
    ) -> Result<Option<String>, StepError> {
        let Some(digest) = from.digest.clone().or_else(|| {
            let tag = from.tag.as_ref()?;
            crate::domain::select::find_tag(cx.images, tag).map(|c| c.digest)
        }) else {
            return Ok(None); // gone: `rollback_target_gone` said so first
        };
        let kind = crate::domain::select::kind_of(cx.images, &digest);
        let scans = self
            .image_scan(cx.svc, &digest, &kind, cx.mode)
            .await
            .at(Step::Rollback)?;
        let why = match gate::gate_image(&scans, &cx.env_policy.scan, cx.now.date_naive()) {
            gate::GateDecision::Pass { .. } => return Ok(None),
            gate::GateDecision::Block { reasons, .. } => reasons.join("; "),
            gate::GateDecision::Wait { reason } => reason,
        };
        Ok(Some(format!(
            "a rollback of #{} is due, but `{from}` ({digest}), which it would restore, does not pass the scan gate of {}: {why}",
            bad.pr.number, cx.env.name
        )))
    }

    /// Hold the environment instead of a rollback that would deploy what must not be deployed
    /// (`cause`); the hold's issue (and its notification) say why, the way out (`out`), and
    /// the other one: keep what runs.
    async fn hold_rollback(
        &self,
        cx: &EnvCtx<'_>,
        bad: &Watched,
        cause: HoldCause,
        why: &str,
        out: &str,
    ) -> Result<Action, StepError> {
        tracing::error!(pr = bad.pr.number, why = %why, "no rollback");
        let detail = format!(
            "{why}. {out}, or keep what runs: an approver comments `/unblock` on #{}, then `/resume` here",
            bad.pr.number
        );
        self.hold_for(cx, bad, cause, detail).await
    }

    /// Revert a bad promotion: a PR restoring the previous reference (with the same editor),
    /// merged without waiting for approvals or windows, then verified.
    pub(super) async fn rollback(
        &self,
        cx: &EnvCtx<'_>,
        bad: &Watched,
    ) -> Result<Action, StepError> {
        let Some(from) = self.rollback_target(cx, bad).await? else {
            return Err(StepError::new(
                Step::Rollback,
                Cause::NothingToRollBackTo(bad.pr.number),
            ));
        };
        if let Some(why) = self.rollback_target_gone(cx, bad, &from).await? {
            let out =
                "Restore that image in ECR and comment `/resume` here (the rollback then proceeds)";
            return self
                .hold_rollback(cx, bad, HoldCause::RollbackTargetGone, &why, out)
                .await;
        }
        if let Some(why) = self.rollback_target_blocked(cx, bad, &from).await? {
            let out = "Accept its findings in the policy (`scan.ignore`) or fix them, then comment `/resume` here (the rollback then proceeds)";
            return self
                .hold_rollback(cx, bad, HoldCause::RollbackTargetBlocked, &why, out)
                .await;
        }
        self.ports.repo.sync().await.at(Step::Rollback)?;
        let files = self.read_files(cx.env).await?;
        let change = rollback_change(cx, &files, bad, &from)?;
        let head = self.propose(&change, Base::Untouched).await?;
        failpoint!("rollback");
        let state = rollback_state(cx, bad, &from);
        let body = state.write_into(&rollback_text(cx, bad, &from));
        let existing = self
            .ports
            .forge
            .find_open_pr(&change.branch)
            .await
            .at(Step::PullRequest)?;
        let mut labels = cx.labels();
        labels.splice(1..1, [ROLLBACK.to_owned(), VERIFYING.to_owned()]);
        let existing = self.own_open(existing).await?;
        let Some((pr, _)) = self.publish(&change, existing, &body, labels).await? else {
            return Ok(Action::None);
        };
        tracing::warn!(rollback = pr.number, "rolling back");
        let Some((sha, at)) = self.merge_rollback(&pr, &head.head, &change).await? else {
            return Ok(Action::None);
        };
        failpoint!("merge");
        let labelled = merged_now(&pr, at);
        let m = Landing {
            pr: &labelled,
            sha: &sha,
            at,
        };
        let mut landed = Landed::one(state);
        let found = self.verified(&m, &mut landed, &|_: &str| Ok(*cx)).await?;
        let Some((_, Ok(verified))) = found.checked.into_iter().next() else {
            return Ok(Action::None);
        };
        Ok(self.rolled_back(bad.pr.number, &m, verified).await)
    }

    /// Merge the rollback PR if its head is still `head`: the merge commit and when.
    /// `None` when another tugboat merged the same rollback a moment ago.
    async fn merge_rollback(
        &self,
        pr: &PullRequest,
        head: &str,
        change: &Change,
    ) -> Result<Option<(String, DateTime<Utc>)>, StepError> {
        let at = self.clock.now();
        let sha = match self.ports.forge.merge(pr.number, head, &change.title).await {
            Ok(sha) => sha,
            Err(e) if e.kind == ErrorKind::Rejected && self.on_main(&change.files).await? => {
                tracing::info!(error = %e, "main already has this rollback (another tugboat merged it)");
                return Ok(None);
            }
            Err(error) => {
                let cause = Cause::RollbackNotMerged {
                    pr: pr.number,
                    error,
                };
                return Err(StepError::new(Step::Rollback, cause));
            }
        };
        tracing::info!(merge = %sha, "merged the rollback");
        Ok(Some((sha, at)))
    }
}

/// The edit of a rollback: the previous reference restored in every file of the environment.
fn rollback_change(
    cx: &EnvCtx<'_>,
    files: &[(String, String)],
    bad: &Watched,
    from: &ImageRef,
) -> Result<Change, StepError> {
    let image = &cx.svc.image;
    let mut edited = Vec::new();
    for (path, text) in files {
        let e = manifest::set_reference(text, image, from.tag.as_ref(), from.digest.as_ref())
            .map_err(|e| manifest_error(Step::Rollback, path, e))?;
        edited.push((path.clone(), e.text));
    }
    let from_text = match (&from.tag, &from.digest) {
        (Some(tag), _) => tag.to_string(),
        (None, Some(digest)) => digest.to_string(),
        (None, None) => String::new(),
    };
    let title = format!("Roll back {} in {}: {from_text}", cx.svc.name, cx.env.name);
    let message = format!(
        "{title}\n\nReverts #{} ({image}:{}), which did not run Healthy.\n",
        bad.pr.number,
        bad.state.tag_text()
    );
    Ok(Change {
        branch: evidence::rollback_branch(&cx.svc.name, &cx.env.name),
        title,
        message,
        files: edited,
    })
}

/// The state block of a rollback of `bad` to `from`.
fn rollback_state(cx: &EnvCtx<'_>, bad: &Watched, from: &ImageRef) -> PromotionState {
    PromotionState {
        service: cx.svc.name.clone(),
        environment: cx.env.name.clone(),
        tag: from.tag.clone(),
        digest: from.digest.clone(),
        from: Some(bad.state.reference(&cx.svc.image)),
        answered_through: 0,
        rollback_of: Some(bad.pr.number),
        auto_sync: None,
    }
}

/// The words of a rollback PR (its state block is written into them).
fn rollback_text(cx: &EnvCtx<'_>, bad: &Watched, from: &ImageRef) -> String {
    format!(
        "## Rollback of `{}` in `{}`\n\n#{} promoted `{}` (`{}`), which is marked bad. This PR restores the reference deployed before it, `{}`, changing nothing else.\n\ntugboat merges it at once (a rollback waits for no approval or window) and then waits for Argo CD to report the application Synced and Healthy.\n",
        cx.svc.name,
        cx.env.name,
        bad.pr.number,
        bad.state.tag_text(),
        bad.state.digest_text(),
        from
    )
}
