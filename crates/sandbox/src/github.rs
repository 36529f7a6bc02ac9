//! A stand-in for the GitHub REST endpoints tugboat uses, backed by a real bare repository
//! served over smart HTTP by the real `git http-backend` (token auth, like GitHub's), in
//! which merges really happen.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use base64::Engine as _;
use chrono::{DateTime, Utc};

use super::SandboxClock;
use super::github_wire as wire;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tugboat::clock::Clock as _;

/// A pull request in the stand-in.
#[derive(Debug, Clone)]
pub struct Pr {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub state: String,
    pub merged_at: Option<String>,
    pub merge_sha: Option<String>,
    /// The head branch's commit when the PR was closed (GitHub keeps it as `head.sha`).
    pub closed_head: Option<String>,
    pub labels: Vec<String>,
    pub comments: Vec<(String, String)>,
    pub created_at: String,
    /// Who opened it (its `user`).
    pub user: String,
    /// When anything about it last changed (GitHub moves `updated_at` on every edit, label
    /// and comment).
    pub updated_at: String,
}

/// An issue in the stand-in (numbered in the same sequence as pull requests, as on GitHub).
#[derive(Debug, Clone)]
pub struct IssueRec {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub state: String,
    pub state_reason: Option<String>,
    pub labels: Vec<String>,
    pub comments: Vec<(String, String)>,
    pub created_at: String,
    /// Pinned to the repository's issue list (GraphQL `pinIssue`).
    pub pinned: bool,
    /// Who opened it (its `user`).
    pub user: String,
    /// When anything about it last changed.
    pub updated_at: String,
}

/// A comment on a PR or issue, with what GitHub keeps of it.
#[derive(Debug, Clone)]
pub struct CommentRec {
    pub id: u64,
    /// The PR or issue number.
    pub number: u64,
    pub user: String,
    pub body: String,
    pub created_at: chrono::DateTime<Utc>,
    pub updated_at: chrono::DateTime<Utc>,
    /// (user, content) of each reaction.
    pub reactions: Vec<(String, String)>,
}

/// A pull request review.
#[derive(Debug, Clone)]
pub struct ReviewRec {
    pub id: u64,
    pub number: u64,
    pub user: String,
    pub state: String,
    pub commit_id: String,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) prs: Vec<Pr>,
    pub(crate) issues: Vec<IssueRec>,
    /// Every issue event (labelled, unlabelled), oldest first, with who did it.
    pub(crate) events: Vec<crate::github_people::EventRec>,
    /// Every commit status ever set, oldest first, with who set it and when.
    pub(crate) status_log: Vec<crate::github_people::StatusRec>,
    /// Every comment, oldest first (the truth behind `Pr::comments` / `IssueRec::comments`).
    comments: Vec<CommentRec>,
    reviews: Vec<ReviewRec>,
    /// Active members of `org/team`.
    teams: BTreeMap<String, Vec<String>>,
    /// The next this many API requests are refused as rate limited (with this message).
    throttle: Option<(u32, String)>,
    pub(crate) statuses: BTreeMap<String, Vec<(String, String, String)>>,
    main_moved: Option<(String, tokio::time::Instant)>,
    collaborators: BTreeMap<String, String>,
    calls: BTreeMap<String, u64>,
    /// Branch protection on main: a PR merges only when its head contains main's head
    /// ("Require branches to be up to date before merging").
    require_up_to_date: bool,
    /// Check runs, oldest first.
    pub(crate) check_runs: Vec<crate::github_data::CheckRunRec>,
    /// Commits GitHub made through the Git Data API and signed (shown as Verified).
    pub(crate) verified: std::collections::BTreeSet<String>,
    /// The rules of main (a ruleset) and the CI that runs on pushes.
    protection: protection::Protection,
    /// When the protection was last set (CI runs only for pushes after it).
    protection_since: Option<DateTime<Utc>>,
    /// When each commit was first seen at a branch head: its push time.
    pushed: BTreeMap<String, DateTime<Utc>>,
    /// Every branch update, who made it and when (`github::activity`).
    activity: activity::Activity,
    /// The merge queue of main, first to merge first, and the PRs it removed.
    queue: Vec<queue::QueueEntry>,
    removals: Vec<queue::Removal>,
    /// Until when GitHub computes the open PRs' mergeability after main moved.
    recomputing_until: Option<DateTime<Utc>>,
    /// GitHub's secondary limits on content-creating requests, when enforced: at most `n`
    /// in any `per`, for each window; the times of the writes let through.
    write_limits: Vec<(usize, Duration)>,
    writes: VecDeque<tokio::time::Instant>,
    refused_writes: u64,
}

impl Inner {
    /// Issues and pull requests share one number sequence.
    pub(crate) fn next_number(&self) -> u64 {
        (self.prs.len() + self.issues.len()) as u64 + 1
    }

    fn exists(&self, number: u64) -> bool {
        self.prs.iter().any(|p| p.number == number)
            || self.issues.iter().any(|i| i.number == number)
    }

    /// Add a comment; its id is larger than every earlier one's, as on GitHub.
    fn add_comment(
        &mut self,
        now: DateTime<Utc>,
        number: u64,
        user: &str,
        body: &str,
    ) -> CommentRec {
        let c = CommentRec {
            id: 9000 + self.comments.len() as u64 + 1,
            number,
            user: user.to_owned(),
            body: body.to_owned(),
            created_at: now,
            updated_at: now,
            reactions: Vec::new(),
        };
        self.comments.push(c.clone());
        self.touch(number, now);
        c
    }

    /// The labels of the pull request or issue `number`.
    pub(crate) fn labels_mut(&mut self, number: u64) -> Option<&mut Vec<String>> {
        match self.prs.iter_mut().find(|p| p.number == number) {
            Some(p) => Some(&mut p.labels),
            None => self
                .issues
                .iter_mut()
                .find(|i| i.number == number)
                .map(|i| &mut i.labels),
        }
    }

    fn comments_on(&self, number: u64) -> Vec<(String, String)> {
        self.comments
            .iter()
            .filter(|c| c.number == number)
            .map(|c| (c.user.clone(), c.body.clone()))
            .collect()
    }
}

fn comment_json(gh: &GitHub, c: &CommentRec) -> Value {
    let secs = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    wire::comment(
        &gh.owner,
        &gh.repo,
        c.number,
        &wire::Comment {
            id: c.id,
            user: &c.user,
            body: &c.body,
            created_at: &secs(&c.created_at),
            updated_at: &secs(&c.updated_at),
        },
    )
}

/// The shared state of the GitHub stand-in.
#[derive(Clone)]
pub struct GitHub {
    inner: Arc<Mutex<Inner>>,
    pub(crate) git_lock: Arc<tokio::sync::Mutex<()>>,
    root: PathBuf,
    pub owner: String,
    pub repo: String,
    /// The one token accepted; rotating it revokes the one before.
    token: Arc<Mutex<String>>,
    /// The GitHub App installed on the repository, and its installation tokens.
    pub app: Arc<crate::github_app::App>,
    /// Stamps comments, reviews, merges and statuses.
    clock: SandboxClock,
}

/// What GitHub answers a request over a secondary rate limit.
const SECONDARY: &str =
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";

/// The login tugboat's token acts as in the stand-in.
pub const BOT: &str = "tugboat[bot]";

/// A rate-limit answer with the headers GitHub sends: `Retry-After` for a secondary limit;
/// `x-ratelimit-remaining: 0` and the reset time (30 seconds from now) for the primary one.
fn throttled(message: &str) -> Response {
    let mut r = gh_error(StatusCode::FORBIDDEN, message);
    let h = r.headers_mut();
    if message.contains("secondary") {
        h.insert("retry-after", header::HeaderValue::from_static("60"));
    } else {
        let reset = (Utc::now().timestamp() + 30).to_string();
        h.insert(
            "x-ratelimit-limit",
            header::HeaderValue::from_static("5000"),
        );
        h.insert(
            "x-ratelimit-remaining",
            header::HeaderValue::from_static("0"),
        );
        if let Ok(v) = header::HeaderValue::from_str(&reset) {
            h.insert("x-ratelimit-reset", v);
        }
    }
    r
}

pub(crate) fn gh_error(code: StatusCode, message: &str) -> Response {
    (
        code,
        Json(json!({"message": message, "documentation_url": "https://docs.github.com/rest"})),
    )
        .into_response()
}

impl GitHub {
    /// A stand-in whose repository lives under `root/<owner>/<repo>.git`.
    pub fn new(root: &Path, owner: &str, repo: &str, token: &str) -> Self {
        Self {
            inner: Arc::default(),
            git_lock: Arc::default(),
            root: root.to_owned(),
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            token: Arc::new(Mutex::new(token.to_owned())),
            app: Arc::new(
                crate::github_app::App::generate()
                    .unwrap_or_else(|e| panic!("the stand-in cannot make an RSA key: {e}")),
            ),
            clock: SandboxClock::default(),
        }
    }

    /// The same stand-in, stamping from `clock`.
    pub fn with_clock(mut self, clock: SandboxClock) -> Self {
        self.clock = clock;
        self
    }

    /// The stand-in's time of day.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn repo_path(&self) -> PathBuf {
        self.root
            .join(&self.owner)
            .join(format!("{}.git", self.repo))
    }

    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route(
                "/repos/{owner}/{repo}/pulls",
                get(list_pulls).post(create_pull),
            )
            .route(
                "/repos/{owner}/{repo}/pulls/{n}",
                get(get_pull).patch(update_pull),
            )
            .route("/repos/{owner}/{repo}/pulls/{n}/merge", put(merge_pull))
            .route(
                "/repos/{owner}/{repo}/issues",
                get(list_issues).post(create_issue),
            )
            .route(
                "/repos/{owner}/{repo}/issues/{n}",
                get(get_issue).patch(update_issue),
            )
            .route("/graphql", post(graphql))
            .route("/repos/{owner}/{repo}/issues/{n}/labels", post(add_labels))
            .route(
                "/repos/{owner}/{repo}/issues/{n}/labels/{name}",
                delete(remove_label),
            )
            .route(
                "/repos/{owner}/{repo}/issues/{n}/comments",
                get(list_comments).post(add_comment),
            )
            .route(
                "/repos/{owner}/{repo}/issues/comments/{n}/reactions",
                post(add_reaction),
            )
            .route("/repos/{owner}/{repo}/pulls/{n}/reviews", get(list_reviews))
            .route(
                "/orgs/{org}/teams/{team}/memberships/{user}",
                get(team_membership),
            )
            .route("/user", get(authenticated_user))
            .route("/app", get(get_app))
            .route("/repos/{owner}/{repo}/installation", get(repo_installation))
            .route(
                "/app/installations/{id}/access_tokens",
                post(create_installation_token),
            )
            .route("/rate_limit", get(rate_limit))
            .route("/repos/{owner}/{repo}/statuses/{sha}", post(add_status))
            .route(
                "/repos/{owner}/{repo}/commits/{sha}/status",
                get(combined_status),
            )
            .route("/git/{*path}", any(git_http))
            .route(
                "/repos/{owner}/{repo}/activity",
                get(activity::list_activities),
            )
            .route(
                "/repos/{owner}/{repo}/collaborators/{user}/permission",
                get(permission),
            )
            .merge(crate::github_data::routes())
            .merge(crate::github_people::routes())
            .route(
                "/repos/{owner}/{repo}/rules/branches/{branch}",
                get(protection::branch_rules),
            )
            .route(
                "/repos/{owner}/{repo}/branches/{branch}",
                get(protection::get_branch),
            )
            .route("/_sandbox/protection", post(protection::set_protection))
            .route("/_sandbox/pulls", get(dump))
            .route("/_sandbox/comments", post(comment_as))
            .route("/_sandbox/collaborators", post(add_collaborator))
            .route("/_sandbox/stats", get(stats))
            .with_state(self.clone())
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn count(&self, op: &str) {
        *self.lock().calls.entry(op.to_owned()).or_insert(0) += 1;
    }

    /// Every pull request, for tests and the demo.
    pub fn pulls(&self) -> Vec<Pr> {
        let g = self.lock();
        g.prs
            .iter()
            .map(|p| Pr {
                comments: g.comments_on(p.number),
                ..p.clone()
            })
            .collect()
    }

    /// Every comment with its id, times and reactions.
    pub fn comment_records(&self) -> Vec<CommentRec> {
        self.lock().comments.clone()
    }

    /// Edit a comment as its author would (GitHub moves `updated_at`).
    pub fn edit_comment(&self, id: u64, body: &str) -> bool {
        let mut g = self.lock();
        match g.comments.iter_mut().find(|c| c.id == id) {
            Some(c) => {
                c.body = body.to_owned();
                c.updated_at = self.now() + chrono::Duration::seconds(1);
                true
            }
            None => false,
        }
    }

    /// Review a PR as `user` at its current head (`APPROVED`, `CHANGES_REQUESTED`, …).
    pub fn review_as(&self, number: u64, user: &str, state: &str) -> bool {
        let Some(head) = self
            .pulls()
            .into_iter()
            .find(|p| p.number == number)
            .and_then(|p| self.branch_sha(&p.head))
        else {
            return false;
        };
        let mut g = self.lock();
        let id = g.reviews.len() as u64 + 1;
        g.reviews.push(ReviewRec {
            id,
            number,
            user: user.to_owned(),
            state: state.to_owned(),
            commit_id: head,
        });
        true
    }

    /// Refuse the next `requests` API requests as GitHub does when a rate limit is hit (the
    /// primary one, or the secondary one for content creation).
    pub fn throttle(&self, requests: u32, secondary: bool) {
        let message = if secondary {
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
        } else {
            "API rate limit exceeded for installation ID 1."
        };
        self.lock().throttle = Some((requests, message.to_owned()));
    }

    /// Enforce GitHub's secondary limits on content-creating requests (every request but a
    /// `GET`): at most `n` in any `per` for each `(n, per)` (GitHub: 80 a minute and 500 an
    /// hour; tests shrink the windows). One over them is refused as GitHub refuses it: a
    /// `403` saying so, with a `Retry-After` of when the oldest write ages out.
    pub fn enforce_write_limits(&self, limits: &[(usize, Duration)]) {
        let mut g = self.lock();
        g.write_limits = limits.to_vec();
        g.writes.clear();
    }

    /// Content-creating requests refused for exceeding the secondary limits.
    pub fn refused_writes(&self) -> u64 {
        self.lock().refused_writes
    }

    /// `Some(wait)` when one more write now would exceed a limit; else the write is counted.
    fn over_write_limits(&self) -> Option<Duration> {
        let mut g = self.lock();
        let longest = g.write_limits.iter().map(|(_, per)| *per).max()?;
        let now = tokio::time::Instant::now();
        while g
            .writes
            .front()
            .is_some_and(|t| now.duration_since(*t) >= longest)
        {
            g.writes.pop_front();
        }
        let wait = g
            .write_limits
            .iter()
            .filter_map(|&(n, per)| {
                let recent: Vec<_> = g
                    .writes
                    .iter()
                    .filter(|t| now.duration_since(**t) < per)
                    .collect();
                let oldest = recent.len().checked_sub(n).map(|i| *recent[i])?;
                Some((oldest + per).saturating_duration_since(now))
            })
            .max();
        match wait {
            Some(_) => g.refused_writes += 1,
            None => g.writes.push_back(now),
        }
        wait
    }

    fn take_throttle(&self) -> Option<String> {
        let mut g = self.lock();
        let (left, message) = g.throttle.as_mut()?;
        let message = message.clone();
        *left -= 1;
        if *left == 0 {
            g.throttle = None;
        }
        Some(message)
    }

    /// Make `user` an active member of `org/team`.
    pub fn add_team_member(&self, org: &str, team: &str, user: &str) {
        self.lock()
            .teams
            .entry(format!("{org}/{team}"))
            .or_default()
            .push(user.to_owned());
    }

    /// Every issue (not pull requests), for tests and the demo.
    pub fn issues(&self) -> Vec<IssueRec> {
        let g = self.lock();
        g.issues
            .iter()
            .map(|i| IssueRec {
                comments: g.comments_on(i.number),
                ..i.clone()
            })
            .collect()
    }

    /// An issue as GitHub shows it; `comments` is its comment count (the caller holds the
    /// lock, or takes it: this never locks).
    fn issue_json(&self, i: &IssueRec, comments: usize) -> Value {
        let closed = (i.state == "closed").then_some(i.created_at.as_str());
        wire::issue(&wire::Item {
            owner: &self.owner,
            repo: &self.repo,
            number: i.number,
            title: &i.title,
            body: &i.body,
            state: &i.state,
            labels: &i.labels,
            created_at: &i.created_at,
            updated_at: &i.updated_at,
            closed_at: closed,
            comments,
            user: &i.user,
        })
        .as_object()
        .cloned()
        .map(|mut o| {
            o.insert("state_reason".into(), json!(i.state_reason));
            Value::Object(o)
        })
        .unwrap_or_default()
    }

    /// Statuses of a commit: (context, state, description).
    pub fn statuses(&self, sha: &str) -> Vec<(String, String, String)> {
        self.lock().statuses.get(sha).cloned().unwrap_or_default()
    }

    /// Post a comment on a PR or issue as `user` (a person, not tugboat); its id.
    pub fn comment_as(&self, number: u64, user: &str, body: &str) -> Option<u64> {
        let now = self.now();
        let mut g = self.lock();
        g.exists(number)
            .then(|| g.add_comment(now, number, user, body).id)
    }

    /// Protect main as "Require branches to be up to date before merging" does: a PR whose
    /// head does not contain main's head is refused, its required checks "expected".
    pub fn require_up_to_date(&self, on: bool) {
        self.lock().require_up_to_date = on;
    }

    /// Give `user` a permission (`admin`, `write`, `read`) on the repository.
    pub fn add_collaborator(&self, user: &str, permission: &str) {
        self.lock()
            .collaborators
            .insert(user.to_owned(), permission.to_owned());
    }

    /// When a merge last moved main, and to which commit.
    pub fn main_moved(&self) -> Option<(String, tokio::time::Instant)> {
        self.lock().main_moved.clone()
    }

    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    /// Rotate the token: from now on only `token` is accepted (REST and git alike).
    pub fn rotate_token(&self, token: &str) {
        if let Ok(mut t) = self.token.lock() {
            token.clone_into(&mut t);
        }
    }

    /// What the `guard!` of every handler checks, in its order: the credentials, a rate
    /// limit, the repository. `Some` is the refusal.
    pub(crate) fn refusal(
        &self,
        headers: &HeaderMap,
        owner: &str,
        repo: &str,
        op: &str,
    ) -> Option<Response> {
        self.count(op);
        if !self.authorized(headers) {
            return Some(gh_error(StatusCode::UNAUTHORIZED, "Bad credentials"));
        }
        if let Some(message) = self.take_throttle() {
            return Some(throttled(&message));
        }
        if !op.starts_with("GET ")
            && let Some(wait) = self.over_write_limits()
        {
            let mut r = gh_error(StatusCode::FORBIDDEN, SECONDARY);
            let secs = wait.as_secs_f64().ceil().max(1.0).to_string();
            if let Ok(v) = header::HeaderValue::from_str(&secs) {
                r.headers_mut().insert("retry-after", v);
            }
            return Some(r);
        }
        (owner != self.owner || repo != self.repo)
            .then(|| gh_error(StatusCode::NOT_FOUND, "Not Found"))
    }

    /// Whether the request carries one of the App's installation tokens (check runs are the
    /// Apps' alone).
    pub(crate) fn by_app(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("token "))
            })
            .is_some_and(|t| self.app.token_valid(t))
    }

    /// Protect main as "Require signed commits" does: a PR whose commits GitHub did not
    /// verify is refused.
    pub fn require_signed_commits(&self, on: bool) {
        self.lock().protection.signed_commits = on;
    }

    pub(crate) fn authorized(&self, headers: &HeaderMap) -> bool {
        let token = match self.token.lock() {
            Ok(t) => t.clone(),
            Err(_) => return false,
        };
        let Some(v) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("token "))
        {
            return t == token || self.app.token_valid(t);
        }
        if let Some(b) = v.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&decoded);
            return text
                .split_once(':')
                .is_some_and(|(_, pw)| pw == token || self.app.token_valid(pw));
        }
        false
    }

    /// A pull request as the issues API shows it: an issue with a `pull_request` link.
    fn pr_as_issue_json(&self, p: &Pr) -> Value {
        let pr = self.pr_json(p);
        let mut v = self.issue_json(
            &IssueRec {
                number: p.number,
                title: p.title.clone(),
                body: p.body.clone(),
                state: p.state.clone(),
                state_reason: None,
                labels: p.labels.clone(),
                comments: vec![],
                created_at: p.created_at.clone(),
                pinned: false,
                user: p.user.clone(),
                updated_at: p.updated_at.clone(),
            },
            p.comments.len(),
        );
        v["html_url"] = pr["html_url"].clone();
        v["pull_request"] = json!({"url": pr["url"], "html_url": pr["html_url"],
            "diff_url": format!("{}.diff", pr["html_url"].as_str().unwrap_or_default()),
            "patch_url": format!("{}.patch", pr["html_url"].as_str().unwrap_or_default()),
            "merged_at": pr["merged_at"]});
        v
    }

    fn pr_json(&self, p: &Pr) -> Value {
        let head_sha = if p.state == "open" {
            self.branch_sha(&p.head).unwrap_or_default()
        } else {
            p.closed_head.clone().unwrap_or_default()
        };
        let updated = p.updated_at.as_str();
        let closed =
            (p.state == "closed").then_some(p.merged_at.as_ref().unwrap_or(&p.updated_at).as_str());
        let (o, r) = (self.owner.as_str(), self.repo.as_str());
        let computing = p.state == "open" && self.computing_mergeability();
        let mut json = wire::pull_request(
            &wire::Item {
                owner: o,
                repo: r,
                number: p.number,
                title: &p.title,
                body: &p.body,
                state: &p.state,
                labels: &p.labels,
                created_at: &p.created_at,
                updated_at: updated,
                closed_at: closed,
                comments: p.comments.len(),
                user: &p.user,
            },
            wire::end(o, r, &p.head, &head_sha),
            wire::end(o, r, &p.base, &self.branch_sha(&p.base).unwrap_or_default()),
            p.merged_at.as_deref(),
            p.merge_sha.as_deref(),
        );
        if computing {
            json["mergeable"] = Value::Null;
            json["mergeable_state"] = json!("unknown");
        }
        json
    }
}

/// How a pull request is merged (`merge_method`).
pub(crate) enum MergeMethod {
    Squash,
    Merge,
    Rebase,
}

type Repo = UrlPath<(String, String)>;
type RepoN = UrlPath<(String, String, u64)>;
type RepoS = UrlPath<(String, String, String)>;

macro_rules! guard {
    ($gh:expr, $headers:expr, $owner:expr, $repo:expr, $op:expr) => {
        if let Some(refused) = $gh.refusal(&$headers, &$owner, &$repo, $op) {
            return refused;
        }
    };
}

mod access;
mod activity;
mod git_bridge;
mod issues;
mod protection;
mod queue;
mod routes;

use access::*;
pub use activity::ActivityRec;
use git_bridge::git_http;
use issues::*;
pub use protection::{CiJob, Protection};
use routes::*;
pub(crate) use routes::{PageQuery, paged};
