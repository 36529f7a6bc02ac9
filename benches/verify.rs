//! Merge → Healthy: how late tugboat sees an application turn Healthy after a merge.
//!
//! The Argo CD stand-in syncs 300 ms after main moves and then shows `Progressing` for a
//! rollout of 700 ms before it turns Healthy; tugboat polls every `argocd.poll_interval`
//! (200 ms in the sandbox's configuration). For each of `TUGBOAT_BENCH_ROUNDS` promotions
//! (default 10) this prints the time from the merge to tugboat's "Healthy", and the lag from
//! the stand-in turning Healthy to the first look that saw it — measured on the stand-in's
//! clock. Target: every lag within one poll interval. Exits non-zero when one is not. It
//! also prints the Argo CD calls about the application per promotion (reads, of which
//! refreshes: each refresh makes Argo CD's controller compare the application to Git).
//!
//! Run with `cargo bench --bench verify`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::sync::Arc;
use std::time::Duration;

use tugboat::config::Config;
use tugboat::engine::{Action, Engine, Mode, Verification};
use tugboat::telemetry::ApiMetrics;
use tugboat_sandbox::{Options, Sandbox, app_name};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("TUGBOAT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    tugboat::app::init_crypto();
    let sb = Sandbox::start(Options {
        sync_delay: Duration::from_millis(300),
        ..Options::default()
    })
    .await
    .unwrap();
    sb.argocd.set_rollout(Duration::from_millis(700));
    let work = tempfile::tempdir().unwrap();
    let cfg = Arc::new(
        Config::parse(
            &sb.config_toml(&work.path().join("w")),
            "sandbox.toml",
            std::iter::empty(),
        )
        .unwrap(),
    );
    let poll = cfg.argocd.poll_interval;
    let engine = Engine::new(
        cfg.clone(),
        tugboat::app::ports(&cfg, &ApiMetrics::default())
            .await
            .unwrap(),
    );
    let svc = "user_service";
    let app = app_name(svc, "dev");
    let (mut afters, mut lags) = (Vec::new(), Vec::new());
    let (mut reads, mut refreshes) = (Vec::new(), Vec::new());
    let counted = |sb: &Sandbox| {
        let calls = sb.argocd.calls_of(&app);
        let get = |k: &str| calls.get(k).copied().unwrap_or(0);
        let refreshed = get("GET application (refresh)") + get("GET application (hard refresh)");
        (get("GET application") + refreshed, refreshed)
    };
    for round in 1..=rounds {
        sb.aws
            .push(svc, &format!("1.{round}.0"), "COMPLETE", vec![]);
        let before = counted(&sb);
        let reports = engine.cycle(Mode::Apply).await.unwrap();
        let after = counted(&sb);
        reads.push(after.0 - before.0);
        refreshes.push(after.1 - before.1);
        let row = reports
            .iter()
            .find(|r| r.service == svc && r.environment == "dev")
            .unwrap();
        let Action::Merged {
            verification: Verification::Healthy { after, .. },
            ..
        } = &row.action
        else {
            panic!("round {round}: {:?}", row.action)
        };
        let (turned, seen) = sb.argocd.healthy_seen(&app).expect("seen Healthy");
        afters.push(*after);
        lags.push(seen.saturating_duration_since(turned));
    }
    afters.sort();
    lags.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "merge -> Healthy over {rounds} promotions (stand-in: sync 300 ms after the merge, then 700 ms Progressing; poll interval {} ms)",
        ms(poll)
    );
    println!(
        "  merge -> tugboat reports Healthy: min {:.0} ms, median {:.0} ms, max {:.0} ms",
        ms(afters[0]),
        ms(median(&afters)),
        ms(afters[afters.len() - 1])
    );
    println!(
        "  stand-in Healthy -> first look that saw it: min {:.0} ms, median {:.0} ms, max {:.0} ms",
        ms(lags[0]),
        ms(median(&lags)),
        ms(lags[lags.len() - 1])
    );
    reads.sort_unstable();
    refreshes.sort_unstable();
    println!(
        "  Argo CD reads of the application per promotion: median {} (min {}, max {}), of which refreshes: median {} (max {})",
        reads[reads.len() / 2],
        reads[0],
        reads[reads.len() - 1],
        refreshes[refreshes.len() / 2],
        refreshes[refreshes.len() - 1]
    );
    let mut figures = tugboat_sandbox::figures::Figures::new("verify");
    figures.add(
        format!("merge → tugboat reports Healthy, median of {rounds} (stand-in Healthy 1 s after the merge)"),
        format!("{:.0} ms", ms(median(&afters))),
    );
    figures.add(
        format!(
            "stand-in Healthy → tugboat saw it, worst (poll {} ms)",
            ms(poll)
        ),
        format!("{:.0} ms", ms(lags[lags.len() - 1])),
    );
    figures.print();
    let worst = lags[lags.len() - 1];
    if worst > poll {
        eprintln!(
            "target missed: a lag of {:.0} ms is more than one poll interval ({:.0} ms)",
            ms(worst),
            ms(poll)
        );
        std::process::exit(1);
    }
    println!("  target met: every lag within one poll interval");
}
