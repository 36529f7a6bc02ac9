//! The GitOps repository adapter (git2): a persistent bare clone, fetched once per cycle.
//!
//! Files are read from and written to git objects directly (no work tree), so a commit
//! changes exactly the bytes the editor produced, whatever the platform's line endings.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use git2::build::TreeUpdateBuilder;
use git2::{FetchOptions, FileMode, Oid, PushOptions, RemoteCallbacks, Repository, Signature};

use super::git_http::Session;

use crate::clock::{Clock, SystemClock};
use crate::credentials::Token;
use crate::domain::seal::Keys;
use crate::ports::{
    Base, CommitInfo, ErrorKind, GitOpsRepo, HISTORY_DEPTH, PortError, PortResult, Proposal,
};
use crate::telemetry::ApiMetrics;
use crate::trust::{ForgeryLog, KeyRing};

/// A local bare clone of the GitOps repository.
#[derive(Clone)]
pub struct Git {
    /// The clone; an async lock, so that operations waiting for it hold no blocking thread.
    inner: Arc<tokio::sync::Mutex<Repository>>,
    base_branch: String,
    /// What fetches and pushes talk to the server with (`git_http`).
    session: Session,
    author: (String, String),
    api: ApiMetrics,
    /// Stamps commits and push times.
    clock: Arc<dyn Clock>,
    /// Where the clone lives, and its remote: what a repair starts again from.
    dir: PathBuf,
    url: String,
    /// This process, as its claims in the ledger name it.
    replica: String,
    /// When set, proposals are committed through the host's API (signed by it), not pushed.
    commits: Option<Arc<dyn CommitApi>>,
    /// The keys that seal the ledger's files, and where forged ones are reported (`ledger`).
    trust: Option<Trust>,
}

/// What the ledger is sealed with and reports forgeries to.
#[derive(Clone)]
struct Trust {
    keys: Arc<KeyRing>,
    forged: Arc<ForgeryLog>,
}

mod ledger;
pub use ledger::LEDGER_BRANCH;

fn err(op: &'static str, e: &git2::Error) -> PortError {
    use git2::ErrorClass as C;
    let kind = match (e.class(), e.code()) {
        (_, git2::ErrorCode::Auth) => ErrorKind::Denied,
        (_, git2::ErrorCode::NotFound) => ErrorKind::NotFound,
        (C::Http | C::Net | C::Ssl | C::Ssh, _) => ErrorKind::Transient,
        _ => ErrorKind::Rejected,
    };
    // A lock left by a killed process, or objects, an index or a pack that a kill cut short:
    // the local clone is damaged, and `Git::blocking` repairs it.
    let damaged = e.code() == git2::ErrorCode::Locked
        || matches!(e.class(), C::Odb | C::Zlib | C::Index | C::Object)
        || e.message().contains("failed to lock file");
    let message = if damaged {
        format!("{DAMAGED}{}", e.message())
    } else {
        e.message().to_owned()
    };
    PortError::new("git", op, kind, message)
}

/// The HTTP client of git's fetches and pushes: the system's trust store (rustls, as every
/// adapter), a bounded connect, and a read that may not stall for long; a large clone may take
/// as long as it keeps receiving.
fn git_http_client() -> PortResult<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("git/2.0 (tugboat/", env!("CARGO_PKG_VERSION"), ")"))
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| PortError::new("git", "client", ErrorKind::Rejected, e.to_string()))
}

/// A name for this process in the ledger: the host and process, and when it started.
fn replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "tugboat".to_owned());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{host}/{}/{started:x}", std::process::id())
}

/// Starts the message of an error that says the local clone is damaged.
const DAMAGED: &str = "the local clone is damaged: ";

/// When this process first opened a clone: a lock file older than that was left by a process
/// that is gone (each tugboat has its own clone).
static STARTED: std::sync::OnceLock<std::time::SystemTime> = std::sync::OnceLock::new();

impl Git {
    /// Open the clone in `dir`, creating it (empty, to be filled by the first fetch) if needed.
    pub fn open(
        dir: &Path,
        url: &str,
        base_branch: &str,
        token: Arc<dyn Token>,
        api: &ApiMetrics,
    ) -> PortResult<Self> {
        STARTED.get_or_init(std::time::SystemTime::now);
        let removed = remove_stale_locks(dir);
        if removed > 0 {
            tracing::warn!(dir = %dir.display(), removed, "removed lock files a stopped tugboat left in the clone");
        }
        let repo = match open_clone(dir, url) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "the local clone cannot be opened; starting a new one");
                move_aside(dir)?;
                open_clone(dir, url)?
            }
        };
        Ok(Self {
            inner: Arc::new(tokio::sync::Mutex::new(repo)),
            base_branch: base_branch.to_owned(),
            session: Session {
                http: git_http_client()?,
                token,
            },
            author: ("tugboat".into(), "tugboat@users.noreply.github.com".into()),
            api: api.clone(),
            clock: Arc::new(SystemClock),
            dir: dir.to_owned(),
            url: url.to_owned(),
            replica: replica_id(),
            commits: None,
            trust: None,
        })
    }

    /// The same clone, sealing the ledger's files under `keys` and reporting forged ones to
    /// `forged` (what production always does; a clone without them trusts its ledger).
    pub fn with_trust(mut self, keys: Arc<KeyRing>, forged: Arc<ForgeryLog>) -> Self {
        self.trust = Some(Trust { keys, forged });
        self
    }

    /// The keys of the ledger's seals (none without [`Git::with_trust`]), and whether this
    /// process may write (not a plan).
    async fn ledger_keys(&self) -> PortResult<(Option<Arc<Keys>>, bool)> {
        match &self.trust {
            Some(t) => Ok((Some(t.keys.keys().await?), t.keys.writes())),
            None => Ok((None, true)),
        }
    }

    /// The same clone, stamping commits and push times from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// A commit signature at the clock's time.
    fn signature(&self, op: &'static str) -> PortResult<Signature<'static>> {
        let at = git2::Time::new(self.clock.now().timestamp(), 0);
        Signature::new(&self.author.0, &self.author.1, &at).map_err(|e| err(op, &e))
    }

    /// Where a clone for `url` lives under `workdir`.
    pub fn clone_dir(workdir: &Path) -> PathBuf {
        workdir.join("gitops.git")
    }

    /// Run a git operation on the clone off the async threads. When it fails because the
    /// clone is damaged, stale lock files are removed and it runs again; if it still fails
    /// so, the clone is moved aside, fetched anew, and the operation runs a last time. The
    /// GitOps repository on the server is never touched by a repair.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl Fn(&Repository, &Git) -> PortResult<T> + Send + 'static,
    ) -> PortResult<T> {
        let me = self.clone();
        // One operation at a time on the clone; the others wait here, on no thread.
        let mut repo = Arc::clone(&self.inner).lock_owned().await;
        tokio::task::spawn_blocking(move || {
            me.session.clone().run(|| {
                match f(&repo, &me) {
                    Err(e) if e.message.starts_with(DAMAGED) => {}
                    done => return done,
                }
                let removed = remove_stale_locks(&me.dir);
                tracing::warn!(dir = %me.dir.display(), removed, "the local clone is damaged; removed stale lock files");
                match f(&repo, &me) {
                    Err(e) if e.message.starts_with(DAMAGED) => {
                        tracing::warn!(dir = %me.dir.display(), error = %e, "the local clone is still damaged; moving it aside and fetching it anew");
                        move_aside(&me.dir)?;
                        *repo = open_clone(&me.dir, &me.url)?;
                        fetch(&repo, &me)?;
                        f(&repo, &me)
                    }
                    done => done,
                }
            })
        })
        .await
        .map_err(|e| PortError::new("git", "task", ErrorKind::Transient, e.to_string()))?
    }

    fn base_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.base_branch)
    }
}

/// Open the bare clone in `dir` (creating it, empty, to be filled by the first fetch), with
/// `url` as its `origin`.
fn open_clone(dir: &Path, url: &str) -> PortResult<Repository> {
    let repo = match Repository::open_bare(dir) {
        Ok(r) => r,
        Err(_) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                PortError::new(
                    "git",
                    "init",
                    ErrorKind::Rejected,
                    format!("cannot create {}: {e}", dir.display()),
                )
            })?;
            Repository::init_bare(dir).map_err(|e| err("init", &e))?
        }
    };
    match repo.find_remote("origin") {
        Ok(r) if r.url().ok() == Some(url) => {}
        Ok(_) => repo
            .remote_set_url("origin", url)
            .map_err(|e| err("init", &e))?,
        Err(_) => {
            repo.remote("origin", url).map_err(|e| err("init", &e))?;
        }
    }
    Ok(repo)
}

/// Remove every `*.lock` file under `dir` older than this process; how many.
fn remove_stale_locks(dir: &Path) -> usize {
    let started = STARTED.get().copied();
    let mut removed = 0;
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "lock")
                && meta.modified().is_ok_and(|m| started.is_none_or(|s| m < s))
                && std::fs::remove_file(&path).is_ok()
            {
                tracing::warn!(file = %path.display(), "removed a stale lock file");
                removed += 1;
            }
        }
    }
    removed
}

/// Move a damaged clone aside (kept for a post-mortem, beside it), so a new one can start.
fn move_aside(dir: &Path) -> PortResult<()> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = dir.with_extension(format!("damaged-{stamp}"));
    std::fs::rename(dir, &aside).map_err(|e| {
        PortError::new(
            "git",
            "repair",
            ErrorKind::Rejected,
            format!("cannot move the damaged clone {} aside: {e}", dir.display()),
        )
    })?;
    tracing::warn!(from = %dir.display(), to = %aside.display(), "moved the damaged clone aside");
    Ok(())
}

/// When a commit was made.
fn commit_time(c: &git2::Commit<'_>) -> DateTime<Utc> {
    DateTime::from_timestamp(c.time().seconds(), 0).unwrap_or_default()
}

/// The tree of `base` with `files` written into it (keeping an executable bit it had).
/// The UTF-8 text of `path` in `tree`; `None` when absent.
fn text_at(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    path: &str,
    op: &'static str,
) -> PortResult<Option<String>> {
    let entry = match tree.get_path(Path::new(path)) {
        Ok(e) => e,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(err(op, &e)),
    };
    let blob = repo.find_blob(entry.id()).map_err(|e| err(op, &e))?;
    String::from_utf8(blob.content().to_vec())
        .map(Some)
        .map_err(|_| {
            PortError::new(
                "git",
                op,
                ErrorKind::Rejected,
                format!("{path} is not UTF-8 text"),
            )
        })
}

fn tree_with(
    repo: &Repository,
    base: &git2::Tree<'_>,
    files: &[(String, String)],
) -> PortResult<Oid> {
    let mut update = TreeUpdateBuilder::new();
    for (path, text) in files {
        let mode = base
            .get_path(Path::new(path))
            .ok()
            .map_or(FileMode::Blob, |e| {
                if e.filemode() == 0o100755 {
                    FileMode::BlobExecutable
                } else {
                    FileMode::Blob
                }
            });
        let oid = repo.blob(text.as_bytes()).map_err(|e| err("commit", &e))?;
        update.upsert(path, oid, mode);
    }
    update
        .create_updated(repo, base)
        .map_err(|e| err("commit", &e))
}

/// Whether `head` is one commit that writes exactly `files` on top of an ancestor of `base`,
/// and main has not changed those files since that ancestor: the branch makes this very
/// change, and merging it into `base` gives the same result as a fresh commit would. A
/// branch someone else pushed to, or one whose files main changed, does not hold it.
fn holds_change(
    repo: &Repository,
    head: &git2::Commit<'_>,
    base: &git2::Commit<'_>,
    files: &[(String, String)],
) -> bool {
    let Ok(parent) = head.parent(0) else {
        return false;
    };
    if head.parent_count() != 1 {
        return false;
    }
    let on_main = parent.id() == base.id()
        || repo
            .graph_descendant_of(base.id(), parent.id())
            .unwrap_or(false);
    let (Ok(parent_tree), Ok(base_tree)) = (parent.tree(), base.tree()) else {
        return false;
    };
    let unchanged_on_main = files.iter().all(|(path, _)| {
        let at = |t: &git2::Tree<'_>| t.get_path(Path::new(path)).ok().map(|e| e.id());
        at(&parent_tree) == at(&base_tree)
    });
    on_main
        && unchanged_on_main
        && tree_with(repo, &parent_tree, files).is_ok_and(|t| t == head.tree_id())
}

fn fetch(repo: &Repository, me: &Git) -> PortResult<()> {
    let mut remote = repo.find_remote("origin").map_err(|e| err("fetch", &e))?;
    let mut opts = FetchOptions::new();
    opts.prune(git2::FetchPrune::On);
    opts.download_tags(git2::AutotagOption::None);
    // Only the refs tugboat uses: anyone who can push may make branches, and every one of
    // them fetched would fill the working directory.
    let track = |branch: &str| format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
    let refspecs = [
        track(&me.base_branch),
        track("tugboat/*"),
        track(LEDGER_BRANCH),
    ];
    let r = remote.fetch(&refspecs, Some(&mut opts), None);
    me.api.record("git", "fetch", &r);
    r.map_err(|e| err("fetch", &e))
}

/// Push one refspec; `Ok(Some(message))` when the update was refused.
fn push(repo: &Repository, me: &Git, refspec: &str) -> PortResult<Option<String>> {
    let mut remote = repo.find_remote("origin").map_err(|e| err("push", &e))?;
    push_on(&mut remote, me, refspec)
}

/// [`push`] on a remote that may already be connected (then its ref advertisement is the one
/// the update is checked against).
fn push_on(remote: &mut git2::Remote<'_>, me: &Git, refspec: &str) -> PortResult<Option<String>> {
    let mut cb = RemoteCallbacks::new();
    let rejected = Arc::new(Mutex::new(None::<String>));
    let r2 = Arc::clone(&rejected);
    cb.push_update_reference(move |_refname, status| {
        if let (Some(msg), Ok(mut slot)) = (status, r2.lock()) {
            *slot = Some(msg.to_owned());
        }
        Ok(())
    });
    let mut opts = PushOptions::new();
    opts.remote_callbacks(cb);
    let pushed = remote.push(&[refspec], Some(&mut opts));
    me.api.record("git", "push", &pushed);
    match pushed {
        Ok(()) => {}
        Err(e) if e.code() == git2::ErrorCode::NotFastForward => {
            me.api.error("git", "push");
            return Ok(Some(e.message().to_owned()));
        }
        Err(e) => return Err(err("push", &e)),
    }
    let refused = rejected.lock().ok().and_then(|s| s.clone());
    if refused.is_some() {
        me.api.error("git", "push");
    }
    Ok(refused)
}

/// What a proposal needs: nothing (the remote branch makes the change already), or a commit.
enum Planned {
    Holds(Proposal),
    Commit(NewCommit),
}

/// A commit to make: the edited files on top of the fetched base.
struct NewCommit {
    base: Oid,
    base_tree: Oid,
    tree: Oid,
    /// Each file's blob and mode, as the local clone hashes them.
    blobs: Vec<(String, Oid, i32)>,
    /// The remote branch's head this commit replaces, and when it was committed.
    replaced: Option<(String, DateTime<Utc>)>,
}

/// Whether the remote branch already makes this change on a base it may keep (then its head
/// stays, and so do its approvals); otherwise the commit to make.
fn plan(
    repo: &Repository,
    me: &Git,
    branch: &str,
    files: &[(String, String)],
    keep: Base,
) -> PortResult<Planned> {
    let base = repo
        .find_reference(&me.base_ref())
        .and_then(|r| r.peel_to_commit())
        .map_err(|e| err("commit", &e))?;
    let base_tree = base.tree().map_err(|e| err("commit", &e))?;
    let tree = tree_with(repo, &base_tree, files)?;
    if let Some(p) = held(repo, branch, &base, files, tree, keep) {
        return Ok(Planned::Holds(p));
    }
    let mut blobs = Vec::new();
    for (path, text) in files {
        let oid = repo.blob(text.as_bytes()).map_err(|e| err("commit", &e))?;
        blobs.push((path.clone(), oid, mode_in(&base_tree, path)));
    }
    let replaced = repo
        .find_reference(&format!("refs/remotes/origin/{branch}"))
        .and_then(|r| r.peel_to_commit())
        .ok()
        .map(|c| (c.id().to_string(), commit_time(&c)));
    Ok(Planned::Commit(NewCommit {
        base: base.id(),
        base_tree: base_tree.id(),
        tree,
        blobs,
        replaced,
    }))
}

/// The fetched remote branch, if it makes exactly this change on a base it may keep: on
/// the current base, or (with [`Base::Untouched`]) on an earlier one whose copies of
/// `files` main has not changed since.
fn held(
    repo: &Repository,
    branch: &str,
    base: &git2::Commit<'_>,
    files: &[(String, String)],
    tree: Oid,
    keep: Base,
) -> Option<Proposal> {
    let existing = repo
        .find_reference(&format!("refs/remotes/origin/{branch}"))
        .and_then(|r| r.peel_to_commit())
        .ok()?;
    let on_base = existing.parent_ids().collect::<Vec<Oid>>() == [base.id()];
    let holds = match keep {
        Base::Untouched => holds_change(repo, &existing, base, files),
        Base::Current => on_base && existing.tree_id() == tree,
        Base::Fresh => false,
    };
    holds.then(|| Proposal {
        head: existing.id().to_string(),
        committed_at: commit_time(&existing),
        pushed: false,
        replaced: None,
    })
}

/// The mode a file has in `tree` (a new file is a plain blob; an executable stays one).
fn mode_in(tree: &git2::Tree<'_>, path: &str) -> i32 {
    tree.get_path(Path::new(path))
        .ok()
        .filter(|e| e.filemode() == 0o100755)
        .map_or(0o100644, |_| 0o100755)
}

/// Commit locally and push the branch (forced only over a head we have seen: when we believe
/// it absent, a plain push fails if another replica created it meanwhile, and we look at
/// theirs instead).
fn push_commit(
    repo: &Repository,
    me: &Git,
    branch: &str,
    files: &[(String, String)],
    message: &str,
    keep: Base,
    c: &NewCommit,
) -> PortResult<Proposal> {
    let find = |e: git2::Error| err("commit", &e);
    let tree = repo.find_tree(c.tree).map_err(find)?;
    let base = repo.find_commit(c.base).map_err(find)?;
    let sig = me.signature("commit")?;
    let commit = repo
        .commit(None, &sig, &sig, message, &tree, &[&base])
        .map_err(find)?;
    let local_ref = format!("refs/heads/{branch}");
    repo.reference(&local_ref, commit, true, "tugboat proposal")
        .map_err(find)?;
    failpoint!("commit");
    let force = if c.replaced.is_some() { "+" } else { "" };
    if let Some(msg) = push(repo, me, &format!("{force}{local_ref}:{local_ref}"))? {
        // Another replica may have pushed the same proposal at the same moment.
        fetch(repo, me)?;
        if let Some(p) = held(repo, branch, &base, files, c.tree, keep) {
            return Ok(p);
        }
        return Err(PortError::new(
            "git",
            "push",
            ErrorKind::Rejected,
            format!("the server refused {branch}: {msg}"),
        ));
    }
    let remote_ref = format!("refs/remotes/origin/{branch}");
    repo.reference(&remote_ref, commit, true, "tugboat push")
        .map_err(|e| err("push", &e))?;
    Ok(Proposal {
        head: commit.to_string(),
        // The push time, not the commit's: a comment made while the push was on its way
        // approved the previous head.
        committed_at: me.clock.now(),
        pushed: true,
        replaced: c.replaced.clone(),
    })
}

/// The files of a commit made through the API: path, text, mode and the blob id the local
/// clone gives it (the server must give the same).
pub struct ApiFile<'a> {
    pub path: &'a str,
    pub text: &'a str,
    pub mode: i32,
    pub blob: String,
}

/// A commit made through the Git host's API instead of a push, so that the host signs it
/// (GitHub shows such commits as Verified): the byte-exact edit is the same, only the way
/// it reaches the host differs.
#[async_trait]
pub trait CommitApi: Send + Sync {
    /// Create the blobs, a tree of `base_tree` with them, and a commit of it on `parent`;
    /// the new commit. Refused unless the host's tree is `tree` (what the clone computed).
    async fn create_commit(
        &self,
        parent: &str,
        base_tree: &str,
        files: &[ApiFile<'_>],
        tree: &str,
        message: &str,
    ) -> PortResult<String>;
    /// Point `branch` at `sha`: create it when `exists` is false (refused if it exists by
    /// then), else move it there whatever it held. `Ok(false)` when refused.
    async fn set_branch(&self, branch: &str, sha: &str, exists: bool) -> PortResult<bool>;
}

impl Git {
    /// Commits go to the host through `api` from now on, instead of being pushed.
    pub fn with_commit_api(mut self, api: Arc<dyn CommitApi>) -> Self {
        self.commits = Some(api);
        self
    }

    /// [`GitOpsRepo::propose`]'s commit through the host's API, then fetched into the clone.
    async fn commit_through_api(
        &self,
        api: &dyn CommitApi,
        branch: &str,
        files: Vec<(String, String)>,
        message: &str,
        keep: Base,
        c: NewCommit,
    ) -> PortResult<Proposal> {
        let api_files: Vec<ApiFile<'_>> = files
            .iter()
            .zip(&c.blobs)
            .map(|((path, text), (_, blob, mode))| ApiFile {
                path,
                text,
                mode: *mode,
                blob: blob.to_string(),
            })
            .collect();
        let (base, base_tree, tree) = (c.base.to_string(), c.base_tree.to_string(), c.tree);
        let sha = api
            .create_commit(&base, &base_tree, &api_files, &tree.to_string(), message)
            .await?;
        failpoint!("commit");
        let set = api.set_branch(branch, &sha, c.replaced.is_some()).await?;
        let branch = branch.to_owned();
        let replaced = c.replaced.clone();
        let now = self.clock.now();
        self.blocking(move |repo, me| {
            fetch(repo, me)?;
            let base = repo.find_commit(c.base).map_err(|e| err("commit", &e))?;
            if !set {
                // Another replica created the branch at the same moment: theirs may hold it.
                return held(repo, &branch, &base, &files, c.tree, keep).ok_or_else(|| {
                    PortError::new(
                        "git",
                        "push",
                        ErrorKind::Rejected,
                        format!("the server refused to create {branch}: it exists"),
                    )
                });
            }
            Ok(Proposal {
                head: sha.clone(),
                committed_at: now,
                pushed: true,
                replaced: replaced.clone(),
            })
        })
        .await
    }
}

#[async_trait]
impl GitOpsRepo for Git {
    async fn sync(&self) -> PortResult<String> {
        self.blocking(|repo, me| {
            fetch(repo, me)?;
            let oid = repo.refname_to_id(&me.base_ref()).map_err(|_| {
                PortError::new(
                    "git",
                    "fetch",
                    ErrorKind::NotFound,
                    format!("the remote has no branch '{}'", me.base_branch),
                )
            })?;
            Ok(oid.to_string())
        })
        .await
    }

    async fn read(&self, path: &str) -> PortResult<Option<String>> {
        let path = path.to_owned();
        self.blocking(move |repo, me| {
            let tree = repo
                .find_reference(&me.base_ref())
                .and_then(|r| r.peel_to_tree())
                .map_err(|e| err("read", &e))?;
            text_at(repo, &tree, &path, "read")
        })
        .await
    }

    async fn read_before(&self, commit: &str, path: &str) -> PortResult<Option<String>> {
        let (commit, path) = (commit.to_owned(), path.to_owned());
        self.blocking(move |repo, me| {
            let e = |e: &git2::Error| err("read_before", e);
            let oid = Oid::from_str(&commit).map_err(|x| e(&x))?;
            if repo.find_commit(oid).is_err() {
                fetch(repo, me)?;
            }
            let parent = repo
                .find_commit(oid)
                .and_then(|c| c.parent(0))
                .map_err(|x| e(&x))?;
            let tree = parent.tree().map_err(|x| e(&x))?;
            text_at(repo, &tree, &path, "read_before")
        })
        .await
    }

    async fn read_at(&self, commit: &str, path: &str) -> PortResult<Option<String>> {
        let (commit, path) = (commit.to_owned(), path.to_owned());
        self.blocking(move |repo, me| {
            let e = |e: &git2::Error| err("read_at", e);
            let oid = Oid::from_str(&commit).map_err(|x| e(&x))?;
            if repo.find_commit(oid).is_err() {
                fetch(repo, me)?;
            }
            let tree = repo
                .find_commit(oid)
                .and_then(|c| c.tree())
                .map_err(|x| e(&x))?;
            text_at(repo, &tree, &path, "read_at")
        })
        .await
    }

    async fn propose(
        &self,
        branch: &str,
        files: Vec<(String, String)>,
        message: &str,
        keep: Base,
    ) -> PortResult<Proposal> {
        let (branch, message) = (branch.to_owned(), message.to_owned());
        let api = self.commits.clone();
        let planned = {
            let (branch, files, message) = (branch.clone(), files.clone(), message.clone());
            self.blocking(move |repo, me| {
                let plan = plan(repo, me, &branch, &files, keep)?;
                match (plan, api.is_some()) {
                    (Planned::Holds(p), _) => Ok(Planned::Holds(p)),
                    (Planned::Commit(c), true) => Ok(Planned::Commit(c)),
                    (Planned::Commit(c), false) => {
                        push_commit(repo, me, &branch, &files, &message, keep, &c)
                            .map(Planned::Holds)
                    }
                }
            })
            .await?
        };
        match (planned, &self.commits) {
            (Planned::Holds(p), _) => Ok(p),
            (Planned::Commit(c), Some(api)) => {
                self.commit_through_api(api.as_ref(), &branch, files, &message, keep, c)
                    .await
            }
            (Planned::Commit(_), None) => unreachable!("pushed above"),
        }
    }

    async fn includes(&self, commit: &str, ancestor: &str) -> PortResult<bool> {
        let (commit, ancestor) = (commit.to_owned(), ancestor.to_owned());
        self.blocking(move |repo, me| {
            let parse = |s: &str| Oid::from_str(s).map_err(|e| err("includes", &e));
            let (c, a) = (parse(&commit)?, parse(&ancestor)?);
            if c == a {
                return Ok(true);
            }
            if repo.find_commit(c).is_err() {
                fetch(repo, me)?;
            }
            if repo.find_commit(c).is_err() || repo.find_commit(a).is_err() {
                return Ok(false);
            }
            repo.graph_descendant_of(c, a)
                .map_err(|e| err("includes", &e))
        })
        .await
    }

    async fn last_change(&self, paths: &[String]) -> PortResult<Option<CommitInfo>> {
        let paths = paths.to_vec();
        self.blocking(move |repo, me| {
            let e = |e: git2::Error| err("last_change", &e);
            let mut commit = repo
                .find_reference(&me.base_ref())
                .and_then(|r| r.peel_to_commit())
                .map_err(e)?;
            for _ in 0..HISTORY_DEPTH {
                let parent = commit.parent(0).ok();
                let tree = commit.tree().map_err(e)?;
                let before = parent
                    .as_ref()
                    .map(git2::Commit::tree)
                    .transpose()
                    .map_err(e)?;
                let id =
                    |t: &git2::Tree<'_>, p: &str| t.get_path(Path::new(p)).ok().map(|x| x.id());
                let changed = paths
                    .iter()
                    .any(|p| id(&tree, p) != before.as_ref().and_then(|b| id(b, p)));
                if changed {
                    return Ok(Some(CommitInfo {
                        sha: commit.id().to_string(),
                        author: commit.author().name().unwrap_or("unknown").to_owned(),
                        summary: String::from_utf8_lossy(
                            commit.summary_bytes().unwrap_or_default(),
                        )
                        .into_owned(),
                        at: commit_time(&commit),
                    }));
                }
                match parent {
                    Some(p) => commit = p,
                    None => return Ok(None),
                }
            }
            Ok(None)
        })
        .await
    }
}
