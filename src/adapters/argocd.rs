//! The Argo CD adapter (reqwest): read an Application's sync and health, with refresh.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::ports::{AppStatus, Deployer, ErrorKind, PortError, PortResult};
use crate::secret::Secret;
use crate::telemetry::ApiMetrics;

/// Argo CD's REST API.
#[derive(Clone)]
pub struct ArgoCd {
    http: reqwest::Client,
    base: String,
    token: Secret,
    api: ApiMetrics,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct AppWire {
    status: StatusWire,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct StatusWire {
    sync: SyncWire,
    health: HealthWire,
    reconciled_at: Option<DateTime<Utc>>,
    summary: SummaryWire,
    history: Vec<HistoryWire>,
}

/// `v1alpha1RevisionHistory`: Argo CD appends one entry per sync.
#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct HistoryWire {
    deployed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct SyncWire {
    status: Option<String>,
    revision: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct HealthWire {
    status: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct SummaryWire {
    images: Vec<String>,
}

impl ArgoCd {
    pub fn new(base: &str, token: Secret, api: &ApiMetrics) -> Result<Self, PortError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("tugboat/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| PortError::new("argocd", "connect", ErrorKind::Rejected, e.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
            api: api.clone(),
        })
    }
}

#[async_trait]
impl Deployer for ArgoCd {
    async fn app(&self, name: &str, refresh: bool) -> PortResult<AppStatus> {
        let op = "ApplicationService_Get";
        let mut req = self
            .http
            .get(format!("{}/api/v1/applications/{name}", self.base))
            .bearer_auth(self.token.expose());
        if refresh {
            req = req.query(&[("refresh", "normal")]);
        }
        let resp = req.send().await;
        let failed = resp.as_ref().map_or(true, |r| !r.status().is_success());
        self.api.call("argocd", op);
        if failed {
            self.api.error("argocd", op);
        }
        let resp = resp.map_err(|e| {
            PortError::new(
                "argocd",
                op,
                ErrorKind::Transient,
                e.without_url().to_string(),
            )
        })?;
        let status = resp.status();
        if !status.is_success() {
            let kind = match status.as_u16() {
                401 | 403 => ErrorKind::Denied,
                404 => ErrorKind::NotFound,
                429 => ErrorKind::Throttled,
                500..=599 => ErrorKind::Transient,
                _ => ErrorKind::Rejected,
            };
            let what = match kind {
                ErrorKind::Denied => {
                    "the token was refused (check the Argo CD token and its RBAC for this application)"
                }
                ErrorKind::NotFound => "no such application",
                _ => "unexpected answer",
            };
            return Err(PortError::new(
                "argocd",
                op,
                kind,
                format!("application '{name}': HTTP {}: {what}", status.as_u16()),
            ));
        }
        let app: AppWire = resp.json().await.map_err(|e| {
            PortError::new(
                "argocd",
                op,
                ErrorKind::Transient,
                format!("application '{name}': {}", e.without_url()),
            )
        })?;
        let s = app.status;
        Ok(AppStatus {
            sync_status: s.sync.status.unwrap_or_else(|| "Unknown".into()),
            revision: s.sync.revision,
            health: s.health.status.unwrap_or_else(|| "Unknown".into()),
            health_message: s.health.message,
            reconciled_at: s.reconciled_at,
            deployed_at: s.history.last().and_then(|h| h.deployed_at),
            images: s.summary.images,
        })
    }
}
