//! What `tugboat init` writes and says: the configuration (each key with its meaning from
//! [`KEYS`]), the starting policy, and the summary.

use std::fmt::Write as _;

use tugboat_core::domain::discover::{Discovery, Service};

use super::Init;
use crate::config::keys::{KEYS, Key, Kind};

/// The configuration: the connection tables, then the services found.
pub(super) fn config(table: &toml::Table, d: &Discovery) -> String {
    let mut out = String::from(
        "# tugboat configuration, written by `tugboat init` from Argo CD's applications and the\n\
         # GitOps repository's files. Every key: `tugboat config keys`; check the world with\n\
         # `tugboat plan` before `tugboat run`.\n",
    );
    let mut sections: Vec<&str> = KEYS.iter().map(Key::section).collect();
    sections.dedup();
    for name in sections {
        if let Some(toml::Value::Table(t)) = table.get(name) {
            section(&mut out, &[name.to_owned()], t);
        }
    }
    let registry = table
        .get("aws")
        .and_then(|a| a.get("registry_id"))
        .and_then(toml::Value::as_str);
    let region = table
        .get("aws")
        .and_then(|a| a.get("region"))
        .and_then(toml::Value::as_str)
        .unwrap_or_default();
    let _ = write!(
        out,
        "\n# One service per ECR repository, one environment per Argo CD application, in\n\
         # promotion order: {}.\n",
        d.order.join(" → ")
    );
    for s in &d.services {
        service(&mut out, s, registry, region);
    }
    out
}

/// `[a.b]` with its keys, then its tables; a secret reference stays inline.
fn section(out: &mut String, path: &[String], t: &toml::Table) {
    let _ = write!(out, "\n[{}]\n", path.join("."));
    let mut tables = Vec::new();
    for (k, v) in t {
        let mut at = path.to_vec();
        at.push(k.clone());
        let key = key_of(&at);
        match v {
            toml::Value::Table(sub) if key.is_none_or(|k| k.kind != Kind::Secret) => {
                tables.push((at, sub));
            }
            _ => {
                if let Some(key) = key {
                    let _ = writeln!(out, "# {}", key.doc);
                }
                let _ = writeln!(out, "{} = {v}", toml_key(k));
            }
        }
    }
    for (at, sub) in tables {
        section(out, &at, sub);
    }
}

/// The key of a path, a sink's name matching `<name>`.
fn key_of(path: &[String]) -> Option<&'static Key> {
    KEYS.iter().find(|k| {
        let parts: Vec<&str> = k.path.split('.').collect();
        parts.len() == path.len()
            && parts
                .iter()
                .zip(path)
                .all(|(p, q)| *p == "<name>" || p == q)
    })
}

/// A key as TOML writes it: bare when it can be.
fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_owned()
    } else {
        toml::Value::String(k.to_owned()).to_string()
    }
}

fn quoted(s: &str) -> toml::Value {
    toml::Value::String(s.to_owned())
}

fn service(out: &mut String, s: &Service, registry: Option<&str>, region: &str) {
    let _ = write!(
        out,
        "\n[[services]]\nname = {}\nrepository = {}\n",
        quoted(&s.name),
        quoted(&s.ecr.repository)
    );
    let account = registry.unwrap_or_default();
    if s.ecr.account != account {
        let _ = writeln!(out, "registry_id = {}", quoted(&s.ecr.account));
    }
    let derived = format!(
        "{}.dkr.ecr.{region}.amazonaws.com/{}",
        s.ecr.account, s.ecr.repository
    );
    if s.image.as_str() != derived {
        let _ = writeln!(out, "image = {}", quoted(s.image.as_str()));
    }
    for e in &s.environments {
        let files: Vec<toml::Value> = e.files.iter().map(|f| quoted(f)).collect();
        let _ = write!(
            out,
            "[[services.environments]]\nname = {}\nfiles = {}\nargocd_application = {}\n",
            quoted(&e.name),
            toml::Value::Array(files),
            quoted(&e.application)
        );
    }
}

/// The salon's defaults for the environments in `order`: block CRITICAL and HIGH findings
/// everywhere, merge the first environment's promotions by themselves, and the last
/// environment's after one approval.
pub(super) fn policy(order: &[String], parameter: &str) -> String {
    let mut out = format!(
        "# tugboat's starting policy, written by `tugboat init`. Store it as the SSM parameter\n\
         # {parameter} (String); `tugboat policy check FILE` checks a change first.\n\
         version: 1\nenvironments:\n"
    );
    let last = order.len().saturating_sub(1);
    for (i, env) in order.iter().enumerate() {
        let _ = writeln!(out, "  {}:", serde_json::Value::String(env.clone()));
        if i == last && i > 0 {
            out.push_str(
                "    # The last environment: merged after one approval (`/approve` or a review).\n\
                 \x20   auto_merge: false\n    approvals: 1\n\
                 \x20   # approvers: [my-org/platform-leads]  # who may approve (default: anyone with write access)\n",
            );
        } else {
            let why = if i == 0 {
                "The first environment"
            } else {
                "Promoted once the environment before it runs the image"
            };
            let _ = writeln!(
                out,
                "    # {why}: merged by tugboat when the image passes the gate.\n    auto_merge: true"
            );
        }
        out.push_str("    scan:\n      thresholds: {CRITICAL: 0, HIGH: 0}\n");
    }
    out
}

/// What was found, what was not, and what to do next.
pub(super) fn summary(init: &Init) -> String {
    let d = &init.discovery;
    let mut out = format!(
        "Read {} Argo CD application(s) in {} ms: {} service(s), environments in order {}.\n",
        init.applications,
        init.took.as_millis(),
        d.services.len(),
        if d.order.is_empty() {
            "(none)".to_owned()
        } else {
            d.order.join(" → ")
        }
    );
    if init.applications == 0 {
        out.push_str(
            "  Argo CD listed no application: the token may not get any application (its RBAC \
             policy needs `applications, get`), or none exists yet.\n",
        );
    }
    for why in &d.reasons {
        let _ = writeln!(out, "  order: {why}");
    }
    for s in &d.services {
        let _ = writeln!(out, "\n  {} ({})", s.name, s.image);
        for e in &s.environments {
            let _ = writeln!(
                out,
                "    {:<10} {:<32} {}",
                e.name,
                e.application,
                e.files.join(", ")
            );
        }
    }
    if !d.unplaced.is_empty() {
        let _ = writeln!(out, "\nNot placed ({}):", d.unplaced.len());
        for u in &d.unplaced {
            let _ = writeln!(out, "  {}: {}", u.what, u.why);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starting_policy_passes_the_policy_check_for_one_two_and_three_environments() {
        for order in [
            vec!["dev"],
            vec!["dev", "prod"],
            vec!["dev", "staging", "prod"],
        ] {
            let order: Vec<String> = order.into_iter().map(String::from).collect();
            let text = policy(&order, "/p/defaults");
            use tugboat_core::domain::policy::{PolicyDocument, resolve};
            let doc = PolicyDocument {
                name: "/p/defaults".into(),
                version: 1,
                body: text.clone(),
            };
            let p = resolve(&[doc], "/p/", "api", &order).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let env = |name: &String| &p.environments[name];
            assert!(env(&order[0]).auto_merge, "{text}");
            let last = order.last().unwrap();
            if order.len() > 1 {
                assert!(!env(last).auto_merge, "{text}");
                assert_eq!(env(last).approvals, 1, "{text}");
            }
            assert_eq!(env(last).scan.thresholds.len(), 2, "{text}");
        }
    }

    #[test]
    fn a_sinks_keys_are_found_by_their_name_pattern_and_secrets_stay_inline() {
        let t: toml::Table = toml::from_str(
            "[notify.sinks.platform]\nkind = \"slack\"\nurl = { env = \"SLACK_URL\" }\n",
        )
        .unwrap();
        let mut out = String::new();
        section(
            &mut out,
            &["notify".into()],
            t["notify"].as_table().unwrap(),
        );
        assert!(out.contains("[notify.sinks.platform]\n"), "{out}");
        assert!(out.contains("url = { env = \"SLACK_URL\" }\n"), "{out}");
        assert!(!out.contains("[notify.sinks.platform.url]"), "{out}");
    }
}
