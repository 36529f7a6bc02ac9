//! A promotion of one service: its change and what its PR says. The PR's life up to the
//! merge is the [`pipeline`]'s, and after it [`landed`]'s, both shared with groups.
//!
//! [`pipeline`]: super::pipeline
//! [`landed`]: super::landed

use chrono::{DateTime, Utc};

use super::commands::Commands;
use super::context::{Judged, Seen};
use super::deploy;
use super::evidence::{self, PromotionState};
use super::failure::manifest_error;
use super::pipeline::{Merge, Promoted, Promotion, Reached, Record};
use super::pr::Change;
use super::verified::{Landed, Landing};
use super::watch::merged_now;
use super::{Action, At, Cause, Engine, EnvCtx, Step, StepError};
use crate::domain::image::Repository;
use crate::domain::select::Candidate;
use crate::manifest;
use crate::ports::PullRequest;

impl Engine {
    /// Promote the judged candidate: the PR is opened or brought up to date, and merged and
    /// verified once the merge rule allows it.
    pub(super) async fn promote(
        &self,
        cx: &EnvCtx<'_>,
        seen: &Seen,
        judged: &Judged,
    ) -> Result<Action, StepError> {
        let change = promotion_change(cx, seen, &judged.candidate)?;
        failpoint!("edit");
        let existing = self
            .ports
            .forge
            .find_open_pr(&change.branch)
            .await
            .at(Step::PullRequest)?;
        let record = One { cx, seen, judged };
        let p = Promotion {
            change,
            members: vec![Promoted {
                cx,
                candidate: &judged.candidate,
            }],
            record: &record,
        };
        let m = match self.advance(&p, existing).await? {
            Reached::Stopped(action) => return Ok(action),
            Reached::Mergeable(m) => m,
        };
        let state = PromotionState::parse(&m.pr.body).map_err(|error| {
            let pr = m.pr.number;
            StepError::new(Step::Merge, Cause::OwnState { pr, error })
        })?;
        match self.merge(&p, m).await? {
            Merge::Stopped(action) => Ok(action),
            Merge::Merged { pr, sha, at } => self.merged(cx, pr, (sha, at), state).await,
        }
    }

    /// Verify a merged promotion (a group of one), settle its record, and roll it back
    /// when it failed and the policy says `rollback: auto`.
    async fn merged(
        &self,
        cx: &EnvCtx<'_>,
        pr: PullRequest,
        (sha, at): (String, DateTime<Utc>),
        state: PromotionState,
    ) -> Result<Action, StepError> {
        let labelled = merged_now(&pr, at);
        let m = Landing {
            pr: &labelled,
            sha: &sha,
            at,
        };
        let rows = self
            .land(&m, Landed::one(state), &|_: &str| Ok(*cx))
            .await?;
        Ok(rows.into_iter().next().map_or(Action::None, |(_, a)| a))
    }

    /// A candidate the gate (or a bad mark) refuses may have an open PR from before (a rescan
    /// found a CVE, or it failed elsewhere): close it, saying why, so that nobody approves
    /// evidence that no longer holds.
    pub(super) async fn close_refused(
        &self,
        cx: &EnvCtx<'_>,
        candidate: &Candidate,
        reasons: &[String],
    ) -> Action {
        let Some(w) = cx
            .watch()
            .and_then(|w| w.open_promotion(&cx.svc.name, &cx.env.name, &candidate.digest))
        else {
            return Action::None;
        };
        let why = format!(
            "Closed: tugboat no longer promotes `{}` (`{}`): {}. A new PR opens when a tag passes.",
            candidate.tag,
            candidate.digest,
            reasons.join("; ")
        );
        match self.ports.forge.close_pr(w.pr.number, &why).await {
            Ok(()) => {
                tracing::warn!(pr = w.pr.number, "closed a PR whose image is now refused");
                Action::Closed {
                    number: w.pr.number,
                    url: w.pr.url.clone(),
                }
            }
            Err(e) => Action::Failed {
                error: StepError::new(Step::Close, e),
            },
        }
    }
}

/// What one service's promotion PR says: its evidence, and its state block.
struct One<'a> {
    cx: &'a EnvCtx<'a>,
    seen: &'a Seen,
    judged: &'a Judged,
}

impl Record for One<'_> {
    fn answered_through(&self, body: &str) -> u64 {
        evidence::answered_through(body)
    }

    fn write(&self, commands: &Commands) -> (String, (String, String)) {
        let files: Vec<String> = self.seen.files.iter().map(|(p, _)| p.clone()).collect();
        let evidence = evidence_of(self.cx, self.seen, self.judged, &files, commands);
        (evidence::body(&evidence), evidence::gate_check(&evidence))
    }

    fn labels(&self) -> Vec<String> {
        labels(self.cx)
    }

    fn rebased(&self, pr: &PullRequest) -> &'static str {
        let (cx, tag) = (self.cx, &self.judged.candidate.tag);
        if pr.title == evidence::title_of(&cx.svc.name, &cx.env.name, tag) {
            "main changed the files it edits since its commit, or the branch held changes tugboat did not make"
        } else {
            "it promotes a newer tag now"
        }
    }
}

/// The edit of a promotion: the service's image set to the candidate in every file of the
/// environment (pinned by digest when the policy or the file already pins).
fn promotion_change(cx: &EnvCtx<'_>, seen: &Seen, to: &Candidate) -> Result<Change, StepError> {
    let image = &cx.svc.image;
    let mut files = Vec::new();
    for (path, text) in &seen.files {
        let edited = set_image(path, text, image, to, cx.env_policy.pin_digest)?;
        files.push((path.clone(), edited));
    }
    let title = evidence::title_of(&cx.svc.name, &cx.env.name, &to.tag);
    let from = seen
        .deployed
        .as_ref()
        .and_then(|d| d.tag.as_ref())
        .map_or("(none)".to_owned(), ToString::to_string);
    let message = format!("{title}\n\n{image} {from} -> {}@{}\n", to.tag, to.digest);
    Ok(Change {
        branch: evidence::branch(&cx.svc.name, &cx.env.name),
        title,
        message,
        files,
    })
}

/// `text` of file `path` with `image` set to `to`, pinned by digest when the policy says so
/// (`pin_digest`) or the file already pins it: the one edit a promotion makes, alone or in a
/// group.
pub(super) fn set_image(
    path: &str,
    text: &str,
    image: &Repository,
    to: &Candidate,
    pin_digest: bool,
) -> Result<String, StepError> {
    let refs = manifest::locate(text).map_err(|e| manifest_error(Step::Edit, path, e))?;
    let pinned = pin_digest || refs.iter().any(|r| r.is_for(image) && r.digest.is_some());
    manifest::set_image(text, image, &to.tag, pinned.then_some(&to.digest))
        .map(|edit| edit.text)
        .map_err(|e| manifest_error(Step::Edit, path, e))
}

/// What a group's PR says of this promotion as one of its members: its evidence section,
/// and its gate result in a line.
pub(super) fn member_parts(cx: &EnvCtx<'_>, seen: &Seen, judged: &Judged) -> (String, String) {
    let files: Vec<String> = seen.files.iter().map(|(p, _)| p.clone()).collect();
    let none = Commands::default();
    evidence::member_section(&evidence_of(cx, seen, judged, &files, &none))
}

/// Everything the promotion PR says.
fn evidence_of<'a>(
    cx: &'a EnvCtx<'_>,
    seen: &'a Seen,
    judged: &'a Judged,
    files: &'a [String],
    commands: &'a Commands,
) -> evidence::Evidence<'a> {
    evidence::Evidence {
        service: &cx.svc.name,
        environment: &cx.env.name,
        image: cx.svc.image.as_str(),
        from: seen.deployed.as_ref(),
        to: &judged.candidate,
        gate: &judged.gate,
        findings: &judged.findings,
        signature: judged.signature.as_ref(),
        policy: cx.env_policy,
        sources: &cx.policy.sources,
        files,
        approvals: &commands.approvals,
        held_by: commands.held_by.as_deref(),
        answered_through: commands.answered_through,
    }
}

/// A promotion PR's labels at its opening. One that merges by itself (no approvals) carries
/// `tugboat:verifying` from the start, which saves a write before the merge: an open PR with
/// it is left to this step (`deploy`'s `resume`), and one closed unmerged loses it there.
fn labels(cx: &EnvCtx<'_>) -> Vec<String> {
    let mut labels = cx.labels();
    if cx.env_policy.auto_merge {
        labels.push(deploy::VERIFYING.to_owned());
    }
    labels
}
