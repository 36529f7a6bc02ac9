//! The GitHub stand-in's check runs and Git Data API (blobs, trees, commits, refs), on the
//! real bare repository. Commits an App makes here without an author are GitHub's own and
//! signed, as on GitHub, so "Require signed commits" accepts them; check runs are for Apps
//! only.

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::github::{BOT, GitHub, gh_error};
use crate::github_wire as wire;

/// A check run as the stand-in keeps it.
#[derive(Debug, Clone)]
pub struct CheckRunRec {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub details_url: Option<String>,
    pub started_at: String,
    pub completed_at: Option<String>,
    /// The App that made it, when not tugboat's (the CI's `github-actions`).
    pub app: Option<String>,
}

pub fn routes() -> axum::Router<GitHub> {
    axum::Router::new()
        .route("/repos/{owner}/{repo}/check-runs", post(create_check_run))
        .route(
            "/repos/{owner}/{repo}/commits/{sha}/check-runs",
            axum::routing::get(list_check_runs),
        )
        .route("/repos/{owner}/{repo}/git/blobs", post(create_blob))
        .route("/repos/{owner}/{repo}/git/trees", post(create_tree))
        .route("/repos/{owner}/{repo}/git/commits", post(create_commit))
        .route("/repos/{owner}/{repo}/git/refs", post(create_ref))
        .route("/repos/{owner}/{repo}/git/refs/{*name}", patch(update_ref))
}

impl GitHub {
    /// Every check run, oldest first.
    pub fn all_check_runs(&self) -> Vec<CheckRunRec> {
        self.lock().check_runs.clone()
    }

    /// Every check run of a commit, oldest first.
    pub fn check_runs(&self, sha: &str) -> Vec<CheckRunRec> {
        self.lock()
            .check_runs
            .iter()
            .filter(|c| c.head_sha == sha)
            .cloned()
            .collect()
    }

    fn check_run_json(&self, c: &CheckRunRec) -> Value {
        let prs: Vec<(u64, String, String, String)> = self
            .pulls()
            .into_iter()
            .filter(|p| {
                p.state == "open" && self.branch_sha(&p.head).as_deref() == Some(&c.head_sha)
            })
            .map(|p| {
                let base_sha = self.branch_sha(&p.base).unwrap_or_default();
                (p.number, p.head, p.base, base_sha)
            })
            .collect();
        let prs: Vec<(u64, &str, &str, &str)> = prs
            .iter()
            .map(|(n, h, b, s)| (*n, h.as_str(), b.as_str(), s.as_str()))
            .collect();
        wire::check_run(
            &self.owner,
            &self.repo,
            &wire::CheckRun {
                id: c.id,
                name: &c.name,
                head_sha: &c.head_sha,
                status: &c.status,
                conclusion: c.conclusion.as_deref(),
                title: c.title.as_deref(),
                summary: c.summary.as_deref(),
                details_url: c.details_url.as_deref(),
                started_at: &c.started_at,
                completed_at: c.completed_at.as_deref(),
            },
            &prs,
            c.app.as_deref(),
        )
    }

    fn open_repo(&self) -> Result<git2::Repository, git2::Error> {
        git2::Repository::open_bare(self.repo_path())
    }

    fn stamp(&self) -> String {
        self.now()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

fn internal(e: git2::Error) -> Response {
    gh_error(StatusCode::INTERNAL_SERVER_ERROR, e.message())
}

fn invalid(message: &str) -> Response {
    gh_error(StatusCode::UNPROCESSABLE_ENTITY, message)
}

macro_rules! guard {
    ($gh:expr, $headers:expr, $owner:expr, $repo:expr, $op:expr) => {
        if let Some(refused) = $gh.refusal(&$headers, &$owner, &$repo, $op) {
            return refused;
        }
    };
}

type Repo = UrlPath<(String, String)>;

#[derive(Deserialize)]
struct Output {
    title: Option<String>,
    summary: Option<String>,
}

#[derive(Deserialize)]
struct NewCheckRun {
    name: String,
    head_sha: String,
    status: Option<String>,
    conclusion: Option<String>,
    details_url: Option<String>,
    output: Option<Output>,
}

async fn create_check_run(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r)): Repo,
    Json(c): Json<NewCheckRun>,
) -> Response {
    guard!(gh, headers, o, r, "POST check-runs");
    if !gh.by_app(&headers) {
        return gh_error(
            StatusCode::FORBIDDEN,
            "You must authenticate via a GitHub App.",
        );
    }
    let exists = gh.open_repo().ok().is_some_and(|repo| {
        git2::Oid::from_str(&c.head_sha).is_ok_and(|oid| repo.find_commit(oid).is_ok())
    });
    if !exists {
        return invalid(&format!("No commit found for SHA: {}", c.head_sha));
    }
    let status = c.status.unwrap_or_else(|| "queued".into());
    if !matches!(status.as_str(), "queued" | "in_progress" | "completed") {
        return invalid(&format!("Invalid status: {status}"));
    }
    let completed = status == "completed" || c.conclusion.is_some();
    if completed && c.conclusion.is_none() {
        return invalid("Missing conclusion: a completed check run needs one");
    }
    if let Some(o) = &c.output
        && o.summary
            .as_ref()
            .is_some_and(|s| s.chars().count() > 65_535)
    {
        return invalid(
            "Invalid request: output.summary is too long (maximum is 65535 characters)",
        );
    }
    let now = gh.stamp();
    let rec = {
        let mut g = gh.lock();
        let rec = CheckRunRec {
            id: 5000 + g.check_runs.len() as u64 + 1,
            name: c.name,
            head_sha: c.head_sha,
            status: if completed {
                "completed".into()
            } else {
                status
            },
            conclusion: c.conclusion,
            title: c.output.as_ref().and_then(|o| o.title.clone()),
            summary: c.output.as_ref().and_then(|o| o.summary.clone()),
            details_url: c.details_url,
            completed_at: completed.then(|| now.clone()),
            started_at: now,
            app: None,
        };
        g.check_runs.push(rec.clone());
        rec
    };
    (StatusCode::CREATED, Json(gh.check_run_json(&rec))).into_response()
}

#[derive(Deserialize)]
struct RunsQuery {
    check_name: Option<String>,
    filter: Option<String>,
}

async fn list_check_runs(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, sha)): UrlPath<(String, String, String)>,
    Query(q): Query<RunsQuery>,
) -> Response {
    guard!(gh, headers, o, r, "GET check-runs");
    let mut runs: Vec<CheckRunRec> = gh
        .runs_of(&sha)
        .into_iter()
        .rev()
        .filter(|c| q.check_name.as_ref().is_none_or(|n| *n == c.name))
        .collect();
    if q.filter.as_deref() != Some("all") {
        let mut seen = std::collections::BTreeSet::new();
        runs.retain(|c| seen.insert(c.name.clone()));
    }
    let list: Vec<Value> = runs.iter().map(|c| gh.check_run_json(c)).collect();
    Json(json!({"total_count": list.len(), "check_runs": list})).into_response()
}

#[derive(Deserialize)]
struct NewBlob {
    content: String,
    encoding: Option<String>,
}

async fn create_blob(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r)): Repo,
    Json(b): Json<NewBlob>,
) -> Response {
    use base64::Engine as _;
    guard!(gh, headers, o, r, "POST git/blobs");
    let bytes = match b.encoding.as_deref().unwrap_or("utf-8") {
        "utf-8" => b.content.into_bytes(),
        "base64" => match base64::engine::general_purpose::STANDARD.decode(b.content.trim()) {
            Ok(bytes) => bytes,
            Err(_) => return invalid("content is not valid Base64"),
        },
        other => return invalid(&format!("encoding {other:?} is not supported")),
    };
    let repo = match gh.open_repo() {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    match repo.blob(&bytes) {
        Ok(oid) => (
            StatusCode::CREATED,
            Json(wire::blob(&gh.owner, &gh.repo, &oid.to_string())),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct TreeEntry {
    path: String,
    mode: String,
    #[serde(rename = "type")]
    kind: String,
    /// `null` deletes the path.
    sha: Option<String>,
    content: Option<String>,
}

#[derive(Deserialize)]
struct NewTree {
    base_tree: Option<String>,
    tree: Vec<TreeEntry>,
}

fn file_mode(mode: &str) -> Option<git2::FileMode> {
    Some(match mode {
        "100644" => git2::FileMode::Blob,
        "100755" => git2::FileMode::BlobExecutable,
        "120000" => git2::FileMode::Link,
        "040000" => git2::FileMode::Tree,
        "160000" => git2::FileMode::Commit,
        _ => return None,
    })
}

async fn create_tree(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r)): Repo,
    Json(t): Json<NewTree>,
) -> Response {
    guard!(gh, headers, o, r, "POST git/trees");
    let repo = match gh.open_repo() {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let base = match &t.base_tree {
        Some(sha) => match git2::Oid::from_str(sha).and_then(|o| repo.find_tree(o)) {
            Ok(tree) => tree,
            Err(_) => return invalid(&format!("base_tree {sha} is not a tree")),
        },
        None => match repo
            .treebuilder(None)
            .and_then(|b| b.write())
            .and_then(|o| repo.find_tree(o))
        {
            Ok(tree) => tree,
            Err(e) => return internal(e),
        },
    };
    let mut update = git2::build::TreeUpdateBuilder::new();
    for e in &t.tree {
        let Some(mode) = file_mode(&e.mode) else {
            return invalid(&format!("tree.mode {:?} is not a git mode", e.mode));
        };
        let oid = match (&e.sha, &e.content) {
            (Some(sha), None) => match git2::Oid::from_str(sha) {
                Ok(oid) if repo.find_object(oid, None).is_ok() => oid,
                _ => return invalid(&format!("tree.sha {sha} is not a valid {}", e.kind)),
            },
            (None, Some(text)) => match repo.blob(text.as_bytes()) {
                Ok(oid) => oid,
                Err(e) => return internal(e),
            },
            (None, None) => {
                update.remove(&e.path);
                continue;
            }
            (Some(_), Some(_)) => return invalid("tree entry: give sha or content, not both"),
        };
        update.upsert(&e.path, oid, mode);
    }
    let tree = match update
        .create_updated(&repo, &base)
        .and_then(|o| repo.find_tree(o))
    {
        Ok(tree) => tree,
        Err(e) => return invalid(e.message()),
    };
    let entries: Vec<(String, String, String, String)> = tree
        .iter()
        .map(|e| {
            let kind = match e.kind() {
                Some(git2::ObjectType::Tree) => "tree",
                Some(git2::ObjectType::Commit) => "commit",
                _ => "blob",
            };
            (
                e.name().unwrap_or_default().to_owned(),
                format!("{:06o}", e.filemode()),
                kind.to_owned(),
                e.id().to_string(),
            )
        })
        .collect();
    let body = wire::tree(&gh.owner, &gh.repo, &tree.id().to_string(), &entries);
    (StatusCode::CREATED, Json(body)).into_response()
}

#[derive(Deserialize)]
struct NewPerson {
    name: String,
    email: String,
}

#[derive(Deserialize)]
struct NewCommit {
    message: String,
    tree: String,
    #[serde(default)]
    parents: Vec<String>,
    author: Option<NewPerson>,
    committer: Option<NewPerson>,
}

async fn create_commit(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r)): Repo,
    Json(c): Json<NewCommit>,
) -> Response {
    guard!(gh, headers, o, r, "POST git/commits");
    let repo = match gh.open_repo() {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let Ok(tree) = git2::Oid::from_str(&c.tree).and_then(|o| repo.find_tree(o)) else {
        return invalid(&format!("tree {} is not a tree", c.tree));
    };
    let mut parents = Vec::new();
    for p in &c.parents {
        match git2::Oid::from_str(p).and_then(|o| repo.find_commit(o)) {
            Ok(commit) => parents.push(commit),
            Err(_) => return invalid(&format!("parent {p} is not a commit")),
        }
    }
    // GitHub signs a commit made through the API only when a GitHub App's installation makes
    // it and gives no author, committer or signature of its own ("About commit signature
    // verification", "Signature verification for bots", docs.github.com/en/authentication/
    // managing-commit-signature-verification/about-commit-signature-verification). A token's
    // commits are the user's, unsigned.
    let signed = gh.by_app(&headers) && c.author.is_none() && c.committer.is_none();
    let at = git2::Time::new(gh.now().timestamp(), 0);
    let bot_email = format!(
        "{}+{BOT}@users.noreply.github.com",
        crate::github_app::APP_ID
    );
    let sig = |p: Option<&NewPerson>| match p {
        Some(p) => git2::Signature::new(&p.name, &p.email, &at),
        None => git2::Signature::new(BOT, &bot_email, &at),
    };
    let (Ok(author), Ok(committer)) = (sig(c.author.as_ref()), sig(c.committer.as_ref())) else {
        return invalid("author or committer is not a valid name and email");
    };
    let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
    let oid = match repo.commit(None, &author, &committer, &c.message, &tree, &refs) {
        Ok(oid) => oid.to_string(),
        Err(e) => return internal(e),
    };
    if signed {
        gh.lock().verified.insert(oid.clone());
    }
    let date = gh.stamp();
    let person = |s: &git2::Signature<'_>| {
        (
            s.name().unwrap_or_default().to_owned(),
            s.email().unwrap_or_default().to_owned(),
        )
    };
    let (an, ae) = person(&author);
    let (cn, ce) = person(&committer);
    let body = wire::git_commit(
        &gh.owner,
        &gh.repo,
        &wire::GitCommit {
            sha: &oid,
            author: wire::Person {
                name: &an,
                email: &ae,
                date: &date,
            },
            committer: wire::Person {
                name: &cn,
                email: &ce,
                date: &date,
            },
            message: &c.message,
            tree: &c.tree,
            parents: &c.parents,
            verified: signed,
        },
    );
    (StatusCode::CREATED, Json(body)).into_response()
}

#[derive(Deserialize)]
struct NewRef {
    #[serde(rename = "ref")]
    name: String,
    sha: String,
}

fn commit_exists(repo: &git2::Repository, sha: &str) -> bool {
    git2::Oid::from_str(sha).is_ok_and(|o| repo.find_commit(o).is_ok())
}

async fn create_ref(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r)): Repo,
    Json(n): Json<NewRef>,
) -> Response {
    guard!(gh, headers, o, r, "POST git/refs");
    if !n.name.starts_with("refs/") || n.name.matches('/').count() < 2 {
        return invalid(&format!("{} is not a valid ref name.", n.name));
    }
    let _git = gh.git_lock.lock().await;
    let repo = match gh.open_repo() {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    if !commit_exists(&repo, &n.sha) {
        return invalid("Object does not exist");
    }
    if repo.find_reference(&n.name).is_ok() {
        return invalid("Reference already exists");
    }
    let Ok(oid) = git2::Oid::from_str(&n.sha) else {
        return invalid("Object does not exist");
    };
    if let Err(e) = repo.reference(&n.name, oid, false, "created through the API") {
        return internal(e);
    }
    gh.note_pushes();
    gh.note_activity(Some(crate::github::BOT), None);
    let body = wire::git_ref(&gh.owner, &gh.repo, &n.name, &n.sha);
    (StatusCode::CREATED, Json(body)).into_response()
}

#[derive(Deserialize)]
struct RefUpdate {
    sha: String,
    #[serde(default)]
    force: bool,
}

async fn update_ref(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, name)): UrlPath<(String, String, String)>,
    Json(u): Json<RefUpdate>,
) -> Response {
    guard!(gh, headers, o, r, "PATCH git/refs");
    let name = format!("refs/{}", name.trim_start_matches('/'));
    let _git = gh.git_lock.lock().await;
    let repo = match gh.open_repo() {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let Ok(current) = repo.find_reference(&name).and_then(|r| r.peel_to_commit()) else {
        return invalid("Reference does not exist");
    };
    let Ok(new) = git2::Oid::from_str(&u.sha).and_then(|o| repo.find_commit(o)) else {
        return invalid("Object does not exist");
    };
    let fast_forward = repo
        .graph_descendant_of(new.id(), current.id())
        .unwrap_or(false)
        || new.id() == current.id();
    if !u.force && !fast_forward {
        return invalid("Update is not a fast forward");
    }
    if let Err(e) = repo.reference(&name, new.id(), true, "updated through the API") {
        return internal(e);
    }
    gh.note_pushes();
    gh.note_activity(Some(crate::github::BOT), None);
    Json(wire::git_ref(&gh.owner, &gh.repo, &name, &u.sha)).into_response()
}
