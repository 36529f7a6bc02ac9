//! The doctor's GitHub checks: what the token or App may do in the repository, and what the
//! base branch's protection and rulesets mean for tugboat.

use std::collections::BTreeMap;

use tugboat_core::domain::doctor::{self, Finding, Level};
use tugboat_core::domain::policy::ServicePolicy;

use crate::adapters::github::{Credentials, GitHub};
use crate::adapters::ssm::Ssm;
use crate::app::github_identity;
use crate::config::{CommitVia, Config, GithubAuth};
use crate::ports::{Access, Checks, Conversation};
use crate::telemetry::ApiMetrics;

pub(super) async fn checks(
    cfg: &Config,
    ssm: &Ssm,
    policies: &BTreeMap<String, ServicePolicy>,
    api: &ApiMetrics,
) -> Vec<Finding> {
    let gh = &cfg.github;
    let repository = format!("{}/{}", gh.owner, gh.repo);
    let (_, credentials, app_login) = match github_identity(gh, Some(ssm)).await {
        Ok(x) => x,
        Err(e) => {
            return vec![Finding::new(
                Level::Error,
                "github",
                &repository,
                format!("tugboat cannot authenticate: {e:#}"),
                "check github.token, or [github.app] and the App's installation on the repository",
            )];
        }
    };
    let app = match &credentials {
        Credentials::App(a) => Some(a.clone()),
        Credentials::Token(_) => None,
    };
    let forge = match GitHub::new(
        &gh.api_url,
        credentials,
        &gh.owner,
        &gh.repo,
        &gh.base_branch,
        api,
    )
    .await
    {
        Ok(f) => f.with_login(gh.login.as_deref().or(app_login.as_deref())),
        Err(e) => {
            return vec![Finding::new(
                Level::Error,
                "github",
                &repository,
                e.message,
                "check github.api_url",
            )];
        }
    };
    let envs = || policies.values().flat_map(|p| p.environments.values());
    let mut out = match app {
        Some(app) => match app.granted(&gh.owner, &gh.repo).await {
            Ok(granted) => {
                let teams = envs().any(|e| e.approvers.iter().any(|a| a.contains('/')));
                doctor::app_access(&repository, &granted, teams)
            }
            Err(e) => vec![Finding::new(
                Level::Error,
                "github",
                &repository,
                e.message,
                "check the App's installation on the repository",
            )],
        },
        None => vec![token_access(&forge, &repository).await],
    };
    match forge.rules().await {
        Ok(rules) => {
            let signs = matches!(gh.auth, GithubAuth::App { .. }) && gh.commits == CommitVia::Api;
            out.extend(doctor::branch(&rules, signs, envs().any(|e| e.auto_merge)));
        }
        Err(e) => out.push(Finding::new(
            Level::Error,
            "github",
            format!("branch {}", gh.base_branch),
            format!("its rules cannot be read: {}", e.message),
            "check github.base_branch and the token's read access",
        )),
    }
    out
}

/// A token's login and its permission on the repository.
async fn token_access(forge: &GitHub, repository: &str) -> Finding {
    let login = match forge.me().await {
        Ok(l) => l,
        Err(e) => {
            return Finding::new(
                Level::Error,
                "github",
                repository,
                format!("the token's user cannot be read (GET /user): {}", e.message),
                "check github.token (a token that was revoked or expired is refused)",
            );
        }
    };
    match forge.permission(&login).await {
        Ok(p) => doctor::token_access(repository, &login, p.as_str()),
        Err(e) => Finding::new(
            Level::Error,
            "github",
            repository,
            format!("the permission of {login} cannot be read: {}", e.message),
            "give the token access to the repository",
        ),
    }
}
