//! Two replicas of `tugboat run` under leader election (the Lease stand-in, through kube-rs),
//! each serving its own webhook endpoint, as a Service in front of two pods does: a GitHub
//! delivery that reaches the follower is handed on to the leader, which acts at once instead
//! of at its next poll (an hour away here).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use tugboat::config::Config;
use tugboat::engine::{Action, Mode};
use tugboat::telemetry::ApiMetrics;
use tugboat_sandbox::{Fleet, Options, Sandbox, Style};

use crate::common::row;

const SECRET: &str = "whsec-replicas-3c1d"; // pragma: allowlist secret (a test fixture)

/// A free port on loopback (another process could take it before the replica binds it; on a
/// test machine's loopback that race is not seen).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Replica `name`'s configuration: the sandbox's, polling hourly, on `port`, taking webhooks,
/// under election on the Lease stand-in at `kube`, advertising its own address.
fn replica(sb: &Sandbox, work: &std::path::Path, name: &str, port: u16, kube: &str) -> Config {
    let secret = work.join("webhook-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let toml = sb
        .config_toml(&work.join(name))
        .replace("interval = \"10s\"", "interval = \"1h\"")
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            "dashboard = true\n",
            &format!(
                "dashboard = false\nwebhook_secret = {{ file = \"{}\" }}\n",
                secret.display()
            ),
        );
    let toml = format!(
        "{toml}\n[election]\nenabled = true\nnamespace = \"tugboat\"\nidentity = \"{name}\"\n\
         api_url = \"{kube}\"\naddress = \"http://127.0.0.1:{port}\"\n\
         lease_duration = \"3s\"\nrenew_deadline = \"2s\"\nretry_period = \"200ms\"\n"
    );
    Config::parse(&toml, &format!("{name}.toml"), std::iter::empty()).unwrap()
}

/// `/readyz` of the replica on `port`: (ready, standby).
async fn readiness(http: &reqwest::Client, port: u16) -> Option<(bool, bool)> {
    let r = http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = r.json().await.ok()?;
    Some((body["ready"] == true, body["standby"] == true))
}

fn sign(body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_delivered_to_the_follower_is_handed_on_and_the_leader_merges_at_once() {
    let sb = crate::common::start(Options {
        fleet: Fleet {
            services: vec![("user_service".into(), Style::Kustomize)],
            environments: vec!["dev".into(), "prod".into()],
            tags: 1,
        },
        ..Options::default()
    })
    .await;
    crate::common::approver(&sb, "alice");
    let work = tempfile::tempdir().unwrap();
    // The prod PR waits for an approval (two cycles of a tugboat run before).
    let number = {
        let engine = crate::common::engine(&sb, &work, &ApiMetrics::default()).await;
        sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
        engine.cycle(Mode::Apply).await.unwrap();
        let reports = engine.cycle(Mode::Apply).await.unwrap();
        let Action::AwaitingApproval { number, .. } = row(&reports, "user_service", "prod").action
        else {
            panic!("{:?}", row(&reports, "user_service", "prod"))
        };
        number
    };

    let kube = crate::common::election::stand_in();
    let (kube_url, _kube) = kube.start().await.unwrap();
    let ports = [free_port(), free_port()];
    let mut stops = Vec::new();
    for (name, port) in ["tugboat-a", "tugboat-b"].into_iter().zip(ports) {
        let cfg = Arc::new(replica(&sb, work.path(), name, port, &kube_url));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(tugboat::daemon::run(cfg, async move {
            let _ = stopped.await;
        }));
        stops.push(stop);
    }
    // One leads and has finished its first cycle; the other stands by.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let follower = loop {
        let a = readiness(&http, ports[0]).await;
        let b = readiness(&http, ports[1]).await;
        match (a, b) {
            (Some((true, false)), Some((true, true))) => break ports[1],
            (Some((true, true)), Some((true, false))) => break ports[0],
            _ if Instant::now() > deadline => panic!("no leader ready: {a:?} {b:?}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    // The follower has read the leader's address from the lease (it reads it every 200 ms),
    // and the approval comes in a later second than the PR's commit: GitHub's times have
    // whole seconds, and an approval stamped the second of the commit may be older than it,
    // so it does not count (the rule in domain::chatops). Under load the first cycle can end
    // within the commit's second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let comment = sb.github.comment_as(number, "alice", "/approve").unwrap();
    let body = serde_json::to_vec(&serde_json::json!({
        "action": "created",
        "issue": {"number": number, "pull_request": {"url": "x"}},
        "comment": {"id": comment, "body": "/approve", "user": {"login": "alice", "type": "User"}},
    }))
    .unwrap();
    let delivered = Instant::now();
    let answer = http
        .post(format!("http://127.0.0.1:{follower}/webhooks/github"))
        .header("X-GitHub-Event", "issue_comment")
        .header("X-GitHub-Delivery", "approve-1")
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", sign(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let text = answer.text().await.unwrap();
    assert_eq!(status, 202, "{text}");
    assert!(
        text.starts_with("handed on to the leader: queued: a command on #"),
        "{text}"
    );
    let merged = loop {
        let pr = sb
            .github
            .pulls()
            .into_iter()
            .find(|p| p.number == number)
            .unwrap();
        if pr.merged_at.is_some() {
            break delivered.elapsed();
        }
        assert!(
            delivered.elapsed() < Duration::from_secs(30),
            "the leader did not act on the handed-on delivery: {pr:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!(
        "webhook to the follower -> the leader merged the approved prod PR in {:.0} ms",
        merged.as_secs_f64() * 1000.0
    );
    for stop in stops {
        let _ = stop.send(());
    }
}
