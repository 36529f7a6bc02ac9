//! Push → pull request with events: how long after an image is pushed tugboat has opened
//! its promotion PR, when the poll interval is 10 minutes and the push reaches tugboat
//! through the event queue (the sandbox's ECR stand-in puts an EventBridge-shaped "ECR Image
//! Action" on its SQS stand-in, which tugboat long-polls through aws-sdk-sqs).
//!
//! `tugboat run`'s loop ([`Daemon::cycles`]) runs in this process over the real adapters;
//! each of `TUGBOAT_BENCH_ROUNDS` pushes (default 20, round-robin over the salon's six
//! services) is timed from the push to the PR appearing on the GitHub stand-in, polled every
//! 5 ms. The next push waits until the cycles woken so far (which merge dev and verify it in
//! Argo CD) have finished, so that each round measures the event path, not a queue behind
//! the previous round; GitHub's write pacing is lifted, as in the sandbox's configuration
//! (its stand-in has no secondary rate limit). Prints p50, p95 and the worst; target p95 ≤ 2 s. Fails only when a push
//! never becomes a PR within a minute, or when a full cycle ran (then polling, not the
//! event, would have found it).
//!
//! Run with `cargo bench --bench event_latency`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::sync::Arc;
use std::time::{Duration, Instant};

use tugboat::clock::SystemClock;
use tugboat::config::Config;
use tugboat::daemon::Daemon;
use tugboat::engine::Engine;
use tugboat::telemetry::ApiMetrics;
use tugboat_sandbox::{Options, SALON_SERVICES, Sandbox};

/// Finished cycles, whatever their result.
fn cycles(d: &Daemon) -> f64 {
    d.metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("tugboat_cycles_total{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

fn scoped(d: &Daemon) -> f64 {
    d.metrics.events.scoped_cycles.get() as f64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("TUGBOAT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    if let Ok(filter) = std::env::var("TUGBOAT_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .init();
    }
    tugboat::app::init_crypto();
    let sb = Sandbox::start(Options::default()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let toml = sb
        .config_toml(&work.path().join("w"))
        .replace("interval = \"10s\"", "interval = \"10m\"");
    // The sandbox's configuration lifts GitHub's pacing of 80 writes a minute (its stand-in
    // has no secondary rate limit): 20 promotions in seconds would measure the pacing.
    assert!(toml.contains("writes_per_minute = 10000"));
    let cfg = Arc::new(Config::parse(&toml, "bench.toml", std::iter::empty()).unwrap());
    assert_eq!(cfg.engine.interval, Duration::from_secs(600));
    let api = ApiMetrics::default();
    let engine = Engine::new(cfg.clone(), tugboat::app::ports(&cfg, &api).await.unwrap());
    let queue = tugboat::app::event_queue(&cfg, &api)
        .await
        .expect("the sandbox's config has an [events] queue");
    let d = Arc::new(
        Daemon::new(cfg.clone(), engine, api.clone(), Arc::new(SystemClock)).with_events(queue),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn({
        let d = d.clone();
        async move { d.cycles(stopped).await }
    });
    while cycles(&d) < 1.0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "push → PR with events: {rounds} pushes, poll interval {}s (the first full cycle done)",
        cfg.engine.interval.as_secs()
    );
    let mut latencies = Vec::new();
    for round in 1..=rounds {
        let (svc, _) = SALON_SERVICES[(round - 1) % SALON_SERVICES.len()];
        let tag = format!("2.{round}.0");
        // The previous rounds' cycles (which merge dev and verify it) are done.
        while cycles(&d) < 1.0 + scoped(&d) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t = Instant::now();
        sb.aws.push(svc, &tag, "COMPLETE", vec![]);
        let opened = |sb: &Sandbox| {
            sb.github
                .pulls()
                .iter()
                .any(|p| p.head.ends_with(&format!("dev/{svc}")) && p.title.ends_with(&tag))
        };
        while !opened(&sb) {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "round {round}: {svc} {tag} never became a PR"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(t.elapsed());
    }
    // Every cycle started has finished (the last ones verify their dev deploys).
    while cycles(&d) < 1.0 + scoped(&d) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let full = cycles(&d) - scoped(&d);
    stop.send(true).unwrap();
    running.await.unwrap();
    let mut sorted = latencies.clone();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  push → PR opened: p50 {:.0} ms, p95 {:.0} ms, worst {:.0} ms (each: {})",
        ms(at(0.5)),
        ms(at(0.95)),
        ms(sorted[sorted.len() - 1]),
        latencies
            .iter()
            .map(|l| format!("{:.0}", ms(*l)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  cycles: {} full (the first), {} of one service each, woken by events",
        full,
        scoped(&d)
    );
    let mut figures = tugboat_sandbox::figures::Figures::new("event_latency");
    figures.add(
        format!(
            "push → PR opened through the event queue, p50 / p95 of {}",
            latencies.len()
        ),
        format!("{:.0} / {:.0} ms", ms(at(0.5)), ms(at(0.95))),
    );
    figures.print();
    println!(
        "  {} p95 ≤ 2 s",
        if at(0.95) <= Duration::from_secs(2) {
            "PASS"
        } else {
            "MISS"
        }
    );
    assert_eq!(
        full, 1.0,
        "a full cycle ran: polling, not the events, found a push"
    );
}
