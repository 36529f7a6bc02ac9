//! The chaos soak, short: a minute of the bench's faults (`benches/soak.rs`) over six
//! services, with a fixed seed unless `TUGBOAT_SOAK_SEED` says otherwise. Every invariant
//! must hold; a failure prints the seed and keeps the replicas' logs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_of_every_fault_at_once_loses_duplicates_and_leaks_nothing() {
    tugboat::app::init_crypto();
    let seed = std::env::var("TUGBOAT_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_206);
    let settings = tugboat_sandbox::soak::Settings {
        seed,
        services: 6,
        calm: Duration::from_secs(15),
        faulty: Duration::from_secs(45),
        push_every: Duration::from_millis(1500),
        settle: Duration::from_secs(240),
        binary: env!("CARGO_BIN_EXE_tugboat").into(),
    };
    let report = tugboat_sandbox::soak::run(&settings).await.unwrap();
    let text = report.text();
    eprint!("{text}");
    assert!(report.outcome.violations.is_empty(), "{text}");
    assert!(
        report.outcome.merged.get("dev").copied().unwrap_or(0) > 0,
        "promotions happened: {text}"
    );
    assert!(
        report.faults.values().sum::<u64>() > 0,
        "faults were injected: {text}"
    );
}
