//! A proposal's commit: the editor's bytes written into a tree of the base's (modes kept),
//! planned against what the branch holds, then pushed, or made through the host's API so
//! that the host signs it.

use super::*;

/// What a proposal needs: nothing (the remote branch makes the change already), or a commit.
pub(super) enum Planned {
    Holds(Proposal),
    Commit(NewCommit),
}

pub(super) fn tree_with(
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
pub(super) fn holds_change(
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

/// A commit to make: the edited files on top of the fetched base.
pub(super) struct NewCommit {
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
pub(super) fn plan(
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
    if let Some(mut p) = held(repo, branch, &base, files, tree, keep) {
        // A commit this process pushed without hearing back: its own push, seen through now
        // (from now: an approval given before this moment may have been of the head before).
        if me.take_made(&p.head) {
            tracing::info!(branch, head = %p.head, "the branch holds the commit whose push was not answered: it is tugboat's own");
            p.pushed = true;
            p.committed_at = me.clock.now();
        }
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
pub(super) fn held(
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
pub(super) fn mode_in(tree: &git2::Tree<'_>, path: &str) -> i32 {
    tree.get_path(Path::new(path))
        .ok()
        .filter(|e| e.filemode() == 0o100755)
        .map_or(0o100644, |_| 0o100755)
}

/// Commit locally and push the branch (forced only over a head we have seen: when we believe
/// it absent, a plain push fails if another replica created it meanwhile, and we look at
/// theirs instead).
pub(super) fn push_commit(
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
    me.made(&commit.to_string());
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
    me.take_made(&commit.to_string()); // answered: the usual path knows it
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
    pub(super) async fn commit_through_api(
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
        self.made(&sha);
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
            me.take_made(&sha); // answered: the usual path knows it
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
