//! `tugboat init`: a configuration and a starting policy written from what Argo CD deploys
//! from the GitOps repository. It reads Argo CD's applications and the repository's files
//! (a clone in a temporary directory), places every ECR image reference it can edit
//! (`domain::discover`), and writes nothing remote.
//!
//! What it connects with comes as the configuration takes it: the flags, and any key from
//! its `TUGBOAT_*` variable (`TUGBOAT_AWS_ENDPOINT_URL`, `TUGBOAT_GITHUB_API_URL`, …); all
//! of it is written into the configuration beside the services found.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tugboat_core::domain::discover::{self, Discovery, Unplaced};

use crate::adapters::argocd::same_repository;
use crate::adapters::{aws, git::Git, ssm::Ssm};
use crate::app::{argo_cd, github_identity};
use crate::config::{Config, Connection, GithubAuth, SecretRef};
use crate::ports::GitOpsRepo;
use crate::telemetry::ApiMetrics;

mod render;

/// What the command line gives `init`.
#[derive(Debug, Default, Clone)]
pub struct Args {
    /// Argo CD's address (`argocd.url`).
    pub argocd: Option<String>,
    /// The GitOps repository, `owner/name` (`github.repository`).
    pub repo: Option<String>,
    /// `env:NAME`, `file:PATH` or `ssm:/parameter` (`argocd.token`).
    pub argocd_token: Option<String>,
    /// As `argocd_token`, for `github.token`.
    pub github_token: Option<String>,
}

/// What `init` found and would write.
pub struct Init {
    pub discovery: Discovery,
    /// How many applications Argo CD listed.
    pub applications: usize,
    /// The configuration file's text; `None` when no service was found.
    pub config: Option<String>,
    /// The starting policy document.
    pub policy: String,
    /// Where the policy goes in SSM.
    pub policy_parameter: String,
    /// How long reading and discovering took.
    pub took: Duration,
}

/// Discover the services and render the files; `env` is the process's environment.
pub async fn run(args: &Args, env: Vec<(String, String)>) -> anyhow::Result<Init> {
    let started = Instant::now();
    let mut table = table(args, env)?;
    let conn = Config::connection(&table, "tugboat init").map_err(|e| anyhow::anyhow!("{e}"))?;
    let ssm = match &conn.aws {
        Some(a) => Some(Ssm::new(&aws::sdk_config(a).await, &ApiMetrics::default())),
        None => {
            refuse_ssm_without_region(&conn)?;
            None
        }
    };
    let (apps, files) = read(&conn, ssm.as_ref()).await?;
    let mut discovery = discover::discover(&apps, &files, &conn.github.base_branch);
    fill(&mut table, &mut discovery, &conn);
    let policy_parameter = format!(
        "{}defaults",
        table["policy"]["ssm_path"].as_str().unwrap_or_default()
    );
    let config = if discovery.services.is_empty() {
        None
    } else {
        let text = render::config(&table, &discovery);
        Config::parse(&text, "the written tugboat.toml", Vec::new())
            .map_err(|e| anyhow::anyhow!("init wrote a configuration that does not load: {e}"))?;
        Some(text)
    };
    Ok(Init {
        applications: apps.len(),
        policy: render::policy(&discovery.order, &policy_parameter),
        discovery,
        config,
        policy_parameter,
        took: started.elapsed(),
    })
}

/// The configuration's connection tables: the `TUGBOAT_*` variables of `env`, then the flags.
fn table(args: &Args, env: Vec<(String, String)>) -> anyhow::Result<toml::Table> {
    use toml::Value;
    let mut t = toml::Table::new();
    crate::config::env::apply(&mut t, env).map_err(|e| anyhow::anyhow!("{e}"))?;
    fn set(t: &mut toml::Table, section: &str, key: &str, v: Value) {
        let s = t
            .entry(section)
            .or_insert_with(|| Value::Table(toml::Table::new()));
        if let Some(s) = s.as_table_mut() {
            s.insert(key.to_owned(), v);
        }
    }
    if let Some(url) = &args.argocd {
        set(&mut t, "argocd", "url", Value::String(url.clone()));
    }
    if let Some(repo) = &args.repo {
        set(&mut t, "github", "repository", Value::String(repo.clone()));
    }
    if let Some(r) = &args.argocd_token {
        set(&mut t, "argocd", "token", reference(r, "--argocd-token")?);
    }
    if let Some(r) = &args.github_token {
        set(&mut t, "github", "token", reference(r, "--github-token")?);
    }
    let has = |t: &toml::Table, s: &str, k: &str| t.get(s).and_then(|x| x.get(k)).is_some();
    if !has(&t, "argocd", "token") {
        set(
            &mut t,
            "argocd",
            "token",
            reference("env:ARGOCD_AUTH_TOKEN", "")?,
        );
    }
    if !has(&t, "github", "token") && !has(&t, "github", "app") {
        set(
            &mut t,
            "github",
            "token",
            reference("env:GITHUB_TOKEN", "")?,
        );
    }
    for (section, key, flag) in [
        ("argocd", "url", "--argocd"),
        ("github", "repository", "--repo"),
    ] {
        if !has(&t, section, key) {
            anyhow::bail!("give {flag} (or set {section}.{key} by its TUGBOAT_* variable)");
        }
    }
    Ok(t)
}

/// A secret reference as the command line spells it: `env:NAME`, `file:PATH`, `ssm:/name`.
fn reference(text: &str, flag: &str) -> anyhow::Result<toml::Value> {
    let (kind, at) = text
        .split_once(':')
        .filter(|(k, at)| matches!(*k, "env" | "file" | "ssm") && !at.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{flag}: '{}' is no secret reference; give env:NAME, file:PATH or ssm:/parameter (the secret itself never goes on the command line)",
                text.chars().take(12).collect::<String>()
            )
        })?;
    let mut r = toml::Table::new();
    r.insert(kind.to_owned(), toml::Value::String(at.to_owned()));
    Ok(toml::Value::Table(r))
}

/// A secret in SSM needs a region to be read.
fn refuse_ssm_without_region(conn: &Connection) -> anyhow::Result<()> {
    let mut refs = vec![("argocd.token", &conn.argocd.token)];
    match &conn.github.auth {
        GithubAuth::Token(r) => refs.push(("github.token", r)),
        GithubAuth::App { private_key, .. } => refs.push(("github.app.private_key", private_key)),
    }
    if let Some((key, SecretRef::Ssm(p))) =
        refs.iter().find(|(_, r)| matches!(r, SecretRef::Ssm(_)))
    {
        anyhow::bail!(
            "{key} is the SSM parameter {p}: give the region to read it from (TUGBOAT_AWS_REGION)"
        );
    }
    Ok(())
}

/// The applications Argo CD lists, and the repository's files they render.
async fn read(
    conn: &Connection,
    ssm: Option<&Ssm>,
) -> anyhow::Result<(
    Vec<discover::Application>,
    std::collections::BTreeMap<String, String>,
)> {
    let api = ApiMetrics::default();
    let argo = argo_cd(&conn.argocd, ssm, &api).await?;
    let (owner, repo) = (&conn.github.owner, &conn.github.repo);
    let apps = argo
        .applications(|url| same_repository(url, owner, repo))
        .await
        .map_err(|e| anyhow::anyhow!("listing Argo CD's applications: {}", e.message))?;
    let (token, _, _) = github_identity(&conn.github, ssm).await?;
    let work = tempfile::tempdir().context("making a directory for the clone")?;
    let git = Git::open(
        &Git::clone_dir(work.path()),
        &conn.github.clone_url,
        &conn.github.base_branch,
        Arc::clone(&token),
        &api,
    )
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    git.sync().await.map_err(|e| {
        anyhow::anyhow!(
            "reading {owner}/{repo} ({}): {}",
            conn.github.clone_url,
            e.message
        )
    })?;
    let files = git
        .manifests(discover::wanted(&apps))
        .await
        .map_err(|e| anyhow::anyhow!("reading {owner}/{repo}: {}", e.message))?;
    Ok((apps, files))
}

/// Complete the tables with what discovery says: the region and registry most services are
/// in, and the policy's path; a service in another region is not placed (one configuration
/// watches one region).
fn fill(table: &mut toml::Table, d: &mut Discovery, conn: &Connection) {
    use toml::Value;
    let mut count = std::collections::BTreeMap::new();
    for s in &d.services {
        *count
            .entry((s.ecr.region.clone(), s.ecr.account.clone()))
            .or_insert(0) += 1;
    }
    let common = count.into_iter().max_by_key(|(_, n)| *n).map(|(k, _)| k);
    let section = |t: &mut toml::Table, name: &str| -> toml::Table {
        t.remove(name)
            .and_then(|v| v.as_table().cloned())
            .unwrap_or_default()
    };
    let mut aws = section(table, "aws");
    if let Some((region, account)) = common {
        aws.entry("region").or_insert(Value::String(region));
        aws.entry("registry_id").or_insert(Value::String(account));
    }
    let region = aws
        .get("region")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    d.services.retain(|s| {
        let keep = region.is_empty() || s.ecr.region == region;
        if !keep {
            d.unplaced.push(Unplaced {
                what: format!("service {}", s.name),
                why: format!(
                    "its repository is in {}, and this configuration watches {region} (aws.region)",
                    s.ecr.region
                ),
            });
        }
        keep
    });
    if !aws.is_empty() {
        table.insert("aws".into(), Value::Table(aws));
    }
    let mut policy = section(table, "policy");
    policy.entry("ssm_path").or_insert(Value::String(format!(
        "/tugboat/{}/{}/policy/",
        conn.github.owner, conn.github.repo
    )));
    table.insert("policy".into(), Value::Table(policy));
}

/// What `init` found, for people.
pub fn summary(init: &Init) -> String {
    render::summary(init)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args {
            argocd: Some("https://argocd.example.com".into()),
            repo: Some("salon/salon-gitops".into()),
            ..Args::default()
        }
    }

    #[test]
    fn tokens_default_to_the_variables_their_clis_read_and_flags_win_over_the_environment() {
        let t = table(&args(), vec![]).unwrap();
        assert_eq!(
            t["argocd"]["token"]["env"].as_str(),
            Some("ARGOCD_AUTH_TOKEN")
        );
        assert_eq!(t["github"]["token"]["env"].as_str(), Some("GITHUB_TOKEN"));
        let env = vec![
            (
                "TUGBOAT_ARGOCD_URL".to_owned(),
                "https://from-env".to_owned(),
            ),
            (
                "TUGBOAT_AWS_ENDPOINT_URL".to_owned(),
                "http://127.0.0.1:1".to_owned(),
            ),
        ];
        let mut a = args();
        a.argocd_token = Some("file:/run/argocd-token".into());
        let t = table(&a, env).unwrap();
        assert_eq!(
            t["argocd"]["url"].as_str(),
            Some("https://argocd.example.com")
        );
        assert_eq!(
            t["argocd"]["token"]["file"].as_str(),
            Some("/run/argocd-token")
        );
        assert_eq!(
            t["aws"]["endpoint_url"].as_str(),
            Some("http://127.0.0.1:1")
        );
    }

    #[test]
    fn an_app_from_the_environment_replaces_the_default_token() {
        let env = vec![
            ("TUGBOAT_GITHUB_APP_ID".to_owned(), "42".to_owned()),
            (
                "TUGBOAT_GITHUB_APP_PRIVATE_KEY_FILE".to_owned(),
                "/k.pem".to_owned(),
            ),
        ];
        let t = table(&args(), env).unwrap();
        assert!(t["github"].get("token").is_none());
        assert_eq!(t["github"]["app"]["id"].as_integer(), Some(42));
    }

    #[test]
    fn a_secret_on_the_command_line_is_refused_without_being_repeated() {
        let mut a = args();
        a.github_token = Some("ghp_0123456789abcdefghijklmnopqrstuvwxyz".into()); // pragma: allowlist secret
        let e = table(&a, vec![]).unwrap_err().to_string();
        assert!(e.contains("--github-token"), "{e}");
        assert!(e.contains("env:NAME, file:PATH or ssm:/parameter"), "{e}");
        assert!(!e.contains("abcdefghij"), "{e}");
    }

    #[test]
    fn a_missing_address_names_its_flag() {
        let mut a = args();
        a.argocd = None;
        let e = table(&a, vec![]).unwrap_err().to_string();
        assert!(e.contains("--argocd"), "{e}");
    }

    #[test]
    fn an_ssm_token_without_a_region_says_which_variable_gives_one() {
        let mut a = args();
        a.argocd_token = Some("ssm:/salon/argocd-token".into());
        let t = table(&a, vec![]).unwrap();
        let conn = Config::connection(&t, "x").unwrap();
        let e = refuse_ssm_without_region(&conn).unwrap_err().to_string();
        assert!(
            e.contains("argocd.token is the SSM parameter /salon/argocd-token"),
            "{e}"
        );
        assert!(e.contains("TUGBOAT_AWS_REGION"), "{e}");
    }
}
