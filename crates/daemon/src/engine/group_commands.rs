//! Commands on a merged group PR. It is no one service's, so `/rollback`, `/unblock`,
//! `/hold` and `/resume` there name the service they are for (`/rollback billing`) and act
//! on that member alone, as they do on a single promotion; read in the group step, the one
//! writer of a group PR.

use std::sync::Arc;

use super::commands::Target;
use super::deploy::{BAD, DEPLOYED, MARKED_BAD, Watched};
use super::group::{Cycle, RowUpdate, context_for};
use super::{Action, At, Engine, Step, StepError};
use crate::domain::chatops::{self, Action as Command};
use crate::domain::group::{GroupState, Member, Outcome};

impl Engine {
    /// The commands on the merged group PR `w` (one of its deployed or bad members), with
    /// the rows of the members they changed.
    pub(super) async fn merged_group_commands(
        &self,
        w: &Watched,
        cycle: &Cycle<'_>,
    ) -> Result<Vec<RowUpdate>, StepError> {
        let Some(g) = &w.group else {
            return Ok(Vec::new());
        };
        // The approvers are the members' environments' (alike: the group merged under one rule).
        let Some(lead) = g.members.iter().find_map(|m| {
            context_for(self, &m.service, &g.environment, cycle.seats, cycle.watch).ok()
        }) else {
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
        let mut rows = Vec::new();
        for (user, action, service) in &commands.actions {
            let named = service.as_deref().and_then(|s| g.member(s));
            let Some(member) = named else {
                self.name_the_service(w, g, user, *action).await?;
                continue;
            };
            if let Some(row) = self
                .carry_out_member(w, g, member, user, *action, cycle)
                .await?
            {
                rows.push(row);
            }
        }
        if commands.answered_through > g.answered_through {
            let through = commands.answered_through;
            self.update_group(w.pr.number, Step::Commands, &[], |s| {
                s.answered_through = through;
            })
            .await?;
        }
        Ok(rows)
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

    /// Carry out an accepted command for one member; its row when the environment changed.
    async fn carry_out_member(
        &self,
        w: &Watched,
        g: &Arc<GroupState>,
        member: &Member,
        user: &str,
        action: Command,
        cycle: &Cycle<'_>,
    ) -> Result<Option<RowUpdate>, StepError> {
        let cx = context_for(
            self,
            &member.service,
            &g.environment,
            cycle.seats,
            cycle.watch,
        )?;
        let mw = Watched {
            pr: w.pr.clone(),
            state: g.promotion(member),
            group: Some(Arc::clone(g)),
        };
        let svc = &member.service;
        let row = |action| Some(RowUpdate::of(svc, &g.environment, action));
        let reply = match action {
            Command::Rollback if member.outcome == Some(Outcome::Bad) => format!(
                "@{user} `{svc}` is already marked bad; tugboat rolls it back while {} still deploys it.",
                g.environment
            ),
            Command::Rollback if !member.deployed() => format!(
                "@{user} `/rollback {svc}`: not done: a later promotion replaced it; roll back what {} runs now.",
                g.environment
            ),
            Command::Rollback if member.from.is_none() => format!(
                "@{user} `/rollback {svc}`: not done: it recorded no earlier image to go back to; revert it with a pull request."
            ),
            Command::Rollback => {
                tracing::warn!(user = %user, service = %svc, "rollback of a group member requested");
                self.mark_member_bad(w, member, user).await?;
                let action = self
                    .rollback(&cx, &mw)
                    .await
                    .unwrap_or_else(|error| Action::Failed { error });
                return Ok(row(action));
            }
            Command::Unblock if member.outcome == Some(Outcome::Bad) => {
                self.update_group(w.pr.number, Step::Commands, &[], |s| {
                    s.record(&[(svc, Outcome::Superseded)]);
                })
                .await?;
                tracing::warn!(user = %user, service = %svc, "bad mark of a group member cleared");
                format!(
                    "@{user} cleared `{svc}`'s bad mark: tugboat may promote `{}` (`{}`) again.",
                    mw.state.tag_text(),
                    mw.state.digest_text()
                )
            }
            Command::Unblock => format!("@{user} `{svc}` is not marked bad; nothing to unblock."),
            Command::HoldEnvironment => {
                let (reply, held) = self.hold_by_command(&cx, &mw, user).await?;
                self.ports
                    .forge
                    .comment(w.pr.number, &reply)
                    .await
                    .at(Step::Commands)?;
                return Ok(held.and_then(row));
            }
            Command::Resume => self.resume_by_command(&cx, user).await?,
            Command::Rescan => return Ok(None),
        };
        self.ports
            .forge
            .comment(w.pr.number, &reply)
            .await
            .at(Step::Commands)?;
        Ok(None)
    }

    /// Mark one member bad (its image is never promoted again until `/unblock`), saying so.
    async fn mark_member_bad(
        &self,
        w: &Watched,
        member: &Member,
        user: &str,
    ) -> Result<(), StepError> {
        let svc = member.service.clone();
        self.update_group(w.pr.number, Step::Settle, &[BAD], |s| {
            s.record(&[(&svc, Outcome::Bad)]);
        })
        .await?;
        let back = member
            .from
            .as_ref()
            .map_or_else(String::new, |f| format!(" back to `{f}`"));
        let text = format!(
            "{MARKED_BAD} @{user} asked for a rollback of `{svc}`. tugboat rolls it{back}, alone; the group's other services stay. It will not promote `{}` to any environment again until an approver comments `/unblock {svc}` here.",
            member
                .digest
                .as_ref()
                .map_or_else(String::new, ToString::to_string)
        );
        self.ports
            .forge
            .comment(w.pr.number, &text)
            .await
            .at(Step::Settle)
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
