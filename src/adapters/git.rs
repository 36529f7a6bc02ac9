//! The GitOps repository adapter (git2): a persistent bare clone, fetched once per cycle.
//!
//! Files are read from and written to git objects directly (no work tree), so a commit
//! changes exactly the bytes the editor produced, whatever the platform's line endings.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use git2::build::TreeUpdateBuilder;
use git2::{
    Cred, FetchOptions, FileMode, Oid, PushOptions, RemoteCallbacks, Repository, Signature,
};

use crate::ports::{ErrorKind, GitOpsRepo, PortError, PortResult, Proposal};
use crate::secret::Secret;
use crate::telemetry::ApiMetrics;

/// A local bare clone of the GitOps repository.
#[derive(Clone)]
pub struct Git {
    inner: Arc<Mutex<Repository>>,
    base_branch: String,
    token: Secret,
    author: (String, String),
    api: ApiMetrics,
}

fn err(op: &'static str, e: &git2::Error) -> PortError {
    use git2::ErrorClass as C;
    let kind = match (e.class(), e.code()) {
        (_, git2::ErrorCode::Auth) => ErrorKind::Denied,
        (C::Http | C::Net | C::Ssl | C::Ssh, _) => ErrorKind::Transient,
        (_, git2::ErrorCode::NotFound) => ErrorKind::NotFound,
        _ => ErrorKind::Rejected,
    };
    PortError::new("git", op, kind, e.message().to_owned())
}

impl Git {
    /// Open the clone in `dir`, creating it (empty, to be filled by the first fetch) if needed.
    pub fn open(
        dir: &Path,
        url: &str,
        base_branch: &str,
        token: Secret,
        api: &ApiMetrics,
    ) -> PortResult<Self> {
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
        Ok(Self {
            inner: Arc::new(Mutex::new(repo)),
            base_branch: base_branch.to_owned(),
            token,
            author: ("tugboat".into(), "tugboat@users.noreply.github.com".into()),
            api: api.clone(),
        })
    }

    /// Where a clone for `url` lives under `workdir`.
    pub fn clone_dir(workdir: &Path) -> PathBuf {
        workdir.join("gitops.git")
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Repository, &Git) -> PortResult<T> + Send + 'static,
    ) -> PortResult<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let repo = me.inner.lock().map_err(|_| {
                PortError::new(
                    "git",
                    "lock",
                    ErrorKind::Transient,
                    "a previous git operation panicked",
                )
            })?;
            f(&repo, &me)
        })
        .await
        .map_err(|e| PortError::new("git", "task", ErrorKind::Transient, e.to_string()))?
    }

    /// Callbacks that answer one credentials request with the token, then give up:
    /// libgit2 asks again after a rejection and would loop forever.
    fn callbacks(&self) -> RemoteCallbacks<'static> {
        let token = self.token.clone();
        let mut attempts = 0;
        let mut cb = RemoteCallbacks::new();
        cb.credentials(move |_url, _user, _allowed| {
            attempts += 1;
            if attempts > 1 {
                return Err(git2::Error::new(
                    git2::ErrorCode::Auth,
                    git2::ErrorClass::Http,
                    "the git server rejected the token",
                ));
            }
            Cred::userpass_plaintext("x-access-token", token.expose())
        });
        cb
    }

    fn base_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.base_branch)
    }
}

fn fetch(repo: &Repository, me: &Git) -> PortResult<()> {
    let mut remote = repo.find_remote("origin").map_err(|e| err("fetch", &e))?;
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(me.callbacks());
    opts.prune(git2::FetchPrune::On);
    opts.download_tags(git2::AutotagOption::None);
    let r = remote.fetch(
        &["+refs/heads/*:refs/remotes/origin/*"],
        Some(&mut opts),
        None,
    );
    me.api.record("git", "fetch", &r);
    r.map_err(|e| err("fetch", &e))
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
            let entry = match tree.get_path(Path::new(&path)) {
                Ok(e) => e,
                Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
                Err(e) => return Err(err("read", &e)),
            };
            let blob = repo.find_blob(entry.id()).map_err(|e| err("read", &e))?;
            String::from_utf8(blob.content().to_vec())
                .map(Some)
                .map_err(|_| {
                    PortError::new(
                        "git",
                        "read",
                        ErrorKind::Rejected,
                        format!("{path} is not UTF-8 text"),
                    )
                })
        })
        .await
    }

    async fn propose(
        &self,
        branch: &str,
        files: Vec<(String, String)>,
        message: &str,
    ) -> PortResult<Proposal> {
        let branch = branch.to_owned();
        let message = message.to_owned();
        self.blocking(move |repo, me| {
            let base = repo
                .find_reference(&me.base_ref())
                .and_then(|r| r.peel_to_commit())
                .map_err(|e| err("commit", &e))?;
            let base_tree = base.tree().map_err(|e| err("commit", &e))?;
            let mut update = TreeUpdateBuilder::new();
            for (path, text) in &files {
                let mode = base_tree
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
            let tree_id = update
                .create_updated(repo, &base_tree)
                .map_err(|e| err("commit", &e))?;
            let remote_ref = format!("refs/remotes/origin/{branch}");
            if let Ok(existing) = repo
                .find_reference(&remote_ref)
                .and_then(|r| r.peel_to_commit())
            {
                let same_base = existing.parent_ids().collect::<Vec<Oid>>() == [base.id()];
                if same_base && existing.tree_id() == tree_id {
                    return Ok(Proposal {
                        head: existing.id().to_string(),
                        pushed: false,
                    });
                }
            }
            let tree = repo.find_tree(tree_id).map_err(|e| err("commit", &e))?;
            let sig = Signature::now(&me.author.0, &me.author.1).map_err(|e| err("commit", &e))?;
            let commit = repo
                .commit(None, &sig, &sig, &message, &tree, &[&base])
                .map_err(|e| err("commit", &e))?;
            let local_ref = format!("refs/heads/{branch}");
            repo.reference(&local_ref, commit, true, "tugboat proposal")
                .map_err(|e| err("commit", &e))?;
            let mut remote = repo.find_remote("origin").map_err(|e| err("push", &e))?;
            let mut cb = me.callbacks();
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
            let pushed = remote.push(&[format!("+{local_ref}:{local_ref}")], Some(&mut opts));
            me.api.record("git", "push", &pushed);
            pushed.map_err(|e| err("push", &e))?;
            if let Some(msg) = rejected.lock().ok().and_then(|s| s.clone()) {
                me.api.error("git", "push");
                return Err(PortError::new(
                    "git",
                    "push",
                    ErrorKind::Rejected,
                    format!("the server refused {branch}: {msg}"),
                ));
            }
            repo.reference(&remote_ref, commit, true, "tugboat push")
                .map_err(|e| err("push", &e))?;
            Ok(Proposal {
                head: commit.to_string(),
                pushed: true,
            })
        })
        .await
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
}
