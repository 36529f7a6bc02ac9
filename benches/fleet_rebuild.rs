//! Fleet-rebuild benchmark: a base image's CVE fix rebuilds every service at once. A sandbox
//! of N synthetic services (default 300, `TUGBOAT_BENCH_SERVICES`) in dev, each given a new
//! clean tag at the same moment; the real engine runs cycles through the real adapters until
//! every service runs its new tag Healthy. It runs twice: one PR per service, then with dev
//! grouped (`group: {name: base-image, window: 20s, max: 100}`); `TUGBOAT_BENCH_GROUPED=only`
//! runs the grouped one alone.
//!
//! It prints the wall time until all are Healthy with GitHub's write pacing lifted (the
//! sandbox's configuration), the REST writes GitHub's secondary limit counts (by operation),
//! and the least time GitHub's own limits (80 a minute, 500 an hour) allow for those writes,
//! which is what bounds a real fleet rebuild. It fails only on a lost promotion (a service
//! not at its new tag in the end), a duplicated one (more than one PR or merge for a
//! service) or a row failed for GitHub computing mergeability, never on time.
//!
//! GitHub computes mergeability asynchronously: the stand-in's open PRs read `mergeable: null`
//! and refuse merges ("Base branch was modified") for `TUGBOAT_BENCH_MERGEABLE_UNKNOWN`
//! (default 100ms, `0s` for none) after every merge to main, and the run counts the rows
//! that failed for it (none should: it is not a failure).
//!
//! Run with `cargo bench --bench fleet_rebuild`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tugboat::config::Config;
use tugboat::domain::group::GroupState;
use tugboat::domain::plan::Decision;
use tugboat::engine::{Action, Engine, Mode, Verification};
use tugboat::telemetry::ApiMetrics;
use tugboat_sandbox::{Fleet, Options, Sandbox};

const NEW_TAG: &str = "2.0.0";

/// The grouped run's policy: the sandbox's dev, grouped.
const GROUPED: &str = "environments:
  dev:
    auto_merge: true
    checks_settle: 0s
    health_timeout: 30s
    scan:
      thresholds: {CRITICAL: 0, HIGH: 0}
    group: {name: base-image, window: 20s, max: 100}
";

fn main() {
    let services = std::env::var("TUGBOAT_BENCH_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_usize);
    let only_grouped = std::env::var("TUGBOAT_BENCH_GROUPED").is_ok_and(|v| v == "only");
    tugboat::app::init_crypto();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut failed = false;
    if !only_grouped {
        failed |= !rt.block_on(rebuild(services, false));
    }
    failed |= !rt.block_on(rebuild(services, true));
    if failed {
        std::process::exit(1);
    }
}

/// One rebuild of `services`, grouped or not: the figures printed; `false` when a promotion
/// was lost or duplicated.
async fn rebuild(services: usize, grouped: bool) -> bool {
    let sb = Sandbox::start(Options {
        fleet: Fleet::synthetic(services, 2),
        ..Options::default()
    })
    .await
    .unwrap();
    if grouped {
        let name = format!("{}defaults", tugboat_sandbox::POLICY_PATH);
        sb.aws.put_parameter(&name, GROUPED, "String");
    }
    let unknown =
        std::env::var("TUGBOAT_BENCH_MERGEABLE_UNKNOWN").unwrap_or_else(|_| "100ms".into());
    let unknown = humantime::parse_duration(&unknown).unwrap();
    sb.github.protect(tugboat_sandbox::github::Protection {
        mergeable_unknown_for: Some(unknown).filter(|d| !d.is_zero()),
        ..Default::default()
    });
    let work = tempfile::tempdir().unwrap();
    let toml = sb.config_toml(&work.path().join("w"));
    let cfg = Arc::new(Config::parse(&toml, "bench.toml", std::iter::empty()).unwrap());
    let api = ApiMetrics::default();
    let engine = Engine::new(cfg.clone(), tugboat::app::ports(&cfg, &api).await.unwrap());
    // The cold cycle (clone, policy, images) before the pushes, as a running daemon has.
    engine.cycle(Mode::Apply).await.unwrap();

    let how = if grouped {
        "grouped (base-image, window 20s, max 100)"
    } else {
        "one PR per service"
    };
    println!(
        "\nfleet rebuild, {how}: {services} services in dev, each pushed {NEW_TAG} at once; mergeability unknown for {} after each merge",
        humantime::format_duration(unknown)
    );
    for (svc, _) in &sb.fleet.services {
        sb.aws.push(svc, NEW_TAG, "COMPLETE", vec![]);
    }
    let before = api.snapshot();
    let started = Instant::now();
    let mut healthy = BTreeMap::new();
    let mut cycles = 0;
    let (mut failed, mut computing) = (0, 0);
    // Bounded by time, not cycles: a small fleet's cycles are quick, and a group's window
    // (20 s) must pass before its PR opens.
    while healthy.len() < services && started.elapsed() < std::time::Duration::from_secs(900) {
        cycles += 1;
        for r in engine.cycle(Mode::Apply).await.unwrap() {
            if let Action::Failed { error } = &r.action {
                failed += 1;
                let text = error.to_string().to_ascii_lowercase();
                if text.contains("base branch was modified") || text.contains("mergeable") {
                    computing += 1;
                }
            }
            let done = match (&r.action, &r.decision) {
                (
                    Action::Merged {
                        verification: Verification::Healthy { .. },
                        ..
                    },
                    _,
                ) => true,
                (_, Decision::UpToDate { deployed }) => deployed == NEW_TAG,
                _ => false,
            };
            if done {
                healthy
                    .entry(r.service.clone())
                    .or_insert(started.elapsed());
            }
        }
    }
    let all_healthy = started.elapsed();
    let calls = api.since(&before);
    let mut writes = BTreeMap::new();
    for (k, c) in calls
        .iter()
        .filter(|(k, _)| k.is_write() && k.system == "github")
    {
        *writes.entry(k.operation.clone()).or_insert(0) += c.calls;
    }
    let total: u64 = writes.values().sum();
    let pushes: u64 = calls
        .iter()
        .filter(|(k, _)| k.system == "git" && k.operation == "push")
        .map(|(_, c)| c.calls)
        .sum();

    println!(
        "\n  all {} Healthy in dev after {:.1}s and {cycles} cycle(s), GitHub's pacing lifted",
        healthy.len(),
        all_healthy.as_secs_f64()
    );
    println!(
        "  REST writes: {total} ({:.1} a promotion), plus {pushes} git pushes (not counted by GitHub's limit):",
        total as f64 / services.max(1) as f64
    );
    for (op, n) in &writes {
        println!("    {n:>6}  {op}");
    }
    let least = tugboat::report::least_time(total, 80, 500);
    println!(
        "  at GitHub's 80 a minute and 500 an hour, {total} writes take at least {}h {:02}m: the last service runs Healthy no sooner",
        least.as_secs() / 3600,
        least.as_secs() % 3600 / 60
    );
    let fit = (500 * services as u64) / total.max(1);
    println!("  an hour's budget promotes about {fit} services");
    let mut figures = tugboat_sandbox::figures::Figures::new("fleet_rebuild");
    figures.add(
        format!(
            "{services} services rebuilt at once, {how}: all Healthy in dev, GitHub's pacing lifted"
        ),
        format!("{:.1} s, {cycles} cycle(s)", all_healthy.as_secs_f64()),
    );
    figures.add(
        format!("{services} services rebuilt at once, {how}: REST writes (git pushes)"),
        format!("{total} ({pushes})"),
    );
    figures.print();

    // Lost or duplicated promotions: each service at its new tag on main, through one PR
    // merged once.
    let mut prs: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for pr in sb.github.pulls() {
        let members = match GroupState::parse(&pr.body) {
            Ok(g) => g.members.into_iter().map(|m| m.service).collect(),
            Err(_) => vec![pr.head.rsplit('/').next().unwrap_or_default().to_owned()],
        };
        for svc in members {
            let e = prs.entry(svc).or_default();
            e.0 += 1;
            e.1 += usize::from(pr.merged_at.is_some());
        }
    }
    let mut lost = Vec::new();
    let mut duplicated = Vec::new();
    for (svc, _) in &sb.fleet.services {
        let file = tugboat_sandbox::file_of(svc, "dev");
        let main = sb.github.read_file("main", &file).unwrap_or_default();
        if !main.contains(NEW_TAG) || !healthy.contains_key(svc) {
            lost.push(svc.clone());
        }
        if prs
            .get(svc)
            .is_some_and(|(opened, merged)| *opened > 1 || *merged > 1)
        {
            duplicated.push(svc.clone());
        }
    }
    println!("  failed rows: {failed}, of which GitHub computing mergeability: {computing}");
    println!("  lost promotions: {} {lost:?}", lost.len());
    println!(
        "  duplicated promotions: {} {duplicated:?}",
        duplicated.len()
    );
    lost.is_empty() && duplicated.is_empty() && computing == 0
}
