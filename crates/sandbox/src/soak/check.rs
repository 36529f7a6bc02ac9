//! The soak's invariants, read from the stand-ins once the fleet has settled: what GitHub
//! holds (PRs, merges, reports), what main deploys, and what the sinks received.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Duration;

use super::{Push, PushKind};
use crate::Sandbox;

/// What the check found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Each broken invariant, said so that it can be looked for in the replicas' logs.
    pub violations: Vec<String>,
    /// Promotion PRs merged, by environment.
    pub merged: BTreeMap<String, usize>,
    /// Rollback PRs merged.
    pub rollbacks: usize,
    /// Clean pushes a newer push superseded before they reached dev (not a violation:
    /// tugboat promotes the newest).
    pub superseded: usize,
    /// Push → dev Healthy (the `promoted` notification's arrival), for pushes made while no
    /// fault was injected, and while faults were.
    pub calm: Vec<Duration>,
    pub faulty: Vec<Duration>,
    /// Notifications the webhook sink accepted.
    pub notifications: usize,
    /// Of those, deliveries made again under the same delivery id after a replica was
    /// killed: the outbox's redelivery of what the killed one sent but had not yet struck
    /// (at least once, with an idempotency key: not a violation).
    pub redelivered: usize,
}

/// Whether `tag` is one of the words of `text` (so that `2.1.0` is not found in `2.11.0`).
pub fn names(text: &str, tag: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'))
        .any(|w| w == tag)
}

/// The tag each service must end at in every environment: its last push, which the soak
/// makes a clean one for every service once the faults stop (`drain`), or what it started
/// with.
fn expected(sb: &Sandbox, pushes: &[Push]) -> BTreeMap<String, String> {
    let mut want: BTreeMap<String, String> = sb
        .fleet
        .services
        .iter()
        .map(|(s, _)| (s.clone(), sb.fleet.deployed_tag()))
        .collect();
    for p in pushes.iter().filter(|p| p.kind == PushKind::Clean) {
        want.insert(p.service.clone(), p.tag.clone());
    }
    want
}

/// What keeps the fleet from being settled: a service not at its last clean push in an
/// environment, or one of tugboat's PRs still open. Empty when settled.
pub fn unsettled(sb: &Sandbox, pushes: &[Push]) -> Vec<String> {
    let mut left = Vec::new();
    for (service, tag) in expected(sb, pushes) {
        for env in &sb.fleet.environments {
            let file = sb
                .github
                .read_file("main", &crate::file_of(&service, env))
                .unwrap_or_default();
            if !names(&file, &tag) {
                left.push(format!("{service} in {env} is not at {tag}"));
            }
        }
    }
    for pr in sb.github.pulls() {
        if pr.state == "open" && pr.head.starts_with("tugboat/") {
            left.push(format!("#{} \"{}\" is still open", pr.number, pr.title));
        }
    }
    left
}

/// Settled, and each service's last clean push announced: its `promoted` notification
/// comes after the verification and the delivery, seconds after main holds the tag.
pub fn settled(sb: &Sandbox, pushes: &[Push]) -> bool {
    unsettled(sb, pushes).is_empty() && unannounced(sb, pushes) == 0
}

/// How many services' last clean push is not announced yet.
fn unannounced(sb: &Sandbox, pushes: &[Push]) -> usize {
    let received = delivered(sb);
    expected(sb, pushes)
        .into_iter()
        .filter(|(service, tag)| {
            pushes
                .iter()
                .any(|p| &p.service == service && &p.tag == tag)
        })
        .filter(|(service, tag)| promoted(&received, service, tag).is_none())
        .count()
}

/// The notifications the webhook sink accepted.
fn delivered(sb: &Sandbox) -> Vec<crate::sinks::Received> {
    sb.sinks
        .received()
        .into_iter()
        .filter(|r| r.sink == "webhook" && r.status < 300)
        .collect()
}

/// The announcement that `service` runs `tag` in dev, among `received`.
fn promoted<'r>(
    received: &'r [crate::sinks::Received],
    service: &str,
    tag: &str,
) -> Option<&'r crate::sinks::Received> {
    received.iter().find(|r| {
        r.body["event"] == "promoted"
            && r.body["environment"] == "dev"
            && r.body["service"] == service
            && names(r.body["to"].as_str().unwrap_or_default(), tag)
    })
}

/// Every invariant, over what the stand-ins hold now; `kills` are when replicas were killed.
pub fn check(sb: &Sandbox, pushes: &[Push], kills: &[DateTime<Utc>]) -> Outcome {
    let mut out = Outcome::default();
    let left = unsettled(sb, pushes);
    if !left.is_empty() {
        out.violations.push(format!(
            "promotions lost or unfinished ({}): {}",
            left.len(),
            left.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
        ));
    }
    pull_requests(sb, pushes, &mut out);
    notifications(sb, pushes, kills, &mut out);
    out
}

/// What makes a PR the one PR of its change: its title, and for a rollback the promotion
/// it reverts too (two failed promotions of one service, with nothing Healthy between them,
/// are each rolled back to the same release under the same title).
fn opened_as(pr: &crate::github::Pr) -> String {
    let reverted = tugboat::domain::promotion::PromotionState::parse(&pr.body)
        .ok()
        .and_then(|s| s.rollback_of);
    match reverted {
        Some(n) => format!("{} (of #{n})", pr.title),
        None => pr.title.clone(),
    }
}

/// No PR opened twice, merged twice or reported twice; no refused or bad digest promoted.
fn pull_requests(sb: &Sandbox, pushes: &[Push], out: &mut Outcome) {
    let kind_of: BTreeMap<(&str, &str), PushKind> = pushes
        .iter()
        .map(|p| ((p.service.as_str(), p.tag.as_str()), p.kind))
        .collect();
    let mut by_title: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for pr in sb.github.pulls() {
        if !pr.head.starts_with("tugboat/") {
            continue;
        }
        by_title.entry(opened_as(&pr)).or_default().push(pr.number);
        let reports = pr
            .comments
            .iter()
            .filter(|(_, b)| b.contains("<!-- tugboat:verified "))
            .count()
            + usize::from(pr.body.contains("<!-- tugboat:verified "));
        if reports > 1 {
            out.violations.push(format!(
                "#{} \"{}\" reported {reports} times",
                pr.number, pr.title
            ));
        }
        if pr.merged_at.is_none() {
            continue;
        }
        if pr.head.starts_with("tugboat/rollback/") {
            out.rollbacks += 1;
            continue;
        }
        let env = pr.head.split('/').nth(1).unwrap_or("?").to_owned();
        *out.merged.entry(env.clone()).or_default() += 1;
        for ((service, tag), kind) in &kind_of {
            let this = pr.head.ends_with(&format!("/{service}")) && names(&pr.title, tag);
            let wrong = match kind {
                PushKind::Critical => true,
                PushKind::Crashing => env != "dev",
                PushKind::Clean => false,
            };
            if this && wrong {
                out.violations.push(format!(
                    "#{} promoted {service}:{tag} to {env}, a {kind:?} image",
                    pr.number
                ));
            }
        }
    }
    for (title, numbers) in by_title {
        if numbers.len() > 1 {
            out.violations.push(format!(
                "\"{title}\" opened {} times: {numbers:?}",
                numbers.len()
            ));
        }
    }
}

/// Every notification at most once (but a redelivery after a kill, under the same delivery
/// id), every dev promotion of a last clean push announced, and the push → dev Healthy times.
fn notifications(sb: &Sandbox, pushes: &[Push], kills: &[DateTime<Utc>], out: &mut Outcome) {
    let received = delivered(sb);
    out.notifications = received.len();
    let mut seen: BTreeMap<(String, String), Vec<Receipt>> = BTreeMap::new();
    for r in &received {
        let key = (
            r.body["key"].as_str().unwrap_or_default().to_owned(),
            r.body["change"].as_str().unwrap_or_default().to_owned(),
        );
        let id = r.body["id"].as_str().unwrap_or_default().to_owned();
        seen.entry(key).or_default().push((id, r.at));
    }
    for ((key, change), deliveries) in seen {
        if deliveries.len() < 2 {
            continue;
        }
        if redelivered(&deliveries, kills) {
            out.redelivered += deliveries.len() - 1;
            continue;
        }
        let said: Vec<String> = deliveries
            .iter()
            .map(|(id, at)| format!("{id} at {}", at.format("%H:%M:%S%.3f")))
            .collect();
        out.violations.push(format!(
            "notified {} times: {key} ({change}): {}",
            deliveries.len(),
            said.join(", ")
        ));
    }
    for p in pushes.iter().filter(|p| p.kind == PushKind::Clean) {
        match promoted(&received, &p.service, &p.tag) {
            Some(r) => {
                let took = (r.at - p.at).to_std().unwrap_or_default();
                if p.faulty {
                    out.faulty.push(took);
                } else {
                    out.calm.push(took);
                }
            }
            None => out.superseded += 1,
        }
    }
    for (service, tag) in expected(sb, pushes) {
        let pushed = pushes.iter().any(|p| p.service == service && p.tag == tag);
        if pushed && promoted(&received, &service, &tag).is_none() {
            out.violations.push(format!(
                "{service}:{tag} reached dev but was never announced"
            ));
        }
    }
}

/// A delivery's id and when it arrived.
type Receipt = (String, DateTime<Utc>);

/// Whether `deliveries` of one change (oldest first) are one delivery and its redeliveries:
/// one delivery id, and a replica killed before each repeat and after the one before it.
fn redelivered(deliveries: &[Receipt], kills: &[DateTime<Utc>]) -> bool {
    let one_id = deliveries.iter().all(|(id, _)| *id == deliveries[0].0);
    one_id
        && deliveries
            .windows(2)
            .all(|w| kills.iter().any(|k| w[0].1 <= *k && *k <= w[1].1))
}

/// What tugboat took for a person's doing, as the replicas' logs say: nobody but tugboat
/// writes to the soak's repository or operates its applications, so each is tugboat
/// distrusting its own record (a head it pushed replaced, approvals voided, a label of its
/// own ignored) or holding an environment for a change that was its own: a violation.
pub fn false_forgeries(logs: &[std::path::PathBuf]) -> Vec<String> {
    const SAID: [&str; 3] = [
        "which tugboat did not write",
        "a head tugboat did not push",
        "environment held",
    ];
    let mut found = Vec::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines().filter(|l| SAID.iter().any(|s| l.contains(s))) {
            found.push(format!(
                "took its own record for someone else's ({}): {}",
                log.file_name().unwrap_or_default().to_string_lossy(),
                line.trim()
            ));
        }
    }
    found
}

/// p50, p95 and the worst of `times`, in seconds.
pub fn percentiles(times: &[Duration]) -> Option<(f64, f64, f64)> {
    if times.is_empty() {
        return None;
    }
    let mut t: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
    t.sort_by(f64::total_cmp);
    let at = |q: f64| t[((t.len() - 1) as f64 * q).round() as usize];
    Some((at(0.5), at(0.95), t[t.len() - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_a_redelivery_only_with_the_same_id_and_a_kill_before_it() {
        let at = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let two = |a: &str, b: &str| vec![(a.to_owned(), at(0)), (b.to_owned(), at(10))];
        assert!(redelivered(&two("x", "x"), &[at(5)]));
        assert!(!redelivered(&two("x", "x"), &[]), "no kill: sent twice");
        assert!(!redelivered(&two("x", "x"), &[at(11)]), "killed after both");
        assert!(!redelivered(&two("x", "y"), &[at(5)]), "two ids: two sends");
    }

    #[test]
    fn a_tag_is_found_as_a_word_and_not_inside_a_longer_one() {
        assert!(names("newTag: 2.1.0\n", "2.1.0"));
        assert!(names("image: r.io/svc:2.1.0", "2.1.0"));
        assert!(!names("newTag: 2.11.0\n", "2.1.0"));
        assert!(!names("newTag: 12.1.0\n", "2.1.0"));
    }

    #[test]
    fn a_replaced_head_a_distrusted_label_or_a_held_environment_in_the_logs_is_a_violation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("tugboat-a.log");
        std::fs::write(
            &log,
            "{\"message\":\"rolling back\"}\n\
             {\"message\":\"ignoring PR #27, which tugboat did not write: its label `tugboat:verifying` was added by someone other than tugboat\"}\n\
             {\"message\":\"a head tugboat did not push: replacing it\"}\n\
             {\"message\":\"environment held: tugboat promotes nothing here until an approver comments /resume\"}\n",
        )
        .unwrap();
        let violations = false_forgeries(&[log]);
        assert_eq!(violations.len(), 3, "{violations:?}");
        assert!(violations[0].contains("#27"));
        assert!(violations[1].contains("a head tugboat did not push"));
    }

    #[test]
    fn percentiles_are_read_off_the_sorted_times() {
        let t: Vec<Duration> = (1..=100).map(Duration::from_secs).collect();
        assert_eq!(percentiles(&t), Some((51.0, 95.0, 100.0)));
        assert_eq!(percentiles(&[]), None);
    }
}
