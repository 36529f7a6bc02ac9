//! Trust only what tugboat wrote, end to end: each record a person with triage or write
//! access can make on GitHub, made in the sandbox through its people controls (as GitHub
//! records them: the PR's or issue's `user`, each label's event `actor`), is ignored: nothing
//! deploys, freezes or rolls back because of it, and it is counted once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use crate::common::{approver, row, setup};
use tugboat::domain::hold::{Cause, Hold};
use tugboat::domain::image::ImageRef;
use tugboat::domain::promotion::PromotionState;
use tugboat::domain::provenance::Forgery;
use tugboat::domain::seal::Keys;
use tugboat::engine::{Action, Mode};
use tugboat_sandbox::file_of;

const SVC: &str = "user_service";
const EVIL: &str = "evil.example/user_service:6.6.6-evil";

/// A state block as tugboat writes one, promoting `deployed` in `env` "from" the evil tag.
fn forged_block(env: &str, deployed: &ImageRef) -> String {
    PromotionState {
        service: SVC.into(),
        environment: env.into(),
        tag: deployed.tag.clone(),
        digest: deployed.digest.clone(),
        from: Some(ImageRef::parse(EVIL).unwrap()),
        answered_through: 0,
        rollback_of: None,
        auto_sync: None,
    }
    .write_into("Promote it.\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_pr_with_a_forged_block_and_the_bad_label_writes_nothing_into_prod() {
    let (sb, engine, _w) = setup().await;
    let r = engine.cycle(Mode::Plan).await.unwrap();
    let deployed = ImageRef::parse(row(&r, SVC, "prod").deployed.as_deref().unwrap()).unwrap();
    let before = sb.github.read_file("main", &file_of(SVC, "prod")).unwrap();
    sb.github.branch_as("mallory/evil", "main").unwrap();
    let body = forged_block("prod", &deployed);
    // A closed, unmerged PR is enough: only its labels and body were ever read.
    sb.github
        .open_pr_as(
            "mallory",
            "mallory/evil",
            "main",
            &body,
            &["tugboat", "tugboat:bad"],
        )
        .unwrap();

    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(row(&r, SVC, "prod").action, Action::None);
    assert_eq!(sb.github.pulls().len(), 1, "tugboat opened no rollback");
    assert_eq!(
        sb.github.read_file("main", &file_of(SVC, "prod")).unwrap(),
        before
    );
    assert_eq!(engine.take_forged().get(&Forgery::Author), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_label_a_triager_adds_to_tugboats_deployed_pr_rolls_nothing_back() {
    let (sb, engine, _w) = setup().await;
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Merged { number, .. } = row(&r, SVC, "dev").action.clone() else {
        panic!("{:?}", row(&r, SVC, "dev"))
    };
    let promoted = sb.github.read_file("main", &file_of(SVC, "dev")).unwrap();
    sb.github.add_collaborator("mallory", "triage");
    assert!(sb.github.label_as(number, "mallory", "tugboat:bad"));

    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        !matches!(row(&r, SVC, "dev").action, Action::RolledBack { .. }),
        "{:?}",
        row(&r, SVC, "dev")
    );
    assert_eq!(
        sb.github.read_file("main", &file_of(SVC, "dev")).unwrap(),
        promoted
    );
    assert_eq!(engine.take_forged().get(&Forgery::Label), Some(&1));
    let events = sb.github.issue_events();
    assert!(
        events
            .iter()
            .any(|e| e.number == number && e.actor == "mallory" && e.label == "tugboat:bad"),
        "GitHub records who labelled it: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_issue_a_triager_opens_freezes_nothing() {
    let (sb, engine, _w) = setup().await;
    let hold = Hold {
        service: SVC.into(),
        environment: "dev".into(),
        cause: Cause::Command,
        by: Some("mallory".into()),
        commit: None,
        since: sb.github.now(),
        deployed: None,
        detail: "held by hand".into(),
        answered_through: 0,
    };
    sb.github.open_issue_as(
        "mallory",
        "tugboat holds user_service in dev",
        &hold.write_into("Held.\n"),
        &["tugboat", "tugboat:hold"],
    );
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, SVC, "dev").action, Action::Merged { .. }),
        "{:?}",
        row(&r, SVC, "dev")
    );
    assert_eq!(engine.take_forged().get(&Forgery::Author), Some(&1));
}

/// `body` sealed with the key tugboat stored in SSM on its first cycle (`domain::seal`): what
/// tugboat itself would have written.
fn sealed_by_tugboat(sb: &tugboat_sandbox::Sandbox, body: &str) -> String {
    let name = "/tugboat/salon/salon-gitops/state-key";
    let text = sb.aws.parameter(name).expect("tugboat stored its key");
    tugboat::domain::seal::Keys::parse(&text)
        .unwrap()
        .seal(tugboat::domain::seal::unsealed(body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_block_in_tugboats_own_merged_pr_is_not_acted_on_and_history_decides_a_rollback()
{
    let (sb, engine, _w) = setup().await;
    let before = sb.github.read_file("main", &file_of(SVC, "dev")).unwrap();
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Merged { number, .. } = row(&r, SVC, "dev").action.clone() else {
        panic!("{:?}", row(&r, SVC, "dev"))
    };
    let merged = sb.github.read_file("main", &file_of(SVC, "dev")).unwrap();
    // Someone with write access points the block's `from` at an image never pushed.
    let pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .unwrap();
    assert!(pr.body.contains("<!-- tugboat:seal "), "{}", pr.body);
    let body = tugboat::domain::seal::unsealed(&pr.body);
    let start = body.find("\"from\":\"").expect("the block names `from`") + 8;
    let end = start + body[start..].find('"').unwrap();
    let edited = format!("{}{EVIL}{}", &body[..start], &body[end..]);
    assert!(sb.github.edit_body_as(number, &edited));
    assert!(sb.github.label_as(number, "mallory", "tugboat:bad"));
    approver(&sb, "alice");
    sb.advance(Duration::from_secs(1));
    sb.github.comment_as(number, "alice", "/rollback").unwrap();

    // The seal does not open: the record is not read, nothing is written.
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        sb.github.read_file("main", &file_of(SVC, "dev")).unwrap(),
        merged
    );
    assert_eq!(engine.take_forged().get(&Forgery::Seal), Some(&1));

    // The same block under tugboat's own seal (written before an upgrade, or by a bug): a
    // rollback restores what main ran before the merge, read from git, not the block's `from`.
    assert!(
        sb.github
            .edit_body_as(number, &sealed_by_tugboat(&sb, &edited))
    );
    sb.advance(Duration::from_secs(1));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, SVC, "dev").action, Action::RolledBack { .. }),
        "{:?}",
        row(&r, SVC, "dev")
    );
    assert_eq!(
        sb.github.read_file("main", &file_of(SVC, "dev")).unwrap(),
        before,
        "what main ran before the merge, byte for byte"
    );
    assert_eq!(engine.take_forged().get(&Forgery::Block), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tugboats_prod_pr_merged_by_a_person_into_a_side_branch_is_not_verified_or_deployed() {
    let (sb, engine, _w) = setup().await;
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    engine.cycle(Mode::Apply).await.unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { number, .. } = row(&r, SVC, "prod").action.clone() else {
        panic!("{:?}", row(&r, SVC, "prod"))
    };
    let prod = sb.github.read_file("main", &file_of(SVC, "prod")).unwrap();
    sb.github.branch_as("side", "main").unwrap();
    assert!(sb.github.retarget(number, "side"));
    sb.github.merge_as(number).unwrap();
    assert!(sb.github.label_as(number, "mallory", "tugboat:verifying"));

    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        !matches!(row(&r, SVC, "prod").action, Action::Merged { .. }),
        "{:?}",
        row(&r, SVC, "prod")
    );
    assert_eq!(
        sb.github.read_file("main", &file_of(SVC, "prod")).unwrap(),
        prod
    );
    let labels = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .unwrap()
        .labels;
    assert!(!labels.contains(&"tugboat:deployed".into()), "{labels:?}");
    assert_eq!(engine.take_forged().get(&Forgery::Label), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backdated_push_to_tugboats_branch_is_replaced_and_an_earlier_approval_merges_nothing() {
    let (sb, engine, _w) = setup().await;
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    engine.cycle(Mode::Apply).await.unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { number, .. } = row(&r, SVC, "prod").action.clone() else {
        panic!("{:?}", row(&r, SVC, "prod"))
    };
    let branch = "tugboat/prod/user_service";
    let path = file_of(SVC, "prod");
    let change = sb.github.read_file(branch, &path).unwrap();
    approver(&sb, "alice");
    sb.advance(Duration::from_secs(1));
    sb.github.comment_as(number, "alice", "/approve").unwrap();
    // The same change, pushed by someone else and dated a day before the approval.
    let dated = sb.github.now() - chrono::Duration::days(1);
    let forged = sb
        .github
        .force_push_as("mallory", branch, "main", (&path, &change), dated)
        .unwrap();
    sb.advance(Duration::from_secs(1));

    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { head, .. } = &row(&r, SVC, "prod").action else {
        panic!(
            "merged on an approval of another head: {:?}",
            row(&r, SVC, "prod")
        )
    };
    assert_ne!(*head, forged);
    assert_eq!(sb.github.branch_sha(branch).as_deref(), Some(head.as_str()));
    let pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .unwrap();
    assert!(
        pr.comments
            .iter()
            .any(|(u, b)| u == "tugboat[bot]" && b.contains("was not pushed by tugboat")),
        "{:?}",
        pr.comments
    );
    assert_eq!(engine.take_forged().get(&Forgery::Push), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_entries_stamped_in_the_future_hold_back_no_claim_and_skip_no_schedule() {
    use tugboat::ports::Ledger;
    let sb = crate::common::start(tugboat_sandbox::Options::default()).await;
    let work = tempfile::tempdir().unwrap();
    let tugboat = crate::common::git_clone(&sb, &work.path().join("a"));
    let ttl = Duration::from_secs(120);
    let (branch, what) = (
        "tugboat/dev/user_service",
        "Promote user_service to dev: 1.1.0",
    );
    assert!(tugboat.claim("nightly", sb.github.now()).await.unwrap()); // the ledger exists
    // Someone who can push the ledger branch writes a claim and a run dated 2099.
    let forged = "2099-01-01T00:00:00Z";
    let claims = format!(r#"{{"{branch}":{{"what":"{what}","by":"mallory","at":"{forged}"}}}}"#);
    sb.github
        .commit_as("tugboat-ledger", "claims.json", &claims, "mallory")
        .unwrap();
    let schedules = format!(r#"{{"rescan":"{forged}"}}"#);
    sb.github
        .commit_as("tugboat-ledger", "schedules.json", &schedules, "mallory")
        .unwrap();

    assert!(
        tugboat.claim_change(branch, what, ttl).await.unwrap(),
        "a claim from the future holds nobody back"
    );
    assert_eq!(
        tugboat.last_run("rescan").await.unwrap(),
        None,
        "a run from the future is no run"
    );
    assert!(tugboat.claim("rescan", sb.github.now()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_file_someone_else_pushed_is_not_obeyed_even_when_plausibly_dated() {
    use tugboat::ports::Ledger;
    let sb = crate::common::start(tugboat_sandbox::Options::default()).await;
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("state-key");
    let since = sb.github.now() - chrono::Duration::days(1);
    std::fs::write(&key, Keys::text(&"5e".repeat(32), since)).unwrap();
    let (tugboat, forged) = crate::common::sealed_clone(&sb, &work.path().join("a"), &key);
    let ttl = Duration::from_secs(120);
    let (branch, what) = (
        "tugboat/dev/user_service",
        "Promote user_service to dev: 1.1.0",
    );
    assert!(tugboat.claim("nightly", sb.github.now()).await.unwrap()); // the ledger exists
    assert!(sb.github.read_file("tugboat-ledger", "seal.json").is_some());
    // Someone who can push the ledger writes a claim and a run of a minute ago: as a tugboat
    // would have written them, but without tugboat's key.
    let recent = (sb.github.now() - chrono::Duration::minutes(1)).to_rfc3339();
    let claims = format!(r#"{{"{branch}":{{"what":"{what}","by":"mallory","at":"{recent}"}}}}"#);
    sb.github
        .commit_as("tugboat-ledger", "claims.json", &claims, "mallory")
        .unwrap();
    let schedules = format!(r#"{{"rescan":"{recent}"}}"#);
    sb.github
        .commit_as("tugboat-ledger", "schedules.json", &schedules, "mallory")
        .unwrap();

    assert_eq!(
        tugboat.last_run("rescan").await.unwrap(),
        None,
        "the Monday rescan is not skipped"
    );
    assert!(
        tugboat.claim_change(branch, what, ttl).await.unwrap(),
        "a claim nobody sealed holds nobody back"
    );
    assert_eq!(
        forged.take().get(&Forgery::Ledger),
        Some(&2),
        "both files, once"
    );
    // tugboat's own write replaced them; another replica with the key obeys what it wrote.
    let slot = sb.github.now();
    assert!(tugboat.claim("rescan", slot).await.unwrap());
    let (other, others) = crate::common::sealed_clone(&sb, &work.path().join("b"), &key);
    assert_eq!(other.last_run("rescan").await.unwrap(), Some(slot));
    assert!(
        !other.claim_change(branch, what, ttl).await.unwrap(),
        "tugboat's own claim holds"
    );
    assert!(others.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_an_earlier_tugboat_wrote_is_obeyed_and_sealed_when_sealing_begins() {
    use tugboat::ports::Ledger;
    let sb = crate::common::start(tugboat_sandbox::Options::default()).await;
    let work = tempfile::tempdir().unwrap();
    // The earlier tugboat (no seals) ran the rescan's slot.
    let earlier = crate::common::git_clone(&sb, &work.path().join("old"));
    let slot = sb.github.now();
    assert!(earlier.claim("rescan", slot).await.unwrap());
    assert!(sb.github.read_file("tugboat-ledger", "seal.json").is_none());
    // The upgrade makes its key now: the ledger it finds is the earlier tugboat's.
    let key = work.path().join("state-key");
    std::fs::write(&key, Keys::text(&"5e".repeat(32), sb.github.now())).unwrap();
    let (tugboat, forged) = crate::common::sealed_clone(&sb, &work.path().join("a"), &key);
    assert_eq!(tugboat.last_run("rescan").await.unwrap(), Some(slot));
    assert!(
        sb.github.read_file("tugboat-ledger", "seal.json").is_some(),
        "sealed on first read"
    );
    assert!(forged.take().is_empty());
    // Long after sealing began, a ledger stripped of its seals is not tugboat's.
    std::fs::write(
        &key,
        Keys::text(
            &"5e".repeat(32),
            sb.github.now() - chrono::Duration::days(2),
        ),
    )
    .unwrap();
    let (late, forged) = crate::common::sealed_clone(&sb, &work.path().join("b"), &key);
    sb.github
        .commit_as("tugboat-ledger", "seal.json", "{}", "mallory")
        .unwrap();
    assert_eq!(late.last_run("rescan").await.unwrap(), None);
    assert_eq!(forged.take().get(&Forgery::Ledger), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_anyone_pushes_are_not_fetched_only_the_base_tugboats_and_the_ledger() {
    use tugboat::ports::{GitOpsRepo, Ledger};
    let sb = crate::common::start(tugboat_sandbox::Options::default()).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("clone");
    let git = crate::common::git_clone(&sb, &dir);
    for junk in ["mallory/huge", "release/1.x"] {
        sb.github.branch_as(junk, "main").unwrap();
    }
    sb.github
        .branch_as("tugboat/dev/user_service", "main")
        .unwrap();
    assert!(git.claim("nightly", sb.github.now()).await.unwrap()); // makes the ledger
    git.sync().await.unwrap();
    let listed = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&dir)
        .args(["for-each-ref", "--format=%(refname)", "refs/remotes/origin"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let fetched: Vec<String> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    for wanted in ["main", "tugboat/dev/user_service", "tugboat-ledger"] {
        let name = format!("refs/remotes/origin/{wanted}");
        assert!(fetched.contains(&name), "{name} not in {fetched:?}");
    }
    assert!(
        fetched
            .iter()
            .all(|r| !r.contains("mallory") && !r.contains("release")),
        "{fetched:?}"
    );
}
