//! The Argo CD adapter (reqwest): read an Application's sync, health and operation (with a
//! refresh), trigger a sync, read its sync windows.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::credentials::Token;
use crate::ports::{
    AppEvents, AppStatus, Deployer, ErrorKind, Health, Operation, OperationPhase, PortError,
    PortResult, SyncStart, SyncStatus, SyncWindows,
};
use crate::telemetry::ApiMetrics;

mod listing;
pub use listing::{Described, same_repository};

/// How the adapter is set up (from `[argocd]`).
#[derive(Debug, Clone)]
pub struct ArgoOptions {
    /// PEM certificates trusted besides the system's (a private CA in front of Argo CD).
    pub ca_bundle: Option<Vec<u8>>,
    /// Ask for a `hard` refresh (re-render manifests) instead of a `normal` one.
    pub hard_refresh: bool,
}

/// Argo CD's REST API.
#[derive(Clone)]
pub struct ArgoCd {
    http: reqwest::Client,
    base: String,
    token: Arc<dyn Token>,
    api: ApiMetrics,
    refresh: &'static str,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct AppWire {
    spec: SpecWire,
    status: StatusWire,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SpecWire {
    sync_policy: Option<SyncPolicyWire>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct SyncPolicyWire {
    automated: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct StatusWire {
    sync: SyncWire,
    health: HealthWire,
    reconciled_at: Option<DateTime<Utc>>,
    summary: SummaryWire,
    history: Vec<HistoryWire>,
    operation_state: Option<OperationStateWire>,
    conditions: Vec<ConditionWire>,
}

/// `v1alpha1ApplicationCondition`: an error or a warning of the application.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct ConditionWire {
    #[serde(rename = "type")]
    kind: String,
    message: String,
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
    revisions: Vec<String>,
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

/// `v1alpha1OperationState`.
#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct OperationStateWire {
    phase: Option<String>,
    message: Option<String>,
    operation: OperationWire,
    sync_result: SyncResultWire,
    started_at: Option<DateTime<Utc>>,
    /// `v1alpha1OperationState.retryCount` (int64 in the swagger).
    retry_count: i64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct OperationWire {
    sync: RevisionsWire,
    #[serde(rename = "initiatedBy")]
    initiated_by: InitiatorWire,
}

/// `v1alpha1OperationInitiator`: a user's name, or `automated` for the controller.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct InitiatorWire {
    username: Option<String>,
    automated: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RevisionsWire {
    revision: Option<String>,
    revisions: Vec<String>,
}

impl RevisionsWire {
    fn all(self) -> Vec<String> {
        self.revision.into_iter().chain(self.revisions).collect()
    }
}

/// `v1alpha1SyncOperationResult`: the revisions synced and each resource's result, hooks
/// included. Argo CD writes it while the operation runs, so a running hook shows here.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct SyncResultWire {
    revision: Option<String>,
    revisions: Vec<String>,
    resources: Vec<ResourceResultWire>,
}

/// `v1alpha1ResourceResult`, the fields tugboat reads.
#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ResourceResultWire {
    kind: String,
    name: String,
    hook_type: Option<String>,
    hook_phase: Option<String>,
    message: Option<String>,
}

impl ResourceResultWire {
    /// "PreSync Job/migrate".
    fn hook(&self) -> Option<String> {
        let kind = self.hook_type.as_deref().filter(|k| !k.is_empty())?;
        Some(format!("{kind} {}/{}", self.kind, self.name))
    }
}

impl SyncResultWire {
    /// The hook running now, if one is.
    fn running_hook(&self) -> Option<String> {
        self.resources
            .iter()
            .find(|r| r.hook_phase.as_deref() == Some("Running"))
            .and_then(ResourceResultWire::hook)
    }

    /// A hook that failed, with its message ("PreSync Job/migrate Failed: …").
    fn failed_hook(&self) -> Option<String> {
        self.resources.iter().find_map(|r| {
            let phase = r.hook_phase.as_deref()?;
            if !matches!(phase, "Failed" | "Error") {
                return None;
            }
            let said = r.message.as_deref().map(said).unwrap_or_default();
            Some(format!("{} {phase}{said}", r.hook()?))
        })
    }
}

/// `v1alpha1ApplicationTree`: its nodes' images (pods and workloads).
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct TreeWire {
    nodes: Vec<NodeWire>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct NodeWire {
    images: Vec<String>,
}

/// One line of `GET /api/v1/stream/applications` (grpc-gateway's stream of
/// `v1alpha1ApplicationWatchEvent`, newline-delimited): a change, or the stream's error.
#[derive(Debug, Deserialize)]
struct StreamLineWire {
    result: Option<WatchEventWire>,
    error: Option<ErrorWire>,
}

/// `v1alpha1ApplicationWatchEvent`: `ADDED` (the application as it is, first), `MODIFIED`,
/// `DELETED`.
#[derive(Debug, Deserialize)]
struct WatchEventWire {
    #[serde(rename = "type", default)]
    kind: String,
    application: AppWire,
}

/// The longest line of the event stream read (an application's JSON with a long history
/// is tens of kB; a line past this is an error, not a reason to grow without bound).
const MAX_EVENT_BYTES: usize = 8 << 20;

/// The event stream's lines as statuses, read chunk by chunk.
fn events(name: String, resp: reqwest::Response) -> AppEvents {
    let op = "ApplicationService_Watch";
    let failed = move |kind, m: String| PortError::new("argocd", op, kind, m);
    Box::pin(futures_util::stream::unfold(
        Some((resp, Vec::<u8>::new())),
        move |state| {
            let (name, failed) = (name.clone(), failed);
            async move {
                let (mut resp, mut buf) = state?;
                loop {
                    if let Some(i) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=i).collect();
                        if line.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        let item = event(&name, &line).map_err(|m| failed(ErrorKind::Transient, m));
                        return Some((item, Some((resp, buf))));
                    }
                    match resp.chunk().await {
                        Ok(Some(bytes)) if buf.len() + bytes.len() <= MAX_EVENT_BYTES => {
                            buf.extend_from_slice(&bytes);
                        }
                        Ok(Some(_)) => {
                            let m = format!(
                                "application '{name}': an event past {MAX_EVENT_BYTES} bytes"
                            );
                            return Some((Err(failed(ErrorKind::Transient, m)), None));
                        }
                        Ok(None) => return None,
                        Err(e) => {
                            let m = format!(
                                "application '{name}': the event stream broke: {}",
                                chain(&e.without_url())
                            );
                            return Some((Err(failed(ErrorKind::Transient, m)), None));
                        }
                    }
                }
            }
        },
    ))
}

/// One line of the event stream: the application's status, or why not.
fn event(name: &str, line: &[u8]) -> Result<AppStatus, String> {
    let wire: StreamLineWire = serde_json::from_slice(line)
        .map_err(|e| format!("application '{name}': an event that is not Argo CD's JSON: {e}"))?;
    match (wire.result, wire.error) {
        (Some(ev), _) if ev.kind != "DELETED" => Ok(status(ev.application)),
        (Some(_), _) => Err(format!("application '{name}' was deleted")),
        (None, Some(e)) => Err(format!(
            "application '{name}': the event stream said{}",
            said(&e.message)
        )),
        (None, None) => Err(format!(
            "application '{name}': an event with neither result nor error"
        )),
    }
}

/// `applicationApplicationSyncWindowsResponse`.
#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WindowsWire {
    active_windows: Vec<WindowWire>,
    can_sync: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct WindowWire {
    kind: String,
    schedule: String,
    duration: String,
}

/// `runtimeError`: Argo CD's (grpc-gateway's) error body.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct ErrorWire {
    message: String,
}

impl ArgoCd {
    pub fn new(
        base: &str,
        token: Arc<dyn Token>,
        options: &ArgoOptions,
        api: &ApiMetrics,
    ) -> Result<Self, PortError> {
        let refused = |m: String| PortError::new("argocd", "connect", ErrorKind::Rejected, m);
        // Its own trust when given a CA bundle (the system's roots and the bundle's); the
        // process's shared configuration otherwise.
        let builder = match &options.ca_bundle {
            None => super::tls::builder().map_err(refused)?,
            Some(pem) => {
                let certs = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| refused(format!("argocd.ca_bundle: not a PEM bundle: {e}")))?;
                if certs.is_empty() {
                    return Err(refused(
                        "argocd.ca_bundle: holds no PEM certificate".to_owned(),
                    ));
                }
                certs
                    .into_iter()
                    .fold(reqwest::Client::builder(), |b, c| b.add_root_certificate(c))
            }
        };
        let http = builder
            .user_agent(concat!("tugboat/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| refused(e.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
            api: api.clone(),
            refresh: if options.hard_refresh {
                "hard"
            } else {
                "normal"
            },
        })
    }

    /// Send a request, count it, and turn failures into errors that name the application.
    async fn send(
        &self,
        op: &'static str,
        name: &str,
        req: reqwest::RequestBuilder,
    ) -> PortResult<reqwest::Response> {
        let token = self.token.token().await?;
        let retry = req.try_clone();
        let mut resp = req.bearer_auth(token.expose()).send().await;
        if let (Ok(r), Some(retry)) = (&resp, retry)
            && r.status() == reqwest::StatusCode::UNAUTHORIZED
            && let Some(newer) = self.token.refused(&token).await
        {
            // The token rotated: once more with the new one.
            self.api.call("argocd", op);
            self.api.error("argocd", op);
            resp = retry.bearer_auth(newer.expose()).send().await;
        }
        self.api.call("argocd", op);
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                self.api.error("argocd", op);
                return Err(PortError::new(
                    "argocd",
                    op,
                    ErrorKind::Transient,
                    format!(
                        "application '{name}': Argo CD unreachable: {}",
                        chain(&e.without_url())
                    ),
                ));
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        self.api.error("argocd", op);
        let message = resp
            .json::<ErrorWire>()
            .await
            .map(|e| e.message)
            .unwrap_or_default();
        let kind = match status.as_u16() {
            401 | 403 => ErrorKind::Denied,
            404 => ErrorKind::NotFound,
            429 => ErrorKind::Throttled,
            500..=599 => ErrorKind::Transient,
            _ => ErrorKind::Rejected,
        };
        let what = match status.as_u16() {
            401 => "the token was refused (check argocd.token)".to_owned(),
            403 => format!(
                "permission denied (check the token's RBAC for this application){}",
                said(&message)
            ),
            404 => "no such application (check argocd_application)".to_owned(),
            _ => format!("unexpected answer{}", said(&message)),
        };
        Err(PortError::new(
            "argocd",
            op,
            kind,
            format!("application '{name}': HTTP {}: {what}", status.as_u16()),
        ))
    }

    async fn json<T: serde::de::DeserializeOwned>(
        op: &'static str,
        name: &str,
        resp: reqwest::Response,
    ) -> PortResult<T> {
        resp.json().await.map_err(|e| {
            PortError::new(
                "argocd",
                op,
                ErrorKind::Transient,
                format!("application '{name}': {}", e.without_url()),
            )
        })
    }

    fn url(&self, name: &str, rest: &str) -> String {
        format!("{}/api/v1/applications/{name}{rest}", self.base)
    }
}

/// An error with its causes (a TLS refusal says why only in a cause), without repeats.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}

/// An application as the port gives it.
fn status(app: AppWire) -> AppStatus {
    let s = app.status;
    AppStatus {
        sync_status: s
            .sync
            .status
            .as_deref()
            .map_or(SyncStatus::Unknown, SyncStatus::parse),
        revision: s.sync.revision,
        revisions: s.sync.revisions,
        health: s
            .health
            .status
            .as_deref()
            .map_or(Health::Unknown, Health::parse),
        health_message: s.health.message,
        reconciled_at: s.reconciled_at,
        deployed_at: s.history.last().and_then(|h| h.deployed_at),
        images: s.summary.images,
        operation: s.operation_state.map(|o| {
            let mut revisions = o.operation.sync.all();
            let result = o.sync_result;
            if revisions.is_empty() {
                revisions = result
                    .revision
                    .iter()
                    .chain(&result.revisions)
                    .cloned()
                    .collect();
            }
            // A failed hook is why the operation failed: its words go with the phase's.
            let message = match (o.message.filter(|m| !m.is_empty()), result.failed_hook()) {
                (Some(m), Some(hook)) => Some(format!("{m} (hook {hook})")),
                (m, hook) => m.or(hook.map(|h| format!("hook {h}"))),
            };
            Operation {
                phase: o
                    .phase
                    .as_deref()
                    .map_or(OperationPhase::Unknown, OperationPhase::parse),
                message,
                hook: result.running_hook(),
                revisions,
                initiated_by: o
                    .operation
                    .initiated_by
                    .username
                    .filter(|u| !u.is_empty() && !o.operation.initiated_by.automated),
                started_at: o.started_at,
                retry_count: u32::try_from(o.retry_count.max(0)).unwrap_or(u32::MAX),
            }
        }),
        automated: app
            .spec
            .sync_policy
            .is_some_and(|p| p.automated.is_some_and(|a| !a.is_null())),
        conditions: s
            .conditions
            .into_iter()
            .map(|c| (c.kind, c.message))
            .collect(),
    }
}

/// Argo CD's own message, when it gave one (bounded: it is quoted in PRs and logs).
fn said(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {}", message.chars().take(300).collect::<String>())
    }
}

#[async_trait]
impl Deployer for ArgoCd {
    async fn app(&self, name: &str, refresh: bool) -> PortResult<AppStatus> {
        let op = "ApplicationService_Get";
        let mut req = self.http.get(self.url(name, ""));
        if refresh {
            req = req.query(&[("refresh", self.refresh)]);
        }
        let resp = self.send(op, name, req).await?;
        let app: AppWire = Self::json(op, name, resp).await?;
        Ok(status(app))
    }

    async fn sync(&self, name: &str, revision: &str) -> PortResult<SyncStart> {
        let op = "ApplicationService_Sync";
        let req = self
            .http
            .post(self.url(name, "/sync"))
            .json(&json!({"name": name, "revision": revision, "prune": false}));
        match self.send(op, name, req).await {
            Ok(_) => Ok(SyncStart::Started),
            // FailedPrecondition from the API server: an operation is running.
            Err(e)
                if e.kind == ErrorKind::Rejected
                    && e.message
                        .contains("another operation is already in progress") =>
            {
                Ok(SyncStart::Busy(e.message))
            }
            Err(e) => Err(e),
        }
    }

    async fn workload_images(&self, name: &str) -> PortResult<Vec<String>> {
        let op = "ApplicationService_ResourceTree";
        let resp = self
            .send(op, name, self.http.get(self.url(name, "/resource-tree")))
            .await?;
        let tree: TreeWire = Self::json(op, name, resp).await?;
        let mut images: Vec<String> = tree.nodes.into_iter().flat_map(|n| n.images).collect();
        images.sort();
        images.dedup();
        Ok(images)
    }

    async fn watch(&self, name: &str, lasting: std::time::Duration) -> PortResult<AppEvents> {
        let op = "ApplicationService_Watch";
        let req = self
            .http
            .get(format!("{}/api/v1/stream/applications", self.base))
            .query(&[("name", name)])
            .timeout(lasting);
        let resp = self.send(op, name, req).await?;
        Ok(events(name.to_owned(), resp))
    }

    async fn sync_windows(&self, name: &str) -> PortResult<SyncWindows> {
        let op = "ApplicationService_GetApplicationSyncWindows";
        let resp = self
            .send(op, name, self.http.get(self.url(name, "/syncwindows")))
            .await?;
        let w: WindowsWire = Self::json(op, name, resp).await?;
        Ok(SyncWindows {
            can_sync: w.can_sync.unwrap_or(true),
            active: w
                .active_windows
                .iter()
                .map(|a| format!("{} {} for {}", a.kind, a.schedule, a.duration))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"{"metadata":{"name":"api"},"spec":{"syncPolicy":{"automated":{}}},
        "status":{"sync":{"status":"Synced","revision":"abc1234"},"health":{"status":"Healthy"},
        "summary":{"images":["r/api:1.0.0"]},
        "operationState":{"phase":"Running","message":"waiting for completion of hook batch/Job/api-migrate",
          "operation":{"sync":{"revision":"abc1234"}},
          "syncResult":{"revision":"abc1234","resources":[
            {"kind":"Job","name":"api-migrate","hookType":"PreSync","hookPhase":"Running"}]}}}}"#;

    #[test]
    fn a_stream_line_of_an_added_or_modified_application_reads_as_its_status() {
        for kind in ["ADDED", "MODIFIED"] {
            let line = format!(r#"{{"result":{{"type":"{kind}","application":{APP}}}}}"#);
            let s = event("api", line.as_bytes()).unwrap();
            assert_eq!(s.health, Health::Healthy);
            assert_eq!(s.images, vec!["r/api:1.0.0".to_owned()]);
            let op = s.operation.unwrap();
            assert_eq!(op.hook.as_deref(), Some("PreSync Job/api-migrate"));
            assert!(s.automated);
        }
    }

    #[test]
    fn a_deleted_application_an_error_line_and_garbage_are_errors_that_name_the_application() {
        let deleted = format!(r#"{{"result":{{"type":"DELETED","application":{APP}}}}}"#);
        let cases = [
            (deleted.as_str(), "was deleted"),
            (
                r#"{"error":{"grpc_code":7,"message":"permission denied"}}"#,
                "permission denied",
            ),
            ("{\"result\":", "not Argo CD's JSON"),
            ("{}", "neither result nor error"),
        ];
        for (line, said) in cases {
            let e = event("api", line.as_bytes()).unwrap_err();
            assert!(e.contains("'api'") && e.contains(said), "{line}: {e}");
        }
    }

    #[test]
    fn a_failed_hook_is_named_beside_the_operations_message() {
        let app = APP
            .replace(r#""phase":"Running""#, r#""phase":"Failed""#)
            .replace(
                r#""hookPhase":"Running""#,
                r#""hookPhase":"Failed","message":"Job has reached the specified backoff limit""#,
            );
        let s = status(serde_json::from_str(&app).unwrap());
        let op = s.operation.unwrap();
        assert_eq!(op.hook, None);
        assert_eq!(
            op.message.as_deref(),
            Some(
                "waiting for completion of hook batch/Job/api-migrate (hook PreSync Job/api-migrate Failed: Job has reached the specified backoff limit)"
            )
        );
    }
}
