//! One environment's step, read as observe → choose → judge → act.
//!
//! Each phase either hands the next one what it found, or has written the row's final
//! decision and action into the report and returns `None`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::context::{Judged, Rider, Seen};
use super::reads::deployed_reference;
use super::{Action, Approvals, Engine, EnvCtx, EnvReport, Mode, Step, StepError, Upstream};
use crate::domain::gate::{self, GateDecision};
use crate::domain::image::{self, ImageRef};
use crate::domain::plan::{self, Decision, Position};
use crate::domain::policy::MutableTags;
use crate::domain::select::{self, Candidate};
use crate::ports::{Health, SyncStatus};

/// How long a repository's tag mutability is taken as read (it changes by a person's hand,
/// rarely; a promotion costs one DescribeRepositories an hour at most).
const MUTABILITY_TTL: Duration = Duration::from_secs(3600);

/// What the previous environment offers.
enum Offer {
    /// It deploys nothing of this service (or nothing with a tag).
    Nothing,
    /// It runs this candidate Synced and Healthy, deployed there at this time.
    Ready(Candidate, Option<DateTime<Utc>>),
    /// Not yet, and why.
    NotYet(String),
}

impl Engine {
    /// The environment's step.
    pub(super) async fn environment(&self, cx: &EnvCtx<'_>) -> EnvReport {
        let mut report = cx.report();
        let Some(seen) = self.observe(cx, &mut report).await else {
            return report;
        };
        if !self.free(cx, &seen, &mut report).await {
            return report;
        }
        let Some(candidate) = self.choose(cx, &seen, &mut report).await else {
            return report;
        };
        let Some(judged) = self.judge(cx, &seen, candidate, &mut report).await else {
            return report;
        };
        self.act(cx, &seen, judged, &mut report).await;
        report
    }

    /// What main deploys now; then the merged promotions, which come first (an interrupted
    /// verification, `/rollback`, a bad digest still deployed).
    async fn observe(&self, cx: &EnvCtx<'_>, report: &mut EnvReport) -> Option<Seen> {
        let read = match self.read_files(cx.env).await {
            Ok(files) => deployed_reference(&files, cx.svc).map(|d| Seen { files, deployed: d }),
            Err(e) => Err(e),
        };
        let seen = match read {
            Ok(seen) => seen,
            Err(error) => {
                report.decision = Decision::NoCandidate {
                    reason: error.to_string(),
                };
                report.action = Action::Failed { error };
                return None;
            }
        };
        report.deployed = seen.deployed.as_ref().map(ToString::to_string);
        report.deployed_digest = seen.deployed.as_ref().and_then(|d| {
            let digest = d.digest.clone().or_else(|| {
                let tag = d.tag.as_ref()?;
                let image = cx.images.iter().find(|i| i.tags.contains(tag))?;
                Some(image.digest.clone())
            });
            digest.map(|d| d.to_string())
        });
        if cx.mode == Mode::Apply
            && let Some(watch) = cx.watch()
            && let Some(action) = self.aftercare(cx, seen.deployed.as_ref(), watch).await
        {
            report.action = action;
            return None;
        }
        Some(seen)
    }

    /// The candidate (the registry's newest eligible tag, or what the previous environment
    /// runs healthy and soaked), unless it is deployed already or marked bad.
    async fn choose(
        &self,
        cx: &EnvCtx<'_>,
        seen: &Seen,
        report: &mut EnvReport,
    ) -> Option<(Candidate, DateTime<Utc>)> {
        let (candidate, since) = match self.candidate(cx).await {
            Ok(c) => c,
            Err(decision) => {
                report.decision = decision;
                return None;
            }
        };
        if let Some(decision) = standing(cx, seen, &candidate) {
            report.decision = decision;
            return None;
        }
        let watch = match cx.watch {
            Ok(w) => w,
            Err(error) => {
                report.decision = Decision::Waiting {
                    candidate: Some(candidate),
                    reason: error.to_string(),
                };
                report.action = Action::Failed {
                    error: error.clone(),
                };
                return None;
            }
        };
        // A digest marked bad (it failed somewhere and was rolled back) is never promoted.
        if let Some(bad) = watch.bad_digest(&cx.svc.name, &candidate.digest) {
            let reasons = vec![format!(
                "marked bad after it failed in {} (PR #{}); an approver can comment /unblock there",
                bad.state.environment, bad.pr.number
            )];
            if cx.mode == Mode::Apply {
                report.action = self.close_refused(cx, &candidate, &reasons).await;
            }
            report.decision = Decision::Blocked { candidate, reasons };
            return None;
        }
        Some((candidate, since))
    }

    /// The candidate of this environment and since when it may be promoted, or the decision
    /// that there is none yet.
    async fn candidate(&self, cx: &EnvCtx<'_>) -> Result<(Candidate, DateTime<Utc>), Decision> {
        let Some(up) = cx.upstream else {
            return select::eligible(cx.images, &cx.env_policy.tag)
                .into_iter()
                .next()
                .map(|c| {
                    let since = c.pushed_at;
                    (c, since)
                })
                .ok_or_else(|| Decision::NoCandidate {
                    reason: "no tag matches the policy's tag rule".into(),
                });
        };
        match self.offer(up, cx.images).await {
            Offer::Nothing => Err(Decision::NoCandidate {
                reason: format!("{} deploys nothing of this service", up.env.name),
            }),
            Offer::NotYet(reason) => Err(Decision::Waiting {
                candidate: None,
                reason,
            }),
            Offer::Ready(c, deployed_at) => {
                match plan::soaked(cx.env_policy.soak, deployed_at, cx.now, &up.env.name) {
                    Ok(()) => {
                        let soak =
                            chrono::Duration::from_std(cx.env_policy.soak).unwrap_or_default();
                        let since = deployed_at.map_or(c.pushed_at, |d| d + soak);
                        Ok((c, since))
                    }
                    Err(reason) => Err(Decision::Waiting {
                        candidate: Some(c),
                        reason,
                    }),
                }
            }
        }
    }

    /// The scan findings and the gate's decision on them.
    async fn judge(
        &self,
        cx: &EnvCtx<'_>,
        seen: &Seen,
        (candidate, since): (Candidate, DateTime<Utc>),
        report: &mut EnvReport,
    ) -> Option<Judged> {
        let kind = select::kind_of(cx.images, &candidate.digest);
        let scans = match self
            .image_scan(cx.svc, &candidate.digest, &kind, cx.mode)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                report.decision = Decision::Waiting {
                    candidate: Some(candidate),
                    reason: format!("scan findings unavailable: {e}"),
                };
                report.action = Action::Failed {
                    error: StepError::new(Step::Scan, e),
                };
                return None;
            }
        };
        let gate = gate::gate_image(&scans, &cx.env_policy.scan, cx.now.date_naive());
        let gate = self.mutable_tags(cx, seen, gate).await;
        let (gate, signature) = self.signature_gate(cx, &candidate.digest, gate).await;
        report.signature.clone_from(&signature);
        if let GateDecision::Block { counts, .. } = &gate {
            report.rejected = Some(
                cx.env_policy
                    .scan
                    .thresholds
                    .iter()
                    .filter(|(sev, max)| counts.get(sev).copied().unwrap_or(0) > **max)
                    .map(|(sev, _)| *sev)
                    .collect(),
            );
        }
        report.decision = plan::decide(seen.deployed.as_ref(), candidate.clone(), &gate);
        Some(Judged {
            candidate,
            gate,
            findings: gate::merged(&scans).findings,
            signature,
            since,
        })
    }

    /// Promote what the gate passed; in a plan, say what the merge would wait for; close
    /// the open PR of a candidate the gate now refuses.
    async fn act(&self, cx: &EnvCtx<'_>, seen: &Seen, judged: Judged, report: &mut EnvReport) {
        let promote = matches!(report.decision, Decision::Promote { .. });
        if promote && !cx.env_policy.auto_merge {
            report.approvals = Some(Approvals {
                needed: cx.env_policy.approvals,
                given: None,
                from: cx.env_policy.approvers.clone(),
            });
        }
        if cx.mode == Mode::Plan && promote {
            // What the merge would wait for, said in the plan as it is on the PR.
            if let Some(reason) = self.plan_hold(cx).await {
                report.decision = Decision::Waiting {
                    candidate: Some(judged.candidate),
                    reason,
                };
            }
            return;
        }
        if let Decision::Blocked { reasons, .. } = &report.decision {
            tracing::warn!(service = %cx.svc.name, environment = %cx.env.name, tag = %judged.candidate.tag, reasons = ?reasons, "candidate blocked by the scan gate");
            if cx.mode == Mode::Apply {
                report.action = self.close_refused(cx, &judged.candidate, reasons).await;
            }
        }
        if cx.mode == Mode::Plan || !promote {
            return;
        }
        if let Some(rule) = &cx.env_policy.group
            && let Some(gathered) = cx.gathered
        {
            // The group step promotes it with the others, after every service's step.
            let parts = super::promote::member_parts(cx, seen, &judged);
            gathered.ride(Rider::new(cx, seen, &judged, rule.clone(), parts));
            return;
        }
        report.action = self
            .promote(cx, seen, &judged)
            .await
            .unwrap_or_else(|error| Action::Failed { error });
        if let Action::AwaitingApproval { approvals, .. } = &report.action {
            report.approvals = Some(approvals.clone());
        }
    }

    /// The previous environment's deployed image, once Argo CD runs it Synced and Healthy,
    /// with the time Argo CD deployed it there.
    async fn offer(&self, up: &Upstream<'_>, images: &[select::ImageRecord]) -> Offer {
        let Some(d) = &up.deployed else {
            return Offer::Nothing;
        };
        let Some(tag) = &d.tag else {
            return Offer::Nothing;
        };
        let prev = &up.env.name;
        let Some(record) = select::find_tag(images, tag) else {
            return Offer::NotYet(format!(
                "{prev} deploys {tag}, which the registry no longer has"
            ));
        };
        let app = match self.ports.deployer.app(up.app, false).await {
            Ok(app) => app,
            Err(e) => return Offer::NotYet(format!("cannot read {prev}'s health: {e}")),
        };
        let wanted = ImageRef {
            repository: d.repository.clone(),
            tag: Some(tag.clone()),
            digest: Some(record.digest.clone()),
        };
        let healthy = app.sync_status == SyncStatus::Synced && app.health == Health::Healthy;
        if healthy && image::runs(&app.images, &wanted) {
            Offer::Ready(record, app.deployed_at)
        } else if healthy {
            Offer::NotYet(format!(
                "{prev}'s application does not run {tag} yet (it runs {})",
                app.images.join(", ")
            ))
        } else {
            Offer::NotYet(format!(
                "{prev} is not yet Synced and Healthy with {tag} (sync {}, health {})",
                app.sync_status, app.health
            ))
        }
    }

    /// A passing candidate that would be promoted by tag alone, from a repository whose tags
    /// can move: warned about or refused, as the policy's `mutable_tags` says. A file that
    /// pins a digest keeps pinning one, so only `pin_digest: false` over a tag-only file asks.
    async fn mutable_tags(&self, cx: &EnvCtx<'_>, seen: &Seen, gate: GateDecision) -> GateDecision {
        let pinned =
            cx.env_policy.pin_digest || seen.deployed.as_ref().is_some_and(|d| d.digest.is_some());
        if pinned || !matches!(gate, GateDecision::Pass { .. }) {
            return gate;
        }
        let refuse = cx.env_policy.mutable_tags == MutableTags::Refuse;
        let key = (cx.svc.registry_id.clone(), cx.svc.repository.clone());
        let word = match self.mutability.get(&key) {
            Some((at, w)) if at.elapsed() < MUTABILITY_TTL => Ok(w),
            _ => self
                .ports
                .registry
                .tag_mutability(cx.svc.registry_id.as_deref(), &cx.svc.repository)
                .await
                .inspect(|w| self.mutability.insert(key, (Instant::now(), w.clone()))),
        };
        match word {
            Ok(w) if w == "IMMUTABLE" => gate,
            Ok(w) => gate::tag_only_from_mutable(gate, &w, refuse),
            Err(e) if refuse => GateDecision::Block {
                counts: gate.counts().cloned().unwrap_or_default(),
                reasons: vec![format!(
                    "the repository's tag mutability cannot be read ({e}), and the policy refuses tag-only promotions from mutable tags"
                )],
            },
            Err(e) => {
                tracing::warn!(service = %cx.svc.name, error = %e, "cannot read the repository's tag mutability");
                gate
            }
        }
    }
}

/// Whether the candidate is deployed already, or older than what is deployed (never
/// promote backwards): the decision that ends the step, if so.
fn standing(cx: &EnvCtx<'_>, seen: &Seen, candidate: &Candidate) -> Option<Decision> {
    let deployed_record = seen
        .deployed
        .as_ref()
        .and_then(|d| d.tag.as_ref())
        .and_then(|t| select::find_tag(cx.images, t));
    match plan::position(
        seen.deployed.as_ref(),
        deployed_record.as_ref(),
        candidate,
        &cx.env_policy.tag,
    ) {
        Position::Deployed => Some(Decision::UpToDate {
            deployed: candidate.tag.to_string(),
        }),
        Position::Behind => Some(Decision::UpToDate {
            deployed: format!(
                "{} (newer than candidate {})",
                deployed_record.map_or_else(String::new, |r| r.tag.to_string()),
                candidate.tag
            ),
        }),
        Position::Ahead => None,
    }
}
