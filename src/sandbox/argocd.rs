//! A stand-in for Argo CD's Application API. Each application watches files on `main` of the
//! GitHub stand-in's repository; a `sync_delay` after main changes, it "syncs": the revision
//! becomes main's head, `summary.images` lists the images the files reference, and health
//! turns Healthy, or Degraded when an image's tag is marked as crashing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::github::GitHub;

#[derive(Debug, Clone)]
struct App {
    files: Vec<String>,
    revision: Option<String>,
    images: Vec<String>,
    health: String,
    message: Option<String>,
    reconciled_at: Option<DateTime<Utc>>,
    seen: Option<(String, Instant)>,
}

#[derive(Default)]
struct Inner {
    apps: BTreeMap<String, App>,
    crashing: BTreeSet<String>,
    calls: BTreeMap<String, u64>,
}

/// The shared state of the Argo CD stand-in.
#[derive(Clone)]
pub struct ArgoCd {
    inner: Arc<Mutex<Inner>>,
    github: GitHub,
    token: String,
    sync_delay: Duration,
}

impl ArgoCd {
    pub fn new(github: GitHub, token: &str, sync_delay: Duration) -> Self {
        Self {
            inner: Arc::default(),
            github,
            token: token.to_owned(),
            sync_delay,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Register an application that deploys `files` from main; it starts synced to main.
    pub fn add_app(&self, name: &str, files: Vec<String>) {
        let mut app = App {
            files,
            revision: None,
            images: vec![],
            health: "Healthy".into(),
            message: None,
            reconciled_at: None,
            seen: None,
        };
        if let Some(head) = self.github.branch_sha("main") {
            self.sync(&mut app, head);
        }
        self.lock().apps.insert(name.to_owned(), app);
    }

    /// Images whose `repo:tag` (or just `:tag` suffix) crash after deploy.
    pub fn mark_crashing(&self, image: &str) {
        self.lock().crashing.insert(image.to_owned());
    }

    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/api/v1/applications/{name}", get(get_app))
            .route("/_sandbox/crashing", post(crashing))
            .route("/_sandbox/stats", get(stats))
            .with_state(self.clone())
    }

    fn sync(&self, app: &mut App, head: String) {
        let mut images = Vec::new();
        for f in &app.files {
            if let Some(text) = self.github.read_file("main", f)
                && let Ok(refs) = crate::manifest::locate(&text)
            {
                images.extend(refs.iter().map(crate::manifest::Reference::image));
            }
        }
        images.sort();
        images.dedup();
        let crashing = self.lock().crashing.clone();
        let crash = images.iter().find(|i| {
            crashing
                .iter()
                .any(|c| *i == c || i.starts_with(&format!("{c}@")))
        });
        match crash {
            Some(i) => {
                app.health = "Degraded".into();
                app.message = Some(format!(
                    "Deployment has pods in CrashLoopBackOff running {i}"
                ));
            }
            None => {
                app.health = "Healthy".into();
                app.message = None;
            }
        }
        app.images = images;
        app.revision = Some(head);
        app.reconciled_at = Some(Utc::now());
        app.seen = None;
    }

    fn status_of(&self, name: &str) -> Option<Value> {
        let head = self.github.branch_sha("main");
        let mut app = self.lock().apps.get(name)?.clone();
        if let Some(head) = head
            && app.revision.as_deref() != Some(&head)
        {
            // Like the real controller, the change is noticed when main moved, not when asked.
            if let Some((sha, at)) = self.github.main_moved()
                && sha == head
                && app.seen.as_ref().is_none_or(|(rev, _)| *rev != head)
            {
                app.seen = Some((head.clone(), at));
            }
            match &app.seen {
                Some((rev, at)) if *rev == head && at.elapsed() >= self.sync_delay => {
                    self.sync(&mut app, head)
                }
                Some((rev, _)) if *rev == head => {}
                _ => app.seen = Some((head, Instant::now())),
            }
        }
        let out_of_sync = app.seen.is_some();
        self.lock().apps.insert(name.to_owned(), app.clone());
        let health = if out_of_sync && app.health == "Healthy" {
            "Progressing"
        } else {
            app.health.as_str()
        };
        let mut health_v = json!({"status": health});
        if let Some(m) = &app.message {
            health_v["message"] = json!(m);
        }
        let repo_url = format!(
            "https://github.com/{}/{}.git",
            self.github.owner, self.github.repo
        );
        let mut status = json!({
            "sync": {"status": if out_of_sync { "OutOfSync" } else { "Synced" }, "revision": app.revision,
                     "comparedTo": {"source": {"repoURL": repo_url, "targetRevision": "main"}}},
            "health": health_v,
            "summary": {"images": app.images},
            "sourceType": "Kustomize",
        });
        if let Some(t) = app.reconciled_at {
            status["reconciledAt"] = json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            status["operationState"] = json!({"phase": "Succeeded", "message": "successfully synced (all tasks run)",
                "startedAt": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "finishedAt": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "syncResult": {"revision": app.revision}, "operation": {"sync": {"revision": app.revision}}});
            status["history"] = json!([{"id": 1, "revision": app.revision, "deployedAt": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "deployStartedAt": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "source": {"repoURL": repo_url, "targetRevision": "main"}}]);
        }
        Some(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": "argocd"},
            "spec": {"project": "default", "source": {"repoURL": repo_url, "targetRevision": "main", "path": app.files.first().map(|f| f.rsplit_once('/').map_or("", |x| x.0))},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
                     "syncPolicy": {"automated": {"prune": true, "selfHeal": true}}},
            "status": status,
        }))
    }
}

#[derive(Deserialize)]
struct GetQuery {
    refresh: Option<String>,
}

async fn get_app(
    State(argo): State<ArgoCd>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<GetQuery>,
) -> Response {
    let op = if q.refresh.is_some() {
        "GET application (refresh)"
    } else {
        "GET application"
    };
    *argo.lock().calls.entry(op.to_owned()).or_insert(0) += 1;
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.strip_prefix("Bearer ") == Some(argo.token.as_str()));
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid session", "code": 16, "message": "invalid session"})),
        )
            .into_response();
    }
    match argo.status_of(&name) {
        Some(v) => Json(v).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("applications.argoproj.io \"{name}\" not found"), "code": 5, "message": format!("applications.argoproj.io \"{name}\" not found")})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct Crashing {
    image: String,
}

async fn crashing(State(argo): State<ArgoCd>, Json(c): Json<Crashing>) -> StatusCode {
    argo.mark_crashing(&c.image);
    StatusCode::NO_CONTENT
}

async fn stats(State(argo): State<ArgoCd>) -> Json<BTreeMap<String, u64>> {
    Json(argo.calls())
}
