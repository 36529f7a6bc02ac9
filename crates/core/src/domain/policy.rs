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
use super::index::Platform;
use super::select::{DEFAULT_EXCLUDED_TAGS, TagOrdering, TagRule};
use super::signature::{self, RawSignatures, SignaturePolicy};
use super::window::{self, Window};

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
    /// The checks (commit status contexts or check run names) that must pass before a
    /// merge; `None`: every check that reports.
    pub checks: Option<Vec<String>>,
    /// How long after the last push the merge waits for checks to appear before "no
    /// checks" counts as passing, or an expected check as missing.
    pub checks_settle: Duration,
    pub health_timeout: Duration,
    /// How long the application may stay `Degraded` (or `Missing`) once the merge is synced
    /// before that is a failure: rollouts pass through it (metrics not yet available to an
    /// HPA, a Deployment briefly past its progress deadline).
    pub degraded_grace: Duration,
    /// How many times a sync of the merge may retry an apply error (Argo CD's
    /// `syncPolicy.retry`) before the verification fails with that error, rather than wait
    /// for Argo CD's own limit (which may be none).
    pub retry_limit: u32,
    /// What an Argo Rollouts pause under the merge's sync means (`wait` or `accept`).
    pub on_pause: OnPause,
    /// How long after the merge a paused Rollout is waited on (`on_pause: wait`) before the
    /// environment is held and people are told.
    pub pause_timeout: Duration,
    /// How long a PreSync or Sync hook of the merge's sync (a migration Job) is waited on,
    /// when that is longer than the `health_timeout`.
    pub hook_timeout: Duration,
    pub pin_digest: bool,
    /// How long the previous environment must have run the image Healthy first.
    pub soak: Duration,
    /// When a promotion may merge (empty: any time).
    pub windows: Vec<Window>,
    pub rollback: RollbackMode,
    /// The Argo CD application, when it differs from the configured one.
    pub application: Option<String>,
    /// Ask Argo CD to sync the merge revision (for applications without automated sync).
    pub sync: bool,
    /// Grouped promotions: the services ready within the window ride in one PR.
    pub group: Option<super::group::Rule>,
    /// What a tag-only promotion from a repository with mutable tags does.
    pub mutable_tags: MutableTags,
    /// The cosign signatures the pinned digest must carry (or is shown with).
    pub signatures: SignaturePolicy,
}

/// ECR tags are mutable by default: a tag can be pushed again to another digest after the
/// gate scanned it (ECR user guide, "Preventing image tags from being overwritten"). With
/// `pin_digest: false` the nodes then pull whatever the tag names at pull time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MutableTags {
    /// Promote, and say in the evidence and the plan that the scanned digest may not be
    /// what runs.
    #[default]
    Warn,
    /// Refuse a tag-only promotion from a repository whose tags can move.
    Refuse,
}

/// What a Rollout paused at a step (health `Suspended` under the merge's running sync) means.
/// A pause step waits for its duration or for a person's `promote` (Argo Rollouts' canary
/// docs); rolling a paused canary back would undo a rollout going as planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnPause {
    /// Wait up to `pause_timeout` after the merge; then hold the environment and tell
    /// people, never roll back.
    #[default]
    Wait,
    /// A paused canary counts as deployed.
    Accept,
}

/// How long after a push the merge waits for checks to appear by default: GitHub Actions
/// creates a workflow's check runs only once it is queued, usually seconds after the push
/// and longer when runners are busy.
pub const DEFAULT_CHECKS_SETTLE: Duration = Duration::from_secs(60);

/// How long after the merge a paused Rollout is waited on by default: canary steps with
/// timed pauses and analysis runs last minutes to tens of minutes; a pause waiting for a
/// person that lasts an hour is worth telling someone about.
pub const DEFAULT_PAUSE_TIMEOUT: Duration = Duration::from_secs(3600);

/// How long a running PreSync or Sync hook is waited on by default: a schema migration of a
/// large table can take far longer than a rollout, and rolling back in its middle is worse
/// than waiting.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(1800);

/// What happens when a promotion does not become Healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RollbackMode {
    /// Open, merge and verify a revert, and mark the digest bad.
    Auto,
    /// Report, and offer `/rollback` on the PR.
    #[default]
    Manual,
}

/// How long `Degraded` may last after the merge's sync by default. A transient Degraded is
/// a normal part of rollouts: an HPA reports it until the metrics server has scraped the new
/// pods (every 15 s by default; KEDA's `HPAMetricsUnavailable` has been seen for ~30 s,
/// argo-cd#28522, argo-cd#6287). A minute covers that with room; a crash-looping pod is
/// still Degraded after it.
pub const DEFAULT_DEGRADED_GRACE: Duration = Duration::from_secs(60);

/// How many retries of a failing apply a verification waits out by default: Argo CD's own
/// default `syncPolicy.retry.limit` is 5, its backoff 5 s doubling; a manifest that failed to
/// apply three times over ~35 s is not a passing error.
pub const DEFAULT_RETRY_LIMIT: u32 = 3;

/// The schema version this build reads (`version:` in a document; optional).
pub const SCHEMA_VERSION: u64 = 1;

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
    #[allow(dead_code)] // checked on the JSON value, before deserializing
    version: Option<u64>,
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
    checks: Option<Vec<String>>,
    checks_settle: Option<String>,
    health_timeout: Option<String>,
    degraded_grace: Option<String>,
    retry_limit: Option<u32>,
    on_pause: Option<OnPause>,
    pause_timeout: Option<String>,
    hook_timeout: Option<String>,
    pin_digest: Option<bool>,
    soak: Option<String>,
    windows: Option<Vec<RawWindow>>,
    rollback: Option<RollbackMode>,
    application: Option<String>,
    sync: Option<bool>,
    group: Option<RawGroup>,
    platforms: Option<Vec<String>>,
    mutable_tags: Option<MutableTags>,
    signatures: Option<RawSignatures>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    window: Option<String>,
    max: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    days: Vec<String>,
    hours: String,
    time_zone: Option<String>,
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
    allow_failed: Option<bool>,
    allow_unsupported: Option<bool>,
}

/// How long a group gathers when its policy names no window.
const DEFAULT_GROUP_WINDOW: Duration = Duration::from_secs(120);
/// How many services a group PR carries when its policy names no maximum.
const DEFAULT_GROUP_MAX: usize = 50;

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
    match value.get("version") {
        None => {}
        Some(v) if v.as_u64() == Some(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(err(
                "version",
                format!(
                    "schema version {v} is not one this tugboat reads; use version: {SCHEMA_VERSION} (see policies/schema.json)"
                ),
            ));
        }
    }
    let raw: RawDoc =
        serde_path_to_error::deserialize(&value).map_err(|e| err(&path_of(&e), explain(&e)))?;
    for (env, raw_env) in &raw.environments {
        build_env(raw_env)
            .map_err(|(field, msg)| err(&format!("environments.{env}.{field}"), msg))?;
    }
    Ok(value)
}

fn path_of(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let p = e.path().to_string();
    // A bad map key shows as `.?`: the map itself is the place to name.
    let p = p.strip_suffix(".?").unwrap_or(&p);
    if p == "." || p.is_empty() {
        "(document)".into()
    } else {
        p.to_owned()
    }
}

/// serde's message, with the nearest known field suggested for an unknown one and the
/// expected format named for dates.
fn explain(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let msg = e.inner().to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        if let Some(best) = known
            .iter()
            .map(|k| (strsim::damerau_levenshtein(field, k), *k))
            .filter(|(d, k)| *d <= 2.max(k.len() / 3))
            .min()
        {
            return format!("{msg}; did you mean `{}`?", best.1);
        }
        return msg;
    }
    if path_of(e).ends_with(".expires") {
        return format!("{msg}; write the expiry as a date, YYYY-MM-DD (e.g. 2026-12-31)");
    }
    msg
}

/// An environment's `windows`, each checked (`windows[i].days` and so on, in errors).
fn windows(raw: &RawEnv) -> Result<Vec<Window>, (String, String)> {
    let mut windows = Vec::new();
    for (i, w) in raw.windows.iter().flatten().enumerate() {
        let at = |f: &str| format!("windows[{i}].{f}");
        let days = window::parse_days(&w.days).map_err(|m| (at("days"), m))?;
        let (start, end) = window::parse_hours(&w.hours).map_err(|m| (at("hours"), m))?;
        let zone = window::parse_zone(w.time_zone.as_deref().unwrap_or("UTC"))
            .map_err(|m| (at("time_zone"), m))?;
        windows.push(Window {
            days,
            start,
            end,
            zone,
        });
    }
    Ok(windows)
}

/// An environment's `tag` rule: its pattern and semver constraint compiled.
fn tag_rule(raw: &RawEnv) -> Result<TagRule, (String, String)> {
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
    Ok(TagRule {
        pattern,
        exclude: t.and_then(|t| t.exclude.clone()).unwrap_or_else(|| {
            DEFAULT_EXCLUDED_TAGS
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        }),
        ordering: t.and_then(|t| t.ordering).unwrap_or_default(),
        constraint,
    })
}

/// A duration field of an environment (`default` when absent).
fn duration(field: &str, v: Option<&str>, default: Duration) -> Result<Duration, (String, String)> {
    match v {
        Some(s) => humantime::parse_duration(s).map_err(|e| {
            (
                field.to_owned(),
                format!("duration '{s}' is invalid ({e}); use e.g. '10m', '90s' or '2h'"),
            )
        }),
        None => Ok(default),
    }
}

fn build_env(raw: &RawEnv) -> Result<EnvPolicy, (String, String)> {
    let tag = tag_rule(raw)?;
    let [health_timeout, degraded_grace, pause_timeout, hook_timeout] = [
        (
            "health_timeout",
            &raw.health_timeout,
            Duration::from_secs(600),
        ),
        (
            "degraded_grace",
            &raw.degraded_grace,
            DEFAULT_DEGRADED_GRACE,
        ),
        ("pause_timeout", &raw.pause_timeout, DEFAULT_PAUSE_TIMEOUT),
        ("hook_timeout", &raw.hook_timeout, DEFAULT_HOOK_TIMEOUT),
    ]
    .map(|(field, v, default)| duration(field, v.as_deref(), default));
    let (health_timeout, degraded_grace) = (health_timeout?, degraded_grace?);
    let (pause_timeout, hook_timeout) = (pause_timeout?, hook_timeout?);
    let soak = duration("soak", raw.soak.as_deref(), Duration::ZERO)?;
    let (checks, checks_settle) = checks(raw)?;
    let windows = windows(raw)?;
    if let Some(a) = raw.application.as_deref()
        && (a.is_empty() || a.len() > 253 || a.contains(char::is_whitespace))
    {
        return Err((
            "application".to_owned(),
            format!("'{a}' is not an Argo CD application name"),
        ));
    }
    let group = match &raw.group {
        Some(g) => {
            let window = duration("group.window", g.window.as_deref(), DEFAULT_GROUP_WINDOW)?;
            let max = g.max.unwrap_or(DEFAULT_GROUP_MAX);
            let rule = super::group::Rule::new(&g.name, window, max).map_err(|m| {
                let (field, msg) = m.split_once(": ").unwrap_or(("group", &m));
                (field.to_owned(), msg.to_owned())
            })?;
            Some(rule)
        }
        None => None,
    };
    let scan_default = ScanPolicy::default();
    let platforms = platforms(raw.platforms.as_deref().unwrap_or_default())?;
    let signatures = signature::build(&raw.signatures.clone().unwrap_or_default())?;
    let s = raw.scan.as_ref();
    Ok(EnvPolicy {
        tag,
        scan: ScanPolicy {
            thresholds: s
                .and_then(|s| s.thresholds.clone())
                .unwrap_or(scan_default.thresholds),
            ignore: s.and_then(|s| s.ignore.clone()).unwrap_or_default(),
            allow_unscanned: s.and_then(|s| s.allow_unscanned).unwrap_or(false),
            allow_failed: s.and_then(|s| s.allow_failed).unwrap_or(false),
            allow_unsupported: s.and_then(|s| s.allow_unsupported).unwrap_or(false),
            platforms,
        },
        auto_merge: raw.auto_merge.unwrap_or(false),
        approvals: raw.approvals.unwrap_or(1),
        approvers: raw.approvers.clone().unwrap_or_default(),
        checks,
        checks_settle,
        health_timeout,
        degraded_grace,
        retry_limit: raw.retry_limit.unwrap_or(DEFAULT_RETRY_LIMIT),
        on_pause: raw.on_pause.unwrap_or_default(),
        pause_timeout,
        hook_timeout,
        pin_digest: raw.pin_digest.unwrap_or(false),
        soak,
        windows,
        rollback: raw.rollback.unwrap_or_default(),
        application: raw.application.clone(),
        sync: raw.sync.unwrap_or(false),
        group,
        mutable_tags: raw.mutable_tags.unwrap_or_default(),
        signatures,
    })
}

/// The checks an environment waits for, each a non-empty name given once, and how long
/// they may take to appear.
type Checks = (Option<Vec<String>>, Duration);

fn checks(env: &RawEnv) -> Result<Checks, (String, String)> {
    let settle = duration(
        "checks_settle",
        env.checks_settle.as_deref(),
        DEFAULT_CHECKS_SETTLE,
    )?;
    let Some(raw) = env.checks.as_deref() else {
        return Ok((None, settle));
    };
    let mut out: Vec<String> = Vec::new();
    for (i, name) in raw.iter().enumerate() {
        if name.is_empty() || name.trim() != name {
            return Err((
                format!("checks[{i}]"),
                format!(
                    "'{name}' is not a check name (a status context or check run name, without surrounding spaces)"
                ),
            ));
        }
        if out.contains(name) {
            return Err((format!("checks[{i}]"), format!("'{name}' is listed twice")));
        }
        out.push(name.clone());
    }
    Ok((Some(out), settle))
}

/// The platforms an environment requires of an image index, each `os/arch[/variant]`.
fn platforms(raw: &[String]) -> Result<Vec<Platform>, (String, String)> {
    let mut out: Vec<Platform> = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let platform = Platform::parse(p).map_err(|m| (format!("platforms[{i}]"), m))?;
        if out.contains(&platform) {
            return Err((format!("platforms[{i}]"), format!("'{p}' is listed twice")));
        }
        out.push(platform);
    }
    Ok(out)
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
    let raw: RawDoc =
        serde_path_to_error::deserialize(&merged).map_err(|e| err(path_of(&e), explain(&e)))?;
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
    fn required_platforms_are_read_and_a_malformed_one_is_refused_naming_its_index() {
        let parse_one =
            |body: &str| resolve(&[doc("/p/defaults", body)], "/p/", "api", &["prod".into()]);
        let ok = "environments:\n  prod:\n    platforms: [linux/amd64, linux/arm64/v8]\n";
        let p = parse_one(ok).unwrap();
        let prod = &p.environments["prod"];
        assert_eq!(
            prod.scan
                .platforms
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["linux/amd64", "linux/arm64/v8"]
        );
        let bad = "environments:\n  prod:\n    platforms: [linux/amd64, arm64]\n";
        let e = parse_one(bad).unwrap_err();
        assert_eq!(e.path, "environments.prod.platforms[1]");
        assert!(e.to_string().contains("'arm64'"), "{e}");
    }

    #[test]
    fn the_checks_a_merge_waits_for_are_read_with_their_settle_time_and_a_bad_name_is_refused() {
        let parse_one =
            |body: &str| resolve(&[doc("/p/defaults", body)], "/p/", "api", &["dev".into()]);
        let p = parse_one("environments:\n  dev: {}\n").unwrap();
        let dev = &p.environments["dev"];
        assert_eq!(dev.checks, None, "by default the branch's rules say");
        assert_eq!(dev.checks_settle, DEFAULT_CHECKS_SETTLE);
        let p = parse_one(
            "environments:\n  dev:\n    checks: [lint, kubeconform]\n    checks_settle: 2m\n",
        )
        .unwrap();
        let dev = &p.environments["dev"];
        assert_eq!(
            dev.checks.as_deref(),
            Some(&["lint".to_owned(), "kubeconform".to_owned()][..])
        );
        assert_eq!(dev.checks_settle, Duration::from_secs(120));
        let e = parse_one("environments:\n  dev:\n    checks: [lint, ' lint']\n").unwrap_err();
        assert_eq!(e.path, "environments.dev.checks[1]");
        assert!(e.to_string().contains("' lint'"), "{e}");
        let e = parse_one("environments:\n  dev:\n    checks: [lint, lint]\n").unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
        let e = parse_one("environments:\n  dev:\n    checks_settle: soon\n").unwrap_err();
        assert_eq!(e.path, "environments.dev.checks_settle");
    }

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
            e.message
                .starts_with("unknown field `auto_merg`, expected one of `tag`, `scan`"),
            "{}",
            e.message
        );
        assert!(
            e.message.ends_with("; did you mean `auto_merge`?"),
            "{}",
            e.message
        );
    }

    /// One document per validation error kind, with the exact path and message.
    #[test]
    fn each_kind_of_bad_document_gets_its_own_precise_error() {
        let cases: &[(&str, &str, &str)] = &[
            ("environments: [", "(document)", "not valid YAML or JSON"),
            (
                "environments: 3",
                "environments",
                "invalid type: integer `3`, expected a map",
            ),
            (
                "environments: {dev: {scan: {thresholdz: {}}}}",
                "environments.dev.scan.thresholdz",
                "did you mean `thresholds`?",
            ),
            (
                "environments: {dev: {scan: {thresholds: {SEVERE: 0}}}}",
                "environments.dev.scan.thresholds",
                "unknown variant `SEVERE`",
            ),
            (
                "environments: {dev: {scan: {ignore: [{id: CVE-1, reason: r, expires: 31/12/2026}]}}}",
                "environments.dev.scan.ignore[0].expires",
                "write the expiry as a date, YYYY-MM-DD",
            ),
            (
                "environments: {dev: {tag: {semver: '>=banana'}}}",
                "environments.dev.tag.semver",
                "constraint '>=banana' is invalid",
            ),
            (
                "environments: {dev: {soak: forever}}",
                "environments.dev.soak",
                "duration 'forever' is invalid",
            ),
            (
                "environments: {dev: {windows: [{days: [MOON], hours: '09:00-17:00'}]}}",
                "environments.dev.windows[0].days",
                "'MOON' is not a day",
            ),
            (
                "environments: {dev: {windows: [{days: [MON], hours: '9-5'}]}}",
                "environments.dev.windows[0].hours",
                "use HH:MM-HH:MM",
            ),
            (
                "environments: {dev: {windows: [{days: [MON], hours: '09:00-17:00', time_zone: Mars/Base}]}}",
                "environments.dev.windows[0].time_zone",
                "not an IANA time zone",
            ),
            (
                "environments: {dev: {rollback: sometimes}}",
                "environments.dev.rollback",
                "unknown variant `sometimes`, expected `auto` or `manual`",
            ),
            (
                "version: 2",
                "version",
                "schema version 2 is not one this tugboat reads",
            ),
            (
                "environments: {dev: {group: {name: Base Image}}}",
                "environments.dev.group.name",
                "'Base Image' must be 1 to 63 lowercase letters",
            ),
            (
                "environments: {dev: {group: {name: base, max: 500}}}",
                "environments.dev.group.max",
                "500 is not between 2 and 100",
            ),
            (
                "environments: {dev: {group: {name: base, window: 2h}}}",
                "environments.dev.group.window",
                "7200s is longer than the most a promotion may wait",
            ),
            (
                "environments: {dev: {group: {window: 2m}}}",
                "environments.dev.group",
                "missing field `name`",
            ),
        ];
        for (body, path, message) in cases {
            let e = parse_document(&doc("/p/defaults", body)).unwrap_err();
            assert_eq!(e.parameter, "/p/defaults");
            assert_eq!(&e.path, path, "{body}: {e}");
            assert!(e.message.contains(message), "{body}: {e}");
        }
    }

    #[test]
    fn windows_soak_rollback_and_sync_are_read() {
        let docs = [doc(
            "/p/defaults",
            "version: 1\nenvironments:\n  prod:\n    soak: 2h\n    rollback: auto\n    sync: true\n    application: salon-prod-api\n    windows:\n    - days: [MON-THU]\n      hours: '09:00-16:00'\n      time_zone: Europe/Stockholm\n    scan: {allow_failed: true}\n",
        )];
        let p = resolve(&docs, "/p/", "api", &["prod".into()]).unwrap();
        let prod = &p.environments["prod"];
        assert_eq!(prod.soak, Duration::from_secs(7200));
        assert_eq!(prod.rollback, RollbackMode::Auto);
        assert!(prod.sync && prod.scan.allow_failed && !prod.scan.allow_unsupported);
        assert_eq!(prod.application.as_deref(), Some("salon-prod-api"));
        assert_eq!(
            prod.windows[0].to_string(),
            "Mon,Tue,Wed,Thu 09:00-16:00 Europe/Stockholm"
        );
    }

    #[test]
    fn a_group_is_read_with_its_window_and_max_and_defaults_to_two_minutes_and_fifty() {
        let docs = [doc(
            "/p/defaults",
            "environments:\n  dev: {group: {name: base-image, window: 5m, max: 80}}\n  staging: {group: {name: base-image}}\n  prod: {}\n",
        )];
        let envs = ["dev".into(), "staging".into(), "prod".into()];
        let p = resolve(&docs, "/p/", "api", &envs).unwrap();
        let dev = p.environments["dev"].group.clone().unwrap();
        assert_eq!(
            (dev.name.as_str(), dev.window.as_secs(), dev.max),
            ("base-image", 300, 80)
        );
        let staging = p.environments["staging"].group.clone().unwrap();
        assert_eq!((staging.window.as_secs(), staging.max), (120, 50));
        assert!(p.environments["prod"].group.is_none(), "grouping is opt-in");
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
