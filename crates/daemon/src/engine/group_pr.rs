//! A group's PR: its members' bytes edited onto the group's branch, what it says (every
//! member's evidence collapsed, the members in its block, one gate check), and its way
//! through the [`pipeline`] to the merge and through [`landed`] after it, as any
//! promotion's. Which services ride is `group`'s.
//!
//! [`pipeline`]: super::pipeline
//! [`landed`]: super::landed

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::commands::Commands;
use super::context::{Rider, Seat};
use super::evidence;
use super::landed::Row;
use super::pipeline::{Merge, Promoted, Promotion, Reached, Record};
use super::pr::Change;
use super::promote;
use super::verified::{Landed, Landing};
use super::watch::{VERIFYING, Watch, merged_now};
use super::{Action, At, Cause, Engine, EnvCtx, Mode, Step, StepError};
use crate::config::{EnvConfig, ServiceConfig};
use crate::domain::group::{GroupState, Member};
use crate::domain::promotion;
use crate::ports::PullRequest;

/// A group: its environment and name.
pub(super) type Key = (String, String);

/// A formed group: its key, its members in their order, and what the cycle read.
pub(super) struct Group<'a> {
    pub key: &'a Key,
    pub members: &'a [&'a Rider],
    pub seats: &'a HashMap<String, Arc<Seat>>,
    pub watch: &'a Watch,
}

impl Group<'_> {
    fn lead(&self) -> &Rider {
        self.members[0]
    }
}

impl Engine {
    /// Open or update the group's PR, then merge it once the merge rule allows, and verify
    /// and settle every member.
    pub(super) async fn promote_group(
        &self,
        g: &Group<'_>,
        existing: Option<PullRequest>,
    ) -> Result<Vec<Row>, StepError> {
        let change = self.group_change(g).await?;
        let contexts = g
            .members
            .iter()
            .map(|r| context_for(self, &r.service, &r.environment, g.seats, g.watch))
            .collect::<Result<Vec<_>, _>>()?;
        let record = GroupRecord {
            g,
            lead: &contexts[0],
        };
        let p = Promotion {
            change,
            members: contexts
                .iter()
                .zip(g.members)
                .map(|(cx, r)| Promoted {
                    cx,
                    candidate: &r.candidate,
                })
                .collect(),
            record: &record,
        };
        let m = match self.advance(&p, existing).await? {
            Reached::Stopped(action) => return Ok(all_rows(g, &action)),
            Reached::Mergeable(m) => m,
        };
        let state = record.state(m.commands.answered_through);
        let (pr, sha, at) = match self.merge(&p, m).await? {
            Merge::Stopped(action) => return Ok(all_rows(g, &action)),
            Merge::Merged { pr, sha, at } => (pr, sha, at),
        };
        let labelled = merged_now(&pr, at);
        let m = Landing {
            pr: &labelled,
            sha: &sha,
            at,
        };
        let (env, seats, watch) = (&g.key.0, g.seats, g.watch);
        let context = |service: &str| context_for(self, service, env, seats, watch);
        self.land(&m, Landed::group(state), &context).await
    }

    /// Every member's bytes set on main's files with the same editor as a single promotion.
    async fn group_change(&self, g: &Group<'_>) -> Result<Change, StepError> {
        self.ports.repo.sync().await.at(Step::Propose)?;
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        let mut lines = Vec::new();
        for r in g.members {
            let (svc, env) = self.service_env(&r.service, &r.environment)?;
            for path in &env.files {
                let text = match files.get(path) {
                    Some(t) => t.clone(),
                    None => self
                        .ports
                        .repo
                        .read(path)
                        .await
                        .at(Step::Read)?
                        .ok_or_else(|| {
                            StepError::new(Step::Read, Cause::MissingFile { path: path.clone() })
                        })?,
                };
                let edited =
                    promote::set_image(path, &text, &svc.image, &r.candidate, r.pin_digest)?;
                files.insert(path.clone(), edited);
            }
            let from = r
                .from
                .as_ref()
                .and_then(|d| d.tag.as_ref())
                .map_or("(none)".to_owned(), ToString::to_string);
            lines.push(format!(
                "{} {from} -> {}@{}",
                svc.image, r.candidate.tag, r.candidate.digest
            ));
        }
        let (env, name) = g.key;
        let title = evidence::group_title(name, env, g.members.len());
        Ok(Change {
            branch: evidence::group_branch(name, env),
            message: format!("{title}\n\n{}\n", lines.join("\n")),
            title,
            files: files.into_iter().collect(),
        })
    }

    /// The configured service and environment of a rider.
    fn service_env(
        &self,
        service: &str,
        env: &str,
    ) -> Result<(&ServiceConfig, &EnvConfig), StepError> {
        self.cfg
            .services
            .iter()
            .find(|s| s.name == service)
            .and_then(|s| Some((s, s.environments.iter().find(|e| e.name == env)?)))
            .ok_or_else(|| {
                let cause = Cause::NotConfigured {
                    service: service.to_owned(),
                    environment: env.to_owned(),
                };
                StepError::new(Step::Policy, cause)
            })
    }
}

/// What a group's PR says: its members, their evidence, and its state block.
struct GroupRecord<'a> {
    g: &'a Group<'a>,
    /// The lead's context: its environment's policy merges the group.
    lead: &'a EnvCtx<'a>,
}

impl GroupRecord<'_> {
    /// The group's block as first written, with its commands answered through `answered`.
    fn state(&self, answered: u64) -> GroupState {
        GroupState {
            group: self.g.key.1.clone(),
            environment: self.g.key.0.clone(),
            answered_through: answered,
            members: self.g.members.iter().map(|r| member_of(r)).collect(),
        }
    }
}

impl Record for GroupRecord<'_> {
    fn answered_through(&self, body: &str) -> u64 {
        promotion::through(
            GroupState::parse(body).ok().map(|s| s.answered_through),
            body,
        )
    }

    fn write(&self, commands: &Commands) -> (String, (String, String)) {
        let state = self.state(commands.answered_through);
        let body = state.write_into(&group_body(self.g, self.lead, commands));
        (body, group_gate(self.g))
    }

    fn labels(&self) -> Vec<String> {
        let (env, name) = self.g.key;
        let mut labels = vec![
            "tugboat".to_owned(),
            format!("env:{env}"),
            format!("group:{name}"),
        ];
        if self.lead.env_policy.auto_merge {
            labels.push(VERIFYING.to_owned());
        }
        labels
    }

    fn rebased(&self, _: &PullRequest) -> &'static str {
        "its members or their tags changed, or main changed the files it edits"
    }
}

/// A member as the group's block first records it.
fn member_of(r: &Rider) -> Member {
    Member {
        service: r.service.clone(),
        tag: Some(r.candidate.tag.clone()),
        digest: Some(r.candidate.digest.clone()),
        from: r.from.clone(),
        outcome: None,
        auto_sync: None,
    }
}

/// The group PR's body: the members, their evidence, the group's merge rule.
fn group_body(g: &Group<'_>, lead: &EnvCtx<'_>, commands: &Commands) -> String {
    let lines: Vec<evidence::GroupLine<'_>> = g
        .members
        .iter()
        .map(|r| evidence::GroupLine {
            service: &r.service,
            from: r.from.as_ref(),
            to: &r.candidate,
            gate: &r.gate,
            section: &r.section,
        })
        .collect();
    let next = evidence::Evidence {
        service: &g.key.1,
        environment: &g.key.0,
        image: "",
        from: g.lead().from.as_ref(),
        to: &g.lead().candidate,
        gate: &crate::domain::gate::GateDecision::Wait {
            reason: String::new(),
        },
        findings: &[],
        signature: None,
        policy: lead.env_policy,
        sources: &[],
        files: &[],
        approvals: &commands.approvals,
        held_by: commands.held_by.as_deref(),
        answered_through: commands.answered_through,
    };
    evidence::group_body(&g.key.1, &g.key.0, &lines, &next)
}

/// The gate's check on the group's head: every member's result.
fn group_gate(g: &Group<'_>) -> (String, String) {
    let mut summary = String::from("| service | tag | digest | scan gate |\n|---|---|---|---|\n");
    for r in g.members {
        summary.push_str(&format!(
            "| `{}` | `{}` | `{}` | {} |\n",
            r.service, r.candidate.tag, r.candidate.digest, r.gate
        ));
    }
    summary.push_str("\nRe-run this check to scan the images again (as `/rescan` does).");
    (
        format!("scan gate passed for {} service(s)", g.members.len()),
        summary,
    )
}

/// A step context for `service` in `environment`, from what the cycle read of the service
/// (no upstream: the group step acts on what its members' steps chose).
pub(super) fn context_for<'a>(
    engine: &'a Engine,
    service: &str,
    environment: &str,
    seats: &'a HashMap<String, Arc<Seat>>,
    watch: &'a Watch,
) -> Result<EnvCtx<'a>, StepError> {
    let (svc, env) = engine.service_env(service, environment)?;
    let no_policy = || {
        StepError::new(
            Step::Policy,
            Cause::NoEnvironmentPolicy(environment.to_owned()),
        )
    };
    let seat = seats.get(service).ok_or_else(no_policy)?;
    let env_policy = seat
        .policy
        .environments
        .get(environment)
        .ok_or_else(no_policy)?;
    Ok(EnvCtx {
        svc,
        env,
        policy: &seat.policy,
        env_policy,
        app: super::app_name(env, &seat.policy),
        mode: Mode::Apply,
        now: engine.clock.now(),
        images: &seat.images,
        watch: Ok(watch),
        upstream: None,
        gathered: None,
    })
}

/// Every member's row, the same.
fn all_rows(g: &Group<'_>, action: &Action) -> Vec<Row> {
    g.members
        .iter()
        .map(|r| (r.service.clone(), action.clone()))
        .collect()
}
