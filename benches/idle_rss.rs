//! Memory at rest: the resident set of `tugboat run` (this build's binary) after 10 idle
//! cycles against the sandbox, with the six salon services (configured as the sandbox's
//! token configuration, and as `tugboat sandbox` prints it: a GitHub App, with events,
//! notifications and the dashboard on, what a real install runs) and with 300 synthetic
//! ones.
//!
//! The sandbox runs in this process; tugboat runs as its own process, configured as the
//! sandbox writes it (`engine.interval` 200 ms), and is read from `/proc/<pid>/status`:
//! RSS, and its anonymous (heap, stacks) and file-backed (the binary's and the shared
//! libraries' pages) parts. Targets: 20 MiB with 6 services, 32 MiB with 300. Exits non-zero
//! when one is missed.
//!
//! It runs with the environment the image gives it (the runtime stage's `ENV` lines of the
//! Dockerfile, `MALLOC_ARENA_MAX` among them), as the image runs it.
//!
//! Run with `cargo bench --bench idle_rss`, or measure another binary (the one the image ships,
//! say) with `TUGBOAT_BIN=path cargo bench --profile dev --bench idle_rss`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tugboat_sandbox::figures::Figures;
use tugboat_sandbox::{Fleet, Options, Sandbox, WithoutHarnessVars};

const IDLE_CYCLES: u64 = 10;

struct Rss {
    total_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    threads: u64,
}

fn status(pid: u32) -> Rss {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Rss {
        total_kib: field("VmRSS:"),
        anon_kib: field("RssAnon:"),
        file_kib: field("RssFile:"),
        threads: field("Threads:"),
    }
}

/// `tugboat_cycles_total{result="ok"}` from the daemon's /metrics, 0 until it answers.
async fn cycles(client: &reqwest::Client, port: u16) -> u64 {
    let Ok(r) = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
    else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("tugboat_cycles_total{result=\"ok\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The tugboat binary measured: `TUGBOAT_BIN`, else this build's.
fn binary() -> String {
    std::env::var("TUGBOAT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tugboat").to_owned())
}

/// The `ENV` settings of the Dockerfile's last stage (the runtime image's), in order.
fn image_env() -> Vec<(String, String)> {
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("the Dockerfile beside Cargo.toml");
    let runtime = dockerfile
        .rsplit_once("\nFROM ")
        .map_or(dockerfile.as_str(), |(_, last)| last);
    runtime
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .filter_map(|kv| kv.trim().split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Which configuration the daemon runs with.
#[derive(Clone, Copy)]
enum Setup {
    /// The sandbox's configuration with a token: events, notifications and the dashboard on.
    Token,
    /// What `tugboat sandbox` prints: the same as a GitHub App (what a real install runs).
    App,
}

async fn measure(label: &str, fleet: Fleet, setup: Setup) -> Rss {
    let services = fleet.services.len();
    let sb = Sandbox::start(Options {
        fleet,
        ..Options::default()
    })
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("tugboat.toml");
    let toml = match setup {
        Setup::Token => sb.config_toml(&work.path().join("w")),
        Setup::App => sb.config_toml_as_app(&work.path().join("w")),
    };
    std::fs::write(&config, toml).unwrap();
    let port = free_port();
    let daemon = Daemon(
        Command::new(binary())
            .without_harness_vars()
            .args(["run", "--config"])
            .arg(&config)
            .envs(image_env())
            .env("TUGBOAT_ENGINE_INTERVAL", "200ms")
            .env("TUGBOAT_SERVER_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    // The first cycle clones the repository and reads everything; the ones after it are idle.
    let first = loop {
        let n = cycles(&client, port).await;
        if n >= 1 {
            break n;
        }
        assert!(Instant::now() < deadline, "{label}: no cycle completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    while cycles(&client, port).await < first + IDLE_CYCLES {
        assert!(Instant::now() < deadline, "{label}: cycles stalled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss = status(daemon.0.id());
    println!(
        "{label:<28} services {services:>4}  RSS {:>6.1} MiB  (anonymous {:>5.1} MiB, file-backed {:>5.1} MiB)  threads {}",
        rss.total_kib as f64 / 1024.0,
        rss.anon_kib as f64 / 1024.0,
        rss.file_kib as f64 / 1024.0,
        rss.threads
    );
    rss
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tugboat::app::init_crypto();
    let size = std::fs::metadata(binary()).unwrap().len();
    let env: Vec<String> = image_env()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "{} ({:.1} MB): RSS after {IDLE_CYCLES} idle cycles at 200 ms, with the image's {}",
        binary(),
        size as f64 / 1e6,
        env.join(" ")
    );
    let salon = measure("salon (6 services, 2 envs)", Fleet::salon(), Setup::Token).await;
    let printed = measure("salon, as `tugboat sandbox`", Fleet::salon(), Setup::App).await;
    let fleet = measure(
        "synthetic (300 services)",
        Fleet::synthetic(300, 20),
        Setup::Token,
    )
    .await;
    let mib = |r: &Rss| format!("{:.1} MiB", r.total_kib as f64 / 1024.0);
    let mut figures = Figures::new("idle_rss");
    let of = format!("{:.1} MB binary", size as f64 / 1e6);
    figures.add(format!("idle RSS, 6 services, token ({of})"), mib(&salon));
    figures.add(
        format!("idle RSS, 6 services, as printed by `tugboat sandbox` ({of})"),
        mib(&printed),
    );
    figures.add(format!("idle RSS, 300 services ({of})"), mib(&fleet));
    figures.print();
    let mut missed = Vec::new();
    if salon.total_kib.max(printed.total_kib) > 20 * 1024 {
        missed.push("6 services: over 20 MiB");
    }
    if fleet.total_kib > 32 * 1024 {
        missed.push("300 services: over 32 MiB");
    }
    if missed.is_empty() {
        println!("targets met: ≤ 20 MiB with 6 services, ≤ 32 MiB with 300");
    } else {
        println!("targets missed: {}", missed.join("; "));
        std::process::exit(1);
    }
}
