//! Kill it anywhere: tugboat is stopped at each step of a promotion (and of a rollback) by a
//! failpoint, then a new tugboat on the same working directory takes over. Every step must
//! end, with no manual step, in exactly one PR, one merge and one verification report per
//! promotion.
//!
//! The failpoints (`failpoint!` in the daemon, compiled in only for the tests) are process
//! wide, so the scenarios run one after the other in one test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{engine, start};
use tugboat::engine::Mode;
use tugboat_sandbox::{
    self as sandbox, Fleet, Options, Sandbox, Style, WithoutHarnessVars, file_of,
};

const SVC: &str = "user_service";

/// Every step a promotion goes through, in order.
const PROMOTION_STEPS: [&str; 9] = [
    "edit", "commit", "push", "claim", "open-pr", "label", "merge", "verify", "report",
];

/// A sandbox with `user_service` in dev only.
async fn sandbox() -> Sandbox {
    start(Options {
        fleet: Fleet {
            services: vec![(SVC.into(), Style::Kustomize)],
            environments: vec!["dev".into()],
            tags: 1,
        },
        ..Options::default()
    })
    .await
}

/// The PRs of `branch`, and tugboat's verification reports on each.
fn prs_of(sb: &Sandbox, branch: &str) -> Vec<(sandbox::github::Pr, usize)> {
    sb.github
        .pulls()
        .into_iter()
        .filter(|p| p.head == branch)
        .map(|p| {
            let reports = common::verification_reports(&p).len();
            (p, reports)
        })
        .collect()
}

/// Run one cycle of a tugboat that is killed at `point`: the failpoint stops it there (a
/// panic unwinds the whole cycle, as a kill ends the process; inside a blocking git call
/// it ends that step). Returns whether the point was reached.
async fn killed_at(sb: &Sandbox, work: &tempfile::TempDir, point: &'static str) -> bool {
    let hit = Arc::new(AtomicBool::new(false));
    let seen = hit.clone();
    fail::cfg_callback(point, move || {
        seen.store(true, Ordering::SeqCst);
        panic!("killed at the failpoint {point}");
    })
    .unwrap();
    let first = engine(sb, work, &Default::default()).await;
    let _ = tokio::spawn(async move { first.cycle(Mode::Apply).await }).await;
    fail::remove(point);
    hit.load(Ordering::SeqCst)
}

/// A new tugboat on the same working directory, started at once, as a container restarted in
/// its pod: it took the clone over, so the killed one's ledger claims are its own and nothing
/// waits out their lifetime (2 min). Its first cycle, with the clock where the kill left it,
/// merges the PR on `branch`; then it runs until nothing is left, `pace` apart.
async fn restarted(sb: &Sandbox, work: &tempfile::TempDir, branch: &str, pace: Duration) {
    let next = engine(sb, work, &Default::default()).await;
    next.cycle(Mode::Apply).await.unwrap();
    let prs = prs_of(sb, branch);
    assert!(
        prs.iter().any(|(pr, _)| pr.merged_at.is_some()),
        "the first cycle after the restart merged {branch}: {prs:?}"
    );
    for _ in 0..3 {
        sb.advance(pace);
        next.cycle(Mode::Apply).await.unwrap();
    }
}

/// Well inside a claim's lifetime: three of them and the first cycle stay under 2 min.
const AT_ONCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tugboat_killed_at_any_step_is_finished_by_the_next_with_one_pr_one_merge_and_one_report()
{
    let scenario = fail::FailScenario::setup();
    for point in PROMOTION_STEPS {
        let sb = sandbox().await;
        let work = tempfile::tempdir().unwrap();
        sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
        assert!(
            killed_at(&sb, &work, point).await,
            "{point}: the failpoint was reached"
        );
        restarted(&sb, &work, "tugboat/dev/user_service", AT_ONCE).await;

        let prs = prs_of(&sb, "tugboat/dev/user_service");
        assert_eq!(prs.len(), 1, "{point}: exactly one PR: {prs:?}");
        let (pr, reports) = &prs[0];
        assert!(pr.merged_at.is_some(), "{point}: merged");
        assert_eq!(*reports, 1, "{point}: reported once: {:?}", pr.comments);
        assert!(
            pr.labels.contains(&"tugboat:deployed".to_owned())
                && !pr.labels.contains(&"tugboat:verifying".to_owned()),
            "{point}: settled: {:?}",
            pr.labels
        );
        let main = sb.github.read_file("main", &file_of(SVC, "dev")).unwrap();
        assert!(main.contains("1.1.0"), "{point}: promoted:\n{main}");
    }

    // A failed promotion rolled back (`rollback: auto`), killed while the rollback was on its
    // way: the next tugboat finishes it, once.
    let sb = sandbox().await;
    let work = tempfile::tempdir().unwrap();
    sb.aws.put_parameter(
        &format!("/salon/promotion/services/{SVC}"),
        "environments:\n  dev:\n    rollback: auto\n",
        "String",
    );
    let before = sb.github.read_file("main", &file_of(SVC, "dev")).unwrap();
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    sb.argocd
        .mark_crashing(&format!("{}:1.1.0", sandbox::image_of(SVC)));
    assert!(
        killed_at(&sb, &work, "rollback").await,
        "the rollback was started"
    );
    restarted(&sb, &work, "tugboat/dev/user_service", AT_ONCE).await;
    let promotions = prs_of(&sb, "tugboat/dev/user_service");
    let rollbacks = prs_of(&sb, "tugboat/rollback/dev/user_service");
    assert_eq!(
        (promotions.len(), rollbacks.len()),
        (1, 1),
        "{promotions:?} {rollbacks:?}"
    );
    for (pr, reports) in promotions.iter().chain(&rollbacks) {
        assert!(pr.merged_at.is_some(), "#{} merged", pr.number);
        assert_eq!(
            *reports, 1,
            "#{} reported once: {:?}",
            pr.number, pr.comments
        );
    }
    assert!(promotions[0].0.labels.contains(&"tugboat:bad".to_owned()));
    assert_eq!(
        sb.github.read_file("main", &file_of(SVC, "dev")).unwrap(),
        before,
        "rolled back byte for byte"
    );
    grouped().await;
    during_verification().await;
    scenario.teardown();
}

/// One of the ways a verification waits (`quirk` on dev's application, under `policy`),
/// killed while it waits (`point`).
struct Waiting {
    point: &'static str,
    quirk: &'static str,
    seconds: u64,
    policy: &'static str,
    /// The image crashes for good (a real failure inside the grace).
    crashing: bool,
}

/// How it must end.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Verified Healthy, settled `deployed`, never rolled back.
    Deployed,
    /// Held (a paused Rollout past its `pause_timeout`): still `verifying`, never rolled back.
    Held,
    /// Failed and rolled back once.
    RolledBack,
}

/// Killed while the verification waits on a paused Rollout or a Degraded inside its grace:
/// the restarted tugboat ends as an unkilled one would. A pause is measured from the merge
/// (so the restart does not wait a new `pause_timeout`); a Degraded's grace starts again,
/// which only delays a failure.
async fn during_verification() {
    let cases = [
        (
            Waiting {
                point: "paused",
                quirk: "paused",
                seconds: 2,
                policy: "rollback: auto",
                crashing: false,
            },
            End::Deployed,
        ),
        (
            Waiting {
                point: "paused",
                quirk: "paused",
                seconds: 600,
                policy: "rollback: auto\n    pause_timeout: 60s",
                crashing: false,
            },
            End::Held,
        ),
        (
            Waiting {
                point: "degraded",
                quirk: "transient-degraded",
                seconds: 1,
                policy: "rollback: auto\n    degraded_grace: 30s",
                crashing: false,
            },
            End::Deployed,
        ),
        (
            Waiting {
                point: "degraded",
                quirk: "transient-degraded",
                seconds: 0,
                policy: "rollback: auto\n    degraded_grace: 2s",
                crashing: true,
            },
            End::RolledBack,
        ),
    ];
    for (case, end) in cases {
        let point = case.point;
        let sb = sandbox().await;
        let work = tempfile::tempdir().unwrap();
        sb.aws.put_parameter(
            &format!("/salon/promotion/services/{SVC}"),
            &format!("environments:\n  dev:\n    {}\n", case.policy),
            "String",
        );
        let app = sandbox::app_name(SVC, "dev");
        sb.argocd
            .set_quirk(&app, case.quirk, Duration::from_secs(case.seconds))
            .unwrap();
        if case.crashing {
            sb.argocd
                .mark_crashing(&format!("{}:1.1.0", sandbox::image_of(SVC)));
        }
        sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
        assert!(
            killed_at(&sb, &work, point).await,
            "{end:?}: killed at {point}"
        );
        // A held pause ends `pause_timeout` (60 s) after the merge: cycles 3 min apart.
        let pace = Duration::from_secs(180);
        restarted(&sb, &work, "tugboat/dev/user_service", pace).await;

        let prs = prs_of(&sb, "tugboat/dev/user_service");
        assert_eq!(prs.len(), 1, "{end:?}: one PR: {prs:?}");
        let (pr, _) = &prs[0];
        let rollbacks = prs_of(&sb, "tugboat/rollback/dev/user_service");
        let has = |l: &str| pr.labels.contains(&l.to_owned());
        let holds: Vec<_> = sb
            .github
            .issues()
            .into_iter()
            .filter(|i| i.labels.contains(&"tugboat:hold".to_owned()))
            .collect();
        match end {
            End::Deployed => {
                assert!(
                    has("tugboat:deployed") && !has("tugboat:verifying"),
                    "{end:?}: {:?}",
                    pr.labels
                );
                assert!(
                    rollbacks.is_empty() && holds.is_empty(),
                    "{end:?}: {rollbacks:?} {holds:?}"
                );
            }
            End::Held => {
                assert!(
                    has("tugboat:verifying") && !has("tugboat:bad"),
                    "{end:?}: {:?}",
                    pr.labels
                );
                assert!(rollbacks.is_empty(), "{end:?}: never rolled back");
                assert_eq!(holds.len(), 1, "{end:?}: held once: {holds:?}");
                assert!(
                    holds[0].body.contains("paused-rollout"),
                    "{}",
                    holds[0].body
                );
            }
            End::RolledBack => {
                assert!(has("tugboat:bad"), "{end:?}: {:?}", pr.labels);
                assert_eq!(rollbacks.len(), 1, "{end:?}: rolled back once");
                assert!(rollbacks[0].0.merged_at.is_some());
            }
        }
    }
}

/// Three services grouped in dev.
const GROUPED: [&str; 3] = ["user_service", "appointment_service", "staff_management"];
const GROUP_BRANCH: &str = "tugboat/group/dev/base-image";

/// Every step a group's promotion goes through, in order.
const GROUP_STEPS: [&str; 6] = ["push", "open-pr", "merge", "verify", "report", "rollback"];

async fn grouped_sandbox() -> Sandbox {
    let sb = start(Options {
        fleet: Fleet {
            services: GROUPED
                .iter()
                .map(|s| ((*s).into(), Style::Kustomize))
                .collect(),
            environments: vec!["dev".into()],
            tags: 1,
        },
        ..Options::default()
    })
    .await;
    sb.aws.put_parameter(
        "/salon/promotion/defaults",
        "environments:\n  dev:\n    auto_merge: true\n    checks_settle: 0s\n    health_timeout: 30s\n    degraded_grace: 2s\n    rollback: auto\n    group: {name: base-image, window: 0s, max: 10}\n",
        "String",
    );
    sb
}

/// The same for a group: killed at each step of its promotion (with one member crashing, so
/// that its rollback is a step too), the next tugboat ends with one group PR merged once,
/// settled, reported once, and only the crashing member rolled back.
async fn grouped() {
    let crashing = GROUPED[1];
    for point in GROUP_STEPS {
        let sb = grouped_sandbox().await;
        let work = tempfile::tempdir().unwrap();
        let before = sb
            .github
            .read_file("main", &file_of(crashing, "dev"))
            .unwrap();
        for svc in GROUPED {
            sb.aws.push(svc, "1.1.0", "COMPLETE", vec![]);
        }
        sb.argocd
            .mark_crashing(&format!("{}:1.1.0", sandbox::image_of(crashing)));
        assert!(
            killed_at(&sb, &work, point).await,
            "{point}: the failpoint was reached"
        );
        restarted(&sb, &work, GROUP_BRANCH, AT_ONCE).await;

        let prs = prs_of(&sb, GROUP_BRANCH);
        assert_eq!(prs.len(), 1, "{point}: exactly one group PR: {prs:?}");
        let (pr, reports) = &prs[0];
        assert!(pr.merged_at.is_some(), "{point}: merged");
        assert_eq!(
            *reports, 2,
            "{point}: the failure said once, the outcomes written once: {:?}",
            pr.comments
        );
        for label in ["tugboat:deployed", "tugboat:bad"] {
            assert!(
                pr.labels.contains(&label.to_owned()),
                "{point}: {:?}",
                pr.labels
            );
        }
        assert!(
            !pr.labels.contains(&"tugboat:verifying".to_owned()),
            "{point}: settled"
        );
        let rollbacks = prs_of(&sb, &format!("tugboat/rollback/dev/{crashing}"));
        assert_eq!(
            rollbacks.len(),
            1,
            "{point}: one rollback, of the crashing member"
        );
        for svc in GROUPED {
            let main = sb.github.read_file("main", &file_of(svc, "dev")).unwrap();
            if svc == crashing {
                assert_eq!(main, before, "{point}: {svc} rolled back byte for byte");
            } else {
                assert!(main.contains("1.1.0"), "{point}: {svc} promoted:\n{main}");
            }
        }
    }
}

/// A sandbox where `user_service` 1.1.0 was just pushed, and a directory with the
/// `tugboat.toml` (the third) of a tugboat working in it.
fn pushed(rt: &tokio::runtime::Runtime) -> (Sandbox, tempfile::TempDir, std::path::PathBuf) {
    let sb = rt.block_on(sandbox());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tugboat.toml");
    std::fs::write(&config, sb.config_toml(&dir.path().join("work"))).unwrap();
    sb.aws.push(SVC, "1.1.0", "COMPLETE", vec![]);
    (sb, dir, config)
}

/// `tugboat once` on `config`, aborted at the failpoint `abort` when given (as `kill -9`
/// would: `TUGBOAT_ABORT_AT`).
fn once_on(config: &std::path::Path, abort: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tugboat"));
    cmd.without_harness_vars()
        .args(["once", "--config"])
        .arg(config);
    cmd.env("NO_COLOR", "1");
    if let Some(point) = abort {
        cmd.env("TUGBOAT_ABORT_AT", point);
    }
    cmd.output().unwrap()
}

/// A real kill, of the real binary: `tugboat once` dies at a step (`TUGBOAT_ABORT_AT` aborts
/// the process there, as `kill -9` would: no destructor runs, nothing is let go of but by the
/// kernel) and is started again at once on the same working directory, as a container
/// restarted in its pod. The restart's one cycle finishes the promotion: the PR its
/// predecessor claimed is opened and merged then, not after the claim's 2 min.
#[test]
fn a_tugboat_process_killed_at_a_step_and_started_again_at_once_finishes_in_its_first_cycle() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for point in ["claim", "open-pr", "merge"] {
        let (sb, _dir, config) = pushed(&rt);
        let once = |abort| once_on(&config, abort);
        let killed = once(Some(point));
        let stderr = String::from_utf8_lossy(&killed.stderr);
        assert!(
            !killed.status.success() && stderr.contains("aborted at the failpoint"),
            "{point}: the first process died there: {:?}\n{stderr}",
            killed.status
        );
        let started = std::time::Instant::now();
        let restart = once(None);
        let stderr = String::from_utf8_lossy(&restart.stderr);
        assert!(restart.status.success(), "{point}: {stderr}");
        assert!(
            stderr.contains("took over the clone of a stopped tugboat"),
            "{point}: the restart knew its predecessor:\n{stderr}"
        );
        let prs = prs_of(&sb, "tugboat/dev/user_service");
        assert_eq!(prs.len(), 1, "{point}: one PR: {prs:?}");
        assert!(
            prs[0].0.merged_at.is_some(),
            "{point}: merged by the restart"
        );
        assert_eq!(prs[0].1, 1, "{point}: reported once");
        eprintln!(
            "killed at {point}: the restart finished the promotion in {:.1?}",
            started.elapsed()
        );
    }
}

/// A real kill between the ledger's record of a change and its delivery: `tugboat once`
/// promotes, records the promotion as announced (with the notification in the ledger's
/// outbox), and dies as it is about to hand it to the sinks. Before the outbox, that
/// notification was lost: the ledger said "announced", so no later cycle sent it. The
/// restart, on the same clone, delivers it at its start, once to each sink, under the same
/// delivery id a first attempt would have used.
#[test]
fn a_tugboat_killed_between_recording_a_notification_and_sending_it_is_followed_by_a_restart_that_sends_it_once()
 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sb, _dir, config) = pushed(&rt);
    let once = |abort| once_on(&config, abort);
    let killed = once(Some("notify"));
    let stderr = String::from_utf8_lossy(&killed.stderr);
    assert!(
        !killed.status.success() && stderr.contains("aborted at the failpoint notify"),
        "the first process died before sending: {:?}\n{stderr}",
        killed.status
    );
    assert!(sb.sinks.received().is_empty(), "nothing was sent");
    let restart = once(None);
    let stderr = String::from_utf8_lossy(&restart.stderr);
    assert!(restart.status.success(), "{stderr}");
    assert!(
        stderr.contains("delivering a notification a stopped tugboat did not"),
        "the restart took the outbox over:\n{stderr}\nthe first:\n{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    let received = sb.sinks.received();
    let hooks: Vec<_> = received.iter().filter(|r| r.sink == "webhook").collect();
    let promoted: Vec<_> = hooks
        .iter()
        .filter(|r| r.body["event"] == "promoted" && r.body["service"] == SVC)
        .collect();
    assert_eq!(promoted.len(), 1, "announced once: {received:?}");
    let mut ids: Vec<&str> = hooks
        .iter()
        .map(|r| r.body["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), hooks.len(), "no delivery twice: {received:?}");
    let slack = received.iter().filter(|r| r.sink == "slack").count();
    assert_eq!(slack, hooks.len(), "Slack has each once too: {received:?}");
}
