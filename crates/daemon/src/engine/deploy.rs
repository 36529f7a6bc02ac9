//! After the merge: verification with Argo CD (resumed after a restart), the outcome
//! reported and settled into the labels, and the merged promotions an environment looks
//! after first (`aftercare`). The labelled PRs themselves are read in `watch`.
//!
//! Rollback is level-triggered: "the environment deploys a digest marked bad there" is checked
//! every cycle, so a rollback interrupted at any step is finished by the next cycle.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::evidence::PromotionState;
use super::{Action, At, Cause, Engine, EnvCtx, Mode, Step, StepError, Timing, Verification};
use crate::domain::chatops;
use crate::domain::deploy::{self, Observation, OperationView, Verdict};
use crate::domain::image::{self, ImageRef};
use crate::domain::policy::RollbackMode;
use crate::domain::promotion::STATE_MARKER;
use crate::domain::seal;
use crate::ports::{
    AppStatus, CheckKind, CheckReport, ErrorKind, OperationPhase, StatusState, SyncStart,
};

use super::records::MARKED_BAD;
pub use super::watch::{BAD, DEPLOYED, ROLLBACK, VERIFYING, Watch, Watched};
use super::watch::{of, watched};

/// How long a replica's claim to report a verification keeps the others from reporting it.
pub(super) const REPORT_CLAIM_TTL: Duration = Duration::from_secs(120);
/// Starts tugboat's verification report: a comment when the promotion failed (looked for so
/// that nothing is reported twice), the PR body's last section when it turned Healthy.
pub(super) const REPORTED: &str = "<!-- tugboat:verified ";

/// One look at the application during a verification.
enum Look {
    /// Healthy; whether the application syncs by itself.
    Healthy(bool),
    Done(Verification),
    /// Not there yet, and why.
    Waiting(String),
}

impl Engine {
    /// Read the labelled PRs and the holds of this cycle. Plan mode only needs the bad marks,
    /// the deployed promotions and the holds.
    pub(super) async fn watch(&self, mode: Mode) -> Result<Watch, StepError> {
        let bad = self.labelled(BAD, false).await?;
        let deployed = self.labelled(DEPLOYED, false).await?;
        let holds = self.holds().await?;
        if mode == Mode::Plan {
            return Ok(Watch {
                bad,
                deployed,
                holds,
                ..Watch::default()
            });
        }
        Ok(Watch {
            verifying: self.labelled(VERIFYING, false).await?,
            deployed,
            bad,
            open: self.labelled("tugboat", true).await?,
            holds,
            lifted: std::sync::Mutex::default(),
        })
    }

    /// The PRs carrying `label`, with their state blocks: only those tugboat opened and
    /// labelled so itself; a PR whose block was edited by hand into something tugboat did not
    /// write is logged and not acted on.
    async fn labelled(
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

    /// Finish the verification of a PR labelled `tugboat:verifying` (tugboat stopped before
    /// reporting it). `None` when there was nothing to do.
    pub(super) async fn resume(
        &self,
        cx: &EnvCtx<'_>,
        w: &Watched,
    ) -> Result<Option<Action>, StepError> {
        let forge = &self.ports.forge;
        let Some(merged_at) = w.pr.merged_at else {
            if !w.pr.open {
                // Closed without a merge: nothing was deployed.
                forge
                    .remove_label(w.pr.number, VERIFYING)
                    .await
                    .at(Step::Settle)?;
            }
            // Still open: the promotion step merges it and verifies then.
            return Ok(None);
        };
        let pr = forge.pull(w.pr.number).await.at(Step::Verify)?;
        if !self.merged_into_base(&pr) {
            // Not deployed by main: nothing to verify, settle or roll back; unlabelled so
            // that it is not read again.
            forge
                .remove_label(pr.number, VERIFYING)
                .await
                .at(Step::Settle)?;
            return Ok(None);
        }
        let Some(sha) = pr.merge_sha else {
            return Err(StepError::new(
                Step::Verify,
                Cause::NoMergeCommit(pr.number),
            ));
        };
        if let Some(healthy) = self.reported(pr.number).await? {
            // Reported before the stop; only the labels were left to do.
            tracing::info!(healthy, "verification was reported before a restart");
            let v = if healthy {
                Verification::Healthy {
                    after: Duration::ZERO,
                    automated: None,
                }
            } else {
                Verification::Failed {
                    reason: "reported before a restart".into(),
                }
            };
            self.settle_as(cx, w, &v, false).await?;
            return Ok(None);
        }
        tracing::info!(merge = %sha, "resuming the verification of a merged promotion");
        let (verification, verified_at) = self
            .verify_and_report(cx, pr.number, &sha, merged_at, &w.state)
            .await;
        self.settle(cx, w, &verification).await?;
        Ok(Some(match w.state.rollback_of {
            Some(bad) => Action::RolledBack {
                bad,
                number: pr.number,
                url: pr.url,
                verification,
                timing: Timing {
                    verified_at,
                    since: self.marked_bad_at(bad).await,
                },
                promotion: None,
            },
            None => Action::Merged {
                number: pr.number,
                url: pr.url,
                sha,
                verification,
                timing: Timing {
                    verified_at,
                    since: pushed_at(cx, &w.state),
                },
            },
        }))
    }

    /// When tugboat marked promotion `number` bad (its latest "Marked bad" comment): the
    /// moment the failure a rollback undoes was detected. Read from the PR, so a rollback
    /// after a restart measures from the same moment; `None` (and a warning) when unreadable.
    pub(super) async fn marked_bad_at(&self, number: u64) -> Option<DateTime<Utc>> {
        match self.own_comments(number).await {
            Ok(comments) => comments
                .into_iter()
                .filter(|c| c.body.starts_with(MARKED_BAD))
                .map(|c| c.created_at)
                .max(),
            Err(e) => {
                tracing::warn!(pr = number, error = %e, "could not read when the promotion was marked bad");
                None
            }
        }
    }

    /// Whether tugboat reported a verification on the PR already, and if so whether healthy.
    async fn reported(&self, number: u64) -> Result<Option<bool>, StepError> {
        let comments = self.own_comments(number).await.at(Step::Verify)?;
        Ok(comments
            .into_iter()
            .find_map(|c| c.body.find(REPORTED).map(|i| c.body[i..].to_owned()))
            .map(|report| report.contains("\"healthy\":true")))
    }

    /// tugboat's own comments on PR `number`.
    async fn own_comments(
        &self,
        number: u64,
    ) -> Result<Vec<chatops::Comment>, crate::ports::PortError> {
        let forge = &self.ports.forge;
        let me = forge.me().await?;
        let mut comments = forge.comments(number).await?;
        comments.retain(|c| c.user == me);
        Ok(comments)
    }

    /// The labels after a verification: the deployed promotion of the environment moves to
    /// this PR, or (failed, with `rollback: auto`) its digest is marked bad. `verifying` goes
    /// last, in the same write as `deployed` (and the state, when it changed): a stop before
    /// it leaves the PR to be settled again next cycle, and every step here is safe to redo.
    pub(super) async fn settle(
        &self,
        cx: &EnvCtx<'_>,
        w: &Watched,
        verification: &Verification,
    ) -> Result<(), StepError> {
        self.settle_as(cx, w, verification, true).await
    }

    /// `settle`, writing a Healthy outcome into the PR's body when `say` (not when a comment
    /// of an earlier version said it before a restart).
    async fn settle_as(
        &self,
        cx: &EnvCtx<'_>,
        w: &Watched,
        verification: &Verification,
        say: bool,
    ) -> Result<(), StepError> {
        let forge = &self.ports.forge;
        if matches!(verification, Verification::Unknown { .. }) {
            // Not known: stays labelled `verifying`, to be verified again next cycle.
            return Ok(());
        }
        let mut add: &[&str] = &[];
        let mut body = None;
        if w.state.rollback_of.is_none() {
            match verification {
                Verification::Failed { reason } if cx.env_policy.rollback == RollbackMode::Auto => {
                    self.mark_bad(w, &format!("it did not become Healthy ({reason})"))
                        .await?;
                }
                _ => {
                    let before = cx
                        .watch()
                        .map(|watch| of(&watch.deployed, &w.state.service, &cx.env.name));
                    for old in before.unwrap_or_default() {
                        if old.pr.number != w.pr.number {
                            self.drop_record(old, Step::Settle).await?;
                        }
                    }
                    add = &[DEPLOYED];
                    body = auto_sync_body(w, verification);
                }
            }
        }
        if say && let Verification::Healthy { after, .. } = verification {
            let image = w.state.reference(&cx.svc.image);
            let text = healthy_text(cx.app, &image, *after, None);
            let kept = body.as_deref().unwrap_or(&w.pr.body);
            body = Some(with_report(kept, &text));
        }
        forge
            .relabel(w.pr.number, add, &[VERIFYING], body.as_deref())
            .await
            .at(Step::Settle)
    }

    /// Verify merge `sha` of PR `number` (merged at `merged_at`), then report the outcome;
    /// with when the verification ended.
    pub(super) async fn verify_and_report(
        &self,
        cx: &EnvCtx<'_>,
        number: u64,
        sha: &str,
        merged_at: DateTime<Utc>,
        state: &PromotionState,
    ) -> (Verification, DateTime<Utc>) {
        let image = state.reference(&cx.svc.image);
        let verification = self.verify(cx, sha, &image, merged_at).await;
        // Before the report, whose writes may wait for GitHub's write budget.
        let verified_at = self.clock.now();
        failpoint!("verify");
        self.report(cx, number, sha, &image, &verification, state)
            .await;
        failpoint!("report");
        (verification, verified_at)
    }

    /// The `tugboat/deploy` check of merge `sha`: the outcome, and a deep link to the
    /// application in Argo CD.
    fn deploy_check(
        &self,
        cx: &EnvCtx<'_>,
        sha: &str,
        image: &ImageRef,
        state: StatusState,
        text: &str,
    ) -> CheckReport {
        let app = cx.app;
        let link = format!(
            "{}/applications/{app}",
            self.cfg.argocd.url.trim_end_matches('/')
        );
        CheckReport {
            sha: sha.to_owned(),
            kind: CheckKind::Deploy,
            state,
            title: text.replace('`', ""),
            summary: format!(
                "{text}\n\n| | |\n|---|---|\n| service | `{}` |\n| environment | `{}` |\n| Argo CD application | [`{app}`]({link}) |\n| merge commit | `{sha}` |\n| image | `{image}` |",
                cx.svc.name, cx.env.name
            ),
            link: Some(link),
        }
    }

    /// Report a verification on the PR (once) and as the `tugboat/deploy` status of the merge.
    async fn report(
        &self,
        cx: &EnvCtx<'_>,
        number: u64,
        sha: &str,
        image: &ImageRef,
        verification: &Verification,
        state: &PromotionState,
    ) {
        let (app, short) = (cx.app, &sha[..12.min(sha.len())]);
        let (status, text) = match verification {
            Verification::Healthy { after, .. } => (
                StatusState::Success,
                healthy_text(app, image, *after, Some(short)),
            ),
            Verification::Failed { reason } => (
                StatusState::Failure,
                format!("Argo CD did not report `{app}` Healthy with `{image}`: {reason}"),
            ),
            Verification::Unknown { reason } => (
                StatusState::Error,
                format!("tugboat could not verify `{app}`: {reason}"),
            ),
        };
        let forge = &self.ports.forge;
        let report = self.deploy_check(cx, sha, image, status, &text);
        if let Err(e) = forge.report(&report).await {
            tracing::warn!(error = %e, "could not report the deploy check");
        }
        if !matches!(verification, Verification::Failed { .. }) {
            // Unknown: verified again next cycle. Healthy: said in the PR's body by the
            // write that settles its labels (`settle`), not by a comment of its own.
            return;
        }
        let next = match verification {
            Verification::Failed { .. } if state.rollback_of.is_some() => {
                "\n\nThis was a rollback: tugboat does not roll it back again. Look at the application in Argo CD."
            }
            Verification::Failed { .. } if cx.env_policy.rollback == RollbackMode::Auto => {
                "\n\ntugboat rolls this promotion back now (`rollback: auto`)."
            }
            _ => "\n\nAn approver can comment `/rollback` to revert it (`rollback: manual`).",
        };
        let marker = serde_json::json!({ "sha": sha, "healthy": false });
        // Two replicas may verify the same merge at once (one merged it, the other resumes
        // it from its label): only the one that claims the report posts it.
        let key = format!("report/{number}");
        match self
            .ports
            .ledger
            .claim_change(&key, sha, REPORT_CLAIM_TTL)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(pr = number, "another tugboat reports this verification");
                return;
            }
            // The ledger cannot be written: report anyway (the labels move on after this, so
            // a report held back now would never be made); at worst a racing replica reports
            // too.
            Err(e) => tracing::warn!(error = %e, "could not claim the report; reporting unclaimed"),
        }
        if let Err(e) = forge
            .comment(number, &format!("{text}{next}\n\n{REPORTED}{marker} -->"))
            .await
        {
            tracing::warn!(error = %e, "could not comment the verification");
        }
    }

    /// Whether any of `revisions` is `sha` or descends from it (Helm chart versions of a
    /// multi-source application never are).
    async fn at_merge(&self, revisions: &[&str], sha: &str) -> bool {
        for rev in revisions.iter().filter(|r| deploy::is_commit(r)) {
            if self.ports.repo.includes(rev, sha).await.unwrap_or(false) {
                return true;
            }
        }
        false
    }

    /// Poll Argo CD (a refresh each time) until the application runs `image` at `sha`,
    /// Synced and Healthy, or fails, or the environment's health timeout passes. Syncs the
    /// merge itself when the policy says `sync: true` and nothing else does. An Argo CD that
    /// cannot be read is `Unknown`, never a failure that would roll back.
    pub(super) async fn verify(
        &self,
        cx: &EnvCtx<'_>,
        sha: &str,
        image: &ImageRef,
        merged_at: DateTime<Utc>,
    ) -> Verification {
        let poll = self.cfg.argocd.poll_interval;
        let timeout = cx.env_policy.health_timeout;
        let start = Instant::now();
        let deadline = start + timeout;
        let mut delay = poll;
        let mut synced = false;
        loop {
            // `seen`: whether this look read the application (a timeout then is a failure).
            let (last, seen) = match self.ports.deployer.app(cx.app, true).await {
                Ok(s) => {
                    delay = poll;
                    match self.look(cx, &s, sha, image, merged_at, &mut synced).await {
                        Look::Healthy(automated) => {
                            return Verification::Healthy {
                                after: start.elapsed(),
                                automated: Some(automated),
                            };
                        }
                        Look::Done(v) => return v,
                        Look::Waiting(why) => (why, true),
                    }
                }
                // A refused token or a missing application does not heal by waiting.
                Err(e) if matches!(e.kind, ErrorKind::Denied | ErrorKind::NotFound) => {
                    return Verification::Unknown {
                        reason: e.to_string(),
                    };
                }
                Err(e) => {
                    delay = (delay * 2).min(poll * 8);
                    (e.to_string(), false)
                }
            };
            if Instant::now() >= deadline {
                let reason = format!(
                    "timed out after {} ({last})",
                    humantime::format_duration(timeout)
                );
                return if seen {
                    Verification::Failed { reason }
                } else {
                    Verification::Unknown { reason }
                };
            }
            tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// Judge one reading of the application; ask Argo CD to sync the merge when the policy
    /// says so and nothing else will.
    async fn look(
        &self,
        cx: &EnvCtx<'_>,
        s: &AppStatus,
        sha: &str,
        image: &ImageRef,
        merged_at: DateTime<Utc>,
        synced: &mut bool,
    ) -> Look {
        let at_merge = self.at_merge(&s.all_revisions(), sha).await;
        let op = match &s.operation {
            Some(o) => {
                let revs: Vec<&str> = o.revisions.iter().map(String::as_str).collect();
                Some(OperationView {
                    phase: o.phase,
                    message: o.message.as_deref(),
                    for_merge: self.at_merge(&revs, sha).await,
                })
            }
            None => None,
        };
        let obs = Observation {
            sync_status: s.sync_status,
            health: s.health,
            health_message: s.health_message.as_deref(),
            at_merge,
            reconciled_after_merge: s
                .reconciled_at
                .is_some_and(|t| t.timestamp() >= merged_at.timestamp()),
            operation: op,
            runs_image: image::runs(&s.images, image),
        };
        match deploy::judge(&obs) {
            Verdict::Healthy => Look::Healthy(s.automated),
            Verdict::Failed(reason) => Look::Done(Verification::Failed { reason }),
            Verdict::Waiting(why) => {
                let busy = op.is_some_and(|o| o.phase == OperationPhase::Running);
                if cx.env_policy.sync && !*synced && !at_merge && !s.automated && !busy {
                    self.sync_merge(cx, sha, why, synced).await
                } else {
                    Look::Waiting(why)
                }
            }
        }
    }

    /// Ask Argo CD to sync the merge (once per verification).
    async fn sync_merge(&self, cx: &EnvCtx<'_>, sha: &str, why: String, synced: &mut bool) -> Look {
        match self.ports.deployer.sync(cx.app, sha).await {
            Ok(SyncStart::Started) => {
                tracing::info!(revision = %sha, "asked Argo CD to sync the merge");
                *synced = true;
                Look::Waiting(why)
            }
            Ok(SyncStart::Busy(m)) => Look::Waiting(format!("{why}; {m}")),
            Err(e) if e.kind == ErrorKind::Denied => Look::Done(Verification::Unknown {
                reason: e.to_string(),
            }),
            Err(e) => Look::Waiting(format!("{why}; sync refused: {e}")),
        }
    }
}

/// When the image a promotion deployed was pushed, from this cycle's registry listing.
pub(super) fn pushed_at(cx: &EnvCtx<'_>, state: &PromotionState) -> Option<DateTime<Utc>> {
    let digest = state.digest.as_ref()?;
    cx.images
        .iter()
        .find(|i| &i.digest == digest)
        .map(|i| i.pushed_at)
}

/// What Argo CD reported of a Healthy verification (at merge commit `short`, when known).
fn healthy_text(app: &str, image: &ImageRef, after: Duration, short: Option<&str>) -> String {
    let at = short.map(|s| format!(" at {s}")).unwrap_or_default();
    format!(
        "Argo CD reports `{app}` Synced and Healthy{at} with `{image}`, {:.1}s after the merge.",
        after.as_secs_f64()
    )
}

/// `body` ending with a Healthy verification's report (in place of an earlier one).
pub(super) fn with_report(body: &str, text: &str) -> String {
    let kept = body.find(REPORTED).map_or(body, |i| &body[..i]).trim_end();
    format!("{kept}\n\n{REPORTED}{{\"healthy\":true}} -->\n**Deployed.** {text}\n")
}

/// The promotion's body with whether the application synced by itself when it was verified
/// (turning that off afterwards is a person taking over: a hold), when that is news.
fn auto_sync_body(w: &Watched, v: &Verification) -> Option<String> {
    let Verification::Healthy {
        automated: Some(automated),
        ..
    } = v
    else {
        return None;
    };
    if w.state.auto_sync == Some(*automated) {
        return None;
    }
    let state = PromotionState {
        auto_sync: Some(*automated),
        ..w.state.clone()
    };
    Some(state.write_into(&w.pr.body))
}
