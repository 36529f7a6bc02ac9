//! Configuration: one TOML file plus `TUGBOAT_*` environment variables (one per key, see
//! [`env`]; every key in [`keys::KEYS`]), read raw
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

pub mod env;
mod github;
pub mod keys;
mod notify;
mod schedules;
mod services;
pub mod show;
mod systems;

pub use github::*;
pub use notify::*;
pub use schedules::*;
pub use services::*;
pub use systems::*;

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

/// A configuration and its layers.
pub struct Layered {
    pub config: Config,
    /// The file with the environment's values in it.
    pub merged: toml::Table,
    /// Which keys the environment set, and with which variable.
    pub from_env: env::FromEnv,
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

impl Config {
    /// Read `path`, apply the `TUGBOAT_*` variables of `env`, and validate.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Ok(Self::load_layered(path, env)?.config)
    }

    /// [`Config::load`], with what made the configuration.
    pub fn load_layered(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Layered, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            field: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Self::layered(&text, &file, env)
    }

    /// Parse and validate configuration text; `file` names it in errors.
    pub fn parse(
        text: &str,
        file: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Ok(Self::layered(text, file, env)?.config)
    }

    /// The configuration with what made it: the file's table with the environment's values
    /// in it, and which keys the environment set (for `tugboat config show`).
    pub fn layered(
        text: &str,
        file: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Layered, ConfigError> {
        let err = |field: &str, message: String| ConfigError {
            file: file.to_owned(),
            field: field.to_owned(),
            message,
        };
        let mut merged: toml::Table = toml::from_str(text)
            .map_err(|e| err("(file)", format!("not valid TOML: {}", e.message())))?;
        let from_env = env::apply(&mut merged, env)?;
        // An error in a value the environment set says so.
        let said = |mut e: ConfigError| {
            if let Some(var) = from_env.get(&e.field) {
                e.message = format!("{} (set by {var})", e.message);
            }
            e
        };
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(merged.clone()))
            .map_err(|e| {
            let path = e.path().to_string();
            said(err(&path, explain(e.into_inner().message())))
        })?;
        let config = validate(raw, &Fields { file }).map_err(said)?;
        Ok(Layered {
            config,
            merged,
            from_env,
        })
    }
}

/// The sections `tugboat init` connects with, read before any service is known.
pub struct Connection {
    pub github: GithubConfig,
    pub argocd: ArgoConfig,
    /// `None` when the table has no `aws.region` yet (then no secret may be in SSM).
    pub aws: Option<AwsConfig>,
}

impl Config {
    /// Validate the `[github]`, `[argocd]` and (when it names a region) `[aws]` tables of
    /// `table` as a configuration file's; `file` names it in errors.
    pub fn connection(table: &toml::Table, file: &str) -> Result<Connection, ConfigError> {
        let f = Fields { file };
        fn section<T: serde::de::DeserializeOwned>(
            table: &toml::Table,
            name: &str,
            f: &Fields<'_>,
        ) -> Result<T, ConfigError> {
            let v = table
                .get(name)
                .cloned()
                .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
            serde_path_to_error::deserialize(v).map_err(|e| {
                let field = match e.path().to_string().as_str() {
                    "." => name.to_owned(),
                    path => format!("{name}.{path}"),
                };
                f.err(&field, explain(e.into_inner().message()))
            })
        }
        let has_region = table.get("aws").and_then(|a| a.get("region")).is_some();
        Ok(Connection {
            github: github(section(table, "github", &f)?, &f)?,
            argocd: argocd(section(table, "argocd", &f)?, &f)?,
            aws: match has_region {
                true => Some(aws(section(table, "aws", &f)?, &f)?),
                false => None,
            },
        })
    }
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
            "tugboat.toml: engine.interval: duration 'soon' is invalid (expected number at 0); use e.g. '60s' or '5m' (set by TUGBOAT_ENGINE_INTERVAL)"
        );
        let e = parse(EXAMPLE, &[("TUGBOAT_ENGINE_CONCURRENCY", "0")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tugboat.toml: engine.concurrency: 0 is out of range; use 1 to 256 services at once (set by TUGBOAT_ENGINE_CONCURRENCY)"
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
