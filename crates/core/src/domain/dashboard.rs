//! The promotion dashboard: one GitHub issue with a table of every service × environment —
//! what runs (version, digest, since when), the candidate and the decision with its reason,
//! the open PR and the approvals it still needs, holds, and refused or bad digests.
//!
//! The body is a pure function of the rows and of what the issue itself recorded (its
//! `<!-- tugboat:dashboard {…} -->` block keeps, per row, what ran and since when), so it is
//! the same text cycle after cycle until something changes: tugboat edits the issue only
//! then, and a restart or another replica renders the same body from the same issue.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::block;

/// The labels of the dashboard issue.
pub const LABELS: [&str; 2] = ["tugboat", "dashboard"];
/// Its title.
pub const TITLE: &str = "tugboat: promotion dashboard";
const MARKER: &str = "<!-- tugboat:dashboard ";

/// One service in one environment, as the last cycle saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Row {
    pub service: String,
    pub environment: String,
    /// The version main deploys (`1.4.0`, or `@sha256:…`), and its digest when known.
    pub running: Option<String>,
    pub digest: Option<String>,
    /// The newest eligible candidate, when there is one.
    pub candidate: Option<String>,
    /// The decision's word (`promote`, `blocked`, `waiting`, `held`…) and why.
    pub decision: String,
    pub reason: String,
    /// The open promotion PR: number, link, approvals still missing (when it waits for them).
    pub pr: Option<(u64, String, Option<usize>)>,
    /// Why the environment is held, when it is.
    pub hold: Option<String>,
    /// A refused or bad digest, and why.
    pub refused: Option<String>,
}

/// What the issue remembers per row: what ran and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    running: String,
    since: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// `service/environment` → what ran, since when.
    rows: BTreeMap<String, Seen>,
}

/// A wait's reason without its countdown (`soaking in dev until 12:00 UTC (3m left)` →
/// `soaking in dev until 12:00 UTC`): the dashboard changes when the facts do, not each minute.
pub fn steady(reason: &str) -> &str {
    let trimmed = reason.trim_end();
    if let Some(open) = trimmed.rfind(" (")
        && trimmed.ends_with(" left)")
    {
        return &trimmed[..open];
    }
    trimmed
}

/// A table cell: one line, pipes escaped, at most `max` characters.
fn cell(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(max).collect();
    if one_line.chars().count() > max {
        out.push('…');
    }
    out.replace('|', "\\|")
}

/// A digest as the table shows it: its first 12 hex digits, as code.
pub fn short_digest(d: &str) -> String {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    format!("`{}`", &hex[..hex.len().min(12)])
}

/// The dashboard's body for `rows`, given the current body (`previous`, for when each
/// version started running) and `now` (the start of a version first seen now).
pub fn render(rows: &[Row], previous: Option<&str>, now: DateTime<Utc>) -> String {
    let before: State = previous
        .and_then(|b| block::read(b, MARKER))
        .unwrap_or_default();
    let mut state = State::default();
    let mut table = String::from(
        "| Service | Env | Runs | Since | Candidate | Decision | PR | Hold / refused |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut sorted: Vec<&Row> = rows.iter().collect();
    sorted.sort_by(|a, b| (&a.service, &a.environment).cmp(&(&b.service, &b.environment)));
    for r in sorted {
        let key = format!("{}/{}", r.service, r.environment);
        let since = r.running.as_ref().map(|running| {
            let seen = match before.rows.get(&key) {
                Some(s) if &s.running == running => s.clone(),
                _ => Seen {
                    running: running.clone(),
                    since: now,
                },
            };
            state.rows.insert(key.clone(), seen.clone());
            seen.since
        });
        let runs = match (&r.running, &r.digest) {
            (Some(v), Some(d)) if !v.starts_with('@') => {
                format!("{} {}", cell(v, 40), short_digest(d))
            }
            (Some(v), _) => cell(v, 60),
            (None, _) => "—".into(),
        };
        let pr = match &r.pr {
            Some((n, url, Some(missing))) if *missing > 0 => {
                format!("[#{n}]({url}) needs {missing} approval(s)")
            }
            Some((n, url, _)) => format!("[#{n}]({url})"),
            None => "—".into(),
        };
        let flags: Vec<String> = [
            r.hold.as_ref().map(|h| format!("held: {}", cell(h, 120))),
            r.refused
                .as_ref()
                .map(|b| format!("refused: {}", cell(b, 160))),
        ]
        .into_iter()
        .flatten()
        .collect();
        let decision = if r.reason.is_empty() {
            format!("**{}**", r.decision)
        } else {
            format!("**{}**: {}", r.decision, cell(steady(&r.reason), 200))
        };
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            cell(&r.service, 60),
            cell(&r.environment, 30),
            runs,
            since.map_or("—".into(), |s| s.format("%Y-%m-%d %H:%M UTC").to_string()),
            r.candidate.as_deref().map_or("—".into(), |c| cell(c, 40)),
            decision,
            pr,
            if flags.is_empty() {
                "—".into()
            } else {
                flags.join("; ")
            },
        ));
    }
    let body = format!(
        "What runs where, as tugboat's last full cycle saw it. tugboat edits this issue when \
         something changes; comment commands go on the promotion PRs and hold issues.\n\n\
         {table}\n\"Since\" is when this dashboard first saw the version running there.\n"
    );
    block::write(&body, MARKER, &state)
}

/// Whether `body` is a dashboard tugboat wrote (its block reads).
pub fn is_dashboard(body: &str) -> bool {
    block::read::<State>(body, MARKER).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().into()
    }

    fn row(env: &str, running: &str) -> Row {
        Row {
            service: "user_service".into(),
            environment: env.into(),
            running: Some(running.into()),
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            candidate: Some("1.2.0".into()),
            decision: "waiting".into(),
            reason: "soaking in dev until 2026-12-02 12:00 UTC (42m left)".into(),
            pr: None,
            hold: None,
            refused: None,
        }
    }

    #[test]
    fn the_same_facts_render_the_same_body_however_much_later() {
        let rows = vec![row("prod", "1.1.0"), row("dev", "1.2.0")];
        let first = render(&rows, None, at("2026-12-02T10:00:00Z"));
        let mut later_rows = rows.clone();
        later_rows[0].reason = "soaking in dev until 2026-12-02 12:00 UTC (3m left)".into();
        let again = render(&later_rows, Some(&first), at("2026-12-02T11:57:00Z"));
        assert_eq!(first, again);
        assert!(
            first.contains("| user_service | dev | 1.2.0 `aaaaaaaaaaaa` | 2026-12-02 10:00 UTC |"),
            "{first}"
        );
        assert!(first.find("| dev |") < first.find("| prod |"), "sorted");
        assert!(is_dashboard(&first));
    }

    #[test]
    fn a_new_version_starts_its_since_and_the_others_keep_theirs() {
        let first = render(
            &[row("dev", "1.1.0"), row("prod", "1.0.0")],
            None,
            at("2026-12-01T09:00:00Z"),
        );
        let next = render(
            &[row("dev", "1.2.0"), row("prod", "1.0.0")],
            Some(&first),
            at("2026-12-02T10:30:00Z"),
        );
        assert!(
            next.contains("| dev | 1.2.0 `aaaaaaaaaaaa` | 2026-12-02 10:30 UTC |"),
            "{next}"
        );
        assert!(
            next.contains("| prod | 1.0.0 `aaaaaaaaaaaa` | 2026-12-01 09:00 UTC |"),
            "{next}"
        );
    }

    #[test]
    fn prs_holds_and_refusals_are_shown_and_pipes_cannot_break_the_table() {
        let mut r = row("prod", "1.0.0");
        r.pr = Some((7, "https://github.com/o/r/pull/7".into(), Some(1)));
        r.hold = Some("oncall changed main | by hand".into());
        r.refused = Some("1.2.0 marked bad by #5".into());
        let body = render(&[r], None, at("2026-12-02T10:00:00Z"));
        assert!(
            body.contains("[#7](https://github.com/o/r/pull/7) needs 1 approval(s)"),
            "{body}"
        );
        assert!(
            body.contains("held: oncall changed main \\| by hand; refused: 1.2.0 marked bad by #5"),
            "{body}"
        );
        let table_rows = body
            .lines()
            .filter(|l| l.starts_with("| user_service"))
            .count();
        assert_eq!(table_rows, 1);
    }

    #[test]
    fn a_countdown_is_dropped_and_other_parentheses_kept() {
        assert_eq!(
            steady("soaking in dev until 12:00 UTC (3m 5s left)"),
            "soaking in dev until 12:00 UTC"
        );
        assert_eq!(
            steady("waiting for checks (2 pending)"),
            "waiting for checks (2 pending)"
        );
    }
}
