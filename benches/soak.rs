//! The chaos soak (`tugboat_sandbox::soak`): two replicas of this build's `tugboat run` under
//! leader election promote a fleet through the sandbox while a seeded schedule injects every
//! fault it knows, at random and together; then the fleet settles and the invariants are
//! checked. Prints the figures; exits non-zero on any violation, printing the seed.
//!
//! `cargo bench --bench soak`: 50 services, 5 minutes calm then 60 minutes of faults, a push
//! every 2 s (about 5.5 days of a fleet that pushes every 4 minutes). Set
//! `TUGBOAT_SOAK_SEED`, `TUGBOAT_SOAK_SERVICES`, `TUGBOAT_SOAK_CALM`, `TUGBOAT_SOAK_FAULTY`
//! and `TUGBOAT_SOAK_PUSH_EVERY` (durations as `90s`, `1h`) to change it, and
//! `TUGBOAT_SOAK_BINARY` to run a copy of the binary (then building goes on meanwhile); the
//! test command runs a one-minute version (`tests/soak.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::time::Duration;

fn var<T>(name: &str, parse: impl Fn(&str) -> Option<T>, default: T) -> T {
    std::env::var(name)
        .ok()
        .map(|v| parse(&v).unwrap_or_else(|| panic!("{name}={v}: not understood")))
        .unwrap_or(default)
}

fn duration(v: &str) -> Option<Duration> {
    humantime::parse_duration(v).ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tugboat::app::init_crypto();
    let seed = var(
        "TUGBOAT_SOAK_SEED",
        |v| v.parse().ok(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
    );
    let settings = tugboat_sandbox::soak::Settings {
        seed,
        services: var("TUGBOAT_SOAK_SERVICES", |v| v.parse().ok(), 50),
        calm: var("TUGBOAT_SOAK_CALM", duration, Duration::from_secs(300)),
        faulty: var("TUGBOAT_SOAK_FAULTY", duration, Duration::from_secs(3600)),
        push_every: var("TUGBOAT_SOAK_PUSH_EVERY", duration, Duration::from_secs(2)),
        settle: Duration::from_secs(600),
        // A copy lets the build go on during an hour-long run (restarts spawn it again).
        binary: var(
            "TUGBOAT_SOAK_BINARY",
            |v| Some(v.into()),
            env!("CARGO_BIN_EXE_tugboat").into(),
        ),
    };
    println!("soak: {settings:?}");
    let report = tugboat_sandbox::soak::run(&settings).await.unwrap();
    print!("{}", report.text());
    report.figures().print();
    if !report.outcome.violations.is_empty() {
        std::process::exit(1);
    }
}
