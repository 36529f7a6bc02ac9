//! Every configuration key: its path, how its value is written, its default and what it
//! means. One table serves three readers: the environment overrides (which variable sets
//! which key, and how its text becomes a value), `tugboat config show` (defaults and
//! origins) and the manual's configuration reference, generated from it. A test keeps it
//! equal to the keys the file parser accepts, table by table.

/// How a key's value is written, in the file and in an environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Bool,
    Integer,
    /// humantime: `90s`, `5m`, `1h 30m`.
    Duration,
    /// One of the given words.
    Choice(&'static [&'static str]),
    /// A list of text: a TOML array, or in the environment also words separated by commas.
    List,
    /// A secret, by reference: `{ env = "NAME" }`, `{ file = "PATH" }` or
    /// `{ ssm = "/parameter" }`; from the environment as `…_ENV`, `…_FILE` or `…_SSM`.
    Secret,
}

impl Kind {
    /// The kind as the reference names it.
    pub fn name(self) -> String {
        match self {
            Kind::Text => "text".into(),
            Kind::Bool => "true / false".into(),
            Kind::Integer => "integer".into(),
            Kind::Duration => "duration".into(),
            Kind::Choice(words) => words.join(" / "),
            Kind::List => "list of text".into(),
            Kind::Secret => "secret reference".into(), // pragma: allowlist secret (a kind's name)
        }
    }
}

/// One configuration key.
#[derive(Debug)]
pub struct Key {
    /// Dotted, as in the file: `github.app.id`. `<name>` stands for a name the file gives
    /// (a notification sink); `services[]` and `environments[]` for an entry of a list.
    pub path: &'static str,
    pub kind: Kind,
    /// What applies when the key is not given; `""` when it is required or has none.
    pub default: &'static str,
    pub required: bool,
    pub doc: &'static str,
}

impl Key {
    /// Whether the environment can set it (list entries cannot: they are only in the file).
    pub fn from_env(&self) -> bool {
        !self.path.contains("[]")
    }

    /// Its environment variable: `TUGBOAT_` and the path, upper-cased, dots as `_`
    /// (`TUGBOAT_NOTIFY_SINKS_<NAME>_URL`). A secret's variable takes `_ENV`, `_FILE` or
    /// `_SSM` after it. `None` for keys of list entries.
    pub fn env_var(&self) -> Option<String> {
        self.from_env().then(|| {
            let name = self.path.replace('.', "_").to_ascii_uppercase();
            format!("TUGBOAT_{name}")
        })
    }

    /// The section it is in (`github` for `github.app.id`; `services` for list entries).
    pub fn section(&self) -> &'static str {
        self.path.split(['.', '[']).next().unwrap_or(self.path)
    }
}

const fn key(path: &'static str, kind: Kind, default: &'static str, doc: &'static str) -> Key {
    Key {
        path,
        kind,
        default,
        required: false,
        doc,
    }
}

const fn required(path: &'static str, kind: Kind, doc: &'static str) -> Key {
    Key {
        path,
        kind,
        default: "",
        required: true,
        doc,
    }
}

use Kind::*;

/// Every key, section by section, in the order of the manual.
pub const KEYS: &[Key] = &[
    required(
        "aws.region",
        Text,
        "The AWS region of the registry, the parameters and the queue.",
    ),
    key(
        "aws.registry_id",
        Text,
        "",
        "The default registry (an AWS account id); a service may name its own. Default: the account of the credentials.",
    ),
    key(
        "aws.endpoint_url",
        Text,
        "",
        "Another endpoint for every AWS call (a local stand-in, a VPC endpoint).",
    ),
    key(
        "aws.registry_url",
        Text,
        "",
        "ECR's registry API, where cosign signatures are read, at another address: an interface VPC endpoint's own DNS name (https://vpce-….dkr.ecr.<region>.vpce.amazonaws.com). Default: the address GetAuthorizationToken names.",
    ),
    key(
        "aws.test_credentials",
        Bool,
        "false",
        "Sign AWS calls with fixed test credentials (the sandbox and the tests only).",
    ),
    required(
        "policy.ssm_path",
        Text,
        "The SSM Parameter Store path under which the promotion policy lives.",
    ),
    key(
        "policy.refresh",
        Duration,
        "5m",
        "How often the policy is read again from SSM (SIGHUP: at once).",
    ),
    required(
        "github.repository",
        Text,
        "The GitOps repository, as `owner/name`.",
    ),
    key(
        "github.base_branch",
        Text,
        "main",
        "The branch Argo CD deploys from; promotions merge into it.",
    ),
    key(
        "github.api_url",
        Text,
        "https://api.github.com",
        "The REST API (GitHub Enterprise: `https://HOST/api/v3`).",
    ),
    key(
        "github.clone_url",
        Text,
        "https://github.com/<owner>/<repo>.git",
        "Where the repository is cloned from and pushed to.",
    ),
    key(
        "github.token",
        Secret,
        "",
        "A token that can push branches, open and merge pull requests and write issues. Give this or `[github.app]`.",
    ),
    key(
        "github.app.id",
        Integer,
        "",
        "The GitHub App's id, to authenticate as its installation instead of a token.",
    ),
    key(
        "github.app.private_key",
        Secret,
        "",
        "The App's private key (PEM).",
    ),
    key(
        "github.app.installation_id",
        Integer,
        "",
        "The installation on the repository. Default: looked up from the repository.",
    ),
    key(
        "github.webhook_secret",
        Secret,
        "",
        "The secret GitHub signs webhook deliveries with; enables `POST /webhooks/github`.",
    ),
    key(
        "github.state_key",
        Secret,
        "{ ssm = \"/tugboat/<owner>/<repo>/state-key\" }",
        "The key that seals tugboat's records (made and stored on first start).",
    ),
    key(
        "github.merge_method",
        Choice(&["squash", "merge", "rebase"]),
        "squash",
        "How pull requests are merged (the repository must allow it).",
    ),
    key(
        "github.login",
        Text,
        "",
        "tugboat's own login, where the token cannot read `GET /user` (an installation token). Default: asked of GitHub.",
    ),
    key(
        "github.former_logins",
        List,
        "[]",
        "Logins tugboat acted as before (a token's user, before a GitHub App): their records stay its own.",
    ),
    key(
        "github.writes_per_minute",
        Integer,
        "80",
        "Content-creating requests a minute at most (GitHub's secondary limit).",
    ),
    key("github.writes_per_hour", Integer, "500", "And an hour."),
    key(
        "github.commits",
        Choice(&["push", "api"]),
        "push with a token, api with an App",
        "How commits reach GitHub: a git push, or the Git Data API, which signs them (Verified).",
    ),
    key(
        "github.dashboard",
        Bool,
        "false",
        "Keep the promotion dashboard issue.",
    ),
    required("argocd.url", Text, "Argo CD's address."),
    required(
        "argocd.token",
        Secret,
        "An Argo CD token that can get (and, for auto-sync off, sync) the applications.",
    ),
    key(
        "argocd.poll_interval",
        Duration,
        "5s",
        "How often a verification looks at an application; failures back off up to 8x.",
    ),
    key(
        "argocd.refresh_interval",
        Duration,
        "60s",
        "A verification asks Argo CD to refresh an application at most this often.",
    ),
    key(
        "argocd.watch",
        Bool,
        "true",
        "Follow the application event stream while verifying (polling stays the fallback).",
    ),
    key(
        "argocd.refresh",
        Choice(&["normal", "hard"]),
        "normal",
        "The kind of refresh asked for (hard: re-render the manifests).",
    ),
    key(
        "argocd.ca_bundle",
        Text,
        "",
        "A PEM file of CAs to trust for a private Argo CD, besides the system's; TLS is always verified.",
    ),
    key(
        "engine.interval",
        Duration,
        "60s",
        "How often a cycle runs (events and webhooks start one sooner).",
    ),
    key(
        "engine.workdir",
        Text,
        "/var/lib/tugboat",
        "Where the persistent clone of the GitOps repository lives.",
    ),
    key(
        "engine.scan_wait",
        Duration,
        "30s",
        "How long one cycle waits for a pending scan.",
    ),
    key(
        "engine.concurrency",
        Integer,
        "8",
        "Services worked on at once (1-256).",
    ),
    key(
        "server.listen",
        Text,
        "0.0.0.0:8080",
        "The address of the health, metrics, dashboard and webhook server.",
    ),
    key(
        "schedules.promotion.cron",
        Text,
        "",
        "An extra reconcile cycle on a cron schedule (5 fields).",
    ),
    key(
        "schedules.promotion.zone",
        Text,
        "UTC",
        "The IANA time zone of that schedule.",
    ),
    key(
        "schedules.promotion.grace",
        Duration,
        "1h",
        "A slot missed while down runs at start-up if at most this late.",
    ),
    key(
        "schedules.policy_refresh.cron",
        Text,
        "",
        "Read the policy from SSM again, then a cycle, on a cron schedule.",
    ),
    key(
        "schedules.policy_refresh.zone",
        Text,
        "UTC",
        "The IANA time zone of that schedule.",
    ),
    key(
        "schedules.policy_refresh.grace",
        Duration,
        "1h",
        "A slot missed while down runs at start-up if at most this late.",
    ),
    key(
        "schedules.rescan.cron",
        Text,
        "",
        "Rescan every deployed image on a cron schedule (the salon: `0 6 * * MON`).",
    ),
    key(
        "schedules.rescan.zone",
        Text,
        "UTC",
        "The IANA time zone of that schedule.",
    ),
    key(
        "schedules.rescan.grace",
        Duration,
        "1h",
        "A slot missed while down runs at start-up if at most this late.",
    ),
    key(
        "rescan.scan_type",
        Choice(&["auto", "basic", "enhanced"]),
        "auto",
        "How the rescan gets fresh findings: ask the registry, or say which scanning it has.",
    ),
    key(
        "rescan.spread",
        Duration,
        "1s",
        "The pause between two StartImageScan calls.",
    ),
    key(
        "rescan.wait",
        Duration,
        "30m",
        "How long the rescan waits for the scans it started.",
    ),
    key(
        "rescan.poll",
        Duration,
        "15s",
        "How often it looks at a running scan.",
    ),
    key(
        "election.enabled",
        Bool,
        "false",
        "Leader election with a Kubernetes Lease: only the holder acts.",
    ),
    key("election.lease", Text, "tugboat", "The Lease's name."),
    key(
        "election.namespace",
        Text,
        "",
        "The Lease's namespace (required when enabled).",
    ),
    key(
        "election.identity",
        Text,
        "",
        "This replica's name in the Lease, the pod's name (required when enabled).",
    ),
    key(
        "election.lease_duration",
        Duration,
        "15s",
        "How long a lease lasts without renewal.",
    ),
    key(
        "election.renew_deadline",
        Duration,
        "10s",
        "The leader gives up leading if it cannot renew within this (shorter than the lease).",
    ),
    key(
        "election.retry_period",
        Duration,
        "2s",
        "How often replicas try to renew or take the lease (shorter still).",
    ),
    key(
        "election.api_url",
        Text,
        "",
        "The Kubernetes API server. Default: in-cluster, else the kubeconfig.",
    ),
    key(
        "election.address",
        Text,
        "",
        "This pod as its peers reach it (`http://POD_IP:8080`): followers hand webhook deliveries on to the leader there.",
    ),
    key(
        "events.queue_url",
        Text,
        "",
        "The SQS queue EventBridge fills with ECR pushes and scans; tugboat acts on them within seconds.",
    ),
    key(
        "events.accounts",
        List,
        "the queue's and the registries' accounts",
        "The AWS accounts whose events are believed.",
    ),
    key(
        "notify.unhealthy_after",
        Integer,
        "3",
        "Cycles a system fails every call before it is announced unhealthy.",
    ),
    key(
        "notify.attempts",
        Integer,
        "5",
        "Deliveries tried per notification and sink (1 s, 2 s, 4 s… apart), 1-20.",
    ),
    key(
        "notify.sinks.<name>.kind",
        Choice(&["slack", "webhook"]),
        "",
        "A Slack incoming webhook, or a signed JSON webhook (required for each sink).",
    ),
    key(
        "notify.sinks.<name>.url",
        Secret,
        "",
        "Where the sink posts: a secret, as the URL is the credential (required for each sink).",
    ),
    key(
        "notify.sinks.<name>.secret",
        Secret,
        "",
        "The key a webhook sink signs every body with (required for a webhook, refused for Slack).",
    ),
    key(
        "notify.sinks.<name>.events",
        List,
        "every event",
        "Which events the sink gets (promoted, blocked, rolled_back, held, unhealthy, …).",
    ),
    key(
        "notify.sinks.<name>.environments",
        List,
        "every environment",
        "Which environments' events the sink gets.",
    ),
    required(
        "services[].name",
        Text,
        "The service's name, as PRs, labels and metrics show it.",
    ),
    required("services[].repository", Text, "Its ECR repository."),
    key(
        "services[].registry_id",
        Text,
        "aws.registry_id",
        "The registry (AWS account) of that repository.",
    ),
    key(
        "services[].image",
        Text,
        "derived from the registry and repository",
        "The repository as manifests spell it (registry host and path).",
    ),
    required(
        "services[].environments[].name",
        Text,
        "An environment, in promotion order (dev, then staging, then prod).",
    ),
    required(
        "services[].environments[].files",
        List,
        "The files in the GitOps repository where the image tag lives.",
    ),
    required(
        "services[].environments[].argocd_application",
        Text,
        "The Argo CD application that deploys them.",
    ),
];

/// The environment variables tugboat reads that are not configuration keys.
pub const OTHER_VARIABLES: &[(&str, &str)] = &[
    ("TUGBOAT_CONFIG", "the configuration file (as `--config`)"),
    (
        "TUGBOAT_HEALTH_URL",
        "the address `tugboat health` probes (as `--url`)",
    ),
    (
        "TUGBOAT_ABORT_AT",
        "a failpoint that aborts the process (the tests' build only)",
    ),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// A file with every table in it (not a valid configuration: it is only parsed).
    const EVERY_TABLE: &str = r#"
[aws]
region = "eu-north-1"
[policy]
ssm_path = "/p"
[github]
repository = "o/r"
token = { env = "T" }
[github.app]
id = 1
private_key = { env = "K" }
[argocd]
url = "https://a"
token = { env = "A" }
[engine]
[server]
[schedules.promotion]
cron = "0 * * * *"
[schedules.policy_refresh]
cron = "0 * * * *"
[schedules.rescan]
cron = "0 * * * *"
[rescan]
[election]
[events]
[notify]
[notify.sinks.x]
kind = "slack"
url = { env = "U" }
[[services]]
name = "s"
repository = "s"
[[services.environments]]
name = "dev"
files = ["a.yaml"]
argocd_application = "a"
"#;

    fn segments(path: &str) -> Vec<&str> {
        path.split('.').map(|s| s.trim_end_matches("[]")).collect()
    }

    /// The keys the parser accepts in the table at `at`, as its "unknown field" error
    /// lists them.
    fn accepted(at: &[&str]) -> BTreeSet<String> {
        let mut file: toml::Table = toml::from_str(EVERY_TABLE).unwrap();
        let mut t = &mut file;
        for part in at {
            let part = if *part == "<name>" { "x" } else { part };
            let v = t.get_mut(part).unwrap();
            let v = match v {
                toml::Value::Array(a) => &mut a[0],
                v => v,
            };
            t = v.as_table_mut().unwrap();
        }
        t.insert("zz_probe".into(), toml::Value::Integer(1));
        let e = serde_path_to_error::deserialize::<_, crate::config::RawConfig>(
            toml::Value::Table(file),
        )
        .unwrap_err();
        let message = e.into_inner().message().to_owned();
        let expected = message
            .split_once("expected ")
            .unwrap_or_else(|| panic!("{at:?}: {message}"))
            .1;
        let expected = expected.strip_prefix("one of ").unwrap_or(expected);
        expected
            .split(", ")
            .flat_map(|c| c.split(" or "))
            .map(|c| c.trim_matches('`').to_owned())
            .collect()
    }

    #[test]
    fn the_key_table_holds_exactly_the_keys_the_file_parser_accepts_in_every_table() {
        let paths: Vec<Vec<&str>> = KEYS.iter().map(|k| segments(k.path)).collect();
        let tables: BTreeSet<Vec<&str>> = paths
            .iter()
            .flat_map(|p| (0..p.len()).map(move |n| p[..n].to_vec()))
            // `notify.sinks` is a map of names, not a table of keys.
            .filter(|t| t.last() != Some(&"sinks"))
            .collect();
        assert!(tables.len() > 15, "{tables:?}");
        for table in tables {
            let listed: BTreeSet<String> = paths
                .iter()
                .filter(|p| p.len() > table.len() && p.starts_with(&table))
                .map(|p| p[table.len()].to_owned())
                .collect();
            assert_eq!(
                listed,
                accepted(&table),
                "the keys of [{}] in KEYS and in the parser",
                table.join(".")
            );
        }
    }

    #[test]
    fn every_key_has_a_meaning_and_required_keys_no_default() {
        let mut seen = BTreeSet::new();
        for k in KEYS {
            assert!(seen.insert(k.path), "{} twice", k.path);
            assert!(
                k.doc.ends_with('.') && k.doc.len() > 10,
                "{}: {}",
                k.path,
                k.doc
            );
            assert!(!k.required || k.default.is_empty(), "{}", k.path);
        }
    }
}
