//! An in-memory world behind every port, for fast engine unit tests (the sandbox-backed
//! tests in `tests/` drive the real adapters over the wire). It keeps the rules the engine
//! relies on: a merge checks the head, a second open PR for a branch is refused, Argo CD runs
//! what main's files deploy. Calls are counted, and any operation can be made to fail.
//!
//! Built for the crate's own tests, and behind the `fake` feature for the integration tests'
//! port contract (`tests/it/port_contract.rs`): the same checks run against this world and
//! against the real adapters over the sandbox, so that the two cannot drift apart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a poisoned lock is a bug

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration as Span, TimeZone, Utc};

use super::Ports;
use super::scheduler::Clock;
use crate::config::Config;
use crate::domain::chatops::{Comment, Review};
use crate::domain::gate::{ScanReport, ScanStatus};
use crate::domain::image::Digest;
use crate::domain::policy::PolicyDocument;
use crate::domain::select::ImageRecord;
use crate::manifest;
use crate::ports::{
    Access, AppEvents, AppStatus, Base, Check, CheckReport, CheckState, Checks, CommitInfo,
    Conversation, Deployer, ErrorKind, GitOpsRepo, Health, Issue, Issues, LabelEvent, LabelledPr,
    Ledger, NewPullRequest, Operation, OperationPhase, ParameterStore, Permission, PortError,
    PortResult, Proposal, PullRequest, PullRequests, Reaction, Registry, ScanStart, ScanType,
    StatusState, SyncStart, SyncStatus, SyncWindows,
};
use crate::secret::Secret;

/// A clock the test moves.
pub struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    pub fn at(t: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self(Mutex::new(t)))
    }

    pub fn advance(&self, by: Span) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// A pull request of the fake forge.
#[derive(Debug, Clone)]
pub struct Pr {
    pub number: u64,
    pub branch: String,
    pub title: String,
    pub body: String,
    pub labels: BTreeSet<String>,
    pub open: bool,
    pub merged_at: Option<DateTime<Utc>>,
    pub merge_sha: Option<String>,
    /// Who opened it.
    pub author: String,
    /// The branch it merges into.
    pub base: String,
}

/// An issue of the fake forge.
#[derive(Debug, Clone)]
pub struct FakeIssue {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub labels: BTreeSet<String>,
    pub open: bool,
    /// Who opened it.
    pub author: String,
}

/// Issues are numbered apart from pull requests (GitHub shares the sequence; nothing in the
/// engine depends on it).
const FIRST_ISSUE: u64 = 10_000;

/// A pushed branch: its head and files on top of main.
#[derive(Debug, Clone)]
struct Branch {
    head: String,
    committed_at: DateTime<Utc>,
    base: usize,
    files: Vec<(String, String)>,
    /// Who pushed the head, and when (GitHub's record of it).
    pushed: crate::ports::Pushed,
}

#[derive(Default)]
struct State {
    images: Vec<ImageRecord>,
    scans: HashMap<Digest, ScanReport>,
    /// The repository's tag mutability (IMMUTABLE unless set).
    mutability: Option<String>,
    /// Digests a lifecycle rule expired (still listed by the fake's images, but gone).
    gone: std::collections::HashSet<Digest>,
    /// Image indexes by digest → their platform images.
    indexes: HashMap<Digest, Vec<crate::domain::index::PlatformImage>>,
    docs: Vec<PolicyDocument>,
    /// cosign signature manifests by digest → their signatures.
    signatures: HashMap<Digest, Vec<crate::ports::StoredSignature>>,
    /// The public keys the policy names, by reference.
    public_keys: HashMap<crate::domain::signature::KeySource, String>,
    /// SSM's SecureStrings (tugboat's seal key, once it made one).
    secrets: BTreeMap<String, String>,
    /// Main's commits, oldest first: when, and every file.
    main: Vec<(DateTime<Utc>, BTreeMap<String, String>)>,
    /// Who made each of main's commits.
    authors: Vec<String>,
    /// The summaries of main's commits that were given one (by index).
    summaries: HashMap<usize, String>,
    issues: Vec<FakeIssue>,
    branches: HashMap<String, Branch>,
    pushes: usize,
    prs: Vec<Pr>,
    comments: HashMap<u64, Vec<Comment>>,
    next_comment: u64,
    reviews: HashMap<u64, Vec<Review>>,
    permissions: HashMap<String, Permission>,
    /// Application → (the file whose images it runs, its health).
    apps: HashMap<String, (String, Health)>,
    /// Tags that crash: an application running one is Degraded once it has warmed up.
    broken: BTreeSet<String>,
    /// How long an application is Progressing after main changes its file (zero: never).
    warmup: Span,
    statuses: Vec<(String, StatusState, String)>,
    /// The CI checks every commit reports (`None`: one `ci` check, passed).
    ci: Option<Vec<Check>>,
    /// The base branch's rules (GitHub refuses a merge that breaks them).
    rules: crate::ports::BranchRules,
    /// The merge queue: PR number → (the head queued, its state).
    queue: BTreeMap<u64, (String, crate::ports::QueueState)>,
    ledger: HashMap<String, DateTime<Utc>>,
    /// Branch → (change, when) of the PR-opening claims.
    claims: HashMap<String, (String, DateTime<Utc>)>,
    /// The last change announced per state key (the ledger's `announced.json`).
    announced: HashMap<String, String>,
    /// The ledger's outbox: delivery id → (parcel, the generation delivering it).
    outbox: BTreeMap<String, (crate::ports::Parcel, u32)>,
    /// Which process is running: a restart on the same clone is the next generation, and
    /// the earlier ones are its dead predecessors.
    generation: u32,
    /// Issues pinned to the repository.
    pinned: BTreeSet<u64>,
    /// Whether the claims on record are another replica's (a test sets it).
    foreign_claims: bool,
    calls: BTreeMap<&'static str, usize>,
    failing: HashMap<&'static str, ErrorKind>,
    /// Who added and removed each PR's or issue's labels, oldest first.
    label_events: HashMap<u64, Vec<LabelEvent>>,
    /// When each PR or issue last changed (GitHub's `updated_at`).
    updated: HashMap<u64, DateTime<Utc>>,
    /// A label tugboat removes from a PR just before its events are next read (another
    /// replica's verification ending between a listing and the events read after it).
    removed_before_events: Option<(u64, String)>,
    /// A PR whose verification another replica ends (`verifying` → `deployed`) just after
    /// the next listing of a label is answered.
    settled_after_listing: Option<(String, u64)>,
    /// An open PR another replica merges just after the next listing of a label is
    /// answered (as it merges its promotions: labelled `verifying` first).
    merged_after_listing: Option<(String, u64)>,
    /// When tugboat first reported each of its checks on a commit: (sha, check) → when.
    reported: HashMap<(String, &'static str), DateTime<Utc>>,
}

/// The login the fake forge's token acts as.
pub const ME: &str = "tugboat[bot]";

impl State {
    /// `actor` changed the labels of `number` from `before` to `after`, at `now`.
    fn labelled(
        &mut self,
        number: u64,
        actor: &str,
        before: &BTreeSet<String>,
        after: &BTreeSet<String>,
        now: DateTime<Utc>,
    ) {
        let log = self.label_events.entry(number).or_default();
        let event = |label: &String, added| LabelEvent {
            label: label.clone(),
            actor: actor.to_owned(),
            added,
        };
        log.extend(before.difference(after).map(|l| event(l, false)));
        log.extend(after.difference(before).map(|l| event(l, true)));
        self.updated.insert(number, now);
    }

    /// tugboat removes `remove` from PR `number`'s labels and adds `add`, at `now`, with
    /// the events of it; `false` when there is no such PR.
    fn relabel_pr(
        &mut self,
        number: u64,
        add: &[&str],
        remove: &[&str],
        now: DateTime<Utc>,
    ) -> bool {
        let Some(p) = self.prs.iter_mut().find(|p| p.number == number) else {
            return false;
        };
        let before = p.labels.clone();
        for l in remove {
            p.labels.remove(*l);
        }
        p.labels.extend(add.iter().map(|l| (*l).to_owned()));
        let after = p.labels.clone();
        self.labelled(number, ME, &before, &after, now);
        true
    }
}

/// The whole outside world in memory.
pub struct World {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

impl World {
    pub fn new(clock: Arc<dyn Clock>, files: &[(&str, &str)]) -> Arc<Self> {
        let files = files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect();
        let state = State {
            main: vec![(clock.now(), files)],
            authors: vec!["init".to_owned()],
            next_comment: 1000,
            ..State::default()
        };
        Arc::new(Self {
            state: Mutex::new(state),
            clock,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Count a call of `op`, and fail it if the test asked so.
    fn call(&self, op: &'static str) -> PortResult<()> {
        self.with(|s| {
            *s.calls.entry(op).or_default() += 1;
            match s.failing.get(op) {
                Some(kind) => Err(PortError::new("fake", op, *kind, "injected failure")),
                None => Ok(()),
            }
        })
    }

    /// Every later call of `op` fails with `kind`.
    pub fn fail(&self, op: &'static str, kind: ErrorKind) {
        self.with(|s| s.failing.insert(op, kind));
    }

    /// Calls of `op` succeed again.
    pub fn heal(&self, op: &str) {
        self.with(|s| s.failing.remove(op));
    }

    pub fn calls(&self, op: &str) -> usize {
        self.with(|s| s.calls.get(op).copied().unwrap_or(0))
    }

    /// The checks CI reports on every commit from now on (none: CI never reports).
    pub fn set_ci(&self, checks: &[(&str, CheckState)]) {
        let checks = checks
            .iter()
            .map(|(name, state)| Check {
                name: (*name).to_owned(),
                state: *state,
            })
            .collect();
        self.with(|s| s.ci = Some(checks));
    }

    /// The base branch's rules from now on.
    pub fn set_rules(&self, rules: crate::ports::BranchRules) {
        self.with(|s| s.rules = rules);
    }

    /// The merge queue merges every PR queued at its current head, as `merge` would.
    pub fn queue_merges(&self) {
        let queued: Vec<(u64, String)> = self.with(|s| {
            s.queue
                .iter()
                .filter(|(_, (_, st))| matches!(st, crate::ports::QueueState::Queued { .. }))
                .map(|(n, (head, _))| (*n, head.clone()))
                .collect()
        });
        for (number, head) in queued {
            let merged = self.with(|s| {
                s.queue.remove(&number);
                Self::merge_now(s, number, &head, self.clock.now())
            });
            merged.unwrap_or_else(|e| panic!("the queue could not merge #{number}: {e}"));
        }
    }

    /// The merge queue removes PR `number` (its checks failed on the queue's commit).
    pub fn queue_removes(&self, number: u64, reason: &str) {
        let at = self.clock.now();
        self.with(|s| {
            let state = crate::ports::QueueState::Removed {
                reason: reason.to_owned(),
                at,
                by: "github-merge-queue[bot]".into(),
            };
            if let Some(e) = s.queue.get_mut(&number) {
                e.1 = state;
            }
        });
    }

    /// `user` reviews PR `number` (`APPROVED`, `CHANGES_REQUESTED`, …) at `commit_id`.
    pub fn review(&self, number: u64, user: &str, state: &str, commit_id: &str) {
        self.with(|s| {
            s.reviews.entry(number).or_default().push(Review {
                user: user.to_owned(),
                state: state.to_owned(),
                commit_id: commit_id.to_owned(),
            });
        });
    }

    pub fn set_policy(&self, name: &str, body: &str) {
        self.with(|s| {
            s.docs.retain(|d| d.name != name);
            s.docs.push(PolicyDocument {
                name: name.to_owned(),
                version: 1,
                body: body.to_owned(),
            });
        });
    }

    /// Push `tag` with a clean, complete scan; returns its digest.
    pub fn push(&self, tag: &str, seed: char) -> Digest {
        let digest = Digest::parse(&format!("sha256:{}", seed.to_string().repeat(64))).unwrap();
        let record = ImageRecord {
            digest: digest.clone(),
            tags: vec![crate::domain::image::Tag::parse(tag).unwrap()],
            pushed_at: self.clock.now(),
            kind: crate::domain::index::ImageKind::Image,
        };
        let clean = ScanReport {
            status: ScanStatus::Complete,
            counts: BTreeMap::new(),
            findings: Vec::new(),
            not_counted: Vec::new(),
        };
        self.with(|s| {
            s.images.push(record);
            s.scans.insert(digest.clone(), clean);
        });
        digest
    }

    /// cosign signs `digest` with `signature` (its base64) over `payload`: the signature
    /// manifest `sha256-<hex>.sig` gains a layer, and so a new digest, as cosign appends.
    /// Returns the signature manifest's digest.
    pub fn sign(&self, digest: &Digest, payload: Vec<u8>, signature: String) -> Digest {
        self.sign_stored(
            digest,
            crate::ports::StoredSignature {
                payload,
                signature,
                certificate: None,
                chain: None,
                bundle: None,
            },
        )
    }

    /// [`World::sign`] with a signature as cosign stores it (a keyless one, say).
    pub fn sign_stored(&self, digest: &Digest, stored: crate::ports::StoredSignature) -> Digest {
        let tag = crate::domain::signature::signature_tag(digest);
        let tag = crate::domain::image::Tag::parse(&tag).unwrap();
        self.with(|s| {
            let old = s.images.iter().position(|i| i.tags.contains(&tag));
            let mut layers = old
                .map(|i| s.images.remove(i).digest)
                .and_then(|d| s.signatures.get(&d).cloned())
                .unwrap_or_default();
            layers.push(stored);
            let n = s.signatures.len() + 1;
            let manifest = Digest::parse(&format!("sha256:{:064x}", 0x5160_0000 + n)).unwrap();
            s.signatures.insert(manifest.clone(), layers);
            s.images.push(ImageRecord {
                digest: manifest.clone(),
                tags: vec![tag],
                pushed_at: self.clock.now(),
                kind: crate::domain::index::ImageKind::Image,
            });
            manifest
        })
    }

    /// The policy's key `source` holds `pem`.
    pub fn public_key(&self, source: crate::domain::signature::KeySource, pem: &str) {
        self.with(|s| s.public_keys.insert(source, pem.to_owned()));
    }

    /// The image `digest` is scanned again and now reports `report` (a finding disclosed
    /// since it was pushed).
    pub fn rescanned(&self, digest: &Digest, report: ScanReport) {
        self.with(|s| s.scans.insert(digest.clone(), report));
    }

    /// The image `digest` loses its scan, as in a repository without scan on push.
    pub fn unscanned(&self, digest: &Digest) {
        self.with(|s| s.scans.remove(digest));
    }

    /// The repository's tags become `MUTABLE` (or any other ECR word).
    pub fn tag_mutability(&self, word: &str) {
        self.with(|s| s.mutability = Some(word.to_owned()));
    }

    /// The registry loses `digest` (a lifecycle rule expired it): it can no longer be pulled.
    pub fn expire(&self, digest: &Digest) {
        self.with(|s| {
            s.images.retain(|i| &i.digest != digest);
            s.gone.insert(digest.clone())
        });
    }

    /// Push `tag` as an image index (as Buildx does) of one image per platform, each with
    /// its own scan report; the index itself has no scan, as in ECR. Returns its digest.
    pub fn push_index(&self, tag: &str, seed: char, platforms: Vec<(&str, ScanReport)>) -> Digest {
        use crate::domain::index::{ImageKind, Platform, PlatformImage};
        let digest = self.push(tag, seed);
        let children: Vec<PlatformImage> = platforms
            .into_iter()
            .enumerate()
            .map(|(i, (p, report))| {
                let child =
                    Digest::parse(&format!("sha256:{}{i:x}", seed.to_string().repeat(63))).unwrap();
                self.with(|s| s.scans.insert(child.clone(), report));
                PlatformImage {
                    platform: Platform::parse(p).unwrap(),
                    digest: child,
                }
            })
            .collect();
        self.with(|s| {
            s.scans.remove(&digest);
            if let Some(r) = s.images.iter_mut().find(|r| r.digest == digest) {
                r.kind = ImageKind::Index;
            }
            s.indexes.insert(digest.clone(), children);
        });
        digest
    }

    /// Argo CD application `app` runs what main's `file` deploys, with `health`.
    pub fn app(&self, app: &str, file: &str, health: Health) {
        self.with(|s| s.apps.insert(app.to_owned(), (file.to_owned(), health)));
    }

    /// Applications running image tag `tag` turn Degraded (after their warm-up).
    pub fn breaks(&self, tag: &str) {
        self.with(|s| s.broken.insert(tag.to_owned()));
    }

    /// Applications are Progressing for `warmup` after main changes their file.
    pub fn warm_up(&self, warmup: Span) {
        self.with(|s| s.warmup = warmup);
    }

    pub fn allow(&self, user: &str, permission: Permission) {
        self.with(|s| s.permissions.insert(user.to_owned(), permission));
    }

    /// `user` (a person, not tugboat) opens a pull request into `base` with `body`, labelled
    /// `labels` by them; `merged` merges it at once (into `base`, main's files unchanged).
    pub fn open_pr_as(
        &self,
        user: &str,
        base: &str,
        body: &str,
        labels: &[&str],
        merged: bool,
    ) -> u64 {
        let now = self.clock.now();
        self.with(|s| {
            let p = Pr {
                number: s.prs.len() as u64 + 1,
                branch: format!("{user}/patch-{}", s.prs.len() + 1),
                title: "A change".into(),
                body: body.into(),
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                open: !merged,
                merged_at: merged.then_some(now),
                merge_sha: merged.then(|| Self::head(s)),
                author: user.into(),
                base: base.into(),
            };
            s.labelled(p.number, user, &BTreeSet::new(), &p.labels, now);
            s.prs.push(p.clone());
            p.number
        })
    }

    /// `user` (a person) opens an issue labelled `labels` by them.
    pub fn open_issue_as(&self, user: &str, title: &str, body: &str, labels: &[&str]) -> u64 {
        let now = self.clock.now();
        self.with(|s| {
            let i = FakeIssue {
                number: FIRST_ISSUE + s.issues.len() as u64,
                title: title.into(),
                body: body.into(),
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                open: true,
                author: user.into(),
            };
            s.labelled(i.number, user, &BTreeSet::new(), &i.labels, now);
            s.issues.push(i.clone());
            i.number
        })
    }

    /// `user` (a person) adds `label` to pull request or issue `number`.
    /// Another replica ends PR `number`'s verification (`tugboat:verifying` becomes
    /// `tugboat:deployed`) just after the next listing of `label` is answered.
    pub fn settle_after_listing(&self, label: &str, number: u64) {
        self.with(|s| s.settled_after_listing = Some((label.to_owned(), number)));
    }

    /// Another replica merges open PR `number` (its `tugboat:verifying` label added first,
    /// as tugboat merges) just after the next listing of `label` is answered.
    pub fn merge_after_listing(&self, label: &str, number: u64) {
        self.with(|s| s.merged_after_listing = Some((label.to_owned(), number)));
    }

    /// Tugboat (another replica) removes `label` from PR `number` just before its label
    /// events are next read: after a listing that showed the label.
    pub fn remove_label_before_events(&self, number: u64, label: &str) {
        self.with(|s| s.removed_before_events = Some((number, label.to_owned())));
    }

    pub fn label_as(&self, number: u64, user: &str, label: &str) {
        let now = self.clock.now();
        self.with(|s| {
            let labels = match s.prs.iter_mut().find(|p| p.number == number) {
                Some(p) => &mut p.labels,
                None => {
                    &mut s
                        .issues
                        .iter_mut()
                        .find(|i| i.number == number)
                        .unwrap()
                        .labels
                }
            };
            let before = labels.clone();
            labels.insert(label.to_owned());
            let after = labels.clone();
            s.labelled(number, user, &before, &after, now);
        });
    }

    /// A person with write access edits the body of pull request `number`.
    pub fn edit_body(&self, number: u64, body: &str) {
        let now = self.clock.now();
        self.with(|s| {
            match s.prs.iter_mut().find(|p| p.number == number) {
                Some(p) => p.body = body.into(),
                None => {
                    let i = s.issues.iter_mut().find(|i| i.number == number);
                    i.expect("a PR or an issue").body = body.into();
                }
            }
            s.updated.insert(number, now);
        });
    }

    /// `user` (a person with write access) opens a pull request from `branch` into main.
    pub fn open_pr_from(&self, user: &str, branch: &str, body: &str) -> u64 {
        let n = self.open_pr_as(user, "main", body, &[], false);
        self.with(|s| s.prs.iter_mut().find(|p| p.number == n).unwrap().branch = branch.into());
        n
    }

    /// A person with write access retargets open pull request `number` to `base`.
    pub fn retarget(&self, number: u64, base: &str) {
        let now = self.clock.now();
        self.with(|s| {
            s.prs.iter_mut().find(|p| p.number == number).unwrap().base = base.into();
            s.updated.insert(number, now);
        });
    }

    /// A person with write access retargets pull request `number` to `base` and merges it
    /// there (main is not changed).
    pub fn merge_elsewhere(&self, number: u64, base: &str) {
        let now = self.clock.now();
        self.with(|s| {
            let p = s.prs.iter_mut().find(|p| p.number == number).unwrap();
            p.base = base.into();
            p.open = false;
            p.merged_at = Some(now);
            p.merge_sha = Some(format!("{:040x}", 0xdead_u64));
            s.updated.insert(number, now);
        });
    }

    /// A person with write access force-pushes to `branch` one commit making `files` on
    /// main's head, dated `dated` (a commit's date is whatever its author writes).
    pub fn push_as(&self, branch: &str, files: &[(&str, &str)], dated: DateTime<Utc>) -> String {
        let now = self.clock.now();
        self.with(|s| {
            s.pushes += 1;
            let head = format!("p{:039x}", s.pushes);
            let b = Branch {
                head: head.clone(),
                committed_at: dated,
                base: s.main.len(),
                files: files
                    .iter()
                    .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
                    .collect(),
                pushed: crate::ports::Pushed {
                    actor: Some("mallory".into()),
                    at: now,
                },
            };
            s.branches.insert(branch.to_owned(), b);
            head
        })
    }

    /// `user` comments on issue or PR `number` now.
    /// Someone with write access edits comment `id` (anyone's) to say `body`.
    pub fn edit_comment(&self, id: u64, body: &str) {
        self.with(|s| {
            let c = s.comments.values_mut().flatten().find(|c| c.id == id);
            let c = c.expect("a comment with that id");
            c.body = body.to_owned();
            c.edited = true;
        });
    }

    pub fn say(&self, number: u64, user: &str, body: &str) {
        let at = self.clock.now();
        self.with(|s| {
            s.next_comment += 1;
            let c = Comment {
                id: s.next_comment,
                user: user.to_owned(),
                body: body.to_owned(),
                created_at: at,
                edited: false,
            };
            s.comments.entry(number).or_default().push(c);
        });
    }

    /// `body` sealed as tugboat seals it (`domain::seal`), with the key tugboat stored (it
    /// must have run a cycle): what another replica of tugboat would have written.
    pub fn seal(&self, body: &str) -> String {
        let text = self.with(|s| {
            s.secrets
                .iter()
                .find(|(name, _)| name.ends_with("/state-key"))
                .map(|(_, text)| text.clone())
                .expect("tugboat has stored its key")
        });
        let keys = crate::domain::seal::Keys::parse(&text).expect("tugboat's key parses");
        keys.seal(crate::domain::seal::unsealed(body))
    }

    /// Put SecureString `name` into SSM (what an operator stores).
    pub fn set_secret(&self, name: &str, text: &str) {
        self.with(|s| s.secrets.insert(name.to_owned(), text.to_owned()));
    }

    pub fn prs(&self) -> Vec<Pr> {
        self.with(|s| s.prs.clone())
    }

    /// The first PR opened from `branch`, open or not.
    pub fn pr_from(&self, branch: &str) -> Option<Pr> {
        self.with(|s| s.prs.iter().find(|p| p.branch == branch).cloned())
    }

    pub fn comments_on(&self, number: u64) -> Vec<String> {
        self.with(|s| {
            s.comments
                .get(&number)
                .map(|c| c.iter().map(|c| c.body.clone()).collect())
                .unwrap_or_default()
        })
    }

    /// Someone commits `text` to `path` on main.
    pub fn commit_to_main(&self, path: &str, text: &str) {
        self.commit_as(path, text, "someone");
    }

    /// `who` commits `text` to `path` on main.
    pub fn commit_as(&self, path: &str, text: &str, who: &str) {
        let now = self.clock.now();
        self.with(|s| {
            let mut files = s.main.last().unwrap().1.clone();
            files.insert(path.to_owned(), text.to_owned());
            s.main.push((now, files));
            s.authors.push(who.to_owned());
        });
    }

    /// [`World::commit_as`] with the commit summary `summary`.
    pub fn commit_saying(&self, path: &str, text: &str, who: &str, summary: &str) {
        self.commit_as(path, text, who);
        self.with(|s| s.summaries.insert(s.main.len() - 1, summary.to_owned()));
    }

    /// A kill and a restart on the same clone: what the process before delivers is its
    /// successor's to take over.
    pub fn restart(&self) {
        self.with(|s| s.generation += 1);
    }

    /// The outbox's parcels: delivery id → the sinks that do not have it yet.
    pub fn outbox(&self) -> BTreeMap<String, Vec<String>> {
        self.with(|s| {
            s.outbox
                .iter()
                .map(|(id, (p, _))| (id.clone(), p.sinks.clone()))
                .collect()
        })
    }

    /// The PR-opening claims on record are another replica's from now on.
    pub fn claims_are_foreign(&self) {
        self.with(|s| s.foreign_claims = true);
    }

    /// The pinned issues.
    pub fn pinned(&self) -> BTreeSet<u64> {
        self.with(|s| s.pinned.clone())
    }

    pub fn issues(&self) -> Vec<FakeIssue> {
        self.with(|s| s.issues.clone())
    }

    /// A file of main now.
    pub fn main_file(&self, path: &str) -> String {
        self.with(|s| s.main.last().unwrap().1[path].clone())
    }

    fn head(s: &State) -> String {
        format!("{:040x}", s.main.len())
    }

    /// Merge PR `number` at `head` onto main (the checks GitHub makes first are the caller's).
    fn merge_now(s: &mut State, number: u64, head: &str, now: DateTime<Utc>) -> PortResult<String> {
        let p = Self::pr_mut(s, number, "merge")?.clone();
        let branch = s.branches.get(&p.branch).cloned();
        let Some(branch) = branch.filter(|b| p.open && b.head == head) else {
            return Err(rejected("merge", "Pull Request is not mergeable"));
        };
        let mut files = s.main.last().unwrap().1.clone();
        files.extend(branch.files);
        s.main.push((now, files));
        s.authors.push("tugboat".to_owned());
        let sha = Self::head(s);
        let p = Self::pr_mut(s, number, "merge")?;
        p.open = false;
        p.merged_at = Some(now);
        p.merge_sha = Some(sha.clone());
        Ok(sha)
    }
}

#[async_trait]
impl Registry for World {
    async fn scan_type(&self) -> PortResult<ScanType> {
        self.call("scan_type")?;
        Ok(ScanType::Basic)
    }

    async fn list_images(&self, _: Option<&str>, _: &str) -> PortResult<Vec<ImageRecord>> {
        self.call("list_images")?;
        Ok(self.with(|s| s.images.clone()))
    }

    async fn scan_report(&self, _: Option<&str>, _: &str, d: &Digest) -> PortResult<ScanReport> {
        self.call("scan_report")?;
        Ok(self.with(|s| {
            s.scans
                .get(d)
                .cloned()
                .unwrap_or_else(ScanReport::not_found)
        }))
    }

    async fn platforms(
        &self,
        _: Option<&str>,
        _: &str,
        d: &Digest,
    ) -> PortResult<Vec<crate::domain::index::PlatformImage>> {
        self.call("platforms")?;
        self.with(|s| s.indexes.get(d).cloned())
            .ok_or_else(|| PortError::new("fake", "platforms", ErrorKind::Rejected, "not an index"))
    }

    async fn tag_mutability(&self, _: Option<&str>, _: &str) -> PortResult<String> {
        self.call("tag_mutability")?;
        Ok(self.with(|s| s.mutability.clone().unwrap_or_else(|| "IMMUTABLE".into())))
    }

    async fn pullable(
        &self,
        _: Option<&str>,
        _: &str,
        d: &Digest,
    ) -> PortResult<crate::ports::Pullable> {
        self.call("pullable")?;
        let (listed, gone) =
            self.with(|s| (s.images.iter().any(|i| &i.digest == d), s.gone.contains(d)));
        Ok(if listed && !gone {
            crate::ports::Pullable::Yes
        } else {
            crate::ports::Pullable::Gone
        })
    }

    async fn start_scan(&self, _: Option<&str>, _: &str, _: &Digest) -> PortResult<ScanStart> {
        self.call("start_scan")?;
        Ok(ScanStart::Started)
    }
}

#[async_trait]
impl crate::ports::Signatures for World {
    async fn cosign_signatures(
        &self,
        _: Option<&str>,
        _: &str,
        manifest: &Digest,
    ) -> PortResult<Vec<crate::ports::StoredSignature>> {
        self.call("cosign_signatures")?;
        self.with(|s| s.signatures.get(manifest).cloned())
            .ok_or_else(|| {
                PortError::new(
                    "fake",
                    "cosign_signatures",
                    ErrorKind::NotFound,
                    manifest.to_string(),
                )
            })
    }
}

#[async_trait]
impl crate::ports::PublicKeys for World {
    async fn public_key(&self, source: &crate::domain::signature::KeySource) -> PortResult<String> {
        self.call("public_key")?;
        self.with(|s| s.public_keys.get(source).cloned())
            .ok_or_else(|| {
                PortError::new(
                    "fake",
                    "public_key",
                    ErrorKind::NotFound,
                    source.to_string(),
                )
            })
    }
}

#[async_trait]
impl ParameterStore for World {
    async fn documents(&self, _: &str) -> PortResult<Vec<PolicyDocument>> {
        self.call("documents")?;
        Ok(self.with(|s| s.docs.clone()))
    }

    async fn secret(&self, name: &str) -> PortResult<Secret> {
        self.call("secret")?;
        self.with(|s| s.secrets.get(name).cloned())
            .map(Secret::new)
            .ok_or_else(|| PortError::new("fake", "secret", ErrorKind::NotFound, name))
    }

    async fn create_secret(&self, name: &str, value: &Secret) -> PortResult<bool> {
        self.call("create_secret")?;
        Ok(self.with(|s| match s.secrets.entry(name.to_owned()) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(value.expose().to_owned());
                true
            }
        }))
    }
}

#[async_trait]
impl GitOpsRepo for World {
    async fn sync(&self) -> PortResult<String> {
        self.call("sync")?;
        Ok(self.with(|s| Self::head(s)))
    }

    async fn read(&self, path: &str) -> PortResult<Option<String>> {
        self.call("read")?;
        Ok(self.with(|s| s.main.last().unwrap().1.get(path).cloned()))
    }

    async fn read_at(&self, commit: &str, path: &str) -> PortResult<Option<String>> {
        self.call("read_at")?;
        // Main's commit `n` (its count of commits, in hex) is `main[n - 1]`.
        let n = usize::from_str_radix(commit, 16)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| rejected("read_at", "no such commit"))?;
        Ok(self.with(|s| s.main.get(n - 1).and_then(|(_, f)| f.get(path).cloned())))
    }

    async fn read_before(&self, commit: &str, path: &str) -> PortResult<Option<String>> {
        self.call("read_before")?;
        // Main's commit `n` (its count of commits, in hex) has commit `n - 1` as its parent.
        let n = usize::from_str_radix(commit, 16)
            .ok()
            .filter(|n| *n >= 2)
            .ok_or_else(|| rejected("read_before", "no such commit, or it has no parent"))?;
        Ok(self.with(|s| s.main.get(n - 2).and_then(|(_, f)| f.get(path).cloned())))
    }

    async fn propose(
        &self,
        branch: &str,
        files: Vec<(String, String)>,
        _message: &str,
        keep: Base,
    ) -> PortResult<Proposal> {
        self.call("propose")?;
        let now = self.clock.now();
        Ok(self.with(|s| {
            let base = s.main.len();
            let now_main = &s.main[base - 1].1;
            if let Some(b) = s.branches.get(branch) {
                // The same change, on a base whose copies of its files main has not changed.
                let then = &s.main[b.base - 1].1;
                let untouched = match keep {
                    Base::Untouched => files.iter().all(|(p, _)| then.get(p) == now_main.get(p)),
                    Base::Current => b.base == base,
                    Base::Fresh => false,
                };
                if b.files == files && untouched {
                    return Proposal {
                        head: b.head.clone(),
                        committed_at: b.committed_at,
                        pushed: false,
                        replaced: None,
                    };
                }
            }
            let replaced = s
                .branches
                .get(branch)
                .map(|b| (b.head.clone(), b.committed_at));
            s.pushes += 1;
            *s.calls.entry("propose_pushed").or_default() += 1;
            let head = format!("b{:039x}", s.pushes);
            let b = Branch {
                head: head.clone(),
                committed_at: now,
                base,
                files,
                pushed: crate::ports::Pushed {
                    actor: Some(ME.to_owned()),
                    at: now,
                },
            };
            s.branches.insert(branch.to_owned(), b);
            Proposal {
                head,
                committed_at: now,
                pushed: true,
                replaced,
            }
        }))
    }

    async fn includes(&self, commit: &str, ancestor: &str) -> PortResult<bool> {
        self.call("includes")?;
        let n = |c: &str| u64::from_str_radix(c, 16).ok();
        Ok(matches!((n(commit), n(ancestor)), (Some(c), Some(a)) if c >= a))
    }

    async fn last_change(&self, paths: &[String]) -> PortResult<Option<CommitInfo>> {
        self.call("last_change")?;
        Ok(self.with(|s| {
            let i = (1..s.main.len()).rev().find(|&i| {
                paths
                    .iter()
                    .any(|p| s.main[i].1.get(p) != s.main[i - 1].1.get(p))
            })?;
            Some(CommitInfo {
                sha: format!("{:040x}", i + 1),
                author: s.authors[i].clone(),
                summary: s
                    .summaries
                    .get(&i)
                    .cloned()
                    .unwrap_or_else(|| format!("commit {}", i + 1)),
                at: s.main[i].0,
            })
        }))
    }
}

#[async_trait]
impl Ledger for World {
    async fn last_run(&self, job: &str) -> PortResult<Option<DateTime<Utc>>> {
        self.call("last_run")?;
        Ok(self.with(|s| s.ledger.get(job).copied()))
    }

    async fn claim_change(
        &self,
        key: &str,
        what: &str,
        ttl: std::time::Duration,
    ) -> PortResult<bool> {
        self.call("claim_change")?;
        let now = self.clock.now();
        let ttl = Span::from_std(ttl).unwrap();
        Ok(self.with(|s| match s.claims.get(key) {
            // One engine per fake world: a claim of its own counts as free.
            Some((w, at)) if w == what && now - *at < ttl && s.foreign_claims => false,
            _ => {
                s.claims.insert(key.to_owned(), (what.to_owned(), now));
                true
            }
        }))
    }

    async fn announce(&self, changes: &[crate::ports::Announcement]) -> PortResult<Vec<bool>> {
        self.call("announce")?;
        Ok(self.with(|s| {
            changes
                .iter()
                .map(|a| {
                    let known = s.announced.get(&a.key) == Some(&a.change);
                    s.announced.insert(a.key.clone(), a.change.clone());
                    if let Some(p) = a.parcel.as_ref().filter(|p| !known && !p.sinks.is_empty()) {
                        s.outbox.insert(p.id.clone(), (p.clone(), s.generation));
                    }
                    !known
                })
                .collect()
        }))
    }

    /// One process per fake world at a time: what an earlier generation delivers is taken
    /// over at once, and there is no other replica.
    async fn undelivered(&self, _: std::time::Duration) -> PortResult<Vec<crate::ports::Parcel>> {
        self.call("undelivered")?;
        Ok(self.with(|s| {
            let now = s.generation;
            s.outbox
                .values_mut()
                .filter(|(_, by)| *by < now)
                .map(|(p, by)| {
                    *by = now;
                    p.clone()
                })
                .collect()
        }))
    }

    async fn delivered(&self, done: &[(String, String)]) -> PortResult<()> {
        self.call("delivered")?;
        self.with(|s| {
            for (id, sink) in done {
                if let Some((p, _)) = s.outbox.get_mut(id) {
                    p.sinks.retain(|x| x != sink);
                    if p.sinks.is_empty() {
                        s.outbox.remove(id);
                    }
                }
            }
        });
        Ok(())
    }

    async fn claim(&self, job: &str, slot: DateTime<Utc>) -> PortResult<bool> {
        self.call("claim")?;
        Ok(self.with(|s| match s.ledger.get(job) {
            Some(t) if *t >= slot => false,
            _ => {
                s.ledger.insert(job.to_owned(), slot);
                true
            }
        }))
    }
}

fn pull_request(p: &Pr, heads: &HashMap<String, Branch>) -> PullRequest {
    PullRequest {
        number: p.number,
        url: format!("https://github.test/pull/{}", p.number),
        head_sha: heads
            .get(&p.branch)
            .map(|b| b.head.clone())
            .unwrap_or_default(),
        branch: p.branch.clone(),
        author: p.author.clone(),
        title: p.title.clone(),
        body: p.body.clone(),
        merged: p.merged_at.is_some(),
        merge_sha: p.merge_sha.clone(),
        labels: p.labels.iter().cloned().collect(),
        base: p.base.clone(),
        mergeable: Some(p.open),
    }
}

fn rejected(op: &'static str, why: &str) -> PortError {
    PortError::new("fake", op, ErrorKind::Rejected, why)
}

impl World {
    fn pr_mut<'a>(s: &'a mut State, number: u64, op: &'static str) -> PortResult<&'a mut Pr> {
        s.prs
            .iter_mut()
            .find(|p| p.number == number)
            .ok_or_else(|| PortError::new("fake", op, ErrorKind::NotFound, "no such PR"))
    }
}

#[async_trait]
impl PullRequests for World {
    async fn find_open_pr(&self, branch: &str) -> PortResult<Option<PullRequest>> {
        self.call("find_open_pr")?;
        Ok(self.with(|s| {
            s.prs
                .iter()
                .find(|p| p.open && p.branch == branch)
                .map(|p| pull_request(p, &s.branches))
        }))
    }

    async fn pull(&self, number: u64) -> PortResult<PullRequest> {
        self.call("pull")?;
        self.with(|s| {
            let p = Self::pr_mut(s, number, "pull")?.clone();
            Ok(pull_request(&p, &s.branches))
        })
    }

    async fn labelled_prs(
        &self,
        labels: &[String],
        open_only: bool,
    ) -> PortResult<Vec<LabelledPr>> {
        self.call("labelled_prs")?;
        let now = self.clock.now();
        Ok(self.with(|s| {
            let listed = s
                .prs
                .iter()
                .filter(|p| labels.iter().all(|l| p.labels.contains(l)) && (p.open || !open_only))
                .map(|p| LabelledPr {
                    number: p.number,
                    url: format!("https://github.test/pull/{}", p.number),
                    title: p.title.clone(),
                    body: p.body.clone(),
                    labels: p.labels.iter().cloned().collect(),
                    open: p.open,
                    merged_at: p.merged_at,
                    author: p.author.clone(),
                    updated_at: s.updated.get(&p.number).copied(),
                })
                .collect();
            if let Some((_, n)) = s
                .settled_after_listing
                .take_if(|(label, _)| labels.contains(label))
            {
                s.relabel_pr(n, &["tugboat:deployed"], &["tugboat:verifying"], now);
            }
            if let Some((_, n)) = s
                .merged_after_listing
                .take_if(|(label, _)| labels.contains(label))
            {
                s.relabel_pr(n, &["tugboat:verifying"], &[], now);
                let head = s
                    .prs
                    .iter()
                    .find(|p| p.number == n)
                    .and_then(|p| s.branches.get(&p.branch).map(|b| b.head.clone()));
                if let Some(head) = head {
                    let _ = Self::merge_now(s, n, &head, now);
                }
            }
            listed
        }))
    }

    async fn open_pr(&self, pr: NewPullRequest) -> PortResult<PullRequest> {
        self.call("open_pr")?;
        let now = self.clock.now();
        self.with(|s| {
            // GitHub's words (REST "Create a pull request": 422 Validation Failed).
            if !s.branches.contains_key(&pr.branch) {
                return Err(rejected(
                    "open_pr",
                    "Validation Failed: head does not exist",
                ));
            }
            if s.prs.iter().any(|p| p.open && p.branch == pr.branch) {
                let why = format!(
                    "Validation Failed: A pull request already exists for salon:{}.",
                    pr.branch
                );
                return Err(rejected("open_pr", &why));
            }
            let p = Pr {
                number: s.prs.len() as u64 + 1,
                branch: pr.branch,
                title: pr.title,
                body: pr.body,
                labels: pr.labels.into_iter().collect(),
                open: true,
                merged_at: None,
                merge_sha: None,
                author: ME.to_owned(),
                base: "main".to_owned(),
            };
            s.labelled(p.number, ME, &BTreeSet::new(), &p.labels, now);
            s.prs.push(p.clone());
            Ok(pull_request(&p, &s.branches))
        })
    }

    async fn update_pr(&self, number: u64, title: &str, body: &str) -> PortResult<()> {
        self.call("update_pr")?;
        self.with(|s| {
            let p = Self::pr_mut(s, number, "update_pr")?;
            title.clone_into(&mut p.title);
            body.clone_into(&mut p.body);
            Ok(())
        })
    }

    async fn close_pr(&self, number: u64, why: &str) -> PortResult<()> {
        self.call("close_pr")?;
        self.with(|s| {
            let p = Self::pr_mut(s, number, "close_pr")?;
            if !p.open {
                return Err(rejected("close_pr", "not open"));
            }
            p.open = false;
            Ok(())
        })?;
        self.say(number, "tugboat[bot]", why);
        Ok(())
    }

    async fn merge(&self, number: u64, expected_head: &str, _title: &str) -> PortResult<String> {
        self.call("merge")?;
        let now = self.clock.now();
        self.with(|s| {
            let p = Self::pr_mut(s, number, "merge")?.clone();
            // GitHub's words (REST "Merge a pull request": 405 when it cannot be merged, 409
            // when the head is not the one given).
            if !p.open {
                return Err(rejected("merge", "Pull Request is not mergeable"));
            }
            if s.branches.get(&p.branch).is_none_or(|b| b.head != expected_head) {
                let why = "Head branch was modified. Review and try the merge again.";
                return Err(rejected("merge", why));
            }
            let approving = s.reviews.get(&number).map_or(0, |r| {
                r.iter().filter(|r| r.state == "APPROVED").count()
            });
            if (approving as u32) < s.rules.required_reviews {
                let why = "Repository rule violations found\n\nAt least 1 approving review is required by reviewers with write access.";
                return Err(rejected("merge", why));
            }
            if s.rules.merge_queue {
                return Err(rejected(
                    "merge",
                    "Changes must be made through the merge queue",
                ));
            }
            Self::merge_now(s, number, expected_head, now)
        })
    }

    async fn add_labels(&self, number: u64, labels: &[String]) -> PortResult<()> {
        self.call("add_labels")?;
        let now = self.clock.now();
        self.with(|s| {
            Self::pr_mut(s, number, "add_labels")?;
            let add: Vec<&str> = labels.iter().map(String::as_str).collect();
            s.relabel_pr(number, &add, &[], now);
            Ok(())
        })
    }

    async fn remove_label(&self, number: u64, label: &str) -> PortResult<()> {
        self.call("remove_label")?;
        let now = self.clock.now();
        self.with(|s| {
            Self::pr_mut(s, number, "remove_label")?;
            s.relabel_pr(number, &[], &[label], now);
            Ok(())
        })
    }

    async fn relabel(
        &self,
        number: u64,
        add: &[&str],
        remove: &[&str],
        body: Option<&str>,
    ) -> PortResult<()> {
        self.call("relabel")?;
        let now = self.clock.now();
        self.with(|s| {
            let p = Self::pr_mut(s, number, "relabel")?;
            let before = p.labels.clone();
            for l in remove {
                p.labels.remove(*l);
            }
            p.labels.extend(add.iter().map(|l| (*l).to_owned()));
            if let Some(b) = body {
                b.clone_into(&mut p.body);
            }
            let after = p.labels.clone();
            s.labelled(number, ME, &before, &after, now);
            Ok(())
        })
    }
}

#[async_trait]
impl Conversation for World {
    async fn comment(&self, number: u64, body: &str) -> PortResult<()> {
        self.call("comment")?;
        self.say(number, ME, body);
        Ok(())
    }

    async fn comments(&self, number: u64) -> PortResult<Vec<Comment>> {
        self.call("comments")?;
        Ok(self.with(|s| s.comments.get(&number).cloned().unwrap_or_default()))
    }

    async fn reviews(&self, number: u64) -> PortResult<Vec<Review>> {
        self.call("reviews")?;
        Ok(self.with(|s| s.reviews.get(&number).cloned().unwrap_or_default()))
    }

    async fn react(&self, _comment_id: u64, _reaction: Reaction) -> PortResult<()> {
        self.call("react")
    }

    async fn me(&self) -> PortResult<String> {
        self.call("me")?;
        Ok(ME.to_owned())
    }
}

#[async_trait]
impl Access for World {
    async fn permission(&self, user: &str) -> PortResult<Permission> {
        self.call("permission")?;
        Ok(self.with(|s| s.permissions.get(user).copied().unwrap_or(Permission::None)))
    }

    async fn team_member(&self, _org: &str, _team: &str, _user: &str) -> PortResult<bool> {
        self.call("team_member")?;
        Ok(false)
    }
}

#[async_trait]
impl Checks for World {
    async fn checks(&self, _sha: &str) -> PortResult<Vec<Check>> {
        self.call("checks")?;
        Ok(self.with(|s| {
            s.ci.clone().unwrap_or_else(|| {
                vec![Check {
                    name: "ci".into(),
                    state: CheckState::Success,
                }]
            })
        }))
    }

    async fn report(&self, report: &CheckReport) -> PortResult<()> {
        self.call("report")?;
        let now = self.clock.now();
        self.with(|s| {
            s.statuses.push((
                report.sha.clone(),
                report.state,
                report.kind.name().to_owned(),
            ));
            s.reported
                .entry((report.sha.clone(), report.kind.name()))
                .or_insert(now);
        });
        Ok(())
    }

    async fn first_report(
        &self,
        sha: &str,
        kind: crate::ports::CheckKind,
    ) -> PortResult<Option<DateTime<Utc>>> {
        self.call("first_report")?;
        Ok(self.with(|s| s.reported.get(&(sha.to_owned(), kind.name())).copied()))
    }

    async fn pushed_by(&self, branch: &str, sha: &str) -> PortResult<Option<crate::ports::Pushed>> {
        self.call("pushed_by")?;
        Ok(self.with(|s| {
            s.branches
                .get(branch)
                .filter(|b| b.head == sha)
                .map(|b| b.pushed.clone())
        }))
    }

    async fn rules(&self) -> PortResult<crate::ports::BranchRules> {
        self.call("rules")?;
        Ok(self.with(|s| s.rules.clone()))
    }
}

#[async_trait]
impl crate::ports::MergeQueue for World {
    async fn enqueue(&self, number: u64, head: &str) -> PortResult<u32> {
        self.call("enqueue")?;
        self.with(|s| {
            let queued = s
                .queue
                .values()
                .filter(|(_, st)| matches!(st, crate::ports::QueueState::Queued { .. }))
                .count() as u32;
            let position = queued + 1;
            let state = crate::ports::QueueState::Queued { position };
            s.queue.insert(number, (head.to_owned(), state));
            Ok(position)
        })
    }

    async fn queue_state(&self, number: u64) -> PortResult<crate::ports::QueueState> {
        self.call("queue_state")?;
        Ok(self.with(|s| {
            s.queue
                .get(&number)
                .map_or(crate::ports::QueueState::Absent, |(_, st)| st.clone())
        }))
    }

    async fn dequeue(&self, number: u64) -> PortResult<()> {
        self.call("dequeue")?;
        let at = self.clock.now();
        self.with(|s| {
            if let Some(e) = s.queue.get_mut(&number) {
                e.1 = crate::ports::QueueState::Removed {
                    reason: "dequeued".into(),
                    at,
                    by: ME.into(),
                };
            }
        });
        Ok(())
    }
}

#[async_trait]
impl Issues for World {
    async fn open_issues(&self, labels: &[String]) -> PortResult<Vec<Issue>> {
        self.call("open_issues")?;
        Ok(self.with(|s| {
            s.issues
                .iter()
                .filter(|i| i.open && labels.iter().all(|l| i.labels.contains(l)))
                .map(|i| issue(i, &s.updated))
                .collect()
        }))
    }

    async fn open_issue(&self, title: &str, body: &str, labels: &[String]) -> PortResult<Issue> {
        self.call("open_issue")?;
        let now = self.clock.now();
        Ok(self.with(|s| {
            let i = FakeIssue {
                number: FIRST_ISSUE + s.issues.len() as u64,
                title: title.to_owned(),
                body: body.to_owned(),
                labels: labels.iter().cloned().collect(),
                open: true,
                author: ME.to_owned(),
            };
            s.labelled(i.number, ME, &BTreeSet::new(), &i.labels, now);
            s.issues.push(i.clone());
            issue(&i, &s.updated)
        }))
    }

    async fn update_issue(
        &self,
        number: u64,
        title: &str,
        body: &str,
        open: bool,
    ) -> PortResult<()> {
        self.call("update_issue")?;
        self.with(|s| {
            let i = s
                .issues
                .iter_mut()
                .find(|i| i.number == number)
                .ok_or_else(|| rejected("update_issue", "no such issue"))?;
            title.clone_into(&mut i.title);
            body.clone_into(&mut i.body);
            i.open = open;
            Ok(())
        })
    }

    async fn pin_issue(&self, number: u64) -> PortResult<()> {
        self.call("pin_issue")?;
        self.with(|s| s.pinned.insert(number));
        Ok(())
    }

    async fn label_events(&self, number: u64) -> PortResult<Vec<LabelEvent>> {
        self.call("label_events")?;
        let now = self.clock.now();
        Ok(self.with(|s| {
            if let Some((n, label)) = s.removed_before_events.take_if(|(n, _)| *n == number) {
                s.relabel_pr(n, &[], &[&label], now);
            }
            s.label_events.get(&number).cloned().unwrap_or_default()
        }))
    }
}

#[async_trait]
impl Deployer for World {
    async fn app(&self, name: &str, _refresh: bool) -> PortResult<AppStatus> {
        self.call("app")?;
        let now = self.clock.now();
        self.with(|s| {
            let (file, health) = s
                .apps
                .get(name)
                .cloned()
                .ok_or_else(|| PortError::new("fake", "app", ErrorKind::NotFound, name))?;
            let (_, files) = s.main.last().unwrap();
            let text = files.get(&file).cloned().unwrap_or_default();
            let images: Vec<String> = manifest::locate(&text)
                .map(|refs| {
                    refs.iter()
                        .map(|r| {
                            let image = crate::domain::image::ImageRef {
                                repository: r.repository.clone(),
                                tag: r.tag.clone(),
                                digest: r.digest.clone(),
                            };
                            image.to_string()
                        })
                        .collect()
                })
                .unwrap_or_default();
            // When main last changed this file: Argo CD deployed it then.
            let deployed_at = s
                .main
                .windows(2)
                .rfind(|w| w[0].1.get(&file) != w[1].1.get(&file))
                .map(|w| w[1].0)
                .unwrap_or(s.main[0].0);
            let broken = images.iter().any(|i: &String| {
                let named = i.split_once('@').map_or(i.as_str(), |(name, _)| name);
                // `1.1.0` breaks every image with that tag; `b:1.1.0` only repository `b`'s.
                s.broken.iter().any(|tag| {
                    named.ends_with(&format!(":{tag}")) || named.ends_with(&format!("/{tag}"))
                })
            });
            let health = match health {
                Health::Healthy if now < deployed_at + s.warmup => Health::Progressing,
                Health::Healthy if broken => Health::Degraded,
                h => h,
            };
            // A Rollout paused at a step: Argo CD keeps the sync of the head `Running`,
            // waiting for its health (argo-cd#25054).
            let operation = (health == Health::Suspended).then(|| Operation {
                phase: OperationPhase::Running,
                message: Some(format!(
                    "waiting for healthy state of argoproj.io/Rollout/{name}"
                )),
                revisions: vec![Self::head(s)],
                initiated_by: None,
                started_at: Some(deployed_at),
                retry_count: 0,
                hook: None,
            });
            Ok(AppStatus {
                sync_status: SyncStatus::Synced,
                revision: Some(Self::head(s)),
                revisions: vec![],
                health,
                health_message: None,
                reconciled_at: Some(now),
                deployed_at: Some(deployed_at),
                images,
                operation,
                automated: true,
                conditions: vec![],
            })
        })
    }

    async fn sync(&self, _name: &str, _revision: &str) -> PortResult<SyncStart> {
        self.call("sync_app")?;
        Ok(SyncStart::Started)
    }

    async fn workload_images(&self, name: &str) -> PortResult<Vec<String>> {
        self.call("workload_images")?;
        // The fake's pods run what its summary lists.
        let mut app = Deployer::app(self, name, false).await?;
        Ok(std::mem::take(&mut app.images))
    }

    async fn watch(&self, _name: &str, _lasting: std::time::Duration) -> PortResult<AppEvents> {
        self.call("watch")?;
        // As an Argo CD behind a proxy that does not stream: the verification polls.
        Err(rejected("watch", "the fake streams no events"))
    }

    async fn sync_windows(&self, _name: &str) -> PortResult<SyncWindows> {
        self.call("sync_windows")?;
        Ok(SyncWindows {
            can_sync: true,
            active: vec![],
        })
    }
}

fn issue(i: &FakeIssue, updated: &HashMap<u64, DateTime<Utc>>) -> Issue {
    Issue {
        number: i.number,
        url: format!("https://github.test/issues/{}", i.number),
        title: i.title.clone(),
        body: i.body.clone(),
        open: i.open,
        author: i.author.clone(),
        updated_at: updated.get(&i.number).copied(),
    }
}

pub const DEV: &str = "apps/user_service/dev/values.yaml";
pub const PROD: &str = "apps/user_service/prod/values.yaml";
pub const IMAGE: &str = "123456789012.dkr.ecr.eu-north-1.amazonaws.com/user_service";

/// The fake's configuration: one service, `user_service`, in dev and prod; `engine` adds keys
/// to `[engine]` (say, `interval = "10s"`) and `extra` TOML (say, `[schedules.rescan]`) is
/// appended.
pub fn config(engine: &str, extra: &str) -> Arc<Config> {
    let toml = format!(
        r#"{}
[[services]]
name = "user_service"
repository = "user_service"
[[services.environments]]
name = "dev"
files = ["{DEV}"]
argocd_application = "user-service-dev"
[[services.environments]]
name = "prod"
files = ["{PROD}"]
argocd_application = "user-service-prod"
{extra}"#,
        header(engine)
    );
    Arc::new(Config::parse(&toml, "fake.toml", std::iter::empty()).unwrap())
}

/// Every fake configuration's sections before its services; `engine` adds keys to
/// `[engine]`.
fn header(engine: &str) -> String {
    format!(
        r#"
[aws]
region = "eu-north-1"
registry_id = "123456789012"
[policy]
ssm_path = "/salon/promotion/"
[github]
repository = "salon/salon-gitops"
token = {{ env = "TUGBOAT_FAKE_TOKEN" }}
[argocd]
url = "https://argocd.test"
token = {{ env = "TUGBOAT_FAKE_TOKEN" }}
poll_interval = "1s"
[engine]
workdir = "/nonexistent/tugboat-fake"
scan_wait = "0s"
{engine}
"#
    )
}

pub const POLICY: &str = r#"
version: 1
environments:
  dev:
    tag: {pattern: '^(?P<version>\d+\.\d+\.\d+)$', ordering: semver}
    scan: {thresholds: {CRITICAL: 0}}
    auto_merge: true
    health_timeout: 2m
    rollback: auto
  prod:
    scan: {thresholds: {CRITICAL: 0}}
    auto_merge: false
    approvals: 1
    soak: 1h
    health_timeout: 2m
    rollback: manual
"#;

/// The fake's configuration for a fleet: each of `services` in dev and prod, its files
/// `apps/<service>/<env>/values.yaml` and its applications `<service>-<env>`.
pub fn fleet_config(services: &[&str]) -> Arc<Config> {
    let mut extra = String::new();
    for svc in services {
        extra.push_str(&format!(
            "[[services]]\nname = \"{svc}\"\nrepository = \"{svc}\"\n"
        ));
        for env in ["dev", "prod"] {
            extra.push_str(&format!(
                "[[services.environments]]\nname = \"{env}\"\nfiles = [\"{}\"]\nargocd_application = \"{svc}-{env}\"\n",
                fleet_file(svc, env)
            ));
        }
    }
    let toml = format!("{}{extra}", header(""));
    Arc::new(Config::parse(&toml, "fleet.toml", std::iter::empty()).unwrap())
}

/// A fleet service's file in `env`.
pub fn fleet_file(service: &str, env: &str) -> String {
    format!("apps/{service}/{env}/values.yaml")
}

/// A fleet service's values file deploying `tag`.
pub fn fleet_values(service: &str, tag: &str) -> String {
    format!(
        "image:\n  repository: 123456789012.dkr.ecr.eu-north-1.amazonaws.com/{service}\n  tag: \"{tag}\"\n"
    )
}

/// A Helm values file deploying `tag` of the service.
pub fn values(tag: &str) -> String {
    format!("image:\n  repository: {IMAGE}\n  tag: \"{tag}\"\n")
}

impl World {
    /// The salon in small: dev and prod run `user_service` 1.0.0 healthy, with the fake's
    /// policy in place.
    pub fn salon() -> (Arc<Self>, Arc<TestClock>) {
        let clock = TestClock::at(Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap());
        (Self::salon_on(clock.clone()), clock)
    }

    /// [`World::salon`] on another clock.
    pub fn salon_on(clock: Arc<dyn Clock>) -> Arc<Self> {
        let w = Self::new(clock, &[(DEV, &values("1.0.0")), (PROD, &values("1.0.0"))]);
        w.set_policy("/salon/promotion/defaults", POLICY);
        w.push("1.0.0", 'a');
        w.app("user-service-dev", DEV, Health::Healthy);
        w.app("user-service-prod", PROD, Health::Healthy);
        w
    }

    /// A fleet: every one of `services` runs 1.0.0 healthy in dev and prod, under `policy`.
    pub fn fleet(services: &[&str], policy: &str) -> (Arc<Self>, Arc<TestClock>) {
        let clock = TestClock::at(Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap());
        let mut files = Vec::new();
        for svc in services {
            for env in ["dev", "prod"] {
                files.push((fleet_file(svc, env), fleet_values(svc, "1.0.0")));
            }
        }
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let w = Self::new(clock.clone(), &refs);
        w.set_policy("/salon/promotion/defaults", policy);
        w.push("1.0.0", 'a');
        for svc in services {
            for env in ["dev", "prod"] {
                w.app(
                    &format!("{svc}-{env}"),
                    &fleet_file(svc, env),
                    Health::Healthy,
                );
            }
        }
        (w, clock)
    }

    /// Every port, played by this world.
    pub fn ports(self: &Arc<Self>) -> Ports {
        Ports {
            registry: self.clone(),
            params: self.clone(),
            repo: self.clone(),
            forge: self.clone(),
            deployer: self.clone(),
            ledger: self.clone(),
            signatures: self.clone(),
            public_keys: self.clone(),
            keys: Arc::new(crate::trust::KeyRing::new(
                config("", "").github.state_key.clone(),
                self.clone(),
                Arc::clone(&self.clock),
            )),
            forged: Arc::default(),
        }
    }
}

/// An event queue in memory: batches handed out in order, then empty long polls (a paused
/// clock makes them instant); receipts deleted are kept, and receiving can be made to fail.
#[derive(Default)]
pub struct FakeQueue {
    batches: Mutex<std::collections::VecDeque<Vec<crate::ports::QueuedMessage>>>,
    deleted: Mutex<Vec<String>>,
    failing: Mutex<Option<ErrorKind>>,
    receives: std::sync::atomic::AtomicUsize,
    /// Ends a long poll under way when messages arrive, as SQS does.
    arrived: tokio::sync::Notify,
}

impl FakeQueue {
    /// Queue `bodies` as messages, ten to a batch, as SQS hands them out.
    pub fn send(&self, bodies: &[String]) {
        let mut batches = self.batches.lock().unwrap();
        let first =
            batches.iter().map(Vec::len).sum::<usize>() + self.deleted.lock().unwrap().len();
        for (n, chunk) in bodies.chunks(10).enumerate() {
            batches.push_back(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, body)| {
                        let k = first + n * 10 + i;
                        crate::ports::QueuedMessage {
                            id: format!("m{k}"),
                            receipt: format!("r{k}"),
                            body: body.clone(),
                        }
                    })
                    .collect(),
            );
        }
        self.arrived.notify_waiters();
    }

    pub fn fail(&self, kind: Option<ErrorKind>) {
        *self.failing.lock().unwrap() = kind;
    }

    pub fn deleted(&self) -> Vec<String> {
        self.deleted.lock().unwrap().clone()
    }

    pub fn receives(&self) -> usize {
        self.receives.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
impl crate::ports::EventQueue for FakeQueue {
    async fn receive(&self) -> PortResult<Vec<crate::ports::QueuedMessage>> {
        self.receives
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(kind) = *self.failing.lock().unwrap() {
            return Err(PortError::new(
                "sqs",
                "ReceiveMessage",
                kind,
                "the queue refused",
            ));
        }
        let arrived = self.arrived.notified();
        if let Some(b) = self.batches.lock().unwrap().pop_front() {
            return Ok(b);
        }
        tokio::select! {
            () = arrived => {}
            () = tokio::time::sleep(crate::ports::LONG_POLL) => {}
        }
        Ok(self.batches.lock().unwrap().pop_front().unwrap_or_default())
    }

    async fn delete(&self, receipts: &[String]) -> PortResult<()> {
        self.deleted.lock().unwrap().extend_from_slice(receipts);
        Ok(())
    }

    async fn depth(&self) -> PortResult<u64> {
        Ok(self
            .batches
            .lock()
            .unwrap()
            .iter()
            .map(Vec::len)
            .sum::<usize>() as u64)
    }
}

/// An EventBridge "ECR Image Action" push of `repository:tag` in the fake config's account
/// and region, with event id `id`, at `time`.
pub fn push_event(
    id: &str,
    repository: &str,
    tag: &str,
    digest: &Digest,
    time: DateTime<Utc>,
) -> String {
    format!(
        r#"{{"version":"0","id":"{id}","detail-type":"ECR Image Action","source":"aws.ecr","account":"123456789012","time":"{}","region":"eu-north-1","resources":[],"detail":{{"result":"SUCCESS","repository-name":"{repository}","image-digest":"{}","action-type":"PUSH","image-tag":"{tag}"}}}}"#,
        time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        digest.as_str()
    )
}

/// A notification sink in memory: what it was sent (with each delivery's id and time), and
/// failures or a slow answer on demand.
#[derive(Default)]
pub struct FakeSink {
    pub name: String,
    sent: Mutex<Vec<(crate::domain::notify::Notification, String)>>,
    attempts: std::sync::atomic::AtomicUsize,
    /// The next this many attempts fail with this kind.
    failing: Mutex<(usize, Option<ErrorKind>)>,
    /// Each attempt takes this long (paused time).
    delay: Mutex<std::time::Duration>,
}

impl FakeSink {
    pub fn named(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            ..Self::default()
        })
    }

    pub fn fail_next(&self, times: usize, kind: ErrorKind) {
        *self.failing.lock().unwrap() = (times, Some(kind));
    }

    pub fn slow(&self, by: std::time::Duration) {
        *self.delay.lock().unwrap() = by;
    }

    /// What was delivered, oldest first.
    pub fn sent(&self) -> Vec<crate::domain::notify::Notification> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The delivery ids of what was delivered, oldest first.
    pub fn ids(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// The kinds delivered, oldest first, as `kind service/env`.
    pub fn log(&self) -> Vec<String> {
        self.sent()
            .iter()
            .map(|n| {
                let env = n.environment.as_deref().unwrap_or("-");
                let svc = n.service.as_deref().unwrap_or("-");
                format!("{} {svc}/{env}", n.kind)
            })
            .collect()
    }

    /// Attempts, delivered or not.
    pub fn attempts(&self) -> usize {
        self.attempts.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
impl crate::ports::Sink for FakeSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(
        &self,
        n: &crate::domain::notify::Notification,
        id: &str,
        _now: DateTime<Utc>,
    ) -> PortResult<()> {
        self.attempts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        {
            let mut f = self.failing.lock().unwrap();
            if f.0 > 0 {
                f.0 -= 1;
                let kind = f.1.unwrap_or(ErrorKind::Transient);
                return Err(PortError::new(
                    "webhook",
                    "send",
                    kind,
                    format!("sink '{}': failing as asked", self.name),
                ));
            }
        }
        self.sent.lock().unwrap().push((n.clone(), id.to_owned()));
        Ok(())
    }
}

/// A report of `user_service` in `env` (running 1.0.0), for tests of what reads reports.
pub fn report(
    env: &str,
    decision: crate::domain::plan::Decision,
    action: super::Action,
) -> super::EnvReport {
    super::EnvReport {
        service: "user_service".into(),
        environment: env.into(),
        application: format!("user-service-{env}"),
        deployed: Some("1.0.0".into()),
        deployed_digest: None,
        decision,
        action,
        policy: vec![],
        rejected: None,
        approvals: None,
        group: None,
        signature: None,
    }
}
