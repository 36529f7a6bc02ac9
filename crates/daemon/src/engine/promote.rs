//! A promotion: edit → propose → pull request → may it merge? → merge and verify → settle.
//! Rollback (in `deploy`) shares `propose`, `publish`, `merge_and_verify` and `settle`.

use chrono::{DateTime, Utc};

use super::commands::{Commands, Target};
use super::deploy::{self, Watched};
use super::environment::{Judged, Seen, manifest_error};
use super::evidence::{self, PromotionState};
use super::{Action, Approvals, At, Cause, Engine, EnvCtx, Step, StepError, Timing, Verification};
use crate::domain::chatops;
use crate::domain::image::Repository;
use crate::domain::merge::{self, Fact, SyncWindows, Verdict};
use crate::domain::policy::RollbackMode;
use crate::domain::select::Candidate;
use crate::domain::window;
use crate::manifest;
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

/// A merge, and how it turned out in the cluster.
pub(super) struct Merged {
    pub sha: String,
    pub at: DateTime<Utc>,
    pub verification: Verification,
    /// When the verification ended.
    pub verified_at: DateTime<Utc>,
}

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
        let head = self.propose(&change, Base::Untouched).await?;
        failpoint!("push");
        let (head, foreign) = self.own_head(&change, head).await?;
        let forge = &self.ports.forge;
        let existing = forge
            .find_open_pr(&change.branch)
            .await
            .at(Step::PullRequest)?;
        let commands = match &existing {
            Some(pr) => self.pr_commands(cx, pr, &head, &judged.candidate).await?,
            // About to open a PR: first make sure main does not have the change already
            // (another tugboat may have opened and merged it since this cycle fetched).
            None if self.on_main(&change.files).await? => {
                tracing::info!("main already has this promotion (another tugboat merged it)");
                return Ok(Action::None);
            }
            None => Commands::default(),
        };
        let files: Vec<String> = seen.files.iter().map(|(p, _)| p.clone()).collect();
        let evidence = evidence_of(cx, seen, judged, &files, &commands);
        let (body, gate) = (evidence::body(&evidence), evidence::gate_check(&evidence));
        let Some((pr, opened)) = self.publish(&change, existing, &body, labels(cx)).await? else {
            return Ok(Action::None);
        };
        if let Some(foreign) = &foreign {
            self.say_foreign_push(&pr, foreign, &head.head).await?;
        }
        if head.pushed || opened || self.gate_was_due(pr.number) {
            self.gate_report(&head.head, &gate).await?;
        }
        self.rerun_if_asked(cx, &pr, &judged.candidate).await?;
        if opened && self.on_main(&change.files).await? {
            return self.close_redundant(&pr).await;
        }
        let verdict = self.merge_verdict(cx, &commands, &head.head).await?;
        if verdict != Verdict::Merge {
            return waiting(verdict, pr, cx, &commands, (&head.head, head.committed_at));
        }
        match self.merge_promotion(cx, &change, &head, pr.clone()).await {
            Err(e) if refused_as_behind(&e) => {
                self.rebase_behind(cx, &change, &pr, &gate, &commands, e)
                    .await
            }
            // Someone pushed to the branch since this cycle read it (another replica making the
            // same change, or a person): the next cycle reads the new head and its approvals.
            Err(e) if refused_as_moved(&e) => {
                tracing::info!(error = %e, "the branch moved under the merge; merging next cycle");
                Ok(Action::None)
            }
            done => done,
        }
    }

    /// The repository requires a branch to be up to date with main before it merges, and
    /// this one is behind (it was kept while main moved): put it on the current main, which
    /// voids its approvals, and say so. The next cycles merge it as usual.
    async fn rebase_behind(
        &self,
        cx: &EnvCtx<'_>,
        change: &Change,
        pr: &PullRequest,
        gate: &(String, String),
        commands: &Commands,
        refusal: StepError,
    ) -> Result<Action, StepError> {
        let head = self.propose(change, Base::Current).await?;
        if !head.pushed {
            return Err(refusal); // already on the current main: refused for another reason
        }
        tracing::info!(pr = pr.number, error = %refusal, "the merge wants the branch up to date; rebased it");
        self.gate_report(&head.head, gate).await?;
        if !commands.approvals.is_empty() {
            let why =
                "the repository requires a branch to be up to date with main before it merges";
            self.say_rebased(cx, pr, &head, &commands.approvals, why)
                .await?;
        }
        Ok(Action::Updated {
            number: pr.number,
            url: pr.url.clone(),
        })
    }

    /// Merge an approved promotion, verify it, and roll it back when it failed and the
    /// policy says `rollback: auto`.
    async fn merge_promotion(
        &self,
        cx: &EnvCtx<'_>,
        change: &Change,
        head: &Proposal,
        pr: PullRequest,
    ) -> Result<Action, StepError> {
        let state = PromotionState::parse(&pr.body).map_err(|error| {
            StepError::new(
                Step::Merge,
                Cause::OwnState {
                    pr: pr.number,
                    error,
                },
            )
        })?;
        // Labelled before the merge, so that a stop right after it still gets verified (a PR
        // of an environment that merges by itself carries the label from its opening).
        if !pr.labels.iter().any(|l| l == deploy::VERIFYING) {
            self.ports
                .forge
                .add_labels(pr.number, &[deploy::VERIFYING.to_owned()])
                .await
                .at(Step::Merge)?;
        }
        failpoint!("label");
        let Some(merged) = self
            .merge_and_verify(cx, &pr, &head.head, change, &state)
            .await?
        else {
            return Ok(Action::None);
        };
        let watched = Watched::merged(&pr, merged.at, state);
        self.settle(cx, &watched, &merged.verification).await?;
        let timing = Timing {
            verified_at: merged.verified_at,
            since: deploy::pushed_at(cx, &watched.state),
        };
        if matches!(merged.verification, Verification::Failed { .. })
            && cx.env_policy.rollback == RollbackMode::Auto
        {
            let mut action = self.rollback(cx, &watched).await?;
            if let Action::RolledBack { promotion, .. } = &mut action {
                *promotion = Some(timing);
            }
            return Ok(action);
        }
        Ok(Action::Merged {
            number: pr.number,
            url: pr.url,
            sha: merged.sha,
            verification: merged.verification,
            timing,
        })
    }

    /// Commit the change on its branch and push it (nothing is pushed when the branch
    /// already makes it on a `base` it may keep).
    pub(super) async fn propose(&self, change: &Change, base: Base) -> Result<Proposal, StepError> {
        self.ports
            .repo
            .propose(&change.branch, change.files.clone(), &change.message, base)
            .await
            .at(Step::Propose)
    }

    /// Bring the open PR of the change up to date, or open it. `None` when another tugboat
    /// merged the change meanwhile; otherwise the PR and whether this call opened it.
    pub(super) async fn publish(
        &self,
        change: &Change,
        existing: Option<PullRequest>,
        body: &str,
        labels: Vec<String>,
    ) -> Result<Option<(PullRequest, bool)>, StepError> {
        let forge = &self.ports.forge;
        let existing = self.own_open(existing).await?;
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

    /// Merge the PR if its head is still `head`, then verify and report the outcome. `None`
    /// when another tugboat merged the same change a moment ago.
    pub(super) async fn merge_and_verify(
        &self,
        cx: &EnvCtx<'_>,
        pr: &PullRequest,
        head: &str,
        change: &Change,
        state: &PromotionState,
    ) -> Result<Option<Merged>, StepError> {
        let at = self.clock.now();
        let sha = match self.ports.forge.merge(pr.number, head, &change.title).await {
            Ok(sha) => sha,
            Err(e) if e.kind == ErrorKind::Rejected && self.on_main(&change.files).await? => {
                tracing::info!(error = %e, "main already has this change (another tugboat merged it)");
                return Ok(None);
            }
            Err(error) if state.rollback_of.is_some() => {
                let cause = Cause::RollbackNotMerged {
                    pr: pr.number,
                    error,
                };
                return Err(StepError::new(Step::Rollback, cause));
            }
            Err(e) => return Err(StepError::new(Step::Merge, e)),
        };
        tracing::info!(merge = %sha, "merged");
        failpoint!("merge");
        let (verification, verified_at) =
            self.verify_and_report(cx, pr.number, &sha, at, state).await;
        Ok(Some(Merged {
            sha,
            at,
            verification,
            verified_at,
        }))
    }

    /// The commands on the open PR: approvals of this head, a hold, and an answer to every
    /// new command.
    async fn pr_commands(
        &self,
        cx: &EnvCtx<'_>,
        pr: &PullRequest,
        head: &Proposal,
        candidate: &Candidate,
    ) -> Result<Commands, StepError> {
        tracing::Span::current().record("pr", pr.number);
        let target = Target {
            number: pr.number,
            answered_through: evidence::answered_through(&pr.body),
            subject: if pr.merged {
                chatops::Subject::Merged
            } else {
                chatops::Subject::Open
            },
            head_sha: &head.head,
            head_at: head.committed_at,
            digest: Some(&candidate.digest),
            previous: head.replaced.as_ref().map(|(sha, at)| (sha.as_str(), *at)),
        };
        let commands = self.commands(cx, &target).await?;
        if !commands.dropped.is_empty() {
            let same = pr.title == evidence::title_of(&cx.svc.name, &cx.env.name, &candidate.tag);
            let why = if same {
                "main changed the files it edits since its commit, or the branch held changes tugboat did not make"
            } else {
                "it promotes a newer tag now"
            };
            self.say_rebased(cx, pr, head, &commands.dropped, why)
                .await?;
        }
        Ok(commands)
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
        cx: &EnvCtx<'_>,
        pr: &PullRequest,
        head: &Proposal,
        dropped: &[String],
        why: &str,
    ) -> Result<(), StepError> {
        let who: Vec<String> = dropped.iter().map(|u| format!("@{u}")).collect();
        let files: Vec<String> = cx.env.files.iter().map(|f| format!("`{f}`")).collect();
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

    /// What the merge rule says, reading the outside facts it asks for and no others.
    pub(super) async fn merge_verdict(
        &self,
        cx: &EnvCtx<'_>,
        commands: &Commands,
        head: &str,
    ) -> Result<Verdict, StepError> {
        let mut facts = merge::Facts {
            held_by: commands.held_by.as_deref(),
            approvals: commands.approvals.len(),
            approvals_needed: cx.env_policy.approvals,
            auto_merge: cx.env_policy.auto_merge,
            window: window::open_at(&cx.env_policy.windows, cx.now),
            sync_windows: None,
            checks: None,
        };
        loop {
            match merge::may_merge(&facts) {
                Verdict::Read(Fact::SyncWindows) => {
                    facts.sync_windows = Some(self.sync_windows(cx).await?);
                }
                Verdict::Read(Fact::Checks) => {
                    facts.checks = Some(self.ports.forge.checks(head).await.at(Step::Merge)?);
                }
                verdict => return Ok(verdict),
            }
        }
    }

    /// What a plan says the merge would wait for (the windows part of the merge rule).
    pub(super) async fn plan_hold(&self, cx: &EnvCtx<'_>) -> Option<String> {
        let window = window::open_at(&cx.env_policy.windows, cx.now);
        let mut sync = None;
        loop {
            match merge::windows(&window, sync.as_ref()) {
                None => return None,
                Some(Verdict::Read(_)) => match self.sync_windows(cx).await {
                    Ok(s) => sync = Some(s),
                    Err(e) => return Some(e.to_string()),
                },
                Some(verdict) => return Some(hold_reason(&verdict)),
            }
        }
    }

    async fn sync_windows(&self, cx: &EnvCtx<'_>) -> Result<SyncWindows, StepError> {
        self.ports
            .deployer
            .sync_windows(cx.app)
            .await
            .map_err(|e| StepError::new(Step::Merge, Cause::SyncWindows(e)))
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

    /// Whether a re-run asked for the gate of PR `number` to be reported again; it is now.
    fn gate_was_due(&self, number: u64) -> bool {
        self.gate_due.lock().is_ok_and(|mut d| d.remove(&number))
    }

    /// A person re-ran the gate check of this PR (a webhook): scan its image again and read
    /// the policy anew, as `/rescan` does; the gate is reported again once judged afresh.
    async fn rerun_if_asked(
        &self,
        cx: &EnvCtx<'_>,
        pr: &PullRequest,
        candidate: &Candidate,
    ) -> Result<(), StepError> {
        if !self.inbox.take_rerun(pr.number) {
            return Ok(());
        }
        self.rescan_requested(cx, "a re-run of the gate check", &candidate.digest)
            .await?;
        self.refresh_policy();
        if let Ok(mut due) = self.gate_due.lock() {
            due.insert(pr.number);
        }
        Ok(())
    }

    /// Close a PR just opened whose promotion another tugboat merged meanwhile.
    pub(super) async fn close_redundant(&self, pr: &PullRequest) -> Result<Action, StepError> {
        let why = "Closed: another tugboat replica merged this same promotion a moment ago, so this PR has nothing left to do.";
        match self.ports.forge.close_pr(pr.number, why).await {
            Ok(()) => tracing::warn!("closed a PR that another tugboat made redundant"),
            // Already merged (by the other replica): nothing to close.
            Err(e) if e.kind == ErrorKind::Rejected => {}
            Err(e) => return Err(StepError::new(Step::PullRequest, e)),
        }
        Ok(Action::None)
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

/// Everything the promotion PR says.
pub(super) fn evidence_of<'a>(
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
        policy: cx.env_policy,
        sources: &cx.policy.sources,
        files,
        approvals: &commands.approvals,
        held_by: commands.held_by.as_deref(),
        answered_through: commands.answered_through,
    }
}

/// The row of a PR the merge rule keeps waiting (or the failure, for failed checks).
pub(super) fn waiting(
    verdict: Verdict,
    pr: PullRequest,
    cx: &EnvCtx<'_>,
    commands: &Commands,
    (head, head_at): (&str, DateTime<Utc>),
) -> Result<Action, StepError> {
    let (number, url) = (pr.number, pr.url);
    Ok(match verdict {
        Verdict::Held { by } => Action::Held { number, url, by },
        Verdict::AwaitingApproval => Action::AwaitingApproval {
            number,
            url,
            head: head.to_owned(),
            approvals: Approvals {
                needed: cx.env_policy.approvals,
                given: Some(commands.approvals.clone()),
                from: cx.env_policy.approvers.clone(),
            },
            since: head_at,
        },
        Verdict::OutsideWindow { opens } => Action::WaitingForWindow { number, url, opens },
        Verdict::SyncWindowDenies { windows } => Action::WaitingForSyncWindow {
            number,
            url,
            windows,
        },
        Verdict::WaitingForChecks => Action::WaitingForChecks { number, url },
        Verdict::ChecksFailed => {
            return Err(StepError::new(Step::Merge, Cause::ChecksFailed(number)));
        }
        // `merge_verdict` reads every fact the rule asks for, and its caller merges on `Merge`.
        Verdict::Merge | Verdict::Read(_) => Action::None,
    })
}

/// Whether a merge was refused because the branch is not up to date with main (branch
/// protection that requires it: GitHub reports the required checks as merely expected).
pub(super) fn refused_as_behind(e: &StepError) -> bool {
    let Cause::Port(p) = &e.cause else {
        return false;
    };
    let m = p.message.to_ascii_lowercase();
    e.step == Step::Merge
        && p.kind == ErrorKind::Rejected
        && [
            "are expected",
            "is expected",
            "up to date",
            "out of date",
            "out-of-date",
        ]
        .iter()
        .any(|w| m.contains(w))
}

/// A merge GitHub refused because the PR's head is no longer the commit named (HTTP 409,
/// "Head branch was modified").
pub(super) fn refused_as_moved(e: &StepError) -> bool {
    let Cause::Port(p) = &e.cause else {
        return false;
    };
    e.step == Step::Merge
        && p.kind == ErrorKind::Rejected
        && p.message
            .to_ascii_lowercase()
            .contains("head branch was modified")
}

/// What `plan` says of a window that keeps the merge waiting.
fn hold_reason(verdict: &Verdict) -> String {
    match verdict {
        Verdict::OutsideWindow { opens: Some(t) } => format!(
            "outside its promotion windows; the next opens {}",
            t.format("%a %Y-%m-%d %H:%M UTC")
        ),
        Verdict::SyncWindowDenies { windows } => format!(
            "an Argo CD sync window denies syncs ({})",
            windows.join("; ")
        ),
        _ => "outside its promotion windows".to_owned(),
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
