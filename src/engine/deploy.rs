//! After the merge: verification with Argo CD (resumed after a restart), rollback, and the
//! digests marked bad.
//!
//! What tugboat must remember lives on the pull requests, found by label each cycle with
//! conditional listings (free when nothing changed):
//! - `tugboat:verifying`: merged (or about to be), its verification not reported yet;
//! - `tugboat:deployed`: the promotion an environment runs now, where `/rollback` is read;
//! - `tugboat:bad`: its digest failed; it is never promoted again until an approver comments
//!   `/unblock` (or someone removes the label), and while its environment still deploys it,
//!   tugboat rolls it back.
//!
//! Rollback is level-triggered: "the environment deploys a digest marked bad there" is checked
//! every cycle, so a rollback interrupted at any step is finished by the next cycle.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::commands::Target;
use super::evidence::{self, PromotionState};
use super::{Action, Engine, Mode, Verification, app_name};
use crate::config::{EnvConfig, ServiceConfig};
use crate::domain::chatops;
use crate::domain::deploy::{self, Observation, OperationView, Verdict};
use crate::domain::image::{self, Digest, ImageRef};
use crate::domain::policy::{EnvPolicy, RollbackMode, ServicePolicy};
use crate::manifest;
use crate::ports::{ErrorKind, LabelledPr, NewPullRequest, PullRequest, StatusState, SyncStart};

pub const VERIFYING: &str = "tugboat:verifying";
pub const DEPLOYED: &str = "tugboat:deployed";
pub const BAD: &str = "tugboat:bad";
pub const ROLLBACK: &str = "tugboat:rollback";
/// Starts tugboat's verification report (looked for so that nothing is reported twice).
const REPORTED: &str = "<!-- tugboat:verified ";

/// A labelled pull request with the state its body carries.
#[derive(Debug, Clone)]
pub struct Watched {
    pub pr: LabelledPr,
    pub state: PromotionState,
}

/// The merged promotions tugboat looks after, read at the start of a cycle.
#[derive(Debug, Default)]
pub struct Watch {
    verifying: Vec<Watched>,
    deployed: Vec<Watched>,
    bad: Vec<Watched>,
    /// Every open tugboat PR (promotions and rollbacks).
    open: Vec<Watched>,
}

fn of<'a>(list: &'a [Watched], service: &str, env: &str) -> Vec<&'a Watched> {
    list.iter()
        .filter(|w| w.state.service == service && w.state.environment == env)
        .collect()
}

impl Watched {
    /// A PR merged a moment ago, as the labelled listing will show it.
    pub fn merged(pr: &PullRequest, merged_at: DateTime<Utc>, state: PromotionState) -> Self {
        Self {
            pr: LabelledPr {
                number: pr.number,
                url: pr.url.clone(),
                title: pr.title.clone(),
                body: pr.body.clone(),
                labels: vec![],
                open: false,
                merged_at: Some(merged_at),
            },
            state,
        }
    }
}

impl Watch {
    /// The open promotion PR of this service and environment that promotes `digest`.
    pub fn open_promotion(&self, service: &str, env: &str, digest: &Digest) -> Option<&Watched> {
        of(&self.open, service, env)
            .into_iter()
            .find(|w| w.state.rollback_of.is_none() && w.state.digest.as_ref() == Some(digest))
    }

    /// The PR that marked this service's digest bad, if one did (in any environment).
    pub fn bad_digest(&self, service: &str, digest: &Digest) -> Option<&Watched> {
        self.bad
            .iter()
            .find(|w| w.state.service == service && w.state.digest.as_ref() == Some(digest))
    }
}

/// Whether `deployed` is the image a watched promotion put there.
fn deploys(deployed: Option<&ImageRef>, state: &PromotionState) -> bool {
    deployed.is_some_and(|d| state.is_deployed_as(d))
}

impl Engine {
    /// Read the labelled PRs of this cycle. Plan mode only needs the bad marks.
    pub(super) async fn watch(&self, mode: Mode) -> Result<Watch, String> {
        let read = |label: &'static str, open_only: bool| async move {
            let prs = self
                .ports
                .forge
                .labelled_prs(&[label.to_owned()], open_only)
                .await
                .map_err(|e| format!("cannot read the PRs labelled {label}: {e}"))?;
            Ok::<_, String>(
                prs.into_iter()
                    .filter_map(|pr| match PromotionState::parse(&pr.body) {
                        Ok(state) => Some(Watched { pr, state }),
                        // Edited by hand into something tugboat did not write: not acted on.
                        Err(e) => {
                            tracing::warn!(pr = pr.number, label, error = %e, "ignoring a labelled PR whose state block is refused");
                            None
                        }
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let bad = read(BAD, false).await?;
        if mode == Mode::Plan {
            return Ok(Watch {
                bad,
                ..Watch::default()
            });
        }
        Ok(Watch {
            verifying: read(VERIFYING, false).await?,
            deployed: read(DEPLOYED, false).await?,
            bad,
            open: read("tugboat", true).await?,
        })
    }

    /// Merged promotions of this environment come first: finish an interrupted verification,
    /// carry out `/rollback` and `/unblock`, roll back a bad digest the environment still
    /// deploys. `Some(action)` ends the environment's step for this cycle.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn aftercare(
        &self,
        svc: &ServiceConfig,
        env: &EnvConfig,
        env_policy: &EnvPolicy,
        policy: &ServicePolicy,
        deployed: Option<&ImageRef>,
        watch: &Watch,
    ) -> Option<Action> {
        for w in of(&watch.verifying, &svc.name, &env.name) {
            tracing::Span::current().record("pr", w.pr.number);
            match self.resume(svc, env, env_policy, policy, w, watch).await {
                Ok(None) => {}
                Ok(Some(action)) => return Some(action),
                Err(message) => return Some(Action::Failed { message }),
            }
        }
        let deployed_prs = of(&watch.deployed, &svc.name, &env.name);
        let bad_prs = of(&watch.bad, &svc.name, &env.name);
        let mut newly_bad = Vec::new();
        for w in deployed_prs.iter().chain(bad_prs.iter()) {
            let is_bad = bad_prs.iter().any(|b| b.pr.number == w.pr.number);
            match self
                .merged_commands(svc, env_policy, w, is_bad, &mut newly_bad)
                .await
            {
                Ok(()) => {}
                Err(message) => return Some(Action::Failed { message }),
            }
        }
        for w in bad_prs.into_iter().chain(newly_bad.iter()) {
            // Without an earlier image there is nothing to go back to; the report said so.
            if deploys(deployed, &w.state) && w.state.from.is_some() {
                tracing::Span::current().record("pr", w.pr.number);
                return Some(
                    self.rollback(svc, env, env_policy, policy, w)
                        .await
                        .unwrap_or_else(|message| Action::Failed { message }),
                );
            }
        }
        None
    }

    /// Read the commands on a merged promotion PR: `/rollback` marks its digest bad (the
    /// rollback follows), `/unblock` clears a bad mark.
    async fn merged_commands(
        &self,
        svc: &ServiceConfig,
        env_policy: &EnvPolicy,
        w: &Watched,
        is_bad: bool,
        newly_bad: &mut Vec<Watched>,
    ) -> Result<(), String> {
        let forge = &self.ports.forge;
        let Some(digest) = w.state.digest.clone() else {
            return Ok(());
        };
        let target = Target {
            number: w.pr.number,
            body: &w.pr.body,
            merged: true,
            head_sha: "",
            head_at: w.pr.merged_at.unwrap_or_default(),
            digest: &digest,
        };
        let commands = self.commands(svc, env_policy, &target).await?;
        for (user, action) in &commands.actions {
            match action {
                chatops::Action::Rollback if is_bad => {
                    forge
                        .comment(w.pr.number, &format!("@{user} this promotion is already marked bad; tugboat rolls it back while the environment still deploys it."))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                chatops::Action::Rollback if w.state.from.is_none() => {
                    forge
                        .comment(w.pr.number, &format!("@{user} `/rollback`: not done: this promotion recorded no earlier image to go back to; revert it with a pull request."))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                chatops::Action::Rollback => {
                    tracing::warn!(user = %user, "rollback requested");
                    self.mark_bad(w, &format!("@{user} asked for a rollback"))
                        .await?;
                    newly_bad.push(w.clone());
                }
                chatops::Action::Unblock if is_bad => {
                    forge
                        .remove_label(w.pr.number, BAD)
                        .await
                        .map_err(|e| e.to_string())?;
                    tracing::warn!(user = %user, digest = %w.state.digest_text(), "bad mark cleared");
                    forge
                        .comment(
                            w.pr.number,
                            &format!(
                                "@{user} cleared the bad mark: tugboat may promote `{}` (`{}`) again.",
                                w.state.tag_text(),
                                w.state.digest_text()
                            ),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                }
                chatops::Action::Unblock => {
                    forge
                        .comment(
                            w.pr.number,
                            &format!(
                                "@{user} this promotion is not marked bad; nothing to unblock."
                            ),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                }
                chatops::Action::Rescan => {}
            }
        }
        if commands.answered_through > w.state.answered_through {
            let state = PromotionState {
                answered_through: commands.answered_through,
                ..w.state.clone()
            };
            forge
                .update_pr(w.pr.number, &w.pr.title, &state.write_into(&w.pr.body))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Mark a promotion's digest bad: it is never promoted again until cleared.
    async fn mark_bad(&self, w: &Watched, why: &str) -> Result<(), String> {
        let forge = &self.ports.forge;
        forge
            .add_labels(w.pr.number, &[BAD.to_owned()])
            .await
            .map_err(|e| e.to_string())?;
        forge
            .remove_label(w.pr.number, DEPLOYED)
            .await
            .map_err(|e| e.to_string())?;
        forge
            .comment(
                w.pr.number,
                &format!(
                    "Marked bad: {why}. {} tugboat will not promote `{}` to any environment again. An approver can comment `/unblock` to clear this.",
                    match &w.state.from {
                        Some(from) => format!(
                            "tugboat rolls `{}` in {} back to `{from}`.",
                            w.state.service, w.state.environment
                        ),
                        None => "There is no earlier image to roll back to: revert it by hand.".to_owned(),
                    },
                    w.state.digest_text()
                ),
            )
            .await
            .map_err(|e| e.to_string())
    }

    /// Finish the verification of a PR labelled `tugboat:verifying` (tugboat stopped before
    /// reporting it). `None` when there was nothing to do.
    async fn resume(
        &self,
        svc: &ServiceConfig,
        env: &EnvConfig,
        env_policy: &EnvPolicy,
        policy: &ServicePolicy,
        w: &Watched,
        watch: &Watch,
    ) -> Result<Option<Action>, String> {
        let forge = &self.ports.forge;
        let Some(merged_at) = w.pr.merged_at else {
            if !w.pr.open {
                // Closed without a merge: nothing was deployed.
                forge
                    .remove_label(w.pr.number, VERIFYING)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            // Still open: the promotion step merges it and verifies then.
            return Ok(None);
        };
        let pr = forge.pull(w.pr.number).await.map_err(|e| e.to_string())?;
        let Some(sha) = pr.merge_sha else {
            return Err(format!(
                "PR #{} is merged but has no merge commit",
                pr.number
            ));
        };
        let me = forge.me().await.map_err(|e| e.to_string())?;
        let reported = forge
            .comments(pr.number)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|c| c.user == me)
            .find_map(|c| c.body.find(REPORTED).map(|i| c.body[i..].to_owned()));
        if let Some(report) = reported {
            // Reported before the stop; only the labels were left to do.
            let healthy = report.contains("\"healthy\":true");
            tracing::info!(healthy, "verification was reported before a restart");
            let v = if healthy {
                Verification::Healthy {
                    after: Duration::ZERO,
                }
            } else {
                Verification::Failed {
                    reason: "reported before a restart".into(),
                }
            };
            self.settle(env, env_policy, w, &v, watch).await?;
            return Ok(None);
        }
        tracing::info!(merge = %sha, "resuming the verification of a merged promotion");
        let verification = self
            .verify_and_report(
                pr.number,
                &sha,
                merged_at,
                app_name(env, policy),
                env_policy,
                &w.state.reference(&svc.image),
                &w.state,
            )
            .await;
        self.settle(env, env_policy, w, &verification, watch)
            .await?;
        Ok(Some(Action::Merged {
            number: pr.number,
            url: pr.url,
            sha,
            verification,
        }))
    }

    /// The labels after a verification: the deployed promotion of the environment moves to
    /// this PR, or (failed, with `rollback: auto`) its digest is marked bad.
    pub(super) async fn settle(
        &self,
        env: &EnvConfig,
        env_policy: &EnvPolicy,
        w: &Watched,
        verification: &Verification,
        watch: &Watch,
    ) -> Result<(), String> {
        let forge = &self.ports.forge;
        if matches!(verification, Verification::Unknown { .. }) {
            // Not known: stays labelled `verifying`, to be verified again next cycle.
            return Ok(());
        }
        if w.state.rollback_of.is_none() {
            let failed = matches!(verification, Verification::Failed { .. });
            if failed && env_policy.rollback == RollbackMode::Auto {
                if let Verification::Failed { reason } = verification {
                    self.mark_bad(w, &format!("it did not become Healthy ({reason})"))
                        .await?;
                }
            } else {
                forge
                    .add_labels(w.pr.number, &[DEPLOYED.to_owned()])
                    .await
                    .map_err(|e| e.to_string())?;
                for old in of(&watch.deployed, &w.state.service, &env.name) {
                    if old.pr.number != w.pr.number {
                        forge
                            .remove_label(old.pr.number, DEPLOYED)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        forge
            .remove_label(w.pr.number, VERIFYING)
            .await
            .map_err(|e| e.to_string())
    }

    /// Revert a bad promotion: a PR restoring the previous reference (with the same editor),
    /// merged without waiting for approvals or windows, then verified.
    pub(super) async fn rollback(
        &self,
        svc: &ServiceConfig,
        env: &EnvConfig,
        env_policy: &EnvPolicy,
        policy: &ServicePolicy,
        bad: &Watched,
    ) -> Result<Action, String> {
        let Some(from) = bad.state.from.clone() else {
            return Err(format!(
                "PR #{} is marked bad but recorded no earlier image: nothing to roll back to; revert it by hand",
                bad.pr.number
            ));
        };
        self.ports.repo.sync().await.map_err(|e| e.to_string())?;
        let files = self.read_files(env).await?;
        let mut edited = Vec::new();
        for (path, text) in &files {
            let e =
                manifest::set_reference(text, &svc.image, from.tag.as_ref(), from.digest.as_ref())
                    .map_err(|e| format!("{path}: {e}"))?;
            edited.push((path.clone(), e.text));
        }
        let from_text = from.tag.as_ref().map_or_else(
            || {
                from.digest
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            },
            ToString::to_string,
        );
        let title = format!("Roll back {} in {}: {from_text}", svc.name, env.name);
        let branch = evidence::rollback_branch(&svc.name, &env.name);
        let p = self
            .ports
            .repo
            .propose(
                &branch,
                edited,
                &format!(
                    "{title}\n\nReverts #{} ({}:{}), which did not run Healthy.\n",
                    bad.pr.number,
                    svc.image,
                    bad.state.tag_text()
                ),
            )
            .await
            .map_err(|e| e.to_string())?;
        let state = PromotionState {
            service: svc.name.clone(),
            environment: env.name.clone(),
            tag: from.tag.clone(),
            digest: from.digest.clone(),
            from: Some(bad.state.reference(&svc.image)),
            answered_through: 0,
            rollback_of: Some(bad.pr.number),
        };
        let body = state.write_into(&format!(
            "## Rollback of `{}` in `{}`\n\n#{} promoted `{}` (`{}`), which is marked bad. This PR restores the reference deployed before it, `{}`, changing nothing else.\n\ntugboat merges it at once (a rollback waits for no approval or window) and then waits for Argo CD to report the application Synced and Healthy.\n",
            svc.name,
            env.name,
            bad.pr.number,
            bad.state.tag_text(),
            bad.state.digest_text(),
            from
        ));
        let forge = &self.ports.forge;
        let pr = match forge
            .find_open_pr(&branch)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(pr) => pr,
            None => forge
                .open_pr(NewPullRequest {
                    branch: branch.clone(),
                    title: title.clone(),
                    body,
                    labels: vec![
                        "tugboat".to_owned(),
                        ROLLBACK.to_owned(),
                        VERIFYING.to_owned(),
                        format!("env:{}", env.name),
                        format!("service:{}", svc.name),
                    ],
                })
                .await
                .map_err(|e| e.to_string())?,
        };
        tracing::warn!(rollback = pr.number, "rolling back");
        let merged_at = self.clock.now();
        let sha = forge.merge(pr.number, &p.head, &title).await.map_err(|e| {
            format!(
                "the rollback PR #{} could not be merged ({e}); merge it by hand",
                pr.number
            )
        })?;
        let verification = self
            .verify_and_report(
                pr.number,
                &sha,
                merged_at,
                app_name(env, policy),
                env_policy,
                &state.reference(&svc.image),
                &state,
            )
            .await;
        let _ = forge
            .comment(
                bad.pr.number,
                &format!("Rolled back by #{}: {}", pr.number, verification.summary()),
            )
            .await
            .map_err(|e| tracing::warn!(error = %e, "could not comment the rollback"));
        let w = Watched::merged(&pr, merged_at, state);
        self.settle(env, env_policy, &w, &verification, &Watch::default())
            .await?;
        Ok(Action::RolledBack {
            bad: bad.pr.number,
            number: pr.number,
            url: pr.url,
            verification,
        })
    }

    /// Verify merge `sha` of PR `number` (merged at `merged_at`), then report the outcome.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn verify_and_report(
        &self,
        number: u64,
        sha: &str,
        merged_at: DateTime<Utc>,
        app: &str,
        env_policy: &EnvPolicy,
        image: &ImageRef,
        state: &PromotionState,
    ) -> Verification {
        let verification = self.verify(app, sha, image, merged_at, env_policy).await;
        self.report(number, sha, app, image, &verification, env_policy, state)
            .await;
        verification
    }

    /// Report a verification on the PR (once) and as the `tugboat/deploy` status of the merge.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn report(
        &self,
        number: u64,
        sha: &str,
        app: &str,
        image: &ImageRef,
        verification: &Verification,
        env_policy: &EnvPolicy,
        state: &PromotionState,
    ) {
        let short = &sha[..12.min(sha.len())];
        let (status, text) = match verification {
            Verification::Healthy { after } => (
                StatusState::Success,
                format!(
                    "Argo CD reports `{app}` Synced and Healthy at {short} with `{image}`, {:.1}s after the merge.",
                    after.as_secs_f64()
                ),
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
        let _ = forge
            .set_status(sha, status, "tugboat/deploy", &text.replace('`', ""))
            .await
            .map_err(|e| tracing::warn!(error = %e, "could not set the deploy status"));
        if matches!(verification, Verification::Unknown { .. }) {
            // Verified again next cycle; only the final outcome is commented.
            return;
        }
        let next = match verification {
            Verification::Failed { .. } if state.rollback_of.is_some() => {
                "\n\nThis was a rollback: tugboat does not roll it back again. Look at the application in Argo CD."
            }
            Verification::Failed { .. } if env_policy.rollback == RollbackMode::Auto => {
                "\n\ntugboat rolls this promotion back now (`rollback: auto`)."
            }
            Verification::Failed { .. } => {
                "\n\nAn approver can comment `/rollback` to revert it (`rollback: manual`)."
            }
            _ => "",
        };
        let marker = serde_json::json!({
            "sha": sha,
            "healthy": matches!(verification, Verification::Healthy { .. }),
        });
        let _ = forge
            .comment(number, &format!("{text}{next}\n\n{REPORTED}{marker} -->"))
            .await
            .map_err(|e| tracing::warn!(error = %e, "could not comment the verification"));
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
        app: &str,
        sha: &str,
        image: &ImageRef,
        merged_at: DateTime<Utc>,
        env_policy: &EnvPolicy,
    ) -> Verification {
        let poll = self.cfg.argocd.poll_interval;
        let timeout = env_policy.health_timeout;
        let start = Instant::now();
        let deadline = start + timeout;
        let not_before = merged_at.timestamp();
        let mut delay = poll;
        let mut synced = false;
        loop {
            // `seen`: whether this look read the application (a timeout then is a failure).
            let (last, seen) = match self.ports.deployer.app(app, true).await {
                Ok(s) => {
                    delay = poll;
                    let at_merge = self.at_merge(&s.all_revisions(), sha).await;
                    let op = match &s.operation {
                        Some(o) => {
                            let revs: Vec<&str> = o.revisions.iter().map(String::as_str).collect();
                            Some(OperationView {
                                phase: &o.phase,
                                message: o.message.as_deref(),
                                for_merge: self.at_merge(&revs, sha).await,
                            })
                        }
                        None => None,
                    };
                    let obs = Observation {
                        sync_status: &s.sync_status,
                        health: &s.health,
                        health_message: s.health_message.as_deref(),
                        at_merge,
                        reconciled_after_merge: s
                            .reconciled_at
                            .is_some_and(|t| t.timestamp() >= not_before),
                        operation: op,
                        runs_image: image::runs(&s.images, image),
                    };
                    match deploy::judge(&obs) {
                        Verdict::Healthy => {
                            return Verification::Healthy {
                                after: start.elapsed(),
                            };
                        }
                        Verdict::Failed(reason) => return Verification::Failed { reason },
                        Verdict::Waiting(mut why) => {
                            let busy = op.is_some_and(|o| o.phase == "Running");
                            if env_policy.sync && !synced && !at_merge && !s.automated && !busy {
                                match self.ports.deployer.sync(app, sha).await {
                                    Ok(SyncStart::Started) => {
                                        tracing::info!(revision = %sha, "asked Argo CD to sync the merge");
                                        synced = true;
                                    }
                                    Ok(SyncStart::Busy(m)) => why = format!("{why}; {m}"),
                                    Err(e) if e.kind == ErrorKind::Denied => {
                                        return Verification::Unknown {
                                            reason: e.to_string(),
                                        };
                                    }
                                    Err(e) => why = format!("{why}; sync refused: {e}"),
                                }
                            }
                            (why, true)
                        }
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
}
