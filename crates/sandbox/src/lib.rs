//! In-process stand-ins for ECR + SSM, GitHub (with a real bare git repository behind the
//! real `git http-backend`) and Argo CD, on loopback. Used by `tugboat demo`,
//! `tugboat sandbox` and the end-to-end tests; never by the production code paths.

pub mod argocd;
pub mod aws;
pub mod chaos;
pub mod demo;
pub mod eventbridge;
pub mod figures;
pub mod github;
pub mod github_app;
mod github_data;
mod github_people;
mod github_wire;
pub mod kube;
pub mod sinks;
pub mod soak;
pub mod sqs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;

pub use aws::SeedFinding;
pub use github::{CiJob, Protection};

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tugboat::clock::Clock;

/// The sandbox's time of day: the wall clock plus an offset that a test moves forward
/// ([`Sandbox::advance`]) instead of sleeping. Every stand-in stamps comments, merges,
/// statuses, operations and pushes from it, and a test gives the same clock to its engine and
/// adapters ([`Sandbox::clock`]).
#[derive(Debug, Clone, Default)]
pub struct SandboxClock(Arc<AtomicI64>);

impl SandboxClock {
    /// Move the time of day forward by `by` for every reader of this clock.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for SandboxClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::Duration::milliseconds(self.0.load(Ordering::Relaxed))
    }
}

/// Tunables of a sandbox.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long the Argo CD stand-in takes to sync after main changes.
    pub sync_delay: Duration,
    /// The services, environments and images the sandbox starts with.
    pub fleet: Fleet,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sync_delay: Duration::from_millis(500),
            fleet: Fleet::salon(),
        }
    }
}

/// What a sandbox is seeded with: services (each with an ECR repository of the same name),
/// their environments, and how many tags each repository holds at start. Every environment
/// deploys the newest tag, so the first cycle has nothing to promote.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub services: Vec<(String, Style)>,
    pub environments: Vec<String>,
    /// Tags `1.0.0`, or `1.0.0` … `1.0.<n-1>` (pushed an hour apart, all scanned clean).
    pub tags: usize,
}

impl Fleet {
    /// The salon: six services, dev and prod, all at 1.0.0.
    pub fn salon() -> Self {
        Self {
            services: SALON_SERVICES
                .iter()
                .map(|(s, st)| ((*s).to_owned(), *st))
                .collect(),
            environments: SALON_ENVIRONMENTS.iter().map(|e| (*e).to_owned()).collect(),
            tags: 1,
        }
    }

    /// `services` kustomize services `svc-0000` … in one environment (`dev`), each with
    /// `tags` tags: a registry the size of a large organisation's, for benchmarks.
    pub fn synthetic(services: usize, tags: usize) -> Self {
        Self {
            services: (0..services)
                .map(|i| (format!("svc-{i:04}"), Style::Kustomize))
                .collect(),
            environments: vec!["dev".to_owned()],
            tags: tags.max(1),
        }
    }

    /// The tag every environment deploys at start.
    pub fn deployed_tag(&self) -> String {
        format!("1.0.{}", self.tags - 1)
    }
}

/// Running stand-ins and where they listen.
pub struct Sandbox {
    pub aws: aws::Aws,
    pub github: github::GitHub,
    pub argocd: argocd::ArgoCd,
    pub aws_url: String,
    pub github_url: String,
    pub argocd_url: String,
    /// The notification sinks (Slack-compatible and webhook) and where they listen.
    pub sinks: sinks::Sinks,
    pub sinks_url: String,
    pub github_token: String,
    pub argocd_token: String,
    pub fleet: Fleet,
    clock: SandboxClock,
    dir: tempfile::TempDir,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The six services of the salon, and which manifest style each uses.
pub const SALON_SERVICES: [(&str, Style); 6] = [
    ("user_service", Style::Kustomize),
    ("appointment_service", Style::Kustomize),
    ("staff_management", Style::Kustomize),
    ("service_management", Style::Kustomize),
    ("reports_analytics", Style::HelmValues),
    ("notification_service", Style::HelmValues),
];

pub const SALON_ENVIRONMENTS: [&str; 2] = ["dev", "prod"];

/// How a service's GitOps files are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Kustomize,
    HelmValues,
}

pub const POLICY_PATH: &str = "/salon/promotion/";

const DEFAULT_POLICY: &str = "# Salon promotion policy: defaults for every service.
environments:
  dev:
    auto_merge: true
    # The sandbox's repository runs no CI, so nothing is worth waiting for; against a
    # real repository keep the default (60s): GitHub Actions' check runs appear only
    # once the workflow is queued.
    checks_settle: 0s
    health_timeout: 30s
    # The stand-in's rollouts settle in under a second: two seconds of Degraded is lasting.
    degraded_grace: 2s
    scan:
      thresholds: {CRITICAL: 0, HIGH: 0}
  prod:
    auto_merge: false
    approvals: 1
    approvers: [salon/platform-leads]
    checks_settle: 0s
    health_timeout: 10m
    scan:
      thresholds: {CRITICAL: 0, HIGH: 0}
    # Only what the sandbox's CI signed reaches prod (its public key: `tugboat sandbox`
    # prints it; the stand-in keeps it in SSM).
    signatures:
      required: true
      keys: [{ssm: /salon/cosign/ci.pub}]
";

/// Where the sandbox keeps its CI's cosign public key (the policy's prod trusts it).
pub const CI_KEY_PARAMETER: &str = "/salon/cosign/ci.pub";

fn token(seed: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let h = Sha256::digest(format!("{seed}{now}{}", std::process::id()).as_bytes());
    format!("sandbox_{seed}_{}", &hex::encode(h)[..24])
}

async fn serve(
    router: axum::Router,
    addr: SocketAddr,
) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((url, task))
}

impl Sandbox {
    /// Start the stand-ins on loopback ports chosen by the OS, with the salon's repository,
    /// applications, images and policy in place (the salon's unless `opts.fleet` says otherwise).
    pub async fn start(opts: Options) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tugboat-sandbox-")
            .tempdir()?;
        let github_token = token("gh");
        let argocd_token = token("argo");
        let clock = SandboxClock::default();
        let gh = github::GitHub::new(
            &dir.path().join("git"),
            "salon",
            "salon-gitops",
            &github_token,
        )
        .with_clock(clock.clone());
        gh.init(&fleet_files(&opts.fleet))
            .map_err(|e| std::io::Error::other(e.message().to_owned()))?;
        let argo = argocd::ArgoCd::new(gh.clone(), &argocd_token, opts.sync_delay);
        let aws = aws::Aws::with_clock(clock.clone());
        let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
        let sinks = sinks::Sinks::new(&token("hook"), clock.clone());
        let (aws_url, t1) = serve(aws.router(), lo).await?;
        let (github_url, t2) = serve(gh.router().merge(sinks.inspect_router()), lo).await?;
        let (argocd_url, t3) = serve(argo.router(), lo).await?;
        let (sinks_url, t4) = serve(sinks.router(), lo).await?;
        // GitHub's merge queue moves on by itself.
        let queue = gh.clone();
        let t5 = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                queue.tick_queue().await;
            }
        });
        let sb = Self {
            aws,
            github: gh,
            argocd: argo,
            aws_url,
            github_url,
            argocd_url,
            sinks,
            sinks_url,
            github_token,
            argocd_token,
            fleet: opts.fleet,
            clock,
            dir,
            tasks: vec![t1, t2, t3, t4, t5],
        };
        sb.seed();
        sb.aws.emit_events();
        std::fs::write(sb.dir.path().join("github-token"), &sb.github_token)?;
        std::fs::write(sb.dir.path().join("argocd-token"), &sb.argocd_token)?;
        let slack_url = format!("{}{}", sb.sinks_url, sinks::SLACK_HOOK);
        std::fs::write(sb.dir.path().join("slack-webhook-url"), slack_url)?;
        std::fs::write(
            sb.dir.path().join("webhook-url"),
            format!("{}/webhook", sb.sinks_url),
        )?;
        std::fs::write(sb.dir.path().join("webhook-secret"), sb.sinks.secret())?;
        std::fs::write(
            sb.dir.path().join("github-app.pem"),
            sb.github.app.private_key_pem(),
        )?;
        Ok(sb)
    }

    fn seed(&self) {
        let start = self.clock.now() - chrono::Duration::hours(self.fleet.tags as i64);
        for (svc, style) in &self.fleet.services {
            for t in 0..self.fleet.tags {
                let at = start + chrono::Duration::hours(t as i64);
                self.aws
                    .push_at(svc, &format!("1.0.{t}"), "COMPLETE", vec![], at);
            }
            for env in &self.fleet.environments {
                self.argocd
                    .add_app(&app_name(svc, env), vec![path_of(svc, *style, env)]);
            }
        }
        self.aws
            .put_parameter(&format!("{POLICY_PATH}defaults"), DEFAULT_POLICY, "String");
        self.aws
            .put_parameter(CI_KEY_PARAMETER, &self.aws.ci_public_key(), "String");
        self.aws.put_parameter(
            &format!("{POLICY_PATH}services/notification_service"),
            "# Release tags only, e.g. 1.2.0\nenvironments:\n  dev:\n    tag:\n      pattern: '^\\d+\\.\\d+\\.\\d+$'\n",
            "String",
        );
    }

    /// The time of day every stand-in stamps with: give it to the engine and the adapters.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(self.clock.clone())
    }

    /// Move the sandbox's time of day forward (comments, merges and pushes made after this
    /// are stamped later), for a test that would otherwise sleep.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The sandbox's own directory (tokens, git root).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A tugboat configuration that points at this sandbox.
    pub fn config_toml(&self, workdir: &Path) -> String {
        let mut s = format!(
            r#"# tugboat configuration for the local sandbox (tokens are read from files).
[aws]
region = "eu-north-1"
registry_id = "{registry}"
endpoint_url = "{aws}"
test_credentials = true

[policy]
ssm_path = "{POLICY_PATH}"
refresh = "5s"

[github]
repository = "salon/salon-gitops"
base_branch = "main"
api_url = "{gh}"
clone_url = "{gh}/git/salon/salon-gitops.git"
# The stand-in has no secondary rate limit; against GitHub keep the defaults (80 a minute,
# 500 an hour).
writes_per_minute = 10000
writes_per_hour = 600000
# The promotion dashboard issue (labels tugboat, dashboard), kept by `tugboat run`.
dashboard = true
token = {{ file = "{ghtok}" }}

[argocd]
url = "{argo}"
token = {{ file = "{argotok}" }}
poll_interval = "200ms"

# EventBridge's ECR and Inspector events, from the stand-in's SQS queue: a push wakes its
# service at once; the interval below is only the reconciler's.
[events]
queue_url = "{queue}"

# Notifications: the stand-ins' Slack incoming webhook and signed JSON webhook (what they
# received: GET {gh}/_sandbox/notifications). URLs are secrets, read from files.
[notify.sinks.slack]
kind = "slack"
url = {{ file = "{slack}" }}

[notify.sinks.webhook]
kind = "webhook"
url = {{ file = "{hook}" }}
secret = {{ file = "{hook_secret}" }}

[engine]
interval = "10s"
workdir = "{work}"
scan_wait = "5s"

[server]
listen = "127.0.0.1:0"

# The stand-in's scans finish at the second look; no need to pace StartImageScan.
[rescan]
spread = "10ms"
poll = "100ms"
wait = "30s"
"#,
            registry = aws::REGISTRY_ID,
            aws = self.aws_url,
            queue = sqs::Sqs::queue_url(&self.aws_url, sqs::EVENTS_QUEUE),
            gh = self.github_url,
            argo = self.argocd_url,
            ghtok = self.dir.path().join("github-token").display(),
            argotok = self.dir.path().join("argocd-token").display(),
            slack = self.dir.path().join("slack-webhook-url").display(),
            hook = self.dir.path().join("webhook-url").display(),
            hook_secret = self.dir.path().join("webhook-secret").display(),
            work = workdir.display(),
        );
        s.push_str(&self.services_toml());
        s
    }

    /// The `[[services]]` of the configuration: every service of the fleet, in every
    /// environment, with its file and application.
    fn services_toml(&self) -> String {
        let mut s = String::new();
        for (svc, style) in &self.fleet.services {
            s.push_str(&format!(
                "\n[[services]]\nname = \"{svc}\"\nrepository = \"{svc}\"\n"
            ));
            for env in &self.fleet.environments {
                s.push_str(&format!(
                    "[[services.environments]]\nname = \"{env}\"\nfiles = [\"{}\"]\nargocd_application = \"{}\"\n",
                    path_of(svc, *style, env),
                    app_name(svc, env)
                ));
            }
        }
        s
    }

    /// What `tugboat init` is given to write a configuration for this sandbox: its flags,
    /// and the `TUGBOAT_*` variables of the keys only a sandbox needs (its endpoints, test
    /// credentials, the policy's path, the working directory).
    pub fn init_command(&self, workdir: &Path) -> InitCommand {
        let file = |name: &str| Some(format!("file:{}", self.dir.path().join(name).display()));
        let env = [
            ("TUGBOAT_AWS_ENDPOINT_URL", self.aws_url.clone()),
            ("TUGBOAT_AWS_TEST_CREDENTIALS", "true".to_owned()),
            ("TUGBOAT_GITHUB_API_URL", self.github_url.clone()),
            (
                "TUGBOAT_GITHUB_CLONE_URL",
                format!("{}/git/salon/salon-gitops.git", self.github_url),
            ),
            ("TUGBOAT_POLICY_SSM_PATH", POLICY_PATH.to_owned()),
            ("TUGBOAT_ENGINE_WORKDIR", workdir.display().to_string()),
        ];
        InitCommand {
            args: tugboat::init::Args {
                argocd: Some(self.argocd_url.clone()),
                repo: Some("salon/salon-gitops".to_owned()),
                argocd_token: file("argocd-token"),
                github_token: file("github-token"),
            },
            env: env.map(|(k, v)| (k.to_owned(), v)).to_vec(),
        }
    }

    /// [`config_toml`](Self::config_toml), authenticating to GitHub as the stand-in's App
    /// (its private key in a file) instead of with a token.
    pub fn config_toml_as_app(&self, workdir: &Path) -> String {
        let token_line = format!(
            "token = {{ file = \"{}\" }}\n",
            self.dir.path().join("github-token").display()
        );
        let app = format!(
            "\n[github.app]\nid = {}\nprivate_key = {{ file = \"{}\" }}\n",
            github_app::APP_ID,
            self.dir.path().join("github-app.pem").display()
        );
        self.config_toml(workdir).replacen(&token_line, &app, 1)
    }

    /// Where the stand-ins listen, one per line.
    pub fn endpoints(&self) -> String {
        format!(
            "  AWS (ECR + SSM + SQS): {}   (POST / with X-Amz-Target; seed images at /_sandbox/ecr/images; push events on the queue tugboat-events)\n  GitHub REST:      {}   (PRs: /_sandbox/pulls; git: {}/git/salon/salon-gitops.git)\n  Argo CD:          {}   (mark a crashing image: POST /_sandbox/crashing)\n  Notifications:    {}   (Slack: {}; webhook: /webhook; received: GET {}/_sandbox/notifications)\n",
            self.aws_url,
            self.github_url,
            self.github_url,
            self.argocd_url,
            self.sinks_url,
            sinks::SLACK_HOOK,
            self.github_url
        )
    }
}

/// The registry host path of a salon service, as the manifests spell it.
pub fn image_of(svc: &str) -> String {
    format!(
        "{}.dkr.ecr.eu-north-1.amazonaws.com/{svc}",
        aws::REGISTRY_ID
    )
}

pub fn app_name(svc: &str, env: &str) -> String {
    format!("{}-{env}", svc.replace('_', "-"))
}

/// The file of a salon service's environment.
pub fn file_of(svc: &str, env: &str) -> String {
    path_of(svc, style_of(svc), env)
}

fn path_of(svc: &str, style: Style, env: &str) -> String {
    match style {
        Style::Kustomize => format!("apps/{svc}/overlays/{env}/kustomization.yaml"),
        Style::HelmValues => format!("apps/{svc}/values-{env}.yaml"),
    }
}

fn style_of(svc: &str) -> Style {
    SALON_SERVICES
        .iter()
        .find(|(s, _)| *s == svc)
        .map_or(Style::Kustomize, |(_, st)| *st)
}

/// The salon's initial GitOps repository: every service at 1.0.0 in every environment.
pub fn salon_files() -> Vec<(String, String)> {
    fleet_files(&Fleet::salon())
}

/// A fleet's initial GitOps repository: every service at its newest tag everywhere.
pub fn fleet_files(fleet: &Fleet) -> Vec<(String, String)> {
    let tag = fleet.deployed_tag();
    let mut files = vec![(
        "README.md".to_owned(),
        "# salon-gitops\n\nDeployed by Argo CD; image tags are bumped by tugboat.\n".to_owned(),
    )];
    for (svc, style) in &fleet.services {
        let (svc, style) = (svc.as_str(), *style);
        let image = image_of(svc);
        match style {
            Style::Kustomize => {
                files.push((
                    format!("apps/{svc}/base/deployment.yaml"),
                    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {svc}\nspec:\n  template:\n    spec:\n      securityContext:\n        runAsNonRoot: true\n      containers:\n        - name: app\n          image: {svc}\n          ports:\n            - containerPort: 8000\n"),
                ));
                files.push((
                    format!("apps/{svc}/base/kustomization.yaml"),
                    "resources:\n  - deployment.yaml\n".into(),
                ));
                for env in &fleet.environments {
                    files.push((
                        path_of(svc, style, env),
                        format!("# {svc} in {env}. Image tag managed by tugboat; other fields by hand.\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: salon-{env}\nresources:\n  - ../../base\nimages:\n  - name: {svc}\n    newName: {image}\n    newTag: \"{tag}\" # tugboat\n"),
                    ));
                }
            }
            Style::HelmValues => {
                for env in &fleet.environments {
                    files.push((
                        path_of(svc, style, env),
                        format!("# Helm values for {svc} ({env})\nreplicaCount: 2\n\nimage:\n  repository: {image}\n  tag: {tag}\n  pullPolicy: IfNotPresent\n\nresources:\n  requests: {{cpu: 100m, memory: 128Mi}}\n"),
                    ));
                }
            }
        }
    }
    files
}

/// A `tugboat init` for a sandbox ([`Sandbox::init_command`]).
pub struct InitCommand {
    pub args: tugboat::init::Args,
    pub env: Vec<(String, String)>,
}

impl InitCommand {
    /// Its command line after `tugboat`.
    pub fn flags(&self) -> Vec<String> {
        let a = &self.args;
        let mut out = vec!["init".to_owned()];
        for (flag, value) in [
            ("--argocd", &a.argocd),
            ("--repo", &a.repo),
            ("--argocd-token", &a.argocd_token),
            ("--github-token", &a.github_token),
        ] {
            if let Some(v) = value {
                out.extend([flag.to_owned(), v.clone()]);
            }
        }
        out
    }
}

/// A path for a fresh tugboat work directory inside `base`.
pub fn workdir_in(base: &Path) -> PathBuf {
    base.join("tugboat-work")
}

/// The `TUGBOAT_*` variables of this process (a test's or a benchmark's, naming its tools
/// and its knobs) are not for a tugboat it starts: tugboat reads every `TUGBOAT_*`
/// variable as configuration and refuses one that is no key.
pub trait WithoutHarnessVars {
    /// Remove this process's `TUGBOAT_*` variables from the child's environment (before
    /// the child's own are set).
    fn without_harness_vars(&mut self) -> &mut Self;
}

impl WithoutHarnessVars for std::process::Command {
    fn without_harness_vars(&mut self) -> &mut Self {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TUGBOAT_") {
                self.env_remove(k);
            }
        }
        self
    }
}
