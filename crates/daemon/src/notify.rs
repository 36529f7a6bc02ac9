//! Notifications, outside the reconcile path: what a cycle's reports, a rescan and the
//! dependencies' health say (`of_cycle`, `of_rescan`, [`Health`]), recorded in the ledger and
//! then delivered to every sink whose filter admits it ([`Notifier`]).
//!
//! - **Once per change.** A notification names its state (`key`) and the change (`change`:
//!   the merge, the candidate, the PR head…). Before anything is sent, the change is
//!   recorded in the ledger (`announced.json` on the GitOps repository's ledger branch), and
//!   only a change the ledger did not hold yet is delivered; so a restart, or a second
//!   replica, never announces it again. The same write keeps the notification in the
//!   ledger's outbox until each sink has it, so a crash before its delivery loses nothing:
//!   the process that takes the outbox over sends it, under the same delivery id (a crash
//!   between a sink's acceptance and the ledger's record of it sends it again).
//! - **Never in the way.** The run loop hands notifications over without waiting
//!   ([`Notifier::submit`]); the ledger writes and the deliveries run in tasks of their own,
//!   one per sink, so a slow or failing sink delays neither the cycles nor the other sinks.
//!   A delivery is tried `attempts` times, 1 s, 2 s, 4 s… (at most a minute) apart, and a
//!   sink's refusal (a 4xx but 408 and 429, a redirect) ends it at once; each outcome is
//!   counted in `tugboat_notifications_total{sink,event,result}`.
//! - **Tugboat's own health** has no system of record but the ledger, which a failing GitHub
//!   can make unwritable: an `unhealthy` notification the ledger cannot record is still sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::domain::notify::{Filter, Kind, Link, Notification, advisories_in};
use crate::domain::plan::Decision;
use crate::engine::rescan::RescanReport;
use crate::engine::{Action, EnvReport, Verification};
use crate::metrics::NotifyMetrics;
use crate::ports::{Announcement, ErrorKind, Ledger, Parcel, PortResult, Sink};
use crate::telemetry::ApiCounts;

mod deliver;

pub use deliver::{Delivery, Freshness, Notifier, OTHERS_AFTER, Outcome, Route};

/// What a cycle's reports announce: promotions verified Healthy, gate refusals of a
/// candidate, promotions awaiting approval (per PR head), rollbacks, and holds.
pub fn of_cycle(reports: &[EnvReport], argocd_url: &str) -> Vec<Notification> {
    reports
        .iter()
        .filter_map(|r| {
            let mut n = of_report(r)?;
            n.application = Some(Link {
                title: "Argo CD".into(),
                url: format!(
                    "{}/applications/{}",
                    argocd_url.trim_end_matches('/'),
                    r.application
                ),
            });
            Some(n)
        })
        .collect()
}

fn of_report(r: &EnvReport) -> Option<Notification> {
    let new =
        |kind, change: String| Notification::new(kind, &r.service, Some(&r.environment), change);
    let candidate = r.decision.candidate().map(|c| c.tag.to_string());
    let from = replaced(r);
    let mut n = match (&r.action, &r.decision) {
        (
            Action::Merged {
                number,
                url,
                sha,
                verification: v @ Verification::Healthy { .. },
                timing,
            },
            _,
        ) => {
            let mut n = new(Kind::Promoted, format!("#{number} {sha}"));
            n.reason = v.summary();
            if let Some(since) = timing.since {
                let lead = (timing.verified_at - since).num_seconds().max(0);
                n.reason = format!("{}; pushed → Healthy in {}", n.reason, span(lead));
            }
            n.pr = link(&format!("PR #{number}"), url);
            n.to = candidate.or_else(|| r.deployed.as_deref().map(version));
            n.from = from.filter(|f| Some(f) != n.to.as_ref());
            n
        }
        (
            Action::RolledBack {
                bad,
                number,
                url,
                verification,
                ..
            },
            _,
        ) => {
            let mut n = new(Kind::RolledBack, format!("#{number}"));
            n.reason = format!(
                "#{bad} was marked bad and #{number} reverted it: {}",
                verification.summary()
            );
            n.pr = link(&format!("Revert PR #{number}"), url);
            n
        }
        (
            Action::AwaitingApproval {
                number,
                url,
                head,
                approvals,
                ..
            },
            _,
        ) => {
            // Approvals are bound to the head: a new head waits anew.
            let change = format!("#{number} head {head}");
            awaits(r, change, awaiting(approvals), (*number, url))
        }
        (Action::AwaitingReview { .. }, _) => review_wanted(r)?,
        (action, Decision::Held { hold, .. }) => held(r, action, hold),
        (
            _,
            Decision::Blocked {
                candidate: c,
                reasons,
            },
        ) if r.rejected.is_some() => blocked(r, c, reasons, from),
        _ => return None,
    };
    if n.reason.is_empty() {
        n.reason = r.decision.to_string();
    }
    if let (Kind::Promoted | Kind::AwaitingApproval, Some(s)) = (n.kind, signer(r)) {
        n.reason = format!("{}; {s}", n.reason);
    }
    Some(n)
}

/// Who signed the candidate, in a few words, when the policy verified its signature.
fn signer(r: &EnvReport) -> Option<String> {
    use crate::domain::signature::{SignatureCheck, Signer};
    let Some(SignatureCheck::Verified(s)) = &r.signature else {
        return None;
    };
    Some(match &s.signer {
        Signer::Key {
            fingerprint,
            source,
        } => format!(
            "signed by key sha256:{}… ({source})",
            fingerprint.get(..16).unwrap_or(fingerprint)
        ),
        Signer::Certificate {
            subject, issuer, ..
        } => format!("signed by {subject} (issuer {issuer})"),
    })
}

/// A PR that awaits the approving reviews GitHub requires (one notice per PR).
fn review_wanted(r: &EnvReport) -> Option<Notification> {
    let Action::AwaitingReview {
        number,
        url,
        missing,
    } = &r.action
    else {
        return None;
    };
    let why = format!(
        "GitHub requires {missing} more approving review(s) from someone with write access"
    );
    Some(awaits(r, format!("#{number} review"), why, (*number, url)))
}

/// A PR that awaits people (`change` keys it: one notice per head, or per PR).
fn awaits(
    r: &EnvReport,
    change: String,
    reason: String,
    (number, url): (u64, &str),
) -> Notification {
    let mut n = Notification::new(
        Kind::AwaitingApproval,
        &r.service,
        Some(&r.environment),
        change,
    );
    n.reason = reason;
    n.pr = link(&format!("PR #{number}"), url);
    n.to = r.decision.candidate().map(|c| c.tag.to_string());
    n.from = replaced(r);
    n
}

/// The version an environment ran before the change `r` reports.
fn replaced(r: &EnvReport) -> Option<String> {
    match &r.decision {
        Decision::Promote { from, .. } => from.as_deref().map(version),
        _ => r.deployed.as_deref().map(version),
    }
}

/// A link to a PR or issue, when there is a URL.
fn link(title: &str, url: &str) -> Option<Link> {
    (!url.is_empty()).then(|| Link {
        title: title.to_owned(),
        url: url.to_owned(),
    })
}

/// What a promotion awaiting approval needs: how many more, from whom.
fn awaiting(approvals: &crate::engine::Approvals) -> String {
    let from_whom = if approvals.from.is_empty() {
        "anyone with write access".to_owned()
    } else {
        approvals.from.join(", ")
    };
    let missing = approvals
        .missing()
        .unwrap_or(approvals.needed.max(1) as usize);
    format!("needs {missing} more approval(s) from {from_whom}: comment /approve on the PR")
}

/// Candidate `c` refused by the scan gate (`reasons`), instead of `from`.
fn blocked(
    r: &EnvReport,
    c: &crate::domain::select::Candidate,
    reasons: &[String],
    from: Option<String>,
) -> Notification {
    let mut n = Notification::new(
        Kind::Blocked,
        &r.service,
        Some(&r.environment),
        format!("{}@{}", c.tag, c.digest),
    );
    n.reason = reasons.join("; ");
    n.advisories = advisories_in(&n.reason);
    n.to = Some(c.tag.to_string());
    n.from = from;
    n
}

/// An environment held (`hold`), linked to the issue or PR `action` names.
fn held(r: &EnvReport, action: &Action, hold: &crate::domain::hold::Hold) -> Notification {
    let mut n = Notification::new(
        Kind::Held,
        &r.service,
        Some(&r.environment),
        format!("{} since {}", hold.cause.as_str(), hold.since.to_rfc3339()),
    );
    n.reason = format!(
        "{} Nothing is promoted here until an approver comments /resume.",
        hold.detail
    );
    n.pr = match action {
        Action::EnvironmentHeld { issue, url, .. } => link(&format!("Hold issue #{issue}"), url),
        Action::Held { number, url, .. } => link(&format!("PR #{number}"), url),
        _ => None,
    };
    n.from = hold.deployed.as_deref().map(version);
    n
}

/// The version part of a deployed reference: `…/user_service:1.0.0` → `1.0.0`,
/// `…/api@sha256:…` → `@sha256:…`.
pub fn version(reference: &str) -> String {
    let tail = reference.rsplit('/').next().unwrap_or(reference);
    match tail.find([':', '@']) {
        Some(i) if tail[i..].starts_with(':') => tail[i + 1..].to_owned(),
        Some(i) => tail[i..].to_owned(),
        None => tail.to_owned(),
    }
}

/// `95s` → `1m 35s`.
fn span(secs: i64) -> String {
    humantime::format_duration(Duration::from_secs(secs.unsigned_abs())).to_string()
}

/// What a rescan announces: each service whose deployed images have findings that are new
/// since the last rescan, once per set of new findings.
pub fn of_rescan(report: &RescanReport) -> Vec<Notification> {
    report
        .services
        .iter()
        .filter_map(|s| {
            let new: Vec<String> = s
                .rows
                .iter()
                .filter(|r| r.in_scope && !r.new.is_empty())
                .map(|r| {
                    format!(
                        "{} in {} ({})",
                        r.new.join(", "),
                        r.deployed.environment,
                        r.deployed.reference
                    )
                })
                .collect();
            if new.is_empty() {
                return None;
            }
            let ids: std::collections::BTreeSet<&str> = s
                .rows
                .iter()
                .filter(|r| r.in_scope)
                .flat_map(|r| r.new.iter().map(String::as_str))
                .collect();
            let change = digest_of(&ids.iter().copied().collect::<Vec<_>>().join(","));
            let mut n = Notification::new(Kind::NewFindings, &s.service, None, change);
            n.reason = new.join("\n");
            n.advisories = advisories_in(&n.reason);
            n.pr = match &s.issue {
                crate::engine::rescan::IssueAction::Opened { number, url }
                | crate::engine::rescan::IssueAction::Updated { number, url }
                | crate::engine::rescan::IssueAction::Unchanged { number, url } => Some(Link {
                    title: format!("Security issue #{number}"),
                    url: url.clone(),
                }),
                _ => None,
            };
            Some(n)
        })
        .collect()
}

/// A short stable digest of `text` (the delivery id, a long change).
fn digest_of(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

/// The delivery id of a notification: the same on every attempt, across restarts and
/// replicas, so that a receiver can drop what it already has.
pub fn delivery_id(n: &Notification) -> String {
    digest_of(&format!("{}\n{}", n.key, n.change))
}

/// The outside systems' health across cycles: a system that failed every call for
/// `after` cycles in a row is announced `unhealthy` once; its recovery is recorded (not
/// sent), so that its next failure is a new change.
#[derive(Debug)]
pub struct Health {
    after: u32,
    /// Per system: failing cycles in a row, and whether the ledger may hold it as failing
    /// (unknown after a start: `true`, so a recovery is recorded once).
    systems: HashMap<String, (u32, bool)>,
}

/// What [`Health::observe`] found: notifications to send, and changes only to record.
#[derive(Debug, Default)]
pub struct Observed {
    pub send: Vec<Notification>,
    pub record: Vec<(String, String)>,
}

impl Health {
    pub fn new(after: u32) -> Self {
        Self {
            after: after.max(1),
            systems: HashMap::new(),
        }
    }

    /// Look at one cycle's calls.
    pub fn observe(&mut self, calls: &ApiCounts) -> Observed {
        let mut out = Observed::default();
        for (system, (calls, errors)) in crate::telemetry::by_system(calls) {
            if calls == 0 {
                continue;
            }
            let (streak, maybe_failing) =
                self.systems.entry(system.to_owned()).or_insert((0, true));
            let failing = errors == calls;
            let key = format!("{}/{system}", Kind::Unhealthy);
            if !failing {
                if *maybe_failing {
                    out.record.push((key, "ok".to_owned()));
                }
                *streak = 0;
                *maybe_failing = false;
                continue;
            }
            *streak += 1;
            if *streak == self.after {
                let mut n = Notification::new(Kind::Unhealthy, system, None, "failing".into());
                n.reason = format!(
                    "every call to {system} failed in {} cycles in a row ({errors} of {calls} in the last). /readyz names it; tugboat_api_errors_total says which calls.",
                    self.after
                );
                out.send.push(n);
                *maybe_failing = true;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;
    use crate::domain::gate::Severity;
    use crate::domain::image::{Digest, Tag};
    use crate::domain::select::Candidate;
    use crate::engine::fake::{FakeSink, World};
    use crate::engine::{Approvals, Timing};
    use crate::telemetry::ApiMetrics;

    #[test]
    fn an_older_cycle_that_ends_after_a_newer_one_does_not_announce_its_older_view_again() {
        let awaiting = |head: &str| {
            Notification::new(
                Kind::AwaitingApproval,
                "svc",
                Some("prod"),
                format!("#11 head {head}"),
            )
        };
        let fresh = Freshness::default();
        // Cycle 1 (full) saw head X but ends after cycle 2 (woken by a webhook), which saw Y.
        assert_eq!(fresh.admit(2, vec![awaiting("Y")]).len(), 1);
        assert!(fresh.admit(1, vec![awaiting("X")]).is_empty());
        // A later cycle speaks again; tugboat's own health is never held back.
        assert_eq!(fresh.admit(3, vec![awaiting("Y")]).len(), 1);
        // Another state of the service, from the older cycle: not held back (the soak's
        // lost "promoted" to dev, dropped for a later cycle's word on prod).
        let promoted = Notification::new(Kind::Promoted, "svc", Some("dev"), "#12 abc".into());
        assert_eq!(fresh.admit(1, vec![promoted]).len(), 1);
        let health = Notification {
            service: None,
            ..awaiting("-")
        };
        assert_eq!(fresh.admit(0, vec![health]).len(), 1);
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .into()
    }

    fn candidate(tag: &str) -> Candidate {
        Candidate {
            tag: Tag::parse(tag).unwrap(),
            digest: Digest::parse(&format!("sha256:{}", "b".repeat(64))).unwrap(),
            pushed_at: now(),
        }
    }

    use crate::engine::fake::report;

    fn promote(tag: &str) -> Decision {
        Decision::Promote {
            from: Some("1.0.0".into()),
            to: candidate(tag),
        }
    }

    fn merged(verification: Verification) -> Action {
        Action::Merged {
            number: 7,
            url: "https://github.example/salon/salon-gitops/pull/7".into(),
            sha: "abc123".into(),
            verification,
            timing: Timing {
                verified_at: now(),
                since: Some(now() - chrono::Duration::seconds(95)),
            },
        }
    }

    fn healthy() -> Verification {
        Verification::Healthy {
            after: Duration::from_secs(30),
            automated: Some(true),
            evidence: None,
        }
    }

    #[test]
    fn a_healthy_merge_is_announced_as_promoted_with_its_versions_and_links() {
        let notes = of_cycle(
            &[report("dev", promote("1.1.0"), merged(healthy()))],
            "https://argocd.example/",
        );
        let [n] = notes.as_slice() else {
            panic!("{notes:?}")
        };
        assert_eq!(n.kind, Kind::Promoted);
        assert_eq!(n.key, "promoted/user_service/dev");
        assert_eq!(n.change, "#7 abc123");
        assert_eq!(n.transition().as_deref(), Some("1.0.0 → 1.1.0"));
        assert_eq!(n.reason, "Healthy after 30.0s; pushed → Healthy in 1m 35s");
        assert_eq!(n.pr.as_ref().unwrap().title, "PR #7");
        let mut signed = report("dev", promote("1.1.0"), merged(healthy()));
        signed.signature = Some(crate::domain::signature::SignatureCheck::Verified(
            crate::domain::signature::Signed {
                signer: crate::domain::signature::Signer::Key {
                    fingerprint: "ab".repeat(32),
                    source: "ssm:/salon/cosign/ci.pub".into(),
                },
                manifest: format!("sha256:{}", "cd".repeat(32)),
                pushed_at: chrono::DateTime::UNIX_EPOCH,
            },
        ));
        let notes = of_cycle(&[signed], "https://argocd.example/");
        assert_eq!(
            notes[0].reason,
            "Healthy after 30.0s; pushed → Healthy in 1m 35s; signed by key sha256:abababababababab… (ssm:/salon/cosign/ci.pub)"
        );
        assert_eq!(
            n.application.as_ref().unwrap().url,
            "https://argocd.example/applications/user-service-dev"
        );
    }

    #[test]
    fn a_deployed_reference_is_shown_by_its_version() {
        assert_eq!(
            version("123.dkr.ecr.eu-north-1.amazonaws.com/user_service:1.0.0"),
            "1.0.0"
        );
        assert_eq!(version("ghcr.io/a/b:1.0.0@sha256:ab"), "1.0.0@sha256:ab");
        assert_eq!(version("registry:5000/a/b@sha256:ab"), "@sha256:ab");
        assert_eq!(version("1.0.0"), "1.0.0");
    }

    #[test]
    fn a_failed_merge_and_a_refusal_that_is_not_the_gate_announce_nothing() {
        let failed = merged(Verification::Failed {
            reason: "Degraded".into(),
        });
        let bad_digest = Decision::Blocked {
            candidate: candidate("1.1.0"),
            reasons: vec!["marked bad by #5".into()],
        };
        let notes = of_cycle(
            &[
                report("dev", promote("1.1.0"), failed),
                report("prod", bad_digest, Action::None),
            ],
            "https://argocd.example",
        );
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn a_gate_refusal_names_the_candidate_and_links_each_advisory() {
        let mut r = report(
            "prod",
            Decision::Blocked {
                candidate: candidate("1.1.0"),
                reasons: vec!["CVE-2024-3094 (CRITICAL) in xz-utils".into()],
            },
            Action::None,
        );
        r.rejected = Some(vec![Severity::Critical]);
        let notes = of_cycle(&[r], "https://argocd.example");
        let n = &notes[0];
        assert_eq!(n.kind, Kind::Blocked);
        assert_eq!(n.change, format!("1.1.0@sha256:{}", "b".repeat(64)));
        assert_eq!(n.transition().as_deref(), Some("1.0.0 → 1.1.0"));
        assert_eq!(
            n.advisories[0].url,
            "https://nvd.nist.gov/vuln/detail/CVE-2024-3094"
        );
    }

    #[test]
    fn a_wait_for_approval_is_one_change_per_pr_head() {
        let waiting = |head: &str| {
            let action = Action::AwaitingApproval {
                number: 9,
                url: "https://github.example/pull/9".into(),
                head: head.into(),
                approvals: Approvals {
                    needed: 2,
                    given: Some(vec!["alice".into()]),
                    from: vec!["salon/platform".into()],
                },
                since: now(),
            };
            of_cycle(&[report("prod", promote("1.1.0"), action)], "https://a")
        };
        let first = waiting("abc");
        assert_eq!(first[0].kind, Kind::AwaitingApproval);
        assert_eq!(
            first[0].reason,
            "needs 1 more approval(s) from salon/platform: comment /approve on the PR"
        );
        assert_eq!(first[0].change, waiting("abc")[0].change, "the same head");
        let pushed_again = waiting("def");
        assert_ne!(first[0].change, pushed_again[0].change, "a new head");
    }

    fn calls(system: &str, calls: u64, errors: u64) -> ApiCounts {
        let api = ApiMetrics::default();
        for i in 0..calls {
            api.call(system, "op");
            if i < errors {
                api.error(system, "op");
            }
        }
        api.snapshot()
    }

    #[test]
    fn a_system_failing_every_call_for_n_cycles_is_announced_once_and_its_recovery_recorded() {
        let mut h = Health::new(3);
        // A start: the first healthy look records "ok" (the ledger may hold an old failure).
        let o = h.observe(&calls("github", 4, 0));
        assert_eq!(o.record, [("unhealthy/github".to_owned(), "ok".to_owned())]);
        assert!(h.observe(&calls("github", 4, 0)).record.is_empty());
        assert!(h.observe(&calls("github", 4, 4)).send.is_empty());
        assert!(h.observe(&calls("github", 2, 2)).send.is_empty());
        let third = h.observe(&calls("github", 3, 3));
        assert_eq!(third.send.len(), 1);
        assert_eq!(third.send[0].kind, Kind::Unhealthy);
        assert_eq!(third.send[0].key, "unhealthy/github");
        assert!(h.observe(&calls("github", 3, 3)).send.is_empty(), "once");
        // Some calls succeed: not failing every call, recovered.
        let o = h.observe(&calls("github", 3, 2));
        assert_eq!(o.record, [("unhealthy/github".to_owned(), "ok".to_owned())]);
        assert!(h.observe(&calls("ecr", 0, 0)).send.is_empty());
    }

    struct Rig {
        world: Arc<World>,
        metrics: NotifyMetrics,
        clock: Arc<dyn Clock>,
    }

    impl Rig {
        fn new() -> Self {
            let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(now()));
            Self {
                world: World::salon_on(clock.clone()),
                metrics: NotifyMetrics::default(),
                clock,
            }
        }

        /// A notifier over the rig's ledger (a new one is a restart, or another replica).
        fn notifier(&self, sinks: &[(&Arc<FakeSink>, Filter)], attempts: u32) -> Notifier {
            let routes = sinks
                .iter()
                .map(|(s, f)| Route {
                    sink: (*s).clone(),
                    filter: f.clone(),
                })
                .collect();
            Notifier::start(
                routes,
                self.world.clone(),
                self.clock.clone(),
                self.metrics.clone(),
                attempts,
            )
        }

        fn count(&self, sink: &str, event: &str, result: &str) -> u64 {
            self.metrics
                .notifications
                .get_or_create(&crate::metrics::NotificationLabels {
                    sink: sink.into(),
                    event: event.into(),
                    result: result.into(),
                })
                .get()
        }
    }

    fn promoted(change: &str) -> Notification {
        Notification::new(Kind::Promoted, "user_service", Some("dev"), change.into())
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_secs(600)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn each_change_is_announced_once_across_cycles_restarts_and_replicas() {
        let rig = Rig::new();
        let sink = FakeSink::named("slack");
        let first = rig.notifier(&[(&sink, Filter::default())], 3);
        first.submit(vec![promoted("#7 abc")]);
        first.submit(vec![promoted("#7 abc")]);
        settle().await;
        assert_eq!(sink.log(), ["promoted user_service/dev"]);
        assert_eq!(
            rig.world.calls("announce"),
            1,
            "the second is known in memory"
        );
        // A restart, or a second replica: the ledger knows it.
        let second = rig.notifier(&[(&sink, Filter::default())], 3);
        second.submit(vec![promoted("#7 abc")]);
        settle().await;
        assert_eq!(sink.sent().len(), 1, "never twice");
        second.submit(vec![promoted("#8 def")]);
        settle().await;
        assert_eq!(sink.sent().len(), 2, "a new change is announced");
        assert_eq!(rig.count("slack", "promoted", "sent"), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_notification_recorded_but_not_delivered_before_a_kill_is_delivered_once_by_the_restart()
     {
        let rig = Rig::new();
        let (slack, hook) = (FakeSink::named("slack"), FakeSink::named("hook"));
        let sinks = [(&slack, Filter::default()), (&hook, Filter::default())];
        slack.slow(Duration::from_secs(3600));
        let first = rig.notifier(&sinks, 3);
        first.submit(vec![promoted("#7 abc")]);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let id = delivery_id(&promoted("#7 abc"));
        assert_eq!(hook.ids(), std::slice::from_ref(&id));
        assert!(slack.sent().is_empty(), "still sending");
        let owed = BTreeMap::from([(id.clone(), vec!["slack".to_owned()])]);
        assert_eq!(rig.world.outbox(), owed, "the hook's delivery is struck");
        // kill -9 on the same clone: every task stops where it is, then a restart.
        first.finish(Duration::ZERO).await;
        rig.world.restart();
        slack.slow(Duration::ZERO);
        let second = rig.notifier(&sinks, 3);
        settle().await;
        assert_eq!(
            slack.ids(),
            std::slice::from_ref(&id),
            "under the same delivery id"
        );
        assert_eq!(
            hook.ids(),
            [id],
            "the sink that had it is not sent it again"
        );
        assert!(rig.world.outbox().is_empty());
        // Announced and delivered: neither the cycles nor another restart send it again.
        second.submit(vec![promoted("#7 abc")]);
        settle().await;
        second.finish(Duration::from_secs(60)).await;
        rig.world.restart();
        let third = rig.notifier(&sinks, 3);
        third.submit(vec![promoted("#7 abc")]);
        settle().await;
        assert_eq!((slack.sent().len(), hook.sent().len()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_the_ledger_could_not_strike_from_the_outbox_is_struck_with_the_next() {
        let rig = Rig::new();
        let sink = FakeSink::named("slack");
        rig.world.fail("delivered", ErrorKind::Transient);
        let n = rig.notifier(&[(&sink, Filter::default())], 3);
        n.submit(vec![promoted("#7 abc")]);
        settle().await;
        assert_eq!(sink.sent().len(), 1);
        assert_eq!(rig.world.calls("delivered"), 3, "tried three times");
        assert_eq!(
            rig.world.outbox().len(),
            1,
            "kept: not known to be delivered"
        );
        rig.world.heal("delivered");
        n.submit(vec![promoted("#8 def")]);
        settle().await;
        assert!(rig.world.outbox().is_empty(), "both struck in one write");
        assert_eq!(rig.world.calls("delivered"), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn while_the_ledger_cannot_strike_deliveries_only_the_newest_strikes_wait_in_memory() {
        let rig = Rig::new();
        let sink = FakeSink::named("slack");
        rig.world.fail("delivered", ErrorKind::Transient);
        let n = rig.notifier(&[(&sink, Filter::default())], 1);
        let sent = deliver::STRIKES_KEPT + 4;
        for i in 0..sent {
            n.submit(vec![promoted(&format!("#{i}"))]);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        settle().await;
        assert_eq!(sink.sent().len(), sent);
        rig.world.heal("delivered");
        n.submit(vec![promoted("#last")]);
        settle().await;
        // The oldest four strikes were forgotten: those stay in the outbox (a successor
        // would send them again); every other one is struck.
        assert_eq!(rig.world.outbox().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_sink_is_retried_with_backoff_then_counted_and_never_delays_another() {
        let rig = Rig::new();
        let (down, up) = (FakeSink::named("down"), FakeSink::named("up"));
        down.fail_next(100, ErrorKind::Transient);
        let n = rig.notifier(&[(&down, Filter::default()), (&up, Filter::default())], 4);
        let start = tokio::time::Instant::now();
        n.submit(vec![promoted("#7 abc")]);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(up.sent().len(), 1, "the healthy sink has it at once");
        assert_eq!(down.attempts(), 1);
        // 1 s, 2 s, 4 s later: four attempts in all, then given up.
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(down.attempts(), 4);
        assert!(start.elapsed() >= Duration::from_secs(7));
        assert_eq!(rig.count("down", "promoted", "failed"), 1);
        assert_eq!(rig.count("up", "promoted", "sent"), 1);
        let retries = rig
            .metrics
            .retries
            .get_or_create(&crate::metrics::SinkLabels {
                sink: "down".into(),
            })
            .get();
        assert_eq!(retries, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_sink_delays_neither_the_caller_nor_the_other_sinks() {
        let rig = Rig::new();
        let (slow, fast) = (FakeSink::named("slow"), FakeSink::named("fast"));
        slow.slow(Duration::from_secs(3600));
        let n = rig.notifier(&[(&slow, Filter::default()), (&fast, Filter::default())], 3);
        let start = tokio::time::Instant::now();
        n.submit(vec![promoted("#7 abc")]);
        n.submit(vec![promoted("#8 def")]);
        assert_eq!(start.elapsed(), Duration::ZERO, "submitting never waits");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(fast.sent().len(), 2);
        assert!(slow.sent().is_empty());
        tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
        assert_eq!(slow.sent().len(), 2, "in order, in its own time");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sink_that_refuses_is_not_retried_and_a_recovering_one_delivers() {
        let rig = Rig::new();
        let (refusing, flaky) = (FakeSink::named("refusing"), FakeSink::named("flaky"));
        refusing.fail_next(1, ErrorKind::Rejected);
        flaky.fail_next(2, ErrorKind::Throttled);
        let n = rig.notifier(
            &[(&refusing, Filter::default()), (&flaky, Filter::default())],
            5,
        );
        n.submit(vec![promoted("#7 abc")]);
        settle().await;
        assert_eq!(refusing.attempts(), 1, "a 4xx is not retried");
        assert_eq!(rig.count("refusing", "promoted", "failed"), 1);
        assert_eq!(flaky.attempts(), 3);
        assert_eq!(flaky.sent().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn filters_choose_the_sinks_and_what_no_sink_takes_costs_no_ledger_write() {
        let rig = Rig::new();
        let (prod_only, all) = (FakeSink::named("prod"), FakeSink::named("all"));
        let prod = Filter {
            events: [Kind::Promoted].into(),
            environments: ["prod".to_owned()].into(),
        };
        let rollbacks = Filter {
            events: [Kind::RolledBack].into(),
            environments: Default::default(),
        };
        let n = rig.notifier(&[(&prod_only, prod), (&all, rollbacks)], 3);
        n.submit(vec![promoted("#7 abc")]);
        settle().await;
        assert_eq!(rig.world.calls("announce"), 0);
        let mut in_prod = promoted("#9 fff");
        in_prod.environment = Some("prod".into());
        in_prod.key = "promoted/user_service/prod".into();
        n.submit(vec![in_prod]);
        settle().await;
        assert_eq!(prod_only.log(), ["promoted user_service/prod"]);
        assert!(all.sent().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_ledger_cannot_record_nothing_is_sent_but_unhealthy_is() {
        let rig = Rig::new();
        let sink = FakeSink::named("slack");
        rig.world.fail("announce", ErrorKind::Transient);
        let n = rig.notifier(&[(&sink, Filter::default())], 3);
        let mut unhealthy = Notification::new(Kind::Unhealthy, "github", None, "failing".into());
        unhealthy.reason = "every call failed".into();
        n.submit(vec![promoted("#7 abc"), unhealthy]);
        settle().await;
        assert_eq!(sink.log(), ["unhealthy github/-"]);
        assert_eq!(rig.count("slack", "promoted", "dropped"), 1);
        assert_eq!(rig.world.calls("announce"), 3, "tried three times");
    }
}
