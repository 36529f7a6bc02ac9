//! Records tugboat did not write, on the fake forge: each attack of issue 37 that a person
//! with triage or write access can make, ignored, reported once and counted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration as Span, Utc};

use super::fake::{DEV, IMAGE, PROD, TestClock, World, values};
use super::tests::{row, world};
use super::{Action, Engine, Mode};
use crate::domain::dashboard;
use crate::domain::hold::{Cause, Hold};
use crate::domain::image::{ImageRef, Tag};
use crate::domain::plan::Decision;
use crate::domain::promotion::PromotionState;
use crate::domain::provenance::Forgery;
use crate::domain::seal;
use crate::ports::{ErrorKind, Permission};

/// A state block as tugboat writes it, naming `from` as what prod ran before.
fn forged_block(env: &str, tag: &str, from: &str) -> String {
    PromotionState {
        service: "user_service".into(),
        environment: env.into(),
        tag: Some(Tag::parse(tag).unwrap()),
        digest: None,
        from: Some(ImageRef::parse(from).unwrap()),
        answered_through: 0,
        rollback_of: None,
        auto_sync: None,
    }
    .write_into("Promote it.\n")
}

const EVIL: &str = "evil.example/user_service:6.6.6-evil";

#[tokio::test(start_paused = true)]
async fn a_pr_someone_else_opened_with_a_block_and_the_bad_label_rolls_nothing_back() {
    let (w, _, engine) = world();
    let body = forged_block("prod", "1.0.0", EVIL);
    let n = w.open_pr_as("mallory", "main", &body, &["tugboat", "tugboat:bad"], false);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(row(&r, "prod").action, Action::None, "no rollback");
    assert_eq!(w.prs().len(), 1, "tugboat opened nothing: {:?}", w.prs());
    assert_eq!(w.main_file(PROD), values("1.0.0"), "prod is untouched");
    assert_eq!(engine.take_forged().get(&Forgery::Author), Some(&1));
    engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        engine.take_forged().is_empty(),
        "PR #{n} is reported once, not every cycle"
    );
}

#[tokio::test(start_paused = true)]
async fn a_verifying_label_on_a_persons_merged_pr_starts_no_verification_or_rollback() {
    let (w, _, engine) = world();
    let body = forged_block("dev", "1.0.0", EVIL);
    let n = w.open_pr_as("mallory", "side", &body, &["tugboat:verifying"], true);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(row(&r, "dev").action, Action::None);
    assert_eq!(w.main_file(DEV), values("1.0.0"));
    assert_eq!(w.prs().len(), 1, "tugboat opened nothing");
    let theirs = w.prs().into_iter().find(|p| p.number == n).unwrap();
    assert!(
        theirs.labels.iter().eq(["tugboat:verifying"]),
        "left as it was: {theirs:?}"
    );
    assert_eq!(engine.take_forged().get(&Forgery::Author), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn a_bad_label_a_person_adds_to_tugboats_own_deployed_pr_is_not_a_rollback() {
    let (w, _, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    let pr = w.prs()[0].clone();
    assert!(pr.labels.contains("tugboat:deployed"), "{pr:?}");
    w.label_as(pr.number, "mallory", "tugboat:bad");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        !matches!(row(&r, "dev").action, Action::RolledBack { .. }),
        "{:?}",
        row(&r, "dev").action
    );
    assert_eq!(w.main_file(DEV), values("1.1.0"), "dev still runs 1.1.0");
    assert_eq!(engine.take_forged().get(&Forgery::Label), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn a_record_nobody_touched_costs_no_label_events_call_the_next_cycle() {
    let (w, clock, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::seconds(30));
    engine.cycle(Mode::Apply).await.unwrap();
    let settled = w.calls("label_events");
    clock.advance(Span::seconds(30));
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        w.calls("label_events"),
        settled,
        "an unchanged record is not checked again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollback_restores_what_main_ran_before_the_merge_not_what_the_block_says() {
    let (w, clock, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    let pr = w.prs()[0].clone();
    // A block under tugboat's own seal naming another `from` (an earlier version's record,
    // or a bug): what main ran before the merge still decides.
    let edited = pr.body.replace(&format!("{IMAGE}:1.0.0"), EVIL);
    assert_ne!(edited, pr.body, "the block names what dev ran before");
    w.edit_body(pr.number, &w.seal(&edited));
    w.allow("alice", Permission::Write);
    clock.advance(Span::seconds(5));
    w.say(pr.number, "alice", "/rollback");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::RolledBack { .. }),
        "{:?}",
        row(&r, "dev").action
    );
    assert_eq!(w.main_file(DEV), values("1.0.0"), "what main ran before");
    assert_eq!(engine.take_forged().get(&Forgery::Block), Some(&1));
}

/// dev's promotion PR of a new push, open: it carries `tugboat:verifying` from its opening,
/// and its merge failed this cycle.
async fn open_verifying_pr(w: &World, engine: &Engine) -> crate::engine::fake::Pr {
    w.push("1.1.0", 'b');
    w.fail("merge", crate::ports::ErrorKind::Transient);
    engine.cycle(Mode::Apply).await.unwrap();
    w.heal("merge");
    let pr = w.prs()[0].clone();
    assert!(pr.open && pr.labels.contains("tugboat:verifying"), "{pr:?}");
    pr
}

#[tokio::test(start_paused = true)]
async fn tugboats_pr_merged_into_another_branch_is_neither_verified_nor_recorded() {
    let (w, _, engine) = world();
    let pr = open_verifying_pr(&w, &engine).await;
    // A person with write access retargets it to another branch and merges it there.
    w.merge_elsewhere(pr.number, "side");
    engine.cycle(Mode::Apply).await.unwrap();
    let after = w.prs().into_iter().find(|p| p.number == pr.number).unwrap();
    assert!(
        !after.labels.contains("tugboat:deployed") && !after.labels.contains("tugboat:bad"),
        "not settled as a deployment: {after:?}"
    );
    assert!(
        !after.labels.contains("tugboat:verifying"),
        "nor read again: {after:?}"
    );
    assert_eq!(engine.take_forged().get(&Forgery::Base), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn a_label_tugboat_removed_between_the_listing_and_its_events_is_not_taken_for_a_forgery() {
    let (w, _, engine) = world();
    let pr = open_verifying_pr(&w, &engine).await;
    // The listing of `tugboat:verifying` shows the PR; another replica's step removes the
    // label before this one reads the PR's events (the soak's "label added by someone
    // other than tugboat" on tugboat's own PRs).
    w.remove_label_before_events(pr.number, "tugboat:verifying");
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        engine.take_forged(),
        Default::default(),
        "nothing was forged: the label was tugboat's, and is gone"
    );
    engine.cycle(Mode::Apply).await.unwrap();
    let after = w.prs().into_iter().find(|p| p.number == pr.number).unwrap();
    assert!(
        after.labels.contains("tugboat:deployed"),
        "the promotion went on: {after:?}"
    );
    assert_eq!(w.main_file(DEV), values("1.1.0"));
}

/// dev at 1.1.0 by tugboat's record, and 1.2.0 merged but not verified yet (Argo CD could
/// not be read): its PR, labelled `tugboat:verifying`.
async fn merged_unverified_pr(w: &World, engine: &Engine) -> crate::engine::fake::Pr {
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    w.push("1.2.0", 'c');
    w.fail("app", ErrorKind::Transient);
    engine.cycle(Mode::Apply).await.unwrap();
    w.heal("app");
    let pr = w.prs().into_iter().max_by_key(|p| p.number).unwrap();
    assert!(
        pr.merged_at.is_some() && pr.labels.contains("tugboat:verifying"),
        "{pr:?}"
    );
    assert_eq!(w.main_file(DEV), values("1.2.0"));
    pr
}

#[tokio::test(start_paused = true)]
async fn a_verification_another_replica_ends_between_two_listings_holds_nothing() {
    // The soak's "environment held: main deploys 2.17.0, not 2.16.0 that tugboat promoted",
    // on tugboat's own merge: `deployed` was read before the other replica's settle and
    // `verifying` after it, so the promotion was in neither listing.
    let (w, _, engine) = world();
    let pr = merged_unverified_pr(&w, &engine).await;
    w.settle_after_listing("tugboat:deployed", pr.number);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        !matches!(row(&r, "dev").decision, Decision::Held { .. }),
        "{:?}",
        row(&r, "dev").decision
    );
    assert!(w.issues().is_empty(), "no hold issue: {:?}", w.issues());
    assert_eq!(engine.take_forged(), Default::default());
}

#[tokio::test(start_paused = true)]
async fn a_verification_that_ends_after_its_listing_is_not_verified_again_by_this_replica() {
    // Listed `verifying`, then (the other replica's settle) `deployed`: the later read wins.
    let (w, _, engine) = world();
    let pr = merged_unverified_pr(&w, &engine).await;
    let comments = w.comments_on(pr.number).len();
    w.settle_after_listing("tugboat:verifying", pr.number);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(!matches!(row(&r, "dev").decision, Decision::Held { .. }));
    assert!(w.issues().is_empty(), "{:?}", w.issues());
    assert_eq!(
        w.comments_on(pr.number).len(),
        comments,
        "nothing said again on #{}: {:?}",
        pr.number,
        w.comments_on(pr.number)
    );
}

#[tokio::test(start_paused = true)]
async fn a_hold_issue_a_person_opened_freezes_nothing() {
    let (w, _, engine) = world();
    let hold = Hold {
        service: "user_service".into(),
        environment: "dev".into(),
        cause: Cause::Command,
        by: Some("mallory".into()),
        commit: None,
        since: Utc::now(),
        deployed: None,
        detail: "held".into(),
        answered_through: 0,
    };
    let body = hold.write_into("Held.\n");
    w.open_issue_as(
        "mallory",
        "tugboat holds user_service in dev",
        &body,
        &["tugboat", "tugboat:hold"],
    );
    w.push("1.1.0", 'b');
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::Merged { .. }),
        "{:?}",
        row(&r, "dev").action
    );
    assert_eq!(engine.take_forged().get(&Forgery::Author), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn a_persons_issue_that_looks_like_the_dashboard_is_neither_adopted_nor_closed() {
    let (w, clock, engine) = world();
    let fake = dashboard::render(&[], None, super::scheduler::Clock::now(&*clock));
    let theirs = w.open_issue_as("mallory", dashboard::TITLE, &fake, &dashboard::LABELS);
    let published = engine.publish_dashboard(&[]).await.unwrap();
    assert!(
        matches!(published, super::dashboard::Published::Created(n) if n != theirs),
        "{published:?}"
    );
    let issues = w.issues();
    let kept = issues.iter().find(|i| i.number == theirs).unwrap();
    assert!(kept.open && kept.body == fake, "left as it was: {kept:?}");
}

#[tokio::test(start_paused = true)]
async fn a_commit_summary_with_a_marker_and_a_mention_opens_one_hold_whose_resume_is_read() {
    let (w, clock, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::minutes(5));
    let summary = "revert <!-- tugboat:hold and ping @salon/platform-leads `x";
    w.commit_saying(DEV, &values("1.0.0"), "oncall", summary);
    for _ in 0..3 {
        engine.cycle(Mode::Apply).await.unwrap();
        clock.advance(Span::minutes(1));
    }
    let issues = w.issues();
    assert_eq!(
        issues.len(),
        1,
        "one hold issue, not one a cycle: {issues:?}"
    );
    let body = &issues[0].body;
    assert_eq!(
        body.matches("<!--").count(),
        2,
        "only tugboat's block and its seal: {body}"
    );
    assert!(
        !body.contains("@salon/platform-leads"),
        "nobody is pinged: {body}"
    );
    assert!(
        !body.contains("by @oncall"),
        "a git author is no GitHub login: {body}"
    );
    w.allow("alice", Permission::Write);
    w.say(issues[0].number, "alice", "/resume");
    engine.cycle(Mode::Apply).await.unwrap();
    assert!(!w.issues()[0].open, "the /resume was read");
}

/// dev promoted 1.1.0 and its soak is over: prod's PR awaits approval. Its number.
async fn prod_awaiting(w: &World, clock: &TestClock, engine: &Engine) -> u64 {
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::hours(2));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { number, .. } = row(&r, "prod").action else {
        panic!("{:?}", row(&r, "prod"))
    };
    number
}

#[tokio::test(start_paused = true)]
async fn a_backdated_head_someone_else_pushed_is_replaced_and_earlier_approvals_do_not_count() {
    let (w, clock, engine) = world();
    let number = prod_awaiting(&w, &clock, &engine).await;
    w.allow("alice", Permission::Write);
    clock.advance(Span::seconds(5));
    w.say(number, "alice", "/approve");
    // A push of the same change, dated an hour before the approval.
    let forged = w.push_as(
        "tugboat/prod/user_service",
        &[(PROD, &values("1.1.0"))],
        super::scheduler::Clock::now(&*clock) - Span::hours(1),
    );
    clock.advance(Span::seconds(5));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { head, .. } = &row(&r, "prod").action else {
        panic!(
            "not merged on an approval of another head: {:?}",
            row(&r, "prod")
        )
    };
    assert_ne!(*head, forged, "replaced by tugboat's own commit");
    assert_eq!(w.main_file(PROD), values("1.0.0"));
    assert!(
        w.comments_on(number)
            .iter()
            .any(|c| c.contains("was not pushed by tugboat")),
        "{:?}",
        w.comments_on(number)
    );
    assert_eq!(engine.take_forged().get(&Forgery::Push), Some(&1));
    // Approved again, on tugboat's head, it merges.
    clock.advance(Span::seconds(5));
    w.say(number, "alice", "/approve");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "prod").action, Action::Merged { .. }),
        "{:?}",
        row(&r, "prod")
    );
}

/// Found by the soak: a replica killed (or losing its lease) after its push and before its
/// gate report left a head no other process knew as tugboat's, and the next one replaced it,
/// voiding its approvals. GitHub's record of the push says who made it.
#[tokio::test(start_paused = true)]
async fn a_head_pushed_by_a_tugboat_that_stopped_before_reporting_it_is_known_by_githubs_record_of_the_push()
 {
    let (w, clock, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::hours(2));
    // The prod proposal is pushed; its gate report never reaches GitHub.
    w.fail("report", ErrorKind::Transient);
    engine.cycle(Mode::Apply).await.unwrap();
    w.heal("report");
    let pushed = w.calls("propose_pushed");
    let restarted = Engine::new(super::fake::config("", ""), w.ports()).with_clock(clock.clone());
    clock.advance(Span::minutes(1));
    let r = restarted.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "prod").action, Action::AwaitingApproval { .. }),
        "{:?}",
        row(&r, "prod")
    );
    assert_eq!(w.calls("propose_pushed"), pushed, "its head is kept");
    assert!(w.calls("pushed_by") >= 1);
    assert_eq!(restarted.take_forged().get(&Forgery::Push), None);
}

/// The same record names a person's push: that head is replaced, as before.
#[tokio::test(start_paused = true)]
async fn a_head_githubs_record_says_a_person_pushed_is_still_replaced() {
    let (w, clock, engine) = world();
    let number = prod_awaiting(&w, &clock, &engine).await;
    let forged = w.push_as(
        "tugboat/prod/user_service",
        &[(PROD, &values("1.1.0"))],
        super::scheduler::Clock::now(&*clock),
    );
    let restarted = Engine::new(super::fake::config("", ""), w.ports()).with_clock(clock.clone());
    clock.advance(Span::minutes(1));
    let r = restarted.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { head, .. } = &row(&r, "prod").action else {
        panic!("{:?}", row(&r, "prod"))
    };
    assert_ne!(*head, forged);
    assert!(
        w.comments_on(number)
            .iter()
            .any(|c| c.contains("was not pushed by tugboat"))
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_tugboats_own_kept_head_is_known_by_its_gate_report_and_not_pushed_again() {
    let (w, clock, engine) = world();
    let number = prod_awaiting(&w, &clock, &engine).await;
    let pushed = w.calls("propose_pushed");
    let restarted = Engine::new(super::fake::config("", ""), w.ports()).with_clock(clock.clone());
    clock.advance(Span::minutes(1));
    let r = restarted.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(
        row(&r, "prod").action,
        Action::AwaitingApproval { .. }
    ));
    assert_eq!(w.calls("propose_pushed"), pushed, "its head is kept");
    assert!(
        !w.comments_on(number)
            .iter()
            .any(|c| c.contains("was not pushed by tugboat"))
    );
    let asked = w.calls("first_report");
    clock.advance(Span::minutes(1));
    restarted.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        w.calls("first_report"),
        asked,
        "once per head, then remembered"
    );
}

#[tokio::test(start_paused = true)]
async fn an_edited_description_of_a_merged_pr_is_rebuilt_from_history_and_its_commands_asked_again()
{
    let (w, clock, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    let pr = w.prs()[0].clone();
    assert!(pr.body.contains("<!-- tugboat:seal "), "{}", pr.body);
    // Someone with write access edits the block of tugboat's deployed PR: another image,
    // another `from`, commands answered long ago made new again.
    let edited = seal::unsealed(&pr.body)
        .replace(&format!("{IMAGE}:1.0.0"), EVIL)
        .replace("1.1.0", "6.6.6");
    w.edit_body(pr.number, &edited);
    w.label_as(pr.number, "mallory", "tugboat:bad");
    w.allow("alice", Permission::Write);
    clock.advance(Span::seconds(5));
    w.say(pr.number, "alice", "/rollback");
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(w.main_file(DEV), values("1.1.0"), "nothing rolled back");
    assert_eq!(engine.take_forged().get(&Forgery::Seal), Some(&1));
    // Rebuilt from the branch and the merge commit, sealed again; the command is asked again.
    let body = w.prs()[0].body.clone();
    let state = PromotionState::parse(seal::unsealed(&body)).unwrap();
    assert_eq!(
        state.tag,
        Some(Tag::parse("1.1.0").unwrap()),
        "what the merge made"
    );
    assert!(body.contains("<!-- tugboat:seal ") && !seal::forgotten(&body));
    assert!(
        w.comments_on(pr.number)
            .iter()
            .any(|c| c.contains("will not be carried out")),
        "{:?}",
        w.comments_on(pr.number)
    );
    clock.advance(Span::minutes(1));
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        engine.take_forged().get(&Forgery::Seal),
        None,
        "reported once"
    );
    assert_eq!(w.main_file(DEV), values("1.1.0"));
    // Posted again, the rollback is carried out, to what main ran before the merge.
    clock.advance(Span::seconds(5));
    w.say(pr.number, "alice", "/rollback");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "dev").action, Action::RolledBack { .. }),
        "{:?} {:?}",
        row(&r, "dev").action,
        w.comments_on(pr.number)
    );
    assert_eq!(w.main_file(DEV), values("1.0.0"));
}

#[tokio::test(start_paused = true)]
async fn commands_answered_before_a_description_was_edited_are_not_carried_out_again() {
    let (w, clock, engine) = world();
    let number = prod_awaiting(&w, &clock, &engine).await;
    w.allow("alice", Permission::Write);
    clock.advance(Span::seconds(5));
    w.say(number, "alice", "/rescan");
    engine.cycle(Mode::Apply).await.unwrap();
    let scans = w.calls("start_scan");
    assert!(scans > 0, "the rescan ran");
    // Someone resets the record of answered commands to replay them.
    let pr = w.prs().into_iter().find(|p| p.number == number).unwrap();
    let body = seal::unsealed(&pr.body);
    let at = body.find("\"answered_through\":").unwrap();
    let replayed = format!(
        "{}\"answered_through\":0,\"x\":{}",
        &body[..at],
        &body[at + 19..]
    );
    w.edit_body(number, &replayed);
    clock.advance(Span::seconds(5));
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(w.calls("start_scan"), scans, "not carried out again");
    assert!(
        w.comments_on(number)
            .iter()
            .any(|c| c.contains("will not be carried out")),
        "{:?}",
        w.comments_on(number)
    );
    assert_eq!(engine.take_forged().get(&Forgery::Seal), Some(&1));
    // The PR is tugboat's again: its next command is answered, and nothing is said twice.
    let said = w.comments_on(number).len();
    clock.advance(Span::seconds(5));
    w.say(number, "alice", "/rescan");
    engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        w.calls("start_scan") > scans,
        "a new command is carried out"
    );
    assert!(
        !w.comments_on(number)[said..]
            .iter()
            .any(|c| c.contains("will not be carried out")),
        "{:?}",
        w.comments_on(number)
    );
}

#[tokio::test(start_paused = true)]
async fn a_record_an_earlier_tugboat_wrote_without_a_seal_is_read_and_sealed_once() {
    let (w, clock, engine) = world();
    let cfg = super::fake::config("", "");
    let crate::config::SecretRef::Ssm(name) = &cfg.github.state_key else {
        panic!("the default key is in SSM")
    };
    // Sealing began an hour from now: what was written until then is an earlier tugboat's.
    let since = super::scheduler::Clock::now(&*clock) + Span::hours(1);
    w.set_secret(name, &seal::Keys::text(&"ab".repeat(32), since));
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    let pr = w.prs()[0].clone();
    w.edit_body(pr.number, seal::unsealed(&pr.body));
    clock.advance(Span::seconds(5));
    let edits = w.calls("update_pr");
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(engine.take_forged().get(&Forgery::Seal), None);
    assert_eq!(w.calls("update_pr"), edits + 1, "sealed once");
    assert!(w.prs()[0].body.contains("<!-- tugboat:seal "));
    // After sealing began, a body without a seal is an edit.
    clock.advance(Span::hours(2));
    w.edit_body(pr.number, seal::unsealed(&pr.body));
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(engine.take_forged().get(&Forgery::Seal), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn the_first_cycle_makes_a_key_and_stores_it_once_and_a_restart_reads_it() {
    let (w, clock, engine) = world();
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(w.calls("create_secret"), 1);
    let restarted = Engine::new(super::fake::config("", ""), w.ports()).with_clock(clock.clone());
    w.push("1.1.0", 'b');
    restarted.cycle(Mode::Apply).await.unwrap();
    assert_eq!(w.calls("create_secret"), 1, "read, not made again");
    // What one process sealed, the other opens.
    clock.advance(Span::minutes(1));
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(engine.take_forged().get(&Forgery::Seal), None);
    assert_eq!(restarted.take_forged().get(&Forgery::Seal), None);
}

#[tokio::test(start_paused = true)]
async fn a_plan_without_a_key_stores_none() {
    let (w, _, engine) = world();
    engine.cycle(Mode::Plan).await.unwrap();
    assert_eq!(w.calls("create_secret"), 0);
}

#[tokio::test(start_paused = true)]
async fn an_edited_hold_issue_still_holds_until_an_approver_resumes_and_reopened_holds_nothing() {
    let (w, clock, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::minutes(5));
    w.commit_saying(DEV, &values("1.0.0"), "oncall", "pin 1.0.0 by hand");
    engine.cycle(Mode::Apply).await.unwrap();
    let issue = w.issues()[0].clone();
    assert!(issue.open && issue.body.contains("<!-- tugboat:seal "));
    // Someone with write access, not an approver, edits the hold away.
    w.edit_body(issue.number, "Nothing to see here.");
    clock.advance(Span::minutes(1));
    w.push("1.2.0", 'c');
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        w.main_file(DEV),
        values("1.0.0"),
        "still held: nothing promoted"
    );
    assert_eq!(engine.take_forged().get(&Forgery::Seal), Some(&1));
    let rebuilt = w.issues()[0].clone();
    assert!(rebuilt.open && rebuilt.body.contains("tugboat rebuilt this hold"));
    assert!(Hold::parse(seal::unsealed(&rebuilt.body)).is_some());
    // An approver's /resume lifts it.
    w.allow("alice", Permission::Write);
    clock.advance(Span::minutes(1));
    w.say(issue.number, "alice", "/resume");
    engine.cycle(Mode::Apply).await.unwrap();
    assert!(!w.issues()[0].open, "the /resume was read");
    // A person reopens the lifted hold: it holds nothing again.
    let lifted = w.issues()[0].clone();
    use crate::ports::Issues;
    w.update_issue(lifted.number, &lifted.title, &lifted.body, true)
        .await
        .unwrap();
    clock.advance(Span::minutes(1));
    w.push("1.3.0", 'd');
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(w.main_file(DEV), values("1.3.0"), "promoted: not held");
}

#[tokio::test(start_paused = true)]
async fn records_tugboat_wrote_under_a_former_login_are_still_its_own() {
    let (w, clock, engine) = world();
    engine.cycle(Mode::Apply).await.unwrap(); // the key exists
    // tugboat's deployed prod record, written when it acted as a token's machine user.
    let body = w.seal(&forged_block("prod", "1.0.0", &format!("{IMAGE}:0.9.0")));
    w.open_pr_as(
        "salon-ops",
        "main",
        &body,
        &["tugboat", "tugboat:deployed"],
        true,
    );
    let mut cfg = (*super::fake::config("", "")).clone();
    cfg.github.former_logins = vec!["Salon-Ops".into()];
    let moved = Engine::new(std::sync::Arc::new(cfg), w.ports()).with_clock(clock.clone());
    moved.cycle(Mode::Apply).await.unwrap();
    assert!(moved.take_forged().is_empty(), "its own, labels and all");
    // Without it, the same record is someone else's.
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(engine.take_forged().get(&Forgery::Author), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn an_open_pr_retargeted_to_another_branch_is_closed_and_opened_anew_on_main() {
    let (w, clock, engine) = world();
    let number = prod_awaiting(&w, &clock, &engine).await;
    w.retarget(number, "side");
    w.allow("alice", Permission::Write);
    clock.advance(Span::seconds(5));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { number: new, .. } = row(&r, "prod").action else {
        panic!("{:?}", row(&r, "prod"))
    };
    assert_ne!(new, number, "a new PR");
    let prs = w.prs();
    let old = prs.iter().find(|p| p.number == number).unwrap();
    assert!(!old.open && old.merged_at.is_none(), "closed, not merged");
    assert_eq!(prs.iter().find(|p| p.number == new).unwrap().base, "main");
    assert!(
        w.comments_on(number)
            .iter()
            .any(|c| c.contains("retargeted to `side`")),
        "{:?}",
        w.comments_on(number)
    );
    assert_eq!(engine.take_forged().get(&Forgery::Base), Some(&1));
    // Approved, the new one merges into main.
    clock.advance(Span::seconds(5));
    w.say(new, "alice", "/approve");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, "prod").action, Action::Merged { .. }),
        "{:?}",
        row(&r, "prod")
    );
    assert_eq!(w.main_file(PROD), values("1.1.0"));
}

#[tokio::test(start_paused = true)]
async fn a_pr_a_person_opens_from_tugboats_branch_is_closed_and_tugboat_opens_its_own() {
    let (w, clock, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    let theirs = w.open_pr_from("mallory", "tugboat/prod/user_service", "Ship it.");
    clock.advance(Span::hours(2));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { number, .. } = row(&r, "prod").action else {
        panic!("{:?}", row(&r, "prod"))
    };
    assert_ne!(number, theirs, "tugboat's own PR");
    let prs = w.prs();
    assert!(!prs.iter().find(|p| p.number == theirs).unwrap().open);
    assert_eq!(
        prs.iter().find(|p| p.number == number).unwrap().author,
        super::fake::ME
    );
    assert!(
        w.comments_on(theirs)
            .iter()
            .any(|c| c.contains("opened by mallory")),
        "{:?}",
        w.comments_on(theirs)
    );
    assert_eq!(engine.take_forged().get(&Forgery::Author), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn tugboats_own_comment_edited_to_say_healthy_is_not_read_back() {
    let (w, _, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    let pr = w.prs()[0].number;
    // tugboat reports a failed verification in a comment (a block, sealed) ...
    let forge = &engine.ports().forge;
    let report = "Not healthy.\n\n<!-- tugboat:verified {\"healthy\":false} -->";
    forge.comment(pr, report).await.unwrap();
    let read = forge.comments(pr).await.unwrap();
    let mine = read
        .iter()
        .find(|c| c.body.contains("tugboat:verified"))
        .unwrap();
    assert_eq!(
        mine.body, report,
        "read back as written, seal and all taken off"
    );
    // ... and someone with write access edits it to say healthy.
    let flipped = w
        .comments_on(pr)
        .iter()
        .find(|c| c.contains("tugboat:verified"))
        .unwrap()
        .replace("false", "true");
    w.edit_comment(mine.id, &flipped);
    let read = forge.comments(pr).await.unwrap();
    assert!(
        !read.iter().any(|c| c.body.contains("tugboat:verified")),
        "{read:?}"
    );
    assert_eq!(engine.take_forged().get(&Forgery::Seal), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn a_promotion_another_replica_merges_after_the_listings_holds_nothing() {
    // The soak's "environment held: main deploys svc-043:2.11.0, not 2.9.0 that tugboat
    // promoted: commit … (#502)": the labels were listed, another replica then merged its
    // promotion (labelled `verifying` before the merge), and this replica read main after
    // that merge, with no record of it.
    let (w, _, engine) = world();
    w.push("1.1.0", 'b');
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(matches!(row(&r, "dev").action, Action::Merged { .. }));
    w.push("1.2.0", 'c');
    w.fail("merge", ErrorKind::Transient);
    engine.cycle(Mode::Apply).await.unwrap();
    w.heal("merge");
    let pr = w.prs().into_iter().max_by_key(|p| p.number).unwrap();
    assert!(pr.open && pr.labels.contains("tugboat:verifying"), "{pr:?}");
    w.merge_after_listing("tugboat", pr.number);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        w.main_file(DEV),
        values("1.2.0"),
        "merged by the other replica"
    );
    assert!(
        !matches!(row(&r, "dev").decision, Decision::Held { .. }),
        "{:?}",
        row(&r, "dev").decision
    );
    assert!(w.issues().is_empty(), "no hold issue: {:?}", w.issues());
    // The next cycle's listing has it: verified, and still no hold.
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(!matches!(row(&r, "dev").decision, Decision::Held { .. }));
    assert!(w.issues().is_empty(), "{:?}", w.issues());
}

#[tokio::test(start_paused = true)]
async fn a_promotion_marked_bad_whose_rollback_did_not_start_is_rolled_back_not_held() {
    // The state the soak's second false hold was seen in ("main deploys svc-004:2.25.0, not
    // 2.22.0 that tugboat promoted: commit … (#1190)", after a failed settle and a lost
    // lease): a merged promotion marked bad, its rollback not started, main deploying it and
    // no `deployed` record naming it. One replica rolls it back (aftercare comes before the
    // hold check). The soak's hold came from the order of the next test: a failed
    // verification whose report was commented and whose labels were refused.
    let (w, _, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    // 1.2.0 crashes: its verification fails and marks it bad; the rollback that follows
    // cannot be opened this cycle.
    w.breaks("1.2.0");
    w.push("1.2.0", 'c');
    w.fail("merge", ErrorKind::Transient);
    engine.cycle(Mode::Apply).await.unwrap();
    w.heal("merge");
    w.fail("open_pr", ErrorKind::Transient);
    engine.cycle(Mode::Apply).await.unwrap();
    w.heal("open_pr");
    let pr = w.prs().into_iter().max_by_key(|p| p.number).unwrap();
    assert!(pr.labels.contains("tugboat:bad"), "{pr:?}");
    assert!(!pr.labels.contains("tugboat:verifying"), "{pr:?}");
    assert_eq!(w.main_file(DEV), values("1.2.0"), "not rolled back yet");
    // The next cycle (this replica's or another's) rolls it back; nothing is held.
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        !matches!(row(&r, "dev").decision, Decision::Held { .. }),
        "{:?}",
        row(&r, "dev")
    );
    assert!(w.issues().is_empty(), "no hold issue: {:?}", w.issues());
    assert!(
        matches!(row(&r, "dev").action, Action::RolledBack { .. }),
        "{:?}",
        row(&r, "dev").action
    );
    assert_eq!(w.main_file(DEV), values("1.1.0"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_verification_reported_before_a_restart_is_rolled_back_not_held() {
    // The soak's second false hold, as its log showed it (svc-012 2.7.0, #453): the
    // verification failed and its report was commented, but the labels that settle it were
    // refused (a secondary rate limit). The next cycle read the report, marked the promotion
    // bad and stopped there ("no row: it was counted then"), so nothing rolled it back; the
    // hold check then found main deploying what no verifying or deployed record named, and
    // held the environment as changed by a person.
    let (w, _, engine) = world();
    w.push("1.1.0", 'b');
    engine.cycle(Mode::Apply).await.unwrap();
    w.breaks("1.2.0");
    w.push("1.2.0", 'c');
    w.fail("relabel", ErrorKind::Throttled);
    engine.cycle(Mode::Apply).await.unwrap();
    w.heal("relabel");
    let pr = w.prs().into_iter().max_by_key(|p| p.number).unwrap();
    assert!(
        pr.merged_at.is_some() && pr.labels.contains("tugboat:verifying"),
        "merged, reported, not settled: {pr:?}"
    );
    assert_eq!(w.main_file(DEV), values("1.2.0"));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        !matches!(row(&r, "dev").decision, Decision::Held { .. }),
        "{:?}",
        row(&r, "dev")
    );
    assert!(w.issues().is_empty(), "no hold issue: {:?}", w.issues());
    assert!(
        matches!(row(&r, "dev").action, Action::RolledBack { .. }),
        "rolled back in the cycle that settled it: {:?}",
        row(&r, "dev").action
    );
    assert_eq!(w.main_file(DEV), values("1.1.0"));
    let pr = w.prs().into_iter().find(|p| p.number == pr.number).unwrap();
    assert!(pr.labels.contains("tugboat:bad"), "{pr:?}");
}
