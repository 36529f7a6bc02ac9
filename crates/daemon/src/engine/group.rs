//! Grouped promotions (`domain::group` is the rule): an environment with a `group` promotes
//! the services that become ready within its window in one PR, on one branch per group and
//! environment.
//!
//! Each service's step observes, chooses and judges as usual, then leaves a [`Rider`] in
//! the cycle's [`Gathered`] instead of promoting. After every service, the group step of
//! each (environment, group) is formation only:
//! - the commands on its merged PRs carried out (`merged`), and the verification of a
//!   merged group PR that a stop interrupted finished (`landed::resume`);
//! - the group formed from the riders and the open PR's members (a held, refused or bad
//!   service is no rider, so it leaves without holding the others back; a member whose
//!   step failed this cycle keeps the PR as it is; the members must merge alike);
//! - the formed group handed to `group_pr`, which takes its PR through the same pipeline
//!   and the same `landed` as a promotion of one service: one merge rule, every member
//!   verified at once and settled in one write, each failed member rolled back alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::context::{Gathered, Rider, Seat};
use super::evidence;
use super::group_pr::{Group, Key, context_for};
use super::watch::{Watch, Watched};
use super::{Action, Engine, Step, StepError};
use crate::domain::group::{self, Formation, GroupState, Ready};
use crate::domain::plan::Decision;
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
                    Ok(done) => done
                        .into_iter()
                        .map(|(service, action)| RowUpdate::of(&service, env, action))
                        .collect::<Vec<_>>(),
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
