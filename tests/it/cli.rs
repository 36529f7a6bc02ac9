//! The `tugboat` binary's offline commands, run as a user would run them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use tugboat_sandbox::WithoutHarnessVars;

/// This build's `tugboat`, without the test run's own `TUGBOAT_*` variables.
fn tugboat_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tugboat"));
    cmd.without_harness_vars();
    cmd
}

fn tugboat(args: &[&str]) -> Output {
    tugboat_command()
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

fn write(dir: &Path, name: &str, body: &str, mode: u32) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p.display().to_string()
}

#[test]
fn set_image_edits_in_place_keeps_permissions_and_reports_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let body = "spec:\r\n  initContainers:\r\n  - image: r.io/app:1.0 # same\r\n  containers:\r\n  - image: 'r.io/app:1.0'\r\n";
    let f = write(dir.path(), "deploy.yaml", body, 0o640);
    let out = tugboat(&["set-image", &f, "r.io/app", "1.10"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{f}:3: r.io/app:1.0 -> r.io/app:1.10\n{f}:5: r.io/app:1.0 -> r.io/app:1.10\n")
    );
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        body.replace(":1.0", ":1.10")
    );
    let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);

    let again = tugboat(&["set-image", &f, "r.io/app", "1.10"]);
    assert!(again.status.success());
    assert!(text(&again.stdout).contains("nothing changed"));
}

#[test]
fn set_image_diff_prints_a_unified_diff_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "v.yaml",
        "image:\n  repository: r.io/a\n  tag: v1\n",
        0o644,
    );
    let out = tugboat(&["set-image", &f, "r.io/a", "v2", "--diff"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("-  tag: v1\n+  tag: v2\n"),
        "{}",
        text(&out.stdout)
    );
    assert!(std::fs::read_to_string(&f).unwrap().contains("tag: v1"));
}

#[test]
fn set_image_fails_clearly_and_leaves_the_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let body = "a: [1,\nimage: r.io/a:1\n";
    let bad = write(dir.path(), "bad.yaml", body, 0o644);
    let good = write(dir.path(), "good.yaml", "image: r.io/a:1\n", 0o644);
    let cases: [(&[&str], &str); 5] = [
        (
            &["set-image", &bad, "r.io/a", "2"],
            "bad.yaml: not valid YAML at line",
        ),
        (
            &["set-image", &good, "r.io/b", "2"],
            "no image reference for repository 'r.io/b'; the file references: r.io/a",
        ),
        (
            &["set-image", &good, "r.io/a", "two words"],
            "tag 'two words' is invalid",
        ),
        (
            &["set-image", &good, "r.io/a", "2", "--digest", "sha256:abc"],
            "digest 'sha256:abc' is invalid",
        ),
        (
            &["set-image", &good, "r.io/a", &"x".repeat(129)],
            "is invalid",
        ),
    ];
    for (args, expected) in cases {
        let out = tugboat(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            text(&out.stderr).contains(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(std::fs::read_to_string(&bad).unwrap(), body);
    assert_eq!(std::fs::read_to_string(&good).unwrap(), "image: r.io/a:1\n");
}

/// A loopback server that answers one request with `status`, then closes.
fn answer_once(status: &str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n");
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(reply.as_bytes());
        }
    });
    format!("http://{addr}/healthz")
}

#[test]
fn health_exits_zero_only_when_healthz_answers_200() {
    let ok = tugboat(&["health", "--url", &answer_once("200 OK")]);
    assert!(ok.status.success(), "{}", text(&ok.stdout));
    assert!(text(&ok.stdout).starts_with("healthy: "));

    let sick = tugboat(&["health", "--url", &answer_once("503 Service Unavailable")]);
    assert_eq!(sick.status.code(), Some(1));
    assert!(
        text(&sick.stdout).contains("answered 503"),
        "{}",
        text(&sick.stdout)
    );

    // Nobody listening: a port that was just free.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = tugboat(&[
        "health",
        "--url",
        &format!("http://127.0.0.1:{port}/healthz"),
        "--timeout",
        "2s",
    ]);
    assert_eq!(down.status.code(), Some(1));
    assert!(text(&down.stdout).starts_with("unhealthy: "));
}

#[test]
fn the_demo_at_trace_level_never_prints_a_token_on_any_stream() {
    // Every sandbox token starts with `sandbox_gh_` or `sandbox_argo_` followed by random hex,
    // and is sent only in auth headers and git credentials.
    let out = tugboat_command()
        .arg("demo")
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout
            .contains("body: **Deployed.** Argo CD reports `user-service-dev` Synced and Healthy"),
        "the demo shows each verification: {stdout}"
    );
    assert!(
        stderr.len() > 100_000,
        "trace logs were written ({} bytes)",
        stderr.len()
    );
    for stream in [&stdout, &stderr] {
        for secret in ["sandbox_gh_", "sandbox_argo_"] {
            assert!(!stream.contains(secret), "a token leaked: {secret}");
        }
        assert!(!stream.to_ascii_lowercase().contains("bearer sandbox"));
    }
}

#[test]
fn as_a_github_app_at_trace_level_tugboat_never_prints_the_key_a_jwt_or_a_token() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sb = rt
        .block_on(tugboat_sandbox::Sandbox::start(
            tugboat_sandbox::Options::default(),
        ))
        .unwrap();
    // Short-lived tokens: the cycle renews some, so renewals are in the logs too.
    sb.github
        .app
        .set_token_ttl(std::time::Duration::from_secs(30));
    sb.aws.push("user_service", "1.2.0", "COMPLETE", vec![]);
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "tugboat.toml",
        &sb.config_toml_as_app(&dir.path().join("work")),
        0o600,
    );
    let out = tugboat_command()
        .args(["once", "--config", &config])
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(sb.github.app.tokens_issued() >= 1);
    let key_line = sb
        .github
        .app
        .private_key_pem()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        text(&out.stderr).contains("authenticated as a GitHub App"),
        "the App was used"
    );
    // What tugboat wrote on GitHub: PR bodies and titles, comments, check runs.
    let mut written: Vec<String> = sb
        .github
        .pulls()
        .into_iter()
        .flat_map(|p| {
            let comments = p.comments.into_iter().map(|(_, body)| body);
            [p.title, p.body].into_iter().chain(comments)
        })
        .collect();
    let runs = sb.github.all_check_runs();
    assert!(
        !runs.is_empty(),
        "as an App, the gate and deploy are check runs"
    );
    written.extend(
        runs.into_iter()
            .flat_map(|c| [c.title, c.summary, c.details_url].into_iter().flatten()),
    );
    for stream in [text(&out.stdout), text(&out.stderr), written.join("\n")] {
        assert!(
            !stream.contains(&key_line) && !stream.contains("PRIVATE KEY"),
            "the key leaked"
        );
        // A JWT's header is base64url JSON, which always begins `eyJ`.
        assert!(!stream.contains("eyJ"), "a JWT leaked");
        // The stand-in's installation tokens begin `sbx_`.
        assert!(!stream.contains("sbx_"), "an installation token leaked");
    }
}

#[test]
fn rescan_names_an_unknown_service_and_a_dry_run_prints_the_table_and_writes_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sb = rt
        .block_on(tugboat_sandbox::Sandbox::start(
            tugboat_sandbox::Options::default(),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "tugboat.toml",
        &sb.config_toml(&dir.path().join("work")),
        0o600,
    );
    let out = tugboat(&["rescan", "--config", &config, "--service", "billing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--service billing: no such service in"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("configured: user_service, "));
    let out = tugboat(&["rescan", "--config", &config, "--env", "qa"]);
    assert!(
        text(&out.stderr).contains("--env qa: no such environment; configured: dev, prod"),
        "{}",
        text(&out.stderr)
    );

    let out = tugboat(&[
        "rescan",
        "--config",
        &config,
        "--service",
        "user_service",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("SERVICE       ENV   IMAGE"), "{table}");
    assert!(
        table.contains("user_service  dev   user_service:1.0.0"),
        "{table}"
    );
    assert!(
        table.contains("1 image(s), basic scanning: 0 scan(s) started"),
        "{table}"
    );
    assert!(sb.github.issues().is_empty());
    assert_eq!(sb.aws.calls().get("StartImageScan"), None);

    // `plan --output json` is for machines: one row per service and environment.
    let out = tugboat(&["plan", "--config", &config, "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = plan["rows"].as_array().unwrap();
    assert_eq!((plan["version"].as_u64(), rows.len()), (Some(1), 12));
    let first = &rows[0];
    assert_eq!(first["service"], "user_service");
    assert_eq!(first["decision"], "up-to-date");
    assert_eq!(first["action"]["kind"], "none");
    assert_eq!(first["policy"][0]["name"], "/salon/promotion/defaults");
    assert_eq!(
        plan["write_budget"],
        serde_json::Value::Null,
        "nothing to promote"
    );

    // With a promotion to make, a plan says what it would cost against GitHub's write budget.
    sb.aws.push("staff_management", "1.1.0", "COMPLETE", vec![]);
    let out = tugboat(&["plan", "--config", &config]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("This plan's 1 promotion(s) would spend about 7 writes"),
        "{}",
        text(&out.stdout)
    );
    let out = tugboat(&["plan", "--config", &config, "--output", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["write_budget"]["writes"], 7, "{plan:#}");
    assert_eq!(sb.github.pulls().len(), 0, "a plan writes nothing");

    // A plan says what main requires of a merge, and warns this token install that its
    // unsigned commits will be refused.
    sb.github.protect(tugboat_sandbox::Protection {
        required_checks: vec!["lint".into()],
        signed_commits: true,
        ..Default::default()
    });
    let out = tugboat(&["plan", "--config", &config]);
    let table = text(&out.stdout);
    assert!(
        table.contains(
            "main requires: check lint; signed commits\nwarning: main requires signed commits"
        ),
        "{table}"
    );
    let out = tugboat(&["plan", "--config", &config, "--output", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["branch_rules"]["required_checks"][0], "lint",
        "{plan:#}"
    );
    assert_eq!(plan["branch_rules"]["signed_commits"], true);
}

#[test]
fn tugboat_run_catches_up_a_missed_rescan_slot_at_start_opens_the_issue_and_stops_on_sigterm() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sb = rt
        .block_on(tugboat_sandbox::Sandbox::start(
            tugboat_sandbox::Options::default(),
        ))
        .unwrap();
    let digest = sb.aws.digest("user_service", "1.0.0").unwrap();
    sb.aws.set_scan(
        "user_service",
        &digest,
        "COMPLETE",
        vec![tugboat_sandbox::SeedFinding {
            id: "CVE-2026-7777".into(),
            severity: "CRITICAL".into(),
            package: None,
            status: None,
        }],
    );
    let dir = tempfile::tempdir().unwrap();
    // Every minute: the previous minute's slot was missed (tugboat was not running) and is
    // less than the grace late, so it runs once at start-up.
    let toml = sb.config_toml(&dir.path().join("work")).replacen(
        "[[services]]",
        "[schedules.rescan]\ncron = \"* * * * *\"\ngrace = \"1h\"\n\n[[services]]",
        1,
    );
    let config = write(dir.path(), "tugboat.toml", &toml, 0o600);
    let child = tugboat_command()
        .args(["run", "--config", &config])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The rescan's issues (the printed config also keeps the dashboard issue).
    let security = || {
        sb.github
            .issues()
            .into_iter()
            .filter(|i| i.labels.iter().any(|l| l == "security"))
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while security().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let log = text(&out.stderr);
    assert!(out.status.success(), "graceful exit on SIGTERM: {log}");
    let issues = security();
    assert_eq!(issues.len(), 1, "{log}");
    assert!(issues[0].body.contains("CVE-2026-7777"));
    let dashboards = sb.github.issues().len() - issues.len();
    assert!(dashboards <= 1, "at most one dashboard issue besides");
    assert!(log.contains("rescan finished"), "{log}");
    assert_eq!(
        sb.github
            .read_file("tugboat-ledger", "schedules.json")
            .map(|s| s.contains("\"rescan\"")),
        Some(true),
        "the slot is claimed in the ledger"
    );
}

/// A sandbox, and a directory with `tugboat.toml` configuring tugboat as its GitHub App.
fn app_sandbox(rt: &tokio::runtime::Runtime) -> (tugboat_sandbox::Sandbox, tempfile::TempDir) {
    let sb = rt
        .block_on(tugboat_sandbox::Sandbox::start(
            tugboat_sandbox::Options::default(),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = sb.config_toml_as_app(&dir.path().join("work"));
    write(dir.path(), "tugboat.toml", &toml, 0o600);
    (sb, dir)
}

/// `tugboat run` on `config`, a cycle each second, its log piped.
fn run_each_second(config: &str) -> std::process::Child {
    tugboat_command()
        .args(["run", "--config", config])
        .env("TUGBOAT_ENGINE_INTERVAL", "1s")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Found by the chaos soak: a replica restarted while GitHub answered its App's first
/// request with the secondary rate limit's 403 exited ("finding its installation"), and
/// stayed down. A failure that passes (a 5xx, a cut connection, a rate limit) is now waited
/// out at start, 1 s, 2 s, 4 s… apart within the startupProbe's minute; a refusal still
/// stops it at once (`e2e.rs`: a wrong key).
#[test]
fn tugboat_run_started_while_github_rate_limits_it_waits_and_starts_instead_of_exiting() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sb, dir) = app_sandbox(&rt);
    let config = dir.path().join("tugboat.toml").display().to_string();
    sb.github.throttle(2, true);
    sb.aws.push("user_service", "1.5.0", "COMPLETE", vec![]);
    let child = run_each_second(&config);
    let merged = || {
        sb.github.pulls().iter().any(|p| {
            p.head.ends_with("dev/user_service")
                && p.title.ends_with("1.5.0")
                && p.merged_at.is_some()
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !merged() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = text(&out.stderr);
    assert!(merged(), "started and promoted: {log}");
    assert!(
        log.contains("cannot start yet") && log.contains("secondary rate limit"),
        "it said why it waited: {log}"
    );
    assert!(out.status.success(), "graceful exit on SIGTERM: {log}");
}

#[test]
fn tugboat_run_as_an_app_lives_through_several_token_expiries_and_keeps_promoting() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sb, dir) = app_sandbox(&rt);
    let config = dir.path().join("tugboat.toml").display().to_string();
    let child = run_each_second(&config);
    let merged = |svc: &str, tag: &str| {
        sb.github.pulls().iter().any(|p| {
            p.head.ends_with(&format!("dev/{svc}"))
                && p.title.ends_with(tag)
                && p.merged_at.is_some()
        })
    };
    let rounds = [
        ("user_service", "1.5.0"),
        ("staff_management", "1.5.0"),
        ("appointment_service", "1.5.0"),
    ];
    // Started: it holds its first installation token.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while sb.github.app.tokens_issued() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut done = 0;
    for (svc, tag) in rounds {
        // Every token issued so far expires (an hour passes, as far as GitHub is concerned).
        sb.github.app.expire_tokens();
        sb.aws.push(svc, tag, "COMPLETE", vec![]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !merged(svc, tag) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if !merged(svc, tag) {
            break;
        }
        done += 1;
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = text(&out.stderr);
    assert_eq!(done, rounds.len(), "{log}");
    assert!(out.status.success(), "graceful exit on SIGTERM: {log}");
    // A first token, then one renewal per expiry at least (a renewal ahead of expiry may add
    // one), and GitHub never refused the App's JWT.
    let issued = sb.github.app.tokens_issued();
    assert!(
        issued > rounds.len(),
        "{issued} tokens for {} expiries",
        rounds.len()
    );
    assert!(sb.github.app.refused_jwts().is_empty());
    // Every promotion commit was GitHub's, signed.
    for p in sb.github.pulls().iter().filter(|p| p.merged_at.is_some()) {
        assert!(
            sb.github.verified(p.closed_head.as_deref().unwrap()),
            "{}",
            p.title
        );
    }
}

#[test]
fn tugboat_run_with_a_ten_minute_interval_opens_the_pr_of_a_pushed_image_through_the_event_queue() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sb = rt
        .block_on(tugboat_sandbox::Sandbox::start(
            tugboat_sandbox::Options::default(),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The printed configuration reads the sandbox's event queue.
    let toml = sb.config_toml(&dir.path().join("work"));
    assert!(toml.contains("[events]"), "{toml}");
    let config = write(dir.path(), "tugboat.toml", &toml, 0o600);
    let child = tugboat_command()
        .args(["run", "--config", &config])
        .env("TUGBOAT_ENGINE_INTERVAL", "10m")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let queue = tugboat_sandbox::sqs::EVENTS_QUEUE;
    // The first (full) cycle is done and the listener long-polls the queue.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let calls = |op: &str| sb.aws.calls().get(op).copied().unwrap_or(0);
    while (calls("ReceiveMessage") == 0 || calls("DescribeImages") < 6)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let listed = calls("DescribeImages");
    let pushed = std::time::Instant::now();
    sb.aws.push("staff_management", "1.6.0", "COMPLETE", vec![]);
    let opened = || {
        sb.github
            .pulls()
            .iter()
            .any(|p| p.head.ends_with("dev/staff_management") && p.title.ends_with("1.6.0"))
    };
    // Far less than the interval: only the event can have brought it.
    let deadline = pushed + std::time::Duration::from_secs(30);
    while !opened() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let took = pushed.elapsed();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = text(&out.stderr);
    assert!(opened(), "no PR {took:?} after the push: {log}");
    assert!(out.status.success(), "graceful exit on SIGTERM: {log}");
    assert!(
        log.contains("reconciling the services an event or a webhook concerned"),
        "{log}"
    );
    // Only the pushed service's repository was listed again, not the six.
    let relisted = calls("DescribeImages") - listed;
    assert!(
        (1..6).contains(&relisted),
        "{relisted} DescribeImages after the push: {log}"
    );
    assert_eq!(
        sb.aws.sqs.sent(queue).len(),
        3,
        "a push, its finished scan, and the push of its cosign signature's tag"
    );
    assert_eq!(sb.aws.sqs.waiting(queue), 0, "all handled: {log}");
    assert!(calls("DeleteMessageBatch") >= 1, "and deleted: {log}");
}

/// `tugboat once` as a CronJob runs it: a promotion is announced to every configured sink and
/// the dashboard is published, and a sink that keeps failing is named in the output and the
/// exit status (3), after at most `--notify-timeout`.
#[test]
fn once_sends_its_notifications_publishes_the_dashboard_and_reports_what_it_could_not_deliver() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sb = rt
        .block_on(tugboat_sandbox::Sandbox::start(tugboat_sandbox::Options {
            sync_delay: std::time::Duration::from_millis(200),
            fleet: tugboat_sandbox::Fleet {
                services: vec![("user_service".into(), tugboat_sandbox::Style::Kustomize)],
                environments: vec!["dev".into()],
                tags: 1,
            },
        }))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "tugboat.toml",
        &sb.config_toml(&dir.path().join("work")),
        0o600,
    );
    let once = |timeout: &str| {
        tugboat_command()
            .args(["once", "--config", &config, "--notify-timeout", timeout])
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    // Deliveries the sinks accepted (a failed attempt is received too, with its status).
    let delivered = || {
        sb.sinks
            .received()
            .into_iter()
            .filter(|r| r.status < 300)
            .map(|r| (r.sink, r.event.unwrap_or_default()))
            .collect::<std::collections::BTreeSet<_>>()
    };

    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    let out = once("30s");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("notifications: 2 sent (slack 1, webhook 1), 0 not delivered"),
        "{stdout}"
    );
    assert!(stdout.contains("dashboard: created #"), "{stdout}");
    assert_eq!(
        delivered().into_iter().collect::<Vec<_>>(),
        [("slack", String::new()), ("webhook", "promoted".to_owned())],
        "{:?}",
        sb.sinks.received()
    );
    let dashboards: Vec<_> = sb
        .github
        .issues()
        .into_iter()
        .filter(|i| i.state == "open" && i.labels.contains(&"dashboard".to_owned()))
        .collect();
    assert_eq!(dashboards.len(), 1, "{dashboards:?}");
    assert!(
        dashboards[0].body.contains("user_service"),
        "{}",
        dashboards[0].body
    );

    // The next run has nothing new to say: nothing is announced twice.
    let all = sb.sinks.received().len();
    let again = once("30s");
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(sb.sinks.received().len(), all, "nothing announced twice");

    // A webhook sink that fails every attempt: the run says so, and exits 3, within the bound.
    sb.sinks.fail_next("webhook", 1_000, 503);
    sb.aws.push("user_service", "1.2.0", "COMPLETE", vec![]);
    let started = std::time::Instant::now();
    let out = once("2s");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("notifications: 1 sent (slack 1), 1 not delivered"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  webhook promoted/user_service/dev: still being retried"),
        "the undelivered one is named: {stdout}"
    );
    eprintln!("a failing sink's run ended in {:.1?}", started.elapsed());
}

#[test]
fn config_show_gives_each_values_origin_and_a_misspelt_variable_stops_tugboat_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "tugboat.toml",
        r#"[aws]
region = "eu-north-1"
registry_id = "123456789012"
[policy]
ssm_path = "/salon/promotion"
[github]
repository = "salon/salon-gitops"
token = { env = "GITHUB_TOKEN" }
[argocd]
url = "https://argocd.example.com"
token = { ssm = "/salon/tugboat/argocd-token" }
[[services]]
name = "user_service"
repository = "user_service"
[[services.environments]]
name = "dev"
files = ["apps/user_service/overlays/dev/kustomization.yaml"]
argocd_application = "user-service-dev"
"#,
        0o600,
    );
    let out = tugboat_command()
        .args(["config", "show", "--config", &config])
        .env("TUGBOAT_ENGINE_INTERVAL", "30s")
        .env(
            "TUGBOAT_EVENTS_QUEUE_URL",
            "https://sqs.eu-north-1.amazonaws.com/123456789012/q",
        )
        .output()
        .unwrap();
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for line in [
        "interval = \"30s\"  # environment: TUGBOAT_ENGINE_INTERVAL",
        "queue_url = \"https://sqs.eu-north-1.amazonaws.com/123456789012/q\"  # environment: TUGBOAT_EVENTS_QUEUE_URL",
        "repository = \"salon/salon-gitops\"  # file",
        "token = { env = \"GITHUB_TOKEN\" }  # file",
        "# concurrency = 8  # default",
    ] {
        assert!(shown.lines().any(|l| l == line), "no {line:?} in:\n{shown}");
    }
    // A misspelt variable stops every command that reads the configuration, before any call.
    let out = tugboat_command()
        .args(["plan", "--config", &config])
        .env("TUGBOAT_ENGNE_INTERVAL", "30s")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(
        said.contains("environment: TUGBOAT_ENGNE_INTERVAL: not a configuration key; did you mean TUGBOAT_ENGINE_INTERVAL (`engine.interval`)?"),
        "{said}"
    );
    let keys = tugboat(&["config", "keys"]);
    assert!(keys.status.success());
    assert!(text(&keys.stdout).contains("github.app.id\n    TUGBOAT_GITHUB_APP_ID\n"));
}

#[test]
fn every_command_of_the_cli_is_in_the_readmes_commands_table() {
    let out = tugboat(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 10, "{help}");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let missing: Vec<&&str> = commands
        .iter()
        .filter(|c| !readme.contains(&format!("| `tugboat {c}")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's commands table lacks: {missing:?}"
    );
}
