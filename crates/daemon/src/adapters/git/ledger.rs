//! The ledger: the branch where replicas claim work, one commit per claim, pushed as a
//! compare and swap. Anyone who can push the branch can write its files, so every file
//! tugboat writes is sealed (`domain::seal`: an HMAC-SHA256 under `github.state_key`, kept
//! in `seal.json`), and a file whose seal does not verify is not obeyed: read as empty,
//! reported once (`tugboat_forged_records_total{kind="ledger"}`), and replaced by tugboat's
//! own at its next write. A ledger without `seal.json` at all, read within an hour after
//! sealing began, was written by an earlier tugboat: it is read, and sealed at once.
//!
//! `outbox.json` keeps each notification from the write that records its change as announced
//! until every sink has it, under the name of the process delivering it: a process killed in
//! between loses nothing. Its successor on the same clone takes its parcels over at once, any
//! other process after a while (`Ledger::undelivered`). A forged outbox is not obeyed like
//! every other file: nobody but tugboat makes tugboat send a message.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use git2::{Oid, Repository, Signature};

use super::{Git, err, fetch, push, push_on};
use crate::domain::notify::Notification;
use crate::domain::provenance::{Forgery, recorded_by_now};
use crate::domain::seal::Keys;
use crate::ports::{Announcement, ErrorKind, Ledger, Parcel, PortError, PortResult};

/// The branch where replicas claim work: `schedules.json` (scheduled slots),
/// `claims.json` (the opening of promotion PRs) and `announced.json` (the last change of each
/// state that notifications announced), one commit per claim.
pub const LEDGER_BRANCH: &str = "tugboat-ledger";
const LEDGER_FILE: &str = "schedules.json";
const CLAIMS_FILE: &str = "claims.json";
const ANNOUNCED_FILE: &str = "announced.json";
const OUTBOX_FILE: &str = "outbox.json";

/// A notification some sinks do not have yet, and which process delivers it since when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Outboxed {
    notification: Notification,
    sinks: Vec<String>,
    by: String,
    since: DateTime<Utc>,
}

/// Parcels nobody delivered for this long are dropped when the ledger is written (with a
/// warning): a day-old notification is no news, and the file stays small.
const OUTBOX_KEPT_FOR: chrono::Duration = chrono::Duration::days(1);

type Outbox = std::collections::BTreeMap<String, Outboxed>;

/// The change a state's notifications last announced, and when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Announced {
    change: String,
    at: DateTime<Utc>,
}

/// Announcements not renewed for this long are dropped when the ledger is written (a removed
/// service's, a system that recovered long ago), so the file stays the fleet's size; a change
/// seen again after that long is announced again.
const ANNOUNCED_KEPT_FOR: chrono::Duration = chrono::Duration::days(90);
/// How often a claim is tried again when another replica moved the ledger in between (for
/// another key: the ledger is one ref, so any claim moves it).
const CAS_ATTEMPTS: usize = 5;

type LedgerMap = std::collections::BTreeMap<String, DateTime<Utc>>;

/// Who claimed the opening of a PR, for which change, and when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ChangeClaim {
    what: String,
    by: String,
    at: DateTime<Utc>,
}

/// Claims older than this are dropped when the ledger is written: a claim only matters while
/// it keeps others waiting (minutes), so the file stays small however long tugboat runs.
const CLAIMS_KEPT_FOR: chrono::Duration = chrono::Duration::days(1);

/// One claim per key: the latest (pruned after `CLAIMS_KEPT_FOR`).
type ClaimMap = std::collections::BTreeMap<String, ChangeClaim>;

/// Where the seals of the ledger's files are kept: file name → its seal.
const SEAL_FILE: &str = "seal.json";

/// How long after sealing began (`since` in the key text) a ledger without any seal is an
/// earlier tugboat's: the first cycle of the upgraded tugboat seals it within seconds.
const UNSEALED_GRACE: chrono::Duration = chrono::Duration::hours(1);

/// The ledger as last fetched: its head commit on the remote, and its files.
#[derive(Default)]
struct LedgerState {
    head: Option<Oid>,
    schedules: LedgerMap,
    claims: ClaimMap,
    announced: std::collections::BTreeMap<String, Announced>,
    outbox: Outbox,
    /// It had no seals at all and was read as an earlier tugboat's: to be sealed.
    unsealed: bool,
}

/// How the ledger is read and written: with the keys that seal it (none only for a clone
/// opened without them, as some tests do), and the time.
#[derive(Clone, Copy)]
struct Sealing<'a> {
    keys: Option<&'a Keys>,
    me: &'a Git,
    now: DateTime<Utc>,
}

impl<'a> Sealing<'a> {
    /// Sealing under `keys`, for `me`, at its clock's now.
    fn of(keys: Option<&'a Keys>, me: &'a Git) -> Self {
        Self {
            keys,
            me,
            now: me.clock.now(),
        }
    }

    /// Whether file `name` (its `bytes`) is one tugboat wrote: its seal verifies, or the
    /// ledger has no seals and sealing began less than [`UNSEALED_GRACE`] ago. A file that
    /// is not is reported.
    fn trusts(&self, name: &str, bytes: &[u8], seals: Option<&SealMap>) -> bool {
        let Some(keys) = self.keys else {
            return true;
        };
        let ok = match seals {
            Some(seals) => seals
                .get(name)
                .is_some_and(|tag| keys.verifies(name, bytes, tag)),
            None => keys
                .since
                .is_some_and(|since| self.now < since + UNSEALED_GRACE),
        };
        if !ok {
            let digest: String = Oid::hash_object(git2::ObjectType::Blob, bytes)
                .map(|o| o.to_string())
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect();
            let record = format!("{LEDGER_BRANCH}:{name} (blob {digest})");
            let why = "its seal does not verify: someone other than tugboat pushed it, and its entries are not obeyed";
            match &self.me.trust {
                Some(t) => t.forged.report(&record, Forgery::Ledger, why),
                None => tracing::warn!(record, "ignoring {record}: {why}"),
            }
        }
        ok
    }
}

/// The seals of the ledger's files.
type SealMap = std::collections::BTreeMap<String, String>;

fn read_json<T: serde::de::DeserializeOwned + Default>(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    file: &str,
    seal: Option<(&Sealing<'_>, Option<&SealMap>)>,
) -> PortResult<T> {
    let Ok(entry) = tree.get_path(Path::new(file)) else {
        return Ok(T::default());
    };
    let blob = repo.find_blob(entry.id()).map_err(|e| err("ledger", &e))?;
    if let Some((sealing, seals)) = seal
        && !sealing.trusts(file, blob.content(), seals)
    {
        return Ok(T::default());
    }
    serde_json::from_slice(blob.content()).map_err(|e| {
        PortError::new(
            "git",
            "ledger",
            ErrorKind::Rejected,
            format!("{LEDGER_BRANCH}:{file} is not what tugboat writes: {e}"),
        )
    })
}

/// The ledger as last fetched, each file obeyed only when tugboat wrote it.
fn read_ledger(repo: &Repository, sealing: &Sealing<'_>) -> PortResult<LedgerState> {
    let Ok(commit) = repo
        .find_reference(&ledger_remote_ref())
        .and_then(|r| r.peel_to_commit())
    else {
        return Ok(LedgerState::default());
    };
    let tree = commit.tree().map_err(|e| err("ledger", &e))?;
    // The seals themselves need none: a forged seal does not verify.
    let seals: Option<SealMap> = match tree.get_path(Path::new(SEAL_FILE)) {
        Ok(_) => Some(read_json(repo, &tree, SEAL_FILE, None)?),
        Err(_) => None,
    };
    let seal = Some((sealing, seals.as_ref()));
    Ok(LedgerState {
        head: Some(commit.id()),
        schedules: read_json(repo, &tree, LEDGER_FILE, seal)?,
        claims: read_json(repo, &tree, CLAIMS_FILE, seal)?,
        announced: read_json(repo, &tree, ANNOUNCED_FILE, seal)?,
        outbox: read_json(repo, &tree, OUTBOX_FILE, seal)?,
        unsealed: seals.is_none() && sealing.keys.is_some(),
    })
}

/// `value` as the ledger writes it, its blob, and its seal under `keys`.
fn json_blob<T: serde::Serialize>(
    repo: &Repository,
    name: &str,
    value: &T,
    keys: Option<&Keys>,
    seals: &mut SealMap,
) -> PortResult<Oid> {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    if let Some(keys) = keys {
        seals.insert(name.to_owned(), keys.tag(name, text.as_bytes()));
    }
    repo.blob(text.as_bytes()).map_err(|e| err("ledger", &e))
}

/// Commit the ledger's files (sealed under `keys`) on top of its head, and point the local
/// ledger branch at it.
fn commit_ledger(
    repo: &Repository,
    state: &LedgerState,
    keys: Option<&Keys>,
    sig: &Signature<'_>,
    message: &str,
) -> PortResult<Oid> {
    let ledger = |e: git2::Error| err("ledger", &e);
    let mut seals = SealMap::new();
    let mut tree = repo.treebuilder(None).map_err(ledger)?;
    let mut file = |name: &str, blob: Oid| tree.insert(name, blob, 0o100644).map(|_| ());
    file(
        LEDGER_FILE,
        json_blob(repo, LEDGER_FILE, &state.schedules, keys, &mut seals)?,
    )
    .map_err(ledger)?;
    if !state.claims.is_empty() {
        let blob = json_blob(repo, CLAIMS_FILE, &state.claims, keys, &mut seals)?;
        file(CLAIMS_FILE, blob).map_err(ledger)?;
    }
    if !state.announced.is_empty() {
        let blob = json_blob(repo, ANNOUNCED_FILE, &state.announced, keys, &mut seals)?;
        file(ANNOUNCED_FILE, blob).map_err(ledger)?;
    }
    if !state.outbox.is_empty() {
        let blob = json_blob(repo, OUTBOX_FILE, &state.outbox, keys, &mut seals)?;
        file(OUTBOX_FILE, blob).map_err(ledger)?;
    }
    if keys.is_some() {
        let blob = json_blob(repo, SEAL_FILE, &seals, None, &mut SealMap::new())?;
        file(SEAL_FILE, blob).map_err(ledger)?;
    }
    let tree = repo
        .find_tree(tree.write().map_err(ledger)?)
        .map_err(ledger)?;
    let parents = match state.head {
        Some(p) => vec![repo.find_commit(p).map_err(ledger)?],
        None => vec![],
    };
    let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
    let commit = repo
        .commit(None, sig, sig, message, &tree, &parents)
        .map_err(ledger)?;
    repo.reference(&ledger_ref(), commit, true, "tugboat ledger")
        .map_err(ledger)?;
    Ok(commit)
}

fn ledger_ref() -> String {
    format!("refs/heads/{LEDGER_BRANCH}")
}

/// Where the fetched remote ledger is kept.
fn ledger_remote_ref() -> String {
    format!("refs/remotes/origin/{LEDGER_BRANCH}")
}

/// Start the ledger branch with a root commit that every replica builds byte-identically
/// (empty map, fixed author and time), so racing creations agree and claims are always
/// fast-forward updates of one shared history.
fn create_ledger(repo: &Repository, sealing: &Sealing<'_>) -> PortResult<()> {
    let me = sealing.me;
    let sig = Signature::new(&me.author.0, &me.author.1, &git2::Time::new(0, 0))
        .map_err(|e| err("ledger", &e))?;
    commit_ledger(
        repo,
        &LedgerState::default(),
        sealing.keys,
        &sig,
        "tugboat ledger: scheduled runs\n",
    )?;
    let local_ref = ledger_ref();
    // Refused means another replica created it first: the same commit, or one to build on.
    let _ = push(repo, me, &format!("{local_ref}:{local_ref}"))?;
    Ok(())
}

/// The fetched ledger, created first if the repository has none.
fn fetch_ledger(repo: &Repository, sealing: &Sealing<'_>) -> PortResult<LedgerState> {
    fetch(repo, sealing.me)?;
    let state = read_ledger(repo, sealing)?;
    if state.head.is_some() {
        return Ok(state);
    }
    create_ledger(repo, sealing)?;
    fetch(repo, sealing.me)?;
    read_ledger(repo, sealing)
}

/// Push the local ledger as a compare and swap: connect, check that the server's ledger is
/// still `parent`, and push on that connection naming it as the old value, so the server
/// refuses the update if another replica moved the ledger in between. `false` when it moved.
fn swap_ledger(repo: &Repository, me: &Git, parent: Option<Oid>, commit: Oid) -> PortResult<bool> {
    let local_ref = ledger_ref();
    let mut remote = repo.find_remote("origin").map_err(|e| err("push", &e))?;
    let refused = {
        let mut conn = remote
            .connect_auth(git2::Direction::Push, None, None)
            .map_err(|e| err("push", &e))?;
        let at = conn
            .list()
            .map_err(|e| err("push", &e))?
            .iter()
            .find(|h| h.name() == local_ref)
            .map(git2::RemoteHead::oid);
        if at != parent {
            Some("the ledger moved since it was read".to_owned())
        } else {
            push_on(conn.remote(), me, &format!("+{local_ref}:{local_ref}"))?
        }
    };
    if let Some(msg) = refused {
        tracing::debug!(reason = %msg, "the ledger moved; reading it again");
        return Ok(false);
    }
    repo.reference(&ledger_remote_ref(), commit, true, "tugboat ledger")
        .map_err(|e| err("ledger", &e))?;
    Ok(true)
}

/// Claim something in the ledger: `decide` looks at the fetched ledger and either refuses
/// (`None`: taken) or changes it and names the commit message; the change is pushed as a
/// compare and swap, read and decided again when another replica moved the ledger first.
/// Whether ledger entry `key` of `file`, stamped `at`, could have been written by a tugboat
/// by now; one from the future is someone else's, warned about and not obeyed.
fn plausible(me: &Git, file: &str, key: &str, at: DateTime<Utc>) -> bool {
    let ok = recorded_by_now(at, me.clock.now());
    if !ok {
        tracing::warn!(file, key, at = %at, kind = "ledger", "ignoring a ledger entry stamped in the future: tugboat did not write it");
    }
    ok
}

fn claim_in_ledger(
    repo: &Repository,
    sealing: &Sealing<'_>,
    decide: &dyn Fn(&mut LedgerState) -> Option<String>,
) -> PortResult<bool> {
    let me = sealing.me;
    for _ in 0..CAS_ATTEMPTS {
        let mut state = fetch_ledger(repo, sealing)?;
        let parent = state.head;
        let Some(message) = decide(&mut state) else {
            return Ok(false);
        };
        let sig = me.signature("ledger")?;
        let commit = commit_ledger(repo, &state, sealing.keys, &sig, &message)?;
        if swap_ledger(repo, me, parent, commit)? {
            return Ok(true);
        }
    }
    Err(PortError::new(
        "git",
        "ledger",
        ErrorKind::Transient,
        format!("the ledger moved {CAS_ATTEMPTS} times while claiming; try again"),
    ))
}

/// Drop the parcels nobody delivered within [`OUTBOX_KEPT_FOR`], saying so.
fn prune_outbox(outbox: &mut Outbox, now: DateTime<Utc>) {
    outbox.retain(|id, o| {
        let kept = now - o.since < OUTBOX_KEPT_FOR;
        if !kept {
            tracing::warn!(delivery = %id, key = %o.notification.key, sinks = ?o.sinks, since = %o.since, "dropping a notification nobody delivered for a day");
        }
        kept
    });
}

/// Record the fresh ones of `changes` in `state`, their parcels in its outbox under `me`;
/// which were fresh goes to `fresh`, and how many is returned. With none, `state` is left
/// as it was (nothing is written, nothing pruned).
fn record_announced(
    state: &mut LedgerState,
    changes: &[Announcement],
    (me, now): (&str, DateTime<Utc>),
    fresh: &mut [bool],
) -> usize {
    for (i, a) in changes.iter().enumerate() {
        let known = state
            .announced
            .get(&a.key)
            .is_some_and(|known| known.change == a.change);
        fresh[i] = !known;
    }
    let n = fresh.iter().filter(|f| **f).count();
    if n == 0 {
        return 0;
    }
    state
        .announced
        .retain(|_, a| now - a.at < ANNOUNCED_KEPT_FOR);
    prune_outbox(&mut state.outbox, now);
    for (a, _) in changes.iter().zip(fresh.iter()).filter(|(_, f)| **f) {
        let change = a.change.clone();
        state
            .announced
            .insert(a.key.clone(), Announced { change, at: now });
        if let Some(p) = a.parcel.as_ref().filter(|p| !p.sinks.is_empty()) {
            let parcel = Outboxed {
                notification: p.notification.clone(),
                sinks: p.sinks.clone(),
                by: me.to_owned(),
                since: now,
            };
            state.outbox.insert(p.id.clone(), parcel);
        }
    }
    n
}

/// Take the parcels of `state`'s outbox that nobody delivers any more (see
/// [`Ledger::undelivered`]) for `me`.
fn take_over(
    state: &mut LedgerState,
    me: &Git,
    now: DateTime<Utc>,
    others_after: chrono::Duration,
) -> Vec<Parcel> {
    let tenancy = &me.tenancy;
    let mut taken = Vec::new();
    for (id, o) in state.outbox.iter_mut() {
        let predecessor = tenancy.is_mine(&o.by) && o.by != tenancy.me;
        let abandoned = !tenancy.is_mine(&o.by) && now - o.since >= others_after;
        if !(predecessor || abandoned) {
            continue;
        }
        // Debug: this may run once per compare-and-swap attempt; the notifier says it once.
        tracing::debug!(delivery = %id, key = %o.notification.key, from = %o.by, since = %o.since, "taking over a notification its process did not deliver");
        o.by = tenancy.me.clone();
        o.since = now;
        taken.push(Parcel {
            id: id.clone(),
            notification: o.notification.clone(),
            sinks: o.sinks.clone(),
        });
    }
    taken
}

/// Strike each `(id, sink)` of `done` from the outbox; whether anything changed.
fn strike(outbox: &mut Outbox, done: &[(String, String)]) -> bool {
    let mut changed = false;
    for (id, sink) in done {
        let Some(o) = outbox.get_mut(id) else {
            continue;
        };
        let before = o.sinks.len();
        o.sinks.retain(|s| s != sink);
        changed |= o.sinks.len() != before;
        if o.sinks.is_empty() {
            outbox.remove(id);
        }
    }
    changed
}

/// Seal a ledger an earlier tugboat wrote (its files as read); a failure is logged, and the
/// next read tries again.
fn seal_ledger(repo: &Repository, sealing: &Sealing<'_>) {
    let sealed = claim_in_ledger(repo, sealing, &|state| {
        state
            .unsealed
            .then(|| "seal the ledger an earlier tugboat wrote".to_owned())
    });
    match sealed {
        Ok(_) => tracing::info!("sealed the ledger an earlier tugboat wrote"),
        Err(e) => tracing::warn!(error = %e, "sealing the ledger an earlier tugboat wrote failed"),
    }
}

#[async_trait]
impl Ledger for Git {
    async fn last_run(&self, job: &str) -> PortResult<Option<DateTime<Utc>>> {
        let job = job.to_owned();
        let (keys, writes) = self.ledger_keys().await?;
        self.blocking(move |repo, me| {
            let sealing = Sealing::of(keys.as_deref(), me);
            fetch(repo, me)?;
            let state = read_ledger(repo, &sealing)?;
            if state.unsealed && writes {
                seal_ledger(repo, &sealing);
            }
            let last = state.schedules.get(&job).copied();
            Ok(last.filter(|at| plausible(me, "schedules.json", &job, *at)))
        })
        .await
    }

    async fn claim(&self, job: &str, slot: DateTime<Utc>) -> PortResult<bool> {
        let job = job.to_owned();
        let (keys, _) = self.ledger_keys().await?;
        self.blocking(move |repo, me| {
            let sealing = Sealing::of(keys.as_deref(), me);
            let claimed = claim_in_ledger(repo, &sealing, &|state| {
                let last = state.schedules.get(&job).copied();
                let last = last.filter(|at| plausible(me, "schedules.json", &job, *at));
                if last.is_some_and(|last| last >= slot) {
                    return None;
                }
                state.schedules.insert(job.clone(), slot);
                Some(format!("{job}: run the slot of {}", slot.to_rfc3339()))
            })?;
            if !claimed {
                tracing::info!(job, slot = %slot, "another tugboat claimed this slot first");
            }
            Ok(claimed)
        })
        .await
    }

    async fn claim_change(&self, key: &str, what: &str, ttl: Duration) -> PortResult<bool> {
        let (key, what) = (key.to_owned(), what.to_owned());
        let (keys, _) = self.ledger_keys().await?;
        self.blocking(move |repo, me| {
            let sealing = Sealing::of(keys.as_deref(), me);
            let now = sealing.now;
            let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
            claim_in_ledger(repo, &sealing, &|state| {
                let taken = state.claims.get(&key).is_some_and(|c| {
                    c.what == what
                        && !me.tenancy.is_mine(&c.by)
                        && now - c.at < ttl
                        && plausible(me, "claims.json", &key, c.at)
                });
                if taken {
                    return None;
                }
                let claim = ChangeClaim {
                    what: what.clone(),
                    by: me.tenancy.me.clone(),
                    at: now,
                };
                state
                    .claims
                    .retain(|_, c| now - c.at < CLAIMS_KEPT_FOR && recorded_by_now(c.at, now));
                state.claims.insert(key.clone(), claim);
                Some(format!(
                    "{key}: {} opens the PR of \"{what}\"",
                    me.tenancy.me
                ))
            })
        })
        .await
    }

    async fn announce(&self, changes: &[Announcement]) -> PortResult<Vec<bool>> {
        let changes = changes.to_vec();
        let (keys, _) = self.ledger_keys().await?;
        self.blocking(move |repo, me| {
            let sealing = Sealing::of(keys.as_deref(), me);
            let now = sealing.now;
            let fresh = std::cell::RefCell::new(vec![false; changes.len()]);
            claim_in_ledger(repo, &sealing, &|state| {
                let mut fresh = fresh.borrow_mut();
                let who = (me.tenancy.me.as_str(), now);
                let n = record_announced(state, &changes, who, &mut fresh);
                (n > 0).then(|| format!("announce {n} change(s): {}", changes[0].key))
            })?;
            Ok(fresh.into_inner())
        })
        .await
    }

    async fn undelivered(&self, others_after: Duration) -> PortResult<Vec<Parcel>> {
        let (keys, _) = self.ledger_keys().await?;
        let others_after =
            chrono::Duration::from_std(others_after).unwrap_or(chrono::Duration::MAX);
        self.blocking(move |repo, me| {
            let sealing = Sealing::of(keys.as_deref(), me);
            let now = sealing.now;
            let taken = std::cell::RefCell::new(Vec::new());
            claim_in_ledger(repo, &sealing, &|state| {
                let mut taken = taken.borrow_mut();
                *taken = take_over(state, me, now, others_after);
                (!taken.is_empty()).then(|| {
                    format!(
                        "{} takes over {} undelivered notification(s)",
                        me.tenancy.me,
                        taken.len()
                    )
                })
            })?;
            Ok(taken.into_inner())
        })
        .await
    }

    async fn delivered(&self, done: &[(String, String)]) -> PortResult<()> {
        let done = done.to_vec();
        let (keys, _) = self.ledger_keys().await?;
        self.blocking(move |repo, me| {
            let sealing = Sealing::of(keys.as_deref(), me);
            claim_in_ledger(repo, &sealing, &|state| {
                strike(&mut state.outbox, &done)
                    .then(|| format!("{} delivery(ies) done", done.len()))
            })?;
            Ok(())
        })
        .await
    }
}
