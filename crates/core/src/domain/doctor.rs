//! `tugboat doctor`'s findings and the judgements behind them: what a first cycle depends
//! on, each an ok, a warning or an error with the fact seen and the fix. The facts are read
//! by the daemon; what they mean is decided here.

use std::fmt::Write as _;

use serde::Serialize;

use crate::domain::rules::BranchRules;

pub mod rules;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub level: Level,
    /// The system: `config`, `ecr`, `ssm`, `github`, `argocd`, …
    pub area: String,
    /// What was checked: a service, an application, a secret, a branch.
    pub subject: String,
    /// What was seen.
    pub fact: String,
    /// What to do; empty when nothing is to be done.
    pub fix: String,
}

impl Finding {
    pub fn ok(area: &str, subject: impl Into<String>, fact: impl Into<String>) -> Self {
        Self::new(Level::Ok, area, subject, fact, "")
    }

    pub fn new(
        level: Level,
        area: &str,
        subject: impl Into<String>,
        fact: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            level,
            area: area.to_owned(),
            subject: subject.into(),
            fact: fact.into(),
            fix: fix.into(),
        }
    }
}

/// The exit status of a run: 0 all ok, 1 a warning, 2 an error.
pub fn exit_code(findings: &[Finding]) -> u8 {
    match findings.iter().map(|f| f.level).max() {
        Some(Level::Error) => 2,
        Some(Level::Warning) => 1,
        _ => 0,
    }
}

/// One line per finding (its fix on the next), and a count.
pub fn text(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let _ = writeln!(
            out,
            "{:<8}{:<8}{}: {}",
            f.level.as_str(),
            f.area,
            f.subject,
            f.fact
        );
        if !f.fix.is_empty() {
            let _ = writeln!(out, "{:16}fix: {}", "", f.fix);
        }
    }
    let count = |l: Level| findings.iter().filter(|f| f.level == l).count();
    let _ = writeln!(
        out,
        "\n{} ok, {} warning(s), {} error(s)",
        count(Level::Ok),
        count(Level::Warning),
        count(Level::Error)
    );
    out
}

/// A registry's scanning configuration (GetRegistryScanningConfiguration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryScanning {
    /// `BASIC` or `ENHANCED`.
    pub scan_type: String,
    /// Each rule: its frequency (`SCAN_ON_PUSH`, `CONTINUOUS_SCAN`, `MANUAL`) and its
    /// repository filters.
    pub rules: Vec<(String, Vec<String>)>,
}

/// Whether ECR's `WILDCARD` repository filter matches `name`: `*` is any run of characters,
/// "the only supported wildcard" (ECR API reference, `ScanningRepositoryFilter`).
pub fn wildcard(filter: &str, name: &str) -> bool {
    let parts: Vec<&str> = filter.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return filter == name;
    }
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether new images of `repository` get a scan without tugboat asking for one.
pub fn scanning(repository: &str, reg: &RegistryScanning, scan_on_push: bool) -> Finding {
    let rule = |freqs: &[&str]| {
        reg.rules.iter().find_map(|(freq, filters)| {
            let f = filters.iter().find(|f| wildcard(f, repository))?;
            freqs
                .contains(&freq.as_str())
                .then(|| format!("{freq}, filter '{f}'"))
        })
    };
    let area = "ecr";
    if reg.scan_type == "ENHANCED" {
        return match rule(&["SCAN_ON_PUSH", "CONTINUOUS_SCAN"]) {
            Some(r) => Finding::ok(
                area,
                repository,
                format!("enhanced scanning (Amazon Inspector): {r}"),
            ),
            None => Finding::new(
                Level::Error,
                area,
                repository,
                "enhanced scanning, and no scanning rule's filter matches this repository: Inspector never scans its images, and enhanced scanning allows no scan on request, so every candidate stays unscanned",
                format!(
                    "add a rule whose filter matches '{repository}' to the registry's scanning configuration (PutRegistryScanningConfiguration)"
                ),
            ),
        };
    }
    match (rule(&["SCAN_ON_PUSH"]), scan_on_push) {
        (Some(r), _) => Finding::ok(area, repository, format!("basic scanning on push: {r}")),
        (None, true) => Finding::ok(
            area,
            repository,
            "basic scanning on push (the repository's own scanOnPush, which ECR is replacing with registry rules)",
        ),
        (None, false) => Finding::new(
            Level::Warning,
            area,
            repository,
            "basic scanning, and nothing scans this repository's images on push: each candidate waits for the scan tugboat starts (StartImageScan, once a day per image)",
            format!(
                "add a SCAN_ON_PUSH rule whose filter matches '{repository}' to the registry's scanning configuration"
            ),
        ),
    }
}

/// Whether a tag can point at another image after the gate passed it. `refusing`: the
/// environments that write tags without digests (`pin_digest: false`) under
/// `mutable_tags: refuse`, `unpinned`: all that write tags without digests. Where tags can
/// move, the first are blocked (every candidate whose file names the tag alone), the others
/// promote a digest the gate may not have scanned.
pub fn mutability(
    repository: &str,
    mutability: &str,
    unpinned: &[String],
    refusing: &[String],
) -> Finding {
    let area = "ecr";
    if mutability.starts_with("IMMUTABLE") {
        return Finding::ok(area, repository, format!("tags are {mutability}"));
    }
    if unpinned.is_empty() {
        return Finding::ok(
            area,
            repository,
            format!("tags are {mutability}, and every environment pins digests"),
        );
    }
    let fix = format!(
        "make the repository's tags IMMUTABLE, or set `pin_digest: true` for {}",
        unpinned.join(", ")
    );
    let fact = if refusing.is_empty() {
        format!(
            "tags are {mutability}: a tag can be pushed again to another image after the gate passed it"
        )
    } else {
        format!(
            "tags are {mutability}, and the policy of {} refuses tag-only promotions from such a repository (`mutable_tags: refuse`): every candidate whose file names the tag alone is blocked there",
            refusing.join(", ")
        )
    };
    Finding::new(Level::Warning, area, repository, fact, fix)
}

/// At most `max` characters of what someone else wrote (a policy's Sid, a rule's or a
/// repository's name), control characters dropped: a finding stays one bounded line.
fn printable(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// Whether the event queue's access policy (its `Policy` attribute, an IAM policy document)
/// lets EventBridge deliver to it: a statement that allows principal
/// `events.amazonaws.com` (or `*`) the action `sqs:SendMessage` (or `sqs:*`, `*`), as "Amazon
/// SQS permissions" in the EventBridge user guide requires of a queue target. Conditions
/// (an `aws:SourceArn` naming the rules) are not evaluated, nor are Deny statements. Without
/// it, events never arrive and tugboat finds new tags by polling only: a warning.
pub fn queue_policy(queue: &str, policy: Option<&str>) -> Finding {
    let (area, fix) = (
        "events",
        "give the queue the policy of manifests/aws/events.cfn.yaml (EventsQueuePolicy): Allow events.amazonaws.com sqs:SendMessage, on the condition aws:SourceArn of the rules",
    );
    let missing = |why: String| {
        Finding::new(
            Level::Warning,
            area,
            queue,
            format!(
                "{why}: EventBridge cannot deliver ECR's events to it, so new tags are found by polling only"
            ),
            fix,
        )
    };
    let Some(policy) = policy.filter(|p| !p.trim().is_empty()) else {
        return missing("the queue has no access policy".to_owned());
    };
    let doc: serde_json::Value = match serde_json::from_str(policy) {
        Ok(d) => d,
        Err(e) => return missing(format!("its access policy is not JSON ({e})")),
    };
    let statements = match &doc["Statement"] {
        serde_json::Value::Array(a) => a.iter().collect(),
        one @ serde_json::Value::Object(_) => vec![one],
        _ => Vec::new(),
    };
    match statements.iter().find(|s| lets_eventbridge_send(s)) {
        Some(s) => Finding::ok(
            area,
            queue,
            format!(
                "EventBridge may send to it (statement {})",
                s["Sid"]
                    .as_str()
                    // What the policy's author wrote: bounded, no control characters.
                    .map_or_else(
                        || "without a Sid".to_owned(),
                        |sid| format!("'{}'", printable(sid, 64))
                    )
            ),
        ),
        None => missing(
            "no statement of its access policy allows events.amazonaws.com sqs:SendMessage"
                .to_owned(),
        ),
    }
}

/// One string or a list of them, as IAM writes `Action` and principals.
fn one_or_many(v: &serde_json::Value) -> Vec<&str> {
    match v {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(a) => a.iter().filter_map(serde_json::Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn lets_eventbridge_send(s: &serde_json::Value) -> bool {
    let principal = &s["Principal"];
    let anyone = principal.as_str() == Some("*") || one_or_many(&principal["AWS"]).contains(&"*");
    let eventbridge = one_or_many(&principal["Service"]).contains(&"events.amazonaws.com");
    // Action names are case-insensitive ("IAM JSON policy elements: Action").
    let sends = one_or_many(&s["Action"]).iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == "sqs:sendmessage" || a == "sqs:*" || a == "*"
    });
    s["Effect"] == "Allow" && (anyone || eventbridge) && sends
}

/// What the base branch's rules mean for tugboat. `signs`: GitHub signs tugboat's commits
/// (an App committing through the API); `auto_merges`: some environment merges by itself.
pub fn branch(rules: &BranchRules, signs: bool, auto_merges: bool) -> Vec<Finding> {
    let (area, at) = ("github", format!("branch {}", rules.branch));
    let mut out = Vec::new();
    if let Some(why) = &rules.unreadable {
        out.push(Finding::new(
            Level::Warning,
            area,
            &at,
            format!("its rules could not all be read: {why}"),
            "give the token or App read access to the repository's administration (rulesets), or check the rules by hand",
        ));
    }
    if rules.signed_commits && !signs {
        out.push(Finding::new(
            Level::Error,
            area,
            &at,
            "requires signed commits, and tugboat's commits are not signed (a token's, or pushed)",
            "authenticate as a GitHub App with `github.commits = \"api\"`: GitHub makes and signs its commits",
        ));
    }
    if rules.required_reviews > 0 && auto_merges {
        out.push(Finding::new(
            Level::Warning,
            area,
            &at,
            format!("requires {} approving review(s): an auto-merge environment's PR waits for a person's review (tugboat cannot approve its own PR)", rules.required_reviews),
            "let tugboat bypass the rule (a ruleset bypass for its App), or accept that every promotion needs a review",
        ));
    }
    if out.iter().all(|f| f.level == Level::Ok) {
        out.push(Finding::ok(area, &at, rules.to_string()));
    }
    out
}

/// What a token's login may do in the repository (its collaborator permission).
pub fn token_access(repository: &str, login: &str, permission: &str) -> Finding {
    let (area, at) = ("github", repository.to_owned());
    match permission {
        "admin" | "maintain" | "write" => Finding::ok(
            area,
            at,
            format!("the token acts as {login}, with {permission} permission"),
        ),
        other => Finding::new(
            Level::Error,
            area,
            at,
            format!(
                "the token acts as {login}, whose permission is '{other}': it cannot push branches, merge or write issues"
            ),
            "give the token's user write access to the repository (contents, pull requests, issues, commit statuses)",
        ),
    }
}

/// The repository permissions a GitHub App installation needs: (permission, level, why).
const APP_NEEDS: [(&str, &str, &str); 5] = [
    ("contents", "write", "push branches and merge"),
    ("pull_requests", "write", "open, label and comment on PRs"),
    (
        "issues",
        "write",
        "keep the dashboard, holds and security issues",
    ),
    (
        "checks",
        "write",
        "report the gate and the deploy as check runs",
    ),
    ("statuses", "write", "read and report commit statuses"),
];

/// Whether an App installation was granted what tugboat needs; `teams`: approvers name
/// `org/team`s (then it also needs organization members, read).
pub fn app_access(
    repository: &str,
    granted: &std::collections::BTreeMap<String, String>,
    teams: bool,
) -> Vec<Finding> {
    let (area, at) = ("github", repository.to_owned());
    let rank = |l: &str| match l {
        "admin" => 3,
        "write" => 2,
        "read" => 1,
        _ => 0,
    };
    let members = ("members", "read", "check approvers' team membership");
    let mut out: Vec<Finding> = APP_NEEDS
        .iter()
        .chain(teams.then_some(&members))
        .filter(|(p, level, _)| rank(granted.get(*p).map_or("", String::as_str)) < rank(level))
        .map(|(p, level, why)| {
            let has = granted.get(*p).map_or("none", String::as_str);
            Finding::new(
                Level::Error,
                area,
                &at,
                format!(
                    "the App's installation has {p}: {has}; tugboat needs {p}: {level} to {why}"
                ),
                format!(
                    "grant the App {p}: {level} and accept the new permissions on the installation"
                ),
            )
        })
        .collect();
    if out.is_empty() {
        out.push(Finding::ok(
            area,
            at,
            "the App's installation has every permission tugboat needs",
        ));
    }
    out
}

/// An Argo CD application as `tugboat doctor` saw it.
#[derive(Debug, Clone)]
pub struct AppFacts {
    /// `service/environment`.
    pub subject: String,
    pub name: String,
    pub project: String,
    pub source: crate::domain::discover::AppSource,
    /// The files the configuration says hold the image.
    pub files: Vec<String>,
    /// `github.base_branch`.
    pub branch: String,
    /// `status.summary.images` lists something.
    pub images_listed: bool,
    /// It syncs by itself.
    pub automated: bool,
    /// The token may sync it (`can-i`); `Err`: why the question could not be asked.
    pub may_sync: Result<bool, String>,
    /// The policy asks tugboat to sync it (`sync: true`).
    pub policy_syncs: bool,
}

/// What an application's source, status and permissions mean for tugboat.
pub fn application(f: &AppFacts, repository: &str) -> Vec<Finding> {
    use crate::domain::discover::{AppSource, renders, tracks};
    let area = "argocd";
    let at = format!("{} ({})", f.name, f.subject);
    let mut out = Vec::new();
    match &f.source {
        AppSource::Elsewhere { repo_url } => out.push(Finding::new(
            Level::Error,
            area,
            &at,
            format!("deploys from {repo_url}, not {repository}: tugboat's changes never reach it"),
            "set argocd_application to the application that deploys the configured files",
        )),
        AppSource::Ours { path, revision, .. } => {
            if !tracks(revision, &f.branch) {
                out.push(Finding::new(
                    Level::Error,
                    area,
                    &at,
                    format!("deploys revision '{revision}', not the branch '{}' that tugboat merges into", f.branch),
                    "point the application's targetRevision at the base branch, or set github.base_branch",
                ));
            }
            for file in f.files.iter().filter(|file| !renders(&f.source, file)) {
                out.push(Finding::new(
                    Level::Warning,
                    area,
                    &at,
                    format!("renders '{path}', which does not hold {file}: a promotion there may not change what it deploys"),
                    "check the environment's files and argocd_application (`tugboat init --dry-run` shows what each application renders)",
                ));
            }
        }
    }
    if !f.images_listed {
        out.push(Finding::new(
            Level::Warning,
            area,
            &at,
            "status.summary.images is empty: tugboat reads the images it runs from the resource tree instead (a request more per look)",
            "nothing to do; Argo CD fills it from the live pods once it has synced them",
        ));
    }
    out.push(sync_access(f, &at));
    out
}

fn sync_access(f: &AppFacts, at: &str) -> Finding {
    let area = "argocd";
    let needed = !f.automated || f.policy_syncs;
    match (&f.may_sync, needed) {
        (Ok(true), _) => Finding::ok(
            area,
            at,
            format!("the token may get and sync it ({})", syncing(f.automated)),
        ),
        (Ok(false), false) => Finding::ok(
            area,
            at,
            "the token may get it, not sync it: not needed, it syncs by itself",
        ),
        (Err(_), false) => Finding::ok(
            area,
            at,
            "the token may get it; it syncs by itself, so whether the token may sync it does not matter",
        ),
        (Err(why), true) => Finding::new(
            Level::Warning,
            area,
            at,
            format!("tugboat must sync it, and whether the token may could not be asked: {why}"),
            format!(
                "check with tugboat's token: `argocd account can-i sync applications {}/{}`; grant `applications, sync, {}/{}` if it says no",
                f.project, f.name, f.project, f.name
            ),
        ),
        (Ok(false), true) => Finding::new(
            Level::Error,
            area,
            at,
            format!(
                "the token may not sync it, and {}: a merged promotion is never deployed",
                if f.automated {
                    "the policy asks tugboat to sync it (`sync: true`)"
                } else {
                    "it does not sync by itself"
                }
            ),
            format!(
                "grant tugboat's Argo CD account `applications, sync, {}/{}`",
                f.project, f.name
            ),
        ),
    }
}

fn syncing(automated: bool) -> &'static str {
    if automated {
        "automated sync"
    } else {
        "manual sync"
    }
}

#[cfg(test)]
mod tests;
