//! Configuration: one TOML file plus `TUGBOAT_<SECTION>_<KEY>` environment overrides, read raw
//! and validated into typed values here, the only module that reads the environment and files.
//!
//! Secrets are given by reference (`{ env = "NAME" }`, `{ file = "PATH" }` or
//! `{ ssm = "/parameter/name" }`) and resolved at start-up into [`Secret`]s.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::domain::image::Repository;
use crate::domain::schedule::Schedule;
use crate::ports::MergeMethod;
use crate::secret::Secret;

/// A configuration problem, naming the file and the field.
#[derive(Debug, Error)]
#[error("{file}: {field}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub field: String,
    pub message: String,
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
    Ssm(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    aws: RawAws,
    policy: RawPolicy,
    github: RawGithub,
    argocd: RawArgo,
    #[serde(default)]
    engine: RawEngine,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    schedules: RawSchedules,
    #[serde(default)]
    rescan: RawRescan,
    #[serde(default)]
    election: RawElection,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    notify: RawNotify,
    services: Vec<RawService>,
}

/// `[notify]`: where people hear what happened.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    unhealthy_after: Option<u32>,
    attempts: Option<u32>,
    #[serde(default)]
    sinks: std::collections::BTreeMap<String, RawSink>,
}

/// `[notify.sinks.<name>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    kind: SinkKind,
    url: SecretRef,
    secret: Option<SecretRef>,
    events: Option<Vec<String>>,
    environments: Option<Vec<String>>,
}

/// What a notification sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// A Slack incoming webhook (Block Kit).
    Slack,
    /// A JSON webhook, signed with HMAC-SHA256.
    Webhook,
}

/// `[events]`: ECR and Inspector events from an SQS queue that EventBridge rules fill.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    queue_url: Option<String>,
    accounts: Option<Vec<String>>,
}

/// `rescan.scan_type`: ask the registry (`auto`), or say which.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ScanTypeSetting {
    #[default]
    Auto,
    Basic,
    Enhanced,
}

/// `argocd.refresh`: the kind of refresh asked of Argo CD before each look.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Refresh {
    #[default]
    Normal,
    Hard,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRescan {
    #[serde(default)]
    scan_type: ScanTypeSetting,
    #[serde(default, with = "humantime_serde")]
    spread: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    wait: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    poll: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSchedules {
    promotion: Option<RawSchedule>,
    policy_refresh: Option<RawSchedule>,
    rescan: Option<RawSchedule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: String,
    zone: Option<String>,
    #[serde(default, with = "humantime_serde")]
    grace: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAws {
    region: String,
    registry_id: Option<String>,
    endpoint_url: Option<String>,
    #[serde(default)]
    test_credentials: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    ssm_path: String,
    #[serde(default, with = "humantime_serde")]
    refresh: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    repository: String,
    #[serde(default = "default_branch")]
    base_branch: String,
    api_url: Option<String>,
    clone_url: Option<String>,
    token: Option<SecretRef>,
    app: Option<RawApp>,
    webhook_secret: Option<SecretRef>,
    state_key: Option<SecretRef>,
    #[serde(default)]
    merge_method: MergeMethod,
    login: Option<String>,
    #[serde(default)]
    former_logins: Vec<String>,
    writes_per_minute: Option<usize>,
    writes_per_hour: Option<usize>,
    commits: Option<CommitVia>,
    #[serde(default)]
    dashboard: bool,
}

/// `[github.app]`: tugboat authenticates as this GitHub App's installation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    id: u64,
    private_key: SecretRef,
    installation_id: Option<u64>,
}

fn default_branch() -> String {
    "main".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArgo {
    url: String,
    token: SecretRef,
    #[serde(default, with = "humantime_serde")]
    poll_interval: Option<Duration>,
    ca_bundle: Option<PathBuf>,
    #[serde(default)]
    refresh: Refresh,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    workdir: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    scan_wait: Option<Duration>,
    concurrency: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
}

/// `[election]`: leader election with a Kubernetes Lease (off unless enabled).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawElection {
    #[serde(default)]
    enabled: bool,
    lease: Option<String>,
    namespace: Option<String>,
    identity: Option<String>,
    #[serde(default, with = "humantime_serde")]
    lease_duration: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    renew_deadline: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    retry_period: Option<Duration>,
    api_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    repository: String,
    registry_id: Option<String>,
    image: Option<String>,
    environments: Vec<RawEnv>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    name: String,
    files: Vec<String>,
    argocd_application: String,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: String,
    pub aws: AwsConfig,
    pub policy: PolicyConfig,
    pub github: GithubConfig,
    pub argocd: ArgoConfig,
    pub engine: EngineConfig,
    pub server: ServerConfig,
    /// Cron-scheduled jobs besides the plain interval.
    pub schedules: Vec<ScheduleConfig>,
    pub rescan: RescanConfig,
    /// `None`: no election, this tugboat acts (outside Kubernetes, `tugboat once`, the demo).
    pub election: Option<ElectionConfig>,
    /// `None`: no event queue; new images wait for the interval.
    pub events: Option<EventsConfig>,
    /// `None`: no notification sink.
    pub notify: Option<NotifyConfig>,
    pub services: Vec<ServiceConfig>,
}

/// Notifications: the sinks, and when tugboat calls itself unhealthy.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Cycles in a row in which a system failed every call before `unhealthy` is sent.
    pub unhealthy_after: u32,
    /// Delivery attempts per notification and sink (backing off 1 s, 2 s, 4 s… up to a minute).
    pub attempts: u32,
    pub sinks: Vec<SinkConfig>,
}

/// One sink: what it speaks, where (a secret: a Slack webhook URL is a credential), its
/// signing secret (webhooks), and which notifications it takes.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    pub url: SecretRef,
    pub secret: Option<SecretRef>,
    pub filter: crate::domain::notify::Filter,
}

/// The event queue: where ECR pushes and scans arrive within seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    pub queue_url: String,
    /// The AWS accounts whose events are believed (the queue's own and the configured
    /// registries', unless listed); an event from any other is dropped.
    pub accounts: std::collections::BTreeSet<String>,
}

/// How the rescan of deployed images gets fresh findings.
#[derive(Debug, Clone)]
pub struct RescanConfig {
    /// `None`: ask the registry (GetRegistryScanningConfiguration).
    pub scan_type: Option<crate::ports::ScanType>,
    /// Pause between two StartImageScan calls, so that many images don't burst the API.
    pub spread: Duration,
    /// How long to wait for started scans to complete.
    pub wait: Duration,
    /// How often to look at a running scan.
    pub poll: Duration,
}

/// A cron-scheduled job: `promotion` (an extra reconcile cycle), `policy_refresh` (re-read
/// the policy, then a cycle) or `rescan` (rescan every deployed image).
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    pub name: String,
    pub schedule: Schedule,
    /// How late a slot missed while tugboat was down may still run at start-up.
    pub grace: Duration,
}

#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub region: String,
    pub registry_id: Option<String>,
    /// An emulator's endpoint (moto, the sandbox); unset for real AWS.
    pub endpoint_url: Option<String>,
    /// Use fixed dummy credentials (emulators only).
    pub test_credentials: bool,
}

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// SSM path prefix, always ending in `/`.
    pub ssm_path: String,
    pub refresh: Duration,
}

#[derive(Debug, Clone)]
pub struct GithubConfig {
    pub owner: String,
    pub repo: String,
    pub base_branch: String,
    pub api_url: String,
    pub clone_url: String,
    /// A token, or a GitHub App.
    pub auth: GithubAuth,
    /// Enables `POST /webhooks/github`: deliveries must be signed with it.
    pub webhook_secret: Option<SecretRef>,
    /// The keys that seal the records tugboat keeps in PR and issue bodies
    /// (`domain::seal`). By default the SSM parameter `/tugboat/<owner>/<repo>/state-key`,
    /// which tugboat creates when it is absent.
    pub state_key: SecretRef,
    /// How promotion and rollback PRs are merged: `squash` (default), `merge` or `rebase`;
    /// the repository must allow it.
    pub merge_method: MergeMethod,
    /// The login tugboat's token acts as, when `GET /user` cannot tell (a GitHub App
    /// installation token: `my-app[bot]`).
    pub login: Option<String>,
    /// Logins tugboat acted as before (a token's user before a move to a GitHub App): the
    /// records and labels they wrote are still tugboat's.
    pub former_logins: Vec<String>,
    /// Content-creating requests a minute at most (GitHub's secondary limit: 80).
    pub writes_per_minute: usize,
    /// Content-creating requests an hour at most (GitHub: 500).
    pub writes_per_hour: usize,
    /// How promotion and rollback commits reach GitHub (`github.commits`).
    pub commits: CommitVia,
    /// Keep the promotion dashboard issue (`github.dashboard`).
    pub dashboard: bool,
}

/// How tugboat's commits reach GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitVia {
    /// A git push of a commit made locally (unsigned). The default for a token.
    Push,
    /// GitHub's Git Data API makes the commit and signs it (Verified), which branch
    /// protection's "Require signed commits" needs. The default for a GitHub App.
    Api,
}

/// How tugboat authenticates to GitHub (REST and git alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GithubAuth {
    /// `github.token`: a personal, fine-grained or installation token kept elsewhere.
    Token(SecretRef),
    /// `[github.app]`: installation tokens from the App's private key, renewed as they expire.
    App {
        id: u64,
        private_key: SecretRef,
        /// Discovered from the repository when not given.
        installation_id: Option<u64>,
    },
}

#[derive(Debug, Clone)]
pub struct ArgoConfig {
    pub url: String,
    pub token: SecretRef,
    pub poll_interval: Duration,
    /// PEM certificates to trust besides the system's, read at load time.
    pub ca_bundle: Option<Vec<u8>>,
    /// Ask Argo CD for a `hard` refresh (`argocd.refresh = "hard"`) instead of `normal`.
    pub hard_refresh: bool,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub interval: Duration,
    pub workdir: PathBuf,
    /// How long one cycle waits for a pending scan before reporting "waiting for scan".
    pub scan_wait: Duration,
    /// How many services one cycle works on at once (bounds the burst on every API).
    pub concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
}

/// Leader election: only the holder of the Lease acts; the other replicas stand by.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// The Lease's name and namespace.
    pub lease: String,
    pub namespace: String,
    /// This replica's name in the Lease (the pod's name).
    pub identity: String,
    pub timing: crate::domain::lease::Timing,
    /// The API server (without credentials); by default the cluster tugboat runs in (its
    /// service account) or the kubeconfig.
    pub api_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    /// The ECR repository name.
    pub repository: String,
    pub registry_id: Option<String>,
    /// The repository as manifests spell it (registry host + path).
    pub image: Repository,
    pub environments: Vec<EnvConfig>,
}

#[derive(Debug, Clone)]
pub struct EnvConfig {
    pub name: String,
    pub files: Vec<String>,
    pub argocd_application: String,
}

impl Config {
    /// Read `path`, apply `TUGBOAT_*` overrides from `env`, and validate.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            field: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &file, env)
    }

    /// Parse and validate configuration text; `file` names it in errors.
    pub fn parse(
        text: &str,
        file: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let err = |field: &str, message: String| ConfigError {
            file: file.to_owned(),
            field: field.to_owned(),
            message,
        };
        let mut value: toml::Table = toml::from_str(text)
            .map_err(|e| err("(file)", format!("not valid TOML: {}", e.message())))?;
        apply_env_overrides(&mut value, env).map_err(|(f, m)| err(&f, m))?;
        let raw: RawConfig =
            serde_path_to_error::deserialize(toml::Value::Table(value)).map_err(|e| {
                let path = e.path().to_string();
                err(&path, explain(e.into_inner().message()))
            })?;
        validate(raw, &Fields { file })
    }
}

/// `TUGBOAT_ENGINE_INTERVAL=30s` sets `[engine] interval`. Sections have no underscore.
fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), (String, String)> {
    const SECTIONS: &[&str] = &[
        "aws", "policy", "github", "argocd", "engine", "server", "election",
    ];
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("TUGBOAT_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        if !SECTIONS.contains(&section.as_str()) {
            continue;
        }
        let key = key.to_ascii_lowercase();
        // Typed when the text is a TOML value (true, 3), else a string.
        let parsed = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_table())
            .unwrap_or(toml::Value::String(v.clone()));
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(t) = entry.as_table_mut() else {
            return Err((
                format!("{section}.{key}"),
                format!("environment variable {k} overrides a section that is not a table"),
            ));
        };
        t.insert(key, parsed);
    }
    Ok(())
}

/// Serde's words for a bad value, in ours: which value, and what would do instead.
fn explain(message: &str) -> String {
    // `unknown variant `x`, expected `a``, `… expected `a` or `b``, `… expected one of `a`, `b`, `c``
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((value, expected)) = rest.split_once("`, expected ")
    {
        let expected = expected.strip_prefix("one of ").unwrap_or(expected);
        let choices: Vec<&str> = expected
            .split(", ")
            .flat_map(|c| c.split(" or "))
            .map(|c| c.trim_matches('`'))
            .collect();
        // A secret written in clear where a reference belongs: never repeat it.
        if choices == ["env", "file", "ssm"] {
            return "a secret is given by reference: { env = \"NAME\" }, { file = \"PATH\" } or { ssm = \"/parameter\" } (the value given is not shown)".to_owned();
        }
        return format!("'{value}' is not one of: {}", choices.join(", "));
    }
    // humantime-serde: `invalid value: string "soon", expected a duration`
    if let Some(rest) = message.strip_prefix("invalid value: string \"")
        && let Some(value) = rest.strip_suffix("\", expected a duration")
    {
        let why = humantime::parse_duration(value)
            .err()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return format!("duration '{value}' is invalid{why}; use e.g. '60s' or '5m'");
    }
    message.to_owned()
}

/// Names the file in every error.
struct Fields<'a> {
    file: &'a str,
}

impl Fields<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn http_url(&self, field: &str, url: &str) -> Result<(), ConfigError> {
        if url.starts_with("https://") || url.starts_with("http://") {
            Ok(())
        } else {
            Err(self.err(field, format!("'{url}' is not an http(s) URL")))
        }
    }
}

fn validate(raw: RawConfig, f: &Fields<'_>) -> Result<Config, ConfigError> {
    Ok(Config {
        source: f.file.to_owned(),
        // First: it reads the services and the AWS section that later fields take.
        events: events(raw.events, &raw.aws, &raw.services, f)?,
        notify: notify(raw.notify, &raw.services, f)?,
        github: github(raw.github, f)?,
        argocd: argocd(raw.argocd, f)?,
        services: services(raw.services, &raw.aws, f)?,
        aws: aws(raw.aws, f)?,
        policy: policy(raw.policy, f)?,
        server: server(raw.server, f)?,
        engine: engine(raw.engine, f)?,
        schedules: schedules(raw.schedules, f)?,
        rescan: rescan(raw.rescan, f)?,
        election: election(raw.election, f)?,
    })
}

fn aws_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn events(
    raw: RawEvents,
    aws: &RawAws,
    services: &[RawService],
    f: &Fields<'_>,
) -> Result<Option<EventsConfig>, ConfigError> {
    let Some(queue_url) = raw.queue_url else {
        if raw.accounts.is_some() {
            return Err(f.err(
                "events.accounts",
                "given without events.queue_url".to_owned(),
            ));
        }
        return Ok(None);
    };
    f.http_url("events.queue_url", &queue_url)?;
    // https://sqs.<region>.amazonaws.com/<account>/<name>
    let owner = queue_url
        .split('/')
        .nth(3)
        .filter(|a| aws_account(a) && queue_url.split('/').nth(4).is_some_and(|n| !n.is_empty()))
        .ok_or_else(|| {
            f.err(
                "events.queue_url",
                format!("'{queue_url}' is not a queue URL of the form https://sqs.<region>.amazonaws.com/<account>/<queue>"),
            )
        })?;
    let accounts = match raw.accounts {
        Some(list) => {
            if let Some(bad) = list.iter().find(|a| !aws_account(a)) {
                return Err(f.err(
                    "events.accounts",
                    format!("'{bad}' is not a 12-digit AWS account id"),
                ));
            }
            list.into_iter().collect()
        }
        None => std::iter::once(owner.to_owned())
            .chain(aws.registry_id.iter().cloned())
            .chain(services.iter().filter_map(|s| s.registry_id.clone()))
            .collect(),
    };
    Ok(Some(EventsConfig {
        queue_url,
        accounts,
    }))
}

fn notify(
    raw: RawNotify,
    services: &[RawService],
    f: &Fields<'_>,
) -> Result<Option<NotifyConfig>, ConfigError> {
    let unhealthy_after = raw.unhealthy_after.unwrap_or(3);
    if unhealthy_after == 0 {
        return Err(f.err("notify.unhealthy_after", "must be at least 1 (cycles)"));
    }
    let attempts = raw.attempts.unwrap_or(5);
    if !(1..=20).contains(&attempts) {
        return Err(f.err(
            "notify.attempts",
            format!("{attempts} is not between 1 and 20"),
        ));
    }
    if raw.sinks.is_empty() {
        return Ok(None);
    }
    let environments: BTreeSet<&str> = services
        .iter()
        .flat_map(|s| s.environments.iter().map(|e| e.name.as_str()))
        .collect();
    let sinks = raw
        .sinks
        .into_iter()
        .map(|(name, sink)| self::sink(name, sink, &environments, f))
        .collect::<Result<_, _>>()?;
    Ok(Some(NotifyConfig {
        unhealthy_after,
        attempts,
        sinks,
    }))
}

fn sink(
    name: String,
    raw: RawSink,
    environments: &BTreeSet<&str>,
    f: &Fields<'_>,
) -> Result<SinkConfig, ConfigError> {
    use crate::domain::notify::{Filter, Kind};
    let at = |field: &str| format!("notify.sinks.{name}.{field}");
    if !valid_name(&name) || name.len() > 40 {
        return Err(f.err(
            &format!("notify.sinks.{name}"),
            "a sink's name must be at most 40 letters, digits, '_' or '-'",
        ));
    }
    match (raw.kind, &raw.secret) {
        (SinkKind::Webhook, None) => {
            return Err(f.err(
                &at("secret"),
                "a webhook sink signs what it sends: give its secret (e.g. { env = \"NAME\" })",
            ));
        }
        (SinkKind::Slack, Some(_)) => {
            return Err(f.err(
                &at("secret"),
                "a Slack sink has no signing secret (its URL is the credential)",
            ));
        }
        _ => {}
    }
    let mut filter = Filter::default();
    for e in raw.events.unwrap_or_default() {
        let kind = Kind::parse(&e).ok_or_else(|| {
            let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            f.err(
                &at("events"),
                format!("'{e}' is not one of: {}", all.join(", ")),
            )
        })?;
        filter.events.insert(kind);
    }
    for env in raw.environments.unwrap_or_default() {
        if !environments.contains(env.as_str()) {
            let known: Vec<&str> = environments.iter().copied().collect();
            return Err(f.err(
                &at("environments"),
                format!(
                    "'{env}' is no service's environment (known: {})",
                    known.join(", ")
                ),
            ));
        }
        filter.environments.insert(env);
    }
    Ok(SinkConfig {
        name,
        kind: raw.kind,
        url: raw.url,
        secret: raw.secret,
        filter,
    })
}

fn election(raw: RawElection, f: &Fields<'_>) -> Result<Option<ElectionConfig>, ConfigError> {
    if !raw.enabled {
        return Ok(None);
    }
    let defaults = crate::domain::lease::Timing::default();
    let timing = crate::domain::lease::Timing {
        lease_duration: raw.lease_duration.unwrap_or(defaults.lease_duration),
        renew_deadline: raw.renew_deadline.unwrap_or(defaults.renew_deadline),
        retry_period: raw.retry_period.unwrap_or(defaults.retry_period),
    };
    timing.check().map_err(|m| f.err("election", m))?;
    let required = |field: &str, v: Option<String>| {
        v.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            f.err(
                &format!("election.{field}"),
                "is required when election is enabled (the chart sets it from the pod)".to_owned(),
            )
        })
    };
    if let Some(u) = &raw.api_url {
        f.http_url("election.api_url", u)?;
    }
    Ok(Some(ElectionConfig {
        lease: raw.lease.unwrap_or_else(|| "tugboat".to_owned()),
        namespace: required("namespace", raw.namespace)?,
        identity: required("identity", raw.identity)?,
        timing,
        api_url: raw.api_url,
    }))
}

fn aws(raw: RawAws, f: &Fields<'_>) -> Result<AwsConfig, ConfigError> {
    if let Some(id) = raw.registry_id.as_deref()
        && (id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(f.err(
            "aws.registry_id",
            format!("'{id}' is not a 12-digit AWS account id"),
        ));
    }
    Ok(AwsConfig {
        region: raw.region,
        registry_id: raw.registry_id,
        endpoint_url: raw.endpoint_url,
        test_credentials: raw.test_credentials,
    })
}

fn github(raw: RawGithub, f: &Fields<'_>) -> Result<GithubConfig, ConfigError> {
    let (owner, repo) = raw
        .repository
        .split_once('/')
        .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
        .ok_or_else(|| {
            f.err(
                "github.repository",
                format!("'{}' is not of the form 'owner/name'", raw.repository),
            )
        })?;
    let api_url = raw
        .api_url
        .unwrap_or_else(|| "https://api.github.com".into());
    let clone_url = raw
        .clone_url
        .unwrap_or_else(|| format!("https://github.com/{owner}/{repo}.git"));
    f.http_url("github.api_url", &api_url)?;
    f.http_url("github.clone_url", &clone_url)?;
    if let Some(l) = &raw.login
        && (l.trim().is_empty() || l.contains(char::is_whitespace))
    {
        return Err(f.err("github.login", format!("'{l}' is not a GitHub login")));
    }
    let auth = github_auth(raw.token, raw.app, f)?;
    former_logins(f, &raw.former_logins)?;
    let (writes_per_minute, writes_per_hour) =
        write_budget(raw.writes_per_minute, raw.writes_per_hour, f)?;
    Ok(GithubConfig {
        owner: owner.to_owned(),
        repo: repo.to_owned(),
        base_branch: raw.base_branch,
        api_url,
        clone_url,
        webhook_secret: raw.webhook_secret,
        state_key: raw
            .state_key
            .unwrap_or_else(|| SecretRef::Ssm(format!("/tugboat/{owner}/{repo}/state-key"))),
        merge_method: raw.merge_method,
        commits: raw.commits.unwrap_or(match auth {
            GithubAuth::App { .. } => CommitVia::Api,
            GithubAuth::Token(_) => CommitVia::Push,
        }),
        auth,
        login: raw.login,
        former_logins: raw.former_logins,
        writes_per_minute,
        writes_per_hour,
        dashboard: raw.dashboard,
    })
}

fn argocd(raw: RawArgo, f: &Fields<'_>) -> Result<ArgoConfig, ConfigError> {
    f.http_url("argocd.url", &raw.url)?;
    let ca_bundle = match &raw.ca_bundle {
        None => None,
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                f.err(
                    "argocd.ca_bundle",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(f.err(
                    "argocd.ca_bundle",
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
            Some(pem)
        }
    };
    Ok(ArgoConfig {
        url: raw.url.trim_end_matches('/').to_owned(),
        token: raw.token,
        poll_interval: raw.poll_interval.unwrap_or(Duration::from_secs(5)),
        ca_bundle,
        hard_refresh: matches!(raw.refresh, Refresh::Hard),
    })
}

fn policy(raw: RawPolicy, f: &Fields<'_>) -> Result<PolicyConfig, ConfigError> {
    let mut ssm_path = raw.ssm_path;
    if !ssm_path.starts_with('/') {
        return Err(f.err(
            "policy.ssm_path",
            format!("'{ssm_path}' must start with '/'"),
        ));
    }
    if !ssm_path.ends_with('/') {
        ssm_path.push('/');
    }
    Ok(PolicyConfig {
        ssm_path,
        refresh: raw.refresh.unwrap_or(Duration::from_secs(300)),
    })
}

fn server(raw: RawServer, f: &Fields<'_>) -> Result<ServerConfig, ConfigError> {
    let listen = raw.listen.as_deref().unwrap_or("0.0.0.0:8080");
    let listen = listen.parse().map_err(|_| {
        f.err(
            "server.listen",
            format!("'{listen}' is not an address such as '0.0.0.0:8080'"),
        )
    })?;
    Ok(ServerConfig { listen })
}

fn engine(raw: RawEngine, f: &Fields<'_>) -> Result<EngineConfig, ConfigError> {
    let concurrency = match raw.concurrency {
        None => 8,
        Some(n @ 1..=256) => n,
        Some(n) => {
            return Err(f.err(
                "engine.concurrency",
                format!("{n} is out of range; use 1 to 256 services at once"),
            ));
        }
    };
    Ok(EngineConfig {
        interval: raw.interval.unwrap_or(Duration::from_secs(60)),
        workdir: raw
            .workdir
            .unwrap_or_else(|| PathBuf::from("/var/lib/tugboat")),
        scan_wait: raw.scan_wait.unwrap_or(Duration::from_secs(30)),
        concurrency,
    })
}

fn rescan(raw: RawRescan, f: &Fields<'_>) -> Result<RescanConfig, ConfigError> {
    let poll = raw.poll.unwrap_or(Duration::from_secs(15));
    if poll.is_zero() {
        return Err(f.err("rescan.poll", "must be more than 0s"));
    }
    Ok(RescanConfig {
        scan_type: match raw.scan_type {
            ScanTypeSetting::Auto => None,
            ScanTypeSetting::Basic => Some(crate::ports::ScanType::Basic),
            ScanTypeSetting::Enhanced => Some(crate::ports::ScanType::Enhanced),
        },
        spread: raw.spread.unwrap_or(Duration::from_secs(1)),
        wait: raw.wait.unwrap_or(Duration::from_secs(1800)),
        poll,
    })
}

fn schedules(raw: RawSchedules, f: &Fields<'_>) -> Result<Vec<ScheduleConfig>, ConfigError> {
    let mut out = Vec::new();
    for (name, r) in [
        ("promotion", raw.promotion),
        ("policy_refresh", raw.policy_refresh),
        ("rescan", raw.rescan),
    ] {
        let Some(r) = r else { continue };
        let field = format!("schedules.{name}");
        let schedule = Schedule::parse(&r.cron, r.zone.as_deref().unwrap_or("UTC"))
            .map_err(|message| f.err(&field, message))?;
        out.push(ScheduleConfig {
            name: name.to_owned(),
            schedule,
            grace: r.grace.unwrap_or(Duration::from_secs(3600)),
        });
    }
    Ok(out)
}

/// Service and environment names: letters, digits, '_' or '-' (they become branch names and labels).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn services(
    raw: Vec<RawService>,
    aws: &RawAws,
    f: &Fields<'_>,
) -> Result<Vec<ServiceConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(f.err(
            "services",
            "no services are configured; add at least one [[services]] table",
        ));
    }
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, s) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("services[{i}].{field}");
        if !valid_name(&s.name) {
            return Err(f.err(
                &at("name"),
                format!("'{}' must be letters, digits, '_' or '-'", s.name),
            ));
        }
        if !names.insert(s.name.clone()) {
            return Err(f.err(
                &at("name"),
                format!("service '{}' is configured twice", s.name),
            ));
        }
        out.push(service(s, aws, i, f)?);
    }
    Ok(out)
}

fn service(
    s: RawService,
    aws: &RawAws,
    i: usize,
    f: &Fields<'_>,
) -> Result<ServiceConfig, ConfigError> {
    let at = |field: &str| format!("services[{i}].{field}");
    let registry = s.registry_id.clone().or_else(|| aws.registry_id.clone());
    let image = match (&s.image, &registry) {
        (Some(img), _) => img.clone(),
        (None, Some(id)) => format!("{id}.dkr.ecr.{}.amazonaws.com/{}", aws.region, s.repository),
        (None, None) => {
            return Err(f.err(
                &at("image"),
                "set `image` (the repository as manifests spell it) or aws.registry_id",
            ));
        }
    };
    let image = Repository::parse(&image).map_err(|e| f.err(&at("image"), e.to_string()))?;
    if s.environments.is_empty() {
        return Err(f.err(
            &at("environments"),
            "no environments; add at least one [[services.environments]]",
        ));
    }
    let mut env_names = BTreeSet::new();
    let mut environments = Vec::new();
    for (j, e) in s.environments.into_iter().enumerate() {
        let at = |field: &str| format!("services[{i}].environments[{j}].{field}");
        if !env_names.insert(e.name.clone()) {
            return Err(f.err(
                &at("name"),
                format!("environment '{}' is listed twice", e.name),
            ));
        }
        environments.push(environment(e, &at, f)?);
    }
    Ok(ServiceConfig {
        name: s.name,
        repository: s.repository,
        registry_id: s.registry_id,
        image,
        environments,
    })
}

fn environment(
    e: RawEnv,
    at: &dyn Fn(&str) -> String,
    f: &Fields<'_>,
) -> Result<EnvConfig, ConfigError> {
    if !valid_name(&e.name) {
        return Err(f.err(
            &at("name"),
            format!("'{}' must be letters, digits, '_' or '-'", e.name),
        ));
    }
    if e.files.is_empty() {
        return Err(f.err(
            &at("files"),
            "list at least one file that holds the image reference",
        ));
    }
    for file in &e.files {
        if file.starts_with('/') || file.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(f.err(
                &at("files"),
                format!("'{file}' must be a relative path inside the repository"),
            ));
        }
    }
    Ok(EnvConfig {
        name: e.name,
        files: e.files,
        argocd_application: e.argocd_application,
    })
}

/// `github.token` or `[github.app]`: exactly one, with plausible ids.
fn github_auth(
    token: Option<SecretRef>,
    app: Option<RawApp>,
    f: &Fields<'_>,
) -> Result<GithubAuth, ConfigError> {
    Ok(match (token, app) {
        (Some(token), None) => GithubAuth::Token(token),
        (None, Some(app)) => {
            if app.id == 0 {
                return Err(f.err("github.app.id", "0 is not a GitHub App id".to_owned()));
            }
            if app.installation_id == Some(0) {
                return Err(f.err(
                    "github.app.installation_id",
                    "0 is not an installation id".to_owned(),
                ));
            }
            GithubAuth::App {
                id: app.id,
                private_key: app.private_key,
                installation_id: app.installation_id,
            }
        }
        (Some(_), Some(_)) => {
            return Err(f.err(
                "github",
                "both a token and [github.app] are given; choose one".to_owned(),
            ));
        }
        (None, None) => {
            return Err(f.err(
                "github",
                "no credentials: give `token` or a [github.app] section".to_owned(),
            ));
        }
    })
}

/// `github.writes_per_minute` and `writes_per_hour` (GitHub's limits by default), the hour
/// holding the minute.
fn write_budget(
    per_minute: Option<usize>,
    per_hour: Option<usize>,
    f: &Fields<'_>,
) -> Result<(usize, usize), ConfigError> {
    let writes_per_minute = per_minute.unwrap_or(crate::adapters::github::WRITES_PER_MINUTE);
    if !(1..=10_000).contains(&writes_per_minute) {
        return Err(f.err(
            "github.writes_per_minute",
            format!("{writes_per_minute} is not between 1 and 10000"),
        ));
    }
    let writes_per_hour = per_hour.unwrap_or(crate::adapters::github::WRITES_PER_HOUR);
    if !(writes_per_minute..=600_000).contains(&writes_per_hour) {
        return Err(f.err(
            "github.writes_per_hour",
            format!(
                "{writes_per_hour} is not between github.writes_per_minute ({writes_per_minute}) and 600000"
            ),
        ));
    }
    Ok((writes_per_minute, writes_per_hour))
}

/// `github.former_logins`: each a GitHub login (letters, digits and `-`, up to 39), an App's
/// optionally ending in `[bot]`.
fn former_logins(f: &Fields<'_>, logins: &[String]) -> Result<(), ConfigError> {
    for (i, login) in logins.iter().enumerate() {
        let name = login.strip_suffix("[bot]").unwrap_or(login);
        let valid = !name.is_empty()
            && name.len() <= 39
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            return Err(f.err(
                &format!("github.former_logins[{i}]"),
                format!("'{login}' is not a GitHub login (letters, digits and '-', up to 39, optionally ending in [bot])"),
            ));
        }
    }
    Ok(())
}

/// Read an `env` or `file` secret. `ssm` secrets are resolved by the caller through SSM.
pub fn read_local_secret(
    r: &SecretRef,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, String> {
    match r {
        SecretRef::Env(name) => env(name)
            .filter(|v| !v.is_empty())
            .map(|v| Some(Secret::new(v)))
            .ok_or_else(|| format!("environment variable {name} is not set")),
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|v| Some(Secret::new(v.trim_end_matches(['\n', '\r']))))
            .map_err(|e| format!("cannot read secret file {}: {e}", path.display())),
        SecretRef::Ssm(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = r#"
[aws]
region = "eu-north-1"
registry_id = "123456789012"

[policy]
ssm_path = "/salon/promotion"

[github]
repository = "salon/salon-gitops"
token = { env = "GITHUB_TOKEN" }

[argocd]
url = "https://argocd.example.com/"
token = { ssm = "/salon/tugboat/argocd-token" }

[[services]]
name = "user_service"
repository = "user_service"
[[services.environments]]
name = "dev"
files = ["apps/user_service/overlays/dev/kustomization.yaml"]
argocd_application = "user-service-dev"
"#;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse(
            text,
            "tugboat.toml",
            env.iter().map(|(k, v)| ((*k).into(), (*v).into())),
        )
    }

    #[test]
    fn election_is_off_by_default_and_set_from_the_pods_environment_when_enabled() {
        assert!(parse(EXAMPLE, &[]).unwrap().election.is_none());
        let pod = [
            ("TUGBOAT_ELECTION_ENABLED", "true"),
            ("TUGBOAT_ELECTION_NAMESPACE", "tugboat"),
            ("TUGBOAT_ELECTION_IDENTITY", "tugboat-7f9c-abcde"),
        ];
        let e = parse(EXAMPLE, &pod).unwrap().election.unwrap();
        assert_eq!(
            (e.lease.as_str(), e.namespace.as_str(), e.identity.as_str()),
            ("tugboat", "tugboat", "tugboat-7f9c-abcde")
        );
        assert_eq!(e.timing, crate::domain::lease::Timing::default());
        let err = parse(EXAMPLE, &pod[..2]).unwrap_err();
        assert_eq!(err.field, "election.identity");
        let slow = [
            pod[0],
            pod[1],
            pod[2],
            ("TUGBOAT_ELECTION_RENEW_DEADLINE", "20s"),
        ];
        let err = parse(EXAMPLE, &slow).unwrap_err();
        assert!(err.message.contains("renew_deadline"), "{err}");
    }

    #[test]
    fn a_minimal_file_gets_defaults_and_a_derived_image_repository() {
        let c = parse(EXAMPLE, &[]).unwrap();
        assert_eq!(c.policy.ssm_path, "/salon/promotion/");
        assert_eq!(c.argocd.url, "https://argocd.example.com");
        assert_eq!(
            c.services[0].image.as_str(),
            "123456789012.dkr.ecr.eu-north-1.amazonaws.com/user_service"
        );
        assert_eq!(c.engine.interval, Duration::from_secs(60));
        assert_eq!(
            c.github.clone_url,
            "https://github.com/salon/salon-gitops.git"
        );
    }

    #[test]
    fn environment_variables_override_the_file_with_types() {
        let c = parse(
            EXAMPLE,
            &[
                ("TUGBOAT_ENGINE_INTERVAL", "15s"),
                ("TUGBOAT_AWS_TEST_CREDENTIALS", "true"),
                ("OTHER", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.engine.interval, Duration::from_secs(15));
        assert!(c.aws.test_credentials);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let e = parse(&EXAMPLE.replace("salon/salon-gitops", "salon-gitops"), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tugboat.toml: github.repository: 'salon-gitops' is not of the form 'owner/name'"
        );
        let e = parse(&EXAMPLE.replace("region =", "regoin ="), &[]).unwrap_err();
        assert_eq!(e.field, "aws.regoin");
        assert!(e.message.contains("unknown field `regoin`"), "{e}");
        let e = parse(&EXAMPLE.replace("apps/user_service", "../etc"), &[]).unwrap_err();
        assert_eq!(e.field, "services[0].environments[0].files");
        let e = parse(EXAMPLE, &[("TUGBOAT_ENGINE_INTERVAL", "soon")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tugboat.toml: engine.interval: duration 'soon' is invalid (expected number at 0); use e.g. '60s' or '5m'"
        );
        let e = parse(EXAMPLE, &[("TUGBOAT_ENGINE_CONCURRENCY", "0")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tugboat.toml: engine.concurrency: 0 is out of range; use 1 to 256 services at once"
        );
        let c = parse(EXAMPLE, &[("TUGBOAT_ENGINE_CONCURRENCY", "32")]).unwrap();
        assert_eq!(c.engine.concurrency, 32);
        assert_eq!(parse(EXAMPLE, &[]).unwrap().engine.concurrency, 8);
    }

    #[test]
    fn schedules_are_parsed_at_start_and_a_bad_one_names_its_field() {
        // Schedules must come before [[services]] in TOML; build the file in that order.
        let file = |t: &str| EXAMPLE.replacen("[[services]]", &format!("{t}\n[[services]]"), 1);
        let c = parse(
            &file("[schedules.promotion]\ncron = \"*/30 8-17 * * MON-FRI\"\nzone = \"Europe/Stockholm\"\n[schedules.policy_refresh]\ncron = \"0 * * * *\"\ngrace = \"0s\""),
            &[],
        )
        .unwrap();
        assert_eq!(c.schedules.len(), 2);
        assert_eq!(c.schedules[0].name, "promotion");
        assert_eq!(c.schedules[0].schedule.zone(), chrono_tz::Europe::Stockholm);
        assert_eq!(c.schedules[0].grace, Duration::from_secs(3600));
        assert_eq!(c.schedules[1].grace, Duration::ZERO);

        let e = parse(&file("[schedules.promotion]\ncron = \"0 6 * *\""), &[]).unwrap_err();
        assert_eq!(e.field, "schedules.promotion");
        assert!(e.message.contains("4 field(s)"), "{e}");
        let e = parse(
            &file("[schedules.promotion]\ncron = \"0 6 * * MON\"\nzone = \"Nowhere/Town\""),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "tugboat.toml: schedules.promotion: 'Nowhere/Town' is not an IANA time zone; use e.g. UTC or Europe/Stockholm"
        );
        let e = parse(&file("[schedules.nightly]\ncron = \"0 6 * * MON\""), &[]).unwrap_err();
        assert!(e.message.contains("unknown field `nightly`"), "{e}");
    }

    #[test]
    fn the_weekly_rescan_is_scheduled_and_tuned_with_clear_errors() {
        let file = |t: &str| EXAMPLE.replacen("[[services]]", &format!("{t}\n[[services]]"), 1);
        let c = parse(
            &file("[schedules.rescan]\ncron = \"0 6 * * MON\"\n[rescan]\nscan_type = \"enhanced\"\nwait = \"10m\""),
            &[],
        )
        .unwrap();
        assert_eq!(c.schedules[0].name, "rescan");
        assert_eq!(c.rescan.scan_type, Some(crate::ports::ScanType::Enhanced));
        assert_eq!(c.rescan.wait, Duration::from_secs(600));
        assert_eq!(c.rescan.spread, Duration::from_secs(1), "default");
        assert_eq!(parse(EXAMPLE, &[]).unwrap().rescan.scan_type, None, "auto");
        let e = parse(&file("[rescan]\nscan_type = \"inspector\""), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tugboat.toml: rescan.scan_type: 'inspector' is not one of: auto, basic, enhanced"
        );
        let e = parse(&file("[rescan]\npoll = \"0s\""), &[]).unwrap_err();
        assert_eq!(e.field, "rescan.poll");
        let e = parse(&file("[rescan]\nwait = \"ten minutes\""), &[]).unwrap_err();
        assert_eq!(e.field, "rescan.wait");
        assert!(
            e.message.starts_with("duration 'ten minutes' is invalid ("),
            "{e}"
        );
    }

    #[test]
    fn github_credentials_are_a_token_or_an_app_never_both_nor_neither() {
        let token = "token = { env = \"GITHUB_TOKEN\" }\n";
        let c = parse(EXAMPLE, &[]).unwrap();
        assert_eq!(
            c.github.auth,
            GithubAuth::Token(SecretRef::Env("GITHUB_TOKEN".into()))
        );
        let app =
            "\n[github.app]\nid = 123456\nprivate_key = { ssm = \"/salon/tugboat/app-key\" }\n";
        let as_app =
            EXAMPLE
                .replacen(token, "", 1)
                .replacen("\n[argocd]", &format!("{app}\n[argocd]"), 1);
        let c = parse(&as_app, &[]).unwrap();
        assert_eq!(
            c.github.auth,
            GithubAuth::App {
                id: 123456,
                private_key: SecretRef::Ssm("/salon/tugboat/app-key".into()),
                installation_id: None,
            }
        );
        let pinned = as_app.replacen("id = 123456\n", "id = 123456\ninstallation_id = 99\n", 1);
        assert!(matches!(
            parse(&pinned, &[]).unwrap().github.auth,
            GithubAuth::App {
                installation_id: Some(99),
                ..
            }
        ));

        let both = EXAMPLE.replacen("\n[argocd]", &format!("{app}\n[argocd]"), 1);
        let e = parse(&both, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tugboat.toml: github: both a token and [github.app] are given; choose one"
        );
        let e = parse(&EXAMPLE.replacen(token, "", 1), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tugboat.toml: github: no credentials: give `token` or a [github.app] section"
        );
        let e = parse(&as_app.replacen("id = 123456", "id = 0", 1), &[]).unwrap_err();
        assert_eq!(e.field, "github.app.id");
        let e = parse(&as_app.replacen("private_key", "key", 1), &[]).unwrap_err();
        assert!(e.to_string().contains("unknown field `key`"), "{e}");
    }

    #[test]
    fn the_event_queue_is_optional_and_believes_its_own_and_the_registries_accounts_only() {
        assert_eq!(parse(EXAMPLE, &[]).unwrap().events, None);
        let with = |lines: &str| {
            EXAMPLE.replacen(
                "[[services]]",
                &format!("[events]\n{lines}\n\n[[services]]"),
                1,
            )
        };
        let url =
            "queue_url = \"https://sqs.eu-north-1.amazonaws.com/210987654321/tugboat-events\"";
        let c = parse(&with(url), &[]).unwrap();
        let events = c.events.unwrap();
        assert_eq!(
            events.accounts,
            ["123456789012", "210987654321"].map(String::from).into()
        );
        let c = parse(&with(&format!("{url}\naccounts = [\"111111111111\"]")), &[]).unwrap();
        assert_eq!(
            c.events.unwrap().accounts,
            ["111111111111".to_owned()].into()
        );
        let e = parse(&with(&format!("{url}\naccounts = [\"1234\"]")), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tugboat.toml: events.accounts: '1234' is not a 12-digit AWS account id"
        );
        let e = parse(
            &with("queue_url = \"https://sqs.eu-north-1.amazonaws.com/tugboat-events\""),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.field, "events.queue_url");
        assert!(e.to_string().contains("<account>/<queue>"), "{e}");
        let e = parse(&with("accounts = [\"111111111111\"]"), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tugboat.toml: events.accounts: given without events.queue_url"
        );
        let e = parse(&with(&format!("{url}\nqueue = \"x\"")), &[]).unwrap_err();
        assert!(e.to_string().contains("queue"), "{e}");
    }

    #[test]
    fn notification_sinks_are_optional_and_each_error_names_the_sink_and_the_value() {
        assert!(parse(EXAMPLE, &[]).unwrap().notify.is_none());
        let with = |lines: &str| {
            EXAMPLE.replacen(
                "[[services]]",
                &format!("[notify]\n{lines}\n\n[[services]]"),
                1,
            )
        };
        let slack = "[notify.sinks.team]\nkind = \"slack\"\nurl = { env = \"SLACK_URL\" }";
        let hook = "[notify.sinks.audit]\nkind = \"webhook\"\nurl = { file = \"/run/u\" }\nsecret = { ssm = \"/t/s\" }";
        let c = parse(
            &with(&format!(
                "{slack}\nevents = [\"promoted\", \"held\"]\nenvironments = [\"dev\"]\n{hook}"
            )),
            &[],
        )
        .unwrap();
        let n = c.notify.unwrap();
        assert_eq!((n.unhealthy_after, n.attempts), (3, 5));
        let names: Vec<&str> = n.sinks.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["audit", "team"]);
        let team = &n.sinks[1];
        assert_eq!(team.kind, SinkKind::Slack);
        assert_eq!(team.url, SecretRef::Env("SLACK_URL".into()));
        assert_eq!(team.filter.environments, ["dev".to_owned()].into());
        assert_eq!(team.filter.events.len(), 2);
        assert!(
            n.sinks[0].filter.events.is_empty(),
            "every event by default"
        );

        let err = |toml: &str| parse(&with(toml), &[]).unwrap_err().to_string();
        assert_eq!(
            err(&format!("{slack}\nevents = [\"deployed\"]")),
            "tugboat.toml: notify.sinks.team.events: 'deployed' is not one of: promoted, blocked, awaiting_approval, rolled_back, held, new_findings, unhealthy"
        );
        assert!(
            err(&format!("{slack}\nenvironments = [\"staging\"]"))
                .starts_with("tugboat.toml: notify.sinks.team.environments: 'staging' is no service's environment (known: ")
        );
        assert!(
            err(&hook.replace("secret = { ssm = \"/t/s\" }", "")).starts_with(
                "tugboat.toml: notify.sinks.audit.secret: a webhook sink signs what it sends"
            )
        );
        assert!(
            err(&format!("{slack}\nsecret = {{ env = \"X\" }}"))
                .contains("a Slack sink has no signing secret")
        );
        assert!(
            err(&slack.replace("\"slack\"", "\"teams\""))
                .contains("'teams' is not one of: slack, webhook")
        );
        assert!(err(&slack.replace("team]", "\"team one\"]")).contains("notify.sinks.team one"));
        assert_eq!(
            err(&format!("attempts = 0\n{slack}")),
            "tugboat.toml: notify.attempts: 0 is not between 1 and 20"
        );
        assert!(err(&format!("unhealthy_after = 0\n{slack}")).contains("notify.unhealthy_after"));
        let e = err(&slack.replace(
            "url = { env = \"SLACK_URL\" }",
            "url = \"https://hooks.slack.com/services/T/B/x\"",
        ));
        assert!(!e.contains("hooks.slack.com"), "not echoed: {e}");
        assert!(
            e.starts_with("tugboat.toml: notify.sinks.team.url: a secret is given by reference"),
            "{e}"
        );
        // The same for any secret: a token pasted in clear is not repeated either.
        let clear = EXAMPLE.replacen(
            "token = { env = \"GITHUB_TOKEN\" }",
            "token = \"ghp_pastedinclear\"",
            1,
        );
        let e = parse(&clear, &[]).unwrap_err().to_string();
        assert!(
            !e.contains("ghp_pastedinclear") && e.contains("github.token"),
            "{e}"
        );
    }

    #[test]
    fn the_github_write_budget_defaults_to_githubs_limits_and_the_hour_holds_the_minute() {
        let c = parse(EXAMPLE, &[]).unwrap();
        assert_eq!(
            (c.github.writes_per_minute, c.github.writes_per_hour),
            (80, 500)
        );
        let with = |lines: &str| EXAMPLE.replacen("[github]\n", &format!("[github]\n{lines}\n"), 1);
        let c = parse(
            &with("writes_per_minute = 200\nwrites_per_hour = 5000"),
            &[],
        )
        .unwrap();
        assert_eq!(
            (c.github.writes_per_minute, c.github.writes_per_hour),
            (200, 5000)
        );
        let e = parse(&with("writes_per_minute = 600"), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tugboat.toml: github.writes_per_hour: 500 is not between github.writes_per_minute (600) and 600000"
        );
        let e = parse(&with("writes_per_hour = 0"), &[]).unwrap_err();
        assert_eq!(e.field, "github.writes_per_hour");
    }

    #[test]
    fn the_seal_key_defaults_to_ssm_and_former_logins_must_be_logins() {
        let c = parse(EXAMPLE, &[]).unwrap();
        assert_eq!(
            c.github.state_key,
            SecretRef::Ssm("/tugboat/salon/salon-gitops/state-key".into())
        );
        assert!(c.github.former_logins.is_empty());
        let with = |lines: &str| EXAMPLE.replacen("[github]\n", &format!("[github]\n{lines}\n"), 1);
        let c = parse(
            &with("state_key = { file = \"/run/key\" }\nformer_logins = [\"salon-ops\", \"old-app[bot]\"]"),
            &[],
        )
        .unwrap();
        assert_eq!(c.github.state_key, SecretRef::File("/run/key".into()));
        assert_eq!(c.github.former_logins, ["salon-ops", "old-app[bot]"]);
        let e = parse(&with("former_logins = [\"ok\", \"not a login\"]"), &[]).unwrap_err();
        assert_eq!(e.field, "github.former_logins[1]");
        assert!(
            e.to_string()
                .contains("'not a login' is not a GitHub login"),
            "{e}"
        );
    }

    #[test]
    fn merge_method_refresh_and_ca_bundle_are_checked_at_start() {
        let c = parse(EXAMPLE, &[]).unwrap();
        assert_eq!(c.github.merge_method.as_str(), "squash", "default");
        assert!(!c.argocd.hard_refresh && c.argocd.ca_bundle.is_none());
        let with = |section: &str, line: &str| {
            EXAMPLE.replacen(
                &format!("[{section}]\n"),
                &format!("[{section}]\n{line}\n"),
                1,
            )
        };
        let c = parse(&with("github", "merge_method = \"rebase\""), &[]).unwrap();
        assert_eq!(c.github.merge_method.as_str(), "rebase");
        assert_eq!(
            c.github.commits,
            CommitVia::Push,
            "a token pushes by default"
        );
        let c = parse(&with("github", "commits = \"api\""), &[]).unwrap();
        assert_eq!(c.github.commits, CommitVia::Api);
        let e = parse(&with("github", "commits = \"ssh\""), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tugboat.toml: github.commits: 'ssh' is not one of: push, api"
        );
        let c = parse(&with("github", "login = \"salon-tugboat[bot]\""), &[]).unwrap();
        assert_eq!(c.github.login.as_deref(), Some("salon-tugboat[bot]"));
        let e = parse(&with("github", "login = \"tug boat\""), &[]).unwrap_err();
        assert_eq!(e.field, "github.login");
        let e = parse(&with("github", "merge_method = \"fast-forward\""), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tugboat.toml: github.merge_method: 'fast-forward' is not one of: squash, merge, rebase"
        );
        assert!(
            parse(&with("argocd", "refresh = \"hard\""), &[])
                .unwrap()
                .argocd
                .hard_refresh
        );
        let e = parse(&with("argocd", "refresh = \"soft\""), &[]).unwrap_err();
        assert_eq!(e.field, "argocd.refresh");

        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, "not a certificate").unwrap();
        let line = format!("ca_bundle = {:?}", pem.display().to_string());
        let e = parse(&with("argocd", &line), &[]).unwrap_err();
        assert_eq!(e.field, "argocd.ca_bundle");
        assert!(e.message.ends_with("holds no PEM certificate"), "{e}");
        let missing = format!(
            "ca_bundle = {:?}",
            dir.path().join("nope.pem").display().to_string()
        );
        let e = parse(&with("argocd", &missing), &[]).unwrap_err();
        assert!(e.message.starts_with("cannot read "), "{e}");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let c = parse(&with("argocd", &line), &[]).unwrap();
        assert!(c.argocd.ca_bundle.is_some());
    }

    #[test]
    fn secrets_are_read_from_the_environment_or_a_file_and_never_printed() {
        let r = SecretRef::Env("TOKEN".into());
        let s = read_local_secret(&r, |_| Some("s3cr3t".into()))
            .unwrap()
            .unwrap();
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(
            read_local_secret(&r, |_| None).unwrap_err(),
            "environment variable TOKEN is not set"
        );
    }
}
