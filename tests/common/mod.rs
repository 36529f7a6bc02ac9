//! What the sandbox tests share: a sandbox with an engine on it, and finding rows.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test crate uses a part

use std::sync::Arc;

use tugboat::config::Config;
use tugboat::engine::{Action, Engine, EnvReport, Verification};
use tugboat::telemetry::ApiMetrics;
use tugboat_sandbox::{Options, Sandbox};

pub async fn setup() -> (Sandbox, Engine, tempfile::TempDir) {
    let (sb, engine, work, _) = setup_counted().await;
    (sb, engine, work)
}

/// The sandbox and an engine whose adapters count their calls into the returned metrics.
pub async fn setup_counted() -> (Sandbox, Engine, tempfile::TempDir, ApiMetrics) {
    let sb = start(Options::default()).await;
    let work = tempfile::tempdir().unwrap();
    let api = ApiMetrics::default();
    let engine = engine(&sb, &work, &api).await;
    (sb, engine, work, api)
}

/// A sandbox whose Argo CD syncs 200 ms after main moves.
pub async fn start(options: Options) -> Sandbox {
    tugboat::app::init_crypto();
    Sandbox::start(Options {
        sync_delay: std::time::Duration::from_millis(200),
        ..options
    })
    .await
    .unwrap()
}

/// A fresh engine (a restarted tugboat: no caches) on the sandbox, working in `work`.
pub async fn engine(sb: &Sandbox, work: &tempfile::TempDir, api: &ApiMetrics) -> Engine {
    engine_from(sb, &sb.config_toml(&work.path().join("w")), api).await
}

/// An engine for a configuration given as TOML text, reading (and stamping its commits with)
/// the sandbox's clock, so that `sb.advance` moves tugboat and the stand-ins together.
pub async fn engine_from(sb: &Sandbox, toml: &str, api: &ApiMetrics) -> Engine {
    let cfg = Arc::new(Config::parse(toml, "sandbox.toml", std::iter::empty()).unwrap());
    let ports = tugboat::app::ports_on(&cfg, api, sb.clock()).await.unwrap();
    Engine::new(cfg.clone(), ports).with_clock(sb.clock())
}

/// The GitHub adapter as `tugboat run` builds it with the sandbox's token, on GitHub at
/// `url` (the stand-in's, or a proxy in front of it).
pub async fn github_at(sb: &Sandbox, url: &str) -> tugboat::adapters::github::GitHub {
    use tugboat::adapters::github::{Credentials, GitHub};
    let token = tugboat::credentials::Rotating::fixed(
        tugboat::secret::Secret::new(sb.github_token.clone()),
        "github.token",
    );
    GitHub::new(
        url,
        Credentials::Token(Arc::new(token)),
        "salon",
        "salon-gitops",
        "main",
        &ApiMetrics::default(),
    )
    .await
    .unwrap()
}

/// The GitHub adapter on the sandbox's GitHub.
pub async fn github_adapter(sb: &Sandbox) -> tugboat::adapters::github::GitHub {
    github_at(sb, &sb.github_url).await
}

/// Make `user` an approver of the salon's prod: write access, and a platform lead.
pub fn approver(sb: &Sandbox, user: &str) {
    sb.github.add_collaborator(user, "write");
    sb.github.add_team_member("salon", "platform-leads", user);
}

pub fn row<'a>(r: &'a [EnvReport], svc: &str, env: &str) -> &'a EnvReport {
    r.iter()
        .find(|x| x.service == svc && x.environment == env)
        .unwrap()
}

/// Assert that the row merged its PR and Argo CD reported it Healthy.
pub fn assert_healthy(r: &[EnvReport], svc: &str, env: &str) {
    let action = &row(r, svc, env).action;
    assert!(
        matches!(
            action,
            Action::Merged {
                verification: Verification::Healthy { .. },
                ..
            }
        ),
        "{svc}/{env}: {action:?}"
    );
}

/// Two candidates for the lease of the Lease stand-in, through kube-rs, with short timings.
pub mod election {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::watch;
    use tugboat::adapters::lease::KubeLease;
    use tugboat::clock::SystemClock;
    use tugboat::domain::lease::Timing;
    use tugboat::leader::Elector;
    use tugboat::telemetry::ApiMetrics;
    use tugboat_sandbox::kube::Kube;

    /// 1 s leases renewed every 100 ms, a leader stopping after 600 ms without renewal.
    pub const QUICK: Timing = Timing {
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(600),
        retry_period: Duration::from_millis(100),
    };

    pub struct Candidate {
        pub leading: watch::Receiver<bool>,
        pub stop: watch::Sender<bool>,
        pub task: tokio::task::JoinHandle<()>,
    }

    pub async fn candidate(url: &str, me: &str, timing: Timing) -> Candidate {
        let client = KubeLease::client(Some(url)).await.unwrap();
        let lease = KubeLease::new(client, "tugboat", "tugboat", &ApiMetrics::default());
        let (leading_tx, leading) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);
        let elector = Elector::new(Arc::new(lease), me, timing, Arc::new(SystemClock));
        let task = tokio::spawn(elector.run(leading_tx, stop_rx));
        Candidate {
            leading,
            stop,
            task,
        }
    }

    /// How long until `c` leads.
    pub async fn until_leading(c: &Candidate) -> Duration {
        let t0 = std::time::Instant::now();
        let mut l = c.leading.clone();
        tokio::time::timeout(Duration::from_secs(10), l.wait_for(|x| *x))
            .await
            .expect("leads within 10 s")
            .unwrap();
        t0.elapsed()
    }

    pub fn stand_in() -> Kube {
        tugboat::app::init_crypto();
        Kube::new(Arc::new(SystemClock))
    }
}

/// tugboat's verification reports on a PR: a failure's comments, and the body's last section
/// once it turned Healthy (each starts with the same hidden marker).
pub fn verification_reports(pr: &tugboat_sandbox::github::Pr) -> Vec<String> {
    const MARKER: &str = "<!-- tugboat:verified ";
    let comments = pr
        .comments
        .iter()
        .filter(|(u, b)| u == "tugboat[bot]" && b.contains(MARKER))
        .map(|(_, b)| b.clone());
    let body = pr.body.find(MARKER).map(|i| pr.body[i..].to_owned());
    comments.chain(body).collect()
}

/// tugboat's git adapter as production opens it: the ledger sealed under the key text in file
/// `key` (`github.state_key = { file = … }`), forged files reported to the log returned.
pub fn sealed_clone(
    sb: &Sandbox,
    dir: &std::path::Path,
    key: &std::path::Path,
) -> (tugboat::adapters::git::Git, Arc<tugboat::trust::ForgeryLog>) {
    let keys = Arc::new(tugboat::trust::KeyRing::local(
        tugboat::config::SecretRef::File(key.to_owned()),
        sb.clock(),
    ));
    let forged = Arc::new(tugboat::trust::ForgeryLog::default());
    let git = git_clone(sb, dir)
        .with_clock(sb.clock())
        .with_trust(keys, Arc::clone(&forged));
    (git, forged)
}

/// tugboat's git adapter on the sandbox's repository, its bare clone in `dir`.
pub fn git_clone(sb: &Sandbox, dir: &std::path::Path) -> tugboat::adapters::git::Git {
    let url = format!("{}/git/salon/salon-gitops.git", sb.github_url);
    tugboat::adapters::git::Git::open(
        dir,
        &url,
        "main",
        Arc::new(tugboat::credentials::Rotating::fixed(
            tugboat::secret::Secret::new(&sb.github_token),
            "github.token",
        )),
        &ApiMetrics::default(),
    )
    .unwrap()
}
