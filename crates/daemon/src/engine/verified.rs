//! After the merge, for every promotion alike: one service's, a rollback, or a group's. A
//! promotion of one service is a group of one here ([`Landed::one`]): each member not
//! verified yet is verified on its own Argo CD application, all at once; the outcome is
//! reported (one `tugboat/deploy` check on the merge, one comment saying what failed);
//! each outcome is recorded and settled, with the labels and the body, in one write.
//!
//! The two records differ only in how they are written: one service's outcome lives in its
//! PR's labels (`deployed`, `bad`) beside the block every version wrote, a group's members'
//! in its block. What follows a settled outcome (a row, a rollback) is `landed`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;

use super::deploy::{REPORT_CLAIM_TTL, REPORTED};
use super::records::{MARKED_BAD, marked_bad_text};
use super::watch::{BAD, DEPLOYED, VERIFYING, Watched, of};
use super::{Action, At, Engine, EnvCtx, Step, StepError, Timing, Verification};
use crate::domain::deploy::Evidence;
use crate::domain::group::{GroupState, Member, Outcome};
use crate::domain::image::ImageRef;
use crate::domain::policy::RollbackMode;
use crate::domain::promotion::PromotionState;
use crate::ports::{CheckKind, CheckReport, LabelledPr, StatusState};

/// A PR merged at `sha`, at `at` (its body as last read).
pub(super) struct Landing<'a> {
    pub pr: &'a LabelledPr,
    pub sha: &'a str,
    pub at: DateTime<Utc>,
}

/// What a merged PR records of its members, and what they turned out to be so far.
#[derive(Debug, Clone)]
pub(super) struct Landed {
    /// Every member and its outcome (a promotion of one service: its one member).
    pub members: GroupState,
    /// A promotion or rollback of one service: its block, as every version wrote it.
    pub one: Option<PromotionState>,
}

impl Landed {
    /// A promotion (or rollback) of one service: a group of one, its outcome not known yet.
    pub fn one(state: PromotionState) -> Self {
        let member = Member {
            service: state.service.clone(),
            tag: state.tag.clone(),
            digest: state.digest.clone(),
            from: state.from.clone(),
            outcome: None,
            auto_sync: state.auto_sync,
        };
        Self {
            members: GroupState {
                group: String::new(),
                environment: state.environment.clone(),
                answered_through: state.answered_through,
                members: vec![member],
            },
            one: Some(state),
        }
    }

    /// A group's PR, its members' outcomes as its block records them.
    pub fn group(state: GroupState) -> Self {
        Self {
            members: state,
            one: None,
        }
    }

    /// The rollback this PR is, of promotion PR `n`.
    pub fn rollback_of(&self) -> Option<u64> {
        self.one.as_ref().and_then(|s| s.rollback_of)
    }

    /// `member`'s record as one promotion: what its rollback and its commands read.
    pub fn watched(&self, pr: &LabelledPr, member: &Member) -> Watched {
        match &self.one {
            Some(state) => Watched {
                pr: pr.clone(),
                state: state.clone(),
                group: None,
            },
            None => Watched {
                pr: pr.clone(),
                state: self.members.promotion(member),
                group: Some(std::sync::Arc::new(self.members.clone())),
            },
        }
    }
}

/// A member's step context, by service (in the PR's environment).
pub(super) type Contexts<'c> = dyn Fn(&str) -> Result<EnvCtx<'c>, StepError> + Sync + 'c;

/// One member's verification, when it ended, or why its context could not be built.
pub(super) type Checked = (String, Result<(Verification, DateTime<Utc>), StepError>);

/// What this pass found of the members: verified now (`fresh`), or read back from the report
/// an earlier version commented before a stop (only the labels are then left to settle).
pub(super) struct Found {
    pub checked: Vec<Checked>,
    pub fresh: bool,
}

impl Engine {
    /// Verify every member not verified yet and report it; then record and settle.
    pub(super) async fn verified(
        &self,
        m: &Landing<'_>,
        landed: &mut Landed,
        context: &Contexts<'_>,
    ) -> Result<Found, StepError> {
        let checked = self.verify_members(m, landed, context).await;
        failpoint!("verify");
        self.report(m, landed, &checked, context).await;
        failpoint!("report");
        let found = Found {
            checked,
            fresh: true,
        };
        self.settled(m, landed, &found, context).await?;
        Ok(found)
    }

    /// Record what `found` says of each member, and settle it.
    pub(super) async fn settled(
        &self,
        m: &Landing<'_>,
        landed: &mut Landed,
        found: &Found,
        context: &Contexts<'_>,
    ) -> Result<(), StepError> {
        let bad = record(landed, &found.checked, context);
        self.settle(m, landed, found, &bad, context).await
    }

    /// Each member not verified yet, on its own application, all at once.
    async fn verify_members(
        &self,
        m: &Landing<'_>,
        landed: &Landed,
        context: &Contexts<'_>,
    ) -> Vec<Checked> {
        let state = &landed.members;
        let checks = state.with_outcome(None).map(|member| async move {
            let result = match context(&member.service) {
                Ok(cx) => {
                    let image = state.promotion(member).reference(&cx.svc.image);
                    let v = self.verify(&cx, m.sha, &image, m.at).await;
                    Ok((v, self.clock.now()))
                }
                Err(e) => Err(e),
            };
            (member.service.clone(), result)
        });
        join_all(checks).await
    }

    /// The `tugboat/deploy` check of the merge, and (once: the ledger claims it) a comment
    /// saying what failed, since a person must know; on the promotion a rollback reverts, a
    /// line saying so.
    async fn report(
        &self,
        m: &Landing<'_>,
        landed: &Landed,
        checked: &[Checked],
        context: &Contexts<'_>,
    ) {
        let base = self.cfg.argocd.url.trim_end_matches('/');
        let report = match &landed.one {
            Some(one) => one_report(base, m, one, checked, context),
            None => Some(group_report(base, m, &landed.members, checked, context)),
        };
        let Some((check, failure)) = report else {
            return;
        };
        if let Err(e) = self.ports.forge.report(&check).await {
            tracing::warn!(error = %e, "could not report the deploy check");
        }
        if let Some(failure) = failure {
            self.say_failure(m, &failure).await;
        }
        if let (Some(bad), Some((_, Ok((v, _))))) = (landed.rollback_of(), checked.first())
            && !matches!(v, Verification::Unknown { .. })
        {
            let said = format!("Rolled back by #{}: {}", m.pr.number, v.summary());
            if let Err(e) = self.ports.forge.comment(bad, &said).await {
                tracing::warn!(error = %e, "could not comment the rollback");
            }
        }
    }

    /// Comment a failure on the merged PR, unless an earlier report of this merge said it
    /// (a stop after the comment, before the settle) or another replica claimed it (two may
    /// verify the same merge at once: one merged it, the other resumes it).
    async fn say_failure(&self, m: &Landing<'_>, failure: &Failure) {
        let number = m.pr.number;
        if self.said_before(number, m.sha, &failure.names).await {
            tracing::info!(pr = number, "this failure was reported before a restart");
            return;
        }
        let key = format!("report/{number}");
        match self
            .ports
            .ledger
            .claim_change(&key, &failure.change, REPORT_CLAIM_TTL)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(pr = number, "another tugboat reports this verification");
                return;
            }
            // The ledger cannot be written: report anyway (the labels move on after this, so
            // a report held back now would never be made); at worst a racing replica reports
            // too.
            Err(e) => tracing::warn!(error = %e, "could not claim the report; reporting unclaimed"),
        }
        if let Err(e) = self.ports.forge.comment(number, &failure.text).await {
            tracing::warn!(error = %e, "could not comment the verification");
        }
    }

    /// Whether one of tugboat's comments on PR `number` reports merge `sha` failed, naming
    /// every one of `names`.
    async fn said_before(&self, number: u64, sha: &str, names: &[String]) -> bool {
        let marker = format!("\"sha\":\"{sha}\"");
        match self.own_comments(number).await {
            Ok(comments) => comments.iter().any(|c| {
                c.body.contains(REPORTED)
                    && c.body.contains(&marker)
                    && names.iter().all(|n| c.body.contains(n.as_str()))
            }),
            Err(e) => {
                tracing::warn!(pr = number, error = %e, "could not read whether the failure was reported");
                false
            }
        }
    }

    /// One write for the PR once an outcome is known: `deployed` and `bad` as its members
    /// need them, the report and the outcomes in its body, and `verifying` gone once none
    /// waits (last, so that a stop before it leaves the PR to be settled again: every step
    /// here is safe to redo). First, the records the deployed members replace are dropped,
    /// and the members now bad are said to be.
    async fn settle(
        &self,
        m: &Landing<'_>,
        landed: &Landed,
        found: &Found,
        bad: &[String],
        context: &Contexts<'_>,
    ) -> Result<(), StepError> {
        let state = &landed.members;
        if state.members.iter().all(|x| x.outcome.is_none()) {
            // Nothing known: stays `verifying`, to be verified again next cycle.
            return Ok(());
        }
        if landed.rollback_of().is_none() {
            self.drop_replaced(m, state, context).await?;
            if !bad.is_empty() {
                self.say_marked_bad(m, landed, &found.checked, bad).await?;
            }
        }
        let (add, remove) = labels(landed);
        let body = body(m, landed, found, context);
        self.ports
            .forge
            .relabel(m.pr.number, &add, &remove, body.as_deref())
            .await
            .at(Step::Settle)
    }

    /// The records the deployed members replace in their environment, dropped: a promotion
    /// PR loses `deployed`, a group's member is superseded (one write per older group PR).
    async fn drop_replaced(
        &self,
        m: &Landing<'_>,
        state: &GroupState,
        context: &Contexts<'_>,
    ) -> Result<(), StepError> {
        let mut older: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        let mut singles = BTreeSet::new();
        for member in state.members.iter().filter(|x| x.deployed()) {
            let cx = context(&member.service).ok();
            let Some(watch) = cx.as_ref().and_then(EnvCtx::watch) else {
                continue;
            };
            for old in of(&watch.deployed, &member.service, &state.environment) {
                if old.pr.number == m.pr.number {
                    continue;
                }
                match old.group {
                    Some(_) => older
                        .entry(old.pr.number)
                        .or_default()
                        .push(&member.service),
                    None => {
                        singles.insert(old.pr.number);
                    }
                }
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
        Ok(())
    }

    /// Say which members are marked bad now: their images are never promoted again until
    /// an approver says `/unblock`.
    async fn say_marked_bad(
        &self,
        m: &Landing<'_>,
        landed: &Landed,
        checked: &[Checked],
        bad: &[String],
    ) -> Result<(), StepError> {
        let text = match &landed.one {
            Some(one) => {
                let reason = checked
                    .iter()
                    .find_map(|(_, r)| match r {
                        Ok((Verification::Failed { reason }, _)) => Some(reason.as_str()),
                        _ => None,
                    })
                    .unwrap_or("it failed");
                marked_bad_text(one, &format!("it did not become Healthy ({reason})"))
            }
            None => format!(
                "{MARKED_BAD} {} did not become Healthy in {}. tugboat rolls each back alone and will not promote its image again; an approver can comment `/unblock <service>` here to clear one.",
                bad.iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                landed.members.environment
            ),
        };
        self.ports
            .forge
            .comment(m.pr.number, &text)
            .await
            .at(Step::Settle)
    }

    /// The row of a rollback PR's verification, measured from when its promotion was
    /// marked bad.
    pub(super) async fn rolled_back(
        &self,
        bad: u64,
        m: &Landing<'_>,
        (verification, verified_at): (Verification, DateTime<Utc>),
    ) -> Action {
        Action::RolledBack {
            bad,
            number: m.pr.number,
            url: m.pr.url.clone(),
            verification,
            timing: Timing {
                verified_at,
                since: self.marked_bad_at(bad).await,
            },
            promotion: None,
        }
    }
}

/// Record what each member's verification found: Healthy; bad (`rollback: auto`) or
/// unhealthy and left to a person (`rollback: manual`, and every rollback, which is never
/// rolled back again); nothing while unknown. Returns the members now bad.
fn record(landed: &mut Landed, checked: &[Checked], context: &Contexts<'_>) -> Vec<String> {
    let rollback = landed.rollback_of().is_some();
    let mut bad = Vec::new();
    for member in &mut landed.members.members {
        let Some((_, Ok((v, _)))) = checked.iter().find(|(s, _)| *s == member.service) else {
            continue;
        };
        match v {
            Verification::Healthy { automated, .. } => {
                member.outcome = Some(Outcome::Healthy);
                if automated.is_some() {
                    member.auto_sync = *automated;
                }
            }
            Verification::Failed { .. } => match rollback_mode(context, &member.service) {
                RollbackMode::Auto if !rollback => {
                    member.outcome = Some(Outcome::Bad);
                    bad.push(member.service.clone());
                }
                _ => member.outcome = Some(Outcome::Unhealthy),
            },
            Verification::Unknown { .. } | Verification::Paused { .. } => {}
        }
    }
    bad
}

/// The rollback mode of `service` (manual when its policy is not at hand).
pub(super) fn rollback_mode(context: &Contexts<'_>, service: &str) -> RollbackMode {
    context(service).map_or(RollbackMode::Manual, |cx| cx.env_policy.rollback)
}

/// The labels to add and to remove once an outcome is known. A rollback carries none of a
/// promotion's: it only stops `verifying`.
fn labels(landed: &Landed) -> (Vec<&'static str>, Vec<&'static str>) {
    if landed.rollback_of().is_some() {
        return (Vec::new(), vec![VERIFYING]);
    }
    let (verifying, deployed, bad) = landed.members.labels();
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    match deployed {
        true => add.push(DEPLOYED),
        false => remove.push(DEPLOYED),
    }
    if bad {
        add.push(BAD);
    }
    if !verifying {
        remove.push(VERIFYING);
    }
    (add, remove)
}

/// The PR's body after the settle, when it changes: a group's block with its outcomes and
/// every member's line; one service's block with whether its application syncs by itself
/// (turning that off afterwards is a person taking over: a hold), and a Healthy report.
fn body(m: &Landing<'_>, landed: &Landed, found: &Found, context: &Contexts<'_>) -> Option<String> {
    let Some(one) = &landed.one else {
        let lines = healthy_lines(&landed.members, &found.checked);
        return Some(landed.members.write_into(&with_report(&m.pr.body, &lines)));
    };
    let member = landed.members.members.first()?;
    let mut body = m.pr.body.clone();
    if one.rollback_of.is_none() && member.auto_sync.is_some() && member.auto_sync != one.auto_sync
    {
        let state = PromotionState {
            auto_sync: member.auto_sync,
            ..one.clone()
        };
        body = state.write_into(&body);
    }
    if found.fresh
        && let Some((
            _,
            Ok((
                Verification::Healthy {
                    after, evidence, ..
                },
                _,
            )),
        )) = found.checked.first()
        && let Ok(cx) = context(&member.service)
    {
        let image = one.reference(&cx.svc.image);
        let text = healthy_text(cx.app, &image, (*after, *evidence), None);
        body = with_report(&body, &text);
    }
    (body != m.pr.body).then_some(body)
}

/// A failure to comment: what the ledger claims, the text, and what an earlier report of
/// the same merge must name to have said it.
struct Failure {
    change: String,
    text: String,
    names: Vec<String>,
}

/// The check of a merge, and the failure to comment.
type Report = (CheckReport, Option<Failure>);

/// One service's report: its check, and its failure said with what happens next.
fn one_report(
    base: &str,
    m: &Landing<'_>,
    one: &PromotionState,
    checked: &[Checked],
    context: &Contexts<'_>,
) -> Option<Report> {
    let (service, Ok((verification, _))) = checked.first()? else {
        return None;
    };
    let cx = context(service).ok()?;
    let image = one.reference(&cx.svc.image);
    let (app, sha) = (cx.app, m.sha);
    let short = &sha[..12.min(sha.len())];
    let (status, text) = match verification {
        Verification::Healthy {
            after, evidence, ..
        } => (
            StatusState::Success,
            healthy_text(app, &image, (*after, *evidence), Some(short)),
        ),
        Verification::Failed { reason } => (
            StatusState::Failure,
            format!("Argo CD did not report `{app}` Healthy with `{image}`: {reason}"),
        ),
        Verification::Unknown { reason } => (
            StatusState::Error,
            format!("tugboat could not verify `{app}`: {reason}"),
        ),
        // No failure: a canary paused as its steps planned, or waiting for a person.
        Verification::Paused { reason } => (
            StatusState::Pending,
            format!(
                "`{app}` is paused with `{image}`: {reason}. tugboat holds {} and never rolls a paused Rollout back",
                cx.env.name
            ),
        ),
    };
    let check = one_check(base, &cx, sha, &image, status, &text);
    if !matches!(verification, Verification::Failed { .. }) {
        // Unknown: verified again next cycle. Healthy: said in the PR's body by the write
        // that settles its labels, not by a comment of its own.
        return Some((check, None));
    }
    let next = if one.rollback_of.is_some() {
        "\n\nThis was a rollback: tugboat does not roll it back again. Look at the application in Argo CD."
    } else if cx.env_policy.rollback == RollbackMode::Auto {
        "\n\ntugboat rolls this promotion back now (`rollback: auto`)."
    } else {
        "\n\nAn approver can comment `/rollback` to revert it (`rollback: manual`)."
    };
    let marker = serde_json::json!({ "sha": sha, "healthy": false });
    let comment = format!("{text}{next}\n\n{REPORTED}{marker} -->");
    let failure = Failure {
        change: sha.to_owned(),
        text: comment,
        names: Vec::new(),
    };
    Some((check, Some(failure)))
}

/// One service's `tugboat/deploy` check: the outcome, and a deep link to the application.
fn one_check(
    base: &str,
    cx: &EnvCtx<'_>,
    sha: &str,
    image: &ImageRef,
    state: StatusState,
    text: &str,
) -> CheckReport {
    let app = cx.app;
    let link = format!("{base}/applications/{app}");
    CheckReport {
        sha: sha.to_owned(),
        kind: CheckKind::Deploy,
        state,
        title: text.replace('`', ""),
        summary: format!(
            "{text}\n\n| | |\n|---|---|\n| service | `{}` |\n| environment | `{}` |\n| Argo CD application | [`{app}`]({link}) |\n| merge commit | `{sha}` |\n| image | `{image}` |",
            cx.svc.name, cx.env.name
        ),
        link: Some(link),
    }
}

/// A group's report: one check with every member's outcome, and the members that failed.
fn group_report(
    base: &str,
    m: &Landing<'_>,
    state: &GroupState,
    checked: &[Checked],
    context: &Contexts<'_>,
) -> Report {
    let check = group_check(base, m, state, checked, context);
    let failed: Vec<(String, String)> = checked
        .iter()
        .filter_map(|(service, r)| match r {
            Ok((Verification::Failed { reason }, _)) => {
                let next = match rollback_mode(context, service) {
                    RollbackMode::Auto => {
                        "tugboat rolls back its lines alone and marks the image bad"
                    }
                    RollbackMode::Manual => "`rollback: manual`: revert its lines with a PR",
                };
                let name = format!("- `{service}`:");
                Some((format!("{name} {reason}. {next}."), name))
            }
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        return (check, None);
    }
    let text = format!(
        "Not Healthy after the merge ({}):\n\n{}\n\nThe group's other services stay deployed.\n\n{REPORTED}{{\"sha\":\"{}\",\"healthy\":false}} -->",
        &m.sha[..12.min(m.sha.len())],
        failed
            .iter()
            .map(|(line, _)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        m.sha
    );
    let failure = Failure {
        change: format!("{}:{}", m.sha, failed.len()),
        text,
        names: failed.into_iter().map(|(_, name)| name).collect(),
    };
    (check, Some(failure))
}

/// A group merge's `tugboat/deploy` check: one for the whole group, every member's outcome.
fn group_check(
    base: &str,
    m: &Landing<'_>,
    state: &GroupState,
    checked: &[Checked],
    context: &Contexts<'_>,
) -> CheckReport {
    let outcome = |pred: fn(&Verification) -> bool| {
        checked
            .iter()
            .filter(|(_, r)| r.as_ref().is_ok_and(|(v, _)| pred(v)))
            .count()
    };
    let healthy = outcome(|v| matches!(v, Verification::Healthy { .. }));
    let failed = outcome(|v| matches!(v, Verification::Failed { .. }));
    let paused = outcome(|v| matches!(v, Verification::Paused { .. }));
    let status = if failed > 0 {
        StatusState::Failure
    } else if paused > 0 && healthy + paused == checked.len() {
        StatusState::Pending
    } else if healthy < checked.len() {
        StatusState::Error
    } else {
        StatusState::Success
    };
    let mut summary = String::from("| service | Argo CD application | outcome |\n|---|---|---|\n");
    for (service, r) in checked {
        let app = context(service)
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

/// The report section of a group PR's body: each member's outcome in a line.
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

/// What Argo CD reported of a Healthy verification (at merge commit `short`, when known),
/// and what showed that the image runs (unless the summary did, the plain case).
fn healthy_text(
    app: &str,
    image: &ImageRef,
    (after, evidence): (Duration, Option<Evidence>),
    short: Option<&str>,
) -> String {
    let at = short.map(|s| format!(" at {s}")).unwrap_or_default();
    let after = after.as_secs_f64();
    match evidence {
        // Suspended, not Healthy: said as it is.
        Some(Evidence::PausedAccepted) => format!(
            "Argo CD reports `{app}` synced{at} with `{image}` and its Rollout paused at a step, {after:.1}s after the merge: counted as deployed (on_pause: accept)."
        ),
        Some(e) if e != Evidence::Summary => format!(
            "Argo CD reports `{app}` Synced and Healthy{at} with `{image}`, {after:.1}s after the merge. Evidence: {}.",
            e.as_str()
        ),
        _ => format!(
            "Argo CD reports `{app}` Synced and Healthy{at} with `{image}`, {after:.1}s after the merge."
        ),
    }
}

/// `body` ending with a Healthy verification's report (in place of an earlier one).
fn with_report(body: &str, text: &str) -> String {
    let kept = body.find(REPORTED).map_or(body, |i| &body[..i]).trim_end();
    format!("{kept}\n\n{REPORTED}{{\"healthy\":true}} -->\n**Deployed.** {text}\n")
}
