//! Keeping the clone's packs few.
//!
//! Every fetch that brings objects stores them as a pack of its own (libgit2 has no
//! `fetch.unpackLimit` to explode small ones), and libgit2 keeps each pack it has read open
//! and mapped for as long as the repository is open. A daemon that fetches every cycle in a
//! busy repository so gathered one more open file and one more mapping per fetch, without
//! end (found by the chaos soak: a replica went from 70 to 447 open files in six minutes; 60
//! pushes left 61 open packs). Past [`MAX_PACKS`] the packs are folded into one, as
//! `git repack -a -d` does: every object reachable from the clone's refs is written as a new
//! pack, the old packs are removed, and the repository is opened anew (which lets go of
//! them). A repack that fails leaves the old packs as they were: they are still complete.

use std::path::{Path, PathBuf};

use git2::Repository;

/// More packs than this are folded into one.
pub(super) const MAX_PACKS: usize = 16;

/// The pack files of the clone in `dir`.
pub(super) fn packs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir.join("objects").join("pack")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect()
}

/// Fold the packs of the clone in `dir` (open as `repo`) into one when there are too many.
pub(super) fn if_many(repo: &mut Repository, dir: &Path) {
    let old = packs(dir);
    if old.len() <= MAX_PACKS {
        return;
    }
    match repack(repo, dir, &old) {
        Ok(objects) => {
            tracing::info!(dir = %dir.display(), packs = old.len(), objects, "folded the clone's packs into one");
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), packs = old.len(), error = %e, "cannot fold the clone's packs into one; they stay as they are");
        }
    }
}

/// Write every object reachable from the refs of `repo` as one pack, remove the packs in
/// `old`, and open the repository anew. How many objects the new pack holds.
fn repack(repo: &mut Repository, dir: &Path, old: &[PathBuf]) -> Result<usize, git2::Error> {
    let pack_dir = dir.join("objects").join("pack");
    let (name, objects) = {
        let mut builder = repo.packbuilder()?;
        let mut walk = repo.revwalk()?;
        walk.push_glob("*")?;
        builder.insert_walk(&mut walk)?;
        builder.write(&pack_dir, 0o444)?;
        let name = builder.name()?.map(|n| format!("pack-{n}"));
        (name, builder.object_count())
    };
    let Some(name) = name else {
        return Err(git2::Error::from_str("the new pack has no name"));
    };
    for pack in old {
        if pack.file_stem().is_some_and(|s| s == name.as_str()) {
            continue;
        }
        for ext in ["idx", "rev", "pack"] {
            let _ = std::fs::remove_file(pack.with_extension(ext));
        }
    }
    *repo = Repository::open_bare(dir)?;
    Ok(objects)
}
