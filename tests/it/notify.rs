//! Notifications end to end: the engine's cycles against the sandbox, what they announce
//! recorded in the sandbox's ledger and delivered through the real sinks (reqwest) to the
//! sandbox's Slack-compatible and webhook stand-ins; and every Slack message validated by
//! Slack's own SDK (`slack_sdk`'s Block Kit models, from the test command's venv).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tugboat::config::Config;
use tugboat::domain::notify::{Kind, Link, Notification, advisories_in};
use tugboat::engine::{Engine, Mode};
use tugboat::metrics::{NotificationLabels, NotifyMetrics};
use tugboat::notify::{Notifier, of_cycle};
use tugboat::ports::Sink;
use tugboat::telemetry::ApiMetrics;
use tugboat_sandbox::sinks::Received;
use tugboat_sandbox::{Sandbox, SeedFinding};

fn config(sb: &Sandbox, work: &tempfile::TempDir) -> Arc<Config> {
    let toml = sb.config_toml(&work.path().join("w"));
    Arc::new(Config::parse(&toml, "sandbox.toml", std::iter::empty()).unwrap())
}

/// A tugboat on the sandbox: its engine, and a notifier with the configured sinks.
async fn tugboat(
    sb: &Sandbox,
    work: &tempfile::TempDir,
    metrics: &NotifyMetrics,
) -> (Engine, Notifier, Arc<Config>) {
    let cfg = config(sb, work);
    let engine = crate::common::engine(sb, work, &ApiMetrics::default()).await;
    let routes = tugboat::app::notification_routes(&cfg).await.unwrap();
    assert_eq!(routes.len(), 2, "the sandbox's config enables both sinks");
    let notifier = Notifier::start(
        routes,
        engine.ports().ledger.clone(),
        sb.clock(),
        metrics.clone(),
        3,
    );
    (engine, notifier, cfg)
}

/// The first webhook delivery of `event` about `service`.
fn delivery(sb: &Sandbox, event: &str, service: &str) -> Received {
    sb.sinks
        .received()
        .into_iter()
        .find(|r| r.sink == "webhook" && r.body["event"] == event && r.body["service"] == service)
        .unwrap_or_else(|| panic!("no {event} of {service} was delivered"))
}

/// The link `name` of a delivery (`pull_request`, `application`).
fn link<'a>(r: &'a Received, name: &str) -> &'a str {
    r.body["links"][name].as_str().unwrap_or_default()
}

/// `event service/env` of every webhook delivery, with how often each arrived.
fn webhook_log(received: &[Received]) -> BTreeMap<String, usize> {
    let mut log = BTreeMap::new();
    for r in received.iter().filter(|r| r.sink == "webhook") {
        let b = &r.body;
        let line = format!(
            "{} {}/{}",
            b["event"].as_str().unwrap_or("?"),
            b["service"].as_str().unwrap_or("-"),
            b["environment"].as_str().unwrap_or("-")
        );
        *log.entry(line).or_default() += 1;
    }
    log
}

async fn wait_for(sb: &Sandbox, what: &str, done: impl Fn(&[Received]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&sb.sinks.received()) {
        assert!(
            Instant::now() < deadline,
            "waited 30 s for {what}: {:?}",
            webhook_log(&sb.sinks.received())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_notifies_both_sinks_once_and_a_restart_announces_nothing_again() {
    let sb = crate::common::start(tugboat_sandbox::Options::default()).await;
    let (work, metrics) = (tempfile::tempdir().unwrap(), NotifyMetrics::default());
    let (engine, notifier, cfg) = tugboat(&sb, &work, &metrics).await;

    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    sb.aws.push("staff_management", "1.1.0", "COMPLETE", vec![]);
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let notes = of_cycle(&reports, &cfg.argocd.url);
    let kinds: Vec<Kind> = notes.iter().map(|n| n.kind).collect();
    assert!(kinds.contains(&Kind::Promoted), "{kinds:?}");
    assert!(kinds.contains(&Kind::AwaitingApproval), "{kinds:?}");
    notifier.submit(notes.clone());
    // A second cycle sees the same waits for approval: nothing new to say.
    let again = of_cycle(&engine.cycle(Mode::Apply).await.unwrap(), &cfg.argocd.url);
    notifier.submit(again);
    wait_for(&sb, "the first cycle's notifications", |r| {
        r.len() == 2 * notes.len()
    })
    .await;
    let received = sb.sinks.received();
    for r in &received {
        match r.sink {
            "slack" => assert_eq!(r.status, 200, "Slack's stand-in accepted {}", r.body),
            _ => {
                assert_eq!(r.verified, Some(true), "the signature verifies");
                assert_eq!(r.status, 204);
            }
        }
    }
    let log = webhook_log(&received);
    assert!(log.values().all(|n| *n == 1), "each once: {log:?}");
    assert_eq!(log.get("promoted user_service/dev"), Some(&1), "{log:?}");
    assert_eq!(
        log.get("awaiting_approval user_service/prod"),
        Some(&1),
        "{log:?}"
    );
    let promoted = delivery(&sb, "promoted", "user_service");
    assert!(
        link(&promoted, "pull_request").contains("/pull/"),
        "{}",
        promoted.body
    );
    assert_eq!(
        link(&promoted, "application"),
        format!("{}/applications/user-service-dev", cfg.argocd.url)
    );

    // A restart (a new tugboat: no memory) after a push the gate refuses.
    sb.aws.push(
        "user_service",
        "9.0.0",
        "COMPLETE",
        vec![SeedFinding {
            id: "CVE-2026-0001".into(),
            severity: "CRITICAL".into(),
            package: Some("openssl".into()),
            status: None,
        }],
    );
    drop(notifier);
    let (engine, notifier, cfg) = tugboat(&sb, &work, &metrics).await;
    let notes = of_cycle(&engine.cycle(Mode::Apply).await.unwrap(), &cfg.argocd.url);
    assert!(
        notes.iter().any(|n| n.kind == Kind::AwaitingApproval),
        "the restarted tugboat sees the same waits"
    );
    notifier.submit(notes);
    wait_for(&sb, "the refused candidate", |r| {
        webhook_log(r).contains_key("blocked user_service/dev")
            && r.iter().filter(|x| x.sink == "slack").count() == log.len() + 1
    })
    .await;
    let after = webhook_log(&sb.sinks.received());
    assert_eq!(after.len(), log.len() + 1, "only the new change: {after:?}");
    assert!(after.values().all(|n| *n == 1), "nothing twice: {after:?}");
    let blocked = delivery(&sb, "blocked", "user_service");
    assert_eq!(blocked.body["to"], "9.0.0");
    assert_eq!(
        blocked.body["links"]["advisories"][0],
        "https://nvd.nist.gov/vuln/detail/CVE-2026-0001"
    );
    // Counted once the sink has answered, a moment after it received the delivery.
    let sent = || {
        metrics
            .notifications
            .get_or_create(&NotificationLabels {
                sink: "webhook".into(),
                event: "blocked".into(),
                result: "sent".into(),
            })
            .get()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sent(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_refuses_is_a_clear_error_naming_the_sink_and_never_its_url() {
    let sb = crate::common::start(tugboat_sandbox::Options::default()).await;
    let work = tempfile::tempdir().unwrap();
    let cfg = config(&sb, &work);
    let routes = tugboat::app::notification_routes(&cfg).await.unwrap();
    let n = Notification::new(Kind::Promoted, "user_service", Some("dev"), "#1 abc".into());
    let now = chrono::Utc::now();
    for route in &routes {
        let sink = route.sink.name().to_owned();
        sb.sinks.fail_next(&sink, 1, 400);
        let err = route.sink.send(&n, "d-1", now).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("sink '{sink}'")), "{text}");
        assert!(text.contains("400"), "{text}");
        assert!(!text.contains(&sb.sinks_url), "no URL in errors: {text}");
        route.sink.send(&n, "d-1", now).await.unwrap();
    }
    // A webhook signed with another secret is refused by the receiver.
    let wrong = tugboat::adapters::notify::HttpSink::webhook(
        "impostor",
        Arc::new(tugboat::credentials::Rotating::fixed(
            tugboat::secret::Secret::new(format!("{}/webhook", sb.sinks_url)),
            "url",
        )),
        Arc::new(tugboat::credentials::Rotating::fixed(
            tugboat::secret::Secret::new("not-the-secret"),
            "secret",
        )),
    )
    .unwrap();
    let err = wrong.send(&n, "d-2", now).await.unwrap_err();
    assert!(
        err.to_string().contains("sink 'impostor': answered 401"),
        "{err}"
    );
    let last = sb.sinks.received().pop().unwrap();
    assert_eq!(last.verified, Some(false));
    // What the sinks received is readable on the GitHub stand-in's address.
    let listed: serde_json::Value =
        reqwest::get(format!("{}/_sandbox/notifications", sb.github_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), sb.sinks.received().len());
}

/// A notification of `kind` with every field filled, some past Block Kit's limits.
fn full(kind: Kind) -> Notification {
    let mut n = Notification::new(kind, &"s".repeat(200), Some("prod"), "c".into());
    if kind == Kind::Unhealthy {
        n.environment = None;
    }
    n.from = Some("1.0.0".into());
    n.to = Some("1.1.0-rc.1+build.7".into());
    let cves: Vec<String> = (1000..1040).map(|i| format!("CVE-2026-{i}")).collect();
    n.reason = format!("<b>&</b> {} {}", cves.join(" "), "x".repeat(4000));
    n.advisories = advisories_in(&n.reason);
    n.pr = Some(Link {
        title: "PR #7".into(),
        url: "https://github.com/salon/salon-gitops/pull/7".into(),
    });
    n.application = Some(Link {
        title: "Argo CD".into(),
        url: "https://argocd.example/applications/user-service-prod".into(),
    });
    n
}

#[test]
fn every_slack_message_passes_the_block_kit_validation_of_slacks_own_sdk() {
    // Every event, and the doctor's test delivery (no event a sink subscribes to).
    let kinds: Vec<Kind> = Kind::ALL.into_iter().chain([Kind::Test]).collect();
    let mut messages: Vec<serde_json::Value> =
        kinds.iter().map(|k| full(*k).slack_message()).collect();
    messages.extend(
        kinds.iter().map(|k| {
            Notification::new(*k, "user_service", Some("dev"), "c".into()).slack_message()
        }),
    );
    for m in &messages {
        assert_eq!(tugboat_sandbox::sinks::block_kit_error(m), None, "{m}");
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&messages).unwrap()).unwrap();
    let python = std::env::var("TUGBOAT_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python").to_owned());
    let check = r#"
import json, sys
from slack_sdk.models.blocks import Block
for i, message in enumerate(json.load(open(sys.argv[1]))):
    assert message["text"], f"message {i}: no fallback text"
    for j, raw in enumerate(message["blocks"]):
        block = Block.parse(raw)
        assert block is not None, f"message {i} block {j}: unknown to slack_sdk: {raw}"
        block.validate_json()
        assert block.to_dict()["type"] == raw["type"]
print(f"{i + 1} messages valid")
"#;
    let out = Command::new(&python)
        .args(["-c", check])
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}); run the README's test command, which installs slack_sdk into .venv"));
    assert!(
        out.status.success(),
        "slack_sdk refused a message:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let valid = format!("{} messages valid", messages.len());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&valid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_issue_shows_every_service_and_environment_and_is_edited_only_on_change() {
    use tugboat::engine::dashboard::{Published, row_of};
    async fn publish(engine: &Engine, reports: &[tugboat::engine::EnvReport]) -> Published {
        let rows: Vec<_> = reports.iter().map(row_of).collect();
        engine.publish_dashboard(&rows).await.unwrap()
    }
    let sb = crate::common::start(tugboat_sandbox::Options::default()).await;
    let work = tempfile::tempdir().unwrap();
    let engine = crate::common::engine(&sb, &work, &ApiMetrics::default()).await;
    let dashboards = || {
        sb.github
            .issues()
            .into_iter()
            .filter(|i| i.state == "open" && i.labels.iter().any(|l| l == "dashboard"))
            .collect::<Vec<_>>()
    };
    let edits = || sb.github.calls().get("PATCH issue").copied().unwrap_or(0);

    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let Published::Created(number) = publish(&engine, &reports).await else {
        panic!("created")
    };
    let [dash] = dashboards().try_into().expect("one dashboard");
    assert_eq!(dash.number, number);
    assert!(dash.labels.iter().any(|l| l == "tugboat"));
    for svc in sb.fleet.services.iter().map(|(s, _)| s) {
        for env in &sb.fleet.environments {
            assert!(
                dash.body.contains(&format!("| {svc} | {env} | ")),
                "{svc}/{env} missing:\n{}",
                dash.body
            );
        }
    }
    assert!(
        dash.body.contains("| user_service | dev | 1.1.0 `"),
        "{}",
        dash.body
    );
    assert!(
        dash.body.contains("needs 1 approval(s)"),
        "prod's PR: {}",
        dash.body
    );
    assert!(dash.pinned, "pinned through GraphQL's pinIssue");
    // GitHub pins three issues at most: a fourth is refused, in GitHub's words.
    let forge = &engine.ports().forge;
    let labels = ["tugboat".to_owned()];
    for i in 0..3 {
        let other = forge
            .open_issue(&format!("other {i}"), "", &labels)
            .await
            .unwrap();
        let pinned = forge.pin_issue(other.number).await;
        assert_eq!(pinned.is_ok(), i < 2, "{pinned:?}");
        if let Err(e) = pinned {
            assert!(e.to_string().contains("more than 3 pinned issues"), "{e}");
        }
    }

    // The next cycle finds dev up to date (its decision changed), the one after that the
    // same again: no edit. A restarted tugboat neither.
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    publish(&engine, &reports).await;
    let before = edits();
    let reports = engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        publish(&engine, &reports).await,
        Published::Unchanged(number)
    );
    let restarted = crate::common::engine(&sb, &work, &ApiMetrics::default()).await;
    let reports = restarted.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        publish(&restarted, &reports).await,
        Published::Unchanged(number)
    );
    assert_eq!(edits(), before, "no edit without a change");

    // A push the gate refuses changes the table: one edit, the same issue.
    sb.aws.push(
        "staff_management",
        "2.0.0",
        "COMPLETE",
        vec![SeedFinding {
            id: "CVE-2026-0002".into(),
            severity: "CRITICAL".into(),
            package: None,
            status: None,
        }],
    );
    let reports = restarted.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        publish(&restarted, &reports).await,
        Published::Updated(number)
    );
    assert_eq!(edits(), before + 1);
    let [dash] = dashboards().try_into().expect("still one dashboard");
    assert!(dash.body.contains("refused: 2.0.0 `"), "{}", dash.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_findings_of_a_rescan_are_announced_once_even_when_a_restart_sees_them_again() {
    use tugboat::engine::rescan::Scope;
    use tugboat::notify::of_rescan;
    let sb = crate::common::start(tugboat_sandbox::Options::default()).await;
    let (work, metrics) = (tempfile::tempdir().unwrap(), NotifyMetrics::default());
    let (engine, notifier, _) = tugboat(&sb, &work, &metrics).await;
    let shipped = sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    engine.cycle(Mode::Apply).await.unwrap();
    sb.aws.set_scan(
        "user_service",
        &shipped,
        "COMPLETE",
        vec![SeedFinding {
            id: "CVE-2026-4242".into(),
            severity: "CRITICAL".into(),
            package: Some("openssl".into()),
            status: None,
        }],
    );
    let report = engine.rescan(&Scope::default()).await.unwrap();
    let notes = of_rescan(&report);
    let [n] = notes.as_slice() else {
        panic!("{notes:?}")
    };
    assert_eq!(n.kind, Kind::NewFindings);
    assert!(n.reason.starts_with("CVE-2026-4242 in dev"), "{}", n.reason);
    assert!(n.pr.as_ref().unwrap().title.starts_with("Security issue #"));
    notifier.submit(notes.clone());
    wait_for(&sb, "the new findings", |r| {
        webhook_log(r).contains_key("new_findings user_service/-")
    })
    .await;
    // The next rescan has nothing new to say.
    let again = engine.rescan(&Scope::default()).await.unwrap();
    assert!(of_rescan(&again).is_empty());
    // A restarted tugboat handed the same findings (say, a rescan cut short before it
    // recorded them) does not announce them again; a sentinel marks the batch as handled.
    drop(notifier);
    let (_, notifier, _) = tugboat(&sb, &work, &metrics).await;
    let sentinel = Notification::new(Kind::Promoted, "sentinel", Some("dev"), "#0 0".into());
    notifier.submit(notes.into_iter().chain([sentinel]).collect());
    wait_for(&sb, "the sentinel", |r| {
        webhook_log(r).contains_key("promoted sentinel/dev")
    })
    .await;
    assert_eq!(
        webhook_log(&sb.sinks.received()).get("new_findings user_service/-"),
        Some(&1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_answering_a_redirect_is_refused_and_the_redirect_never_followed() {
    use axum::http::{StatusCode, header};
    let followed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = followed.clone();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(|| async {
                (StatusCode::FOUND, [(header::LOCATION, "/elsewhere")])
            }),
        )
        .route(
            "/elsewhere",
            axum::routing::any(move || {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async { StatusCode::OK }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sink = tugboat::adapters::notify::HttpSink::slack(
        "moved",
        Arc::new(tugboat::credentials::Rotating::fixed(
            tugboat::secret::Secret::new(url.clone()),
            "url",
        )),
    )
    .unwrap();
    let n = Notification::new(Kind::Held, "user_service", Some("prod"), "x".into());
    let err = sink.send(&n, "d-1", chrono::Utc::now()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("sink 'moved': answered 302"), "{text}");
    assert!(text.contains("redirect"), "{text}");
    assert!(!text.contains(&url), "{text}");
    assert_eq!(err.kind, tugboat::ports::ErrorKind::Rejected, "not retried");
    assert_eq!(followed.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// One cycle of `engine`, and what it announces.
async fn cycle(engine: &Engine, argocd_url: &str) -> Vec<Notification> {
    of_cycle(&engine.cycle(Mode::Apply).await.unwrap(), argocd_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_and_a_hold_notify_once_and_a_restart_announces_neither_again() {
    let sb = crate::common::start(tugboat_sandbox::Options::default()).await;
    let (work, metrics) = (tempfile::tempdir().unwrap(), NotifyMetrics::default());
    let (engine, notifier, cfg) = tugboat(&sb, &work, &metrics).await;
    // service_management 1.1.0 crashes once deployed; its dev policy rolls back by itself.
    sb.aws.put_parameter(
        &format!(
            "{}services/service_management",
            tugboat_sandbox::POLICY_PATH
        ),
        "environments:\n  dev:\n    rollback: auto\n",
        "String",
    );
    sb.argocd.mark_crashing(&format!(
        "{}:1.1.0",
        tugboat_sandbox::image_of("service_management")
    ));
    sb.aws
        .push("service_management", "1.1.0", "COMPLETE", vec![]);
    let path = tugboat_sandbox::file_of("user_service", "dev");
    let before = sb.github.read_file("main", &path).unwrap();
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    notifier.submit(cycle(&engine, &cfg.argocd.url).await);
    // On-call puts user_service 1.0.0 back in dev by hand: the environment is held.
    sb.github
        .commit_as("main", &path, &before, "oncall")
        .unwrap();
    sb.advance(Duration::from_secs(60));
    notifier.submit(cycle(&engine, &cfg.argocd.url).await);
    wait_for(&sb, "the rollback and the hold", |r| {
        let log = webhook_log(r);
        log.contains_key("rolled_back service_management/dev")
            && log.contains_key("held user_service/dev")
    })
    .await;
    let held = delivery(&sb, "held", "user_service");
    assert!(
        held.body["reason"].as_str().unwrap().contains("/resume"),
        "{}",
        held.body
    );
    assert!(
        link(&held, "pull_request").contains("/issues/"),
        "the hold issue: {}",
        held.body
    );

    // A restart: the same rollback and hold are seen again, and announced no more.
    drop(notifier);
    let (engine, notifier, _) = tugboat(&sb, &work, &metrics).await;
    let again = cycle(&engine, &cfg.argocd.url).await;
    assert!(again.iter().any(|n| n.kind == Kind::Held), "{again:?}");
    let sentinel = Notification::new(Kind::Promoted, "sentinel", Some("dev"), "#0 0".into());
    notifier.submit(again.into_iter().chain([sentinel]).collect());
    wait_for(&sb, "the sentinel", |r| {
        webhook_log(r).contains_key("promoted sentinel/dev")
    })
    .await;
    let log = webhook_log(&sb.sinks.received());
    assert!(log.values().all(|n| *n == 1), "nothing twice: {log:?}");
}

/// The outbox on the real ledger (git, the sandbox's GitHub): a parcel recorded by a tugboat
/// that then died is its successor's at once (the same clone: the kernel let go of the dead
/// one's lock, and its name is in the owner file), another replica's only after it was left
/// undelivered for `OTHERS_AFTER`; whoever took it last delivers it, and what every sink has
/// leaves the outbox.
#[tokio::test]
async fn a_dead_tugboats_undelivered_notification_is_its_successors_at_once_and_another_replicas_later()
 {
    use tugboat::notify::OTHERS_AFTER;
    use tugboat::ports::{Announcement, Parcel};
    let sb = crate::common::start(Default::default()).await;
    let (here, there) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ports = |work: &tempfile::TempDir| {
        let cfg = config(&sb, work);
        let clock = sb.clock();
        async move {
            tugboat::app::ports_on(&cfg, &ApiMetrics::default(), clock)
                .await
                .unwrap()
        }
    };
    let n = Notification::new(Kind::Promoted, "user_service", Some("dev"), "#7 abc".into());
    let parcel = Parcel {
        id: tugboat::notify::delivery_id(&n),
        notification: n.clone(),
        sinks: vec!["slack".into(), "webhook".into()],
    };
    let dead = ports(&here).await;
    let announced = [Announcement {
        key: n.key.clone(),
        change: n.change.clone(),
        parcel: Some(parcel.clone()),
    }];
    assert_eq!(dead.ledger.announce(&announced).await.unwrap(), [true]);
    let other = ports(&there).await;
    let young = other.ledger.undelivered(OTHERS_AFTER).await.unwrap();
    assert!(young.is_empty(), "another replica's, and young: {young:?}");
    drop(dead); // killed: its lock on the clone goes with it
    let successor = ports(&here).await;
    let taken = successor.ledger.undelivered(OTHERS_AFTER).await.unwrap();
    assert_eq!(
        taken,
        std::slice::from_ref(&parcel),
        "the successor's at once"
    );
    assert!(
        other
            .ledger
            .undelivered(OTHERS_AFTER)
            .await
            .unwrap()
            .is_empty()
    );
    successor
        .ledger
        .delivered(&[(parcel.id.clone(), "slack".into())])
        .await
        .unwrap();
    // The successor dies too, unseen by the other replica, which waits before taking over.
    sb.advance(OTHERS_AFTER + Duration::from_secs(1));
    let late = other.ledger.undelivered(OTHERS_AFTER).await.unwrap();
    let owed = Parcel {
        sinks: vec!["webhook".into()],
        ..parcel.clone()
    };
    assert_eq!(late, [owed], "only the sink that does not have it");
    assert!(
        successor
            .ledger
            .undelivered(OTHERS_AFTER)
            .await
            .unwrap()
            .is_empty()
    );
    other
        .ledger
        .delivered(&[(parcel.id.clone(), "webhook".into())])
        .await
        .unwrap();
    sb.advance(OTHERS_AFTER * 2);
    assert!(
        other
            .ledger
            .undelivered(Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        successor
            .ledger
            .undelivered(Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
}
