//! Holds of an environment (`domain::hold` is the rule): seen before anything is chosen,
//! recorded in a GitHub issue that a restart or a second replica reads back, said on the
//! environment's open promotion PR and in the logs and metrics, and lifted by an approver's
//! `/resume` on the issue (or on the merged promotion the environment runs).

use super::commands::Target;
use super::context::Seen;
pub use super::watch::HoldIssue;
use super::watch::{Watch, Watched, of};
use super::{Action, At, Engine, EnvCtx, EnvReport, Mode, Step, StepError};
use crate::domain::chatops::{self, Subject};
use crate::domain::hold::{self, AppFacts, Cause, Facts, Hold, Record, Verdict};
use crate::domain::markdown::inert;
use crate::domain::plan::Decision;
use crate::domain::seal;
use crate::ports::Issue;

impl Engine {
    /// The open hold issues, with their blocks; an issue whose block does not parse is not
    /// tugboat's record of a hold and is left alone.
    pub(super) async fn holds(&self) -> Result<Vec<HoldIssue>, StepError> {
        let issues = self
            .ports
            .forge
            .open_issues(&[hold::HOLD_LABEL.to_owned()])
            .await
            .at(Step::Hold)?;
        let mut own = Vec::with_capacity(issues.len());
        for issue in issues {
            let record = (&issue).into();
            if !self
                .own_record(record, Some(hold::HOLD_LABEL), Step::Hold)
                .await?
            {
                continue;
            }
            // A hold lifted by `/resume` and reopened by a person holds nothing again.
            if let Some(lifted) = hold::Lifted::parse(&issue.body) {
                let why = format!(
                    "its hold was lifted by {} at {}; reopening the issue holds nothing (comment /hold on the promotion instead)",
                    lifted.by, lifted.at
                );
                let record = format!("issue #{}", issue.number);
                self.provenance.log.notice(&record, &why);
                continue;
            }
            // An edit by someone else does not lift a hold: it holds until `/resume`.
            own.push(
                if seal::forgotten(&issue.body) && Hold::parse(&issue.body).is_none() {
                    self.rebuilt_hold(issue).await?
                } else {
                    issue
                },
            );
        }
        Ok(own
            .into_iter()
            .filter_map(|issue| {
                let hold = Hold::parse(&issue.body);
                if hold.is_none() {
                    tracing::warn!(
                        issue = issue.number,
                        "ignoring a hold issue without tugboat's block"
                    );
                }
                hold.map(|hold| HoldIssue { issue, hold })
            })
            .collect())
    }

    /// Whether the environment is free for tugboat: `false` when it is held (the row then
    /// says so). A new hold is recorded (apply) or only shown (plan); an open one reads its
    /// issue for `/resume`.
    pub(super) async fn free(&self, cx: &EnvCtx<'_>, seen: &Seen, report: &mut EnvReport) -> bool {
        let Some(watch) = cx.watch() else {
            return true; // the labels could not be read: the next step says so and waits
        };
        let open = watch.hold_of(&cx.svc.name, &cx.env.name);
        let record = watch.record_of(&cx.svc.name, &cx.env.name);
        let app = match (open, record) {
            (None, Some(r))
                if seen
                    .deployed
                    .as_ref()
                    .is_some_and(|d| r.state.is_deployed_as(d)) =>
            {
                self.app_facts(cx).await
            }
            _ => None,
        };
        let facts = Facts {
            open: open.map(|h| &h.hold),
            deployed: seen.deployed.as_ref(),
            record: record.and_then(|w| {
                Some(Record {
                    state: &w.state,
                    merged_at: w.pr.merged_at?,
                })
            }),
            app: app.as_ref(),
        };
        let outcome = match hold::check(&facts) {
            Verdict::Free => return true,
            Verdict::Held(_) => match open {
                Some(h) => self.still_held(cx, watch, h).await,
                None => return true,
            },
            Verdict::New(cause, why) => match self.own_merge_since(cx, seen, cause).await {
                Ok(true) => return true,
                Ok(false) => {
                    let by_argo = app.as_ref().and_then(|a| a.last_operation.clone());
                    self.new_hold(cx, seen, watch, (cause, why), by_argo).await
                }
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(Some((hold, issue, action))) => {
                report.decision = Decision::Held { hold, issue };
                report.action = action;
                false
            }
            Ok(None) => true,
            Err(error) => {
                report.decision = Decision::Waiting {
                    candidate: None,
                    reason: error.to_string(),
                };
                report.action = Action::Failed { error };
                false
            }
        }
    }

    /// Whether main's change, which this cycle's records do not explain (`cause` is a
    /// manual change), is a promotion tugboat merged after its labels were listed: another
    /// replica's merge, which this replica's later fetch of main already shows. The records
    /// are listed afresh (`verifying`, then `deployed`, the order a promotion moves) for one
    /// of this environment deployed as main is. A hold waits for a person's `/resume`, so it
    /// is not made on a listing older than the file it judges.
    async fn own_merge_since(
        &self,
        cx: &EnvCtx<'_>,
        seen: &Seen,
        cause: Cause,
    ) -> Result<bool, StepError> {
        let Some(deployed) = seen
            .deployed
            .as_ref()
            .filter(|_| cause == Cause::ManualChange)
        else {
            return Ok(false);
        };
        for label in [super::watch::VERIFYING, super::watch::DEPLOYED] {
            let own = self.labelled(label, false).await?.into_iter().find(|w| {
                w.state.service == cx.svc.name
                    && w.state.environment == cx.env.name
                    && w.pr.merged_at.is_some()
                    && w.state.is_deployed_as(deployed)
            });
            if let Some(w) = own {
                tracing::info!(
                    pr = w.pr.number,
                    label,
                    "main's change is tugboat's own merge, recorded after this cycle's labels were listed: no hold"
                );
                return Ok(true);
            }
        }
        // What the records say now, beside the hold: a hold that was tugboat's own doing can
        // be told from a person's change afterwards (the soak reads this line).
        let (svc, env) = (&cx.svc.name, &cx.env.name);
        let bad = self.labelled(super::watch::BAD, false).await?;
        let verifying = cx.watch().map_or(&[][..], |w| &w.verifying[..]);
        let records: Vec<String> = of(&bad, svc, env)
            .into_iter()
            .chain(of(verifying, svc, env))
            .map(|w| {
                format!(
                    "#{} {:?} merged {:?} {}",
                    w.pr.number,
                    w.pr.labels,
                    w.pr.merged_at,
                    w.state.target_text()
                )
            })
            .collect();
        tracing::warn!(
            deployed = %deployed,
            ?records,
            "main deploys what no verifying or deployed record of tugboat's names: holding"
        );
        Ok(false)
    }

    /// What Argo CD shows of the environment's application; `None` when it cannot be read
    /// (then nothing is concluded from it).
    async fn app_facts(&self, cx: &EnvCtx<'_>) -> Option<AppFacts> {
        match self.ports.deployer.app(cx.app, false).await {
            Ok(s) => Some(AppFacts {
                automated: s.automated,
                images: s.images,
                last_operation: s
                    .operation
                    .and_then(|o| Some((o.initiated_by, o.started_at?))),
            }),
            Err(e) => {
                tracing::debug!(error = %e, "application not read for the hold check");
                None
            }
        }
    }

    /// A hold seen for the first time: recorded in an issue and said on the open promotion
    /// PR (apply), or only shown (plan). `operation`: who started Argo CD's last operation,
    /// and when (as the rule read it).
    async fn new_hold(
        &self,
        cx: &EnvCtx<'_>,
        seen: &Seen,
        watch: &Watch,
        (cause, why): (Cause, String),
        operation: Option<(Option<String>, chrono::DateTime<chrono::Utc>)>,
    ) -> Result<Option<(Hold, Option<u64>, Action)>, StepError> {
        let mut hold = Hold {
            service: cx.svc.name.clone(),
            environment: cx.env.name.clone(),
            cause,
            by: None,
            commit: None,
            since: cx.now,
            deployed: seen.deployed.as_ref().map(ToString::to_string),
            detail: why,
            answered_through: 0,
        };
        if cause == Cause::ManualChange {
            let paths: Vec<String> = seen.files.iter().map(|(p, _)| p.clone()).collect();
            if let Some(c) = self.ports.repo.last_change(&paths).await.at(Step::Hold)? {
                hold.since = c.at;
                hold.by = Some(c.author.clone());
                // The summary is whatever the committer wrote: quoted inert.
                hold.detail = format!(
                    "{}: commit {} \"{}\"",
                    hold.detail,
                    short(&c.sha),
                    inert(&c.summary)
                );
                hold.commit = Some(c.sha);
            }
        }
        if cause == Cause::ArgoRollback
            && let Some((by, at)) = operation
        {
            hold.by = by;
            hold.since = at;
        }
        tracing::warn!(cause = cause.as_str(), by = ?hold.by, commit = ?hold.commit, detail = %hold.detail, "environment held: tugboat promotes nothing here until an approver comments /resume");
        if cx.mode == Mode::Plan {
            return Ok(Some((hold, None, Action::None)));
        }
        let issue = self.record_hold(&hold).await?;
        for w in watch.open_of(&cx.svc.name, &cx.env.name) {
            self.ports
                .forge
                .comment(
                    w.pr.number,
                    &format!(
                        "tugboat holds {} in {}: {}. It leaves this PR alone until an approver comments `/resume` on #{}.",
                        hold.service, hold.environment, hold.detail, issue.number
                    ),
                )
                .await
                .at(Step::Hold)?;
        }
        let action = Action::EnvironmentHeld {
            issue: issue.number,
            url: issue.url.clone(),
            cause,
        };
        Ok(Some((hold, Some(issue.number), action)))
    }

    /// Open the hold's issue: the system of record of the hold.
    pub(super) async fn record_hold(&self, hold: &Hold) -> Result<Issue, StepError> {
        let title = format!("tugboat holds {} in {}", hold.service, hold.environment);
        // Only a GitHub login (the commenter of `/hold`) is mentioned; a git author's name
        // or an Argo CD user is no GitHub account, and is quoted inert.
        let who = match (&hold.by, hold.cause) {
            (None, _) => String::new(),
            (Some(b), Cause::Command) => format!(" by @{b}"),
            (Some(b), _) => format!(" by {}", inert(b)),
        };
        let forgets = if hold.cause.forgets_record() {
            " tugboat then treats what the environment runs now as the starting point, and promotes the newest eligible image again (to keep an image out for good, comment `/rollback` on its promotion PR instead)."
        } else {
            ""
        };
        let text = format!(
            "tugboat holds **{}** in **{}** since {}{who}: {}.\n\n\
             While this issue is open, tugboat promotes nothing to this environment and leaves its promotion PRs alone; the other environments and services carry on.\n\n\
             To resume, an approver of {} comments `/resume` on this issue.{forgets}\n",
            hold.service,
            hold.environment,
            hold.since.format("%Y-%m-%d %H:%M UTC"),
            hold.detail,
            hold.environment,
        );
        self.ports
            .forge
            .open_issue(
                &title,
                &hold.write_into(&text),
                &Hold::labels(&hold.service, &hold.environment),
            )
            .await
            .at(Step::Hold)
    }

    /// An open hold: read its issue's commands; `None` when an approver resumed it.
    async fn still_held(
        &self,
        cx: &EnvCtx<'_>,
        watch: &Watch,
        h: &HoldIssue,
    ) -> Result<Option<(Hold, Option<u64>, Action)>, StepError> {
        if cx.mode == Mode::Plan {
            return Ok(Some((h.hold.clone(), Some(h.issue.number), Action::None)));
        }
        for dup in watch.duplicate_holds(&cx.svc.name, &cx.env.name) {
            let forge = &self.ports.forge;
            let note = format!(
                "A duplicate of #{}, which records this hold.",
                h.issue.number
            );
            forge
                .comment(dup.issue.number, &note)
                .await
                .at(Step::Hold)?;
            self.save_hold(&dup.issue, &dup.hold, false).await?;
        }
        let target = Target {
            number: h.issue.number,
            answered_through: h.hold.answered_through,
            subject: Subject::HoldIssue,
            head_sha: "",
            head_at: h.hold.since,
            digest: None,
            previous: None,
        };
        let commands = self.commands(cx, &target).await?;
        let resumed_by = commands
            .actions
            .iter()
            .find(|(_, a, _)| *a == chatops::Action::Resume)
            .map(|(u, _, _)| u.clone());
        let mut hold = h.hold.clone();
        hold.answered_through = commands.answered_through;
        if let Some(user) = resumed_by {
            self.lift(cx, watch, h, &hold, &user).await?;
            return Ok(None);
        }
        if hold.answered_through != h.hold.answered_through {
            self.save_hold(&h.issue, &hold, true).await?;
        }
        Ok(Some((hold, Some(h.issue.number), Action::None)))
    }

    /// Lift a hold: close its issue saying who resumed it, and (a change by hand) drop
    /// tugboat's record of its last promotion there, which no longer stands.
    pub(super) async fn lift(
        &self,
        cx: &EnvCtx<'_>,
        watch: &Watch,
        h: &HoldIssue,
        hold: &Hold,
        user: &str,
    ) -> Result<(), StepError> {
        let forge = &self.ports.forge;
        tracing::warn!(user = %user, issue = h.issue.number, cause = hold.cause.as_str(), "hold lifted");
        if hold.cause.forgets_record()
            && let Some(record) = watch.record_of(&cx.svc.name, &cx.env.name)
        {
            self.drop_record(record, Step::Hold).await?;
            forge
                .comment(
                    record.pr.number,
                    &format!(
                        "@{user} resumed {} in {} (#{}): this promotion is no longer what it runs.",
                        hold.service, hold.environment, h.issue.number
                    ),
                )
                .await
                .at(Step::Hold)?;
        }
        forge
            .comment(
                h.issue.number,
                &format!(
                    "@{user} resumed: tugboat promotes to {} again.",
                    hold.environment
                ),
            )
            .await
            .at(Step::Hold)?;
        let lifted = hold::Lifted {
            by: user.to_owned(),
            at: self.clock.now(),
        };
        let body = lifted.write_into(&hold.write_into(&h.issue.body));
        forge
            .update_issue(h.issue.number, &h.issue.title, &body, false)
            .await
            .at(Step::Hold)?;
        watch.lift(h.issue.number);
        Ok(())
    }

    /// Write `hold` into its issue's block, leaving the issue open or closing it.
    async fn save_hold(&self, issue: &Issue, hold: &Hold, open: bool) -> Result<(), StepError> {
        self.ports
            .forge
            .update_issue(
                issue.number,
                &issue.title,
                &hold.write_into(&issue.body),
                open,
            )
            .await
            .at(Step::Hold)
    }

    /// An approver's `/hold` on the merged promotion an environment runs: hold it now.
    pub(super) async fn hold_by_command(
        &self,
        cx: &EnvCtx<'_>,
        w: &Watched,
        user: &str,
    ) -> Result<(String, Option<Action>), StepError> {
        let watch = cx.watch();
        if let Some(h) = watch.and_then(|w| w.hold_of(&cx.svc.name, &cx.env.name)) {
            let reply = format!(
                "@{user} {} is held already: #{}.",
                cx.env.name, h.issue.number
            );
            return Ok((reply, None));
        }
        let hold = Hold {
            service: cx.svc.name.clone(),
            environment: cx.env.name.clone(),
            cause: Cause::Command,
            by: Some(user.to_owned()),
            commit: None,
            since: cx.now,
            deployed: Some(w.state.reference(&cx.svc.image).to_string()),
            detail: format!("@{user} asked for a hold on #{}", w.pr.number),
            answered_through: 0,
        };
        tracing::warn!(user = %user, pr = w.pr.number, "environment held by command");
        let issue = self.record_hold(&hold).await?;
        let reply = format!(
            "@{user} tugboat holds {} in {}: #{}. An approver comments `/resume` there (or here) to let it promote again.",
            cx.svc.name, cx.env.name, issue.number
        );
        let action = Action::EnvironmentHeld {
            issue: issue.number,
            url: issue.url,
            cause: Cause::Command,
        };
        Ok((reply, Some(action)))
    }

    /// Hold the environment whose merged promotion `w` runs a Rollout paused past its
    /// `pause_timeout` (`reason`): a person promotes or aborts the Rollout, then resumes;
    /// the promotion stays `verifying` and is verified again then.
    pub(super) async fn hold_paused(
        &self,
        cx: &EnvCtx<'_>,
        w: &Watched,
        reason: &str,
    ) -> Result<Action, StepError> {
        let detail = format!(
            "#{} is paused in Argo CD ({}). tugboat never rolls a paused Rollout back: promote it (`kubectl argo rollouts promote`) or abort it, then an approver comments `/resume` here and tugboat verifies #{} again (an aborted Rollout is Degraded: a failure, rolled back under `rollback: auto`; one still paused is held again)",
            w.pr.number,
            inert(reason),
            w.pr.number
        );
        self.hold_for(cx, w, Cause::PausedRollout, detail).await
    }

    /// Hold the environment for `cause` (its issue says `detail`, and that it deploys what
    /// `w` promoted), unless it is held already: one hold at a time.
    pub(super) async fn hold_for(
        &self,
        cx: &EnvCtx<'_>,
        w: &Watched,
        cause: Cause,
        detail: String,
    ) -> Result<Action, StepError> {
        if let Some(h) = cx
            .watch()
            .and_then(|watch| watch.hold_of(&cx.svc.name, &cx.env.name))
        {
            tracing::warn!(issue = h.issue.number, cause = cause.as_str(), why = %detail, "the environment is held already");
            return Ok(Action::None);
        }
        tracing::warn!(pr = w.pr.number, cause = cause.as_str(), why = %detail, "holding the environment");
        let hold = Hold {
            service: cx.svc.name.clone(),
            environment: cx.env.name.clone(),
            cause,
            by: None,
            commit: None,
            since: cx.now,
            deployed: Some(w.state.reference(&cx.svc.image).to_string()),
            detail,
            answered_through: 0,
        };
        let issue = self.record_hold(&hold).await?;
        Ok(Action::EnvironmentHeld {
            issue: issue.number,
            url: issue.url,
            cause,
        })
    }

    /// An approver's `/resume` on the merged promotion an environment runs.
    pub(super) async fn resume_by_command(
        &self,
        cx: &EnvCtx<'_>,
        user: &str,
    ) -> Result<String, StepError> {
        let Some(watch) = cx.watch() else {
            return Ok(format!("@{user} the holds could not be read; try again."));
        };
        let Some(h) = watch.hold_of(&cx.svc.name, &cx.env.name) else {
            return Ok(format!(
                "@{user} {} is not held; nothing to resume.",
                cx.env.name
            ));
        };
        self.lift(cx, watch, h, &h.hold, user).await?;
        Ok(format!(
            "@{user} resumed {} (#{}).",
            cx.env.name, h.issue.number
        ))
    }
}

/// A commit as people quote it.
fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}
