//! The chaos soak: two replicas of the real `tugboat run` binary, under leader election on
//! the Lease stand-in, promote a busy fleet through the sandbox while a seeded schedule
//! injects faults at random and together — latency, timeouts, 5xx before and after a write,
//! cut connections and GitHub's secondary rate limit between tugboat and GitHub, Argo CD and
//! AWS (a [`Chaos`] proxy in front of each), Argo CD health flapping between Progressing and
//! Healthy, SQS redeliveries, GitHub App token expiries, failing notification sinks, a lease
//! taken away, and `kill -9` of either replica (restarted at once, on its working
//! directory: replica a at random, replica b once near the end of the faults, so that one
//! process lives through nearly the whole run and its memory is a curve over it, and so
//! that it dies as notifications are busiest). Then the faults stop, the fleet settles, and the invariants are checked
//! ([`check`]), the replicas' logs too: nobody but tugboat writes to the repository, so a
//! record of its own it took for a stranger's is a violation.
//!
//! Time is compressed by density, not by a clock: pushes come every `push_every` of real
//! time where a busy fleet sees one every few minutes, so the simulated time is the number of
//! pushes times [`REAL_PUSH_EVERY`]. tugboat's own timings (poll interval, leases, claims)
//! stay real; the sandbox runs on the same real clock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chaos::{Chaos, Rates, next, unit};
use crate::{Fleet, Options, Sandbox};

pub mod check;
mod replica;

use replica::Replica;

/// What one push stands for in a busy fleet's week: a push every four minutes.
pub const REAL_PUSH_EVERY: Duration = Duration::from_secs(240);

/// A soak's shape.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    /// Services, each in dev and prod.
    pub services: usize,
    /// The calm phase first (no faults: the latency baseline), then the faulty one.
    pub calm: Duration,
    pub faulty: Duration,
    /// Real time between two pushes, fleet-wide.
    pub push_every: Duration,
    /// The longest wait for the fleet to settle once the faults stop.
    pub settle: Duration,
    /// The `tugboat` binary to run.
    pub binary: PathBuf,
}

/// One push and what it was.
#[derive(Debug, Clone)]
pub struct Push {
    pub service: String,
    pub tag: String,
    pub kind: PushKind,
    pub at: chrono::DateTime<chrono::Utc>,
    /// Pushed while faults were being injected.
    pub faulty: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    Clean,
    /// A CRITICAL finding: the gate refuses it.
    Critical,
    /// Its pods crash: dev verification fails and it is rolled back and marked bad.
    Crashing,
}

/// A replica's resident set and open file descriptors at one moment of its life.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub uptime: Duration,
    pub rss_kib: u64,
    pub fds: u64,
}

/// What a soak did and found.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub real: Duration,
    pub pushes: Vec<Push>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Each replica incarnation's samples, by `replica#n`.
    pub samples: BTreeMap<String, Vec<Sample>>,
    pub approvals: usize,
    /// Whether the fleet settled after the faults stopped, and how long it took.
    pub settled: Option<Duration>,
    pub outcome: check::Outcome,
}

/// The soak's world: the sandbox, its proxies, the Lease stand-in and the replicas.
struct World {
    sb: Sandbox,
    proxies: Vec<Arc<Chaos>>,
    kube: crate::kube::Kube,
    replicas: Vec<Replica>,
    /// Draws the faults and the replica a webhook is sent to (how many draws happen depends
    /// on timing).
    rng: u64,
    /// Draws the pushes alone: a seed replays the same services, tags and kinds of push.
    schedule: u64,
    report: Report,
    tags: BTreeMap<String, u32>,
    /// PRs approved, by number and head commit (an approval of an earlier head no longer
    /// counts).
    approved: BTreeSet<(u64, String)>,
    /// When each PR head was first seen.
    seen_heads: BTreeMap<(u64, String), Instant>,
    work: tempfile::TempDir,
    http: reqwest::Client,
    faulty: bool,
    /// When replicas were killed, in the sandbox's time.
    kills: Vec<chrono::DateTime<chrono::Utc>>,
    /// Replicas that exited on their own (restarted, as Kubernetes restarts a container):
    /// each is a violation, since no fault of the soak lasts long enough to excuse one.
    exits: Vec<String>,
    /// Keeps the stand-ins' servers up.
    _servers: Vec<tokio::task::JoinHandle<()>>,
}

/// Run a soak; the report says what it found (a panic is a bug of the soak itself).
pub async fn run(s: &Settings) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut w = World::start(s).await?;
    w.report.seed = s.seed;
    let calm_end = started + s.calm;
    let end = calm_end + s.faulty;
    let mut ticks = Ticks::new(started);
    while Instant::now() < end {
        w.faulty = Instant::now() >= calm_end;
        w.tick(s, &mut ticks).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.calm_down();
    // The newest tag is each service's candidate: one the gate refuses, or one rolled back as
    // bad, leaves the environment where it was. A last clean push of every service is what
    // each environment must end at.
    w.drain();
    let settling = Instant::now();
    while settling.elapsed() < s.settle {
        w.revive(&s.binary);
        w.approve().await;
        w.sample();
        if check::settled(&w.sb, &w.report.pushes) {
            w.report.settled = Some(settling.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    w.report.outcome = check::check(&w.sb, &w.report.pushes, &w.kills);
    w.report.outcome.violations.append(&mut w.exits);
    let logs: Vec<PathBuf> = w.replicas.iter().map(|r| r.log.clone()).collect();
    w.report
        .outcome
        .violations
        .extend(check::false_forgeries(&logs));
    if w.report.settled.is_none() {
        w.report.outcome.violations.push(format!(
            "the fleet did not settle within {:?} after the faults stopped",
            s.settle
        ));
    }
    for p in &w.proxies {
        for (kind, n) in p.injected() {
            *w.report.faults.entry(kind).or_default() += n;
        }
    }
    w.report.real = started.elapsed();
    let logs = w.work.path().to_owned();
    if !w.report.outcome.violations.is_empty() {
        // Keep the replicas' logs for whoever replays the seed.
        let kept = w.work.keep();
        eprintln!("soak: the replicas' logs are kept in {}", kept.display());
    } else {
        drop(logs);
    }
    Ok(std::mem::take(&mut w.report))
}

/// When each periodic part of a tick last ran.
struct Ticks {
    started: Instant,
    push: Instant,
    approve: Instant,
    sample: Instant,
    faults: Instant,
    chaos: Instant,
}

impl Ticks {
    fn new(at: Instant) -> Self {
        Self {
            started: at,
            push: at,
            approve: at,
            sample: at,
            faults: at,
            chaos: at,
        }
    }
}

/// Whether `every` has passed since `last`, moving `last` on when it has.
fn due(last: &mut Instant, every: Duration) -> bool {
    if last.elapsed() >= every {
        *last = Instant::now();
        true
    } else {
        false
    }
}

impl World {
    async fn start(s: &Settings) -> anyhow::Result<Self> {
        let mut servers = Vec::new();
        let fleet = Fleet {
            services: (0..s.services)
                .map(|i| (format!("svc-{i:03}"), crate::Style::Kustomize))
                .collect(),
            environments: vec!["dev".into(), "prod".into()],
            tags: 1,
        };
        let sb = Sandbox::start(Options {
            fleet,
            sync_delay: Duration::from_millis(300),
        })
        .await?;
        // Dev rolls a failed deploy back by itself; prod waits for a platform lead.
        sb.aws.put_parameter(
            &format!("{}defaults", crate::POLICY_PATH),
            &crate::DEFAULT_POLICY.replace(
                "    degraded_grace: 2s\n",
                "    degraded_grace: 2s\n    rollback: auto\n",
            ),
            "String",
        );
        sb.github.add_collaborator("alice", "write");
        sb.github
            .add_team_member("salon", "platform-leads", "alice");
        let mut proxies = Vec::new();
        let mut urls = BTreeMap::new();
        for (i, (system, upstream)) in [
            ("github", sb.github_url.clone()),
            ("argocd", sb.argocd_url.clone()),
            ("aws", sb.aws_url.clone()),
        ]
        .into_iter()
        .enumerate()
        {
            let chaos = Chaos::new(system, &upstream, s.seed.wrapping_add(i as u64 + 1));
            let (url, server) = chaos.start().await?;
            servers.push(server);
            urls.insert(upstream, url);
            proxies.push(chaos);
        }
        let kube = crate::kube::Kube::new(sb.clock());
        let (kube_url, server) = kube.start().await?;
        servers.push(server);
        let work = tempfile::Builder::new().prefix("tugboat-soak-").tempdir()?;
        let mut replicas = Vec::new();
        for name in ["tugboat-a", "tugboat-b"] {
            replicas.push(replica(&sb, work.path(), name, &urls, &kube_url)?);
        }
        let mut w = Self {
            sb,
            proxies,
            kube,
            replicas,
            rng: s.seed,
            schedule: s.seed ^ 0x5eed_5c4e_d01e,
            report: Report::default(),
            tags: BTreeMap::new(),
            approved: BTreeSet::new(),
            seen_heads: BTreeMap::new(),
            work,
            http: reqwest::Client::new(),
            faulty: false,
            kills: Vec::new(),
            exits: Vec::new(),
            _servers: servers,
        };
        for r in &mut w.replicas {
            r.spawn(&s.binary);
        }
        Ok(w)
    }

    async fn tick(&mut self, s: &Settings, t: &mut Ticks) {
        self.revive(&s.binary);
        if due(&mut t.push, s.push_every) {
            self.push();
        }
        if due(&mut t.approve, Duration::from_secs(1)) {
            self.approve().await;
        }
        if due(&mut t.sample, Duration::from_secs(2)) {
            self.sample();
        }
        if self.faulty && due(&mut t.chaos, Duration::from_secs(3)) {
            self.set_rates();
        }
        if self.faulty && due(&mut t.faults, Duration::from_secs(1)) {
            self.inject(&s.binary);
            let phase = (t.started.elapsed().as_secs_f64() - s.calm.as_secs_f64())
                / s.faulty.as_secs_f64().max(1.0);
            self.ensure(&s.binary, phase);
        }
    }

    fn push(&mut self) {
        let n = self.sb.fleet.services.len() as u64;
        let service = self.sb.fleet.services[(next(&mut self.schedule) % n) as usize]
            .0
            .clone();
        let roll = unit(&mut self.schedule);
        let kind = if roll < 0.06 {
            PushKind::Critical
        } else if roll < 0.10 {
            PushKind::Crashing
        } else {
            PushKind::Clean
        };
        self.push_one(service, kind);
    }

    /// A last clean push of every service.
    fn drain(&mut self) {
        let services: Vec<String> = self
            .sb
            .fleet
            .services
            .iter()
            .map(|(s, _)| s.clone())
            .collect();
        for service in services {
            self.push_one(service, PushKind::Clean);
        }
    }

    fn push_one(&mut self, service: String, kind: PushKind) {
        let seq = self.tags.entry(service.clone()).or_insert(0);
        *seq += 1;
        let tag = format!("2.{seq}.0");
        let findings = match kind {
            PushKind::Critical => vec![crate::SeedFinding {
                id: "CVE-2026-0001".into(),
                severity: "CRITICAL".into(),
                package: Some("openssl".into()),
                status: None,
            }],
            _ => vec![],
        };
        if kind == PushKind::Crashing {
            self.sb
                .argocd
                .mark_crashing(&format!("{}:{tag}", crate::image_of(&service)));
        }
        self.sb.aws.push(&service, &tag, "COMPLETE", findings);
        self.report.pushes.push(Push {
            service,
            tag,
            kind,
            at: tugboat::clock::Clock::now(&self.sb.clock),
            faulty: self.faulty,
        });
    }

    /// The commit at the head of branch `name` in the GitHub stand-in's repository.
    fn head_of(&self, name: &str) -> String {
        git2::Repository::open_bare(self.sb.github.repo_path())
            .and_then(|r| r.refname_to_id(&format!("refs/heads/{name}")))
            .map(|id| id.to_string())
            .unwrap_or_default()
    }

    /// Approve, as a platform lead, every open prod PR at its current head (as GitHub counts
    /// an approval: of a commit), and deliver the comment's webhook to a replica chosen at
    /// random (the follower hands it on).
    async fn approve(&mut self) {
        for pr in self.sb.github.pulls() {
            if pr.state != "open" || !pr.head.starts_with("tugboat/prod/") {
                continue;
            }
            // As a person does, some time after the head appeared: GitHub stamps a comment to
            // the second, and tugboat counts only an approval stamped after the head's push.
            let head = (pr.number, self.head_of(&pr.head));
            let seen = *self
                .seen_heads
                .entry(head.clone())
                .or_insert_with(Instant::now);
            if seen.elapsed() < Duration::from_millis(1500) || !self.approved.insert(head) {
                continue;
            }
            let Some(comment) = self.sb.github.comment_as(pr.number, "alice", "/approve") else {
                continue;
            };
            self.report.approvals += 1;
            let body = serde_json::json!({
                "action": "created",
                "issue": {"number": pr.number, "pull_request": {"url": "x"}},
                "comment": {"id": comment, "body": "/approve", "user": {"login": "alice", "type": "User"}},
            })
            .to_string();
            let port = self.replicas[(next(&mut self.rng) % 2) as usize].port;
            let _ = self
                .http
                .post(format!("http://127.0.0.1:{port}/webhooks/github"))
                .header("X-GitHub-Event", "issue_comment")
                .header("X-GitHub-Delivery", format!("approve-{comment}"))
                .header("Content-Type", "application/json")
                .header("X-Hub-Signature-256", sign(&body))
                .timeout(Duration::from_secs(10))
                .body(body)
                .send()
                .await;
        }
    }

    fn sample(&mut self) {
        for r in &self.replicas {
            if let Some(sample) = r.sample() {
                let key = format!("{}#{}", r.name, r.incarnation);
                self.report.samples.entry(key).or_default().push(sample);
            }
        }
    }

    /// New fault rates on each proxy: about half the time none, else a mix.
    fn set_rates(&mut self) {
        for p in &self.proxies {
            let rates = if unit(&mut self.rng) < 0.5 {
                Rates::default()
            } else {
                Rates {
                    latency: 0.2,
                    error_before: 0.03,
                    error_after: 0.02,
                    reset: 0.02,
                    timeout: 0.002,
                    secondary_rate_limit: 0.03,
                    path: None,
                }
            };
            p.set(rates);
        }
    }

    fn count(&mut self, kind: &str) {
        *self.report.faults.entry(kind.to_owned()).or_default() += 1;
    }

    /// Each second, each of the other faults at its own rate.
    fn inject(&mut self, binary: &Path) {
        let mut roll = |p: f64| unit(&mut self.rng) < p;
        let (kill, token, flap, redeliver, lease, sink) = (
            roll(1.0 / 40.0),
            roll(1.0 / 20.0),
            roll(1.0 / 10.0),
            roll(1.0 / 5.0),
            roll(1.0 / 60.0),
            roll(1.0 / 20.0),
        );
        // Replica a is killed at random; b only once, near the end (`ensure`), so that one
        // process lives through nearly the whole run, under every other fault, and its RSS
        // and open files are a curve over the run, not over a few minutes.
        if kill {
            self.kill(0, binary);
        }
        if token {
            self.sb.github.app.expire_tokens();
            self.count("GitHub App token expiry");
        }
        if flap {
            let services = &self.sb.fleet.services;
            let i = (next(&mut self.rng) % services.len() as u64) as usize;
            let app = crate::app_name(&services[i].0, "dev");
            let _ = self
                .sb
                .argocd
                .set_quirk(&app, "flapping", Duration::from_secs(2));
            self.count("Argo CD flapping Progressing/Healthy");
        }
        if redeliver {
            let n = self.sb.aws.sqs.redeliver(crate::sqs::EVENTS_QUEUE, 3);
            if n > 0 {
                self.count("SQS redelivery");
            }
        }
        if lease && self.kube.steal("tugboat", "tugboat", "intruder") {
            self.count(LEASE);
        }
        if sink {
            let which = if next(&mut self.rng).is_multiple_of(2) {
                "slack"
            } else {
                "webhook"
            };
            self.sb.sinks.fail_next(which, 2, 503);
            self.count("notification sink 503");
        }
    }

    /// Start again a replica whose process ended on its own, as Kubernetes would, saying so.
    fn revive(&mut self, binary: &Path) {
        for r in &mut self.replicas {
            let exited = r.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let up = r.started.elapsed().as_secs();
                self.exits.push(format!(
                    "{}#{} exited on its own ({status}) after {up} s; see {}",
                    r.name,
                    r.incarnation,
                    r.log.display()
                ));
                r.child = None;
                r.spawn(binary);
            }
        }
    }

    /// `kill -9` of a replica, restarted at once on its working directory; when (the
    /// sandbox's time) is kept: a notification delivered again after it is the outbox's
    /// redelivery, not a violation.
    fn kill(&mut self, replica: usize, binary: &Path) {
        self.kills.push(self.sb.clock().now());
        self.replicas[replica].kill();
        self.replicas[replica].spawn(binary);
        self.count(KILL);
    }

    /// The rare faults, each at least once however the draws fall: a kill of each replica
    /// (a at a third of the faulty phase, b, never killed at random, at 95 %: what it was
    /// delivering then is its successor's to deliver), and a lost lease (at half).
    fn ensure(&mut self, binary: &Path, phase: f64) {
        for (at, replica) in [(1.0 / 3.0, 0), (0.95, 1)] {
            if phase >= at && self.replicas[replica].incarnation == 1 {
                self.kill(replica, binary);
                return;
            }
        }
        let lost = self.report.faults.get(LEASE).copied().unwrap_or(0);
        if phase >= 0.5 && lost == 0 && self.kube.steal("tugboat", "tugboat", "intruder") {
            self.count(LEASE);
        }
    }

    fn calm_down(&mut self) {
        for p in &self.proxies {
            p.set(Rates::default());
        }
    }
}

/// Replica `name`'s configuration file: the sandbox's own as a GitHub App, through the
/// proxies in `urls`, polling every 5 s, a rescan every two minutes (a Monday each time),
/// webhooks on its own port, and election on the Lease stand-in at `kube`.
fn replica(
    sb: &Sandbox,
    work: &Path,
    name: &'static str,
    urls: &BTreeMap<String, String>,
    kube: &str,
) -> anyhow::Result<Replica> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let secret = work.join("webhook-secret");
    std::fs::write(&secret, WEBHOOK_SECRET)?;
    let mut toml = sb
        .config_toml_as_app(&work.join(name))
        .replace("interval = \"10s\"", "interval = \"5s\"")
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            "dashboard = true\n",
            &format!(
                "dashboard = true\nwebhook_secret = {{ file = \"{}\" }}\n",
                secret.display()
            ),
        );
    for (upstream, proxy) in urls {
        toml = toml.replace(upstream.as_str(), proxy);
    }
    let toml = format!(
        "{toml}\n[schedules.rescan]\ncron = \"*/2 * * * *\"\n\n[election]\nenabled = true\n\
         namespace = \"tugboat\"\nidentity = \"{name}\"\napi_url = \"{kube}\"\n\
         address = \"http://127.0.0.1:{port}\"\nlease_duration = \"4s\"\n\
         renew_deadline = \"3s\"\nretry_period = \"500ms\"\n"
    );
    let config = work.join(format!("{name}.toml"));
    std::fs::write(&config, toml)?;
    Ok(Replica {
        name,
        port,
        config,
        log: work.join(format!("{name}.log")),
        child: None,
        started: Instant::now(),
        incarnation: 0,
    })
}

const KILL: &str = "kill -9 of a replica (restarted at once)";
const LEASE: &str = "lease lost (taken by another holder)";

const WEBHOOK_SECRET: &str = "whsec-soak-51e0"; // pragma: allowlist secret (a test fixture)

fn sign(body: &str) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, WEBHOOK_SECRET.as_bytes());
    format!(
        "sha256={}",
        hex::encode(hmac::sign(&key, body.as_bytes()).as_ref())
    )
}

impl Report {
    /// The figures and the verdict, for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let kinds = |k: PushKind| self.pushes.iter().filter(|p| p.kind == k).count();
        let simulated = REAL_PUSH_EVERY * u32::try_from(self.pushes.len()).unwrap_or(u32::MAX);
        let o = &self.outcome;
        out.push_str(&format!(
            "chaos soak, seed {}\n  real time {:.0} s; simulated {:.1} days (one push every {} min)\n",
            self.seed,
            self.real.as_secs_f64(),
            simulated.as_secs_f64() / 86_400.0,
            REAL_PUSH_EVERY.as_secs() / 60,
        ));
        out.push_str(&format!(
            "  pushes {} (clean {}, refused by the gate {}, crashing {}); prod approvals {}\n",
            self.pushes.len(),
            kinds(PushKind::Clean),
            kinds(PushKind::Critical),
            kinds(PushKind::Crashing),
            self.approvals
        ));
        out.push_str(&format!(
            "  merged: {:?}; rollbacks {}; clean pushes superseded before dev {}; notifications {} ({} delivered again after a kill)\n",
            o.merged, o.rollbacks, o.superseded, o.notifications, o.redelivered
        ));
        let faults: u64 = self.faults.values().sum();
        out.push_str(&format!("  faults injected: {faults}\n"));
        for (kind, n) in &self.faults {
            out.push_str(&format!("    {kind:<40} {n:>6}\n"));
        }
        for (label, times) in [("without faults", &o.calm), ("with faults", &o.faulty)] {
            match check::percentiles(times) {
                Some((p50, p95, max)) => out.push_str(&format!(
                    "  push -> dev Healthy {label:<15} n {:>4}  p50 {p50:.1} s  p95 {p95:.1} s  max {max:.1} s\n",
                    times.len()
                )),
                None => out.push_str(&format!("  push -> dev Healthy {label:<15} none\n")),
            }
        }
        out.push_str(&self.memory_text());
        match self.settled {
            Some(d) => out.push_str(&format!(
                "  settled {:.1} s after the faults stopped\n",
                d.as_secs_f64()
            )),
            None => out.push_str("  never settled\n"),
        }
        out.push_str(&format!("  invariant violations: {}\n", o.violations.len()));
        for v in &o.violations {
            out.push_str(&format!("    {v}\n"));
        }
        if !o.violations.is_empty() {
            out.push_str(&format!("  replay with TUGBOAT_SOAK_SEED={}\n", self.seed));
        }
        out
    }

    /// The headline figures, as rows of the benchmarks' table.
    pub fn figures(&self) -> crate::figures::Figures {
        let mut f = crate::figures::Figures::new("soak");
        let faults: u64 = self.faults.values().sum();
        f.add(
            format!(
                "seed {}: real time, faults injected, invariant violations",
                self.seed
            ),
            format!(
                "{:.0} s, {faults}, {}",
                self.real.as_secs_f64(),
                self.outcome.violations.len()
            ),
        );
        for (label, times) in [
            ("without", &self.outcome.calm),
            ("with", &self.outcome.faulty),
        ] {
            if let Some((p50, p95, max)) = check::percentiles(times) {
                f.add(
                    format!("push → dev Healthy {label} faults, p50 / p95 / max"),
                    format!("{p50:.1} / {p95:.1} / {max:.1} s"),
                );
            }
        }
        f.add(
            "RSS and open fds of the longest-lived replica, first vs last tenth",
            self.memory_text()
                .split_once("): ")
                .map_or("too few samples".to_owned(), |(_, m)| {
                    m.lines()
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .replace(" (first vs last tenth)", "")
                }),
        );
        f
    }

    /// RSS and open files over the longest-lived replica process: the mean of its first and
    /// of its last tenth of samples, then the curve (the mean of each tenth).
    fn memory_text(&self) -> String {
        let Some((name, samples)) = self
            .samples
            .iter()
            .filter(|(_, s)| s.len() >= 10)
            .max_by_key(|(_, s)| s.last().map(|x| x.uptime))
        else {
            return "  RSS and fds: too few samples\n".to_owned();
        };
        let tenth = (samples.len() / 10).max(1);
        let mean = |s: &[Sample]| {
            let n = s.len() as f64;
            let rss = s.iter().map(|x| x.rss_kib as f64).sum::<f64>() / n / 1024.0;
            let fds = s.iter().map(|x| x.fds as f64).sum::<f64>() / n;
            (rss, fds)
        };
        let tenths: Vec<(f64, f64)> = samples.chunks(tenth).take(10).map(mean).collect();
        let (rss0, fds0) = tenths[0];
        let (rss1, fds1) = mean(&samples[samples.len() - tenth..]);
        let up = samples.last().map_or(0.0, |s| s.uptime.as_secs_f64());
        let curve =
            |f: &dyn Fn(&(f64, f64)) -> String| tenths.iter().map(f).collect::<Vec<_>>().join(" ");
        format!(
            "  {name} (up {up:.0} s, the longest-lived process): RSS {rss0:.1} -> {rss1:.1} MiB, open fds {fds0:.0} -> {fds1:.0} (first vs last tenth)\n    RSS by tenth (MiB): {}\n    open fds by tenth: {}\n",
            curve(&|(r, _)| format!("{r:.1}")),
            curve(&|(_, f)| format!("{f:.0}")),
        )
    }
}
