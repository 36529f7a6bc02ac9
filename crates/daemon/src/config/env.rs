//! Configuration from the environment: one rule for every key, nested ones included.
//! `TUGBOAT_` and the key's path, upper-cased, with `_` for each dot: `engine.interval` is
//! `TUGBOAT_ENGINE_INTERVAL`, `github.app.id` is `TUGBOAT_GITHUB_APP_ID`, a sink's URL is
//! `TUGBOAT_NOTIFY_SINKS_<NAME>_URL_ENV` (a secret takes `_ENV`, `_FILE` or `_SSM`: the
//! reference, never the secret). The value is read as the key's kind says ([`Kind`]), not
//! guessed, so `TUGBOAT_AWS_REGISTRY_ID=123456789012` stays text.
//!
//! A `TUGBOAT_*` variable that is no key is an error naming the closest key, never ignored,
//! except: tugboat's other variables ([`OTHER_VARIABLES`]), a variable a secret reference
//! names (`token = { env = "TUGBOAT_GH_TOKEN" }`), and the variables Kubernetes gives every
//! pod for each Service of its namespace (a Service named `tugboat` gives
//! `TUGBOAT_SERVICE_HOST`, `TUGBOAT_PORT_8080_TCP_ADDR`, …: "Environment variables",
//! kubernetes.io/docs/concepts/services-networking/service/#environment-variables).

use std::collections::{BTreeMap, BTreeSet};

use super::ConfigError;
use super::keys::{KEYS, Key, Kind, OTHER_VARIABLES};

/// The variables that set keys: dotted path (a sink's with its name) → variable.
pub type FromEnv = BTreeMap<String, String>;

/// Apply the `TUGBOAT_*` variables of `env` to the file's `table`; which path each set.
pub fn apply(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<FromEnv, ConfigError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("TUGBOAT_"))
        .collect();
    vars.sort();
    let mut set = FromEnv::new();
    let mut unknown = Vec::new();
    for (var, value) in vars {
        let Some((key, name, variant)) = matching(&var)? else {
            unknown.push((var, value));
            continue;
        };
        let path = path_of(key, name.as_deref(), table);
        let dotted = path.join(".");
        if let Some(other) = set.get(&dotted) {
            return Err(error(
                &var,
                format!("sets `{dotted}`, which {other} sets too: give one"),
            ));
        }
        let value = value_of(key, variant, &var, &value)?;
        insert(table, &path, value).map_err(|m| error(&var, m))?;
        set.insert(dotted, var);
    }
    let named = secret_variables(table);
    if let Some((var, _)) = unknown
        .into_iter()
        .find(|(v, value)| !named.contains(v) && !other(v) && !service_link(v, value))
    {
        return Err(error(&var, unknown_message(&var)));
    }
    Ok(set)
}

fn error(var: &str, message: String) -> ConfigError {
    ConfigError {
        file: "environment".into(),
        field: var.to_owned(),
        message,
    }
}

/// A key a variable sets: the key, the sink name it gives (`<name>`), a secret's variant.
type Match = (&'static Key, Option<String>, &'static str);

/// The key `var` sets.
fn matching(var: &str) -> Result<Option<Match>, ConfigError> {
    let mut found: Vec<Match> = variables()
        .filter_map(|(key, pattern, variant)| fits(var, &pattern).map(|name| (key, name, variant)))
        .collect();
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => {
            let keys: Vec<&str> = found.iter().map(|(k, _, _)| k.path).collect();
            Err(error(
                var,
                format!("could set any of {}; set them in the file", keys.join(", ")),
            ))
        }
    }
}

/// Every variable a key can be set by, as a pattern (`<NAME>` for a sink's name), with the
/// key and, for a secret, the reference's variant (`env`, `file`, `ssm`; else `""`).
fn variables() -> impl Iterator<Item = (&'static Key, String, &'static str)> {
    KEYS.iter()
        .filter_map(|key| key.env_var().map(|pattern| (key, pattern)))
        .flat_map(|(key, pattern)| {
            let variants: &'static [&'static str] = if key.kind == Kind::Secret {
                &["env", "file", "ssm"]
            } else {
                &[""]
            };
            variants.iter().map(move |variant| match *variant {
                "" => (key, pattern.clone(), ""),
                v => (
                    key,
                    format!("{pattern}_{}", v.to_ascii_uppercase()),
                    *variant,
                ),
            })
        })
}

/// Whether `var` is `pattern`, and the name a `<NAME>` in it stands for.
fn fits(var: &str, pattern: &str) -> Option<Option<String>> {
    match pattern.split_once("<NAME>") {
        None => (var == pattern).then_some(None),
        Some((before, after)) => {
            let middle = var.strip_prefix(before)?.strip_suffix(after)?;
            let name_like = !middle.is_empty()
                && middle
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            name_like.then(|| Some(middle.to_owned()))
        }
    }
}

/// The TOML path `key` is at; a sink's `<name>` is the file's sink that the variable
/// spells (`PLATFORM_SLACK` for `platform-slack`), or a new one in lower case.
fn path_of(key: &Key, name: Option<&str>, table: &toml::Table) -> Vec<String> {
    key.path
        .split('.')
        .map(|part| match (part, name) {
            ("<name>", Some(name)) => {
                existing_sink(table, name).unwrap_or_else(|| name.to_ascii_lowercase())
            }
            _ => part.to_owned(),
        })
        .collect()
}

fn existing_sink(table: &toml::Table, spelled: &str) -> Option<String> {
    let sinks = table.get("notify")?.get("sinks")?.as_table()?;
    sinks
        .keys()
        .find(|k| k.to_ascii_uppercase().replace('-', "_") == spelled)
        .cloned()
}

/// The value of `text` for `key`, read as its kind says.
fn value_of(key: &Key, variant: &str, var: &str, text: &str) -> Result<toml::Value, ConfigError> {
    use toml::Value;
    let bad = |what: &str| error(var, format!("'{text}' is not {what} (`{}`)", key.path));
    Ok(match key.kind {
        Kind::Text | Kind::Duration | Kind::Choice(_) => Value::String(text.to_owned()),
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" => Value::Boolean(true),
            "false" => Value::Boolean(false),
            _ => return Err(bad("true or false")),
        },
        Kind::Integer => Value::Integer(text.trim().parse().map_err(|_| bad("an integer"))?),
        Kind::List => Value::Array(list(text).ok_or_else(|| bad("a list"))?),
        Kind::Secret => {
            let mut t = toml::Table::new();
            t.insert(variant.to_owned(), Value::String(text.to_owned()));
            Value::Table(t)
        }
    })
}

/// A TOML array of text (`["a", "b"]`), or words separated by commas (`a, b`).
fn list(text: &str) -> Option<Vec<toml::Value>> {
    let text = text.trim();
    if text.starts_with('[') {
        let mut t: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
        return match t.remove("v")? {
            toml::Value::Array(a) => Some(a),
            _ => None,
        };
    }
    Some(
        text.split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(|w| toml::Value::String(w.to_owned()))
            .collect(),
    )
}

fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("an empty key")?;
    let mut at = table;
    for (i, part) in parents.iter().enumerate() {
        let entry = at
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{}` is not a table in the file", path[..=i].join(".")))?;
    }
    at.insert(last.clone(), value);
    Ok(())
}

/// The variables the configuration's secret references name (`{ env = "NAME" }`).
fn secret_variables(table: &toml::Table) -> BTreeSet<String> {
    fn walk(v: &toml::Value, out: &mut BTreeSet<String>) {
        match v {
            toml::Value::Table(t) => {
                if let (1, Some(toml::Value::String(name))) = (t.len(), t.get("env")) {
                    out.insert(name.clone());
                }
                t.values().for_each(|v| walk(v, out));
            }
            toml::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    table.values().for_each(|v| walk(v, &mut out));
    out
}

fn other(var: &str) -> bool {
    OTHER_VARIABLES.iter().any(|(name, _)| *name == var)
}

/// Whether Kubernetes made `var` (set to `value`) for a Service: `{SVC}_SERVICE_HOST`,
/// `{SVC}_SERVICE_PORT`, `{SVC}_SERVICE_PORT_{PORTNAME}`, and the Docker-links form:
/// `{SVC}_PORT=tcp://…`, `{SVC}_PORT_{N}_{PROTO}` alone or with `_ADDR`, `_PORT` or `_PROTO`.
pub fn service_link(var: &str, value: &str) -> bool {
    let url = ["tcp://", "udp://", "sctp://"]
        .iter()
        .any(|p| value.starts_with(p));
    if var.ends_with("_SERVICE_HOST") {
        return true;
    }
    if var.ends_with("_SERVICE_PORT") || var.contains("_SERVICE_PORT_") {
        return value.chars().all(|c| c.is_ascii_digit());
    }
    if var.ends_with("_PORT") && url {
        return true;
    }
    let Some((_, rest)) = var.rsplit_once("_PORT_") else {
        return false;
    };
    let rest = ["_ADDR", "_PORT", "_PROTO"]
        .iter()
        .find_map(|s| rest.strip_suffix(s))
        .unwrap_or(rest);
    let Some((port, proto)) = rest.split_once('_') else {
        return false;
    };
    !port.is_empty()
        && port.chars().all(|c| c.is_ascii_digit())
        && matches!(proto, "TCP" | "UDP" | "SCTP")
}

/// What to say of a variable that is no key: the closest key's variable.
fn unknown_message(var: &str) -> String {
    if var.starts_with("TUGBOAT_SERVICES_") {
        return "services and their environments are set in the configuration file only".into();
    }
    let closest = variables().min_by_key(|(_, f, _)| strsim::levenshtein(var, f));
    match closest {
        Some((k, f, _)) => format!(
            "not a configuration key; did you mean {f} (`{}`)? `tugboat config keys` lists them all",
            k.path
        ),
        None => "not a configuration key".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::tests::EXAMPLE;
    use crate::config::{Config, GithubAuth, SecretRef};

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse(
            text,
            "tugboat.toml",
            env.iter().map(|(k, v)| ((*k).into(), (*v).into())),
        )
    }

    /// A value of `kind` that its parser takes.
    fn sample(kind: Kind) -> &'static str {
        match kind {
            Kind::Text => "text",
            Kind::Bool => "true",
            Kind::Integer => "7",
            Kind::Duration => "7s",
            Kind::Choice(words) => words[0],
            Kind::List => "a, b",
            Kind::Secret => "NAME", // pragma: allowlist secret (a variable's name)
        }
    }

    #[test]
    fn every_key_but_list_entries_is_set_by_its_variable_at_its_path() {
        for key in KEYS.iter().filter(|k| k.from_env()) {
            let mut var = key.env_var().unwrap().replace("<NAME>", "TEAM_CHAT");
            if key.kind == Kind::Secret {
                var.push_str("_FILE");
            }
            let mut table = toml::Table::new();
            let set = apply(&mut table, [(var.clone(), sample(key.kind).to_owned())])
                .unwrap_or_else(|e| panic!("{var}: {e}"));
            let dotted = key.path.replace("<name>", "team_chat");
            assert_eq!(set.get(&dotted), Some(&var), "{var}");
            let mut at = toml::Value::Table(table);
            for part in dotted.split('.') {
                at = at
                    .get(part)
                    .unwrap_or_else(|| panic!("{var}: no {dotted}"))
                    .clone();
            }
            let expected = match key.kind {
                Kind::Bool => toml::Value::Boolean(true),
                Kind::Integer => toml::Value::Integer(7),
                Kind::List => toml::Value::Array(vec!["a".into(), "b".into()]),
                Kind::Secret => toml::Value::Table(toml::toml! { file = "NAME" }),
                _ => toml::Value::String(sample(key.kind).into()),
            };
            assert_eq!(at, expected, "{var}");
        }
    }

    #[test]
    fn nested_sections_are_reached_from_the_environment_and_take_effect() {
        let app = EXAMPLE.replace("token = { env = \"GITHUB_TOKEN\" }\n", "");
        let sink = EXAMPLE.replacen(
            "[[services]]",
            "[notify.sinks.platform-slack]\nkind = \"slack\"\nurl = { env = \"OLD\" }\n[[services]]",
            1,
        );
        let c = parse(
            &app,
            &[
                (
                    "TUGBOAT_EVENTS_QUEUE_URL",
                    "https://sqs.eu-north-1.amazonaws.com/123456789012/tugboat-events",
                ),
                ("TUGBOAT_SCHEDULES_RESCAN_CRON", "0 6 * * MON"),
                ("TUGBOAT_RESCAN_WAIT", "10m"),
                ("TUGBOAT_GITHUB_APP_ID", "123456"),
                (
                    "TUGBOAT_GITHUB_APP_PRIVATE_KEY_FILE",
                    "/var/run/secrets/app.pem",
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            c.events.unwrap().queue_url,
            "https://sqs.eu-north-1.amazonaws.com/123456789012/tugboat-events"
        );
        assert_eq!(c.schedules[0].name, "rescan");
        assert_eq!(c.rescan.wait, Duration::from_secs(600));
        assert!(
            matches!(c.github.auth, GithubAuth::App { id: 123456, ref private_key, .. }
                if *private_key == SecretRef::File("/var/run/secrets/app.pem".into())),
            "{:?}",
            c.github.auth
        );
        // A sink the file names, spelled as a variable can spell it; and a new one.
        let c = parse(
            &sink,
            &[
                (
                    "TUGBOAT_NOTIFY_SINKS_PLATFORM_SLACK_URL_SSM",
                    "/tugboat/slack-url",
                ),
                ("TUGBOAT_NOTIFY_SINKS_AUDIT_KIND", "webhook"),
                ("TUGBOAT_NOTIFY_SINKS_AUDIT_URL_ENV", "AUDIT_URL"),
                ("TUGBOAT_NOTIFY_SINKS_AUDIT_SECRET_ENV", "AUDIT_SECRET"),
                ("TUGBOAT_NOTIFY_SINKS_AUDIT_ENVIRONMENTS", "dev"),
            ],
        )
        .unwrap();
        let sinks = c.notify.unwrap().sinks;
        let names: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["audit", "platform-slack"]);
        assert_eq!(sinks[1].url, SecretRef::Ssm("/tugboat/slack-url".into()));
        assert_eq!(sinks[0].secret, Some(SecretRef::Env("AUDIT_SECRET".into())));
    }

    #[test]
    fn a_misspelt_variable_is_an_error_that_names_the_key_it_meant() {
        let e = parse(EXAMPLE, &[("TUGBOAT_ENGNE_INTERVAL", "30s")]).unwrap_err();
        assert_eq!(e.field, "TUGBOAT_ENGNE_INTERVAL");
        assert!(
            e.to_string()
                .contains("did you mean TUGBOAT_ENGINE_INTERVAL (`engine.interval`)"),
            "{e}"
        );
        let e = parse(EXAMPLE, &[("TUGBOAT_GITHUB_TOKEN_FIEL", "/t")]).unwrap_err();
        assert!(e.message.contains("TUGBOAT_GITHUB_TOKEN_FILE"), "{e}");
        let e = parse(EXAMPLE, &[("TUGBOAT_SERVICES_0_NAME", "x")]).unwrap_err();
        assert!(e.message.contains("configuration file only"), "{e}");
        // A secret given in clear where its reference belongs is not a key either.
        let e = parse(EXAMPLE, &[("TUGBOAT_ARGOCD_TOKEN", "s3cr3t")]).unwrap_err();
        assert!(e.message.contains("TUGBOAT_ARGOCD_TOKEN_"), "{e}");
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn values_are_read_as_their_key_says_and_a_bad_one_names_its_variable() {
        let c = parse(
            EXAMPLE,
            &[
                ("TUGBOAT_AWS_REGISTRY_ID", "012345678901"),
                ("TUGBOAT_GITHUB_FORMER_LOGINS", "salon-ops, salon-bot"),
                ("TUGBOAT_ELECTION_ENABLED", "TRUE"),
                ("TUGBOAT_ELECTION_NAMESPACE", "tugboat"),
                ("TUGBOAT_ELECTION_IDENTITY", "tugboat-0"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.aws.registry_id.as_deref(),
            Some("012345678901"),
            "text, not a number"
        );
        assert_eq!(c.github.former_logins, ["salon-ops", "salon-bot"]);
        assert!(c.election.is_some());
        let e = parse(EXAMPLE, &[("TUGBOAT_ENGINE_CONCURRENCY", "eight")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment: TUGBOAT_ENGINE_CONCURRENCY: 'eight' is not an integer (`engine.concurrency`)"
        );
        let e = parse(EXAMPLE, &[("TUGBOAT_ENGINE_INTERVAL", "soon")]).unwrap_err();
        assert!(
            e.to_string().ends_with("(set by TUGBOAT_ENGINE_INTERVAL)"),
            "{e}"
        );
        let e = parse(
            EXAMPLE,
            &[
                ("TUGBOAT_GITHUB_TOKEN_ENV", "A"),
                ("TUGBOAT_GITHUB_TOKEN_FILE", "/b"),
            ],
        )
        .unwrap_err();
        assert!(e.message.contains("sets too"), "{e}");
    }

    #[test]
    fn kubernetes_service_links_tugboats_other_variables_and_named_secrets_are_not_keys() {
        let file = EXAMPLE.replace("GITHUB_TOKEN", "TUGBOAT_GH_TOKEN");
        let env = [
            ("TUGBOAT_SERVICE_HOST", "10.0.0.11"),
            ("TUGBOAT_SERVICE_PORT", "8080"),
            ("TUGBOAT_SERVICE_PORT_HTTP", "8080"),
            ("TUGBOAT_PORT", "tcp://10.0.0.11:8080"),
            ("TUGBOAT_PORT_8080_TCP", "tcp://10.0.0.11:8080"),
            ("TUGBOAT_PORT_8080_TCP_PROTO", "tcp"),
            ("TUGBOAT_PORT_8080_TCP_PORT", "8080"),
            ("TUGBOAT_PORT_8080_TCP_ADDR", "10.0.0.11"),
            ("TUGBOAT_METRICS_SERVICE_HOST", "10.0.0.12"),
            ("TUGBOAT_CONFIG", "/etc/tugboat/tugboat.toml"),
            ("TUGBOAT_GH_TOKEN", "ghs_x"),
        ];
        parse(&file, &env).unwrap();
        // A shape of theirs with a value Kubernetes never gives is still a mistake.
        assert!(parse(&file, &[("TUGBOAT_SERVER_PORT", "8080")]).is_err());
        assert!(!service_link("TUGBOAT_ENGINE_PORT_8080_HTTP", "x"));
    }

    #[test]
    fn every_variable_the_chart_and_the_kustomize_base_set_is_a_key_or_tugboats_own() {
        for (file, text) in [
            (
                "helm/tugboat/templates/deployment.yaml",
                include_str!("../../../../helm/tugboat/templates/deployment.yaml"),
            ),
            (
                "manifests/deployment.yaml",
                include_str!("../../../../manifests/deployment.yaml"),
            ),
        ] {
            let vars: Vec<&str> = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("- name: "))
                .filter(|v| v.starts_with("TUGBOAT_"))
                .collect();
            assert!(vars.len() >= 5, "{file}: {vars:?}");
            for var in vars {
                assert!(
                    other(var) || matching(var).unwrap().is_some(),
                    "{file} sets {var}, which tugboat would refuse"
                );
            }
        }
    }
}
