//! The words tugboat writes: PR titles and bodies (the evidence), and verification reports.

use std::fmt::Write;

use serde_json::json;

use crate::domain::gate::{GateDecision, Severity};
use crate::domain::policy::{EnvPolicy, PolicySource};
use crate::domain::select::Candidate;

/// Everything a promotion PR says.
#[derive(Debug)]
pub struct Evidence<'a> {
    pub service: &'a str,
    pub environment: &'a str,
    pub image: &'a str,
    pub from: Option<&'a str>,
    pub to: &'a Candidate,
    pub gate: &'a GateDecision,
    pub policy: &'a EnvPolicy,
    pub sources: &'a [PolicySource],
    pub files: &'a [String],
}

pub fn branch(service: &str, environment: &str) -> String {
    format!("tugboat/{environment}/{service}")
}

pub fn title(e: &Evidence<'_>) -> String {
    format!("Promote {} to {}: {}", e.service, e.environment, e.to.tag)
}

pub fn body(e: &Evidence<'_>) -> String {
    let mut b = String::new();
    let _ = writeln!(b, "## Promote `{}` to `{}`\n", e.service, e.environment);
    let _ = writeln!(b, "| | tag | digest |\n|---|---|---|");
    let _ = writeln!(
        b,
        "| from | `{}` | |",
        e.from.unwrap_or("(nothing deployed)")
    );
    let _ = writeln!(b, "| to | `{}` | `{}` |", e.to.tag, e.to.digest);
    let _ = writeln!(
        b,
        "\nImage `{}`, pushed {}.\n",
        e.image,
        e.to.pushed_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
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
    let _ = writeln!(b, "\n### Policy\n");
    for s in e.sources {
        let _ = writeln!(b, "- `{}` version {}", s.name, s.version);
    }
    let _ = writeln!(b, "\n### Files\n");
    for f in e.files {
        let _ = writeln!(b, "- `{f}`");
    }
    let _ = writeln!(b, "\n### What happens next\n");
    if e.policy.auto_merge {
        let _ = writeln!(
            b,
            "tugboat merges this PR once its checks pass, then waits up to {} for Argo CD to report the application Synced and Healthy at the merge commit.",
            humantime::format_duration(e.policy.health_timeout)
        );
    } else {
        let who = if e.policy.approvers.is_empty() {
            "a reviewer with write access".to_owned()
        } else {
            e.policy.approvers.join(", ")
        };
        let _ = writeln!(
            b,
            "This environment needs {} approval(s) from {who}. After the merge, tugboat waits up to {} for Argo CD to report the application Synced and Healthy.",
            e.policy.approvals,
            humantime::format_duration(e.policy.health_timeout)
        );
    }
    let state = json!({
        "service": e.service,
        "environment": e.environment,
        "tag": e.to.tag.as_str(),
        "digest": e.to.digest.as_str(),
        "from": e.from,
    });
    let _ = writeln!(b, "\n<!-- tugboat:state {state} -->");
    b
}
