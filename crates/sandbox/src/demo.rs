//! `tugboat demo`: the whole story on this machine, with no cloud account. Starts the sandbox,
//! pushes new tags for the six salon services, and runs the real engine through the real
//! adapters (aws-sdk-ecr/ssm, git2 over smart HTTP, octocrab, reqwest): three cycles, an
//! approval by comment that merges prod, then a Monday rescan that finds a new CVE in a
//! deployed image; what it announced, as the Slack and webhook stand-ins received it. Last,
//! `tugboat run`'s loop with a 10-minute interval: a push reaches it
//! through the event queue and becomes a PR within a second.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::{self as sandbox, Options, Sandbox, SeedFinding};
use std::sync::atomic::Ordering;

use tugboat::config::Config;
use tugboat::daemon::Daemon;
use tugboat::engine::{Engine, Mode};
use tugboat::notify::{Notifier, of_cycle, of_rescan};

fn calls(sb: &Sandbox) -> BTreeMap<String, u64> {
    let mut all = BTreeMap::new();
    for (k, v) in sb.aws.calls() {
        all.insert(format!("aws {k}"), v);
    }
    for (k, v) in sb.github.calls() {
        all.insert(format!("github {k}"), v);
    }
    for (k, v) in sb.argocd.calls() {
        all.insert(format!("argocd {k}"), v);
    }
    all
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// The demo's world: the sandbox, tugboat's engine on it, and what it announced.
struct Demo {
    sb: Sandbox,
    cfg: Arc<Config>,
    engine: Engine,
    notifier: Notifier,
    /// (state, change) of every notification handed to the notifier.
    announced: BTreeSet<(String, String)>,
    /// Kept for as long as the engine works in it.
    _work: tempfile::TempDir,
}

impl Demo {
    /// What `tugboat run` does after each cycle and rescan: announce to the configured sinks.
    fn announce(&mut self, notes: Vec<tugboat::domain::notify::Notification>) {
        self.announced
            .extend(notes.iter().map(|n| (n.key.clone(), n.change.clone())));
        self.notifier.submit(notes);
    }

    /// One cycle, announced; its reports and how long it took.
    async fn cycle(&mut self) -> anyhow::Result<(Vec<tugboat::engine::EnvReport>, f64)> {
        let t = Instant::now();
        let reports = self.engine.cycle(Mode::Apply).await?;
        self.announce(of_cycle(&reports, &self.cfg.argocd.url));
        Ok((reports, t.elapsed().as_secs_f64()))
    }
}

/// Run the demo and return its printed account.
pub async fn run(out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let started = Instant::now();
    let sb = Sandbox::start(Options::default())
        .await
        .context("starting the sandbox")?;
    writeln!(
        out,
        "tugboat demo: sandbox started on loopback\n{}",
        sb.endpoints()
    )?;
    push_new_tags(&sb, out)?;
    let mut demo = start_tugboat(sb).await?;
    first_cycles(&mut demo, out).await?;
    approvals(&mut demo, out).await?;
    pull_requests(&demo.sb, out)?;
    monday_rescan(&mut demo, out).await?;
    notifications(&demo.sb, demo.announced.len(), out).await?;
    by_event(&demo.sb, &demo.cfg, out).await?;
    writeln!(
        out,
        "\nDone in {:.1}s. Try it by hand: `tugboat sandbox`, then `tugboat run --config <printed file>`, and push.",
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

/// CI pushes a new tag for each service: clean, with a CRITICAL CVE, crashing once deployed,
/// an image index.
fn push_new_tags(sb: &Sandbox, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "CI pushes a new tag for each salon service (every service runs 1.0.0 in dev and prod):"
    )?;
    let pushes: [(&str, &str, Vec<SeedFinding>, &str); 6] = [
        ("user_service", "1.1.0", vec![], "clean"),
        (
            "appointment_service",
            "1.1.0",
            vec![SeedFinding {
                id: "CVE-2026-31337".into(),
                severity: "CRITICAL".into(),
                package: Some("openssl".into()),
                status: None,
            }],
            "scan finds a CRITICAL CVE",
        ),
        ("staff_management", "1.1.0", vec![], "clean"),
        (
            "service_management",
            "1.1.0",
            vec![],
            "clean, but crashes once deployed (its dev policy says `rollback: auto`)",
        ),
        (
            "reports_analytics",
            "1.1.0",
            vec![],
            "clean, built by Docker Buildx: an image index of linux/amd64 and linux/arm64 with\n                               provenance attestations; each platform image's scan is gated",
        ),
        (
            "notification_service",
            "1.1.0",
            vec![],
            "clean (a `latest` tag is pushed too and ignored)",
        ),
    ];
    for (svc, tag, findings, note) in pushes {
        if svc == "reports_analytics" {
            let platform = |arch: &str| sandbox::aws::SeedPlatform {
                os: "linux".into(),
                architecture: arch.into(),
                variant: None,
                findings: vec![],
            };
            sb.aws.push_index(
                svc,
                tag,
                vec![platform("amd64"), platform("arm64")],
                (true, sandbox::aws::SeedSignature::Valid),
            );
        } else {
            sb.aws.push(svc, tag, "COMPLETE", findings);
        }
        writeln!(out, "  {svc:22} {tag}  {note}")?;
    }
    sb.aws
        .push("notification_service", "latest", "COMPLETE", vec![]);
    sb.argocd.mark_crashing(&format!(
        "{}:1.1.0",
        sandbox::image_of("service_management")
    ));
    sb.aws.put_parameter(
        &format!("{}services/service_management", sandbox::POLICY_PATH),
        "# Roll back by itself in dev when a promotion does not become Healthy.\nenvironments:\n  dev:\n    rollback: auto\n",
        "String",
    );
    Ok(())
}

/// tugboat as `tugboat run` builds it, on the sandbox's printed configuration.
async fn start_tugboat(sb: Sandbox) -> anyhow::Result<Demo> {
    let work = tempfile::Builder::new().prefix("tugboat-demo-").tempdir()?;
    let cfg_path = work.path().join("tugboat.toml");
    std::fs::write(&cfg_path, sb.config_toml(&sandbox::workdir_in(work.path())))?;
    let cfg = Arc::new(Config::load(&cfg_path, std::iter::empty())?);
    let engine = Engine::new(
        cfg.clone(),
        tugboat::app::ports(&cfg, &tugboat::telemetry::ApiMetrics::default()).await?,
    );
    let notifier = Notifier::start(
        tugboat::app::notification_routes(&cfg).await?,
        engine.ports().ledger.clone(),
        Arc::new(tugboat::clock::SystemClock),
        tugboat::metrics::NotifyMetrics::default(),
        3,
    );
    Ok(Demo {
        sb,
        cfg,
        engine,
        notifier,
        announced: BTreeSet::new(),
        _work: work,
    })
}

/// Cycles 1 to 3: dev promotes and verifies, prod waits for approval, then an idle cycle
/// and its API calls.
async fn first_cycles(demo: &mut Demo, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let stories = [
        "Cycle 1: dev takes each clean new tag through an auto-merged PR, verified in Argo CD (the crashing one is rolled back and marked bad); prod then takes what dev runs Healthy, and needs an approval",
        "Cycle 2: the prod PRs wait for their approval",
        "Cycle 3: nothing new; an idle cycle writes nothing",
    ];
    let mut idle = BTreeMap::new();
    for story in stories {
        let before = calls(&demo.sb);
        let (reports, took) = demo.cycle().await?;
        writeln!(out, "\n{story} ({took:.1}s):\n")?;
        write!(out, "{}", tugboat::report::table(&reports))?;
        idle = delta(&before, &calls(&demo.sb));
    }
    writeln!(
        out,
        "\nAPI calls of the idle cycle 3 (for {} services):",
        demo.cfg.services.len()
    )?;
    for (k, v) in &idle {
        writeln!(out, "  {v:3}  {k}")?;
    }
    Ok(())
}

/// Cycle 4: people steer through the PR (mallory has write access but is no platform lead;
/// alice is), and the dashboard issue after it.
async fn approvals(demo: &mut Demo, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let sb = &demo.sb;
    sb.github.add_collaborator("alice", "write");
    sb.github
        .add_team_member("salon", "platform-leads", "alice");
    sb.github.add_collaborator("mallory", "write");
    let prod_pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.state == "open" && p.title == "Promote user_service to prod: 1.1.0")
        .map(|p| p.number)
        .context("user_service's prod PR is open")?;
    // GitHub stamps comments to the second; an approval must come after the head commit.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    sb.github.comment_as(prod_pr, "mallory", "/approve");
    sb.github.comment_as(prod_pr, "alice", "/approve");
    let (reports, took) = demo.cycle().await?;
    writeln!(
        out,
        "\nCycle 4: on PR #{prod_pr}, mallory and alice comment /approve; only alice is a platform lead ({took:.1}s):\n"
    )?;
    let rows: Vec<_> = reports
        .iter()
        .map(tugboat::engine::dashboard::row_of)
        .collect();
    let user: Vec<_> = reports
        .into_iter()
        .filter(|r| r.service == "user_service")
        .collect();
    write!(out, "{}", tugboat::report::table(&user))?;
    // What `tugboat run` keeps after each cycle (github.dashboard): one issue, edited on change.
    let published = demo.engine.publish_dashboard(&rows).await?;
    if let Some(dash) = demo
        .sb
        .github
        .issues()
        .into_iter()
        .find(|i| i.labels.iter().any(|l| l == "dashboard"))
    {
        writeln!(
            out,
            "\nThe promotion dashboard, issue #{} ({}):\n",
            dash.number,
            published.as_str()
        )?;
        for l in dash.body.lines().filter(|l| l.starts_with('|')) {
            writeln!(out, "    {l}")?;
        }
    }
    Ok(())
}

/// Every pull request of the GitOps repository, with what tugboat said on it.
fn pull_requests(sb: &Sandbox, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    writeln!(out, "\nPull requests in salon/salon-gitops:")?;
    for pr in sb.github.pulls() {
        let state = if pr.merged_at.is_some() {
            "merged"
        } else {
            pr.state.as_str()
        };
        writeln!(out, "  #{:<2} {:7} {}", pr.number, state, pr.title)?;
        // A Healthy verification is the body's last section, not a comment.
        if let Some(i) = pr.body.find("**Deployed.** ") {
            let said = pr.body[i..].lines().next().unwrap_or("");
            writeln!(out, "        body: {said}")?;
        }
        for (user, c) in &pr.comments {
            writeln!(out, "        {user}: {}", c.lines().next().unwrap_or(""))?;
        }
    }
    Ok(())
}

/// Monday 06:00: a CVE published over the weekend hits an image that shipped clean.
async fn monday_rescan(demo: &mut Demo, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let sb = &demo.sb;
    let shipped = sb
        .aws
        .digest("user_service", "1.1.0")
        .context("user_service 1.1.0 is in the registry")?;
    sb.aws.set_scan(
        "user_service",
        &shipped,
        "COMPLETE",
        vec![SeedFinding {
            id: "CVE-2026-40404".into(),
            severity: "HIGH".into(),
            package: Some("libxml2".into()),
            status: None,
        }],
    );
    let t = Instant::now();
    let rescan = demo
        .engine
        .rescan(&tugboat::engine::rescan::Scope::default())
        .await?;
    writeln!(
        out,
        "\nMonday rescan: a HIGH CVE was published against user_service 1.1.0, which dev and prod run ({:.1}s):\n",
        t.elapsed().as_secs_f64()
    )?;
    demo.announce(of_rescan(&rescan));
    let sb = &demo.sb;
    write!(out, "{}", tugboat::report::rescan_table(&rescan))?;
    for i in sb.github.issues() {
        writeln!(
            out,
            "  issue #{} {} ({})",
            i.number,
            i.title,
            i.labels.join(", ")
        )?;
    }
    let f = sandbox::file_of("user_service", "dev");
    writeln!(out, "\n{f} on main now reads:\n")?;
    for l in sb.github.read_file("main", &f).unwrap_or_default().lines() {
        writeln!(out, "    {l}")?;
    }
    Ok(())
}

/// What the sandbox's Slack and webhook sinks received: `expected` notifications each.
async fn notifications(
    sb: &Sandbox,
    expected: usize,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    let count = |sink: &str| {
        sb.sinks
            .received()
            .iter()
            .filter(|r| r.sink == sink)
            .count()
    };
    while (count("slack") < expected || count("webhook") < expected) && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let received = sb.sinks.received();
    let accepted = received
        .iter()
        .filter(|r| r.sink == "slack" && r.status == 200)
        .count();
    let verified = received
        .iter()
        .filter(|r| r.sink == "webhook" && r.verified == Some(true))
        .count();
    writeln!(
        out,
        "\nNotifications, each change once: the Slack stand-in accepted {accepted} Block Kit messages, the\n\
         webhook stand-in verified {verified} signed deliveries (all at {}/_sandbox/notifications):",
        sb.github_url
    )?;
    for r in received.iter().filter(|r| r.sink == "webhook") {
        let b = &r.body;
        let reason = b["reason"]
            .as_str()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        writeln!(
            out,
            "  {:18} {}: {}",
            b["event"].as_str().unwrap_or("?"),
            b["title"].as_str().unwrap_or("?"),
            reason
        )?;
    }
    if let Some(slack) = received.iter().find(|r| r.sink == "slack") {
        writeln!(out, "The first Slack message, as sent:\n    {}", slack.body)?;
    }
    Ok(())
}

/// `tugboat run`'s loop ([`Daemon::cycles`]) with a 10-minute interval: after its first full
/// cycle, a push reaches it only through the event queue (the ECR stand-in puts ECR's
/// EventBridge message on the SQS stand-in), and becomes a PR at once.
async fn by_event(sb: &Sandbox, cfg: &Config, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let mut cfg = cfg.clone();
    cfg.engine.interval = std::time::Duration::from_secs(600);
    let cfg = Arc::new(cfg);
    let api = tugboat::telemetry::ApiMetrics::default();
    let engine = Engine::new(cfg.clone(), tugboat::app::ports(&cfg, &api).await?);
    let queue = tugboat::app::event_queue(&cfg, &api)
        .await
        .context("the sandbox's configuration has an [events] queue")?;
    let clock = Arc::new(tugboat::clock::SystemClock);
    let d = Arc::new(Daemon::new(cfg, engine, api, clock).with_events(queue));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn({
        let d = d.clone();
        async move { d.cycles(stopped).await }
    });
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while d.metrics.ready.last_cycle.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pushed = Instant::now();
    sb.aws.push("staff_management", "1.2.0", "COMPLETE", vec![]);
    let opened = || {
        sb.github
            .pulls()
            .into_iter()
            .find(|p| p.title == "Promote staff_management to dev: 1.2.0")
    };
    let pr = loop {
        if let Some(pr) = opened() {
            break pr;
        }
        if Instant::now() > deadline {
            anyhow::bail!("the pushed staff_management 1.2.0 never became a PR");
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    let took = pushed.elapsed();
    // Its reconcile goes on to merge and verify it; the demo stops the loop here.
    let _ = stop.send(true);
    running.await?;
    writeln!(
        out,
        "\nEvents: `tugboat run` with a 10-minute interval. CI pushes staff_management 1.2.0; ECR's\n\
         event reaches tugboat through the SQS queue, and a reconcile of staff_management alone\n\
         opened PR #{} {:.0} ms after the push, without waiting for the interval.",
        pr.number,
        took.as_secs_f64() * 1000.0,
    )?;
    Ok(())
}
