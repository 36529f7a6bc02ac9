//! Leader election's failover, with client-go's default timings (15 s lease, 10 s renew
//! deadline, 2 s retry), through kube-rs against the sandbox's Lease stand-in: the time from
//! the leader stopping to the follower leading (and so starting its first cycle, which the
//! daemon runs at once), when the leader is stopped (SIGTERM: it releases the lease) and when
//! it is killed (the lease must expire). Target: under 20 s after a kill. Exits non-zero when
//! a failover misses it. Real time: about 20 s.
//!
//! Run with `cargo bench --bench failover`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tugboat::adapters::lease::KubeLease;
use tugboat::clock::SystemClock;
use tugboat::domain::lease::Timing;
use tugboat::leader::Elector;
use tugboat::telemetry::ApiMetrics;
use tugboat_sandbox::kube::Kube;

struct Candidate {
    leading: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn candidate(url: &str, me: &str) -> Candidate {
    let client = KubeLease::client(Some(url)).await.unwrap();
    let lease = KubeLease::new(client, "tugboat", "tugboat", &ApiMetrics::default());
    let (leading_tx, leading) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let elector = Elector::new(
        Arc::new(lease),
        me,
        Timing::default(),
        Arc::new(SystemClock),
    );
    let task = tokio::spawn(elector.run(leading_tx, stop_rx));
    Candidate {
        leading,
        stop,
        task,
    }
}

async fn leads(c: &Candidate) -> Duration {
    let t0 = Instant::now();
    let mut l = c.leading.clone();
    l.wait_for(|x| *x).await.unwrap();
    t0.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tugboat::app::init_crypto();
    let kube = Kube::new(Arc::new(SystemClock));
    let (url, _server) = kube.start().await.unwrap();
    let a = candidate(&url, "tugboat-a").await;
    leads(&a).await;
    let b = candidate(&url, "tugboat-b").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(*a.leading.borrow() && !*b.leading.borrow());

    a.stop.send(true).unwrap();
    let released = leads(&b).await;
    b.task.abort(); // kill -9: no release
    let c = candidate(&url, "tugboat-c").await;
    let killed = leads(&c).await;
    c.stop.send(true).unwrap();
    let _ = a.task.await;

    println!("\nleader election failover (lease 15 s, renew deadline 10 s, retry 2 s)");
    println!(
        "  leader stopped (SIGTERM, lease released): follower leads after {:.2} s",
        released.as_secs_f64()
    );
    println!(
        "  leader killed (lease must expire):        follower leads after {:.2} s",
        killed.as_secs_f64()
    );
    let mut figures = tugboat_sandbox::figures::Figures::new("failover");
    figures.add(
        "leader stopped (lease released) → follower leads",
        format!("{:.2} s", released.as_secs_f64()),
    );
    figures.add(
        "leader killed (lease 15 s must expire) → follower leads",
        format!("{:.2} s", killed.as_secs_f64()),
    );
    figures.print();
    let ok = killed < Duration::from_secs(20);
    println!(
        "  {} failover after a kill under 20 s",
        if ok { "PASS" } else { "FAIL" }
    );
    if !ok {
        std::process::exit(1);
    }
}
