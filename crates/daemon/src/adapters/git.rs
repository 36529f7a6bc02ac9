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
    /// This process, as its claims in the ledger name it, and the dead owners of the clone it
    /// took over from (their claims are its own).
    tenancy: Tenancy,
    /// When set, proposals are committed through the host's API (signed by it), not pushed.
    commits: Option<Arc<dyn CommitApi>>,
    /// The keys that seal the ledger's files, and where forged ones are reported (`ledger`).
    trust: Option<Trust>,
    /// Proposal commits this process made whose push it has not seen answered yet (bounded).
    made: Arc<Mutex<std::collections::VecDeque<String>>>,
}

/// What the ledger is sealed with and reports forgeries to.
#[derive(Clone)]
struct Trust {
    keys: Arc<KeyRing>,
    forged: Arc<ForgeryLog>,
}

mod commit;
mod ledger;
mod repack;
mod tenancy;

pub use commit::{ApiFile, CommitApi};
use commit::{Planned, plan, push_commit};
pub use ledger::LEDGER_BRANCH;
pub use tenancy::{Tenancy, owner_file};

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
    let refused = |e: String| PortError::new("git", "client", ErrorKind::Rejected, e);
    super::tls::builder()
        .map_err(refused)?
        .user_agent(concat!("git/2.0 (tugboat/", env!("CARGO_PKG_VERSION"), ")"))
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| refused(e.to_string()))
}

/// A name for this process in the ledger: the host and process, and when it started.
fn replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "tugboat".to_owned());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{host}/{}/{started:x}", std::process::id())
}

/// This process's standing in the clone in `dir` (see [`Tenancy`]); where no lock can be
/// taken (a file system without `flock`), it stands alone, as every process did before.
fn take_tenancy(dir: &Path) -> Tenancy {
    match Tenancy::take(dir, replica_id()) {
        Ok(t) => {
            if let Some(owner) = &t.guest_of {
                tracing::info!(dir = %dir.display(), owner, me = %t.me, "the clone is owned by a running tugboat; this process shares it as a guest");
            } else if !t.predecessors.is_empty() {
                tracing::info!(dir = %dir.display(), me = %t.me, predecessor = %t.predecessors[0], "took over the clone of a stopped tugboat, and its ledger claims");
            }
            t
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), file = %tenancy::owner_file(dir).display(), error = %e, "cannot lock the clone's owner file; claims made before a restart will wait out their lifetime");
            Tenancy::alone(replica_id())
        }
    }
}

/// The largest file [`Git::manifests`] reads (1 MiB).
pub const LARGEST_MANIFEST: usize = 1 << 20;

/// How many of its own commits whose push it did not see answered a process remembers.
const MADE_KEPT: usize = 256;

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
        let tenancy = take_tenancy(dir);
        if tenancy.may_repair() {
            let removed = remove_stale_locks(dir);
            if removed > 0 {
                tracing::warn!(dir = %dir.display(), removed, "removed lock files a stopped tugboat left in the clone");
            }
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
            tenancy,
            commits: None,
            trust: None,
            made: Arc::default(),
        })
    }

    /// This process's standing in the working directory: owner or guest, and whom it took
    /// the clone over from.
    pub fn tenancy(&self) -> &Tenancy {
        &self.tenancy
    }

    /// Remember that this process made proposal commit `sha`, before pushing it: a push whose
    /// answer is lost (a 502 from a proxy after the server took it, a cut connection) leaves
    /// the commit on the branch, and it is still this process's own.
    fn made(&self, sha: &str) {
        if let Ok(mut m) = self.made.lock() {
            m.push_back(sha.to_owned());
            while m.len() > MADE_KEPT {
                m.pop_front();
            }
        }
    }

    /// Whether this process made commit `sha` and had not seen its push through (then it
    /// has now: `true` once).
    fn take_made(&self, sha: &str) -> bool {
        let Ok(mut m) = self.made.lock() else {
            return false;
        };
        let found = m.iter().position(|x| x == sha);
        found.and_then(|i| m.remove(i)).is_some()
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
            let done = me.session.clone().run(|| {
                match f(&repo, &me) {
                    // A guest never repairs: the lock files it sees may be the owner's.
                    Err(e) if e.message.starts_with(DAMAGED) && me.tenancy.may_repair() => {}
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
            });
            // Only the owner folds packs: a guest's lookups would miss the ones it removed.
            if done.is_ok() && me.tenancy.may_repair() {
                repack::if_many(&mut repo, &me.dir);
            }
            done
        })
        .await
        .map_err(|e| PortError::new("git", "task", ErrorKind::Transient, e.to_string()))?
    }

    /// The YAML files (`.yaml`, `.yml`) at the fetched base head whose path is one of
    /// `wanted` or lies below one (`""`: every file), as text; a file that is not UTF-8 or is
    /// larger than [`LARGEST_MANIFEST`] is left out (no manifest is). For `tugboat init`.
    pub async fn manifests(
        &self,
        wanted: std::collections::BTreeSet<String>,
    ) -> PortResult<std::collections::BTreeMap<String, String>> {
        self.blocking(move |repo, me| {
            let e = |x: &git2::Error| err("manifests", x);
            let tree = repo
                .find_reference(&me.base_ref())
                .and_then(|r| r.peel_to_tree())
                .map_err(|x| e(&x))?;
            let under = |path: &str| {
                wanted.iter().any(|w| {
                    w.is_empty()
                        || path == w
                        || path
                            .strip_prefix(w.as_str())
                            .is_some_and(|r| r.starts_with('/'))
                })
            };
            let mut found = Vec::new();
            tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
                let path = format!("{dir}{}", entry.name().unwrap_or(""));
                if entry.kind() == Some(git2::ObjectType::Blob)
                    && (path.ends_with(".yaml") || path.ends_with(".yml"))
                    && under(&path)
                {
                    found.push((path, entry.id()));
                }
                git2::TreeWalkResult::Ok
            })
            .map_err(|x| e(&x))?;
            let mut out = std::collections::BTreeMap::new();
            for (path, id) in found {
                let blob = repo.find_blob(id).map_err(|x| e(&x))?;
                if blob.size() <= LARGEST_MANIFEST
                    && let Ok(text) = std::str::from_utf8(blob.content())
                {
                    out.insert(path, text.to_owned());
                }
            }
            Ok(out)
        })
        .await
    }

    fn base_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.base_branch)
    }
}

/// Open the bare clone in `dir` (creating it, empty, to be filled by the first fetch), with
/// `url` as its `origin`.
fn open_clone(dir: &Path, url: &str) -> PortResult<Repository> {
    // libgit2 keeps every commit and tree it parses in a per-repository cache of up to
    // 256 MB ("The default cache size is 256MB", git2::opts::set_cache_max_size). The clone
    // stays open for the process's life while main and the ledger gain commits every cycle,
    // so that cache is a resident set that grows for hours. A cycle reads a few trees once;
    // parsing them again costs less than keeping them: no object cache.
    git2::opts::enable_caching(false);
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
