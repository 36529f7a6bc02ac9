//! Idle-cycle benchmark: a sandbox registry of 1,000 repositories × 101 tags, every service
//! at its newest clean tag, with one newer tag each that the scan gate blocks. Runs the real engine through the real adapters twice and prints
//! the API calls of the second (idle) cycle by system and operation, its wall time, and the
//! CPU time of the whole process (tugboat and the stand-ins together) during it.
//!
//! Every environment requires a cosign signature by the sandbox's CI key (which signs every
//! push), so the first cycle reads and verifies each candidate's signature.
//!
//! Targets: one DescribeImages page per repository, no scan-findings call and no registry
//! call (signatures) for a known digest, nothing written. It also prints what verifying one
//! signature costs cold (a new token, the signature manifest and its payload over loopback,
//! the ECDSA check) and the check alone. Then a rescan of everything deployed: one StartImageScan per digest, one
//! listing of the security issues for all services, one issue per flagged service. Exits
//! non-zero when a target is missed.
//!
//! It also prints the API calls of an idle hour at that size: polling every minute, against
//! events on with a 10-minute interval (6 idle cycles and the queue's long polls).
//!
//! Run with `cargo bench --bench idle_cycle`; `TUGBOAT_BENCH_REPOS` / `TUGBOAT_BENCH_TAGS`
//! change the size.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tugboat::config::Config;
use tugboat::engine::{Engine, Mode};
use tugboat::telemetry::{ApiCounts, ApiMetrics, count};
use tugboat_sandbox::{Fleet, Options, Sandbox};

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU time of this process so far (Linux: /proc/self/stat, clock ticks of 10 ms).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the command name: state is field 0, utime field 11, stime field 12.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn print_calls(calls: &ApiCounts) {
    for (k, c) in calls {
        println!(
            "    {:>6}  {} {}{}",
            c.calls,
            k.system,
            k.operation,
            if c.errors + c.retries > 0 {
                format!(" ({} errors, {} retries)", c.errors, c.retries)
            } else {
                String::new()
            }
        );
    }
}

/// What verifying one signature costs: cold, through a new registry client (its token, the
/// signature manifest, the payload), mean of 20; and the cryptographic check alone, mean of
/// 1,000.
async fn verify_one(sb: &Sandbox, api: &ApiMetrics) -> (Duration, Duration) {
    use tugboat::domain::image::Digest;
    use tugboat::domain::signature::{KeySource, signature_tag};
    use tugboat::ports::Signatures;
    use tugboat::signature::{TrustedKey, verify};
    let (svc, _) = &sb.fleet.services[0];
    let digest = Digest::parse(&sb.aws.digest(svc, &sb.fleet.deployed_tag()).unwrap()).unwrap();
    let manifest = Digest::parse(&sb.aws.digest(svc, &signature_tag(&digest)).unwrap()).unwrap();
    let source = KeySource::Ssm(tugboat_sandbox::CI_KEY_PARAMETER.into());
    let keys = [TrustedKey::parse(&source, &sb.aws.ci_public_key()).unwrap()];
    let sdk = tugboat::adapters::aws::sdk_config(&tugboat::config::AwsConfig {
        region: "eu-north-1".into(),
        registry_id: None,
        endpoint_url: Some(sb.aws_url.clone()),
        registry_url: None,
        test_credentials: true,
    })
    .await;
    let t = Instant::now();
    let mut stored = Vec::new();
    for _ in 0..20 {
        let oci = tugboat::adapters::oci::OciRegistry::new(&sdk, api).unwrap();
        stored = oci.cosign_signatures(None, svc, &manifest).await.unwrap();
        let at = chrono::Utc::now();
        assert!(verify(&stored[0], &digest, &manifest, &keys, at).is_ok());
    }
    let cold = t.elapsed() / 20;
    let t = Instant::now();
    for _ in 0..1_000 {
        let at = chrono::Utc::now();
        assert!(verify(&stored[0], &digest, &manifest, &keys, at).is_ok());
    }
    (cold, t.elapsed() / 1_000)
}

fn main() {
    let repos = size("TUGBOAT_BENCH_REPOS", 1_000);
    let tags = size("TUGBOAT_BENCH_TAGS", 100);
    tugboat::app::init_crypto();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let t = Instant::now();
        let sb = Sandbox::start(Options {
            fleet: Fleet::synthetic(repos, tags),
            ..Options::default()
        })
        .await
        .unwrap();
        // One newer tag per repository whose scan finds a CRITICAL CVE: the first cycle reads
        // each of those scans and blocks; the idle cycle must answer from its scan cache.
        for (svc, _) in &sb.fleet.services {
            sb.aws.push(
                svc,
                "2.0.0",
                "COMPLETE",
                vec![tugboat_sandbox::SeedFinding {
                    id: "CVE-2026-0001".into(),
                    severity: "CRITICAL".into(),
                    package: Some("openssl".into()),
                    status: None,
                }],
            );
        }
        // Every environment requires a signature by the CI key (a part of the defaults).
        sb.aws.put_parameter(
            &format!("{}defaults/signatures", tugboat_sandbox::POLICY_PATH),
            &format!(
                "environments:\n  dev:\n    signatures: {{required: true, keys: [{{ssm: {}}}]}}\n",
                tugboat_sandbox::CI_KEY_PARAMETER
            ),
            "String",
        );
        println!(
            "idle cycle: {repos} repositories x {} tags; each at its newest clean tag, with a newer tag blocked by a CRITICAL finding (sandbox seeded in {:.1}s)",
            tags + 1,
            t.elapsed().as_secs_f64()
        );
        let work = tempfile::tempdir().unwrap();
        let cfg = Config::parse(
            &sb.config_toml(&work.path().join("w")),
            "bench.toml",
            std::iter::empty(),
        )
        .unwrap();
        let cfg = Arc::new(cfg);
        let api = ApiMetrics::default();
        let engine = Engine::new(cfg.clone(), tugboat::app::ports(&cfg, &api).await.unwrap());

        let mut idle = BTreeMap::new();
        for label in [
            "first cycle (cold: clone, policy read, scans of the new tags)",
            "second cycle (idle)",
        ] {
            let before = api.snapshot();
            let (c0, t0) = (cpu(), Instant::now());
            let reports = engine.cycle(Mode::Apply).await.unwrap();
            let (wall, cpu_used) = (t0.elapsed(), cpu().saturating_sub(c0));
            let calls = api.since(&before);
            let promoted = reports
                .iter()
                .filter(|r| !matches!(r.action, tugboat::engine::Action::None))
                .count();
            println!(
                "\n  {label}: {:.2}s wall, {:.2}s CPU (tugboat + stand-ins), {} reports, {promoted} with an action",
                wall.as_secs_f64(),
                cpu_used.as_secs_f64(),
                reports.len()
            );
            print_calls(&calls);
            idle = calls;
        }

        // An idle hour: the idle cycle repeated, against the same with events on, where the
        // interval can be 10 minutes and the listener long-polls the queue (20 s a receive
        // when nothing arrives, `adapters::sqs`).
        let per_cycle: u64 = idle.values().map(|c| c.calls).sum();
        let mut figures = tugboat_sandbox::figures::Figures::new("idle_cycle");
        figures.add(
            format!("API calls of an idle cycle, {repos} repositories × {} tags", tags + 1),
            per_cycle.to_string(),
        );
        let receives = 3_600 / 20;
        println!(
            "\n  an idle hour at {repos} services, from the idle cycle's {per_cycle} calls:\n    polling every minute:              60 x {per_cycle} = {} calls\n    events on, polling every 10 min:    6 x {per_cycle} + {receives} ReceiveMessage = {} calls ({:.1}x fewer)",
            60 * per_cycle,
            6 * per_cycle + receives,
            (60 * per_cycle) as f64 / (6 * per_cycle + receives) as f64
        );

        let (cold, check) = verify_one(&sb, &api).await;
        println!(
            "\n  one signature verified cold (token, manifest, payload over loopback, ECDSA P-256): {:.2} ms; the check alone: {:.1} µs; cached: no call",
            cold.as_secs_f64() * 1e3,
            check.as_secs_f64() * 1e6
        );
        figures.add(
            "verify one signature cold (token, manifest, payload, check)",
            format!("{:.2} ms", cold.as_secs_f64() * 1e3),
        );
        figures.add(
            "verify one signature, the check alone",
            format!("{:.1} µs", check.as_secs_f64() * 1e6),
        );
        figures.print();
        let registry: u64 = idle
            .iter()
            .filter(|(k, _)| k.system == "registry")
            .map(|(_, c)| c.calls)
            .sum();
        let describe = count(&idle, "ecr", "DescribeImages").calls;
        let pages = (repos * (tags + 1).div_ceil(1_000)) as u64;
        let scans = count(&idle, "ecr", "DescribeImageScanFindings").calls;
        let writes: u64 = idle
            .iter()
            .filter(|(k, _)| k.is_write())
            .map(|(_, c)| c.calls)
            .sum();
        let checks = [
            (
                format!("DescribeImages calls = {describe} (target: one page per repository = {pages})"),
                describe == pages,
            ),
            (
                format!("DescribeImageScanFindings calls = {scans} (target: 0 for known digests)"),
                scans == 0,
            ),
            (
                format!("registry calls (signatures) = {registry} (target: 0 for known digests)"),
                registry == 0,
            ),
            (format!("writes = {writes} (target: 0)"), writes == 0),
        ];

        // The weekly rescan over the same fleet: every deployed digest scanned once, one
        // StartImageScan each (spread 10 ms apart in the sandbox's config), one listing of
        // the security issues, one issue per service whose deployed image has a new CVE.
        let flagged = repos.div_ceil(100);
        for (svc, _) in sb.fleet.services.iter().take(flagged) {
            let digest = sb.aws.digest(svc, &sb.fleet.deployed_tag()).unwrap();
            sb.aws.set_scan(
                svc,
                &digest,
                "COMPLETE",
                vec![tugboat_sandbox::SeedFinding {
                    id: "CVE-2026-9000".into(),
                    severity: "HIGH".into(),
                    package: None,
                    status: None,
                }],
            );
        }
        let before = api.snapshot();
        let (c0, t0) = (cpu(), Instant::now());
        let rescan = engine
            .rescan(&tugboat::engine::rescan::Scope::default())
            .await
            .unwrap();
        let (wall, cpu_used) = (t0.elapsed(), cpu().saturating_sub(c0));
        let calls = api.since(&before);
        let spread = cfg.rescan.spread.as_secs_f64() * repos.saturating_sub(1) as f64;
        println!(
            "\n  rescan ({} new HIGH CVEs): {:.2}s wall ({spread:.1}s of it StartImageScan spread), {:.2}s CPU, {} images, {} issues opened",
            flagged,
            wall.as_secs_f64(),
            cpu_used.as_secs_f64(),
            rescan.images,
            sb.github.issues().len()
        );
        print_calls(&calls);
        let starts = count(&calls, "ecr", "StartImageScan").calls;
        let listings = count(&calls, "github", "issues/list-for-repo").calls;
        let opened = count(&calls, "github", "issues/create").calls;
        let checks = checks.into_iter().chain([
            (
                format!("rescan StartImageScan calls = {starts} (target: one per deployed digest = {repos})"),
                starts == repos as u64,
            ),
            (
                format!("rescan issue listings = {listings} (target: 1)"),
                listings == 1,
            ),
            (
                format!("rescan issues opened = {opened} (target: {flagged})"),
                opened == flagged as u64,
            ),
        ]);
        println!();
        let mut ok = true;
        for (what, pass) in checks {
            println!("  {} {what}", if pass { "PASS" } else { "FAIL" });
            ok &= pass;
        }
        if !ok {
            std::process::exit(1);
        }
    });
}
