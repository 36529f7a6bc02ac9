//! The words tugboat writes: PR titles and bodies (the evidence), verification reports, and
//! the security issues of the rescan.

use std::fmt::Write;

use crate::domain::gate::{Finding, GateDecision, Severity};
use crate::domain::image::ImageRef;
use crate::domain::policy::{EnvPolicy, PolicySource, RollbackMode};
use crate::domain::rescan::{self, Row};
use crate::domain::select::Candidate;
use crate::domain::signature::SignatureCheck;

/// Everything a promotion PR says.
#[derive(Debug)]
pub struct Evidence<'a> {
    pub service: &'a str,
    pub environment: &'a str,
    pub image: &'a str,
    pub from: Option<&'a ImageRef>,
    pub to: &'a Candidate,
    pub gate: &'a GateDecision,
    /// The scan's findings (the body lists the most severe).
    pub findings: &'a [Finding],
    /// The signature check of the digest, when the policy verifies signatures.
    pub signature: Option<&'a SignatureCheck>,
    pub policy: &'a EnvPolicy,
    pub sources: &'a [PolicySource],
    pub files: &'a [String],
    /// Who approved the current head, and who holds the PR.
    pub approvals: &'a [String],
    pub held_by: Option<&'a str>,
    /// Comment commands up to this id have been answered.
    pub answered_through: u64,
}

pub use crate::domain::promotion::{PromotionState, STATE_MARKER, answered_through};

pub fn branch(service: &str, environment: &str) -> String {
    format!("tugboat/{environment}/{service}")
}

/// The branch of group `group`'s promotions to `environment`.
pub fn group_branch(group: &str, environment: &str) -> String {
    format!("tugboat/group/{environment}/{group}")
}

/// The title of a group PR.
pub fn group_title(group: &str, environment: &str, members: usize) -> String {
    format!("Promote {members} service(s) to {environment} (group {group})")
}

/// The branch of a rollback of `service` in `environment`.
pub fn rollback_branch(service: &str, environment: &str) -> String {
    format!("tugboat/rollback/{environment}/{service}")
}

pub fn title(e: &Evidence<'_>) -> String {
    title_of(e.service, e.environment, &e.to.tag)
}

pub fn title_of(service: &str, environment: &str, tag: &crate::domain::image::Tag) -> String {
    format!("Promote {service} to {environment}: {tag}")
}

/// How many findings a PR body lists.
const TOP_FINDINGS: usize = 10;

/// The most severe findings as a table: CVE (linked when known), severity, package, fixed in.
fn top_findings(b: &mut String, findings: &[Finding]) {
    if findings.is_empty() {
        return;
    }
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by(|x, y| x.severity.cmp(&y.severity).then_with(|| x.id.cmp(&y.id)));
    let _ = writeln!(
        b,
        "\n{} most severe of {} finding(s):\n\n| finding | severity | package | fixed in |\n|---|---|---|---|",
        sorted.len().min(TOP_FINDINGS),
        sorted.len()
    );
    for f in sorted.into_iter().take(TOP_FINDINGS) {
        let _ = writeln!(b, "{} |", finding_row(f));
    }
}

/// A finding's cells (CVE linked when the scanner gave an https link, severity, package,
/// fixed in), without the closing `|`.
fn finding_row(f: &Finding) -> String {
    let id = cell(&f.id);
    let id = match f.url.as_deref().filter(|u| u.starts_with("https://")) {
        Some(u) => format!("[{id}]({})", u.replace(')', "%29")),
        None => id,
    };
    let id = if f.platforms.is_empty() {
        id
    } else {
        format!("{id} on {}", cell(&f.platforms.join(", ")))
    };
    format!(
        "| {id} | {} | {} | {}",
        f.severity,
        f.package.as_deref().map_or_else(|| "-".to_owned(), cell),
        f.fixed_in.as_deref().map_or_else(|| "-".to_owned(), cell)
    )
}

/// Text from a scanner, made inert for one Markdown table cell (its first 120 characters).
fn cell(s: &str) -> String {
    crate::domain::markdown::inert(&s.chars().take(120).collect::<String>())
}

pub fn body(e: &Evidence<'_>) -> String {
    let mut b = String::new();
    let _ = writeln!(b, "## Promote `{}` to `{}`\n", e.service, e.environment);
    let _ = writeln!(b, "| | tag | digest |\n|---|---|---|");
    let _ = writeln!(
        b,
        "| from | `{}` | |",
        e.from
            .map_or_else(|| "(nothing deployed)".to_owned(), ToString::to_string)
    );
    let _ = writeln!(b, "| to | `{}` | `{}` |", e.to.tag, e.to.digest);
    let _ = writeln!(
        b,
        "\nImage `{}`, pushed {}.\n",
        e.image,
        e.to.pushed_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    scan_section(&mut b, e);
    signature_section(&mut b, e);
    let _ = writeln!(b, "\n### Policy\n");
    for s in e.sources {
        let _ = writeln!(b, "- `{}` version {}", s.name, s.version);
    }
    let _ = writeln!(b, "\n### Files\n");
    for f in e.files {
        let _ = writeln!(b, "- `{f}`");
    }
    next_section(&mut b, e);
    let _ = writeln!(
        b,
        "\n<details><summary>Commands</summary>\n\n{}\n</details>",
        crate::domain::chatops::HELP
    );
    PromotionState {
        service: e.service.to_owned(),
        environment: e.environment.to_owned(),
        tag: Some(e.to.tag.clone()),
        digest: Some(e.to.digest.clone()),
        from: e.from.cloned(),
        answered_through: e.answered_through,
        rollback_of: None,
        auto_sync: None,
    }
    .write_into(&b)
}

/// The gate's check on a promotion's head: a one-line title and a Markdown summary (the
/// severity table against the thresholds, the top findings, the policy it was judged by).
pub fn gate_check(e: &Evidence<'_>) -> (String, String) {
    let counts = e
        .gate
        .counts()
        .map(|c| {
            c.iter()
                .map(|(s, n)| format!("{s} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let title = if counts.is_empty() {
        "scan gate passed".to_owned()
    } else {
        format!("scan gate passed: {counts}")
    };
    let mut b = String::new();
    let _ = writeln!(
        b,
        "`{}` `{}` (`{}`) for `{}` in `{}`.\n",
        e.image, e.to.tag, e.to.digest, e.service, e.environment
    );
    scan_section(&mut b, e);
    signature_section(&mut b, e);
    let _ = writeln!(b, "\n### Policy\n");
    for s in e.sources {
        let _ = writeln!(b, "- `{}` version {}", s.name, s.version);
    }
    let _ = writeln!(
        b,
        "\nRe-run this check to scan the image again (as `/rescan` does)."
    );
    (title, b)
}

/// One member's evidence in a group PR: its image, scan, policy and files (the group's body
/// puts it in a collapsed section), and its gate result in one line.
pub fn member_section(e: &Evidence<'_>) -> (String, String) {
    let mut b = String::new();
    let _ = writeln!(
        b,
        "Image `{}` `{}` (`{}`), pushed {}; replaces `{}`.\n",
        e.image,
        e.to.tag,
        e.to.digest,
        e.to.pushed_at.format("%Y-%m-%d %H:%M:%S UTC"),
        e.from
            .map_or_else(|| "(nothing deployed)".to_owned(), ToString::to_string)
    );
    scan_section(&mut b, e);
    if let Some(check) = e.signature {
        let required = e.policy.signatures.required;
        let _ = writeln!(b, "\nSignature: {}", signature_line(check, required));
    }
    let sources: Vec<String> = e
        .sources
        .iter()
        .map(|s| format!("`{}` v{}", s.name, s.version))
        .collect();
    let files: Vec<String> = e.files.iter().map(|f| format!("`{f}`")).collect();
    let _ = writeln!(
        b,
        "\nPolicy: {}. Files: {}.",
        sources.join(", "),
        files.join(", ")
    );
    (b, gate_check(e).0)
}

/// A member of a group PR, as its body lists it.
pub struct GroupLine<'a> {
    pub service: &'a str,
    pub from: Option<&'a ImageRef>,
    pub to: &'a Candidate,
    /// Its gate result in one line, and its evidence (`member_section`).
    pub gate: &'a str,
    pub section: &'a str,
}

/// How much of a group PR's body its members' evidence may take: GitHub keeps at most
/// 65,536 characters, and the table, the next steps and the blocks need the rest.
const GROUP_EVIDENCE_BUDGET: usize = 40_000;

/// A group PR's body (its `GroupState` block is written into it): a table of the members,
/// each one's evidence collapsed, what happens next under the group's one merge rule.
pub fn group_body(
    group: &str,
    environment: &str,
    lines: &[GroupLine<'_>],
    next: &Evidence<'_>,
) -> String {
    let mut b = String::new();
    let _ = writeln!(
        b,
        "## Promote {} service(s) to `{environment}` together (group `{group}`)\n",
        lines.len()
    );
    let _ = writeln!(b, "| service | from | to | scan gate |\n|---|---|---|---|");
    for l in lines {
        let from = match l.from {
            Some(ImageRef { tag: Some(t), .. }) => format!("`{t}`"),
            Some(ImageRef {
                digest: Some(d), ..
            }) => format!("`{d}`"),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            b,
            "| `{}` | {from} | `{}` | {} |",
            l.service,
            l.to.tag,
            cell(l.gate)
        );
    }
    let share = GROUP_EVIDENCE_BUDGET / lines.len().max(1);
    let _ = writeln!(b, "\n### Evidence\n");
    for l in lines {
        let _ = writeln!(
            b,
            "<details><summary><code>{}</code>: {}</summary>\n\n{}\n</details>\n",
            l.service,
            cell(l.gate),
            clip(l.section, share)
        );
    }
    next_section(&mut b, next);
    let _ = writeln!(
        b,
        "\nEach service is verified on its own Argo CD application. One that does not become Healthy is handled alone: only its lines are reverted (`rollback: auto`) or reported for a person (`rollback: manual`); the others stay. A service held, or whose image is refused or marked bad, leaves this PR; it never holds the others back."
    );
    let _ = writeln!(
        b,
        "\nOnce this PR is merged, `/rollback`, `/unblock`, `/hold` and `/resume` here name the service they are for (`/rollback <service>`) and act on it alone."
    );
    let _ = writeln!(
        b,
        "\n<details><summary>Commands</summary>\n\n{}\n</details>",
        crate::domain::chatops::HELP
    );
    b
}

/// `text` cut at a line boundary to at most `max` bytes, saying so.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text[..end].rfind('\n').unwrap_or(0);
    format!(
        "{}\n\n(cut to fit GitHub's limit on a PR body; `tugboat plan` shows the rest)",
        &text[..cut]
    )
}

/// The scan: the gate's decision, the counts against the thresholds, the top findings.
/// Who signed the digest, when the policy verifies signatures.
fn signature_section(b: &mut String, e: &Evidence<'_>) {
    let Some(check) = e.signature else {
        return;
    };
    let _ = writeln!(b, "\n### Signature\n");
    let _ = writeln!(b, "{}", signature_line(check, e.policy.signatures.required));
}

/// A signature check in one line of Markdown.
fn signature_line(check: &SignatureCheck, required: bool) -> String {
    match check {
        SignatureCheck::Verified(s) => format!(
            "Verified: signed by {}; signature `{}` pushed {}.",
            signer_words(&s.signer),
            s.manifest,
            s.pushed_at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        SignatureCheck::Unverified { reason } if required => {
            format!("Blocked: {}", crate::domain::markdown::inert(reason))
        }
        SignatureCheck::Unverified { reason } => {
            format!(
                "Not verified (not required here): {}",
                crate::domain::markdown::inert(reason)
            )
        }
    }
}

/// Who signed, in Markdown.
fn signer_words(signer: &crate::domain::signature::Signer) -> String {
    match signer {
        crate::domain::signature::Signer::Key {
            fingerprint,
            source,
        } => format!("the key `sha256:{fingerprint}` (`{source}`)"),
        crate::domain::signature::Signer::Certificate {
            subject,
            issuer,
            logged_at,
        } => format!(
            "`{}` (issuer `{}`), logged in Rekor {}",
            crate::domain::markdown::inert(subject),
            crate::domain::markdown::inert(issuer),
            logged_at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
    }
}

fn scan_section(b: &mut String, e: &Evidence<'_>) {
    let _ = writeln!(b, "### Scan\n");
    match e.gate {
        GateDecision::Pass {
            counts,
            ignored,
            note,
        } => {
            let _ = writeln!(b, "Scan complete, within the policy thresholds.\n");
            let _ = writeln!(b, "| severity | findings | allowed |\n|---|---|---|");
            for sev in Severity::ALL {
                let n = counts.get(&sev).copied().unwrap_or(0);
                let max = e.policy.scan.thresholds.get(&sev);
                if n > 0 || max.is_some() {
                    let allowed = max.map_or("any".to_owned(), ToString::to_string);
                    let _ = writeln!(b, "| {sev} | {n} | {allowed} |");
                }
            }
            if !ignored.is_empty() {
                let _ = writeln!(b, "\nIgnored by policy: {}", ignored.join(", "));
            }
            if let Some(n) = note {
                let _ = writeln!(b, "\nNote: {n}");
            }
        }
        GateDecision::Block { reasons, .. } => {
            let _ = writeln!(b, "Blocked: {}", reasons.join("; "));
        }
        GateDecision::Wait { reason } => {
            let _ = writeln!(b, "Waiting: {reason}");
        }
    }
    top_findings(b, e.findings);
}

/// What happens next: a hold, the approvals, the windows, what a failure leads to.
fn next_section(b: &mut String, e: &Evidence<'_>) {
    let _ = writeln!(b, "\n### What happens next\n");
    if let Some(who) = e.held_by {
        let _ = writeln!(
            b,
            "**On hold** (by @{who}): tugboat will not merge this PR until an approver comments `/unhold`.\n"
        );
    }
    let wait = humantime::format_duration(e.policy.health_timeout);
    if e.policy.auto_merge {
        let _ = writeln!(
            b,
            "tugboat merges this PR once its checks pass, then waits up to {wait} for Argo CD to report the application Synced and Healthy at the merge commit."
        );
    } else {
        let who = if e.policy.approvers.is_empty() {
            "a reviewer with write access".to_owned()
        } else {
            e.policy.approvers.join(", ")
        };
        let have = if e.approvals.is_empty() {
            "none yet".to_owned()
        } else {
            e.approvals
                .iter()
                .map(|a| format!("@{a}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            b,
            "This environment needs {} approval(s) from {who} (approved at this commit: {have}). tugboat merges once they are in, then waits up to {wait} for Argo CD to report the application Synced and Healthy.",
            e.policy.approvals.max(1),
        );
    }
    if !e.policy.windows.is_empty() {
        let windows: Vec<String> = e.policy.windows.iter().map(|w| format!("`{w}`")).collect();
        let _ = writeln!(
            b,
            "\nIt merges only inside its promotion windows ({}) and while Argo CD's sync windows allow a sync; outside them it waits, open for review.",
            windows.join(", ")
        );
    }
    let _ = writeln!(
        b,
        "\n{}",
        match (e.policy.rollback, e.from) {
            (_, None) =>
                "If it does not become Healthy, tugboat reports it here; there is no earlier image to roll back to.",
            (RollbackMode::Auto, Some(_)) =>
                "If it does not become Healthy, tugboat rolls it back by itself (a revert PR, merged and verified) and marks this image bad so that it is not promoted again.",
            (RollbackMode::Manual, Some(_)) =>
                "If it does not become Healthy, tugboat reports it here; an approver can then comment `/rollback`.",
        }
    );
}

/// How many findings an issue lists per image (GitHub caps a body at 65,536 characters).
const ISSUE_FINDINGS: usize = 25;

/// The title of a service's security issue; stable, so that rescans never rename it.
pub fn issue_title(service: &str) -> String {
    format!("Vulnerabilities in deployed {service} images")
}

/// What a service's security issue says about the rescan of `day`.
pub struct IssueText<'a> {
    pub service: &'a str,
    pub rows: &'a [Row],
    pub state: &'a rescan::State,
    pub day: chrono::NaiveDate,
    /// The newest tag of the service and what the gate says of it, when known.
    pub newest: Option<String>,
    pub policy_path: &'a str,
}

pub fn issue_body(t: &IssueText<'_>) -> String {
    let mut b = String::new();
    let open = t.rows.iter().any(Row::has_findings);
    let _ = writeln!(
        b,
        "## Vulnerabilities in deployed `{}` images
",
        t.service
    );
    if open {
        let _ = writeln!(
            b,
            "tugboat's rescan of {} found vulnerabilities that the promotion policy does not allow in images deployed now.\n",
            t.day
        );
    } else {
        let _ = writeln!(
            b,
            "tugboat's rescan of {} found no vulnerabilities above the policy's thresholds in the images deployed now. Resolved.\n",
            t.day
        );
    }
    for r in t.rows {
        issue_row(&mut b, r, t.service);
    }
    let _ = writeln!(b, "### What tugboat does\n");
    let _ = writeln!(
        b,
        "- A blocked digest is not promoted to the next environment."
    );
    match &t.newest {
        Some(n) => {
            let _ = writeln!(
                b,
                "- When a newer tag passes the gate, tugboat opens its promotion pull request as usual. Newest tag: {}.",
                n.replace('<', "&lt;")
            );
        }
        None => {
            let _ = writeln!(
                b,
                "- When a newer tag passes the gate, tugboat opens its promotion pull request as usual."
            );
        }
    }
    let _ = writeln!(
        b,
        "- To accept a finding instead, add an `ignore` entry (id, reason, expires) to the policy under `{}`.\n- Each rescan updates this issue; it is closed when the findings are gone.",
        t.policy_path
    );
    let _ = writeln!(b, "\n{}", t.state.render());
    b
}

/// One deployed image of an issue: its verdict and its findings.
fn issue_row(b: &mut String, r: &Row, service: &str) {
    let d = &r.deployed;
    let _ = writeln!(b, "### {} — `{}`\n", d.environment, d.reference);
    let verdict = if r.blocked {
        "**blocked**: tugboat will not promote this digest further"
    } else {
        "within the policy"
    };
    let _ = writeln!(b, "Digest `{}` · {verdict}.\n", d.digest);
    if let Some(why) = &r.signature {
        let why = crate::domain::markdown::inert(why);
        let _ = writeln!(b, "Its signature no longer verifies: {why}.\n");
    }
    if let Some(why) = r.unknown.as_ref().filter(|_| r.in_scope) {
        if r.findings.is_empty() {
            let _ = writeln!(b, "No fresh result: {why}.\n");
            return;
        }
        let _ = writeln!(
            b,
            "No fresh result: {why}. The findings below are the last known.\n"
        );
    }
    if r.findings.is_empty() {
        let _ = writeln!(b, "No findings above the thresholds.\n");
    } else {
        let _ = writeln!(
            b,
            "| finding | severity | package | fixed in | first reported |\n|---|---|---|---|---|"
        );
        for f in r.findings.iter().take(ISSUE_FINDINGS) {
            let since = r
                .since
                .get(&f.id)
                .map_or_else(|| "-".to_owned(), ToString::to_string);
            let _ = writeln!(b, "{} | {since} |", finding_row(f));
        }
        if r.findings.len() > ISSUE_FINDINGS {
            let _ = writeln!(
                b,
                "\n…and {} more (`tugboat rescan --service {} --dry-run` lists them all).",
                r.findings.len() - ISSUE_FINDINGS,
                service
            );
        }
        let _ = writeln!(b);
    }
    if !r.gone.is_empty() {
        let ids: Vec<String> = r.gone.iter().map(|i| cell(i)).collect();
        let _ = writeln!(b, "Gone since the last rescan: {}.\n", ids.join(", "));
    }
}

/// The comment that tells subscribers what changed (a body edit notifies nobody).
pub fn issue_comment(rows: &[Row], closing: bool) -> String {
    if closing {
        return "The rescan found no vulnerabilities above the policy's thresholds in the deployed images any more; closing.".to_owned();
    }
    let mut b = String::from("New findings in deployed images:\n");
    for r in rows.iter().filter(|r| !r.new.is_empty()) {
        let ids: Vec<String> = r.new.iter().map(|i| cell(i)).collect();
        let _ = writeln!(
            b,
            "- {} `{}`: {}{}",
            r.deployed.environment,
            r.deployed.reference,
            ids.join(", "),
            if r.blocked { " (blocked)" } else { "" }
        );
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, severity: Severity) -> Finding {
        Finding {
            id: id.into(),
            severity,
            package: Some("openssl".into()),
            fixed_in: None,
            url: None,
            platforms: Vec::new(),
        }
    }

    #[test]
    fn the_body_lists_the_ten_most_severe_findings_first_with_links_and_fixes() {
        let mut findings: Vec<Finding> = (0..12)
            .map(|i| finding(&format!("CVE-2026-{i:04}"), Severity::Low))
            .collect();
        findings.push(Finding {
            id: "CVE-2026-9999".into(),
            severity: Severity::High,
            package: Some("libc|6".into()),
            fixed_in: Some("2.36-9+deb12u4".into()),
            url: Some("https://nvd.nist.gov/vuln/detail/CVE-2026-9999".into()),
            platforms: Vec::new(),
        });
        let mut b = String::new();
        top_findings(&mut b, &findings);
        let rows: Vec<&str> = b.lines().filter(|l| l.starts_with("| ")).collect();
        assert!(b.contains("10 most severe of 13 finding(s)"), "{b}");
        assert_eq!(rows.len(), 11, "header and ten rows: {b}");
        assert_eq!(
            rows[1],
            "| [CVE-2026-9999](https://nvd.nist.gov/vuln/detail/CVE-2026-9999) | HIGH | libc\u{a6}6 | 2.36-9+deb12u4 |"
        );
        assert_eq!(rows[2], "| CVE-2026-0000 | LOW | openssl | - |");
    }

    #[test]
    fn scanner_text_cannot_break_the_table_or_inject_markup() {
        let f = Finding {
            id: "<img src=x>|x".into(),
            severity: Severity::Medium,
            package: None,
            fixed_in: None,
            url: Some("javascript:alert(1)".into()),
            platforms: Vec::new(),
        };
        let mut b = String::new();
        top_findings(&mut b, &[f]);
        assert!(
            b.contains("| \u{2039}img src=x\u{203a}\u{a6}x | MEDIUM | - | - |"),
            "{b}"
        );
        let cells = |l: &str| l.matches('|').count();
        assert!(
            !b.contains('<')
                && b.lines()
                    .filter(|l| l.starts_with('|'))
                    .all(|l| cells(l) == 5),
            "{b}"
        );
        assert!(!b.contains("javascript"), "{b}");
        let mut empty = String::new();
        top_findings(&mut empty, &[]);
        assert!(empty.is_empty());
    }
}
