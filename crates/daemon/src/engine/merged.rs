//! The merged promotions an environment looks after first, each cycle (`aftercare`): an
//! interrupted verification finished, the commands on them carried out, and a bad digest
//! the environment still deploys rolled back.
//!
//! Commands on a merged promotion PR: `/rollback` marks its image bad (the rollback
//! follows), `/unblock` clears the mark, `/hold` and `/resume` hold the environment or lift
//! its hold. A group PR is no one service's, so a command there names the member it is for
//! (`/rollback billing`) and acts on that member alone, in the same way as on a promotion
//! of one service. A group PR's block is written here and by the group step, one write at a
//! time ([`Engine::update_group`]).

use std::sync::Arc;

use super::commands::Target;
use super::evidence::PromotionState;
use super::records::MARKED_BAD;
use super::watch::{BAD, Watch, Watched};
use super::watch::{deploys, of};
use super::{Action, At, Engine, EnvCtx, Step, StepError};
use crate::domain::chatops::{self, Action as Command};
use crate::domain::group::{GroupState, Member, Outcome};
use crate::domain::image::ImageRef;

/// What a command on a merged promotion did, beyond its answer.
pub(super) enum Carried {
    Nothing,
    /// `/rollback`: the promotion is marked bad now (its rollback follows).
    MarkedBad,
    /// `/hold`: the environment is held now.
    Held(Action),
}

impl Engine {
    /// Merged promotions of this environment come first: finish an interrupted verification,
    /// carry out `/rollback` and `/unblock`, roll back a bad digest the environment still
    /// deploys. `Some(action)` ends the environment's step for this cycle.
    pub(super) async fn aftercare(
        &self,
        cx: &EnvCtx<'_>,
        deployed: Option<&ImageRef>,
        watch: &Watch,
    ) -> Option<Action> {
        let (svc, env) = (&cx.svc.name, &cx.env.name);
        for w in of(&watch.verifying, svc, env) {
            tracing::Span::current().record("pr", w.pr.number);
            if w.group.is_some() {
                // The group step merges an open group PR and verifies a merged one: until it
                // has, main deploys what no record says yet, so nothing else happens here.
                if w.pr.merged_at.is_some() {
                    return Some(Action::None);
                }
                continue;
            }
            match self.resume(w, &|_: &str| Ok(*cx)).await {
                Ok(rows) => {
                    if let Some((_, action)) = rows.into_iter().next() {
                        return Some(action);
                    }
                }
                Err(error) => return Some(Action::Failed { error }),
            }
        }
        let deployed_prs = of(&watch.deployed, svc, env);
        let bad_prs = of(&watch.bad, svc, env);
        let mut newly_bad = Vec::new();
        let mut held = None;
        // Commands on a merged group PR name their service; the group step reads them.
        let singles = deployed_prs.iter().chain(bad_prs.iter());
        for w in singles.filter(|w| w.group.is_none()) {
            let is_bad = bad_prs.iter().any(|b| b.pr.number == w.pr.number);
            match self.merged_commands(cx, w, is_bad).await {
                Ok(Carried::MarkedBad) => newly_bad.push((*w).clone()),
                Ok(Carried::Held(action)) => held = Some(action),
                Ok(Carried::Nothing) => {}
                Err(error) => return Some(Action::Failed { error }),
            }
        }
        if held.is_some() {
            return held; // an approver's `/hold`: nothing more this cycle
        }
        for w in bad_prs.into_iter().chain(newly_bad.iter()) {
            // Without an earlier image there is nothing to go back to; the report said so.
            if deploys(deployed, &w.state) && w.state.from.is_some() {
                tracing::Span::current().record("pr", w.pr.number);
                return Some(
                    self.rollback(cx, w)
                        .await
                        .unwrap_or_else(|error| Action::Failed { error }),
                );
            }
        }
        None
    }

    /// Read the commands on a merged promotion PR: `/rollback` marks its digest bad (the
    /// rollback follows), `/unblock` clears a bad mark, `/hold` and `/resume` hold the
    /// environment or lift its hold.
    pub(super) async fn merged_commands(
        &self,
        cx: &EnvCtx<'_>,
        w: &Watched,
        is_bad: bool,
    ) -> Result<Carried, StepError> {
        let Some(digest) = w.state.digest.clone() else {
            return Ok(Carried::Nothing);
        };
        let target = Target {
            number: w.pr.number,
            answered_through: w.state.answered_through,
            subject: chatops::Subject::Merged,
            head_sha: "",
            head_at: w.pr.merged_at.unwrap_or_default(),
            digest: Some(&digest),
            previous: None,
        };
        let commands = self.commands(cx, &target).await?;
        let mut carried = Carried::Nothing;
        for (user, action, _) in &commands.actions {
            match self.carry_out(cx, w, user, *action, is_bad).await? {
                Carried::Nothing => {}
                c => carried = c,
            }
        }
        if commands.answered_through > w.state.answered_through {
            let state = PromotionState {
                answered_through: commands.answered_through,
                ..w.state.clone()
            };
            self.ports
                .forge
                .update_pr(w.pr.number, &w.pr.title, &state.write_into(&w.pr.body))
                .await
                .at(Step::Commands)?;
        }
        Ok(carried)
    }

    /// The commands on the merged group PR `w`, each carried out for the member it names
    /// (`context`: a member's step context); the members whose environment changed, and how.
    pub(super) async fn merged_group_commands<'c>(
        &self,
        w: &Watched,
        context: impl Fn(&str) -> Result<EnvCtx<'c>, StepError> + Sync,
    ) -> Result<Vec<(String, Action)>, StepError> {
        let Some(g) = &w.group else {
            return Ok(Vec::new());
        };
        // The approvers are the members' environments' (alike: the group merged under one rule).
        let Some(lead) = g.members.iter().find_map(|m| context(&m.service).ok()) else {
            return Ok(Vec::new());
        };
        let target = Target {
            number: w.pr.number,
            answered_through: g.answered_through,
            subject: chatops::Subject::Merged,
            head_sha: "",
            head_at: w.pr.merged_at.unwrap_or_default(),
            digest: None,
            previous: None,
        };
        let commands = self.commands(&lead, &target).await?;
        let mut changed = Vec::new();
        for (user, action, service) in &commands.actions {
            let Some(member) = service.as_deref().and_then(|s| g.member(s)) else {
                self.name_the_service(w, g, user, *action).await?;
                continue;
            };
            let cx = context(&member.service)?;
            let mw = Watched {
                pr: w.pr.clone(),
                state: g.promotion(member),
                group: Some(Arc::clone(g)),
            };
            let is_bad = member.outcome == Some(Outcome::Bad);
            let action = match self.carry_out(&cx, &mw, user, *action, is_bad).await? {
                Carried::Nothing => continue,
                Carried::Held(action) => action,
                // A member's rollback follows at once: the group step is its one writer.
                Carried::MarkedBad => self
                    .rollback(&cx, &mw)
                    .await
                    .unwrap_or_else(|error| Action::Failed { error }),
            };
            changed.push((member.service.clone(), action));
        }
        if commands.answered_through > g.answered_through {
            let through = commands.answered_through;
            self.update_group(w.pr.number, Step::Commands, &[], |s| {
                s.answered_through = through;
            })
            .await?;
        }
        Ok(changed)
    }

    /// Carry out an accepted command on a merged promotion, or on one member of a merged
    /// group PR (`w` is then that member's).
    async fn carry_out(
        &self,
        cx: &EnvCtx<'_>,
        w: &Watched,
        user: &str,
        action: Command,
        is_bad: bool,
    ) -> Result<Carried, StepError> {
        let n = w.pr.number;
        let env = &w.state.environment;
        let (it, named) = match &w.group {
            Some(_) => (
                format!("`{}`", w.state.service),
                format!(" {}", w.state.service),
            ),
            None => ("this promotion".to_owned(), String::new()),
        };
        let reply = match action {
            Command::Rollback if is_bad => format!(
                "@{user} {it} is already marked bad; tugboat rolls it back while {env} still deploys it."
            ),
            Command::Rollback if !standing(w) => format!(
                "@{user} `/rollback{named}`: not done: a later promotion replaced it; roll back what {env} runs now."
            ),
            Command::Rollback if w.state.from.is_none() => format!(
                "@{user} `/rollback{named}`: not done: {it} recorded no earlier image to go back to; revert it with a pull request."
            ),
            Command::Rollback => {
                tracing::warn!(user = %user, service = %w.state.service, "rollback requested");
                self.mark(w, user).await?;
                return Ok(Carried::MarkedBad);
            }
            Command::Unblock if is_bad => {
                self.unblock(w).await?;
                tracing::warn!(user = %user, service = %w.state.service, digest = %w.state.digest_text(), "bad mark cleared");
                format!(
                    "@{user} cleared {it}'s bad mark: tugboat may promote `{}` (`{}`) again.",
                    w.state.tag_text(),
                    w.state.digest_text()
                )
            }
            Command::Unblock => format!("@{user} {it} is not marked bad; nothing to unblock."),
            Command::HoldEnvironment => {
                let (reply, held) = self.hold_by_command(cx, w, user).await?;
                self.ports
                    .forge
                    .comment(n, &reply)
                    .await
                    .at(Step::Commands)?;
                return Ok(held.map_or(Carried::Nothing, Carried::Held));
            }
            Command::Resume => self.resume_by_command(cx, user).await?,
            Command::Rescan => return Ok(Carried::Nothing),
        };
        self.ports
            .forge
            .comment(n, &reply)
            .await
            .at(Step::Commands)?;
        Ok(Carried::Nothing)
    }

    /// Mark `w`'s image bad at `user`'s `/rollback`: a promotion's PR, or one member of a
    /// group's (the others stay), saying so.
    async fn mark(&self, w: &Watched, user: &str) -> Result<(), StepError> {
        if w.group.is_none() {
            return self
                .mark_bad(w, &format!("@{user} asked for a rollback"))
                .await;
        }
        let svc = w.state.service.clone();
        self.update_group(w.pr.number, Step::Settle, &[BAD], |s| {
            s.record(&[(&svc, Outcome::Bad)]);
        })
        .await?;
        let back = w
            .state
            .from
            .as_ref()
            .map_or_else(String::new, |f| format!(" back to `{f}`"));
        let text = format!(
            "{MARKED_BAD} @{user} asked for a rollback of `{svc}`. tugboat rolls it{back}, alone; the group's other services stay. It will not promote `{}` to any environment again until an approver comments `/unblock {svc}` here.",
            w.state.digest_text()
        );
        self.ports
            .forge
            .comment(w.pr.number, &text)
            .await
            .at(Step::Settle)
    }

    /// Clear `w`'s bad mark: its PR's label, or (a group member) its outcome.
    async fn unblock(&self, w: &Watched) -> Result<(), StepError> {
        if w.group.is_none() {
            return self
                .ports
                .forge
                .remove_label(w.pr.number, BAD)
                .await
                .at(Step::Commands);
        }
        let svc = &w.state.service;
        self.update_group(w.pr.number, Step::Commands, &[], |s| {
            s.record(&[(svc, Outcome::Superseded)]);
        })
        .await
    }

    /// A command on a group PR that names no member: say how to name one.
    async fn name_the_service(
        &self,
        w: &Watched,
        g: &GroupState,
        user: &str,
        action: Command,
    ) -> Result<(), StepError> {
        if action == Command::Rescan {
            return Ok(()); // a merged PR's images are rescanned by the weekly rescan
        }
        let word = match action {
            Command::Rollback => "rollback",
            Command::Unblock => "unblock",
            Command::HoldEnvironment => "hold",
            _ => "resume",
        };
        let members: Vec<String> = g
            .members
            .iter()
            .map(|m| format!("`{}`", m.service))
            .collect();
        let text = format!(
            "@{user} `/{word}`: not done: on a group PR, name the service it is for (`/{word} <service>`), one of {}.",
            members.join(", ")
        );
        self.ports
            .forge
            .comment(w.pr.number, &text)
            .await
            .at(Step::Commands)
    }
}

/// Whether `w` is what its environment runs by tugboat's record: a promotion PR read as
/// deployed (or bad) is; a group member is while Healthy or left to a person.
fn standing(w: &Watched) -> bool {
    w.group
        .as_ref()
        .is_none_or(|g| g.member(&w.state.service).is_some_and(Member::deployed))
}
