//! `tugboat init` on a large fleet: a sandbox of N synthetic services (default 300,
//! `TUGBOAT_BENCH_SERVICES`), each a kustomize overlay deployed by its own Argo CD
//! application. `init` lists the applications, clones the repository and places every
//! reference, in process, as the command does. It prints the time of the first run (and of
//! five more, each with a fresh clone, as every run of the command makes) and fails only
//! when a service is not placed.
//!
//! Run with `cargo bench --bench init`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::time::{Duration, Instant};

use tugboat_sandbox::figures::Figures;
use tugboat_sandbox::{Fleet, Options, Sandbox};

fn main() {
    let services = std::env::var("TUGBOAT_BENCH_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_usize);
    tugboat::app::init_crypto();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(services));
}

async fn bench(services: usize) {
    let sb = Sandbox::start(Options {
        fleet: Fleet::synthetic(services, 2),
        ..Options::default()
    })
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let init = sb.init_command(&work.path().join("w"));
    let mut runs: Vec<Duration> = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let found = tugboat::init::run(&init.args, init.env.clone())
            .await
            .unwrap();
        runs.push(started.elapsed());
        assert_eq!(
            found.discovery.services.len(),
            services,
            "not placed: {:#?}",
            found.discovery.unplaced
        );
    }
    let first = runs[0];
    let mut rest = runs[1..].to_vec();
    rest.sort();
    println!(
        "tugboat init, {services} services (one Argo CD application each): first run {} ms, then median {} ms, max {} ms",
        first.as_millis(),
        rest[rest.len() / 2].as_millis(),
        rest[rest.len() - 1].as_millis()
    );
    let mut figures = Figures::new("init");
    figures.add(
        format!("`tugboat init`, {services} services: first run"),
        format!("{} ms", first.as_millis()),
    );
    figures.add(
        format!("`tugboat init`, {services} services: median of 5 more"),
        format!("{} ms", rest[rest.len() / 2].as_millis()),
    );
    figures.print();
}
