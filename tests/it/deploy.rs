//! After the merge, end to end against the sandbox: verification with Argo CD, rollback, bad
//! digests, the environment chain, and a tugboat stopped in the middle.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use crate::common::{approver, assert_healthy, engine, row, setup, start};
use tugboat::domain::plan::Decision;
use tugboat::engine::{Action, Mode, Verification};
use tugboat_sandbox::{self as sandbox, Fleet, Options, Sandbox, Style, app_name, file_of};

const DEV: &str = "user_service";

fn labels(sb: &Sandbox, number: u64) -> Vec<String> {
    sb.github
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .unwrap()
        .labels
}

/// tugboat's verification reports on a PR.
fn reports_on(sb: &Sandbox, number: u64) -> Vec<String> {
    let pulls = sb.github.pulls();
    crate::common::verification_reports(pulls.iter().find(|p| p.number == number).unwrap())
}

/// Assert that dev of `svc` reverted PR `bad`, verified Healthy, and main holds `before` again.
fn assert_rolled_back(
    sb: &Sandbox,
    r: &[tugboat::engine::EnvReport],
    svc: &str,
    bad: u64,
    before: &str,
) {
    let Action::RolledBack {
        bad: reverted,
        verification,
        ..
    } = &row(r, svc, "dev").action
    else {
        panic!("{:?}", row(r, svc, "dev"))
    };
    assert_eq!(*reverted, bad);
    assert!(matches!(verification, Verification::Healthy { .. }));
    assert_eq!(
        sb.github.read_file("main", &file_of(svc, "dev")).unwrap(),
        before
    );
}

fn policy(sb: &Sandbox, svc: &str, yaml: &str) {
    sb.aws
        .put_parameter(&format!("/salon/promotion/services/{svc}"), yaml, "String");
}

/// A sandbox with the one service `DEV` through `environments`, and an engine on it.
async fn chain(environments: &[&str]) -> (Sandbox, tempfile::TempDir, tugboat::engine::Engine) {
    let sb = start(Options {
        fleet: Fleet {
            services: vec![(DEV.into(), Style::Kustomize)],
            environments: environments.iter().map(|e| (*e).to_owned()).collect(),
            tags: 1,
        },
        ..Options::default()
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    let engine = engine(&sb, &work, &Default::default()).await;
    (sb, work, engine)
}

fn crash(sb: &Sandbox, svc: &str, tag: &str) {
    sb.argocd
        .mark_crashing(&format!("{}:{tag}", sandbox::image_of(svc)));
}

/// The engine reads the time of day through its clock (issue 16), the one the stand-ins stamp
/// with: moved an hour ahead, a plan sees dev's one-hour soak done, without back-dating the
/// stand-in or sleeping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_is_judged_on_the_engines_clock_so_a_clock_an_hour_ahead_sees_it_done() {
    let (sb, _work, engine) = chain(&["dev", "staging"]).await;
    policy(
        &sb,
        DEV,
        "environments:\n  staging:\n    auto_merge: true\n    checks_settle: 0s\n    soak: 1h\n",
    );
    sb.aws.push(DEV, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_healthy(&r, DEV, "dev");

    let plan_work = tempfile::tempdir().unwrap();
    let planner = crate::common::engine(&sb, &plan_work, &Default::default()).await;
    let r = planner.cycle(Mode::Plan).await.unwrap();
    assert!(
        matches!(&row(&r, DEV, "staging").decision, Decision::Waiting { reason, .. } if reason.starts_with("soaking in dev until")),
        "{:?}",
        row(&r, DEV, "staging")
    );
    sb.advance(Duration::from_secs(3700));
    let r = planner.cycle(Mode::Plan).await.unwrap();
    assert!(
        matches!(&row(&r, DEV, "staging").decision, Decision::Promote { .. }),
        "{:?}",
        row(&r, DEV, "staging")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_goes_dev_then_staging_after_its_soak_then_prod_after_an_approval() {
    let (sb, _work, engine) = chain(&["dev", "staging", "prod"]).await;
    policy(
        &sb,
        DEV,
        "environments:\n  staging:\n    auto_merge: true\n    checks_settle: 0s\n    soak: 1h\n    health_timeout: 30s\n    scan:\n      thresholds: {CRITICAL: 0, HIGH: 0}\n  prod:\n    soak: 1h\n",
    );
    approver(&sb, "alice");
    sb.aws.push(DEV, "1.1.0", "COMPLETE", vec![]);

    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Merged { verification, .. } = &row(&r, DEV, "dev").action else {
        panic!("{:?}", row(&r, DEV, "dev"))
    };
    assert!(matches!(verification, Verification::Healthy { .. }));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Decision::Waiting { reason, .. } = &row(&r, DEV, "staging").decision else {
        panic!("{:?}", row(&r, DEV, "staging"))
    };
    assert!(reason.starts_with("soaking in dev until"), "{reason}");

    // An hour and more passes; staging takes the digest by itself.
    sb.advance(Duration::from_secs(3700));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Merged { verification, .. } = &row(&r, DEV, "staging").action else {
        panic!("{:?}", row(&r, DEV, "staging"))
    };
    assert!(matches!(verification, Verification::Healthy { .. }));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(&row(&r, DEV, "prod").decision, Decision::Waiting { reason, .. } if reason.starts_with("soaking in staging")),
        "{:?}",
        row(&r, DEV, "prod")
    );

    sb.advance(Duration::from_secs(3700));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { number, .. } = row(&r, DEV, "prod").action else {
        panic!("{:?}", row(&r, DEV, "prod"))
    };
    sb.advance(Duration::from_secs(1)); // comments are stamped to the second
    sb.github.comment_as(number, "alice", "/approve").unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Merged { verification, .. } = &row(&r, DEV, "prod").action else {
        panic!("{:?}", row(&r, DEV, "prod"))
    };
    assert!(matches!(verification, Verification::Healthy { .. }));

    // Every environment runs 1.1.0; each one's PR is its deployed promotion, none is left
    // waiting for a verification.
    for env in ["dev", "staging", "prod"] {
        let text = sb.github.read_file("main", &file_of(DEV, env)).unwrap();
        assert!(text.contains("newTag: \"1.1.0\""), "{env}: {text}");
    }
    let prs = sb.github.pulls();
    assert_eq!(prs.len(), 3);
    for pr in &prs {
        assert!(pr.labels.contains(&"tugboat:deployed".into()), "{pr:?}");
        assert!(!pr.labels.contains(&"tugboat:verifying".into()), "{pr:?}");
        assert_eq!(reports_on(&sb, pr.number).len(), 1);
    }
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(r.iter().all(|x| x.action == Action::None), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_tag_is_rolled_back_by_itself_marked_bad_and_not_promoted_again_until_unblocked()
{
    let (sb, engine, _w) = setup().await;
    let svc = "service_management";
    policy(&sb, svc, "environments:\n  dev:\n    rollback: auto\n");
    let before = sb.github.read_file("main", &file_of(svc, "dev")).unwrap();
    sb.aws.push(svc, "1.1.0", "COMPLETE", vec![]);
    crash(&sb, svc, "1.1.0");

    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::RolledBack {
        bad,
        number,
        verification,
        ..
    } = &row(&r, svc, "dev").action
    else {
        panic!("{:?}", row(&r, svc, "dev"))
    };
    assert!(
        matches!(verification, Verification::Healthy { .. }),
        "{verification:?}"
    );
    // The previous reference is back, byte for byte.
    assert_eq!(
        sb.github.read_file("main", &file_of(svc, "dev")).unwrap(),
        before
    );
    let bad_labels = labels(&sb, *bad);
    assert!(bad_labels.contains(&"tugboat:bad".into()), "{bad_labels:?}");
    assert!(!bad_labels.contains(&"tugboat:deployed".into()));
    assert!(!bad_labels.contains(&"tugboat:verifying".into()));
    let report = reports_on(&sb, *bad);
    assert_eq!(report.len(), 1);
    assert!(report[0].contains("Degraded"), "{report:?}");
    assert!(report[0].contains("rolls this promotion back now"));
    let rollback = labels(&sb, *number);
    assert!(
        rollback.contains(&"tugboat:rollback".into()),
        "{rollback:?}"
    );
    assert!(!rollback.contains(&"tugboat:verifying".into()));
    assert_eq!(reports_on(&sb, *number).len(), 1);

    // Never promoted again: plan and apply both say why; nothing is written.
    for mode in [Mode::Plan, Mode::Apply] {
        let r = engine.cycle(mode).await.unwrap();
        let dev = row(&r, svc, "dev");
        let Decision::Blocked { reasons, .. } = &dev.decision else {
            panic!("{dev:?}")
        };
        assert!(
            reasons[0].starts_with(&format!("marked bad after it failed in dev (PR #{bad})")),
            "{reasons:?}"
        );
        assert_eq!(dev.action, Action::None);
    }
    assert_eq!(sb.github.pulls().len(), 2);

    // An approver clears the mark; the tag is promoted again.
    sb.github.add_collaborator("alice", "write");
    sb.github.comment_as(*bad, "reader", "/unblock").unwrap();
    sb.github.add_collaborator("reader", "read");
    let ok = sb.github.comment_as(*bad, "alice", "/unblock").unwrap();
    engine.cycle(Mode::Apply).await.unwrap();
    assert!(!labels(&sb, *bad).contains(&"tugboat:bad".into()));
    assert!(
        sb.github
            .comment_records()
            .iter()
            .any(|c| c.id == ok && c.reactions.iter().any(|(_, r)| r == "+1"))
    );
    let replies: Vec<String> = sb.github.pulls()[0]
        .comments
        .iter()
        .filter(|(u, b)| u == "tugboat[bot]" && b.starts_with("@reader"))
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(replies[0].contains("not an approver"), "{replies:?}");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let dev = row(&r, svc, "dev");
    assert!(matches!(dev.decision, Decision::Promote { .. }), "{dev:?}");
    // It still crashes: promoted, and rolled back again on the same rollback branch.
    let Action::RolledBack {
        bad: again,
        verification,
        ..
    } = &dev.action
    else {
        panic!("{dev:?}")
    };
    assert_ne!(again, bad, "a new promotion PR");
    assert!(matches!(verification, Verification::Healthy { .. }));
    assert_eq!(
        sb.github.read_file("main", &file_of(svc, "dev")).unwrap(),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_manual_rollback_a_failure_is_reported_and_an_approvers_rollback_reverts_it() {
    let (sb, engine, _w) = setup().await;
    let svc = "reports_analytics"; // Helm values
    let before = sb.github.read_file("main", &file_of(svc, "dev")).unwrap();
    sb.aws.push(svc, "1.1.0", "COMPLETE", vec![]);
    crash(&sb, svc, "1.1.0");
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Merged {
        number,
        verification: Verification::Failed { .. },
        ..
    } = row(&r, svc, "dev").action
    else {
        panic!("{:?}", row(&r, svc, "dev"))
    };
    assert!(labels(&sb, number).contains(&"tugboat:deployed".into()));
    assert!(reports_on(&sb, number)[0].contains("An approver can comment `/rollback`"));

    // Not rolled back by itself; a reader's /rollback is refused.
    sb.github.add_collaborator("reader", "read");
    sb.github.comment_as(number, "reader", "/rollback").unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(row(&r, svc, "dev").action, Action::None),
        "{:?}",
        row(&r, svc, "dev")
    );
    assert_ne!(
        sb.github.read_file("main", &file_of(svc, "dev")).unwrap(),
        before
    );

    sb.github.add_collaborator("alice", "write");
    sb.github.comment_as(number, "alice", "/rollback").unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_rolled_back(&sb, &r, svc, number, &before);
    let l = labels(&sb, number);
    assert!(l.contains(&"tugboat:bad".into()) && !l.contains(&"tugboat:deployed".into()));
}

/// Run a cycle until the first PR is merged, then stop it there (its future is dropped at
/// its next await, as a SIGKILL would leave it).
async fn stopped_after_the_merge(sb: &Sandbox, work: &tempfile::TempDir) -> u64 {
    let first = engine(sb, work, &Default::default()).await;
    let merged = async {
        loop {
            if let Some(pr) = sb
                .github
                .pulls()
                .into_iter()
                .find(|p| p.merged_at.is_some())
            {
                return pr.number;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        r = first.cycle(Mode::Apply) => panic!("the cycle ended before it could be stopped: {r:?}"),
        number = merged => number,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tugboat_stopped_during_verification_is_resumed_by_the_next_one_and_reported_once() {
    let (sb, _engine, work) = setup().await;
    sb.argocd.set_rollout(Duration::from_secs(2));
    sb.aws.push(DEV, "1.1.0", "COMPLETE", vec![]);
    let number = stopped_after_the_merge(&sb, &work).await;
    assert!(labels(&sb, number).contains(&"tugboat:verifying".into()));
    assert!(reports_on(&sb, number).is_empty());

    let next = engine(&sb, &work, &Default::default()).await;
    let r = next.cycle(Mode::Apply).await.unwrap();
    let Action::Merged {
        number: resumed,
        verification,
        ..
    } = &row(&r, DEV, "dev").action
    else {
        panic!("{:?}", row(&r, DEV, "dev"))
    };
    assert_eq!(*resumed, number);
    assert!(matches!(verification, Verification::Healthy { .. }));
    let r = next.cycle(Mode::Apply).await.unwrap();
    assert_eq!(row(&r, DEV, "dev").action, Action::None);
    assert_eq!(reports_on(&sb, number).len(), 1);
    let l = labels(&sb, number);
    assert!(l.contains(&"tugboat:deployed".into()) && !l.contains(&"tugboat:verifying".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argo_cd_that_refuses_tugboat_gives_a_clear_error_and_never_a_healthy_report() {
    let (sb, _engine, work) = setup().await;
    sb.argocd.set_rollout(Duration::from_secs(1));
    sb.aws.push(DEV, "1.1.0", "COMPLETE", vec![]);
    let number = stopped_after_the_merge(&sb, &work).await;

    // The token loses its RBAC: the verification is not known, never Healthy, never failed
    // (which would roll back), and it stays to be verified.
    sb.argocd.deny_token(Some(&sb.argocd_token));
    let next = engine(&sb, &work, &Default::default()).await;
    let r = next.cycle(Mode::Apply).await.unwrap();
    let Action::Merged {
        verification: Verification::Unknown { reason },
        sha,
        ..
    } = &row(&r, DEV, "dev").action
    else {
        panic!("{:?}", row(&r, DEV, "dev"))
    };
    assert!(
        reason.contains("application 'user-service-dev': HTTP 403: permission denied"),
        "{reason}"
    );
    assert!(
        sb.github
            .statuses(sha)
            .iter()
            .any(|(c, s, _)| c == "tugboat/deploy" && s == "error")
    );
    assert!(reports_on(&sb, number).is_empty());
    assert!(labels(&sb, number).contains(&"tugboat:verifying".into()));

    // Access back: verified and reported once.
    sb.argocd.deny_token(None);
    let r = next.cycle(Mode::Apply).await.unwrap();
    assert_healthy(&r, DEV, "dev");
    assert_eq!(reports_on(&sb, number).len(), 1);

    // A wrong token: nothing is merged, and the error names the application.
    std::fs::write(sb.dir().join("argocd-token"), "not-the-token").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let wrong = engine(&sb, &elsewhere, &Default::default()).await;
    sb.aws.push(DEV, "1.2.0", "COMPLETE", vec![]);
    let r = wrong.cycle(Mode::Apply).await.unwrap();
    let Action::Failed { error } = &row(&r, DEV, "dev").action else {
        panic!("{:?}", row(&r, DEV, "dev"))
    };
    let message = error.to_string();
    assert!(
        message.contains("application 'user-service-dev': HTTP 401: the token was refused"),
        "{message}"
    );
    assert!(
        sb.github
            .pulls()
            .iter()
            .all(|p| p.number == number || p.merged_at.is_none())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_automated_sync_tugboat_asks_argo_cd_to_sync_the_merge_when_the_policy_says_so() {
    let (sb, engine, _w) = setup().await;
    policy(&sb, DEV, "environments:\n  dev:\n    sync: true\n");
    sb.argocd.set_automated(&app_name(DEV, "dev"), false);
    sb.aws.push(DEV, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_healthy(&r, DEV, "dev");
    assert_eq!(sb.argocd.calls().get("POST sync"), Some(&1));

    // While an operation runs, Argo CD refuses another; the adapter says "busy", not "failed".
    use tugboat::ports::{Deployer, SyncStart};
    let argo = tugboat::adapters::argocd::ArgoCd::new(
        &sb.argocd_url,
        std::sync::Arc::new(tugboat::credentials::Rotating::fixed(
            tugboat::secret::Secret::new(sb.argocd_token.clone()),
            "argocd.token",
        )),
        &tugboat::adapters::argocd::ArgoOptions {
            ca_bundle: None,
            hard_refresh: false,
        },
        &Default::default(),
    )
    .unwrap();
    let head = sb.github.branch_sha("main").unwrap();
    let app = app_name(DEV, "dev");
    assert_eq!(argo.sync(&app, &head).await.unwrap(), SyncStart::Started);
    let SyncStart::Busy(why) = argo.sync(&app, &head).await.unwrap() else {
        panic!()
    };
    assert!(
        why.contains("another operation is already in progress"),
        "{why}"
    );
    // A missing application is named, and said to be missing.
    let e = argo.app("no-such-app", false).await.unwrap_err();
    assert_eq!(e.kind, tugboat::ports::ErrorKind::NotFound);
    assert_eq!(
        e.message,
        "application 'no-such-app': HTTP 404: no such application (check argocd_application)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argo_cd_deny_window_holds_the_merge_until_it_lifts() {
    let (sb, engine, _w) = setup().await;
    sb.argocd.set_deny_window(&app_name(DEV, "dev"), true);
    sb.aws.push(DEV, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Plan).await.unwrap();
    let Decision::Waiting { reason, .. } = &row(&r, DEV, "dev").decision else {
        panic!("{:?}", row(&r, DEV, "dev"))
    };
    assert_eq!(
        reason,
        "an Argo CD sync window denies syncs (deny 0 0 * * * for 24h)"
    );
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::WaitingForSyncWindow { windows, .. } = &row(&r, DEV, "dev").action else {
        panic!("{:?}", row(&r, DEV, "dev"))
    };
    assert_eq!(windows, &["deny 0 0 * * * for 24h".to_owned()]);
    assert!(sb.github.pulls()[0].merged_at.is_none());
    sb.argocd.set_deny_window(&app_name(DEV, "dev"), false);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_healthy(&r, DEV, "dev");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_operation_fails_the_verification_with_argo_cds_own_message() {
    let (sb, engine, _w) = setup().await;
    sb.argocd
        .mark_failing(&format!("{}:1.1.0", sandbox::image_of(DEV)));
    sb.aws.push(DEV, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Merged {
        verification: Verification::Failed { reason },
        ..
    } = &row(&r, DEV, "dev").action
    else {
        panic!("{:?}", row(&r, DEV, "dev"))
    };
    assert!(
        reason.starts_with("sync operation Failed: one or more objects failed to apply"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_source_application_is_verified_by_the_revision_of_its_git_source() {
    let (sb, engine, _w) = setup().await;
    sb.argocd.set_multi_source(&app_name(DEV, "dev"));
    sb.aws.push(DEV, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert_healthy(&r, DEV, "dev");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_merge_method_makes_a_merge_commit_or_a_rebase_and_both_verify() {
    for method in ["merge", "rebase"] {
        let sb = start(Options::default()).await;
        let work = tempfile::tempdir().unwrap();
        let toml = sb.config_toml(&work.path().join("w")).replace(
            "base_branch = \"main\"\n",
            &format!("base_branch = \"main\"\nmerge_method = \"{method}\"\n"),
        );
        assert!(toml.contains("merge_method"));
        let engine = crate::common::engine_from(&sb, &toml, &Default::default()).await;
        sb.aws.push(DEV, "1.1.0", "COMPLETE", vec![]);
        let r = engine.cycle(Mode::Apply).await.unwrap();
        let Action::Merged {
            sha,
            verification: Verification::Healthy { .. },
            ..
        } = &row(&r, DEV, "dev").action
        else {
            panic!("{method}: {:?}", row(&r, DEV, "dev"))
        };
        let (parents, message) = sb.github.commit(sha).unwrap();
        match method {
            "merge" => {
                assert_eq!(parents.len(), 2, "a merge commit");
                assert!(
                    message.starts_with("Promote user_service to dev: 1.1.0"),
                    "{message}"
                );
            }
            _ => {
                assert_eq!(parents.len(), 1);
                assert!(
                    message.starts_with("Promote user_service to dev: 1.1.0\n\n"),
                    "the promotion commit itself: {message}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_stopped_after_the_bad_mark_is_finished_by_the_next_tugboat() {
    let (sb, first, work) = setup().await;
    let svc = "staff_management";
    let before = sb.github.read_file("main", &file_of(svc, "dev")).unwrap();
    sb.aws.push(svc, "1.1.0", "COMPLETE", vec![]);
    crash(&sb, svc, "1.1.0");
    let r = first.cycle(Mode::Apply).await.unwrap();
    let Action::Merged { number, .. } = row(&r, svc, "dev").action else {
        panic!("{:?}", row(&r, svc, "dev"))
    };
    // What a tugboat stopped right after marking the digest bad leaves: the label, no revert.
    let ports = tugboat::app::ports(
        &tugboat::config::Config::parse(
            &sb.config_toml(&work.path().join("w")),
            "sandbox.toml",
            std::iter::empty(),
        )
        .unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    ports
        .forge
        .add_labels(number, &["tugboat:bad".to_owned()])
        .await
        .unwrap();
    drop(first);

    let next = engine(&sb, &work, &Default::default()).await;
    let r = next.cycle(Mode::Apply).await.unwrap();
    assert_rolled_back(&sb, &r, svc, number, &before);
    let r = next.cycle(Mode::Apply).await.unwrap();
    assert_eq!(row(&r, svc, "dev").action, Action::None, "rolled back once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_argo_cd_stops_the_merge_with_a_clear_error() {
    let sb = start(Options::default()).await;
    let work = tempfile::tempdir().unwrap();
    // Nothing listens on a port just released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let toml = sb.config_toml(&work.path().join("w")).replace(
        &format!("url = \"{}\"", sb.argocd_url),
        &format!("url = \"http://{closed}\""),
    );
    let engine = crate::common::engine_from(&sb, &toml, &Default::default()).await;
    sb.aws.push(DEV, "1.1.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::Failed { error } = &row(&r, DEV, "dev").action else {
        panic!("{:?}", row(&r, DEV, "dev"))
    };
    let message = error.to_string();
    assert!(
        message.starts_with(
            "cannot read the sync windows: argocd ApplicationService_GetApplicationSyncWindows: application 'user-service-dev': Argo CD unreachable:"
        ),
        "{message}"
    );
    assert_eq!(
        (error.step.as_str(), error.metric_label()),
        ("merge", "transient"),
        "the failure is typed: the merge step, a transient Argo CD failure"
    );
    assert!(sb.github.pulls().iter().all(|p| p.merged_at.is_none()));
}

/// The open hold issues of the sandbox.
fn open_holds(sb: &Sandbox) -> Vec<sandbox::github::IssueRec> {
    sb.github
        .issues()
        .into_iter()
        .filter(|i| i.state == "open" && i.labels.iter().any(|l| l == "tugboat:hold"))
        .collect()
}

fn held(r: &[tugboat::engine::EnvReport], svc: &str, env: &str) -> tugboat::domain::hold::Hold {
    match &row(r, svc, env).decision {
        Decision::Held { hold, .. } => hold.clone(),
        other => panic!("{svc} in {env} is not held: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_rollback_on_main_is_held_through_a_restart_and_a_second_replica_until_an_approver_resumes()
 {
    let (sb, first, work) = setup().await;
    let path = file_of(DEV, "dev");
    let before = sb.github.read_file("main", &path).unwrap();
    sb.aws.push(DEV, "1.1.0", "COMPLETE", vec![]);
    assert_healthy(&first.cycle(Mode::Apply).await.unwrap(), DEV, "dev");
    // In the middle of an incident, on-call puts 1.0.0 back by hand.
    let manual = sb
        .github
        .commit_as("main", &path, &before, "oncall")
        .unwrap();
    sb.advance(Duration::from_secs(60));

    let r = first.cycle(Mode::Apply).await.unwrap();
    let hold = held(&r, DEV, "dev");
    assert_eq!(
        (hold.by.as_deref(), hold.commit.as_deref()),
        (Some("oncall"), Some(manual.as_str()))
    );
    assert!(matches!(
        row(&r, DEV, "dev").action,
        Action::EnvironmentHeld { .. }
    ));
    let issues = open_holds(&sb);
    assert_eq!(issues.len(), 1);
    let issue = issues[0].number;
    assert!(issues[0].body.contains("/resume"), "{}", issues[0].body);
    let prs = sb.github.pulls().len();

    // A restarted tugboat and a second replica, at once, for several cycles: still held.
    drop(first);
    let restarted = engine(&sb, &work, &Default::default()).await;
    let other = tempfile::tempdir().unwrap();
    let replica = engine(&sb, &other, &Default::default()).await;
    for _ in 0..3 {
        sb.advance(Duration::from_secs(60));
        let (a, b) = tokio::join!(restarted.cycle(Mode::Apply), replica.cycle(Mode::Apply));
        for r in [a.unwrap(), b.unwrap()] {
            held(&r, DEV, "dev");
            assert_eq!(row(&r, DEV, "dev").action, Action::None);
        }
    }
    assert_eq!(
        sb.github.read_file("main", &path).unwrap(),
        before,
        "the rollback stands"
    );
    assert_eq!((sb.github.pulls().len(), open_holds(&sb).len()), (prs, 1));

    // Only an approver resumes.
    sb.github.add_collaborator("mallory", "read");
    sb.github.comment_as(issue, "mallory", "/resume").unwrap();
    let r = restarted.cycle(Mode::Apply).await.unwrap();
    held(&r, DEV, "dev");
    let answers = &open_holds(&sb)[0].comments;
    assert!(
        answers.iter().any(|(_, b)| b.contains("not an approver")),
        "{answers:?}"
    );
    approver(&sb, "alice");
    sb.github.comment_as(issue, "alice", "/resume").unwrap();
    let r = replica.cycle(Mode::Apply).await.unwrap();
    assert_healthy(&r, DEV, "dev");
    assert!(open_holds(&sb).is_empty(), "the hold's issue is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argo_cd_rollback_after_a_promotion_holds_the_environment() {
    let (sb, engine, _w) = setup().await;
    let app = app_name(DEV, "dev");
    sb.aws.push(DEV, "1.1.0", "COMPLETE", vec![]);
    assert_healthy(&engine.cycle(Mode::Apply).await.unwrap(), DEV, "dev");
    // Later, `argocd app set --sync-policy none`, then `argocd app rollback` to the earlier
    // entry (Argo CD stamps operations to the second).
    sb.advance(Duration::from_secs(60));
    sb.argocd.set_automated(&app, false);
    sb.argocd.rollback_as(&app, 1, "oncall").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // the stand-in's operation runs
    sb.aws.push(DEV, "1.2.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let hold = held(&r, DEV, "dev");
    assert_eq!(
        hold.cause,
        tugboat::domain::hold::Cause::ArgoRollback,
        "{hold:?}"
    );
    assert_eq!(hold.by.as_deref(), Some("oncall"));
    assert_eq!(open_holds(&sb).len(), 1);
    assert!(
        !sb.github.pulls().iter().any(|p| p.title.contains("1.2.0")),
        "nothing is promoted to a held environment"
    );
}

/// Issue 36: before a rollback PR, tugboat checks that the image it would restore can still
/// be pulled. Archived in ECR, it holds the environment and says why, instead of deploying
/// an ImagePullBackOff in the middle of an incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_to_an_archived_image_is_refused_with_a_hold_that_says_why() {
    let (sb, engine, _w) = setup().await;
    let svc = "service_management";
    policy(&sb, svc, "environments:\n  dev:\n    rollback: auto\n");
    let before = sb.github.read_file("main", &file_of(svc, "dev")).unwrap();
    let running = sb.aws.digest(svc, "1.0.0").unwrap();
    sb.aws.archive(svc, &running);
    sb.aws.push(svc, "1.1.0", "COMPLETE", vec![]);
    crash(&sb, svc, "1.1.0");

    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::EnvironmentHeld { issue, cause, .. } = &row(&r, svc, "dev").action else {
        panic!("{:?}", row(&r, svc, "dev"))
    };
    assert_eq!(*cause, tugboat::domain::hold::Cause::RollbackTargetGone);
    let holds = open_holds(&sb);
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].number, *issue);
    assert!(
        holds[0]
            .body
            .contains("which it would restore, is no longer an active image"),
        "{}",
        holds[0].body
    );
    assert_ne!(
        sb.github.read_file("main", &file_of(svc, "dev")).unwrap(),
        before,
        "no rollback to the archived image"
    );
    assert!(
        sb.github
            .pulls()
            .iter()
            .all(|p| !p.title.starts_with("Roll back")),
        "no rollback PR"
    );
    // The next cycle opens no second hold.
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(open_holds(&sb).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_issue_someone_edits_still_holds_and_is_rebuilt_from_tugboats_labels() {
    let (sb, tugboat, _work) = setup().await;
    let path = file_of(DEV, "dev");
    let before = sb.github.read_file("main", &path).unwrap();
    sb.aws.push(DEV, "1.1.0", "COMPLETE", vec![]);
    assert_healthy(&tugboat.cycle(Mode::Apply).await.unwrap(), DEV, "dev");
    sb.github
        .commit_as("main", &path, &before, "oncall")
        .unwrap();
    sb.advance(Duration::from_secs(60));
    held(&tugboat.cycle(Mode::Apply).await.unwrap(), DEV, "dev");
    let issue = open_holds(&sb)[0].number;
    // Someone with write access, not an approver, edits the hold away.
    assert!(sb.github.edit_body_as(issue, "Nothing to see here."));
    sb.aws.push(DEV, "1.2.0", "COMPLETE", vec![]);
    sb.advance(Duration::from_secs(60));
    let r = tugboat.cycle(Mode::Apply).await.unwrap();
    held(&r, DEV, "dev");
    assert_eq!(sb.github.read_file("main", &path).unwrap(), before);
    let rebuilt = &open_holds(&sb)[0];
    assert!(
        rebuilt.body.contains("tugboat rebuilt this hold") && rebuilt.body.contains("tugboat:seal"),
        "{}",
        rebuilt.body
    );
    assert_eq!(
        tugboat
            .take_forged()
            .get(&tugboat::domain::provenance::Forgery::Seal),
        Some(&1)
    );
    // An approver's /resume lifts it.
    approver(&sb, "alice");
    sb.github.comment_as(issue, "alice", "/resume").unwrap();
    sb.advance(Duration::from_secs(60));
    tugboat.cycle(Mode::Apply).await.unwrap();
    assert!(open_holds(&sb).is_empty());
}
