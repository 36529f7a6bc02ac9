//! Regression tests of what the chaos soak (`benches/soak.rs`, `tests/soak.rs`) found, each
//! reproduced alone through the soak's fault-injecting proxy (`tugboat_sandbox::chaos`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use tugboat::engine::{Action, Mode};
use tugboat::telemetry::ApiMetrics;
use tugboat_sandbox::chaos::{Chaos, Rates};
use tugboat_sandbox::{Fleet, Options, Sandbox, Style};

use crate::common::row;

/// The commit at the head of `branch` in the GitHub stand-in's repository.
fn head_of(sb: &Sandbox, branch: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(sb.github.repo_path())
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One dev service, and tugboat's configuration reaching GitHub through a chaos proxy.
struct Proxied {
    sb: Sandbox,
    chaos: std::sync::Arc<Chaos>,
    toml: String,
    _server: tokio::task::JoinHandle<()>,
    _work: tempfile::TempDir,
}

async fn proxied(seed: u64) -> Proxied {
    let sb = crate::common::start(Options {
        fleet: Fleet {
            services: vec![("user_service".into(), Style::Kustomize)],
            environments: vec!["dev".into()],
            tags: 1,
        },
        ..Options::default()
    })
    .await;
    let chaos = Chaos::new("github", &sb.github_url, seed);
    let (proxy, _server) = chaos.start().await.unwrap();
    let _work = tempfile::tempdir().unwrap();
    let toml = sb
        .config_toml(&_work.path().join("w"))
        .replace(&sb.github_url, &proxy);
    Proxied {
        sb,
        chaos,
        toml,
        _server,
        _work,
    }
}

/// With `rates` on the proxy, `user_service:1.1.0` is pushed and the dev cycle fails after
/// its proposal reached GitHub: the head it left on tugboat's branch.
async fn failed_after_its_push(
    sb: &Sandbox,
    chaos: &Chaos,
    engine: &tugboat::engine::Engine,
    rates: Rates,
) -> String {
    chaos.set(rates);
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let dev = &row(&reports, "user_service", "dev").action;
    assert!(matches!(dev, Action::Failed { .. }), "{dev:?}");
    head_of(sb, "tugboat/dev/user_service").expect("the push was taken")
}

/// Found by the soak: a push the server took but whose answer was lost (a 502 from a proxy
/// after the write, a cut connection) left tugboat's own commit on the branch, and the next
/// cycle, not knowing it, took it for a stranger's: it replaced it with a new commit, which
/// voided the approvals given to it (with pushes failing now and then, prod PRs waited for
/// approvals again and again). In dev, where nobody approves, the same mistake replaces the
/// commit needlessly; that is what is checked here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_whose_answer_was_lost_is_still_tugboats_own_commit_and_is_not_replaced() {
    let Proxied {
        sb,
        chaos,
        toml,
        _server,
        _work,
    } = proxied(7).await;
    let engine = crate::common::engine_from(&sb, &toml, &ApiMetrics::default()).await;

    // The dev proposal's push reaches the server; no answer to it reaches tugboat, nor to
    // its retry.
    let lost = failed_after_its_push(
        &sb,
        &chaos,
        &engine,
        Rates {
            error_after: 1.0,
            path: Some("/git-receive-pack".into()),
            ..Rates::default()
        },
    )
    .await;
    assert!(
        chaos.injected().contains_key("github: 5xx-after-write"),
        "{:?}",
        chaos.injected()
    );

    chaos.set(Rates::default());
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let dev = &row(&reports, "user_service", "dev").action;
    assert!(matches!(dev, Action::Merged { .. }), "{dev:?}");
    let prs: Vec<_> = sb
        .github
        .pulls()
        .into_iter()
        .filter(|p| p.head == "tugboat/dev/user_service")
        .collect();
    assert_eq!(prs.len(), 1, "{prs:?}");
    assert_eq!(
        prs[0].closed_head.as_deref(),
        Some(lost.as_str()),
        "tugboat merged its own commit, not a replacement of it"
    );
}

/// The open files of this process that are pack files under `dir`.
fn open_packs(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|t| t.starts_with(dir) && t.extension().is_some_and(|x| x == "pack"))
        .count()
}

/// Found by the soak: a replica's open files went from 70 to 447 in six minutes. Each fetch
/// that brings objects stores a pack of its own, and libgit2 keeps every pack it read open
/// and mapped: a daemon in a busy repository gathered open files and memory without end,
/// towards "too many open files". Past 16 packs the clone's packs are folded into one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_fetched_after_each_of_60_pushes_keeps_its_packs_and_open_files_few() {
    use tugboat::ports::GitOpsRepo as _;
    let sb = crate::common::start(Options {
        fleet: Fleet {
            services: vec![("user_service".into(), Style::Kustomize)],
            environments: vec!["dev".into()],
            tags: 1,
        },
        ..Options::default()
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("gitops.git");
    let git = crate::common::git_clone(&sb, &dir);
    git.sync().await.unwrap();
    for i in 0..60 {
        sb.github
            .commit_as("main", "notes.txt", &format!("push {i}\n"), "dev")
            .unwrap();
        git.sync().await.unwrap();
        assert_eq!(
            git.read("notes.txt").await.unwrap().as_deref(),
            Some(format!("push {i}\n").as_str()),
            "every fetch still reads main"
        );
    }
    let packs = std::fs::read_dir(dir.join("objects/pack"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .count();
    assert!(packs <= 17, "{packs} packs in the clone");
    assert!(open_packs(&dir) <= 17, "{} packs open", open_packs(&dir));
    // Everything main had before is still there.
    let file = tugboat_sandbox::file_of("user_service", "dev");
    assert!(git.read(&file).await.unwrap().is_some());
}

/// Found by the soak: a verification's failure was reported twice on one PR. octocrab, as
/// built by default, sends a request again after any 5xx or cut connection, writes included,
/// and a 5xx may come after GitHub made the write (a gateway timing out on a slow backend):
/// the retry made a second comment. Writes are now sent once; a failed one fails the step,
/// and the next cycle reads what is there before it writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answered_with_a_5xx_after_github_made_it_is_not_sent_again() {
    use tugboat::ports::{Conversation, Issues};
    let sb = crate::common::start(Options::default()).await;
    let chaos = Chaos::new("github", &sb.github_url, 11);
    let (proxy, _server) = chaos.start().await.unwrap();
    let github = crate::common::github_at(&sb, &proxy).await;
    let issue = github.open_issue("a record", "", &[]).await.unwrap();

    chaos.set(Rates {
        error_after: 1.0,
        path: Some("/issues".into()),
        ..Rates::default()
    });
    let opened = github.open_issue("another record", "", &[]).await;
    let commented = github.comment(issue.number, "a report").await;
    chaos.set(Rates::default());

    assert!(opened.is_err(), "the 502 is the step's failure: {opened:?}");
    assert!(commented.is_err(), "{commented:?}");
    let issues = sb.github.issues();
    let titled = |t: &str| issues.iter().filter(|i| i.title == t).count();
    assert_eq!(titled("another record"), 1, "{issues:#?}");
    let reports = sb
        .github
        .comment_records()
        .into_iter()
        .filter(|c| c.number == issue.number && c.body == "a report")
        .count();
    assert_eq!(reports, 1, "the comment was made once, not once per retry");
    assert_eq!(chaos.injected().get("github: 5xx-after-write"), Some(&2));
    // Reads are still sent again after a 5xx: a read twice changes nothing.
    chaos.set(Rates {
        error_before: 1.0,
        path: Some("/issues".into()),
        ..Rates::default()
    });
    assert!(github.comments(issue.number).await.is_err());
    assert_eq!(
        chaos.injected().get("github: 5xx"),
        Some(&4),
        "one try and three more"
    );
}

/// Found by the soak: after a `kill -9` or a lost lease between a push and its gate report,
/// the next process took tugboat's own head for a stranger's and replaced it (voiding any
/// approval). GitHub's record of the push (the repository's activity) names who pushed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_pushed_before_a_restart_and_never_reported_is_kept_by_the_next_process() {
    use tugboat::ports::Checks as _;
    let Proxied {
        sb,
        chaos,
        toml,
        _server,
        _work,
    } = proxied(13).await;
    let first = crate::common::engine_from(&sb, &toml, &ApiMetrics::default()).await;

    // The proposal is pushed; no report on it reaches GitHub.
    let pushed = failed_after_its_push(
        &sb,
        &chaos,
        &first,
        Rates {
            error_before: 1.0,
            path: Some("/statuses/".into()),
            ..Rates::default()
        },
    )
    .await;
    drop(first);
    chaos.set(Rates::default());

    let github = crate::common::github_adapter(&sb).await;
    let record = github
        .pushed_by("tugboat/dev/user_service", &pushed)
        .await
        .unwrap()
        .expect("GitHub recorded the push");
    assert_eq!(record.actor.as_deref(), Some(tugboat_sandbox::github::BOT));

    let next = crate::common::engine_from(&sb, &toml, &ApiMetrics::default()).await;
    let reports = next.cycle(Mode::Apply).await.unwrap();
    let dev = &row(&reports, "user_service", "dev").action;
    assert!(matches!(dev, Action::Merged { .. }), "{dev:?}");
    let pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.head == "tugboat/dev/user_service")
        .unwrap();
    assert_eq!(
        pr.closed_head.as_deref(),
        Some(pushed.as_str()),
        "its own head merged"
    );
    assert!(
        !pr.comments
            .iter()
            .any(|(_, b)| b.contains("was not pushed by tugboat")),
        "{:?}",
        pr.comments
    );

    // A person's push is recorded as theirs.
    let theirs = sb
        .github
        .commit_as("tugboat/dev/user_service", "notes.txt", "mine\n", "mallory")
        .unwrap();
    let record = github
        .pushed_by("tugboat/dev/user_service", &theirs)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.actor.as_deref(), Some("mallory"));
}
