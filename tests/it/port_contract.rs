//! The port contract: the rules of GitHub and git that the engine relies on, checked in the
//! same words against the engine's in-memory world (`tugboat::engine::fake`, built with the
//! `fake` feature) and against the real adapters over the sandbox's stand-ins. The engine's
//! behaviour tests run on the fake in paused time; this keeps the fake honest, so that the
//! two worlds cannot drift apart. Wire concerns (a conditional listing answered 304) are
//! checked on the sandbox alone.
//!
//! The rules, as GitHub's REST reference states them: "Create a pull request" refuses a
//! second open PR for the same head and a head that does not exist (422); "Merge a pull
//! request" refuses a head other than `sha` (409, "Head branch was modified") and a PR that
//! is not open (405). The engine reads the 409's words (`pipeline::refused_as_moved`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::Arc;

use tugboat::config::Config;
use tugboat::domain::notify::{Kind, Notification};
use tugboat::engine::Ports;
use tugboat::engine::fake::World;
use tugboat::ports::{Announcement, Base, ErrorKind, NewPullRequest, Parcel, PortError};
use tugboat::telemetry::ApiMetrics;
use tugboat_sandbox::Options;

/// One world's ports, and its name in a failure.
struct Under<'a> {
    world: &'static str,
    ports: &'a Ports,
}

impl Under<'_> {
    /// Propose `text` as the file `contract/<branch>.yaml` on `branch`, on the base just
    /// fetched (as a cycle does: it syncs, then proposes); its head.
    async fn propose(&self, branch: &str, text: &str) -> String {
        self.ports.repo.sync().await.unwrap();
        let files = vec![(format!("contract/{}.yaml", leaf(branch)), text.to_owned())];
        let proposal = self
            .ports
            .repo
            .propose(branch, files, "contract: probe", Base::Current)
            .await
            .unwrap_or_else(|e| panic!("{}: propose on {branch}: {e}", self.world));
        proposal.head
    }

    async fn open(&self, branch: &str, labels: &[&str]) -> Result<u64, PortError> {
        self.ports
            .forge
            .open_pr(NewPullRequest {
                branch: branch.to_owned(),
                title: format!("contract: {branch}"),
                body: "A probe of the port contract.".to_owned(),
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            })
            .await
            .map(|pr| pr.number)
    }

    /// The refusal `result` must be: `Rejected`, in words that contain `words`.
    fn refused<T: std::fmt::Debug>(&self, what: &str, result: Result<T, PortError>, words: &str) {
        let e = match result {
            Ok(v) => panic!("{}: {what} was accepted ({v:?}), not refused", self.world),
            Err(e) => e,
        };
        assert_eq!(e.kind, ErrorKind::Rejected, "{}: {what}: {e}", self.world);
        assert!(
            e.message
                .to_ascii_lowercase()
                .contains(&words.to_ascii_lowercase()),
            "{}: {what} is refused in GitHub's words ({words:?}), not {:?}",
            self.world,
            e.message
        );
    }
}

fn leaf(branch: &str) -> &str {
    branch.rsplit('/').next().unwrap_or(branch)
}

/// Every rule, in order, on one world.
async fn keeps_the_contract(under: &Under<'_>) {
    a_pull_request_needs_its_branch_and_is_the_only_open_one_for_it(under).await;
    a_merge_names_the_head_it_merges_and_main_then_holds_its_change(under).await;
    a_labelled_listing_sees_every_change_of_labels_and_body(under).await;
    the_same_change_proposed_again_keeps_the_branch_head(under).await;
    a_comment_reads_back_as_written_by_tugboats_login(under).await;
    the_ledger_records_a_slot_and_an_announced_change_once(under).await;
}

async fn a_pull_request_needs_its_branch_and_is_the_only_open_one_for_it(u: &Under<'_>) {
    u.refused(
        "a PR for a branch that does not exist",
        u.open("tugboat/contract/nowhere", &[]).await,
        "head does not exist",
    );
    u.propose("tugboat/contract/one", "one: 1\n").await;
    let first = u.open("tugboat/contract/one", &[]).await.unwrap();
    u.refused(
        "a second open PR for the same branch",
        u.open("tugboat/contract/one", &[]).await,
        "a pull request already exists",
    );
    let open_one = || async {
        let pr = u.ports.forge.find_open_pr("tugboat/contract/one").await;
        pr.unwrap().map(|p| p.number)
    };
    assert_eq!(open_one().await, Some(first), "{}", u.world);
    u.ports
        .forge
        .close_pr(first, "contract: done")
        .await
        .unwrap();
    assert_eq!(
        open_one().await,
        None,
        "{}: a closed PR is not open",
        u.world
    );
    assert!(
        !u.ports.forge.pull(first).await.unwrap().merged,
        "{}",
        u.world
    );
    let again = u.open("tugboat/contract/one", &[]).await;
    assert!(
        again.is_ok(),
        "{}: once the PR is closed, a new one opens for the branch: {again:?}",
        u.world
    );
}

async fn a_merge_names_the_head_it_merges_and_main_then_holds_its_change(u: &Under<'_>) {
    let branch = "tugboat/contract/merge";
    let before = u.ports.repo.sync().await.unwrap();
    let stale = u.propose(branch, "merge: 1\n").await;
    let n = u.open(branch, &[]).await.unwrap();
    let head = u.propose(branch, "merge: 2\n").await;
    assert_ne!(stale, head, "{}: a new change is a new head", u.world);
    u.refused(
        "a merge at a head the branch no longer has",
        u.ports.forge.merge(n, &stale, "contract").await,
        "head branch was modified",
    );
    let sha = u.ports.forge.merge(n, &head, "contract").await.unwrap();
    let pr = u.ports.forge.pull(n).await.unwrap();
    assert!(pr.merged, "{}: merged", u.world);
    assert_eq!(pr.merge_sha.as_deref(), Some(sha.as_str()), "{}", u.world);
    u.refused(
        "a merge of a PR that is not open",
        u.ports.forge.merge(n, &head, "contract").await,
        "not mergeable",
    );
    let main = u.ports.repo.sync().await.unwrap();
    let text = u.ports.repo.read("contract/merge.yaml").await.unwrap();
    assert_eq!(
        text.as_deref(),
        Some("merge: 2\n"),
        "{}: byte for byte",
        u.world
    );
    let repo = &u.ports.repo;
    assert!(repo.includes(&main, &before).await.unwrap(), "{}", u.world);
    assert!(repo.includes(&main, &sha).await.unwrap(), "{}", u.world);
    assert!(!repo.includes(&before, &sha).await.unwrap(), "{}", u.world);
}

async fn a_labelled_listing_sees_every_change_of_labels_and_body(u: &Under<'_>) {
    let (branch, label) = ("tugboat/contract/labels", "contract:probe");
    u.propose(branch, "labels: 1\n").await;
    let forge = &u.ports.forge;
    let listed = || async {
        let prs = forge.labelled_prs(&[label.to_owned()], true).await.unwrap();
        prs.into_iter()
            .map(|p| (p.number, p.body))
            .collect::<Vec<_>>()
    };
    assert!(listed().await.is_empty(), "{}", u.world);
    assert!(listed().await.is_empty(), "{}: unchanged", u.world);
    let n = u.open(branch, &[]).await.unwrap();
    forge.add_labels(n, &[label.to_owned()]).await.unwrap();
    let body = "A probe of the port contract.";
    assert_eq!(listed().await, vec![(n, body.to_owned())], "{}", u.world);
    forge
        .relabel(n, &[], &[label], Some("relabelled"))
        .await
        .unwrap();
    assert!(listed().await.is_empty(), "{}: the label is gone", u.world);
    assert_eq!(
        forge.pull(n).await.unwrap().body,
        "relabelled",
        "{}",
        u.world
    );
    forge.relabel(n, &[label], &[], None).await.unwrap();
    let pr = forge.pull(n).await.unwrap();
    assert!(pr.labels.iter().any(|l| l == label), "{}", u.world);
    assert_eq!(
        listed().await,
        vec![(n, "relabelled".to_owned())],
        "{}",
        u.world
    );
}

async fn the_same_change_proposed_again_keeps_the_branch_head(u: &Under<'_>) {
    let branch = "tugboat/contract/again";
    let files = || vec![("contract/again.yaml".to_owned(), "again: 1\n".to_owned())];
    let repo = &u.ports.repo;
    repo.sync().await.unwrap();
    let first = repo
        .propose(branch, files(), "contract", Base::Current)
        .await
        .unwrap();
    let second = repo
        .propose(branch, files(), "contract", Base::Current)
        .await
        .unwrap();
    assert!(first.pushed && !second.pushed, "{}", u.world);
    assert_eq!(first.head, second.head, "{}: approvals stay", u.world);
    let third = repo
        .propose(branch, files(), "contract", Base::Fresh)
        .await
        .unwrap();
    assert!(third.pushed, "{}: a fresh base is a new commit", u.world);
    assert_eq!(
        third.replaced.map(|(h, _)| h),
        Some(first.head),
        "{}: the push says which head it replaced",
        u.world
    );
}

async fn a_comment_reads_back_as_written_by_tugboats_login(u: &Under<'_>) {
    let branch = "tugboat/contract/comment";
    u.propose(branch, "comment: 1\n").await;
    let n = u.open(branch, &[]).await.unwrap();
    let forge = &u.ports.forge;
    forge.comment(n, "contract: said").await.unwrap();
    let me = forge.me().await.unwrap();
    let comments = forge.comments(n).await.unwrap();
    let said = comments.iter().find(|c| c.body == "contract: said");
    assert_eq!(
        said.map(|c| c.user.as_str()),
        Some(me.as_str()),
        "{}",
        u.world
    );
}

async fn the_ledger_records_a_slot_and_an_announced_change_once(u: &Under<'_>) {
    let ledger = &u.ports.ledger;
    // Slots in the past: the git ledger ignores an entry stamped after its clock's now (no
    // tugboat wrote it).
    let at = |h: u32| chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2020, 1, 6, h, 0, 0);
    let slot = at(9).unwrap();
    assert!(ledger.claim("contract", slot).await.unwrap(), "{}", u.world);
    assert!(
        !ledger.claim("contract", slot).await.unwrap(),
        "{}: once",
        u.world
    );
    let earlier = at(8).unwrap();
    assert!(
        !ledger.claim("contract", earlier).await.unwrap(),
        "{}",
        u.world
    );
    assert_eq!(
        ledger.last_run("contract").await.unwrap(),
        Some(slot),
        "{}",
        u.world
    );
    assert!(
        ledger.claim("contract", at(10).unwrap()).await.unwrap(),
        "{}",
        u.world
    );
    let change = |c: &str, sinks: &[&str]| {
        let n = Notification::new(Kind::Promoted, "contract", None, c.to_owned());
        let parcel = Parcel {
            id: format!("id-{c}"),
            notification: n,
            sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
        };
        vec![Announcement {
            key: "contract/state".to_owned(),
            change: c.to_owned(),
            parcel: Some(parcel),
        }]
    };
    let announced = ledger.announce(&change("a", &[])).await.unwrap();
    assert_eq!(announced, vec![true], "{}", u.world);
    let again = ledger.announce(&change("a", &["slack"])).await.unwrap();
    assert_eq!(again, vec![false], "{}", u.world);
    let b = ledger.announce(&change("b", &["slack", "hook"])).await;
    assert_eq!(b.unwrap(), vec![true], "{}", u.world);
    // The outbox: this process delivers b, so it is not taken over, however old.
    let none = ledger.undelivered(std::time::Duration::ZERO).await.unwrap();
    assert_eq!(none, vec![], "{}: its own parcels", u.world);
    let done = |sink: &str| vec![("id-b".to_owned(), sink.to_owned())];
    ledger.delivered(&done("slack")).await.unwrap();
    ledger.delivered(&done("slack")).await.unwrap();
    ledger
        .delivered(&[("id-none".into(), "slack".into())])
        .await
        .unwrap();
    ledger.delivered(&done("hook")).await.unwrap();
}

#[tokio::test]
async fn the_engines_in_memory_world_keeps_the_port_contract() {
    let (world, _clock) = World::salon();
    let ports = world.ports();
    keeps_the_contract(&Under {
        world: "the fake",
        ports: &ports,
    })
    .await;
}

#[tokio::test]
async fn the_real_adapters_over_the_sandbox_keep_the_port_contract() {
    let sb = crate::common::start(Options::default()).await;
    let work = tempfile::tempdir().unwrap();
    let toml = sb.config_toml(&work.path().join("w"));
    let cfg = Arc::new(Config::parse(&toml, "sandbox.toml", std::iter::empty()).unwrap());
    let ports = tugboat::app::ports_on(&cfg, &ApiMetrics::default(), sb.clock())
        .await
        .unwrap();
    keeps_the_contract(&Under {
        world: "the sandbox",
        ports: &ports,
    })
    .await;
    // A wire concern: the unchanged listing was asked conditionally and answered 304.
    let calls = sb.github.calls();
    assert!(
        calls.get("GET issues 304").copied().unwrap_or(0)
            + calls.get("GET pulls 304").copied().unwrap_or(0)
            > 0,
        "an unchanged listing is answered 304: {calls:?}"
    );
}
