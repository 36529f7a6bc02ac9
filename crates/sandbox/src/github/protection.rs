//! The rules of the stand-in's `main`, set through one test control (`POST
//! /_sandbox/protection`), and what GitHub does with them: a CI actor that reports check runs
//! some time after each push, the merge refusals of a ruleset, and the rules endpoint that
//! lists them.
//!
//! Sources, each behaviour below cites the one it follows:
//! - rules: "REST API endpoints for rules", `GET /repos/{owner}/{repo}/rules/branches/{branch}`
//!   (docs.github.com/en/rest/repos/rules): the active rules of every ruleset that applies to
//!   the branch, each `{type, parameters, ruleset_source_type, ruleset_source, ruleset_id}`,
//!   readable with Metadata read; the rule schemas are those of `@octokit/openapi`.
//! - classic branch protection: its required status checks are in "Get a branch"
//!   (`GET /repos/{owner}/{repo}/branches/{branch}`, `protection.required_status_checks`),
//!   which anyone who may read the repository gets; the rest of it needs admin rights.
//! - CI: GitHub Actions creates a check run per job once the workflow run for a push is queued
//!   and picked up, `in_progress` while it runs, then `completed` with a conclusion; its
//!   `app` is GitHub Actions (slug `github-actions`). A workflow runs for the pushes made after
//!   it exists, never for older commits ("About workflows", "Using jobs in a workflow").
//! - refusals: `PUT /pulls/{n}/merge` answers 405 with "Repository rule violations found" and
//!   one line per broken rule ("Required status check \"x\" is expected.", "At least 1
//!   approving review is required by reviewers with write access.", "Commits must have
//!   verified signatures."), and 405 "Changes must be made through the merge queue" on a
//!   branch that requires a merge queue (the messages quoted in issue 39, as GitHub words
//!   them; "About protected branches" and "Available rules for rulesets" describe the rules).

use super::*;

/// One CI job: its check run appears `after` the push and completes `takes` later.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiJob {
    pub name: String,
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    #[serde(with = "humantime_serde")]
    pub takes: Duration,
    /// `success`, `failure`, `neutral`, `skipped`, `cancelled` or `timed_out`.
    pub conclusion: String,
}

/// The rules of `main` (a repository ruleset), and the CI that runs on every push. Each field
/// is optional; `{}` lifts them all.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protection {
    /// "Require status checks to pass": these names must have succeeded on the head.
    #[serde(default)]
    pub required_checks: Vec<String>,
    /// Classic branch protection's "Require status checks to pass before merging": these
    /// names must have succeeded on the head. Unlike a ruleset's, anyone who may read the
    /// repository sees them (`GET /repos/{o}/{r}/branches/{branch}`, its `protection`).
    #[serde(default)]
    pub classic_checks: Vec<String>,
    /// The CI jobs that report check runs on every push made from now on.
    #[serde(default)]
    pub ci: Vec<CiJob>,
    /// "Require a pull request before merging" with this many approving reviews.
    #[serde(default)]
    pub required_reviews: u32,
    /// "Require merge queue".
    #[serde(default)]
    pub merge_queue: bool,
    /// "Require signed commits".
    #[serde(default)]
    pub signed_commits: bool,
    /// GitHub computes mergeability asynchronously: for this long after each merge to main,
    /// open PRs read `mergeable: null` (`mergeable_state: unknown`) and a merge answers 405
    /// "Base branch was modified. Review and try the merge again." ("Get a pull request":
    /// "`mergeable` … `null` … a background job is started to compute it").
    #[serde(default, with = "humantime_serde::option")]
    pub mergeable_unknown_for: Option<Duration>,
}

/// The ruleset's id, as the rules endpoint reports it.
const RULESET_ID: u64 = 42;
/// The GitHub Actions App, as check runs name it.
pub(crate) const ACTIONS_APP: &str = "github-actions";

impl GitHub {
    /// Set the rules of `main` and the CI (replacing what was set before).
    pub fn protect(&self, p: Protection) {
        self.note_pushes();
        let now = self.now();
        let mut g = self.lock();
        g.protection = p;
        g.protection_since = Some(now);
    }

    /// The rules of `main` now.
    pub fn protection(&self) -> Protection {
        self.lock().protection.clone()
    }

    /// Record when each branch head was first seen: the push time the CI actor counts from.
    /// Called after every write that moves a branch.
    pub(crate) fn note_pushes(&self) {
        let Ok(repo) = git2::Repository::open_bare(self.repo_path()) else {
            return;
        };
        let Ok(refs) = repo.references_glob("refs/heads/*") else {
            return;
        };
        let heads: Vec<String> = refs
            .flatten()
            .filter_map(|r| r.target().map(|o| o.to_string()))
            .collect();
        let now = self.now();
        let mut g = self.lock();
        for sha in heads {
            g.pushed.entry(sha).or_insert(now);
        }
    }

    /// The CI's check runs on `sha` now: none before `after`, in progress until `takes` has
    /// passed, then completed. Only pushes made after the CI was set get runs.
    pub(crate) fn ci_runs(&self, sha: &str) -> Vec<crate::github_data::CheckRunRec> {
        self.note_pushes();
        let now = self.now();
        let g = self.lock();
        let (Some(pushed), Some(since)) = (g.pushed.get(sha), g.protection_since) else {
            return Vec::new();
        };
        if *pushed < since {
            return Vec::new();
        }
        let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let after = |d: Duration| *pushed + chrono::Duration::from_std(d).unwrap_or_default();
        g.protection
            .ci
            .iter()
            .enumerate()
            .filter(|(_, job)| after(job.after) <= now)
            .map(|(i, job)| {
                let started = after(job.after);
                let done = after(job.after + job.takes);
                let completed = done <= now;
                crate::github_data::CheckRunRec {
                    id: run_id(sha, i),
                    name: job.name.clone(),
                    head_sha: sha.to_owned(),
                    status: if completed {
                        "completed"
                    } else {
                        "in_progress"
                    }
                    .into(),
                    conclusion: completed.then(|| job.conclusion.clone()),
                    title: None,
                    summary: None,
                    details_url: None,
                    started_at: stamp(started),
                    completed_at: completed.then(|| stamp(done)),
                    app: Some(ACTIONS_APP.to_owned()),
                }
            })
            .collect()
    }

    /// Whether check `name` succeeded on `sha` (`None`: not reported, or still running): its
    /// newest check run (CI's or an App's), else its commit status.
    pub(crate) fn check_state(&self, sha: &str, name: &str) -> Option<bool> {
        let runs = self.runs_of(sha);
        let run = runs.iter().rev().find(|r| r.name == name).map(|r| {
            let passed = matches!(
                r.conclusion.as_deref(),
                Some("success" | "neutral" | "skipped")
            );
            (r.status == "completed").then_some(passed)
        });
        let status = || {
            self.statuses(sha)
                .iter()
                .find(|(c, _, _)| c == name)
                .and_then(|(_, s, _)| match s.as_str() {
                    "success" => Some(true),
                    "pending" => None,
                    _ => Some(false),
                })
        };
        match run {
            Some(state) => state,
            None => status(),
        }
    }

    /// Distinct reviewers with write access whose latest review of PR `n` approves.
    fn approvals(&self, n: u64) -> usize {
        let g = self.lock();
        let mut latest: BTreeMap<&str, &str> = BTreeMap::new();
        for r in g.reviews.iter().filter(|r| r.number == n) {
            if matches!(
                r.state.as_str(),
                "APPROVED" | "CHANGES_REQUESTED" | "DISMISSED"
            ) {
                latest.insert(&r.user, &r.state);
            }
        }
        latest
            .iter()
            .filter(|(user, state)| {
                **state == "APPROVED"
                    && g.collaborators
                        .get(**user)
                        .is_some_and(|p| matches!(p.as_str(), "admin" | "maintain" | "write"))
            })
            .count()
    }

    /// Why the ruleset refuses merging PR `n` (head `head`, base head `base`) now: GitHub's
    /// lines, empty when it allows it.
    pub(crate) fn rule_violations(&self, n: u64, head: &str, base: &str) -> Vec<String> {
        let p = self.protection();
        let mut out: Vec<String> = p
            .required_checks
            .iter()
            .filter(|c| self.check_state(head, c) != Some(true))
            .map(|c| format!("Required status check \"{c}\" is expected."))
            .collect();
        let needed = p.required_reviews as usize;
        if needed > 0 && self.approvals(n) < needed {
            out.push(if needed == 1 {
                "At least 1 approving review is required by reviewers with write access.".into()
            } else {
                format!(
                    "At least {needed} approving reviews are required by reviewers with write access."
                )
            });
        }
        if p.signed_commits
            && self
                .commits_between(head, base)
                .iter()
                .any(|c| !self.verified(c))
        {
            out.push("Commits must have verified signatures.".into());
        }
        out
    }
}

/// A CI run's id: stable for a commit and job, apart from every App's run (from 5001).
fn run_id(sha: &str, job: usize) -> u64 {
    let prefix = u64::from_str_radix(sha.get(..8).unwrap_or("0"), 16).unwrap_or(0);
    10_000_000_000 + prefix * 64 + job as u64
}

impl GitHub {
    /// Every check run of `sha`, oldest first: the Apps' (tugboat's) and the CI's.
    pub(crate) fn runs_of(&self, sha: &str) -> Vec<crate::github_data::CheckRunRec> {
        let mut runs = self.check_runs(sha);
        runs.extend(self.ci_runs(sha));
        runs.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        runs
    }

    /// PR `number` (at `head`) was merged into `base` as `sha`, by a merge or the merge
    /// queue: recorded, and when main moved, every open PR's mergeability is computed again.
    pub(crate) fn merged_into(&self, base: &str, number: u64, sha: &str, head: &str) {
        let now = self.now();
        {
            let mut g = self.lock();
            g.merged(number, sha, head, now);
            if base == "main" {
                g.main_moved = Some((sha.to_owned(), tokio::time::Instant::now()));
            }
        }
        self.note_pushes();
        self.note_activity(Some(BOT), Some("pr_merge"));
        if base == "main" {
            self.recompute_mergeability();
        }
    }

    /// Main moved by a merge: GitHub computes every open PR's mergeability again.
    pub(crate) fn recompute_mergeability(&self) {
        let now = self.now();
        let mut g = self.lock();
        let window = g.protection.mergeable_unknown_for;
        g.recomputing_until =
            window.map(|w| now + chrono::Duration::from_std(w).unwrap_or_default());
    }

    /// Whether GitHub is still computing the open PRs' mergeability.
    pub(crate) fn computing_mergeability(&self) -> bool {
        let now = self.now();
        self.lock().recomputing_until.is_some_and(|t| now < t)
    }
}

/// Classic protection's refusal of a merge whose required checks did not pass.
fn classic_refusal(gh: &GitHub, head: &str) -> Option<Response> {
    let required = gh.protection().classic_checks;
    let missing: Vec<&String> = required
        .iter()
        .filter(|c| gh.check_state(head, c) != Some(true))
        .collect();
    let message = match missing.as_slice() {
        [] => return None,
        [one] => format!("Required status check \"{one}\" is expected."),
        many => format!(
            "{} of {} required status checks are expected.",
            many.len(),
            required.len()
        ),
    };
    Some(gh_error(StatusCode::METHOD_NOT_ALLOWED, &message))
}

/// GitHub's refusal of a direct merge on a branch whose rules it breaks, if any.
pub(super) fn merge_refusal(gh: &GitHub, n: u64, head: &str, base: &str) -> Option<Response> {
    if let Some(refused) = classic_refusal(gh, head) {
        return Some(refused);
    }
    if gh.computing_mergeability() {
        return Some(gh_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Base branch was modified. Review and try the merge again.",
        ));
    }
    if gh.protection().merge_queue {
        return Some(gh_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Changes must be made through the merge queue",
        ));
    }
    let lines = gh.rule_violations(n, head, base);
    (!lines.is_empty()).then(|| {
        gh_error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!(
                "Repository rule violations found\n\n{}\n",
                lines.join("\n\n")
            ),
        )
    })
}

pub(super) async fn set_protection(State(gh): State<GitHub>, body: Bytes) -> Response {
    match serde_json::from_slice::<Protection>(&body) {
        Ok(p) => {
            gh.protect(p);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the protection is not valid: {e}"),
        )
            .into_response(),
    }
}

/// `GET /repos/{owner}/{repo}/rules/branches/{branch}`: the active rules on `main` (every
/// other branch has none).
pub(super) async fn branch_rules(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, branch)): RepoS,
) -> Response {
    guard!(gh, headers, o, r, "GET rules");
    let p = gh.protection();
    let mut rules = Vec::new();
    if branch == "main" {
        if !p.required_checks.is_empty() {
            let checks: Vec<Value> = p
                .required_checks
                .iter()
                .map(|c| json!({"context": c}))
                .collect();
            rules.push(json!({"type": "required_status_checks", "parameters": {
                "required_status_checks": checks,
                "strict_required_status_checks_policy": false}}));
        }
        if p.required_reviews > 0 {
            rules.push(json!({"type": "pull_request", "parameters": {
                "required_approving_review_count": p.required_reviews,
                "dismiss_stale_reviews_on_push": false, "require_code_owner_review": false,
                "require_last_push_approval": false,
                "required_review_thread_resolution": false,
                "allowed_merge_methods": ["merge", "squash", "rebase"]}}));
        }
        if p.merge_queue {
            rules.push(json!({"type": "merge_queue", "parameters": {
                "check_response_timeout_minutes": 60, "grouping_strategy": "ALLGREEN",
                "max_entries_to_build": 1, "max_entries_to_merge": 1, "merge_method": "SQUASH",
                "min_entries_to_merge": 1, "min_entries_to_merge_wait_minutes": 5}}));
        }
        if p.signed_commits {
            rules.push(json!({"type": "required_signatures"}));
        }
    }
    for rule in &mut rules {
        rule["ruleset_source_type"] = json!("Repository");
        rule["ruleset_source"] = json!(format!("{}/{}", gh.owner, gh.repo));
        rule["ruleset_id"] = json!(RULESET_ID);
    }
    Json(Value::Array(rules)).into_response()
}

/// `GET /repos/{owner}/{repo}/branches/{branch}`: the branch, with its classic protection's
/// required status checks (main's; other branches are unprotected).
pub(super) async fn get_branch(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, branch)): RepoS,
) -> Response {
    guard!(gh, headers, o, r, "GET branch");
    let Some(sha) = gh.branch_sha(&branch) else {
        return gh_error(StatusCode::NOT_FOUND, "Branch not found");
    };
    let Some((parents, message)) = gh.commit(&sha) else {
        return gh_error(StatusCode::NOT_FOUND, "Branch not found");
    };
    let tree = git2::Repository::open_bare(gh.repo_path())
        .ok()
        .and_then(|repo| {
            let oid = git2::Oid::from_str(&sha).ok()?;
            Some(repo.find_commit(oid).ok()?.tree_id().to_string())
        })
        .unwrap_or_default();
    let checks = if branch == "main" {
        gh.protection().classic_checks
    } else {
        Vec::new()
    };
    let date = gh.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let head = wire::BranchHead {
        sha: &sha,
        message: &message,
        tree: &tree,
        date: &date,
        parents: &parents,
    };
    Json(wire::branch(&gh.owner, &gh.repo, &branch, &head, &checks)).into_response()
}
