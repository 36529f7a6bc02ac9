//! One promotion pipeline, for one service or a group of them (a single promotion is a
//! group of one): the change pushed, its PR opened or brought up to date, the PR's
//! commands read, the merge rule applied, and the merge with GitHub's refusals handled.
//!
//! Its caller builds the [`Promotion`] (the change, the members, what the PR records) and
//! takes it on after the merge: `promote` verifies and settles one service, `group` every
//! member at once. A rule about an open promotion PR goes here, once, for both.

use chrono::{DateTime, Utc};

use super::commands::{Commands, Target};
use super::pr::Change;
use super::watch::VERIFYING;
use super::{Action, Approvals, At, Cause, Engine, EnvCtx, Step, StepError};
use crate::domain::chatops;
use crate::domain::checks;
use crate::domain::merge::{self, Fact, SyncWindows, Verdict};
use crate::domain::select::Candidate;
use crate::domain::window;
use crate::ports::{Base, ErrorKind, Proposal, PullRequest};

/// What a promotion's PR says, and how: the record of one service's promotion or of a
/// group's.
pub(super) trait Record: Sync {
    /// The newest command comment answered, as the PR's body records it.
    fn answered_through(&self, body: &str) -> u64;
    /// The PR's body and its gate check (title, summary), given its commands.
    fn write(&self, commands: &Commands) -> (String, (String, String));
    /// The PR's labels at its opening.
    fn labels(&self) -> Vec<String>;
    /// Why the approvals of the PR's previous head were voided by this cycle's push.
    fn rebased(&self, pr: &PullRequest) -> &'static str;
}

/// A member of a promotion: a service's candidate in an environment.
pub(super) struct Promoted<'a> {
    pub cx: &'a EnvCtx<'a>,
    pub candidate: &'a Candidate,
}

/// A promotion of one or more services in one environment, in one PR.
pub(super) struct Promotion<'a> {
    pub change: Change,
    /// Its members; the first leads: its policy merges the PR (every member's agrees).
    pub members: Vec<Promoted<'a>>,
    pub record: &'a dyn Record,
}

impl<'a> Promotion<'a> {
    fn lead(&self) -> &'a EnvCtx<'a> {
        self.members[0].cx
    }
}

/// Where a promotion stopped this cycle, short of merging.
pub(super) enum Reached {
    /// Every member's row says this (waiting, or nothing to do).
    Stopped(Action),
    /// The merge rule lets the PR merge (boxed: it carries the PR and its commands).
    Mergeable(Box<Mergeable>),
}

/// A PR the merge rule lets merge, at this head.
pub(super) struct Mergeable {
    pub pr: PullRequest,
    pub head: Proposal,
    pub commands: Commands,
    /// The gate check written for it (reported again on a head a refused merge rebases).
    gate: (String, String),
}

/// What a merge did.
pub(super) enum Merge {
    /// Refused, for a reason the next cycle settles (every member's row says this).
    Stopped(Action),
    Merged {
        pr: PullRequest,
        sha: String,
        at: DateTime<Utc>,
    },
}

impl Engine {
    /// Push the promotion's change, open or update its PR (`existing`: the one open for its
    /// branch), read its commands and apply the merge rule.
    pub(super) async fn advance(
        &self,
        p: &Promotion<'_>,
        existing: Option<PullRequest>,
    ) -> Result<Reached, StepError> {
        let head = self.propose(&p.change, Base::Untouched).await?;
        failpoint!("push");
        let (head, foreign) = self.own_head(&p.change, head).await?;
        // A PR someone else opened from tugboat's branch, or retargeted, is closed first:
        // its commands are not read.
        let existing = self.own_open(existing).await?;
        let commands = match &existing {
            Some(pr) => self.pr_commands(p, pr, &head).await?,
            // About to open a PR: first make sure main does not have the change already
            // (another tugboat may have opened and merged it since this cycle fetched).
            None if self.on_main(&p.change.files).await? => {
                tracing::info!("main already has this promotion (another tugboat merged it)");
                return Ok(Reached::Stopped(Action::None));
            }
            None => Commands::default(),
        };
        let (body, gate) = p.record.write(&commands);
        let published = self
            .publish(&p.change, existing, &body, p.record.labels())
            .await?;
        let Some((pr, opened)) = published else {
            return Ok(Reached::Stopped(Action::None));
        };
        if let Some(foreign) = &foreign {
            self.say_foreign_push(&pr, foreign, &head.head).await?;
        }
        if head.pushed || opened || self.gate_was_due(pr.number) {
            self.gate_report(&head.head, &gate).await?;
        }
        self.rerun_if_asked(p, &pr).await?;
        if opened && self.on_main(&p.change.files).await? {
            self.close_redundant(&pr).await?;
            return Ok(Reached::Stopped(Action::None));
        }
        let lead = p.lead();
        let verdict = self
            .merge_verdict(lead, &commands, (&head.head, head.committed_at))
            .await?;
        if let Verdict::Held { by } = &verdict {
            self.hold_queued(pr.number, by).await?;
        }
        if let Verdict::AwaitingReview { .. } = verdict {
            let needed = self.branch_rules().await?.required_reviews;
            self.say_reviews_needed(pr.number, needed, commands.review_notice_said)
                .await?;
        }
        if verdict != Verdict::Merge {
            let action = waiting(
                verdict,
                pr,
                lead,
                &commands,
                (&head.head, head.committed_at),
            )?;
            return Ok(Reached::Stopped(action));
        }
        Ok(Reached::Mergeable(Box::new(Mergeable {
            pr,
            head,
            commands,
            gate,
        })))
    }

    /// The commands on the open PR: approvals of this head, a hold, an answer to every new
    /// command, and `/rescan` carried out for every member.
    async fn pr_commands(
        &self,
        p: &Promotion<'_>,
        pr: &PullRequest,
        head: &Proposal,
    ) -> Result<Commands, StepError> {
        tracing::Span::current().record("pr", pr.number);
        let target = Target {
            number: pr.number,
            answered_through: p.record.answered_through(&pr.body),
            subject: if pr.merged {
                chatops::Subject::Merged
            } else {
                chatops::Subject::Open
            },
            head_sha: &head.head,
            head_at: head.committed_at,
            digest: None,
            previous: head.replaced.as_ref().map(|(sha, at)| (sha.as_str(), *at)),
        };
        let commands = self.commands(p.lead(), &target).await?;
        let rescans = commands
            .actions
            .iter()
            .filter(|(_, a, _)| *a == chatops::Action::Rescan);
        for (user, _, _) in rescans {
            for m in &p.members {
                self.rescan_requested(m.cx, user, &m.candidate.digest)
                    .await?;
            }
        }
        if !commands.dropped.is_empty() {
            let why = p.record.rebased(pr);
            self.say_rebased(&p.change, pr, head, &commands.dropped, why)
                .await?;
        }
        Ok(commands)
    }

    /// Whether a re-run asked for the gate of PR `number` to be reported again; it is now.
    fn gate_was_due(&self, number: u64) -> bool {
        self.gate_due.lock().is_ok_and(|mut d| d.remove(&number))
    }

    /// A person re-ran the gate check of this PR (a webhook): scan its images again and read
    /// the policy anew, as `/rescan` does; the gate is reported again once judged afresh.
    async fn rerun_if_asked(&self, p: &Promotion<'_>, pr: &PullRequest) -> Result<(), StepError> {
        if !self.inbox.take_rerun(pr.number) {
            return Ok(());
        }
        for m in &p.members {
            self.rescan_requested(m.cx, "a re-run of the gate check", &m.candidate.digest)
                .await?;
        }
        self.refresh_policy();
        if let Ok(mut due) = self.gate_due.lock() {
            due.insert(pr.number);
        }
        Ok(())
    }

    /// What the merge rule says, reading the outside facts it asks for and no others.
    /// `head` is the commit judged, and when it was committed (the last push).
    pub(super) async fn merge_verdict(
        &self,
        cx: &EnvCtx<'_>,
        commands: &Commands,
        (head, head_at): (&str, DateTime<Utc>),
    ) -> Result<Verdict, StepError> {
        let rules = self.branch_rules().await?;
        let mut facts = merge::Facts {
            held_by: commands.held_by.as_deref(),
            approvals: commands.approvals.len(),
            approvals_needed: cx.env_policy.approvals,
            auto_merge: cx.env_policy.auto_merge,
            reviews: (rules.required_reviews, commands.reviewed_by.len()),
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
                    let expected = match &cx.env_policy.checks {
                        Some(named) => named.as_slice(),
                        None => rules.required_checks.as_slice(),
                    };
                    facts.checks = Some(self.checks_of(cx, expected, (head, head_at)).await?);
                }
                verdict => return Ok(verdict),
            }
        }
    }

    /// The head's checks, judged against the ones the environment waits for (`expected`:
    /// the policy's `checks`, else the base branch's required checks; empty: every check
    /// that reports).
    async fn checks_of(
        &self,
        cx: &EnvCtx<'_>,
        expected: &[String],
        (head, head_at): (&str, DateTime<Utc>),
    ) -> Result<checks::ChecksState, StepError> {
        let seen = self.ports.forge.checks(head).await.at(Step::Merge)?;
        // A commit stamped later than this clock reads (skew) has waited no time at all,
        // which a zero `checks_settle` still counts as settled.
        let waited = cx
            .now
            .signed_duration_since(head_at)
            .to_std()
            .unwrap_or_default();
        let settled = waited >= cx.env_policy.checks_settle;
        Ok(checks::judge(&seen, expected, settled))
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

    /// Merge the PR at the head the merge rule judged (labelled `verifying` first, so that a
    /// stop right after the merge still gets verified).
    pub(super) async fn merge(
        &self,
        p: &Promotion<'_>,
        m: Box<Mergeable>,
    ) -> Result<Merge, StepError> {
        let Mergeable {
            pr,
            head,
            commands,
            gate,
        } = *m;
        if self.branch_rules().await?.merge_queue {
            return self.through_queue(&pr, &head).await.map(Merge::Stopped);
        }
        let forge = &self.ports.forge;
        if !pr.labels.iter().any(|l| l == VERIFYING) {
            forge
                .add_labels(pr.number, &[VERIFYING.to_owned()])
                .await
                .at(Step::Merge)?;
        }
        failpoint!("label");
        let at = self.clock.now();
        let Some(merged) = self
            .merge_in_turn(pr.number, &head.head, &p.change.title)
            .await?
        else {
            return Ok(Merge::Stopped(Action::None));
        };
        match merged {
            Ok(sha) => {
                tracing::info!(merge = %sha, members = p.members.len(), "merged");
                failpoint!("merge");
                Ok(Merge::Merged { pr, sha, at })
            }
            Err(e) => {
                let refusal = StepError::new(Step::Merge, e);
                let action = self
                    .merge_refused(p, &pr, (&commands, &gate), refusal)
                    .await?;
                Ok(Merge::Stopped(action))
            }
        }
    }

    /// A merge GitHub refused: the branch moved (another replica or a person pushed; the
    /// next cycle reads it), another replica merged the same change, or the repository wants
    /// the branch up to date with main (it is put there). Any other refusal is the error.
    async fn merge_refused(
        &self,
        p: &Promotion<'_>,
        pr: &PullRequest,
        written: (&Commands, &(String, String)),
        refusal: StepError,
    ) -> Result<Action, StepError> {
        // The PR's head is no longer the commit named (HTTP 409).
        if refused_for(&refusal, "head branch was modified") {
            tracing::info!(error = %refusal, "the branch moved under the merge; merging next cycle");
            return Ok(Action::None);
        }
        if refused_for(&refusal, "base branch was modified") {
            // Main moved under the merge again after `merge_in_turn` waited for GitHub to
            // compute mergeability once: the next cycle merges.
            tracing::info!(error = %refusal, "main moved under the merge; merging next cycle");
            return Ok(Action::None);
        }
        if refused_for(&refusal, "approving review") {
            // GitHub counts reviews tugboat could not see as such (a reviewer without write
            // access, rules it could not read): the PR waits for a review, said once.
            self.say_reviews_needed(pr.number, 1, written.0.review_notice_said)
                .await?;
            return Ok(Action::AwaitingReview {
                number: pr.number,
                url: pr.url.clone(),
                missing: 1,
            });
        }
        if refused(&refusal) && self.on_main(&p.change.files).await? {
            tracing::info!(error = %refusal, "main already has this change (another tugboat merged it)");
            return Ok(Action::None);
        }
        if refused_for(&refusal, "verified signatures") {
            return Err(self.explain_unsigned(refusal)); // a rebase would not sign them
        }
        if refused_as_behind(&refusal) {
            return self.rebase_behind(p, pr, written, refusal).await;
        }
        Err(refusal)
    }

    /// The repository requires a branch to be up to date with main before it merges, and
    /// this one is behind (it was kept while main moved): put it on the current main, which
    /// voids its approvals, and say so. The next cycles merge it as usual.
    async fn rebase_behind(
        &self,
        p: &Promotion<'_>,
        pr: &PullRequest,
        (commands, gate): (&Commands, &(String, String)),
        refusal: StepError,
    ) -> Result<Action, StepError> {
        let head = self.propose(&p.change, Base::Current).await?;
        if !head.pushed {
            return Err(refusal); // already on the current main: refused for another reason
        }
        tracing::info!(pr = pr.number, error = %refusal, "the merge wants the branch up to date; rebased it");
        self.gate_report(&head.head, gate).await?;
        if !commands.approvals.is_empty() {
            let why =
                "the repository requires a branch to be up to date with main before it merges";
            self.say_rebased(&p.change, pr, &head, &commands.approvals, why)
                .await?;
        }
        Ok(Action::Updated {
            number: pr.number,
            url: pr.url.clone(),
        })
    }
}

/// The row of a PR the merge rule keeps waiting (or the failure, for failed checks).
fn waiting(
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
        Verdict::AwaitingReview { missing } => Action::AwaitingReview {
            number,
            url,
            missing,
        },
        Verdict::OutsideWindow { opens } => Action::WaitingForWindow { number, url, opens },
        Verdict::SyncWindowDenies { windows } => Action::WaitingForSyncWindow {
            number,
            url,
            windows,
        },
        Verdict::WaitingForChecks { waiting } => Action::WaitingForChecks {
            number,
            url,
            checks: waiting,
            never_reported: false,
        },
        Verdict::ChecksMissing { names } => Action::WaitingForChecks {
            number,
            url,
            checks: names,
            never_reported: true,
        },
        Verdict::ChecksFailed { failed } => {
            return Err(StepError::new(
                Step::Merge,
                Cause::ChecksFailed { pr: number, failed },
            ));
        }
        // `merge_verdict` reads every fact the rule asks for, and its caller merges on `Merge`.
        Verdict::Merge | Verdict::Read(_) => Action::None,
    })
}

/// Whether a merge was refused because the branch is not up to date with main (branch
/// protection that requires it: GitHub reports the required checks as merely expected).
fn refused_as_behind(e: &StepError) -> bool {
    [
        "are expected",
        "is expected",
        "up to date",
        "out of date",
        "out-of-date",
    ]
    .iter()
    .any(|w| refused_for(e, w))
}

/// A merge GitHub refused with `words` (lower case) in its message.
fn refused_for(e: &StepError, words: &str) -> bool {
    matches!(&e.cause, Cause::Port(p) if e.step == Step::Merge && p.refused_for(words))
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

/// Whether GitHub refused the merge (as opposed to failing to answer).
fn refused(e: &StepError) -> bool {
    matches!(&e.cause, Cause::Port(p) if p.kind == ErrorKind::Rejected)
}
