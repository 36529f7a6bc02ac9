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
use futures_util::future::join_all;

use super::commands::Commands;
use super::context::{Gathered, Rider, Seat};
use super::deploy;
use super::evidence;
use super::pipeline::{Merge, Promoted, Promotion, Reached, Record};
use super::pr::Change;
use super::promote;
use super::watch::{BAD, DEPLOYED, VERIFYING, Watch, Watched};
use super::{Action, At, Cause, Engine, EnvCtx, Mode, Step, StepError, Timing, Verification};
use crate::config::{EnvConfig, ServiceConfig};
use crate::domain::group::{self, Formation, GroupState, Member, Outcome, Ready};
use crate::domain::plan::Decision;
use crate::domain::policy::RollbackMode;
use crate::domain::promotion;
use crate::ports::{LabelledPr, PullRequest};

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

/// A merged group PR and its merge.
struct MergedGroup<'a> {
    pr: &'a LabelledPr,
    sha: &'a str,
    at: DateTime<Utc>,
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
                rows.extend(self.resume_group(w, cycle.seats, watch).await);
            }
            open |= w.pr.open;
        }
        if !riders.is_empty() || open {
            rows.extend(self.ride(key, riders, cycle).await);
        }
        rows
    }

    /// Finish a merged group PR's verification that a stop interrupted (or drop `verifying`
    /// from one closed unmerged).
    async fn resume_group(
        &self,
        w: &Watched,
        seats: &HashMap<String, Arc<Seat>>,
        watch: &Watch,
    ) -> Vec<RowUpdate> {
        let forge = &self.ports.forge;
        let Some(at) = w.pr.merged_at else {
            if let Err(e) = forge.remove_label(w.pr.number, VERIFYING).await {
                tracing::warn!(pr = w.pr.number, error = %e, "could not unlabel a group PR closed unmerged");
            }
            return Vec::new();
        };
        let read = async {
            let pr = forge.pull(w.pr.number).await.at(Step::Verify)?;
            let sha = pr
                .merge_sha
                .clone()
                .ok_or_else(|| StepError::new(Step::Verify, Cause::NoMergeCommit(pr.number)))?;
            let state = GroupState::parse(&pr.body).map_err(|e| own_state(pr.number, &e))?;
            Ok::<_, StepError>((pr, sha, state))
        };
        let (pr, sha, state) = match read.await {
            Ok(r) => r,
            Err(error) => return failed_members(w.group.as_deref(), &error),
        };
        if !self.merged_into_base(&pr) {
            // Not deployed by main: nothing to verify; unlabelled so it is not read again.
            if let Err(e) = forge.remove_label(pr.number, VERIFYING).await {
                tracing::warn!(pr = pr.number, error = %e, "could not unlabel a group PR merged into another branch");
            }
            return Vec::new();
        }
        tracing::info!(pr = pr.number, merge = %sha, "resuming the verification of a merged group PR");
        let labelled = LabelledPr {
            body: pr.body,
            ..w.pr.clone()
        };
        let merged = MergedGroup {
            pr: &labelled,
            sha: &sha,
            at,
        };
        self.after_merge(&merged, state, seats, watch).await
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
        failpoint!("group-merge");
        let labelled = LabelledPr {
            number: pr.number,
            url: pr.url.clone(),
            title: pr.title.clone(),
            body: pr.body.clone(),
            labels: pr.labels.clone(),
            open: false,
            merged_at: Some(at),
            // Opened by tugboat this cycle; it is not read back from a listing.
            author: String::new(),
            updated_at: None,
        };
        let merged = MergedGroup {
            pr: &labelled,
            sha: &sha,
            at,
        };
        Ok(self.after_merge(&merged, state, g.seats, g.watch).await)
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

fn own_state(pr: u64, e: &group::GroupError) -> StepError {
    StepError::new(
        Step::Verify,
        Cause::OwnGroupState {
            pr,
            error: e.clone(),
        },
    )
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

/// One member's verification: its outcome, or why its context could not be built.
type Checked = (String, Result<(Verification, DateTime<Utc>), StepError>);

impl Engine {
    /// Verify every member not verified yet, each on its own Argo CD application and all at
    /// once; then settle every outcome, the shared labels and the report in one write, and
    /// roll back each bad member on its own.
    async fn after_merge(
        &self,
        m: &MergedGroup<'_>,
        mut state: GroupState,
        seats: &HashMap<String, Arc<Seat>>,
        watch: &Watch,
    ) -> Vec<RowUpdate> {
        let env = state.environment.clone();
        let pending: Vec<Member> = state.with_outcome(None).cloned().collect();
        if pending.is_empty() {
            // Every outcome is in (a label put back by hand): only the labels to settle.
            if let Err(e) = self.settle_group(m, &state, &[], watch).await {
                tracing::warn!(pr = m.pr.number, error = %e, "could not settle a verified group PR");
            }
            return Vec::new();
        }
        let checks = pending.iter().map(|member| {
            let promotion = state.promotion(member);
            let env = env.as_str();
            async move {
                let result = match context_for(self, &member.service, env, seats, watch) {
                    Ok(cx) => {
                        let image = promotion.reference(&cx.svc.image);
                        let v = self.verify(&cx, m.sha, &image, m.at).await;
                        Ok((v, self.clock.now()))
                    }
                    Err(e) => Err(e),
                };
                (member.service.clone(), result)
            }
        });
        let checked: Vec<Checked> = join_all(checks).await;
        failpoint!("group-verify");
        self.report_group(m, &state, &checked, seats, watch).await;
        let bad = record(&mut state, &checked, seats);
        if let Err(error) = self.settle_group(m, &state, &checked, watch).await {
            return checked
                .iter()
                .map(|(s, _)| {
                    RowUpdate::of(
                        s,
                        &env,
                        Action::Failed {
                            error: error.clone(),
                        },
                    )
                })
                .collect();
        }
        self.rows_after(m, &state, checked, &bad, seats, watch)
            .await
    }

    /// The `tugboat/deploy` status of the merge (one for every member), and a comment naming
    /// the members that failed, since a person must know (once: the ledger claims it).
    async fn report_group(
        &self,
        m: &MergedGroup<'_>,
        state: &GroupState,
        checked: &[Checked],
        seats: &HashMap<String, Arc<Seat>>,
        watch: &Watch,
    ) {
        let report = deploy_check(self, m, state, checked, seats, watch);
        if let Err(e) = self.ports.forge.report(&report).await {
            tracing::warn!(error = %e, "could not report the group's deploy check");
        }
        let failed: Vec<String> = checked
            .iter()
            .filter_map(|(service, r)| match r {
                Ok((Verification::Failed { reason }, _)) => {
                    let next = match rollback_mode(seats, service, &state.environment) {
                        RollbackMode::Auto => {
                            "tugboat rolls back its lines alone and marks the image bad"
                        }
                        RollbackMode::Manual => "`rollback: manual`: revert its lines with a PR",
                    };
                    Some(format!("- `{service}`: {reason}. {next}."))
                }
                _ => None,
            })
            .collect();
        if failed.is_empty() {
            return;
        }
        let key = format!("report/{}", m.pr.number);
        let change = format!("{}:{}", m.sha, failed.len());
        if let Ok(false) = self
            .ports
            .ledger
            .claim_change(&key, &change, deploy::REPORT_CLAIM_TTL)
            .await
        {
            return; // another replica reports it
        }
        let text = format!(
            "Not Healthy after the merge ({}):\n\n{}\n\nThe group's other services stay deployed.\n\n{}{{\"sha\":\"{}\",\"healthy\":false}} -->",
            &m.sha[..12.min(m.sha.len())],
            failed.join("\n"),
            deploy::REPORTED,
            m.sha
        );
        if let Err(e) = self.ports.forge.comment(m.pr.number, &text).await {
            tracing::warn!(error = %e, "could not comment the group's failures");
        }
    }

    /// One write for the group PR: every outcome into its block, the report into its body,
    /// `deployed` and `bad` as its members need them, and `verifying` gone once none waits.
    /// First, the records the members replace are superseded (one write per older PR).
    async fn settle_group(
        &self,
        m: &MergedGroup<'_>,
        state: &GroupState,
        checked: &[Checked],
        watch: &Watch,
    ) -> Result<(), StepError> {
        let mut older: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        let mut singles = Vec::new();
        for member in state.members.iter().filter(|x| x.deployed()) {
            let Some(old) = watch.record_of(&member.service, &state.environment) else {
                continue;
            };
            if old.pr.number == m.pr.number {
                continue;
            }
            match old.group {
                Some(_) => older
                    .entry(old.pr.number)
                    .or_default()
                    .push(&member.service),
                None => singles.push(old.pr.number),
            }
        }
        for number in singles {
            self.ports
                .forge
                .remove_label(number, DEPLOYED)
                .await
                .at(Step::Settle)?;
        }
        for (number, services) in older {
            self.supersede(number, &services, Step::Settle).await?;
        }
        let (verifying, deployed, bad) = state.labels();
        let mut add = Vec::new();
        if deployed {
            add.push(DEPLOYED);
        }
        if bad {
            add.push(BAD);
        }
        let remove: &[&str] = if verifying { &[] } else { &[VERIFYING] };
        let body = state.write_into(&deploy::with_report(
            &m.pr.body,
            &healthy_lines(state, checked),
        ));
        self.ports
            .forge
            .relabel(m.pr.number, &add, remove, Some(&body))
            .await
            .at(Step::Settle)
    }

    /// The members' rows; each bad member's rollback first (a PR of its lines alone).
    async fn rows_after(
        &self,
        m: &MergedGroup<'_>,
        state: &GroupState,
        checked: Vec<Checked>,
        bad: &[String],
        seats: &HashMap<String, Arc<Seat>>,
        watch: &Watch,
    ) -> Vec<RowUpdate> {
        if !bad.is_empty() {
            let why = format!(
                "{} {} did not become Healthy in {}. tugboat rolls each back alone and will not promote its image again; an approver can comment `/unblock <service>` here to clear one.",
                super::records::MARKED_BAD,
                bad.iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                state.environment
            );
            if let Err(e) = self.ports.forge.comment(m.pr.number, &why).await {
                tracing::warn!(error = %e, "could not say which members are marked bad");
            }
        }
        let shared = Arc::new(state.clone());
        let rows = checked.into_iter().map(|(service, result)| {
            let shared = Arc::clone(&shared);
            async move {
                let env = shared.environment.clone();
                let action = match result {
                    Err(error) => Action::Failed { error },
                    Ok((verification, verified_at)) => {
                        self.member_action(
                            m,
                            &shared,
                            &service,
                            (verification, verified_at),
                            seats,
                            watch,
                        )
                        .await
                    }
                };
                RowUpdate::of(&service, &env, action)
            }
        });
        join_all(rows).await
    }

    /// A verified member's row: merged, or (bad, `rollback: auto`) rolled back.
    async fn member_action(
        &self,
        m: &MergedGroup<'_>,
        state: &Arc<GroupState>,
        service: &str,
        (verification, verified_at): (Verification, DateTime<Utc>),
        seats: &HashMap<String, Arc<Seat>>,
        watch: &Watch,
    ) -> Action {
        let cx = match context_for(self, service, &state.environment, seats, watch) {
            Ok(cx) => cx,
            Err(error) => return Action::Failed { error },
        };
        let Some(member) = state.member(service) else {
            return Action::None;
        };
        let w = Watched {
            pr: m.pr.clone(),
            state: state.promotion(member),
            group: Some(Arc::clone(state)),
        };
        let timing = Timing {
            verified_at,
            since: deploy::pushed_at(&cx, &w.state),
        };
        if member.outcome == Some(Outcome::Bad) && w.state.from.is_some() {
            tracing::Span::current().record("pr", m.pr.number);
            let mut action = self
                .rollback(&cx, &w)
                .await
                .unwrap_or_else(|error| Action::Failed { error });
            if let Action::RolledBack { promotion, .. } = &mut action {
                *promotion = Some(timing);
            }
            return action;
        }
        Action::Merged {
            number: m.pr.number,
            url: m.pr.url.clone(),
            sha: m.sha.to_owned(),
            verification,
            timing,
        }
    }
}

/// Record what each member's verification found: Healthy; bad (`rollback: auto`) or
/// unhealthy and left to a person (`rollback: manual`); nothing while unknown. Returns the
/// members now bad.
fn record(
    state: &mut GroupState,
    checked: &[Checked],
    seats: &HashMap<String, Arc<Seat>>,
) -> Vec<String> {
    let env = state.environment.clone();
    let mut bad = Vec::new();
    for member in &mut state.members {
        let Some((_, Ok((v, _)))) = checked.iter().find(|(s, _)| *s == member.service) else {
            continue;
        };
        match v {
            Verification::Healthy { automated, .. } => {
                member.outcome = Some(Outcome::Healthy);
                member.auto_sync = *automated;
            }
            Verification::Failed { .. } => match rollback_mode(seats, &member.service, &env) {
                RollbackMode::Auto => {
                    member.outcome = Some(Outcome::Bad);
                    bad.push(member.service.clone());
                }
                RollbackMode::Manual => member.outcome = Some(Outcome::Unhealthy),
            },
            Verification::Unknown { .. } => {}
        }
    }
    bad
}

/// The rollback mode of `service` in `env` (manual when its policy is not at hand).
fn rollback_mode(seats: &HashMap<String, Arc<Seat>>, service: &str, env: &str) -> RollbackMode {
    seats
        .get(service)
        .and_then(|s| s.policy.environments.get(env))
        .map_or(RollbackMode::Manual, |p| p.rollback)
}

/// The report section of the group PR's body: each member's outcome in a line.
fn healthy_lines(state: &GroupState, checked: &[Checked]) -> String {
    let mut lines = vec![format!(
        "{} of {} service(s) run Synced and Healthy.\n",
        state
            .members
            .iter()
            .filter(|m| m.outcome == Some(Outcome::Healthy))
            .count(),
        state.members.len()
    )];
    for member in &state.members {
        let now = checked.iter().find(|(s, _)| *s == member.service);
        let said = match (now, member.outcome) {
            (Some((_, Ok((v, _)))), _) => v.summary(),
            (Some((_, Err(e))), _) => format!("not verified: {e}"),
            (None, Some(o)) => format!("{o:?} (before)").to_lowercase(),
            (None, None) => "not verified yet".to_owned(),
        };
        lines.push(format!("- `{}`: {said}", member.service));
    }
    lines.join("\n")
}

/// The merge's `tugboat/deploy` check: one for the whole group, with every member's outcome.
fn deploy_check(
    engine: &Engine,
    m: &MergedGroup<'_>,
    state: &GroupState,
    checked: &[Checked],
    seats: &HashMap<String, Arc<Seat>>,
    watch: &Watch,
) -> crate::ports::CheckReport {
    use crate::ports::{CheckKind, CheckReport, StatusState};
    let outcome = |pred: fn(&Verification) -> bool| {
        checked
            .iter()
            .filter(|(_, r)| r.as_ref().is_ok_and(|(v, _)| pred(v)))
            .count()
    };
    let healthy = outcome(|v| matches!(v, Verification::Healthy { .. }));
    let failed = outcome(|v| matches!(v, Verification::Failed { .. }));
    let status = if failed > 0 {
        StatusState::Failure
    } else if healthy < checked.len() {
        StatusState::Error
    } else {
        StatusState::Success
    };
    let base = engine.cfg.argocd.url.trim_end_matches('/');
    let mut summary = String::from("| service | Argo CD application | outcome |\n|---|---|---|\n");
    for (service, r) in checked {
        let app = context_for(engine, service, &state.environment, seats, watch)
            .map(|cx| cx.app.to_owned())
            .unwrap_or_default();
        let said = match r {
            Ok((v, _)) => v.summary(),
            Err(e) => format!("not verified: {e}"),
        };
        summary.push_str(&format!(
            "| `{service}` | [`{app}`]({base}/applications/{app}) | {} |\n",
            said.replace('|', " ")
        ));
    }
    CheckReport {
        sha: m.sha.to_owned(),
        kind: CheckKind::Deploy,
        state: status,
        title: format!(
            "{healthy} of {} Healthy in {} (group {})",
            checked.len(),
            state.environment,
            state.group
        ),
        summary,
        link: None,
    }
}
