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
    /// Branch protection on main: "Require signed commits".
    require_signed: bool,
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

    /// Create the bare repository with one commit of `files` on `main`.
    pub fn init(&self, files: &[(String, String)]) -> Result<(), git2::Error> {
        let repo = git2::Repository::init_bare(self.repo_path())?;
        repo.config()?.set_bool("http.receivepack", true)?;
        let mut builder = git2::build::TreeUpdateBuilder::new();
        for (path, text) in files {
            let oid = repo.blob(text.as_bytes())?;
            builder.upsert(path, oid, git2::FileMode::Blob);
        }
        let empty = repo.treebuilder(None)?.write()?;
        let tree_id = builder.create_updated(&repo, &repo.find_tree(empty)?)?;
        let sig = git2::Signature::now("salon-dev", "dev@salon.example")?;
        repo.commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            "Initial GitOps layout",
            &repo.find_tree(tree_id)?,
            &[],
        )?;
        repo.set_head("refs/heads/main")?;
        Ok(())
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
                "/repos/{owner}/{repo}/collaborators/{user}/permission",
                get(permission),
            )
            .merge(crate::github_data::routes())
            .merge(crate::github_people::routes())
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

    /// Whether `head` is `base` or descends from it.
    fn contains(&self, head: &str, base: &str) -> bool {
        let Ok(repo) = git2::Repository::open_bare(self.repo_path()) else {
            return false;
        };
        let (Ok(h), Ok(b)) = (git2::Oid::from_str(head), git2::Oid::from_str(base)) else {
            return false;
        };
        h == b || repo.graph_descendant_of(h, b).unwrap_or(false)
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

    /// The sha a branch points at in the bare repository.
    pub fn branch_sha(&self, branch: &str) -> Option<String> {
        let repo = git2::Repository::open_bare(self.repo_path()).ok()?;
        repo.refname_to_id(&format!("refs/heads/{branch}"))
            .ok()
            .map(|o| o.to_string())
    }

    /// A person (`who`) commits `text` to `path` on top of `branch` and pushes it, as a push
    /// from their machine would; the new head. Stamped from the sandbox's clock.
    pub fn commit_as(&self, branch: &str, path: &str, text: &str, who: &str) -> Option<String> {
        self.person_commit(who, branch, branch, (path, text), self.now())
    }

    /// `who` commits `path` = `text` on `on`'s head, dated `at`, and points `branch` at it
    /// (a push, forced when `branch` is not `on`); the new head.
    pub(crate) fn person_commit(
        &self,
        who: &str,
        branch: &str,
        on: &str,
        (path, text): (&str, &str),
        at: DateTime<Utc>,
    ) -> Option<String> {
        let repo = git2::Repository::open_bare(self.repo_path()).ok()?;
        let parent = repo
            .find_reference(&format!("refs/heads/{on}"))
            .ok()?
            .peel_to_commit()
            .ok()?;
        let blob = repo.blob(text.as_bytes()).ok()?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        update.upsert(path, blob, git2::FileMode::Blob);
        let tree = repo
            .find_tree(update.create_updated(&repo, &parent.tree().ok()?).ok()?)
            .ok()?;
        let at = git2::Time::new(at.timestamp(), 0);
        let sig = git2::Signature::new(who, &format!("{who}@example.com"), &at).ok()?;
        let message = format!("{who} edits {path}");
        let oid = repo
            .commit(None, &sig, &sig, &message, &tree, &[&parent])
            .ok()?;
        repo.reference(&format!("refs/heads/{branch}"), oid, true, &message)
            .ok()?;
        Some(oid.to_string())
    }

    /// The parents and the message of a commit.
    pub fn commit(&self, sha: &str) -> Option<(Vec<String>, String)> {
        let repo = git2::Repository::open_bare(self.repo_path()).ok()?;
        let c = repo.find_commit(git2::Oid::from_str(sha).ok()?).ok()?;
        Some((
            c.parent_ids().map(|p| p.to_string()).collect(),
            c.message().unwrap_or_default().to_owned(),
        ))
    }

    /// A file's text on a branch.
    pub fn read_file(&self, branch: &str, path: &str) -> Option<String> {
        self.read_at(&format!("refs/heads/{branch}"), path)
    }

    /// A file's text at a revision (a full reference name or a commit id).
    pub fn read_at(&self, revision: &str, path: &str) -> Option<String> {
        let repo = git2::Repository::open_bare(self.repo_path()).ok()?;
        let tree = repo.revparse_single(revision).ok()?.peel_to_tree().ok()?;
        let entry = tree.get_path(Path::new(path)).ok()?;
        let blob = repo.find_blob(entry.id()).ok()?;
        String::from_utf8(blob.content().to_vec()).ok()
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
        self.lock().require_signed = on;
    }

    /// Whether GitHub made and signed `sha` (a commit through the Git Data API).
    pub fn verified(&self, sha: &str) -> bool {
        self.lock().verified.contains(sha)
    }

    /// The commits of `head` that `base` does not have.
    fn commits_between(&self, head: &str, base: &str) -> Vec<String> {
        let Ok(repo) = git2::Repository::open_bare(self.repo_path()) else {
            return Vec::new();
        };
        let walk = || -> Result<Vec<String>, git2::Error> {
            let mut w = repo.revwalk()?;
            w.push(git2::Oid::from_str(head)?)?;
            w.hide(git2::Oid::from_str(base)?)?;
            w.map(|o| o.map(|o| o.to_string())).collect()
        };
        walk().unwrap_or_default()
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
        wire::pull_request(
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
        )
    }

    /// Merge `head` into `base` in the bare repository as GitHub would: one new commit with
    /// the combined tree (`squash`), a merge commit with both parents (`merge`), or the head
    /// commit replayed on the base with its own message (`rebase`; tugboat's branches hold one
    /// commit). Returns the new base commit.
    pub(crate) fn merge_into(
        &self,
        base: &str,
        head: &str,
        title: &str,
        method: &MergeMethod,
    ) -> Result<String, (StatusCode, String)> {
        let bad = |e: git2::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.message().to_owned());
        let repo = git2::Repository::open_bare(self.repo_path()).map_err(bad)?;
        let base_c = repo
            .find_reference(&format!("refs/heads/{base}"))
            .and_then(|r| r.peel_to_commit())
            .map_err(bad)?;
        let head_c = repo
            .find_reference(&format!("refs/heads/{head}"))
            .and_then(|r| r.peel_to_commit())
            .map_err(bad)?;
        let mut index = repo.merge_commits(&base_c, &head_c, None).map_err(bad)?;
        if index.has_conflicts() {
            return Err((StatusCode::METHOD_NOT_ALLOWED, "Merge conflict".into()));
        }
        let tree = repo
            .find_tree(index.write_tree_to(&repo).map_err(bad)?)
            .map_err(bad)?;
        let at = git2::Time::new(self.now().timestamp(), 0);
        let sig = git2::Signature::new("GitHub", "noreply@github.com", &at).map_err(bad)?;
        let (author, message, parents) = match method {
            MergeMethod::Squash => (sig.clone(), title.to_owned(), vec![&base_c]),
            MergeMethod::Merge => (sig.clone(), title.to_owned(), vec![&base_c, &head_c]),
            MergeMethod::Rebase => (
                head_c.author().to_owned(),
                head_c.message().unwrap_or_default().to_owned(),
                vec![&base_c],
            ),
        };
        let oid = repo
            .commit(
                Some(&format!("refs/heads/{base}")),
                &author,
                &sig,
                &message,
                &tree,
                &parents,
            )
            .map_err(bad)?;
        Ok(oid.to_string())
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

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    head: Option<String>,
    base: Option<String>,
}

async fn list_pulls(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r)): Repo,
    Query(q): Query<ListQuery>,
) -> Response {
    guard!(gh, headers, o, r, "GET pulls");
    let state = q.state.unwrap_or_else(|| "open".into());
    let prs: Vec<Value> = gh
        .pulls()
        .iter()
        .filter(|p| state == "all" || p.state == state)
        .filter(|p| {
            q.head
                .as_ref()
                .is_none_or(|h| *h == format!("{}:{}", gh.owner, p.head))
        })
        .filter(|p| q.base.as_ref().is_none_or(|b| *b == p.base))
        .map(|p| gh.pr_json(p))
        .collect();
    etagged(
        &gh,
        &headers,
        "GET pulls 304",
        Value::Array(prs).to_string(),
    )
}

#[derive(Deserialize)]
struct IssuesQuery {
    state: Option<String>,
    labels: Option<String>,
    per_page: Option<usize>,
    page: Option<usize>,
}

/// Issues *and* pull requests, as GitHub lists them (pull requests carry `pull_request`),
/// oldest first, filtered by state and by every one of the comma-separated labels.
async fn list_issues(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r)): Repo,
    Query(q): Query<IssuesQuery>,
) -> Response {
    guard!(gh, headers, o, r, "GET issues");
    let state = q.state.unwrap_or_else(|| "open".into());
    let wanted: Vec<String> = q
        .labels
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let keep = |st: &str, labels: &[String]| {
        (state == "all" || st == state) && wanted.iter().all(|w| labels.contains(w))
    };
    let mut all: Vec<(u64, Value)> = {
        let g = gh.lock();
        g.issues
            .iter()
            .filter(|i| keep(&i.state, &i.labels))
            .map(|i| (i.number, gh.issue_json(i, g.comments_on(i.number).len())))
            .collect()
    };
    for p in gh.pulls().iter().filter(|p| keep(&p.state, &p.labels)) {
        all.push((p.number, gh.pr_as_issue_json(p)));
    }
    all.sort_by_key(|(n, _)| *n);
    let items = all.into_iter().map(|(_, v)| v);
    paged(&gh, &headers, "GET issues 304", items, (q.per_page, q.page))
}

impl GitHub {
    /// `PATCH /issues/{n}` of pull request `n`: its issue JSON after the edit, or `None`
    /// when `n` is no pull request.
    fn edit_pr_as_issue(&self, n: u64, u: &UpdateIssue) -> Option<Value> {
        let p = {
            let now = self.now();
            let mut g = self.lock();
            let p = g.prs.iter_mut().find(|p| p.number == n)?;
            if let Some(t) = &u.title {
                p.title.clone_from(t);
            }
            if let Some(b) = &u.body {
                p.body.clone_from(b);
            }
            if let Some(l) = &u.labels {
                g.relabel(n, BOT, l.clone(), now);
            }
            g.touch(n, now);
            g.prs.iter().find(|p| p.number == n)?.clone()
        };
        Some(self.pr_as_issue_json(&p))
    }
}

/// A list answer with a weak ETag of its body; `If-None-Match` with that ETag gets a bodiless
/// 304 (counted as `op304`), as GitHub answers conditional requests.
pub(crate) fn etagged(gh: &GitHub, headers: &HeaderMap, op304: &str, body: String) -> Response {
    let etag = format!(
        "W/\"{}\"",
        hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes())[..16])
    );
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    if matches {
        gh.count(op304);
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::ETAG, etag),
            (
                header::CONTENT_TYPE,
                "application/json; charset=utf-8".to_owned(),
            ),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
struct CreateIssue {
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
}

async fn create_issue(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r)): Repo,
    Json(c): Json<CreateIssue>,
) -> Response {
    guard!(gh, headers, o, r, "POST issues");
    if c.title.trim().is_empty() {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: title is missing",
        );
    }
    let issue = {
        let now = gh.now();
        let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut g = gh.lock();
        let number = g.next_number();
        g.issues.push(IssueRec {
            number,
            title: c.title,
            body: c.body.unwrap_or_default(),
            state: "open".into(),
            state_reason: None,
            labels: Vec::new(),
            comments: vec![],
            created_at: at.clone(),
            pinned: false,
            user: BOT.to_owned(),
            updated_at: at,
        });
        // Labels given at creation are events by the creator, as on GitHub.
        g.relabel(number, BOT, c.labels, now);
        g.issues
            .iter()
            .find(|i| i.number == number)
            .cloned()
            .unwrap_or_else(|| unreachable!())
    };
    (StatusCode::CREATED, Json(gh.issue_json(&issue, 0))).into_response()
}

async fn get_issue(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
) -> Response {
    guard!(gh, headers, o, r, "GET issue");
    let g = gh.lock();
    match g.issues.iter().find(|i| i.number == n) {
        Some(i) => Json(gh.issue_json(i, g.comments_on(n).len())).into_response(),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// GitHub allows this many pinned issues per repository.
const MAX_PINNED: usize = 3;

/// GitHub's GraphQL endpoint, serving the one mutation tugboat sends: `pinIssue` (by the
/// issue's node id). GraphQL answers `200` with `errors` when it refuses.
async fn graphql(State(gh): State<GitHub>, headers: HeaderMap, Json(q): Json<Value>) -> Response {
    let (owner, repo) = (gh.owner.clone(), gh.repo.clone());
    guard!(gh, headers, owner, repo, "POST graphql");
    let error = |kind: &str, message: String| {
        Json(json!({"data": null, "errors": [{"type": kind, "message": message}]})).into_response()
    };
    let query = q["query"].as_str().unwrap_or_default();
    if !query.contains("pinIssue") {
        return error(
            "UNSUPPORTED",
            "the sandbox serves only the pinIssue mutation".into(),
        );
    }
    let id = q["variables"]["id"].as_str().unwrap_or_default().to_owned();
    let mut g = gh.lock();
    let pinned = g.issues.iter().filter(|i| i.pinned).count();
    let Some(issue) = g
        .issues
        .iter_mut()
        .find(|i| format!("I_{}", i.number) == id)
    else {
        return error(
            "NOT_FOUND",
            format!("Could not resolve to a node with the global id of '{id}'"),
        );
    };
    if !issue.pinned && pinned >= MAX_PINNED {
        return error(
            "UNPROCESSABLE",
            format!("Repository can't have more than {MAX_PINNED} pinned issues"),
        );
    }
    issue.pinned = true;
    Json(json!({"data": {"pinIssue": {"issue": {"number": issue.number}}}})).into_response()
}

#[derive(Deserialize)]
struct UpdateIssue {
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
    state_reason: Option<String>,
    /// Replaces every label (names; created on first use, as GitHub does).
    labels: Option<Vec<String>>,
}

async fn update_issue(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
    Json(u): Json<UpdateIssue>,
) -> Response {
    guard!(gh, headers, o, r, "PATCH issue");
    if let Some(st) = u.state.as_deref()
        && st != "open"
        && st != "closed"
    {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("Validation Failed: state '{st}' is not open or closed"),
        );
    }
    // A pull request is an issue too: its title, body and labels can be edited here.
    if let Some(pr) = gh.edit_pr_as_issue(n, &u) {
        return Json(pr).into_response();
    }
    let issue = {
        let now = gh.now();
        let mut g = gh.lock();
        if !g.issues.iter().any(|i| i.number == n) {
            return gh_error(StatusCode::NOT_FOUND, "Not Found");
        }
        if let Some(l) = &u.labels {
            g.relabel(n, BOT, l.clone(), now);
        }
        g.touch(n, now);
        let Some(i) = g.issues.iter_mut().find(|i| i.number == n) else {
            return gh_error(StatusCode::NOT_FOUND, "Not Found");
        };
        if let Some(t) = u.title {
            i.title = t;
        }
        if let Some(b) = u.body {
            i.body = b;
        }
        if let Some(st) = u.state {
            i.state_reason = match st.as_str() {
                "closed" => Some(u.state_reason.unwrap_or_else(|| "completed".into())),
                _ => (i.state == "closed").then(|| "reopened".into()),
            };
            i.state = st;
        }
        i.clone()
    };
    let comments = gh.lock().comments_on(issue.number).len();
    Json(gh.issue_json(&issue, comments)).into_response()
}

#[derive(Deserialize)]
struct CreatePull {
    title: String,
    head: String,
    base: String,
    #[serde(default)]
    body: Option<String>,
}

async fn create_pull(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r)): Repo,
    Json(c): Json<CreatePull>,
) -> Response {
    guard!(gh, headers, o, r, "POST pulls");
    if gh.branch_sha(&c.head).is_none() {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: head does not exist",
        );
    }
    let pr = {
        let mut g = gh.lock();
        if g.prs
            .iter()
            .any(|p| p.state == "open" && p.head == c.head && p.base == c.base)
        {
            return gh_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!(
                    "Validation Failed: A pull request already exists for {}:{}.",
                    gh.owner, c.head
                ),
            );
        }
        let pr = Pr {
            number: g.next_number(),
            title: c.title,
            body: c.body.unwrap_or_default(),
            head: c.head,
            base: c.base,
            state: "open".into(),
            merged_at: None,
            merge_sha: None,
            closed_head: None,
            labels: vec![],
            comments: vec![],
            created_at: gh.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            user: BOT.to_owned(),
            updated_at: gh.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        g.prs.push(pr.clone());
        pr
    };
    (StatusCode::CREATED, Json(gh.pr_json(&pr))).into_response()
}

async fn get_pull(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
) -> Response {
    guard!(gh, headers, o, r, "GET pull");
    match gh.pulls().iter().find(|p| p.number == n) {
        Some(p) => Json(gh.pr_json(p)).into_response(),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

#[derive(Deserialize)]
struct UpdatePull {
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
}

async fn update_pull(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
    Json(u): Json<UpdatePull>,
) -> Response {
    guard!(gh, headers, o, r, "PATCH pull");
    let now = gh.now();
    let pr = {
        let mut g = gh.lock();
        g.touch(n, now);
        let Some(p) = g.prs.iter_mut().find(|p| p.number == n) else {
            return gh_error(StatusCode::NOT_FOUND, "Not Found");
        };
        if let Some(t) = u.title {
            p.title = t;
        }
        if let Some(b) = u.body {
            p.body = b;
        }
        if let Some(st) = u.state {
            if p.merged_at.is_some() {
                return gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation Failed: a merged pull request cannot change state",
                );
            }
            p.state = st;
        }
        p.clone()
    };
    let head = gh.branch_sha(&pr.head);
    if pr.state == "closed"
        && let Some(p) = gh.lock().prs.iter_mut().find(|p| p.number == n)
    {
        p.closed_head = head;
    }
    Json(gh.pr_json(&pr)).into_response()
}

#[derive(Deserialize)]
struct MergeReq {
    sha: Option<String>,
    commit_title: Option<String>,
    merge_method: Option<String>,
}

async fn merge_pull(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
    Json(m): Json<MergeReq>,
) -> Response {
    guard!(gh, headers, o, r, "PUT merge");
    // Held from the look at the PR's state to its update, as GitHub does: of two merges of one
    // PR at the same moment, the second finds it merged and is refused.
    let _merging = gh.git_lock.lock().await;
    let Some(pr) = gh.pulls().into_iter().find(|p| p.number == n) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if pr.state != "open" {
        return gh_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Pull Request is not mergeable",
        );
    }
    let head = gh.branch_sha(&pr.head).unwrap_or_default();
    if m.sha.as_ref().is_some_and(|s| *s != head) {
        return gh_error(
            StatusCode::CONFLICT,
            "Head branch was modified. Review and try the merge again.",
        );
    }
    let base_head = gh.branch_sha(&pr.base).unwrap_or_default();
    if gh.lock().require_up_to_date && !gh.contains(&head, &base_head) {
        return gh_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "1 of 1 required status checks are expected.",
        );
    }
    if gh.lock().require_signed
        && gh
            .commits_between(&head, &base_head)
            .iter()
            .any(|c| !gh.verified(c))
    {
        return gh_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Base branch requires signed commits. Commits must have verified signatures.",
        );
    }
    let method = match m.merge_method.as_deref().unwrap_or("merge") {
        "squash" => MergeMethod::Squash,
        "merge" => MergeMethod::Merge,
        "rebase" => MergeMethod::Rebase,
        other => {
            return gh_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("Validation Failed: merge_method '{other}'"),
            );
        }
    };
    let title = match (&method, m.commit_title) {
        (MergeMethod::Squash, t) => format!("{} (#{n})", t.unwrap_or_else(|| pr.title.clone())),
        (MergeMethod::Merge, Some(t)) => t,
        (MergeMethod::Merge, None) => format!(
            "Merge pull request #{n} from {}/{}\n\n{}",
            gh.owner, pr.head, pr.title
        ),
        (MergeMethod::Rebase, _) => String::new(),
    };
    match gh.merge_into(&pr.base, &pr.head, &title, &method) {
        Ok(sha) => {
            let mut g = gh.lock();
            g.merged(n, &sha, &head, gh.now());
            if pr.base == "main" {
                g.main_moved = Some((sha.clone(), tokio::time::Instant::now()));
            }
            Json(json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}))
                .into_response()
        }
        Err((code, msg)) => gh_error(code, &msg),
    }
}

#[derive(Deserialize)]
struct Labels {
    labels: Vec<String>,
}

async fn add_labels(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
    Json(l): Json<Labels>,
) -> Response {
    guard!(gh, headers, o, r, "POST labels");
    let now = gh.now();
    let mut g = gh.lock();
    let Some(mut labels) = g.labels_mut(n).map(|l| l.clone()) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    for label in l.labels {
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    g.relabel(n, BOT, labels.clone(), now);
    Json(wire::labels(&gh.owner, &gh.repo, &labels)).into_response()
}

async fn remove_label(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n, name)): UrlPath<(String, String, u64, String)>,
) -> Response {
    guard!(gh, headers, o, r, "DELETE label");
    let now = gh.now();
    let mut g = gh.lock();
    let Some(mut labels) = g.labels_mut(n).map(|l| l.clone()) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if !labels.contains(&name) {
        return gh_error(StatusCode::NOT_FOUND, "Label does not exist");
    }
    labels.retain(|l| *l != name);
    g.relabel(n, BOT, labels.clone(), now);
    Json(wire::labels(&gh.owner, &gh.repo, &labels)).into_response()
}

#[derive(Deserialize)]
struct CommentReq {
    body: String,
}

async fn add_comment(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
    Json(c): Json<CommentReq>,
) -> Response {
    guard!(gh, headers, o, r, "POST comment");
    let mut g = gh.lock();
    if !g.exists(n) {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let c = g.add_comment(gh.now(), n, BOT, &c.body);
    (StatusCode::CREATED, Json(comment_json(&gh, &c))).into_response()
}

#[derive(Deserialize)]
struct StatusReq {
    state: String,
    context: Option<String>,
    description: Option<String>,
}

async fn add_status(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, sha)): RepoS,
    Json(s): Json<StatusReq>,
) -> Response {
    guard!(gh, headers, o, r, "POST status");
    if !matches!(
        s.state.as_str(),
        "success" | "pending" | "failure" | "error"
    ) {
        return gh_error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed: state");
    }
    let context = s.context.unwrap_or_else(|| "default".into());
    let description = s.description.unwrap_or_default();
    gh.lock().set_status(
        crate::github_people::StatusRec {
            id: 0,
            sha: sha.clone(),
            context: context.clone(),
            state: s.state.clone(),
            creator: BOT.to_owned(),
            created_at: gh.now(),
        },
        &description,
    );
    let at = gh.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let status = wire::status(
        &gh.owner,
        &gh.repo,
        &sha,
        &wire::Status {
            context: &context,
            state: &s.state,
            description: &description,
            at: &at,
        },
    );
    (StatusCode::CREATED, Json(status)).into_response()
}

async fn combined_status(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, sha)): RepoS,
) -> Response {
    guard!(gh, headers, o, r, "GET combined status");
    let list = gh.statuses(&sha);
    let state = if list.iter().any(|(_, s, _)| s == "failure" || s == "error") {
        "failure"
    } else if list.iter().all(|(_, s, _)| s == "success") && !list.is_empty() {
        "success"
    } else {
        "pending"
    };
    let at = gh.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let statuses: Vec<Value> = list
        .iter()
        .map(|(c, s, d)| {
            let mut v = wire::status(
                &gh.owner,
                &gh.repo,
                &sha,
                &wire::Status {
                    context: c,
                    state: s,
                    description: d,
                    at: &at,
                },
            );
            if let Some(o) = v.as_object_mut() {
                o.remove("creator");
            }
            v
        })
        .collect();
    let commit = format!(
        "https://api.github.com/repos/{}/{}/commits/{sha}",
        gh.owner, gh.repo
    );
    Json(
        json!({"state": state, "sha": sha, "total_count": statuses.len(), "statuses": statuses,
                "repository": wire::minimal_repository(&gh.owner, &gh.repo),
                "commit_url": commit, "url": format!("{commit}/status")}),
    )
    .into_response()
}

async fn dump(State(gh): State<GitHub>) -> Json<Value> {
    Json(Value::Array(
        gh.pulls()
            .iter()
            .map(|p| {
                let mut v = gh.pr_json(p);
                v["comments"] = json!(
                    p.comments
                        .iter()
                        .map(|(u, b)| json!({"user": u, "body": b}))
                        .collect::<Vec<_>>()
                );
                v
            })
            .collect(),
    ))
}

async fn stats(State(gh): State<GitHub>) -> Json<BTreeMap<String, u64>> {
    Json(gh.calls())
}

/// Run the real `git http-backend` as a CGI program for one smart-HTTP request.
async fn git_http(
    State(gh): State<GitHub>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix("/git")
        .unwrap_or(uri.path())
        .to_owned();
    let op = if path.ends_with("git-receive-pack")
        || uri.query().is_some_and(|q| q.contains("receive-pack"))
    {
        "git push"
    } else {
        "git fetch"
    };
    if method == Method::POST || uri.query().is_some() {
        gh.count(op);
    }
    if !gh.authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"sandbox\"")],
            "authentication required",
        )
            .into_response();
    }
    let h = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &gh.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", h(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", h(header::CONTENT_ENCODING))
        .env(
            "GIT_PROTOCOL",
            headers
                .get("git-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        )
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let _g = if op == "git push" {
        Some(gh.git_lock.lock().await)
    } else {
        None
    };
    let Ok(mut child) = cmd.spawn() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot start git http-backend",
        )
            .into_response();
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let Ok(out) = child.wait_with_output().await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "git http-backend failed").into_response();
    };
    cgi_response(&out.stdout)
}

fn cgi_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, sep)) = split else {
        return (StatusCode::BAD_GATEWAY, "malformed CGI output").into_response();
    };
    let head = String::from_utf8_lossy(&raw[..at]);
    let mut status = StatusCode::OK;
    let mut builder = Response::builder();
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            status = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::OK);
        } else {
            builder = builder.header(k.trim(), v);
        }
    }
    builder
        .status(status)
        .body(axum::body::Body::from(raw[at + sep..].to_vec()))
        .unwrap_or_else(|_| (StatusCode::BAD_GATEWAY, "bad CGI headers").into_response())
}

async fn permission(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, user)): RepoS,
) -> Response {
    guard!(gh, headers, o, r, "GET permission");
    let perm = gh
        .lock()
        .collaborators
        .get(&user)
        .cloned()
        .unwrap_or_else(|| "none".into());
    let role = match perm.as_str() {
        "admin" => "admin",
        "write" => "write",
        "read" => "read",
        _ => "none",
    };
    let mut who = wire::user(&user);
    who["role_name"] = json!(role);
    Json(json!({"permission": perm, "role_name": role, "user": who})).into_response()
}

#[derive(Deserialize)]
struct CommentAs {
    pr: u64,
    user: String,
    body: String,
}

async fn comment_as(State(gh): State<GitHub>, Json(c): Json<CommentAs>) -> Response {
    match gh.comment_as(c.pr, &c.user, &c.body) {
        Some(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// One page of a list, with GitHub's paging defaults (30 a page, at most 100; pages from 1).
pub(crate) fn page_of<T>(
    items: impl IntoIterator<Item = T>,
    per_page: Option<usize>,
    page: Option<usize>,
) -> Vec<T> {
    let per_page = per_page.unwrap_or(30).clamp(1, 100);
    let page = page.unwrap_or(1).max(1);
    items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect()
}

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    pub(crate) per_page: Option<usize>,
    pub(crate) page: Option<usize>,
}

/// One page (`per_page`, `page`) of a list, answered as GitHub answers lists: paged, with a
/// weak ETag that a conditional request gets a 304 for (counted as `op304`).
pub(crate) fn paged(
    gh: &GitHub,
    headers: &HeaderMap,
    op304: &str,
    items: impl IntoIterator<Item = Value>,
    (per_page, page): (Option<usize>, Option<usize>),
) -> Response {
    let body = Value::Array(page_of(items, per_page, page)).to_string();
    etagged(gh, headers, op304, body)
}

/// The comments of a PR or issue, oldest first, with an ETag; `If-None-Match` with the
/// current ETag is answered 304 with no body, as GitHub does (and such a request does not
/// count against the rate limit there).
async fn list_comments(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
    Query(q): Query<PageQuery>,
) -> Response {
    guard!(gh, headers, o, r, "GET comments");
    let all: Vec<Value> = {
        let g = gh.lock();
        if !g.exists(n) {
            return gh_error(StatusCode::NOT_FOUND, "Not Found");
        }
        g.comments
            .iter()
            .filter(|c| c.number == n)
            .map(|c| comment_json(&gh, c))
            .collect()
    };
    paged(&gh, &headers, "GET comments 304", all, (q.per_page, q.page))
}

#[derive(Deserialize)]
struct ReactionReq {
    content: String,
}

async fn add_reaction(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, id)): RepoN,
    Json(req): Json<ReactionReq>,
) -> Response {
    guard!(gh, headers, o, r, "POST reaction");
    const CONTENTS: [&str; 8] = [
        "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
    ];
    if !CONTENTS.contains(&req.content.as_str()) {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "Validation Failed: content '{}' is not a reaction",
                req.content
            ),
        );
    }
    let mut g = gh.lock();
    let Some(c) = g.comments.iter_mut().find(|c| c.id == id) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let mine = (BOT.to_owned(), req.content.clone());
    // GitHub answers 200 for a reaction that already exists, 201 for a new one.
    let code = if c.reactions.contains(&mine) {
        StatusCode::OK
    } else {
        c.reactions.push(mine);
        StatusCode::CREATED
    };
    (
        code,
        Json(wire::reaction(
            id * 10 + c.reactions.len() as u64,
            BOT,
            &req.content,
            &gh.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )),
    )
        .into_response()
}

async fn list_reviews(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
    Query(q): Query<PageQuery>,
) -> Response {
    guard!(gh, headers, o, r, "GET reviews");
    let reviews: Vec<Value> = gh
        .lock()
        .reviews
        .iter()
        .filter(|v| v.number == n)
        .map(|v| {
            wire::review(
                &gh.owner,
                &gh.repo,
                n,
                &wire::Review {
                    id: v.id,
                    user: &v.user,
                    state: &v.state,
                    commit_id: &v.commit_id,
                    // Not kept: a fixed time keeps the list's ETag stable.
                    submitted_at: "2026-01-01T00:00:00Z",
                },
            )
        })
        .collect();
    paged(
        &gh,
        &headers,
        "GET reviews 304",
        reviews,
        (q.per_page, q.page),
    )
}

async fn team_membership(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((org, team, user)): UrlPath<(String, String, String)>,
) -> Response {
    gh.count("GET team membership");
    if !gh.authorized(&headers) {
        return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let member = gh
        .lock()
        .teams
        .get(&format!("{org}/{team}"))
        .is_some_and(|m| m.contains(&user));
    if !member {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    Json(
        json!({"url": format!("https://api.github.com/organizations/1/team/1/memberships/{user}"),
                "role": "member", "state": "active"}),
    )
    .into_response()
}

/// The primary limit resets 30 seconds from now (asking does not count against it).
async fn rate_limit(State(gh): State<GitHub>, headers: HeaderMap) -> Response {
    gh.count("GET rate_limit");
    if !gh.authorized(&headers) {
        return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let reset = Utc::now().timestamp() + 30;
    let core = json!({"limit": 5000, "remaining": 0, "reset": reset, "used": 5000});
    Json(json!({"resources": {"core": core, "search": {"limit": 30, "remaining": 30, "reset": reset, "used": 0}}, "rate": core})).into_response()
}

async fn authenticated_user(State(gh): State<GitHub>, headers: HeaderMap) -> Response {
    gh.count("GET user");
    if !gh.authorized(&headers) {
        return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    Json(wire::me(BOT)).into_response()
}

/// The App JWT of a request, checked: `None` when it may go on.
fn app_refusal(gh: &GitHub, headers: &HeaderMap) -> Option<Response> {
    let jwt = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(jwt) = jwt else {
        return Some(gh_error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        ));
    };
    match gh.app.verify_jwt(jwt) {
        Ok(()) => None,
        Err(_) => Some(gh_error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        )),
    }
}

async fn get_app(State(gh): State<GitHub>, headers: HeaderMap) -> Response {
    gh.count("GET app");
    if let Some(refused) = app_refusal(&gh, &headers) {
        return refused;
    }
    Json(wire::app(&gh.owner)).into_response()
}

async fn repo_installation(
    State(gh): State<GitHub>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    gh.count("GET installation");
    if let Some(refused) = app_refusal(&gh, &headers) {
        return refused;
    }
    if owner != gh.owner || repo != gh.repo {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    Json(wire::installation(&gh.owner)).into_response()
}

async fn create_installation_token(
    State(gh): State<GitHub>,
    UrlPath(id): UrlPath<u64>,
    headers: HeaderMap,
) -> Response {
    gh.count("POST access_tokens");
    if let Some(refused) = app_refusal(&gh, &headers) {
        return refused;
    }
    if id != crate::github_app::INSTALLATION_ID {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let (token, expires_at) = gh.app.issue();
    (
        StatusCode::CREATED,
        Json(wire::installation_token(&token, expires_at)),
    )
        .into_response()
}

#[derive(Deserialize)]
struct Collaborator {
    user: String,
    permission: String,
}

async fn add_collaborator(State(gh): State<GitHub>, Json(c): Json<Collaborator>) -> StatusCode {
    if !matches!(c.permission.as_str(), "admin" | "write" | "read") {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    gh.add_collaborator(&c.user, &c.permission);
    StatusCode::NO_CONTENT
}
