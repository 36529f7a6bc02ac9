//! The labelled PRs read at a cycle's start (`watch`), and one member's verification with
//! Argo CD (`verify`): polled until it runs the merge Synced and Healthy, fails, or times
//! out. What is done with the outcome is `verified`'s and `landed`'s.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::evidence::PromotionState;
use super::{At, Cause, Engine, EnvCtx, Mode, Step, StepError, Verification};
use crate::domain::chatops;
use crate::domain::deploy::{self, Evidence, Listed, Observation, OperationView, Verdict};
use crate::domain::image::{self, ImageRef};
use crate::domain::promotion::STATE_MARKER;
use crate::domain::seal;
use crate::ports::{AppStatus, ErrorKind, SyncStart};

use super::records::MARKED_BAD;
use super::watch::watched;
pub use super::watch::{BAD, DEPLOYED, ROLLBACK, VERIFYING, Watch, Watched};

/// How long a replica's claim to report a verification keeps the others from reporting it.
pub(super) const REPORT_CLAIM_TTL: Duration = Duration::from_secs(120);
/// Starts tugboat's verification report: a comment when the promotion failed (looked for so
/// that nothing is reported twice), the PR body's last section when it turned Healthy.
pub(super) const REPORTED: &str = "<!-- tugboat:verified ";

/// What a verification remembers from one look to the next.
#[derive(Default)]
struct Watching {
    /// tugboat asked Argo CD to sync the merge (once per verification).
    synced: bool,
    /// Since when the synced merge's objects have been `Degraded` or `Missing`.
    degraded_since: Option<Instant>,
}

/// One look at the application during a verification.
enum Look {
    /// Healthy; whether the application syncs by itself.
    Healthy(bool),
    Done(Verification),
    /// Not there yet, and why.
    Waiting(String),
    /// A Rollout paused at a step: waited on, never failed for.
    Paused(String),
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
    pub(super) async fn reported(&self, number: u64) -> Result<Option<bool>, StepError> {
        let comments = self.own_comments(number).await.at(Step::Verify)?;
        Ok(comments
            .into_iter()
            .find_map(|c| c.body.find(REPORTED).map(|i| c.body[i..].to_owned()))
            .map(|report| report.contains("\"healthy\":true")))
    }

    /// tugboat's own comments on PR `number`.
    pub(super) async fn own_comments(
        &self,
        number: u64,
    ) -> Result<Vec<chatops::Comment>, crate::ports::PortError> {
        let forge = &self.ports.forge;
        let me = forge.me().await?;
        let mut comments = forge.comments(number).await?;
        comments.retain(|c| c.user == me);
        Ok(comments)
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
        let mut watching = Watching::default();
        loop {
            // `seen`: whether this look read the application (a timeout then is a failure);
            // `paused`: whether it found a paused Rollout (a timeout then is no failure).
            let (last, seen, paused) = match self.ports.deployer.app(cx.app, true).await {
                Ok(s) => {
                    delay = poll;
                    match self
                        .look(cx, &s, sha, image, merged_at, &mut watching)
                        .await
                    {
                        Look::Healthy(automated) => {
                            return Verification::Healthy {
                                after: start.elapsed(),
                                automated: Some(automated),
                            };
                        }
                        Look::Done(v) => return v,
                        Look::Waiting(why) => (why, true, false),
                        Look::Paused(why) => (why, true, true),
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
                    (e.to_string(), false, false)
                }
            };
            if Instant::now() >= deadline {
                let reason = format!(
                    "timed out after {} ({last})",
                    humantime::format_duration(timeout)
                );
                return if paused {
                    // Argo Rollouts pauses a canary for as long as its steps say, or until a
                    // person promotes it (argo-cd#25054): never rolled back for that; the
                    // next cycle looks again.
                    Verification::Unknown { reason }
                } else if seen {
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
        watching: &mut Watching,
    ) -> Look {
        let compared_at_merge = self.at_merge(&s.all_revisions(), sha).await;
        let op = match &s.operation {
            Some(o) => {
                let revs: Vec<&str> = o.revisions.iter().map(String::as_str).collect();
                Some(OperationView {
                    phase: o.phase,
                    message: o.message.as_deref(),
                    for_merge: self.at_merge(&revs, sha).await,
                    retries: o.retry_count,
                })
            }
            None => None,
        };
        let error = s.error_condition();
        let mut obs = Observation {
            sync_status: s.sync_status,
            health: s.health,
            health_message: s.health_message.as_deref(),
            compared_at_merge,
            reconciled_after_merge: s
                .reconciled_at
                .is_some_and(|t| t.timestamp() >= merged_at.timestamp()),
            operation: op,
            listed: listed(&s.images, image),
            condition_error: error.as_deref(),
            degraded_for: Duration::ZERO,
            degraded_grace: cx.env_policy.degraded_grace,
            retry_limit: cx.env_policy.retry_limit,
        };
        if obs.merge_synced() && obs.unhealthy() {
            let since = *watching.degraded_since.get_or_insert_with(Instant::now);
            obs.degraded_for = since.elapsed();
        } else {
            watching.degraded_since = None;
        }
        match deploy::judge(&obs) {
            Verdict::Healthy(evidence) => {
                if evidence != Evidence::Summary {
                    tracing::info!(
                        app = cx.app,
                        evidence = evidence.as_str(),
                        "Healthy without the summary's image list"
                    );
                }
                Look::Healthy(s.automated)
            }
            Verdict::Failed(reason) => Look::Done(Verification::Failed { reason }),
            Verdict::Paused(why) => Look::Paused(why),
            Verdict::Waiting(why) => {
                // Argo CD's comparison moves to the merge on a refresh, before any sync: what
                // tells that the merge was synced is an operation for it (argo-cd#7629).
                let busy = op.is_some_and(|o| o.phase.running());
                let merge_operated = op.is_some_and(|o| o.for_merge);
                let wanted = !watching.synced && !merge_operated && !s.automated && !busy;
                if cx.env_policy.sync && wanted {
                    self.sync_merge(cx, sha, why, &mut watching.synced).await
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

/// What `summary.images` says of `image`: listed, its repository at other references (the
/// old pods), or nothing of its repository.
fn listed(images: &[String], image: &ImageRef) -> Listed {
    if image::runs(images, image) {
        Listed::Promoted
    } else if image::of_repository(images, &image.repository)
        .next()
        .is_some()
    {
        Listed::Other
    } else {
        Listed::Nothing
    }
}
