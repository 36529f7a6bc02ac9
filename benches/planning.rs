//! Planning benchmark: the CPU cost of deciding for 1,000 repositories × 100 tags, as an
//! idle cycle does once the registry has answered (tag rule, ordering, position against
//! what is deployed, the gate on a cached scan, the decision). Prints figures.
//!
//! Run with `cargo bench --bench planning`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use tugboat::domain::gate::{self, Finding, ScanReport, ScanStatus, Severity};
use tugboat::domain::image::{Digest, ImageRef, Tag};
use tugboat::domain::plan::{self, Position};
use tugboat::domain::policy::{PolicyDocument, resolve};
use tugboat::domain::select::{self, ImageRecord};

const REPOSITORIES: usize = 1_000;
const TAGS: usize = 100;

fn registry() -> Vec<Vec<ImageRecord>> {
    (0..REPOSITORIES)
        .map(|r| {
            (0..TAGS)
                .map(|t| {
                    let mut tags = vec![Tag::parse(&format!("1.{}.{t}", r % 7)).unwrap()];
                    if t == TAGS - 1 {
                        tags.push(Tag::parse("latest").unwrap());
                    }
                    if t % 10 == 0 {
                        tags.push(Tag::parse(&format!("sha-{r:04x}{t:04x}")).unwrap());
                    }
                    ImageRecord {
                        digest: Digest::parse(&format!("sha256:{:064x}", r * TAGS + t)).unwrap(),
                        tags,
                        pushed_at: Utc
                            .timestamp_opt(1_760_000_000 + (t as i64) * 3600, 0)
                            .unwrap(),
                        kind: Default::default(),
                    }
                })
                .collect()
        })
        .collect()
}

fn main() {
    let docs = [PolicyDocument {
        name: "/p/defaults".into(),
        version: 1,
        body: "environments:\n  dev:\n    tag: {pattern: '^v?(?P<version>\\d+\\.\\d+\\.\\d+)$', semver: '>=1.0, <2'}\n    scan: {thresholds: {CRITICAL: 0, HIGH: 0, MEDIUM: 10}, ignore: [{id: CVE-1, reason: r, expires: 2099-01-01}]}\n".into(),
    }];
    let registry = registry();
    let report = ScanReport {
        status: ScanStatus::Complete,
        counts: BTreeMap::new(),
        findings: (0..20)
            .map(|i| Finding {
                id: format!("CVE-2026-{i}"),
                severity: if i < 5 {
                    Severity::Medium
                } else {
                    Severity::Low
                },
                package: Some("openssl".into()),
                fixed_in: None,
                url: None,
                platforms: Vec::new(),
            })
            .collect(),
        not_counted: Vec::new(),
    };
    let today = Utc::now().date_naive();
    let mut best = Duration::MAX;
    let mut up_to_date = 0;
    for _ in 0..10 {
        let t = Instant::now();
        up_to_date = 0;
        // The policy is resolved once per refresh, not per cycle; included here anyway.
        let policy = resolve(&docs, "/p/", "svc", &["dev".into()]).unwrap();
        let env = &policy.environments["dev"];
        for (r, images) in registry.iter().enumerate() {
            let newest = select::eligible(images, &env.tag)
                .into_iter()
                .next()
                .unwrap();
            let deployed = ImageRef::parse(&format!("reg.io/svc-{r}:{}", newest.tag)).unwrap();
            let record = deployed
                .tag
                .as_ref()
                .and_then(|t| select::find_tag(images, t));
            match plan::position(Some(&deployed), record.as_ref(), &newest, &env.tag) {
                Position::Deployed => up_to_date += 1,
                _ => {
                    let g = gate::gate(&report, &env.scan, today);
                    std::hint::black_box(plan::decide(Some(&deployed), newest, &g));
                }
            }
        }
        best = best.min(t.elapsed());
    }
    println!(
        "planning: {REPOSITORIES} repositories x {TAGS} tags, {up_to_date} up to date: {:.1} ms CPU (best of 10, one thread)",
        best.as_secs_f64() * 1e3
    );
    let mut figures = tugboat_sandbox::figures::Figures::new("planning");
    figures.add(
        format!("deciding {REPOSITORIES} repositories × {TAGS} tags, one thread (best of 10)"),
        format!("{:.1} ms", best.as_secs_f64() * 1e3),
    );
    let t = Instant::now();
    let mut gated = 0;
    for images in &registry {
        let policy = resolve(&docs, "/p/", "svc", &["dev".into()]).unwrap();
        let env = &policy.environments["dev"];
        let newest = select::eligible(images, &env.tag)
            .into_iter()
            .next()
            .unwrap();
        std::hint::black_box(plan::decide(
            None,
            newest,
            &gate::gate(&report, &env.scan, today),
        ));
        gated += 1;
    }
    println!(
        "planning with a promotion each and the policy resolved per repository: {gated} decisions in {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    figures.add(
        format!("{gated} decisions with the policy resolved per repository"),
        format!("{:.1} ms", t.elapsed().as_secs_f64() * 1e3),
    );
    figures.print();
}
