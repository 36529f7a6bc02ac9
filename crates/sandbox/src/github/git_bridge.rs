//! The git bridge: the repository behind the stand-in (its branches, commits and merges,
//! written with git2) and smart-HTTP served by the real `git http-backend`.

use super::*;

impl GitHub {
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

    /// Whether `head` is `base` or descends from it.
    pub(crate) fn contains(&self, head: &str, base: &str) -> bool {
        let Ok(repo) = git2::Repository::open_bare(self.repo_path()) else {
            return false;
        };
        let (Ok(h), Ok(b)) = (git2::Oid::from_str(head), git2::Oid::from_str(base)) else {
            return false;
        };
        h == b || repo.graph_descendant_of(h, b).unwrap_or(false)
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
        self.note_activity(None, None);
        repo.reference(&format!("refs/heads/{branch}"), oid, true, &message)
            .ok()?;
        self.note_pushes();
        self.note_activity(Some(who), None);
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

    /// Whether GitHub made and signed `sha` (a commit through the Git Data API).
    pub fn verified(&self, sha: &str) -> bool {
        self.lock().verified.contains(sha)
    }

    /// The commits of `head` that `base` does not have.
    pub(crate) fn commits_between(&self, head: &str, base: &str) -> Vec<String> {
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
        self.merge_onto(base, head, title, method, base)
    }

    /// The same merge, written to branch `onto` instead of `base` (which does not move): a
    /// merge queue's commit.
    pub(crate) fn merge_onto(
        &self,
        base: &str,
        head: &str,
        title: &str,
        method: &MergeMethod,
        onto: &str,
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
                Some(&format!("refs/heads/{onto}")),
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

/// Run the real `git http-backend` as a CGI program for one smart-HTTP request.
pub(super) async fn git_http(
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
    let op = git_op(&path, &uri);
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
        let held = gh.git_lock.lock().await;
        gh.note_activity(None, None);
        Some(held)
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
    if op == "git push" {
        gh.note_pushes();
        // Every token of the stand-in acts as tugboat's login.
        gh.note_activity(Some(BOT), None);
    }
    cgi_response(&out.stdout)
}

/// What a smart-HTTP request does: `git push` (receive-pack) or `git fetch`.
fn git_op(path: &str, uri: &Uri) -> &'static str {
    let push = path.ends_with("git-receive-pack")
        || uri.query().is_some_and(|q| q.contains("receive-pack"));
    if push { "git push" } else { "git fetch" }
}

pub(super) fn cgi_response(raw: &[u8]) -> Response {
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
