//! The promotion policy: documents (YAML or JSON) kept in SSM, merged into typed per-environment rules.
//!
//! Layout under the configured path (each parameter ≤ 4 KB, so a policy may be split):
//! - `<path>defaults` and `<path>defaults/<part>`: applies to every service;
//! - `<path>services/<service>` and `<path>services/<service>/<part>`: overrides for one service.
//!
//! Parts are merged in name order; objects merge key by key, anything else replaces.
//! Each document is validated on its own first, so an error names the parameter that holds it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::gate::{Ignore, ScanPolicy, Severity};
use super::select::{DEFAULT_EXCLUDED_TAGS, TagOrdering, TagRule};

/// One stored policy document with the version its store gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    pub name: String,
    pub version: i64,
    pub body: String,
}

/// A policy problem, pinned to a parameter and a field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {parameter}: {path}: {message}")]
pub struct PolicyError {
    pub parameter: String,
    pub path: String,
    pub message: String,
}

/// What an environment's policy allows.
#[derive(Debug, Clone)]
pub struct EnvPolicy {
    pub tag: TagRule,
    pub scan: ScanPolicy,
    pub auto_merge: bool,
    pub approvals: u32,
    pub approvers: Vec<String>,
    pub health_timeout: Duration,
    pub pin_digest: bool,
}

/// The merged policy of one service, with the documents it came from.
#[derive(Debug, Clone)]
pub struct ServicePolicy {
    pub sources: Vec<PolicySource>,
    pub environments: BTreeMap<String, EnvPolicy>,
}

/// A parameter and version that contributed to a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    pub name: String,
    pub version: i64,
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (version {})", self.name, self.version)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoc {
    #[serde(default)]
    environments: BTreeMap<String, RawEnv>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    tag: Option<RawTag>,
    scan: Option<RawScan>,
    auto_merge: Option<bool>,
    approvals: Option<u32>,
    approvers: Option<Vec<String>>,
    health_timeout: Option<String>,
    pin_digest: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTag {
    pattern: Option<String>,
    exclude: Option<Vec<String>>,
    ordering: Option<TagOrdering>,
    semver: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawScan {
    thresholds: Option<BTreeMap<Severity, u32>>,
    ignore: Option<Vec<Ignore>>,
    allow_unscanned: Option<bool>,
}

/// Standard SSM parameters hold at most 4 KB.
pub const MAX_DOCUMENT_BYTES: usize = 4096;

/// Parse one document into a JSON value and check it against the schema on its own.
pub fn parse_document(doc: &PolicyDocument) -> Result<Value, PolicyError> {
    let err = |path: &str, message: String| PolicyError {
        parameter: doc.name.clone(),
        path: path.to_owned(),
        message,
    };
    if doc.body.len() > MAX_DOCUMENT_BYTES {
        return Err(err(
            "(document)",
            format!(
                "document is {} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit of a standard parameter; split it into parts (e.g. {}/part-2)",
                doc.body.len(),
                doc.name
            ),
        ));
    }
    let value: Value = serde_saphyr::from_str(&doc.body)
        .map_err(|e| err("(document)", format!("not valid YAML or JSON: {e}")))?;
    let value = if value.is_null() {
        Value::Object(Default::default())
    } else {
        value
    };
    let raw: RawDoc = serde_path_to_error::deserialize(&value)
        .map_err(|e| err(&path_of(&e), e.inner().to_string()))?;
    for (env, raw_env) in &raw.environments {
        build_env(raw_env)
            .map_err(|(field, msg)| err(&format!("environments.{env}.{field}"), msg))?;
    }
    Ok(value)
}

fn path_of(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let p = e.path().to_string();
    if p == "." { "(document)".into() } else { p }
}

fn build_env(raw: &RawEnv) -> Result<EnvPolicy, (String, String)> {
    let t = raw.tag.as_ref();
    let pattern = match t.and_then(|t| t.pattern.as_deref()) {
        Some(p) => Some(Regex::new(p).map_err(|e| {
            (
                "tag.pattern".to_owned(),
                format!("regex '{p}' does not compile: {e}"),
            )
        })?),
        None => None,
    };
    let constraint = match t.and_then(|t| t.semver.as_deref()) {
        Some(c) => Some(semver::VersionReq::parse(c).map_err(|e| {
            (
                "tag.semver".to_owned(),
                format!("constraint '{c}' is invalid: {e}"),
            )
        })?),
        None => None,
    };
    let health_timeout = match raw.health_timeout.as_deref() {
        Some(s) => humantime::parse_duration(s).map_err(|e| {
            (
                "health_timeout".to_owned(),
                format!("duration '{s}' is invalid ({e}); use e.g. '10m' or '90s'"),
            )
        })?,
        None => Duration::from_secs(600),
    };
    let scan_default = ScanPolicy::default();
    let s = raw.scan.as_ref();
    Ok(EnvPolicy {
        tag: TagRule {
            pattern,
            exclude: t.and_then(|t| t.exclude.clone()).unwrap_or_else(|| {
                DEFAULT_EXCLUDED_TAGS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect()
            }),
            ordering: t.and_then(|t| t.ordering).unwrap_or_default(),
            constraint,
        },
        scan: ScanPolicy {
            thresholds: s
                .and_then(|s| s.thresholds.clone())
                .unwrap_or(scan_default.thresholds),
            ignore: s.and_then(|s| s.ignore.clone()).unwrap_or_default(),
            allow_unscanned: s.and_then(|s| s.allow_unscanned).unwrap_or(false),
        },
        auto_merge: raw.auto_merge.unwrap_or(false),
        approvals: raw.approvals.unwrap_or(1),
        approvers: raw.approvers.clone().unwrap_or_default(),
        health_timeout,
        pin_digest: raw.pin_digest.unwrap_or(false),
    })
}

/// Merge `over` into `base`: objects key by key, anything else replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// Which service a document belongs to (`None` = defaults), from its name under `prefix`.
fn owner(name: &str, prefix: &str) -> Option<Option<String>> {
    let rest = name.strip_prefix(prefix)?.trim_start_matches('/');
    let mut parts = rest.split('/');
    match parts.next()? {
        "defaults" => Some(None),
        "services" => parts
            .next()
            .filter(|s| !s.is_empty())
            .map(|s| Some(s.to_owned())),
        _ => None,
    }
}

/// Resolve the policy of `service` for its `environments` from every document under `prefix`.
///
/// Fails closed: an error in the defaults or in the service's own documents is returned, and the
/// caller blocks the service. Documents of other services are not looked at.
pub fn resolve(
    docs: &[PolicyDocument],
    prefix: &str,
    service: &str,
    environments: &[String],
) -> Result<ServicePolicy, PolicyError> {
    let mut mine: Vec<(&PolicyDocument, bool)> = docs
        .iter()
        .filter_map(|d| match owner(&d.name, prefix)? {
            None => Some((d, true)),
            Some(s) if s == service => Some((d, false)),
            Some(_) => None,
        })
        .collect();
    // Defaults first, then the service's parts, each in name order.
    mine.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.name.cmp(&b.0.name)));
    let mut merged = Value::Object(Default::default());
    let mut sources = Vec::new();
    for (doc, _) in &mine {
        merge(&mut merged, parse_document(doc)?);
        sources.push(PolicySource {
            name: doc.name.clone(),
            version: doc.version,
        });
    }
    let last = mine.last().map_or_else(
        || format!("{prefix}services/{service}"),
        |d| d.0.name.clone(),
    );
    let err = |path: String, message: String| PolicyError {
        parameter: last.clone(),
        path,
        message,
    };
    let raw: RawDoc = serde_path_to_error::deserialize(&merged)
        .map_err(|e| err(path_of(&e), e.inner().to_string()))?;
    let mut out = BTreeMap::new();
    for env in environments {
        let Some(raw_env) = raw.environments.get(env) else {
            return Err(err(
                format!("environments.{env}"),
                format!(
                    "no policy for environment '{env}'; add it to {prefix}defaults or {prefix}services/{service}"
                ),
            ));
        };
        let policy =
            build_env(raw_env).map_err(|(f, m)| err(format!("environments.{env}.{f}"), m))?;
        out.insert(env.clone(), policy);
    }
    Ok(ServicePolicy {
        sources,
        environments: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, body: &str) -> PolicyDocument {
        PolicyDocument {
            name: name.into(),
            version: 3,
            body: body.into(),
        }
    }

    const DEFAULTS: &str = "environments:\n  dev:\n    auto_merge: true\n    scan:\n      thresholds: {CRITICAL: 0, HIGH: 0}\n  prod:\n    approvals: 2\n";

    #[test]
    fn a_service_override_merges_over_the_defaults() {
        let docs = [
            doc("/p/defaults", DEFAULTS),
            doc(
                "/p/services/api",
                r#"{"environments": {"dev": {"health_timeout": "90s"}}}"#,
            ),
            doc(
                "/p/services/other",
                "environments: {dev: {auto_merge: false}}",
            ),
        ];
        let p = resolve(&docs, "/p/", "api", &["dev".into(), "prod".into()]).unwrap();
        let dev = &p.environments["dev"];
        assert!(dev.auto_merge);
        assert_eq!(dev.health_timeout, Duration::from_secs(90));
        assert_eq!(p.environments["prod"].approvals, 2);
        assert_eq!(
            p.sources
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["/p/defaults", "/p/services/api"]
        );
    }

    #[test]
    fn an_unknown_field_is_named_with_its_parameter_and_path() {
        let docs = [doc(
            "/p/defaults",
            "environments:\n  dev:\n    auto_merg: true\n",
        )];
        let e = resolve(&docs, "/p/", "api", &["dev".into()]).unwrap_err();
        assert_eq!(e.parameter, "/p/defaults");
        assert_eq!(e.path, "environments.dev.auto_merg");
        assert!(
            e.message.contains("unknown field `auto_merg`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_regex_that_does_not_compile_is_reported_at_its_field() {
        let docs = [doc(
            "/p/services/api",
            "environments: {dev: {tag: {pattern: '(['}}}",
        )];
        let e = resolve(&docs, "/p/", "api", &["dev".into()]).unwrap_err();
        assert_eq!(
            (e.parameter.as_str(), e.path.as_str()),
            ("/p/services/api", "environments.dev.tag.pattern")
        );
    }

    #[test]
    fn a_missing_environment_fails_closed() {
        let e = resolve(
            &[doc("/p/defaults", DEFAULTS)],
            "/p/",
            "api",
            &["staging".into()],
        )
        .unwrap_err();
        assert!(
            e.message.starts_with("no policy for environment 'staging'"),
            "{e}"
        );
    }

    #[test]
    fn a_document_over_4kb_is_refused() {
        let body = format!("# {}\nenvironments: {{}}\n", "x".repeat(4100));
        let e = parse_document(&doc("/p/defaults", &body)).unwrap_err();
        assert!(e.message.contains("over the 4096-byte limit"), "{e}");
    }
}
