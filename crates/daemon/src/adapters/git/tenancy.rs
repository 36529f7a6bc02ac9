//! Who holds a working directory: the process that owns the clone, and the processes it
//! took the clone over from.
//!
//! The owner holds an exclusive lock (`flock`) on a file beside the clone. The kernel lets go
//! of it when the process ends, however it ends: a `kill -9` or an out-of-memory kill leaves
//! no lock behind. So a process that gets the lock knows that every earlier holder is dead;
//! the names those holders made their ledger claims under are read from the file, and their
//! claims are this process's own (a container restarted in the same pod takes up its
//! predecessor's promotion at once, not after the claim's lifetime).
//!
//! A process that finds the lock held (a `tugboat plan` run beside the daemon, in its pod)
//! is a guest: it claims under its own name, and never repairs the clone (a lock file it sees
//! may be the owner's, in use).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How many earlier owners' names are kept: claims live minutes, and a chain of restarts
/// that quick (a crash loop) is short.
const KEPT: usize = 8;

/// This process's standing in a working directory.
#[derive(Clone, Debug)]
pub struct Tenancy {
    /// The name this process's ledger claims are made under.
    pub me: String,
    /// The names of the dead owners this process took over from, newest first.
    pub predecessors: Arc<[String]>,
    /// Held while this process owns the clone; `None` for a guest.
    lock: Option<Arc<File>>,
    /// The owner's name when this process is a guest.
    pub guest_of: Option<String>,
}

impl Tenancy {
    /// Take the working directory of the clone in `clone_dir` as `me`: its owner when no live
    /// process holds it (recording `me` for the next owner), else a guest.
    pub fn take(clone_dir: &Path, me: String) -> std::io::Result<Self> {
        let path = owner_file(clone_dir);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut text = String::new();
        match file.try_lock() {
            Ok(()) => {
                // Unreadable or not UTF-8 (a torn write): no predecessors, nothing worse.
                let _ = file.read_to_string(&mut text);
                let predecessors: Vec<String> = names(&text).take(KEPT).collect();
                let mut record = me.clone();
                for p in &predecessors {
                    record.push('\n');
                    record.push_str(p);
                }
                record.push('\n');
                file.set_len(0)?;
                file.seek(SeekFrom::Start(0))?;
                file.write_all(record.as_bytes())?;
                file.sync_data()?;
                Ok(Self {
                    me,
                    predecessors: predecessors.into(),
                    lock: Some(Arc::new(file)),
                    guest_of: None,
                })
            }
            Err(TryLockError::WouldBlock) => {
                let _ = file.read_to_string(&mut text);
                let owner = names(&text)
                    .next()
                    .unwrap_or_else(|| "another process".to_owned());
                Ok(Self {
                    me,
                    predecessors: Arc::from([]),
                    lock: None,
                    guest_of: Some(owner),
                })
            }
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// A tenancy that owns nothing and inherits nothing (where locks cannot be taken).
    pub fn alone(me: String) -> Self {
        Self {
            me,
            predecessors: Arc::from([]),
            lock: None,
            guest_of: None,
        }
    }

    /// Whether this process owns the clone.
    pub fn owns(&self) -> bool {
        self.lock.is_some()
    }

    /// Whether this process may repair the clone (remove stale lock files, move it aside): its
    /// owner may, and so may a process where no lock could be taken; a guest never does.
    pub fn may_repair(&self) -> bool {
        self.guest_of.is_none()
    }

    /// Whether a ledger claim made under `name` is this process's own: made by it, or by a
    /// dead owner of its clone.
    pub fn is_mine(&self, name: &str) -> bool {
        name == self.me || self.predecessors.iter().any(|p| p == name)
    }
}

/// The file whose lock says who owns the clone: beside it, so that a clone moved aside for
/// a repair keeps its owner.
pub fn owner_file(clone_dir: &Path) -> PathBuf {
    let name = clone_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "clone".to_owned());
    clone_dir.with_file_name(format!("{name}.owner"))
}

/// The names in an owner file, newest first, ignoring blank lines.
fn names(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_owner_of_a_clone_inherits_the_names_of_the_dead_owners_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let clone = dir.path().join("gitops.git");
        let first = Tenancy::take(&clone, "a".into()).unwrap();
        assert!(first.owns() && first.predecessors.is_empty());
        drop(first);
        let second = Tenancy::take(&clone, "b".into()).unwrap();
        assert_eq!(&*second.predecessors, ["a".to_owned()]);
        drop(second);
        let third = Tenancy::take(&clone, "c".into()).unwrap();
        assert_eq!(&*third.predecessors, ["b".to_owned(), "a".to_owned()]);
        assert!(third.is_mine("a") && third.is_mine("c") && !third.is_mine("d"));
    }

    #[test]
    fn a_process_that_finds_the_clone_owned_is_a_guest_that_inherits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let clone = dir.path().join("gitops.git");
        let owner = Tenancy::take(&clone, "owner".into()).unwrap();
        let guest = Tenancy::take(&clone, "guest".into()).unwrap();
        assert!(!guest.owns());
        assert_eq!(guest.guest_of.as_deref(), Some("owner"));
        assert!(!guest.is_mine("owner"));
        drop(owner);
        drop(guest);
        // The guest never wrote itself down: the next owner inherits the owner only.
        let next = Tenancy::take(&clone, "next".into()).unwrap();
        assert_eq!(&*next.predecessors, ["owner".to_owned()]);
    }

    #[test]
    fn only_the_last_few_owners_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let clone = dir.path().join("gitops.git");
        for i in 0..20 {
            drop(Tenancy::take(&clone, format!("r{i}")).unwrap());
        }
        let last = Tenancy::take(&clone, "last".into()).unwrap();
        assert_eq!(last.predecessors.len(), KEPT);
        assert_eq!(last.predecessors[0], "r19");
    }
}
