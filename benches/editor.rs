//! Editor benchmark: prints figures rather than asserting times.
//!
//! - bump every repository of the shared corpus once (`../shared/corpus`), best of 20 runs;
//! - locate every image reference in a generated GitOps tree of 10,000 manifests (read from
//!   disk, both cores), best of 5 runs.
//!
//! Run with `cargo bench --bench editor`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tugboat::domain::image::{Digest, Repository, Tag};
use tugboat::manifest::{locate, set_reference};

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        out = Some(v);
    }
    (best, out.unwrap())
}

fn corpus_files() -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/files");
    let mut out = Vec::new();
    for kind in ["A", "B", "C", "D"] {
        for e in std::fs::read_dir(root.join(kind)).expect("the shared corpus beside the clone") {
            out.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
        }
    }
    out
}

/// Each file with the repositories it references (and whether each is pinned by digest),
/// found once before the timing: the engine knows which repository it bumps.
fn work_list(files: &[String]) -> Vec<(&str, Vec<(Repository, bool)>)> {
    files
        .iter()
        .map(|text| {
            let refs = locate(text).unwrap();
            let mut repos: Vec<Repository> = refs.iter().map(|r| r.repository.clone()).collect();
            repos.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            repos.dedup();
            let repos = repos
                .into_iter()
                .map(|repo| {
                    let pinned = refs.iter().any(|r| r.is_for(&repo) && r.digest.is_some());
                    (repo, pinned)
                })
                .collect();
            (text.as_str(), repos)
        })
        .collect()
}

fn bump_corpus(work: &[(&str, Vec<(Repository, bool)>)]) -> usize {
    let tag = Tag::parse("tugboat-9.9.9").unwrap();
    let digest = Digest::parse(&format!("sha256:{}", "e".repeat(64))).unwrap();
    let mut bumped = 0;
    for (text, repos) in work {
        for (repo, pinned) in repos {
            if set_reference(text, repo, Some(&tag), pinned.then_some(&digest))
                .or_else(|_| set_reference(text, repo, Some(&tag), Some(&digest)))
                .is_ok()
            {
                bumped += 1;
            }
        }
    }
    bumped
}

/// A GitOps tree: per service, a kustomize overlay per environment, a Helm values file and
/// a multi-document manifest, with comments and several images each.
fn generate_tree(root: &Path, files: usize) {
    for i in 0..files {
        let svc = i / 4;
        let dir = root.join(format!("apps/svc-{svc:04}"));
        std::fs::create_dir_all(&dir).unwrap();
        let registry = "123456789012.dkr.ecr.eu-north-1.amazonaws.com";
        let (name, body) = match i % 4 {
            0 => (
                "kustomization.yaml".to_owned(),
                format!(
                    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../base\n  - configmap.yaml\nimages:\n  - name: svc-{svc}\n    newName: {registry}/svc-{svc} # {{\"$imagepolicy\": \"flux:svc-{svc}:name\"}}\n    newTag: \"1.{i}.0\"\n  - name: sidecar\n    newName: {registry}/sidecar\n    newTag: v2.3.{i}\n"
                ),
            ),
            1 => (
                "values.yaml".to_owned(),
                format!(
                    "replicaCount: 2\nimage:\n  repository: {registry}/svc-{svc}\n  tag: 1.{i}.0\n  pullPolicy: IfNotPresent\nresources:\n  limits:\n    cpu: 500m\n    memory: 256Mi\nworker:\n  image:\n    registry: {registry}\n    repository: worker-{svc}\n    tag: \"2.{i}\"\nenv:\n  - name: LOG_LEVEL\n    value: info\n"
                ),
            ),
            2 => (
                "deployment.yaml".to_owned(),
                format!(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: svc-{svc}\n  labels:\n    app: svc-{svc}\nspec:\n  replicas: 3\n  selector:\n    matchLabels:\n      app: svc-{svc}\n  template:\n    metadata:\n      labels:\n        app: svc-{svc}\n    spec:\n      initContainers:\n        - name: migrate\n          image: {registry}/svc-{svc}:1.{i}.0\n      containers:\n        - name: app\n          image: {registry}/svc-{svc}:1.{i}.0\n          ports:\n            - containerPort: 8080\n          readinessProbe:\n            httpGet: {{path: /healthz, port: 8080}}\n        - name: proxy\n          image: envoyproxy/envoy:v1.31.{i}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{svc}\nspec:\n  ports:\n    - port: 80\n      targetPort: 8080\n"
                ),
            ),
            _ => (
                "configmap.yaml".to_owned(),
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: svc-{svc}-config\ndata:\n  script.sh: |\n    #!/bin/sh\n    echo image: not/a-reference:{i}\n  settings: \"a=1,b=2\"\n"
                ),
            ),
        };
        std::fs::write(dir.join(name), body).unwrap();
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

fn scan(root: &Path) -> (usize, usize) {
    let mut paths = Vec::new();
    walk(root, &mut paths);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = paths.len().div_ceil(threads);
    let found: usize = std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|p| locate(&std::fs::read_to_string(p).unwrap()).unwrap().len())
                        .sum::<usize>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    (paths.len(), found)
}

fn main() {
    let files = corpus_files();
    let bytes: usize = files.iter().map(String::len).sum();
    if std::env::var_os("TUGBOAT_BENCH_DETAIL").is_some() {
        let mut per: Vec<(Duration, usize)> = files
            .iter()
            .map(|f| (best(5, || locate(f).unwrap().len()).0, f.len()))
            .collect();
        per.sort();
        for (t, len) in per.iter().rev().take(5) {
            println!("  slowest: {len} bytes in {:.2} ms", t.as_secs_f64() * 1e3);
        }
    }
    let work = work_list(&files);
    let (t, bumped) = best(20, || bump_corpus(&work));
    let (t_locate, found) = best(20, || {
        files
            .iter()
            .map(|f| locate(f).unwrap().len())
            .sum::<usize>()
    });
    println!(
        "corpus: locating all {found} references in the 80 files: {:.1} ms (best of 20)",
        t_locate.as_secs_f64() * 1e3
    );
    println!(
        "corpus: {} files, {} KiB, {bumped} repository bumps: {:.1} ms (best of 20)",
        files.len(),
        bytes / 1024,
        t.as_secs_f64() * 1e3
    );

    let mut figures = tugboat_sandbox::figures::Figures::new("editor");
    figures.add(
        format!("locating all {found} references of the 80-file corpus (best of 20)"),
        format!("{:.1} ms", t_locate.as_secs_f64() * 1e3),
    );
    figures.add(
        format!("{bumped} byte-exact bumps over the corpus (best of 20)"),
        format!("{:.1} ms", t.as_secs_f64() * 1e3),
    );
    if std::env::var_os("TUGBOAT_BENCH_CORPUS_ONLY").is_some() {
        figures.print();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    generate_tree(dir.path(), 10_000);
    let (t, (n, found)) = best(5, || scan(dir.path()));
    println!(
        "tree: {n} manifests, {found} references located: {:.0} ms (best of 5, {} threads)",
        t.as_secs_f64() * 1e3,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    figures.add(
        format!("locating {found} references in a {n}-manifest tree (best of 5)"),
        format!("{:.0} ms", t.as_secs_f64() * 1e3),
    );
    figures.print();
}
