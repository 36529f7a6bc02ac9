//! Grouped promotions (`domain::group` is the rule): an environment with a `group` promotes
//! the services that become ready within its window in one PR, on one branch per group and
//! environment.
//!
//! Each service's step observes, chooses and judges as usual, then leaves a [`Rider`] in
//! the cycle's [`Gathered`] instead of promoting. After every service, the group step of
//! each (environment, group):
//! - finishes the verification of a merged group PR that a stop interrupted;
//! - forms the group from the riders and the open PR's members (a held, refused or bad
//!   service is no rider, so it leaves without holding the others back);
//! - writes every member's bytes onto the group's branch with the same editor, and opens or
//!   updates the one PR (each member's evidence collapsed, the members in its block);
//! - applies the merge rule once, with the ChatOps rules of any PR (approvers, approvals
//!   bound to the head, `/hold`); the members' environments must merge alike;
//! - merges, verifies every member's Argo CD application at once, and settles every
//!   outcome in one write;
//! - rolls back each member that failed on its own, through the single-service rollback,
//!   which reverts only that service's lines.
//!
//! A group's PR is written only here and by [`Engine::supersede`], one write at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::commands::Commands;
use super::context::{Gathered, Rider, Seat};
use super::evidence;
use super::pipeline::{Merge, Promoted, Promotion, Reached, Record};
use super::pr::Change;
use super::promote;
use super::verified::{Landed, Landing};
use super::watch::{VERIFYING, Watch, Watched, merged_now};
use super::{Action, At, Cause, Engine, EnvCtx, Mode, Step, StepError};
use crate::config::{EnvConfig, ServiceConfig};
use crate::domain::group::{self, Formation, GroupState, Member, Ready};
use crate::domain::plan::Decision;
use crate::domain::promotion;
use crate::ports::PullRequest;

/// What the group step did for one service's row.
pub(in crate::engine) struct RowUpdate {
    pub service: String,
    pub environment: String,
    /// A new decision (`None`: the service step's stands).
    pub decision: Option<Decision>,
    pub action: Action,
}

impl RowUpdate {
    pub(super) fn of(service: &str, environment: &str, action: Action) -> Self {
        Self {
            service: service.to_owned(),
            environment: environment.to_owned(),
            decision: None,
            action,
        }
    }

    fn waiting(r: &Rider, reason: String) -> Self {
        Self {
            decision: Some(Decision::Waiting {
                candidate: Some(r.candidate.clone()),
                reason,
            }),
            ..Self::of(&r.service, &r.environment, Action::None)
        }
    }
}

/// A group: its environment and name.
type Key = (String, String);

/// What the cycle read, for every group's step.
pub(super) struct Cycle<'a> {
    pub seats: &'a HashMap<String, Arc<Seat>>,
    pub watch: &'a Watch,
    pub failed: &'a BTreeSet<(String, String)>,
    pub now: DateTime<Utc>,
}

impl Engine {
    /// Every group's step, after the services' steps of a full cycle (`failed`: the
    /// services and environments whose step failed in it).
    pub(super) async fn groups(
        &self,
        gathered: Gathered,
        watch: Result<&Watch, &StepError>,
        failed: &BTreeSet<(String, String)>,
        now: DateTime<Utc>,
    ) -> Vec<RowUpdate> {
        let Ok(watch) = watch else {
            return Vec::new(); // no service chose a candidate without the labels either
        };
        let seats = gathered.seats.into_inner().unwrap_or_default();
        let mut riders: BTreeMap<Key, Vec<Rider>> = BTreeMap::new();
        for r in gathered.riders.into_inner().unwrap_or_default() {
            riders
                .entry((r.environment.clone(), r.rule.name.clone()))
                .or_default()
                .push(r);
        }
        for w in watch.groups().into_iter().chain(watch.merged_groups()) {
            if let Some(g) = &w.group {
                riders
                    .entry((g.environment.clone(), g.group.clone()))
                    .or_default();
            }
        }
        let cycle = Cycle {
            seats: &seats,
            watch,
            failed,
            now,
        };
        let mut rows = Vec::new();
        for (key, riders) in riders {
            rows.extend(self.group(&key, riders, &cycle).await);
        }
        rows
    }

    /// One group's step: commands on its merged PRs, a stopped verification finished, then
    /// its open PR formed and promoted.
    async fn group(&self, key: &Key, riders: Vec<Rider>, cycle: &Cycle<'_>) -> Vec<RowUpdate> {
        let watch = cycle.watch;
        let mut rows = Vec::new();
        for w in watch
            .merged_groups()
            .into_iter()
            .filter(|w| in_group(w, key))
        {
            let (env, seats) = (&key.0, cycle.seats);
            let context = |service: &str| context_for(self, service, env, seats, watch);
            match self.merged_group_commands(w, context).await {
                Ok(changed) => rows.extend(
                    changed
                        .into_iter()
                        .map(|(service, action)| RowUpdate::of(&service, env, action)),
                ),
                Err(e) => {
                    tracing::warn!(pr = w.pr.number, error = %e, "could not read the commands on a merged group PR")
                }
            }
        }
        let mut open = false;
        for w in watch.groups().into_iter().filter(|w| in_group(w, key)) {
            if w.pr.merged_at.is_some() || !w.pr.open {
                let (env, seats) = (&key.0, cycle.seats);
                let context = |service: &str| context_for(self, service, env, seats, watch);
                rows.extend(match self.resume(w, &context).await {
                    Ok(done) => done
                        .into_iter()
                        .map(|(service, action)| RowUpdate::of(&service, env, action))
                        .collect(),
                    Err(error) => failed_members(w.group.as_deref(), &error),
                });
            }
            open |= w.pr.open;
        }
        if !riders.is_empty() || open {
            rows.extend(self.ride(key, riders, cycle).await);
        }
        rows
    }

    /// Form the group and promote its members together. A member of the open PR whose
    /// step failed this cycle keeps the PR as it is (rewriting it without that member would
    /// void its approvals, or close it, over a passing error).
    async fn ride(&self, key: &Key, riders: Vec<Rider>, cycle: &Cycle<'_>) -> Vec<RowUpdate> {
        let (seats, watch, now) = (cycle.seats, cycle.watch, cycle.now);
        let (env, name) = key;
        let branch = evidence::group_branch(name, env);
        let existing = match self.ports.forge.find_open_pr(&branch).await {
            Ok(pr) => pr,
            Err(e) => {
                let error = StepError::new(Step::PullRequest, e);
                return riders.iter().map(|r| failed(r, &error)).collect();
            }
        };
        let riding: Vec<String> = existing
            .as_ref()
            .and_then(|pr| GroupState::parse(&pr.body).ok())
            .map(|s| s.members.into_iter().map(|m| m.service).collect())
            .unwrap_or_default();
        if let Some(rows) = stalled(key, &riders, &riding, cycle.failed) {
            return rows;
        }
        let (riders, mut rows) = agreeing(riders, &riding);
        let Some(rule) = riders.first().map(|r| r.rule.clone()) else {
            if let Some(pr) = existing {
                self.close_empty(&pr).await;
            }
            return rows;
        };
        let ready: Vec<Ready> = riders
            .iter()
            .map(|r| Ready {
                service: r.service.clone(),
                since: r.since,
            })
            .collect();
        match group::form(&rule, &ready, &riding, now) {
            Formation::Empty => {}
            Formation::Gathering { members, closes } => {
                let why = format!(
                    "gathering group `{name}` in {env} ({} ready) until {}",
                    members.len(),
                    closes.format("%H:%M:%S UTC")
                );
                rows.extend(riders.iter().map(|r| RowUpdate::waiting(r, why.clone())));
            }
            Formation::Ride { members, next } => {
                let later = format!(
                    "rides in group `{name}`'s next PR: this one is full ({} services)",
                    rule.max
                );
                rows.extend(
                    riders
                        .iter()
                        .filter(|r| next.contains(&r.service))
                        .map(|r| RowUpdate::waiting(r, later.clone())),
                );
                let seated: Vec<&Rider> = members
                    .iter()
                    .filter_map(|m| riders.iter().find(|r| &r.service == m))
                    .collect();
                let group = Group {
                    key,
                    members: &seated,
                    seats,
                    watch,
                };
                rows.extend(match self.promote_group(&group, existing).await {
                    Ok(r) => r,
                    Err(error) => seated.iter().map(|r| failed(r, &error)).collect(),
                });
            }
        }
        rows
    }

    /// A group PR none of whose services is ready any more: closed, saying why.
    async fn close_empty(&self, pr: &PullRequest) {
        let why = "Closed: none of this group's services is ready to promote now (each was held, refused by the scan gate, marked bad, or is deployed already). A new group PR opens when one is.";
        match self.ports.forge.close_pr(pr.number, why).await {
            Ok(()) => tracing::info!(pr = pr.number, "closed a group PR left without members"),
            Err(e) => {
                tracing::warn!(pr = pr.number, error = %e, "could not close an empty group PR")
            }
        }
    }
}

/// A formed group: its key, its members in their order, and what the cycle read.
struct Group<'a> {
    key: &'a Key,
    members: &'a [&'a Rider],
    seats: &'a HashMap<String, Arc<Seat>>,
    watch: &'a Watch,
}

impl Group<'_> {
    fn lead(&self) -> &Rider {
        self.members[0]
    }
}

impl Engine {
    /// Open or update the group's PR, then merge it once the merge rule allows, and verify
    /// and settle every member.
    async fn promote_group(
        &self,
        g: &Group<'_>,
        existing: Option<PullRequest>,
    ) -> Result<Vec<RowUpdate>, StepError> {
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
        let rows = self.land(&m, Landed::group(state), &context).await?;
        Ok(rows
            .into_iter()
            .map(|(service, action)| RowUpdate::of(&service, env, action))
            .collect())
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

/// When a member of the open PR (`riding`) is no rider because its step failed this cycle:
/// every rider's row saying the PR waits (it is left as it is).
fn stalled(
    (env, name): &Key,
    riders: &[Rider],
    riding: &[String],
    failed: &BTreeSet<(String, String)>,
) -> Option<Vec<RowUpdate>> {
    let stalled: Vec<String> = riding
        .iter()
        .filter(|s| !riders.iter().any(|r| &r.service == *s))
        .filter(|s| failed.contains(&((*s).clone(), env.clone())))
        .map(|s| format!("`{s}`"))
        .collect();
    if stalled.is_empty() {
        return None;
    }
    let why = format!(
        "group `{name}`'s PR waits: the step of {} failed this cycle (its row says why)",
        stalled.join(", ")
    );
    Some(
        riders
            .iter()
            .map(|r| RowUpdate::waiting(r, why.clone()))
            .collect(),
    )
}

/// The riders that merge as the group's lead does (the open PR's first still-ready member,
/// else the first ready), and a row for each that does not.
fn agreeing(mut riders: Vec<Rider>, riding: &[String]) -> (Vec<Rider>, Vec<RowUpdate>) {
    riders.sort_by(|a, b| {
        let seated = |r: &Rider| !riding.contains(&r.service);
        (seated(a), a.since, &a.service).cmp(&(seated(b), b.since, &b.service))
    });
    let Some(lead) = riders.first().map(|r| (r.service.clone(), r.terms.clone())) else {
        return (riders, Vec::new());
    };
    let (agree, differ): (Vec<Rider>, Vec<Rider>) =
        riders.into_iter().partition(|r| r.terms == lead.1);
    let rows = differ
        .iter()
        .map(|r| RowUpdate {
            decision: Some(Decision::Blocked {
                candidate: r.candidate.clone(),
                reasons: vec![format!(
                    "its {} policy merges differently from `{}`'s, the first of group `{}` (auto_merge, approvals, approvers and windows must match for one PR to merge them all)",
                    r.environment, lead.0, r.rule.name
                )],
            }),
            ..RowUpdate::of(&r.service, &r.environment, Action::None)
        })
        .collect();
    (agree, rows)
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

fn in_group(w: &Watched, (env, name): &Key) -> bool {
    w.group
        .as_ref()
        .is_some_and(|g| &g.environment == env && &g.group == name)
}

fn failed(r: &Rider, error: &StepError) -> RowUpdate {
    RowUpdate::of(
        &r.service,
        &r.environment,
        Action::Failed {
            error: error.clone(),
        },
    )
}

fn failed_members(g: Option<&GroupState>, error: &StepError) -> Vec<RowUpdate> {
    g.map(|g| {
        g.with_outcome(None)
            .map(|m| {
                RowUpdate::of(
                    &m.service,
                    &g.environment,
                    Action::Failed {
                        error: error.clone(),
                    },
                )
            })
            .collect()
    })
    .unwrap_or_default()
}

fn all_rows(g: &Group<'_>, action: &Action) -> Vec<RowUpdate> {
    g.members
        .iter()
        .map(|r| RowUpdate::of(&r.service, &r.environment, action.clone()))
        .collect()
}
