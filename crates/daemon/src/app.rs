//! Wiring: turn a validated [`Config`] into the engine's ports, resolving secrets on the way.

use std::sync::Arc;

use anyhow::Context;

use crate::adapters::github_app::{GitHubApp, Installation};
use crate::adapters::oci::OciRegistry;
use crate::adapters::{
    argocd::{ArgoCd, ArgoOptions},
    aws,
    ecr::Ecr,
    git::{Git, Tenancy},
    github::{Credentials, GitHub, WriteBudget},
    ssm::Ssm,
};
use crate::clock::{Clock, SystemClock};
use crate::config::{CommitVia, Config, GithubAuth, GithubConfig, SecretRef};
use crate::credentials::{PolicyKeys, Rotating, SSM_REFRESH, Token};
use crate::engine::Ports;
use crate::ports::{ErrorKind, ParameterStore};
use crate::telemetry::ApiMetrics;
use crate::trust::{ForgeryLog, KeyRing};

/// A secret read from its reference, and read again when it rotates (`credentials`).
/// Without `ssm`, a secret in SSM cannot be read (`tugboat init` before a region is known).
pub(crate) async fn rotating(
    r: &SecretRef,
    what: &'static str,
    ssm: Option<&Ssm>,
) -> anyhow::Result<Arc<Rotating>> {
    let store = ssm.map(|s| Arc::new(s.clone()) as Arc<dyn ParameterStore>);
    Rotating::read(r.clone(), what, store, SSM_REFRESH)
        .await
        .map(Arc::new)
        .map_err(|e| anyhow::anyhow!("{}", e.message))
}

/// Argo CD's client from `[argocd]`, its token read through `ssm` when it is kept there (and
/// read again when it rotates).
pub(crate) async fn argo_cd(
    argocd: &crate::config::ArgoConfig,
    ssm: Option<&Ssm>,
    api: &ApiMetrics,
) -> anyhow::Result<ArgoCd> {
    let token = rotating(&argocd.token, "argocd.token", ssm).await?;
    let options = ArgoOptions {
        ca_bundle: argocd.ca_bundle.clone(),
        hard_refresh: argocd.hard_refresh,
    };
    Ok(ArgoCd::new(&argocd.url, token, &options, api)?)
}

/// What tugboat sends GitHub: the token (git and REST), or the App (its installation tokens
/// for git, its client for REST); and, for an App, the login its actions show.
pub(crate) async fn github_identity(
    github: &GithubConfig,
    ssm: Option<&Ssm>,
) -> anyhow::Result<(Arc<dyn Token>, Credentials, Option<String>)> {
    match &github.auth {
        GithubAuth::Token(r) => {
            let token: Arc<dyn Token> = rotating(r, "github.token", ssm).await?;
            Ok((Arc::clone(&token), Credentials::Token(token), None))
        }
        GithubAuth::App {
            id,
            private_key,
            installation_id,
        } => {
            let key = rotating(private_key, "github.app.private_key", ssm).await?;
            let app = GitHubApp::connect(
                *id,
                key,
                Installation {
                    api_url: &github.api_url,
                    owner: &github.owner,
                    repo: &github.repo,
                    id: *installation_id,
                },
            )
            .await
            .map_err(anyhow::Error::new)?;
            let login = app.login();
            let app = Arc::new(app);
            Ok((app.clone(), Credentials::App(app), Some(login)))
        }
    }
}

/// Build the production adapters for `cfg`; every request they send is counted into `api`.
pub async fn ports(cfg: &Config, api: &ApiMetrics) -> anyhow::Result<Ports> {
    ports_on(cfg, api, Arc::new(SystemClock)).await
}

/// Whether `e` is an outside system failing for now (a 5xx, a cut connection, a rate
/// limit), which a later attempt may get past, rather than a refusal or a mistake in the
/// configuration, which it will not.
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<crate::ports::PortError>())
        .any(|p| matches!(p.kind, ErrorKind::Transient | ErrorKind::Throttled))
}

/// The adapters of a daemon (`tugboat run`), which must own its working directory: two
/// daemons on one clone would each repair what the other is using. A `plan` or `once` run
/// beside a daemon shares the clone as a guest instead ([`ports`]).
pub async fn owned_ports(cfg: &Config, api: &ApiMetrics) -> anyhow::Result<Ports> {
    let (ports, tenancy) = build(cfg, api, Arc::new(SystemClock)).await?;
    if let Some(owner) = tenancy.guest_of {
        anyhow::bail!(
            "engine.workdir {}: another running tugboat ({owner}) owns the clone there (it holds \
             the lock on {}); give each replica its own working directory",
            cfg.engine.workdir.display(),
            crate::adapters::git::owner_file(&Git::clone_dir(&cfg.engine.workdir)).display()
        );
    }
    Ok(ports)
}

/// The adapters, stamping commits from `clock` (the one the engine reads, so that a test's
/// sandbox, adapters and engine share one time of day).
pub async fn ports_on(
    cfg: &Config,
    api: &ApiMetrics,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Ports> {
    Ok(build(cfg, api, clock).await?.0)
}

/// The adapters, and this process's standing in the working directory's clone.
async fn build(
    cfg: &Config,
    api: &ApiMetrics,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Ports, Tenancy)> {
    let sdk = aws::sdk_config(&cfg.aws).await;
    let ssm = Ssm::new(&sdk, api);
    let keys = Arc::new(KeyRing::new(
        cfg.github.state_key.clone(),
        Arc::new(ssm.clone()),
        Arc::clone(&clock),
    ));
    let forged = Arc::new(ForgeryLog::default());
    let (gh_token, gh_credentials, app_login) = github_identity(&cfg.github, Some(&ssm)).await?;
    let argo = argo_cd(&cfg.argocd, Some(&ssm), api).await?;
    let git = Git::open(
        &Git::clone_dir(&cfg.engine.workdir),
        &cfg.github.clone_url,
        &cfg.github.base_branch,
        gh_token.clone(),
        api,
    )
    .context("opening the local clone of the GitOps repository")?
    .with_clock(clock)
    .with_trust(Arc::clone(&keys), Arc::clone(&forged));
    let tenancy = git.tenancy().clone();
    let budget = WriteBudget::new(cfg.github.writes_per_minute, cfg.github.writes_per_hour);
    api.watch_budget(Arc::new(budget.clone()));
    let forge = GitHub::new(
        &cfg.github.api_url,
        gh_credentials,
        &cfg.github.owner,
        &cfg.github.repo,
        &cfg.github.base_branch,
        api,
    )
    .await?
    .with_merge_method(cfg.github.merge_method)
    .with_login(cfg.github.login.as_deref().or(app_login.as_deref()))
    .with_write_budget(budget);
    let forge = Arc::new(forge);
    let git = match cfg.github.commits {
        CommitVia::Api => git.with_commit_api(forge.clone()),
        CommitVia::Push => git,
    };
    Ok((
        Ports {
            registry: Arc::new(Ecr::new(&sdk, api)),
            params: Arc::new(ssm.clone()),
            repo: Arc::new(git.clone()),
            ledger: Arc::new(git),
            signatures: Arc::new(registry(cfg, &sdk, api)?),
            public_keys: Arc::new(PolicyKeys::new(Arc::new(ssm.clone()), SSM_REFRESH)),
            forge,
            deployer: Arc::new(argo),
            keys,
            forged,
        },
        tenancy,
    ))
}

/// ECR's registry API, where `aws.registry_url` says if it does.
pub fn registry(
    cfg: &Config,
    sdk: &aws_config::SdkConfig,
    api: &ApiMetrics,
) -> anyhow::Result<OciRegistry> {
    let oci = OciRegistry::new(sdk, api).map_err(anyhow::Error::msg)?;
    Ok(match &cfg.aws.registry_url {
        Some(url) => oci.at(url),
        None => oci,
    })
}

/// The GitHub webhook secret, when the config enables webhooks; read again when it rotates.
pub async fn webhook_secret(cfg: &Config) -> anyhow::Result<Option<Arc<Rotating>>> {
    let Some(r) = &cfg.github.webhook_secret else {
        return Ok(None);
    };
    let sdk = aws::sdk_config(&cfg.aws).await;
    let ssm = Ssm::new(&sdk, &ApiMetrics::default());
    rotating(r, "github.webhook_secret", Some(&ssm))
        .await
        .map(Some)
}

/// The notification sinks of `[notify]`, each with its filter; their URLs and secrets read
/// (and read again when they rotate) like the tokens.
pub async fn notification_routes(cfg: &Config) -> anyhow::Result<Vec<crate::notify::Route>> {
    use crate::adapters::notify::HttpSink;
    use crate::config::SinkKind;
    let Some(notify) = &cfg.notify else {
        return Ok(Vec::new());
    };
    let sdk = aws::sdk_config(&cfg.aws).await;
    let ssm: Arc<dyn ParameterStore> = Arc::new(Ssm::new(&sdk, &ApiMetrics::default()));
    let read = |r: &SecretRef, name: String| {
        let ssm = ssm.clone();
        let r = r.clone();
        async move {
            Rotating::read(r, name, Some(ssm), SSM_REFRESH)
                .await
                .map(Arc::new)
                .map_err(|e| anyhow::anyhow!("{}", e.message))
        }
    };
    let mut routes = Vec::new();
    for s in &notify.sinks {
        let url = read(&s.url, format!("notify.sinks.{}.url", s.name)).await?;
        let sink = match (s.kind, &s.secret) {
            (SinkKind::Webhook, Some(secret)) => {
                let secret = read(secret, format!("notify.sinks.{}.secret", s.name)).await?;
                HttpSink::webhook(&s.name, url, secret)
            }
            _ => HttpSink::slack(&s.name, url),
        }
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        routes.push(crate::notify::Route {
            sink: Arc::new(sink),
            filter: s.filter.clone(),
        });
    }
    Ok(routes)
}

/// The SQS queue of ECR and Inspector events, when the config has an `[events]` section.
pub async fn event_queue(
    cfg: &Config,
    api: &ApiMetrics,
) -> Option<Arc<dyn crate::ports::EventQueue>> {
    let events = cfg.events.as_ref()?;
    let sdk = aws::sdk_config(&cfg.aws).await;
    Some(Arc::new(crate::adapters::sqs::Sqs::new(
        &sdk,
        &events.queue_url,
        api,
    )))
}

/// Install the process-wide rustls crypto provider (once; later calls are no-ops).
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The leader election's lease, through kube-rs.
pub async fn lease(
    e: &crate::config::ElectionConfig,
    api: &ApiMetrics,
) -> anyhow::Result<Arc<dyn crate::ports::Election>> {
    use crate::adapters::lease::KubeLease;
    let client = KubeLease::client(e.api_url.as_deref())
        .await
        .context("connecting to the Kubernetes API server for leader election")?;
    Ok(Arc::new(KubeLease::new(
        client,
        &e.namespace,
        &e.lease,
        api,
    )))
}
