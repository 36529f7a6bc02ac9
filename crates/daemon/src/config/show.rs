//! `tugboat config show` and `tugboat config keys`: the effective configuration with where
//! each value came from, and every key with its variable, kind, default and meaning.
//! Secrets appear only as their references (`{ env = "NAME" }`), which is all a
//! configuration holds: a secret written in clear is refused when the file is read.

use super::Layered;
use super::keys::{KEYS, Key, Kind};

/// Every key's effective value and origin, one line each, section by section; a sink's
/// keys once per sink; the services as the file lists them.
pub fn show(l: &Layered) -> String {
    let mut out = format!("# {}: effective configuration\n", l.config.source);
    let mut section = "";
    for key in KEYS.iter().filter(|k| k.from_env()) {
        for path in expanded(key, l) {
            if key.section() != section {
                section = key.section();
                out.push_str(&format!("\n[{section}]\n"));
            }
            out.push_str(&line(key, &path, l));
        }
    }
    out.push_str("\n[[services]]  # file\n");
    for s in &l.config.services {
        let envs: Vec<&str> = s.environments.iter().map(|e| e.name.as_str()).collect();
        out.push_str(&format!(
            "# {}: {} ({})\n",
            s.name,
            s.image.as_str(),
            envs.join(" -> ")
        ));
    }
    out
}

/// The paths `key` stands for: itself, or one per sink for a sink's key.
fn expanded(key: &Key, l: &Layered) -> Vec<String> {
    if !key.path.contains("<name>") {
        return vec![key.path.to_owned()];
    }
    let sinks = l
        .merged
        .get("notify")
        .and_then(|n| n.get("sinks"))
        .and_then(toml::Value::as_table);
    sinks
        .map(|t| {
            t.keys()
                .map(|name| key.path.replace("<name>", name))
                .collect()
        })
        .unwrap_or_default()
}

/// The key's line: a value the environment set names its variable; any other value there
/// is the file's; without one, the documented default applies.
fn line(key: &Key, path: &str, l: &Layered) -> String {
    let short = path.split_once('.').map_or(path, |(_, rest)| rest);
    match (at(&l.merged, path), l.from_env.get(path)) {
        (Some(v), Some(var)) => format!("{short} = {}  # environment: {var}\n", shown(v)),
        (Some(v), None) => format!("{short} = {}  # file\n", shown(v)),
        (None, _) if key.default.is_empty() => format!("# {short}: not set\n"),
        (None, _) => format!("# {short} = {}  # default\n", key.default),
    }
}

/// The value at dotted `path` (a sink's name may hold a `-`, never a `.`).
fn at<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let mut parts = path.split('.');
    let mut v = table.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v)
}

/// A value as TOML writes it, inline.
fn shown(v: &toml::Value) -> String {
    match v {
        toml::Value::Table(t) => {
            let inner: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{k} = {}", shown(v)))
                .collect();
            format!("{{ {} }}", inner.join(", "))
        }
        v => v.to_string(),
    }
}

/// Every key: its path, its variable, its kind, its default and what it means.
pub fn keys() -> String {
    let mut out = String::new();
    for k in KEYS {
        let var = match (k.env_var(), k.kind) {
            (Some(v), Kind::Secret) => format!("{v}_ENV / _FILE / _SSM"),
            (Some(v), _) => v,
            (None, _) => "(file only)".into(),
        };
        let default = match (k.required, k.default) {
            (true, _) => "required".to_owned(),
            (false, "") => "not set".to_owned(),
            (false, d) => format!("default {d}"),
        };
        out.push_str(&format!(
            "{}\n    {var}\n    {}, {default}. {}\n",
            k.path,
            k.kind.name(),
            k.doc
        ));
    }
    out
}

/// The manual's configuration reference (`docs/reference/configuration.md`), from [`KEYS`]:
/// a test fails when the file differs.
pub fn reference() -> String {
    let mut out = String::from(
        "# Configuration keys\n\n\
         <!-- Generated from crates/daemon/src/config/keys.rs by `TUGBOAT_BLESS=1 cargo test -p tugboat-daemon --lib config::show`; do not edit. -->\n\n\
         Every key of `tugboat.toml`, section by section. Each can also be set from the\n\
         environment: `TUGBOAT_` and the key's path upper-cased, a `_` for each dot; a secret's\n\
         variable ends in `_ENV`, `_FILE` or `_SSM` and holds the reference. `tugboat config keys`\n\
         prints the same list, and `tugboat config show` the values in effect and their origin.\n",
    );
    let mut section = "";
    for k in KEYS {
        if k.section() != section {
            section = k.section();
            let table = if k.from_env() {
                format!("[{section}]")
            } else {
                format!("[[{section}]]")
            };
            out.push_str(&format!(
                "\n## `{table}`\n\n| key | kind | default | environment variable | meaning |\n|---|---|---|---|---|\n"
            ));
        }
        let var = match (k.env_var(), k.kind) {
            (Some(v), Kind::Secret) => format!("`{v}_ENV` / `_FILE` / `_SSM`"),
            (Some(v), _) => format!("`{v}`"),
            (None, _) => "file only".into(),
        };
        let default = match (k.required, k.default) {
            (true, _) => "required".to_owned(),
            (false, "") => "".to_owned(),
            (false, d) => format!("`{d}`"),
        };
        let path = k.path.split_once('.').map_or(k.path, |(_, rest)| rest);
        out.push_str(&format!(
            "| `{path}` | {} | {default} | {var} | {} |\n",
            k.kind.name(),
            k.doc.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::tests::EXAMPLE;

    #[test]
    fn show_says_where_each_value_came_from_and_shows_secrets_as_references() {
        let text = EXAMPLE.replacen(
            "[[services]]",
            "[engine]\nconcurrency = 4\n[notify.sinks.platform-slack]\nkind = \"slack\"\nurl = { env = \"SLACK_URL\" }\n[[services]]",
            1,
        );
        let l = Config::layered(
            &text,
            "tugboat.toml",
            [("TUGBOAT_ENGINE_INTERVAL".to_owned(), "30s".to_owned())],
        )
        .unwrap();
        let out = show(&l);
        for line in [
            "[engine]",
            "interval = \"30s\"  # environment: TUGBOAT_ENGINE_INTERVAL",
            "concurrency = 4  # file",
            "# scan_wait = 30s  # default",
            "token = { env = \"GITHUB_TOKEN\" }  # file",
            "sinks.platform-slack.url = { env = \"SLACK_URL\" }  # file",
            "# webhook_secret: not set",
            "# user_service: 123456789012.dkr.ecr.eu-north-1.amazonaws.com/user_service (dev)",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "no line {line:?} in:\n{out}"
            );
        }
    }

    #[test]
    fn the_manuals_configuration_reference_is_the_one_generated_from_the_key_table() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/reference/configuration.md"
        );
        let generated = reference();
        if std::env::var_os("TUGBOAT_BLESS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let written = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            written == generated,
            "docs/reference/configuration.md is not what config/keys.rs gives: run \
             `TUGBOAT_BLESS=1 cargo test -p tugboat-daemon --lib config::show` and commit it"
        );
    }

    #[test]
    fn keys_lists_every_key_with_its_variable() {
        let out = keys();
        assert!(
            out.contains(
                "engine.interval\n    TUGBOAT_ENGINE_INTERVAL\n    duration, default 60s."
            )
        );
        assert!(out.contains("TUGBOAT_GITHUB_APP_PRIVATE_KEY_ENV / _FILE / _SSM"));
        assert!(out.contains("services[].name\n    (file only)\n    text, required."));
        assert_eq!(
            out.lines().filter(|l| !l.starts_with(' ')).count(),
            KEYS.len()
        );
    }
}
