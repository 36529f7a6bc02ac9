//! The doctor's Argo CD checks: each environment's application exists, deploys the
//! configured files from the GitOps repository's base branch, lists its images, and may be
//! synced by the token where tugboat must sync it.

use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use tugboat_core::domain::doctor::{self, AppFacts, Finding, Level};
use tugboat_core::domain::policy::ServicePolicy;

use super::env_policy;
use crate::adapters::argocd::{ArgoCd, same_repository};
use crate::adapters::ssm::Ssm;
use crate::app::argo_cd;
use crate::config::{Config, EnvConfig, ServiceConfig};
use crate::ports::ErrorKind;
use crate::telemetry::ApiMetrics;

/// Applications checked at once.
const AT_ONCE: usize = 8;

pub(super) async fn checks(
    cfg: &Config,
    ssm: &Ssm,
    policies: &BTreeMap<String, ServicePolicy>,
    api: &ApiMetrics,
) -> Vec<Finding> {
    let refused = |fact: String| {
        vec![Finding::new(
            Level::Error,
            "argocd",
            &cfg.argocd.url,
            fact,
            "check argocd.url, argocd.token and argocd.ca_bundle",
        )]
    };
    let argo = match argo_cd(&cfg.argocd, Some(ssm), api).await {
        Ok(a) => a,
        Err(e) => return refused(format!("{e:#}")),
    };
    let envs: Vec<(&ServiceConfig, &EnvConfig)> = cfg
        .services
        .iter()
        .flat_map(|s| s.environments.iter().map(move |e| (s, e)))
        .collect();
    futures_util::stream::iter(envs)
        .map(|(s, e)| one(cfg, &argo, policies, s, e))
        .buffered(AT_ONCE)
        .collect::<Vec<Vec<Finding>>>()
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// One environment's application.
async fn one(
    cfg: &Config,
    argo: &ArgoCd,
    policies: &BTreeMap<String, ServicePolicy>,
    s: &ServiceConfig,
    e: &EnvConfig,
) -> Vec<Finding> {
    let gh = &cfg.github;
    let policy = env_policy(policies, &s.name, &e.name);
    let name = policy
        .and_then(|p| p.application.clone())
        .unwrap_or_else(|| e.argocd_application.clone());
    let subject = format!("{}/{}", s.name, e.name);
    let at = format!("{name} ({subject})");
    let described = match argo
        .describe(&name, |u| same_repository(u, &gh.owner, &gh.repo))
        .await
    {
        Ok(d) => d,
        Err(err) => return vec![unreadable(&at, &name, &err)],
    };
    let may_sync = argo
        .can_i("sync", &described.project, &name)
        .await
        .map_err(|e| e.message);
    let facts = AppFacts {
        subject,
        name,
        project: described.project,
        source: described.app.source,
        files: e.files.clone(),
        branch: gh.base_branch.clone(),
        images_listed: !described.app.images.is_empty(),
        automated: described.automated,
        may_sync,
        policy_syncs: policy.is_some_and(|p| p.sync),
    };
    doctor::application(&facts, &format!("{}/{}", gh.owner, gh.repo))
}

fn unreadable(at: &str, name: &str, err: &crate::ports::PortError) -> Finding {
    let fix = match err.kind {
        ErrorKind::NotFound => {
            "check argocd_application (or the policy's `application`): `argocd app list` names them"
                .to_owned()
        }
        ErrorKind::Denied => format!(
            "grant tugboat's Argo CD account `applications, get, <project>/{name}` (and `sync` where it must sync)"
        ),
        _ => "check argocd.url and Argo CD's health".to_owned(),
    };
    Finding::new(Level::Error, "argocd", at, err.message.clone(), fix)
}
