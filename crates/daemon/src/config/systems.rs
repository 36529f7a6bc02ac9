//! The sections of the systems tugboat talks to and runs as: `[aws]`, `[policy]`, `[argocd]`, `[engine]`, `[server]` and `[election]`.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAws {
    pub(super) region: String,
    pub(super) registry_id: Option<String>,
    pub(super) endpoint_url: Option<String>,
    pub(super) registry_url: Option<String>,
    #[serde(default)]
    pub(super) test_credentials: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) ssm_path: String,
    #[serde(default, with = "humantime_serde")]
    pub(super) refresh: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArgo {
    pub(super) url: String,
    pub(super) token: SecretRef,
    #[serde(default, with = "humantime_serde")]
    pub(super) poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) refresh_interval: Option<Duration>,
    pub(super) watch: Option<bool>,
    pub(super) ca_bundle: Option<PathBuf>,
    #[serde(default)]
    pub(super) refresh: Refresh,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEngine {
    #[serde(default, with = "humantime_serde")]
    pub(super) interval: Option<Duration>,
    pub(super) workdir: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub(super) scan_wait: Option<Duration>,
    pub(super) concurrency: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
}

/// `[election]`: leader election with a Kubernetes Lease (off unless enabled).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawElection {
    #[serde(default)]
    pub(super) enabled: bool,
    pub(super) lease: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) identity: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub(super) lease_duration: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) renew_deadline: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) retry_period: Option<Duration>,
    pub(super) api_url: Option<String>,
    pub(super) address: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub region: String,
    pub registry_id: Option<String>,
    /// An emulator's endpoint (moto, the sandbox); unset for real AWS.
    pub endpoint_url: Option<String>,
    /// ECR's registry API (signatures) at another address than the `proxyEndpoint`
    /// `GetAuthorizationToken` names: an interface VPC endpoint's own DNS name.
    pub registry_url: Option<String>,
    /// Use fixed dummy credentials (emulators only).
    pub test_credentials: bool,
}

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// SSM path prefix, always ending in `/`.
    pub ssm_path: String,
    pub refresh: Duration,
}

/// How often a verification asks Argo CD for a refresh by default. One refresh after the
/// merge is what moves the comparison to it where Argo CD has no Git webhook (its own
/// reconciliation comes every `timeout.reconciliation`, 120 s by default); health and
/// operation progress reach the status without one, as the controller watches the cluster.
/// Each refresh makes the controller compare the application to Git again: a minute between
/// them keeps a fleet's verifications from becoming a refresh storm on a shared Argo CD.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct ArgoConfig {
    pub url: String,
    pub token: SecretRef,
    pub poll_interval: Duration,
    /// A verification asks Argo CD to refresh an application (`?refresh=`, which waits for the
    /// controller to compare it to Git again) at most this often; the looks between read the
    /// controller's status as it is, which follows the cluster by itself.
    pub refresh_interval: Duration,
    /// A verification follows the application's event stream
    /// (`/api/v1/stream/applications`) between looks instead of polling it; polling stays
    /// the fallback where no stream can be opened (an old Argo CD, a buffering proxy).
    pub watch: bool,
    /// PEM certificates to trust besides the system's, read at load time.
    pub ca_bundle: Option<Vec<u8>>,
    /// Ask Argo CD for a `hard` refresh (`argocd.refresh = "hard"`) instead of `normal`.
    pub hard_refresh: bool,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub interval: Duration,
    pub workdir: PathBuf,
    /// How long one cycle waits for a pending scan before reporting "waiting for scan".
    pub scan_wait: Duration,
    /// How many services one cycle works on at once (bounds the burst on every API).
    pub concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
}

/// Leader election: only the holder of the Lease acts; the other replicas stand by.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// The Lease's name and namespace.
    pub lease: String,
    pub namespace: String,
    /// This replica's name in the Lease (the pod's name).
    pub identity: String,
    pub timing: crate::domain::lease::Timing,
    /// The API server (without credentials); by default the cluster tugboat runs in (its
    /// service account) or the kubeconfig.
    pub api_url: Option<String>,
    /// This replica's server as its peers reach it (`http://<pod IP>:8080`; the chart sets it
    /// from the pod's IP). The leader writes it into the lease, and a follower that receives a
    /// GitHub webhook hands the delivery on to it, so the leader acts at once. Without it,
    /// a delivery that reaches a follower waits for the leader's next poll.
    pub address: Option<String>,
}

pub(super) fn aws_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn election(
    raw: RawElection,
    f: &Fields<'_>,
) -> Result<Option<ElectionConfig>, ConfigError> {
    if !raw.enabled {
        return Ok(None);
    }
    let defaults = crate::domain::lease::Timing::default();
    let timing = crate::domain::lease::Timing {
        lease_duration: raw.lease_duration.unwrap_or(defaults.lease_duration),
        renew_deadline: raw.renew_deadline.unwrap_or(defaults.renew_deadline),
        retry_period: raw.retry_period.unwrap_or(defaults.retry_period),
    };
    timing.check().map_err(|m| f.err("election", m))?;
    let required = |field: &str, v: Option<String>| {
        v.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            f.err(
                &format!("election.{field}"),
                "is required when election is enabled (the chart sets it from the pod)".to_owned(),
            )
        })
    };
    if let Some(u) = &raw.api_url {
        f.http_url("election.api_url", u)?;
    }
    if let Some(u) = &raw.address {
        f.http_url("election.address", u)?;
    }
    Ok(Some(ElectionConfig {
        lease: raw.lease.unwrap_or_else(|| "tugboat".to_owned()),
        namespace: required("namespace", raw.namespace)?,
        identity: required("identity", raw.identity)?,
        timing,
        api_url: raw.api_url,
        address: raw.address.map(|a| a.trim_end_matches('/').to_owned()),
    }))
}

pub(super) fn aws(raw: RawAws, f: &Fields<'_>) -> Result<AwsConfig, ConfigError> {
    if let Some(id) = raw.registry_id.as_deref()
        && (id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(f.err(
            "aws.registry_id",
            format!("'{id}' is not a 12-digit AWS account id"),
        ));
    }
    if let Some(url) = raw.registry_url.as_deref() {
        f.http_url("aws.registry_url", url)?;
    }
    Ok(AwsConfig {
        region: raw.region,
        registry_id: raw.registry_id,
        endpoint_url: raw.endpoint_url,
        registry_url: raw.registry_url,
        test_credentials: raw.test_credentials,
    })
}

pub(super) fn argocd(raw: RawArgo, f: &Fields<'_>) -> Result<ArgoConfig, ConfigError> {
    f.http_url("argocd.url", &raw.url)?;
    let ca_bundle = match &raw.ca_bundle {
        None => None,
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                f.err(
                    "argocd.ca_bundle",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(f.err(
                    "argocd.ca_bundle",
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
            Some(pem)
        }
    };
    Ok(ArgoConfig {
        url: raw.url.trim_end_matches('/').to_owned(),
        token: raw.token,
        poll_interval: raw.poll_interval.unwrap_or(Duration::from_secs(5)),
        refresh_interval: raw.refresh_interval.unwrap_or(DEFAULT_REFRESH_INTERVAL),
        watch: raw.watch.unwrap_or(true),
        ca_bundle,
        hard_refresh: matches!(raw.refresh, Refresh::Hard),
    })
}

pub(super) fn policy(raw: RawPolicy, f: &Fields<'_>) -> Result<PolicyConfig, ConfigError> {
    let mut ssm_path = raw.ssm_path;
    if !ssm_path.starts_with('/') {
        return Err(f.err(
            "policy.ssm_path",
            format!("'{ssm_path}' must start with '/'"),
        ));
    }
    if !ssm_path.ends_with('/') {
        ssm_path.push('/');
    }
    Ok(PolicyConfig {
        ssm_path,
        refresh: raw.refresh.unwrap_or(Duration::from_secs(300)),
    })
}

pub(super) fn server(raw: RawServer, f: &Fields<'_>) -> Result<ServerConfig, ConfigError> {
    let listen = raw.listen.as_deref().unwrap_or("0.0.0.0:8080");
    let listen = listen.parse().map_err(|_| {
        f.err(
            "server.listen",
            format!("'{listen}' is not an address such as '0.0.0.0:8080'"),
        )
    })?;
    Ok(ServerConfig { listen })
}

pub(super) fn engine(raw: RawEngine, f: &Fields<'_>) -> Result<EngineConfig, ConfigError> {
    let concurrency = match raw.concurrency {
        None => 8,
        Some(n @ 1..=256) => n,
        Some(n) => {
            return Err(f.err(
                "engine.concurrency",
                format!("{n} is out of range; use 1 to 256 services at once"),
            ));
        }
    };
    Ok(EngineConfig {
        interval: raw.interval.unwrap_or(Duration::from_secs(60)),
        workdir: raw
            .workdir
            .unwrap_or_else(|| PathBuf::from("/var/lib/tugboat")),
        scan_wait: raw.scan_wait.unwrap_or(Duration::from_secs(30)),
        concurrency,
    })
}
