//! `tugboat doctor`: every check a first cycle depends on, one finding each, judged in
//! `domain::doctor`. It is read-only: it builds its own adapters from the configuration (no
//! clone of the repository, no seal key made; no branch, PR, label, issue or comment), reads
//! and judges; only `--send-test` sends something (a test notification to each sink). Each
//! system's checks are bounded in time, so a system that does not answer is an error, never
//! a hang.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tugboat_core::domain::doctor::{Finding, Level};
use tugboat_core::domain::policy::ServicePolicy;

use crate::adapters::{aws as sdk, ecr::Ecr, ssm::Ssm};
use crate::config::{Config, GithubAuth, SecretRef};
use crate::credentials::{Rotating, SSM_REFRESH};
use crate::ports::{ErrorKind, ParameterStore};
use crate::telemetry::ApiMetrics;

mod argocd;
mod aws;
mod github;
mod runtime;

/// How long one system's checks may take.
const BOUND: Duration = Duration::from_secs(30);

/// Every finding, system by system: secrets, the policy, ECR, GitHub, Argo CD, the event
/// queue, the Lease and the sinks; `send_test`: deliver a test notification to each sink
/// (the one thing the doctor sends).
pub async fn run(cfg: &Config, send_test: bool) -> Vec<Finding> {
    let api = ApiMetrics::default();
    let conf = sdk::sdk_config(&cfg.aws).await;
    let ssm = Ssm::new(&conf, &api);
    let mut out = bounded("secrets", secrets(cfg, &ssm)).await;
    let (policy, policies) = match tokio::time::timeout(BOUND, aws::policy(cfg, &ssm)).await {
        Ok(done) => done,
        Err(_) => (vec![timed_out("ssm")], BTreeMap::new()),
    };
    out.extend(policy);
    let ecr = Ecr::new(&conf, &api);
    let (findings, scan_type) =
        match tokio::time::timeout(BOUND, aws::ecr(cfg, &ecr, &policies)).await {
            Ok(done) => done,
            Err(_) => (vec![timed_out("ecr")], None),
        };
    out.extend(findings);
    match crate::app::registry(cfg, &conf, &api) {
        Ok(registry) => {
            out.extend(bounded("signatures", aws::signatures(&ssm, &registry, &policies)).await)
        }
        Err(e) => out.push(Finding::new(
            Level::Error,
            "signatures",
            "registry API",
            e.to_string(),
            "check aws.registry_url",
        )),
    }
    out.extend(bounded("github", github::checks(cfg, &ssm, &policies, &api)).await);
    out.extend(bounded("argocd", argocd::checks(cfg, &ssm, &policies, &api)).await);
    out.extend(
        bounded(
            "events",
            runtime::events(cfg, &conf, &api, scan_type.as_deref()),
        )
        .await,
    );
    out.extend(bounded("election", runtime::election(cfg, &api)).await);
    out.extend(bounded("notify", runtime::sinks(cfg, send_test)).await);
    out
}

/// `{"version": 1, "exit": N, "findings": […]}`: what `--output json` prints.
pub fn json(findings: &[Finding]) -> serde_json::Value {
    serde_json::json!({
        "version": 1,
        "exit": tugboat_core::domain::doctor::exit_code(findings),
        "findings": findings,
    })
}

async fn bounded(area: &str, checks: impl Future<Output = Vec<Finding>>) -> Vec<Finding> {
    tokio::time::timeout(BOUND, checks)
        .await
        .unwrap_or_else(|_| vec![timed_out(area)])
}

fn timed_out(area: &str) -> Finding {
    Finding::new(
        Level::Error,
        area,
        "(all)",
        format!("no answer within {}s", BOUND.as_secs()),
        "check the address, the network path and the system's health; `tugboat doctor` again",
    )
}

/// Each secret the configuration references can be read (its value never shown). The seal
/// key may not exist yet: the first `tugboat run` makes it.
async fn secrets(cfg: &Config, ssm: &Ssm) -> Vec<Finding> {
    let mut refs: Vec<(String, &SecretRef)> = vec![("argocd.token".into(), &cfg.argocd.token)];
    match &cfg.github.auth {
        GithubAuth::Token(r) => refs.push(("github.token".into(), r)),
        GithubAuth::App { private_key, .. } => {
            refs.push(("github.app.private_key".into(), private_key));
        }
    }
    if let Some(r) = &cfg.github.webhook_secret {
        refs.push(("github.webhook_secret".into(), r));
    }
    for s in cfg.notify.iter().flat_map(|n| &n.sinks) {
        refs.push((format!("notify.sinks.{}.url", s.name), &s.url));
        if let Some(r) = &s.secret {
            refs.push((format!("notify.sinks.{}.secret", s.name), r));
        }
    }
    let store: std::sync::Arc<dyn ParameterStore> = std::sync::Arc::new(ssm.clone());
    let mut out = Vec::new();
    for (key, r) in refs {
        let read = Rotating::read(r.clone(), key.clone(), Some(store.clone()), SSM_REFRESH).await;
        out.push(match read {
            Ok(_) => Finding::ok("config", &key, format!("readable ({})", where_(r))),
            Err(e) => Finding::new(
                Level::Error,
                "config",
                &key,
                e.message,
                format!("make {} readable by tugboat", where_(r)),
            ),
        });
    }
    out.push(state_key(cfg, ssm).await);
    out
}

fn where_(r: &SecretRef) -> String {
    match r {
        SecretRef::Env(n) => format!("environment variable {n}"),
        SecretRef::File(p) => format!("file {}", p.display()),
        SecretRef::Ssm(p) => format!("SSM parameter {p}"),
    }
}

/// The seal key: readable, or not made yet (the first `tugboat run` makes it in SSM).
async fn state_key(cfg: &Config, ssm: &Ssm) -> Finding {
    let key = "github.state_key";
    let SecretRef::Ssm(name) = &cfg.github.state_key else {
        return match crate::config::read_local_secret(&cfg.github.state_key, |n| {
            std::env::var(n).ok()
        }) {
            Ok(_) => Finding::ok(
                "config",
                key,
                format!("readable ({})", where_(&cfg.github.state_key)),
            ),
            Err(e) => Finding::new(
                Level::Error,
                "config",
                key,
                e,
                "make the seal key readable by tugboat",
            ),
        };
    };
    match ssm.secret(name).await {
        Ok(_) => Finding::ok("config", key, format!("readable (SSM parameter {name})")),
        Err(e) if e.kind == ErrorKind::NotFound => Finding::ok(
            "config",
            key,
            format!(
                "SSM parameter {name} does not exist yet: the first `tugboat run` makes it (ssm:PutParameter on it)"
            ),
        ),
        Err(e) => Finding::new(
            Level::Error,
            "config",
            key,
            format!("SSM parameter {name}: {}", e.message),
            format!("give tugboat's role ssm:GetParameter and ssm:PutParameter on {name}"),
        ),
    }
}

/// The policy of `service` in `env`, when it resolved.
pub(super) fn env_policy<'a>(
    policies: &'a BTreeMap<String, ServicePolicy>,
    service: &str,
    env: &str,
) -> Option<&'a tugboat_core::domain::policy::EnvPolicy> {
    policies.get(service)?.environments.get(env)
}
