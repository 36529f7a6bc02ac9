//! Human-readable tables of a cycle's outcome (for `plan`, `once` and the demo) and of a
//! rescan (`tugboat rescan`).

use std::fmt::Write;

use serde_json::{Value, json};

use crate::domain::plan::Decision;
use crate::engine::rescan::{IssueAction, RescanReport};
use crate::engine::{Action, Approvals, EnvReport, Verification};

fn action_text(a: &Action) -> String {
    match a {
        Action::None => "-".into(),
        Action::Opened { number, .. } => format!("opened PR #{number}"),
        Action::Updated { number, .. } => format!("updated PR #{number}"),
        Action::AwaitingApproval {
            number, approvals, ..
        } => {
            let from = if approvals.from.is_empty() {
                "a writer".to_owned()
            } else {
                approvals.from.join(", ")
            };
            let missing = approvals.missing().unwrap_or(1);
            format!("PR #{number} awaits {missing} more approval(s) from {from}")
        }
        Action::Held { number, by, .. } => format!("PR #{number} held by @{by}"),
        Action::Queued {
            number, position, ..
        } => format!("PR #{number} is in the merge queue (position {position})"),
        Action::AwaitingReview {
            number, missing, ..
        } => format!(
            "PR #{number} awaits {missing} approving review(s) GitHub requires: a person with write access must review it, or exempt the tugboat App in the ruleset's bypass list"
        ),
        Action::EnvironmentHeld { issue, .. } => format!("held: opened issue #{issue}"),
        Action::WaitingForChecks {
            number,
            checks,
            never_reported,
            ..
        } => checks_row(*number, checks, *never_reported),
        Action::WaitingForWindow { number, opens, .. } => match opens {
            Some(t) => format!(
                "PR #{number} waits for the promotion window ({})",
                t.format("%a %Y-%m-%d %H:%M UTC")
            ),
            None => format!("PR #{number} waits for a promotion window"),
        },
        Action::WaitingForSyncWindow {
            number, windows, ..
        } => format!(
            "PR #{number} waits: an Argo CD sync window denies syncs ({})",
            windows.join("; ")
        ),
        Action::Closed { number, .. } => format!("closed PR #{number}: its image is refused now"),
        Action::Merged {
            number,
            verification,
            ..
        } => format!("merged PR #{number}; {}", verification.summary()),
        Action::RolledBack {
            bad,
            number,
            verification,
            ..
        } => format!(
            "rolled back PR #{bad} with PR #{number}; {}",
            verification.summary()
        ),
        Action::Failed { error } => format!("error: {error}"),
    }
}

/// The policy parameters of a row as `name@version`, relative to `prefix`.
fn policy_text(r: &EnvReport, prefix: &str) -> String {
    if r.policy.is_empty() {
        return "-".into();
    }
    r.policy
        .iter()
        .map(|s| {
            format!(
                "{}@{}",
                s.name.strip_prefix(prefix).unwrap_or(&s.name),
                s.version
            )
        })
        .collect::<Vec<_>>()
        .join("+")
}

/// The longest common prefix of every policy parameter name, cut after a `/`.
fn common_prefix(reports: &[EnvReport]) -> String {
    let mut names = reports
        .iter()
        .flat_map(|r| r.policy.iter().map(|s| s.name.as_str()));
    let Some(first) = names.next() else {
        return String::new();
    };
    let mut len = first.len();
    for n in names {
        len = first
            .bytes()
            .zip(n.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    first[..len]
        .rfind('/')
        .map_or(String::new(), |i| first[..=i].to_owned())
}

/// Why the decision is what it is, for the REASON column.
fn reason_text(d: &Decision) -> String {
    match d {
        Decision::UpToDate { deployed } => deployed
            .split_once(" (")
            .map_or("-".to_owned(), |(_, note)| {
                note.trim_end_matches(')').to_owned()
            }),
        Decision::Promote { .. } => "scan gate passed".to_owned(),
        Decision::Blocked { reasons, .. } => reasons.join("; "),
        Decision::Waiting { reason, .. }
        | Decision::NoCandidate { reason }
        | Decision::BlockedByPolicy { reason } => reason.clone(),
        Decision::Held { .. } => d.to_string().trim_start_matches("held: ").to_owned(),
    }
}

/// A cell on one line: a multi-line reason (a policy's parse error, say) is folded, its lines
/// joined with ` / ` (the JSON output and the logs keep the full text).
fn one_line(cell: String) -> String {
    if !cell.contains(['\n', '\r']) {
        return cell;
    }
    cell.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// A fixed-width table: service, environment, what is deployed, the candidate, the decision,
/// the policy parameters (with versions) it came from, the action taken, and the reason.
pub fn table(reports: &[EnvReport]) -> String {
    let prefix = common_prefix(reports);
    let rows: Vec<[String; 8]> = reports
        .iter()
        .map(|r| {
            [
                r.service.clone(),
                r.environment.clone(),
                r.deployed.as_deref().map_or("-".into(), |d| {
                    d.rsplit_once('/').map_or(d, |x| x.1).to_owned()
                }),
                r.decision
                    .candidate()
                    .map_or("-".into(), |c| c.tag.to_string()),
                r.decision.kind().to_owned(),
                policy_text(r, &prefix),
                action_text(&r.action),
                reason_text(&r.decision),
            ]
            .map(one_line)
        })
        .collect();
    grid(
        [
            "SERVICE",
            "ENV",
            "DEPLOYED",
            "CANDIDATE",
            "DECISION",
            "POLICY",
            "ACTION",
            "REASON",
        ],
        &rows,
    )
}

/// GitHub writes (content-creating REST requests, which its secondary limits count) of a
/// promotion that merges by itself: its PR, labels, gate status, merge, deploy status, the
/// edit settling its labels with the outcome, and `deployed` moved off the one before
/// (`tests/it/e2e.rs` measures it against the GitHub stand-in).
pub const WRITES_SELF_MERGING: u64 = 7;
/// GitHub writes of opening a promotion PR that waits for approvals: the PR, its labels and
/// its gate status (bringing an open one to a new tag costs two: its body and the status).
pub const WRITES_FOR_APPROVAL: u64 = 3;

/// The least time `writes` take under a budget of `per_minute` and `per_hour`: the last one
/// waits for every full window before it to pass (whole minutes, whole hours).
pub fn least_time(writes: u64, per_minute: usize, per_hour: usize) -> std::time::Duration {
    let (minute, hour) = (per_minute.max(1) as u64, per_hour.max(1) as u64);
    let before = writes.saturating_sub(1);
    std::time::Duration::from_secs((before / minute * 60).max(before / hour * 3600))
}

/// What a plan's promotions would cost in GitHub writes, against the write budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteCost {
    /// Promotions that merge by themselves, and those that open a PR for approval.
    pub merging: usize,
    pub for_approval: usize,
    /// The PRs they take, each way: one per promotion, or one per group PR (a group of more
    /// than its `max` takes several).
    pub prs_merging: usize,
    pub prs_for_approval: usize,
    /// How many of the promotions ride in group PRs.
    pub grouped: usize,
    /// The writes they would spend (an estimate: the costs above, per PR).
    pub writes: u64,
    /// The budget: writes a minute and an hour.
    pub per_minute: usize,
    pub per_hour: usize,
    /// The least time GitHub's limits allow for those writes.
    pub least: std::time::Duration,
}

impl WriteCost {
    /// The cost of `reports`' promotions; `None` when the plan promotes nothing.
    pub fn of(reports: &[EnvReport], per_minute: usize, per_hour: usize) -> Option<Self> {
        let promoting: Vec<&EnvReport> = reports
            .iter()
            .filter(|r| matches!(r.decision, Decision::Promote { .. }))
            .collect();
        let for_approval = promoting.iter().filter(|r| r.approvals.is_some()).count();
        let merging = promoting.len() - for_approval;
        if promoting.is_empty() {
            return None;
        }
        // (environment, group) → (promotions, the group's max, whether it waits for approval).
        let mut groups: std::collections::BTreeMap<(&str, &str), (usize, usize, bool)> =
            std::collections::BTreeMap::new();
        let (mut prs_merging, mut prs_for_approval) = (0, 0);
        for r in &promoting {
            match &r.group {
                Some(g) => {
                    let e = groups
                        .entry((&r.environment, &g.name))
                        .or_insert((0, g.max, false));
                    e.0 += 1;
                    e.2 |= r.approvals.is_some();
                }
                None if r.approvals.is_some() => prs_for_approval += 1,
                None => prs_merging += 1,
            }
        }
        let mut grouped = 0;
        for (n, max, approval) in groups.into_values() {
            grouped += n;
            let prs = n.div_ceil(max.max(1));
            if approval {
                prs_for_approval += prs;
            } else {
                prs_merging += prs;
            }
        }
        let writes = prs_merging as u64 * WRITES_SELF_MERGING
            + prs_for_approval as u64 * WRITES_FOR_APPROVAL;
        Some(Self {
            merging,
            for_approval,
            prs_merging,
            prs_for_approval,
            grouped,
            writes,
            per_minute,
            per_hour,
            least: least_time(writes, per_minute, per_hour),
        })
    }

    /// One paragraph for the plan's table.
    pub fn text(&self) -> String {
        let least = self.least.as_secs();
        let pace = match least {
            0 => "the budget allows them at once".to_owned(),
            s if s < 3600 => format!("the budget spreads them over at least {} min", s / 60),
            s => format!(
                "the budget spreads them over at least {} h {} min",
                s / 3600,
                s % 3600 / 60
            ),
        };
        let grouped = match self.grouped {
            0 => String::new(),
            n => format!("; {n} of the promotions ride in group PRs"),
        };
        format!(
            "GitHub write budget: {} a minute and {} an hour. This plan's {} promotion(s) would spend about {} writes ({} PR(s) merging by themselves at {WRITES_SELF_MERGING}, {} opening for approval at {WRITES_FOR_APPROVAL}{grouped}): {pace}.\n",
            self.per_minute,
            self.per_hour,
            self.merging + self.for_approval,
            self.writes,
            self.prs_merging,
            self.prs_for_approval,
        )
    }

    /// The same for machines (`plan --output json`'s `write_budget`).
    pub fn json(&self) -> Value {
        json!({
            "per_minute": self.per_minute, "per_hour": self.per_hour,
            "promotions_merging": self.merging, "promotions_for_approval": self.for_approval,
            "prs_merging": self.prs_merging, "prs_for_approval": self.prs_for_approval,
            "promotions_grouped": self.grouped,
            "writes": self.writes, "least_seconds": self.least.as_secs(),
        })
    }
}

/// Columns padded to their widest cell (at most 70), the last one unpadded.
fn grid<const N: usize>(head: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = head.map(str::len);
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count()).min(70);
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{:w$}  ", c, w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&head.map(str::to_owned));
    for row in rows {
        line(row);
    }
    out
}

fn issue_text(a: &IssueAction) -> String {
    match a {
        IssueAction::None => "-".into(),
        IssueAction::Unchanged { number, .. } => format!("#{number} unchanged"),
        IssueAction::Opened { number, .. } => format!("opened #{number}"),
        IssueAction::Updated { number, .. } => format!("updated #{number}"),
        IssueAction::Closed { number, .. } => format!("closed #{number}"),
        IssueAction::Would(what) => format!("would {what}"),
        IssueAction::Failed(e) => format!("error: {e}"),
    }
}

/// One row of the rescan table: a deployed image of `service` in scope.
fn rescan_row(service: &str, row: &crate::domain::rescan::Row, issue: &str) -> [String; 8] {
    let d = &row.deployed;
    let (findings, verdict) = match &row.unknown {
        Some(why) => (
            format!("{} (last known)", row.findings.len()),
            format!("no fresh scan: {why}"),
        ),
        None => (
            row.findings.len().to_string(),
            if row.blocked { "BLOCKED" } else { "ok" }.to_owned(),
        ),
    };
    [
        service.to_owned(),
        d.environment.clone(),
        d.reference
            .rsplit_once('/')
            .map_or(d.reference.as_str(), |x| x.1)
            .to_owned(),
        d.digest.as_str().chars().take(19).collect(),
        findings,
        if row.new.is_empty() {
            "-".into()
        } else {
            row.new.join(",")
        },
        verdict,
        issue.to_owned(),
    ]
}

/// The rescan as a table (service, environment, image, digest, findings, new, verdict, issue),
/// then each problem, then one summary line.
pub fn rescan_table(r: &RescanReport) -> String {
    let mut rows: Vec<[String; 8]> = Vec::new();
    for s in &r.services {
        let issue = issue_text(&s.issue);
        if !s.rows.iter().any(|r| r.in_scope) {
            rows.push([
                s.service.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                if s.problems.is_empty() {
                    "nothing deployed"
                } else {
                    "error"
                }
                .into(),
                issue.clone(),
            ]);
        }
        for row in s.rows.iter().filter(|r| r.in_scope) {
            rows.push(rescan_row(&s.service, row, &issue));
        }
    }
    let mut out = grid(
        [
            "SERVICE", "ENV", "IMAGE", "DIGEST", "FINDINGS", "NEW", "VERDICT", "ISSUE",
        ],
        &rows,
    );
    for s in &r.services {
        for p in &s.problems {
            let _ = writeln!(out, "{}: {p}", s.service);
        }
    }
    let new: Vec<String> = r
        .new_findings
        .iter()
        .map(|(sev, n)| format!("{n} {sev}"))
        .collect();
    let _ = writeln!(
        out,
        "{} image(s), {} scanning: {} scan(s) started, {} already scanned today; new findings: {}; {:.1}s",
        r.images,
        r.scan_type.as_str(),
        r.scans_started,
        r.already_scanned_today,
        if new.is_empty() {
            "none".to_owned()
        } else {
            new.join(", ")
        },
        r.duration.as_secs_f64()
    );
    out
}

/// What a plan says of the base branch: its rules in one line, and a warning when tugboat
/// cannot meet them.
pub fn branch_text(rules: &crate::ports::BranchRules, warning: Option<&str>) -> String {
    match warning {
        Some(w) => format!("{rules}\nwarning: {w}\n"),
        None => format!("{rules}\n"),
    }
}

/// The base branch's rules in a JSON plan.
pub fn branch_json(rules: &crate::ports::BranchRules, warning: Option<&str>) -> Value {
    json!({
        "branch": rules.branch, "required_checks": rules.required_checks,
        "required_reviews": rules.required_reviews, "merge_queue": rules.merge_queue,
        "signed_commits": rules.signed_commits, "linear_history": rules.linear_history,
        "up_to_date": rules.up_to_date, "unreadable": rules.unreadable,
        "summary": rules.to_string(), "warning": warning,
    })
}

/// The row of a PR waiting for its checks: which, or that expected ones never reported.
fn checks_row(number: u64, checks: &[String], never_reported: bool) -> String {
    match (checks.is_empty(), never_reported) {
        (_, true) => format!(
            "PR #{number} is not merged: expected check(s) {} never reported (checks_settle passed); they may not run on tugboat's branches: fix the workflow, the branch's required checks, or the policy's `checks`",
            checks.join(", ")
        ),
        (true, false) => {
            format!("PR #{number} waits for CI to report its checks (checks_settle)")
        }
        (false, false) => format!("PR #{number} waits for checks {}", checks.join(", ")),
    }
}

fn action_json(a: &Action) -> Value {
    let pr = |kind: &str, number: &u64, url: &str| json!({"kind": kind, "pr": number, "url": url});
    match a {
        Action::None => json!({"kind": "none"}),
        Action::Opened { number, url } => pr("opened", number, url),
        Action::Updated { number, url } => pr("updated", number, url),
        Action::AwaitingApproval { number, url, .. } => pr("awaiting-approval", number, url),
        Action::Held { number, url, by } => {
            json!({"kind": "held", "pr": number, "url": url, "by": by})
        }
        Action::AwaitingReview {
            number,
            url,
            missing,
        } => json!({"kind": "awaiting-review", "pr": number, "url": url, "missing": missing}),
        Action::Queued {
            number,
            url,
            position,
        } => json!({"kind": "queued", "pr": number, "url": url, "position": position}),
        Action::EnvironmentHeld { issue, url, cause } => {
            json!({"kind": "environment-held", "issue": issue, "url": url, "cause": cause.as_str()})
        }
        Action::WaitingForChecks {
            number,
            url,
            checks,
            never_reported,
        } => json!({"kind": "waiting-for-checks", "pr": number, "url": url,
                    "checks": checks, "never_reported": never_reported}),
        Action::WaitingForWindow { number, url, opens } => json!({
            "kind": "waiting-for-window", "pr": number, "url": url,
            "opens": opens.map(|t| t.to_rfc3339()),
        }),
        Action::WaitingForSyncWindow {
            number,
            url,
            windows,
        } => {
            json!({"kind": "waiting-for-sync-window", "pr": number, "url": url, "windows": windows})
        }
        Action::Closed { number, url } => pr("closed", number, url),
        Action::Merged {
            number,
            url,
            sha,
            verification,
            timing,
        } => json!({"kind": "merged", "pr": number, "url": url, "merge_commit": sha,
                   "verified_at": timing.verified_at.to_rfc3339(),
                   "healthy": matches!(verification, Verification::Healthy { .. }),
                   "verification": verification_json(verification)}),
        Action::RolledBack {
            bad,
            number,
            url,
            verification,
            timing,
            ..
        } => json!({"kind": "rolled-back", "bad_pr": bad, "pr": number, "url": url,
                   "verified_at": timing.verified_at.to_rfc3339(),
                   "healthy": matches!(verification, Verification::Healthy { .. }),
                   "verification": verification_json(verification)}),
        Action::Failed { error } => json!({
            "kind": "failed",
            "message": error.to_string(),
            "step": error.step.as_str(),
            "reason": error.metric_label(),
        }),
    }
}

/// Approvals: how many are needed, who gave one (`null` in a plan, which reads no PR), how
/// many are missing, and who may give them.
fn approvals_json(a: &Approvals) -> Value {
    json!({
        "needed": a.needed.max(1), "given": a.given, "missing": a.missing(),
        "from": if a.from.is_empty() {
            json!(["anyone with write access to the GitOps repository"])
        } else {
            json!(a.from)
        },
    })
}

fn verification_json(v: &Verification) -> Value {
    match v {
        Verification::Healthy {
            after, evidence, ..
        } => {
            json!({"outcome": "healthy", "seconds": after.as_secs_f64(),
                   "evidence": evidence.map(|e| e.word())})
        }
        Verification::Failed { reason } => json!({"outcome": "failed", "reason": reason}),
        Verification::Unknown { reason } => json!({"outcome": "unknown", "reason": reason}),
        Verification::Paused { reason } => json!({"outcome": "paused", "reason": reason}),
    }
}

/// The rows as JSON for machines (`tugboat plan --output json`): one object per service and
/// environment with the deployed reference, the candidate, the decision and its reasons, the
/// action taken and the policy parameters (with versions) it came from.
pub fn json(reports: &[EnvReport]) -> Value {
    let rows: Vec<Value> = reports
        .iter()
        .map(|r| {
            let candidate = r.decision.candidate().map(|c| {
                json!({"tag": c.tag.as_str(), "digest": c.digest.as_str(),
                       "pushed_at": c.pushed_at.to_rfc3339()})
            });
            let reasons: Vec<String> = match &r.decision {
                Decision::Blocked { reasons, .. } => reasons.clone(),
                Decision::Waiting { reason, .. }
                | Decision::NoCandidate { reason }
                | Decision::BlockedByPolicy { reason } => vec![reason.clone()],
                Decision::Held { hold, .. } => vec![hold.detail.clone()],
                Decision::UpToDate { .. } | Decision::Promote { .. } => Vec::new(),
            };
            let hold = match &r.decision {
                Decision::Held { hold, issue } => json!({
                    "cause": hold.cause.as_str(), "by": hold.by, "commit": hold.commit,
                    "since": hold.since.to_rfc3339(), "deployed": hold.deployed,
                    "issue": issue, "resume": "an approver comments /resume on the hold issue",
                }),
                _ => Value::Null,
            };
            json!({
                "service": r.service,
                "environment": r.environment,
                "deployed": r.deployed,
                "candidate": candidate,
                "decision": r.decision.kind(),
                "summary": r.decision.to_string(),
                "reasons": reasons,
                "hold": hold,
                "approvals": r.approvals.as_ref().map(approvals_json),
                "signature": r.signature,
                "action": action_json(&r.action),
                "policy": r.policy.iter().map(|p| json!({"name": p.name, "version": p.version})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"version": 1, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_line_reason_is_one_line_in_the_table_and_whole_in_json() {
        let reason = "policy /salon/promotion/services/user_service: environments.dev:\n  unknown field `auto_merg`\n\n  expected one of `tag`, `scan`".to_owned();
        let rows = vec![EnvReport {
            service: "user_service".into(),
            environment: "dev".into(),
            application: "user-service-dev".into(),
            deployed: None,
            deployed_digest: None,
            decision: Decision::BlockedByPolicy {
                reason: reason.clone(),
            },
            action: Action::None,
            policy: vec![],
            rejected: None,
            approvals: None,
            group: None,
            signature: None,
        }];
        let table = table(&rows);
        assert_eq!(table.lines().count(), 2, "a header and one row:\n{table}");
        assert!(
            table.contains("environments.dev: / unknown field `auto_merg` / expected one of"),
            "{table}"
        );
        let json = json(&rows);
        assert_eq!(json["rows"][0]["decision"], "blocked");
        assert_eq!(json["rows"][0]["reasons"][0], reason.as_str());
    }

    #[test]
    fn a_held_row_says_who_which_commit_since_when_and_a_plan_says_which_approvals_are_needed() {
        use crate::domain::hold::{Cause, Hold};
        const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567"; // pragma: allowlist secret
        let hold = Hold {
            service: "user_service".into(),
            environment: "dev".into(),
            cause: Cause::ManualChange,
            by: Some("oncall".into()),
            commit: Some(COMMIT.into()),
            since: "2026-11-30T10:00:00Z".parse().unwrap(),
            deployed: Some("reg/user_service:1.0.0".into()),
            detail: "main deploys reg/user_service:1.0.0, not 1.1.0 that tugboat promoted".into(),
            answered_through: 0,
        };
        let row = |environment: &str, decision, approvals| EnvReport {
            service: "user_service".into(),
            environment: environment.into(),
            application: "user-service-dev".into(),
            deployed: None,
            deployed_digest: None,
            decision,
            action: Action::None,
            policy: vec![],
            rejected: None,
            approvals,
            group: None,
            signature: None,
        };
        let rows = vec![
            row(
                "dev",
                Decision::Held {
                    hold,
                    issue: Some(7),
                },
                None,
            ),
            row(
                "prod",
                Decision::NoCandidate {
                    reason: String::new(),
                },
                Some(Approvals {
                    needed: 2,
                    given: None,
                    from: vec!["salon/platform-leads".into()],
                }),
            ),
        ];
        let text = table(&rows);
        assert!(text.contains("held"), "{text}");
        assert!(
            text.contains("by @oncall; an approver comments /resume on #7"),
            "{text}"
        );
        let v = json(&rows);
        let h = &v["rows"][0]["hold"];
        assert_eq!(v["rows"][0]["decision"], "held");
        assert_eq!(
            (h["cause"].as_str(), h["by"].as_str(), h["issue"].as_u64()),
            (Some("manual-change"), Some("oncall"), Some(7))
        );
        assert_eq!(h["commit"], COMMIT);
        assert_eq!(h["since"], "2026-11-30T10:00:00+00:00");
        let a = &v["rows"][1]["approvals"];
        assert_eq!(
            (a["needed"].as_u64(), &a["given"], &a["missing"]),
            (Some(2), &Value::Null, &Value::Null)
        );
        assert_eq!(a["from"][0], "salon/platform-leads");
        let given = Approvals {
            needed: 2,
            given: Some(vec!["alice".into()]),
            from: vec![],
        };
        assert_eq!(approvals_json(&given)["missing"], 1);
        assert_eq!(
            approvals_json(&given)["from"][0],
            "anyone with write access to the GitOps repository"
        );
    }

    #[test]
    fn a_plan_says_what_its_promotions_cost_in_github_writes_and_how_long_the_budget_takes() {
        use crate::domain::image::{Digest, Tag};
        use crate::domain::select::Candidate;
        let candidate = Candidate {
            tag: Tag::parse("1.1.0").unwrap(),
            digest: Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap(),
            pushed_at: "2026-11-30T10:00:00Z".parse().unwrap(),
        };
        let row = |approvals: Option<Approvals>| EnvReport {
            service: "user_service".into(),
            environment: "dev".into(),
            application: "user-service-dev".into(),
            deployed: None,
            deployed_digest: None,
            decision: Decision::Promote {
                from: None,
                to: candidate.clone(),
            },
            action: Action::None,
            policy: vec![],
            rejected: None,
            approvals,
            group: None,
            signature: None,
        };
        let asked = Some(Approvals::default());
        assert_eq!(WriteCost::of(&[], 80, 500), None, "nothing to promote");

        let few = WriteCost::of(&[row(None), row(asked.clone())], 80, 500).unwrap();
        assert_eq!((few.writes, few.least.as_secs()), (10, 0));
        assert!(few.text().contains("about 10 writes (1 PR(s) merging by themselves at 7, 1 opening for approval at 3): the budget allows them at once"), "{}", few.text());

        // 300 services rebuilt at once, all merging by themselves in dev: 2,100 writes, of
        // which the hourly 500 allows the last only four hours after the first.
        let fleet: Vec<EnvReport> = (0..300).map(|_| row(None)).collect();
        let cost = WriteCost::of(&fleet, 80, 500).unwrap();
        assert_eq!((cost.writes, cost.least.as_secs()), (2100, 4 * 3600));
        assert!(
            cost.text().contains("at least 4 h 0 min"),
            "{}",
            cost.text()
        );
        assert_eq!(cost.json()["least_seconds"], 14_400);
        // Under the hourly cap, the minute paces: 70 writes at 20 a minute.
        let ten: Vec<EnvReport> = (0..10).map(|_| row(None)).collect();
        assert_eq!(WriteCost::of(&ten, 20, 500).unwrap().least.as_secs(), 180);

        // The same 300 grouped by 100: three PRs, 21 writes, at once.
        let rule =
            crate::domain::group::Rule::new("base-image", std::time::Duration::from_secs(120), 100);
        let grouped: Vec<EnvReport> = (0..300)
            .map(|_| EnvReport {
                group: Some(rule.clone().unwrap()),
                ..row(None)
            })
            .collect();
        let cost = WriteCost::of(&grouped, 80, 500).unwrap();
        assert_eq!(
            (cost.prs_merging, cost.writes, cost.least.as_secs()),
            (3, 21, 0)
        );
        assert!(
            cost.text().contains("300 promotion(s) would spend about 21 writes (3 PR(s) merging by themselves at 7, 0 opening for approval at 3; 300 of the promotions ride in group PRs)"),
            "{}",
            cost.text()
        );
    }
}
