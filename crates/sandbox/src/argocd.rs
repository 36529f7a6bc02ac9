//! A stand-in for Argo CD's Application API, behaving like the real one where tugboat depends
//! on it. Each application deploys files on `main` of the GitHub stand-in's repository.
//!
//! - The controller notices that main moved (a Git webhook; without one, at a refresh or its
//!   three-minutely poll of Git: [`ArgoCd::set_git_webhook`]); an application with automated sync syncs
//!   `sync_delay` later, one without waits for `POST …/sync` (which is refused while another
//!   operation runs, as Argo CD's API server refuses it).
//! - A sync is an operation (`status.operationState`: `Running`, then `Succeeded` or `Failed`)
//!   that moves `status.sync.revision`, `reconciledAt`, `history` and `summary.images`.
//! - After a sync the health is `Progressing` for `rollout`, then `Healthy`, or `Degraded` when
//!   an image of the revision is marked as crashing.
//! - A deny sync window blocks automated and manual syncs (`…/syncwindows` says so).
//! - A multi-source application reports `revisions` (a Helm chart version, then the Git commit).
//! - `status.sync.revision` is the revision the comparison was made to (Argo CD's swagger,
//!   `v1alpha1SyncStatus`; argo-cd#7629): it names main's head as soon as the controller
//!   notices it, `OutOfSync`, while the health is still the old objects'. What was synced is
//!   the operation's (`operationState.syncResult.revision`) and the history's.
//! - `GET /api/v1/stream/applications?name=…` streams the application's changes, one JSON
//!   event a line, as Argo CD's `ApplicationService_Watch` does.
//! - Real applications' quirks, set per application through `POST /_sandbox/quirks`
//!   (`{"application", "quirk", "seconds"}`): see [`Quirks`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

mod routes;
mod wire;

use super::github::GitHub;

/// The chart version a multi-source application's first source reports.
const CHART_VERSION: &str = "4.2.0";

#[derive(Debug, Clone)]
struct Op {
    revision: String,
    phase: &'static str,
    message: String,
    automated: bool,
    /// Who started a manual operation (Argo CD's `initiatedBy.username`).
    user: String,
    started: Instant,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    /// Applied, but still `Running` until then (a Rollout paused at a step).
    hold_until: Option<Instant>,
    /// `retryCount`: how many times a failed attempt was put back to `Running`.
    retry_count: u32,
    /// A PreSync hook Job this operation runs (before it applies anything), and until when.
    hook: Option<(String, Instant)>,
    /// Its hook ran to completion: the apply goes on.
    hook_done: bool,
}

#[derive(Debug, Clone)]
struct App {
    name: String,
    files: Vec<String>,
    automated: bool,
    multi_source: bool,
    deny_window: bool,
    revision: Option<String>,
    images: Vec<String>,
    /// Health once the rollout settles.
    health: String,
    message: Option<String>,
    /// Until then the health shows `Progressing`.
    settles: Instant,
    reconciled_at: Option<DateTime<Utc>>,
    history: Vec<(String, DateTime<Utc>)>,
    /// The main head the controller noticed, and when.
    seen: Option<(String, Instant)>,
    /// When a GET first answered Healthy after the last sync settled.
    answered_healthy: Option<Instant>,
    operation: Option<Op>,
    /// How it departs from the plain path (`POST /_sandbox/quirks`).
    quirks: Quirks,
    /// A refresh was asked (`GET …?refresh=`): the controller compares it to Git now.
    refresh_asked: bool,
}

/// What a real application does that the plain path does not, each as Argo CD documents or
/// reports it; set through `POST /_sandbox/quirks`.
#[derive(Debug, Clone, Default)]
struct Quirks {
    /// Every comparison to a new revision fails with a `ComparisonError` condition (the
    /// manifests do not render; sync status `Unknown`, nothing synced) until then: the
    /// condition type `ApplicationConditionComparisonError` of Argo CD's
    /// `pkg/apis/application/v1alpha1/types.go`, its message "Failed to load target state:
    /// failed to generate manifest for source 1 of 1: rpc error: …".
    comparison_error_until: Option<Instant>,
    /// `summary.images` lists nothing: it is built from live pods, and some releases left it
    /// empty or stale (argo-cd#27861, argo-cd#19670).
    no_summary_images: bool,
    /// After each sync, `Degraded` for this long before the settled health: HPA metrics not
    /// yet available, KEDA's `HPAMetricsUnavailable` (argo-cd#28522, argo-cd#6287).
    transient_degraded: Option<Duration>,
    /// Until then, `Degraded` whatever the settled health (the transient above).
    degraded_until: Option<Instant>,
    /// After each sync, health flaps between `Progressing` and the settled health, 300 ms
    /// each, for this long: a Deployment whose pods restart or whose HPA scales it reads
    /// `Progressing` while its new replicas are not yet available (Argo CD's "Resource
    /// Health": a Deployment is Progressing while `status.updatedReplicas` or
    /// `availableReplicas` trail `spec.replicas`), and Healthy again once they are.
    flapping: Option<Duration>,
    /// Until then, the flapping above.
    flapping_until: Option<Instant>,
    /// After each sync, an Argo Rollouts pause: health `Suspended` while the operation stays
    /// `Running`, "waiting for healthy state of argoproj.io/Rollout" (argo-cd#25054).
    paused: Option<Duration>,
    /// The next sync retries (`syncPolicy.retry`) with an apply error for this long, the
    /// operation `Running` with "Retrying attempt #N: …", then fails.
    retrying: Option<Duration>,
    /// Each sync first runs a PreSync hook Job (a migration) for this long: Argo CD's
    /// "Resource Hooks" docs; gitops-engine's sync context reports the operation `Running`,
    /// "waiting for completion of hook batch/Job/<name>", the hook in
    /// `syncResult.resources` with `hookType: PreSync` and `hookPhase: Running`, and
    /// applies nothing else until it completes (the health is still the old objects').
    presync_hook: Option<Duration>,
}

#[derive(Default)]
struct Inner {
    apps: BTreeMap<String, App>,
    crashing: BTreeSet<String>,
    failing: BTreeSet<String>,
    calls: BTreeMap<String, u64>,
    /// The same, per application.
    app_calls: BTreeMap<String, BTreeMap<String, u64>>,
    rollout: Duration,
    denied_token: Option<String>,
    /// The token may get the applications but not sync them (its RBAC grants
    /// `applications, get` only).
    sync_denied: bool,
    /// A proxy in front passes only `/api`: gRPC-Web requests get its 404 page.
    grpc_web_blocked: bool,
    /// Event streams answer nothing until they end, as behind a proxy that buffers them.
    buffer_streams: bool,
    /// No Git webhook reaches this Argo CD: it notices a new commit at a refresh, or when
    /// it polls Git ([`GIT_POLL`]).
    no_git_webhook: bool,
}

/// How often an Argo CD without a Git webhook polls Git: "Argo CD polls Git repositories
/// every three minutes to detect changes to the manifests. To eliminate this delay from
/// polling, the API server can be configured to receive webhook events." (Argo CD's
/// operator manual, "Git Webhook Configuration").
const GIT_POLL: Duration = Duration::from_secs(180);

/// The shared state of the Argo CD stand-in.
#[derive(Clone)]
pub struct ArgoCd {
    inner: Arc<Mutex<Inner>>,
    github: GitHub,
    token: String,
    sync_delay: Duration,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Add the fields of `more` (an object) to `v` (an object).
fn merge(v: &mut Value, more: Value) {
    if let (Some(v), Value::Object(more)) = (v.as_object_mut(), more) {
        v.extend(more);
    }
}

fn grpc_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({"error": message, "code": code, "message": message})),
    )
        .into_response()
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

    /// Register an application (automated sync) that deploys `files` from main; it starts
    /// synced to main and Healthy.
    pub fn add_app(&self, name: &str, files: Vec<String>) {
        let mut app = App {
            name: name.to_owned(),
            files,
            automated: true,
            multi_source: false,
            deny_window: false,
            revision: None,
            images: vec![],
            health: "Healthy".into(),
            message: None,
            settles: Instant::now(),
            reconciled_at: None,
            history: vec![],
            seen: None,
            answered_healthy: None,
            operation: None,
            quirks: Quirks::default(),
            refresh_asked: false,
        };
        if let Some(head) = self.github.branch_sha("main") {
            self.sync(&mut app, &head);
            app.settles = Instant::now();
        }
        self.lock().apps.insert(name.to_owned(), app);
    }

    fn with_app(&self, name: &str, f: impl FnOnce(&mut App)) {
        if let Some(app) = self.lock().apps.get_mut(name) {
            f(app);
        }
    }

    /// What a person does with `argocd app rollback <name> <id>`: sync the revision of the
    /// history entry `steps_back` entries before the newest, as `user`. Like Argo CD, refused
    /// while automated sync is on (it would undo the rollback) or an operation runs.
    pub fn rollback_as(&self, name: &str, steps_back: usize, user: &str) -> Result<(), String> {
        let mut g = self.lock();
        let app = g
            .apps
            .get_mut(name)
            .ok_or_else(|| format!("no application {name}"))?;
        if app.automated {
            return Err("rollback cannot be initiated when auto-sync is enabled".into());
        }
        if app.operation.as_ref().is_some_and(|o| o.phase == "Running") {
            return Err("another operation is already in progress".into());
        }
        let i = app
            .history
            .len()
            .checked_sub(1 + steps_back)
            .ok_or_else(|| format!("{name} has no history entry {steps_back} back"))?;
        let revision = app.history[i].0.clone();
        Self::start_as(app, &revision, false, user, self.github.now());
        Ok(())
    }

    /// Turn automated sync off (`syncPolicy: {}`) or on.
    pub fn set_automated(&self, name: &str, on: bool) {
        self.with_app(name, |a| a.automated = on);
    }

    /// Assign (or lift) a deny window that is active now, without manual syncs.
    pub fn set_deny_window(&self, name: &str, deny: bool) {
        self.with_app(name, |a| a.deny_window = deny);
    }

    /// Make the application multi-source (a Helm chart, then the Git repository).
    pub fn set_multi_source(&self, name: &str) {
        self.with_app(name, |a| a.multi_source = true);
    }

    /// For the last sync of an application: when it turned Healthy (its rollout settled), and
    /// when a GET first answered Healthy after that. The gap is how late a poller saw it.
    pub fn healthy_seen(&self, name: &str) -> Option<(Instant, Instant)> {
        let g = self.lock();
        let app = g.apps.get(name)?;
        Some((app.settles, app.answered_healthy?))
    }

    /// How long a synced application shows `Progressing` before it settles.
    pub fn set_rollout(&self, rollout: Duration) {
        self.lock().rollout = rollout;
    }

    /// Images whose `repo:tag` crash after deploy (health `Degraded`).
    pub fn mark_crashing(&self, image: &str) {
        self.lock().crashing.insert(image.to_owned());
    }

    /// Make application `name` depart from the plain path as a real one does (`quirk`, for
    /// `duration` where it lasts): see [`Quirks`]. `degraded-before` makes it `Degraded` now,
    /// as an application is when a fix for it ships; the next sync settles it anew.
    pub fn set_quirk(&self, name: &str, quirk: &str, duration: Duration) -> Result<(), String> {
        let mut g = self.lock();
        let app = g
            .apps
            .get_mut(name)
            .ok_or_else(|| format!("no application {name}"))?;
        let q = &mut app.quirks;
        match quirk {
            // Argo CD's Deployment health check reports `Degraded` once its `Progressing`
            // condition says `ProgressDeadlineExceeded` (its "Resource Health" docs).
            "degraded-before" => {
                app.health = "Degraded".into();
                app.message = Some(format!(
                    "Deployment \"{name}\" exceeded its progress deadline"
                ));
                app.settles = Instant::now();
                app.answered_healthy = None;
            }
            "transient-degraded" => q.transient_degraded = Some(duration),
            "flapping" => q.flapping = Some(duration),
            "paused" => q.paused = Some(duration),
            "no-summary-images" => q.no_summary_images = true,
            "comparison-error" => {
                let lasts = if duration.is_zero() {
                    Duration::from_secs(3600)
                } else {
                    duration
                };
                q.comparison_error_until = Some(Instant::now() + lasts);
            }
            "retrying" => q.retrying = Some(duration),
            "presync-hook" => q.presync_hook = Some(duration),
            other => {
                return Err(format!(
                    "unknown quirk '{other}': one of degraded-before, transient-degraded, flapping, paused, no-summary-images, comparison-error, retrying, presync-hook"
                ));
            }
        }
        Ok(())
    }

    /// Images whose manifests fail to apply (the sync operation fails).
    pub fn mark_failing(&self, image: &str) {
        self.lock().failing.insert(image.to_owned());
    }

    /// Whether a Git webhook tells this Argo CD of new commits (the default); without one it
    /// compares an application to a new commit only when asked to refresh it, or when it
    /// polls Git every three minutes.
    pub fn set_git_webhook(&self, on: bool) {
        self.lock().no_git_webhook = !on;
    }

    /// A refresh of `name` was asked: its next look compares it to Git.
    fn ask_refresh(&self, name: &str) {
        self.with_app(name, |app| app.refresh_asked = true);
    }

    /// Hold back every event stream's answer, as a proxy that buffers responses does (the
    /// client sees no headers until the stream ends, which it never does).
    pub fn buffer_streams(&self, on: bool) {
        self.lock().buffer_streams = on;
    }

    fn buffers_streams(&self) -> bool {
        self.lock().buffer_streams
    }

    /// Answer 403 to this token (a token without RBAC for applications), or lift that.
    pub fn deny_token(&self, token: Option<&str>) {
        self.lock().denied_token = token.map(str::to_owned);
    }

    /// Let the token get the applications but not sync them: a sync is refused with
    /// PermissionDenied, and `can-i sync` answers `no`.
    pub fn deny_sync(&self, denied: bool) {
        self.lock().sync_denied = denied;
    }

    /// Put a proxy in front that passes only `/api` (`false`), as an ingress with one path
    /// rule does: a gRPC-Web request gets the proxy's HTML 404.
    pub fn serve_grpc_web(&self, served: bool) {
        self.lock().grpc_web_blocked = !served;
    }

    fn grpc_web_blocked(&self) -> bool {
        self.lock().grpc_web_blocked
    }

    fn may_sync(&self) -> bool {
        !self.lock().sync_denied
    }

    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    /// Every application's name, in order.
    pub fn names(&self) -> Vec<String> {
        self.lock().apps.keys().cloned().collect()
    }

    /// The calls about application `name`, by operation.
    pub fn calls_of(&self, name: &str) -> BTreeMap<String, u64> {
        self.lock().app_calls.get(name).cloned().unwrap_or_default()
    }

    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/api/v1/applications", get(routes::list_apps))
            .route("/account.AccountService/CanI", post(routes::can_i))
            .route("/api/v1/applications/{name}", get(routes::get_app))
            .route("/api/v1/applications/{name}/sync", post(routes::sync_app))
            .route(
                "/api/v1/applications/{name}/resource-tree",
                get(routes::resource_tree),
            )
            .route("/api/v1/stream/applications", get(routes::watch))
            .route(
                "/api/v1/applications/{name}/syncwindows",
                get(routes::sync_windows),
            )
            .route("/_sandbox/crashing", post(routes::crashing))
            .route("/_sandbox/quirks", post(routes::quirks))
            .route("/_sandbox/stats", get(routes::stats))
            .with_state(self.clone())
    }

    fn images_at(&self, app: &App, revision: &str) -> Vec<String> {
        let mut images = Vec::new();
        for text in self.files_at(app, revision).into_iter().flatten() {
            if let Ok(refs) = tugboat::manifest::locate(&text) {
                images.extend(refs.iter().map(tugboat::manifest::Reference::image));
            }
        }
        images.sort();
        images.dedup();
        images
    }

    fn marked<'a>(images: &'a [String], marks: &BTreeSet<String>) -> Option<&'a String> {
        images.iter().find(|i| {
            marks
                .iter()
                .any(|c| *i == c || i.starts_with(&format!("{c}@")))
        })
    }

    /// Apply `revision`: what the cluster runs, the health it will settle to, the history.
    fn sync(&self, app: &mut App, revision: &str) {
        let images = self.images_at(app, revision);
        let (crashing, rollout) = {
            let g = self.lock();
            (g.crashing.clone(), g.rollout)
        };
        match Self::marked(&images, &crashing) {
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
        let now = self.github.now();
        app.images = images;
        app.revision = Some(revision.to_owned());
        app.reconciled_at = Some(now);
        app.settles = Instant::now() + rollout;
        app.answered_healthy = None;
        app.history.push((revision.to_owned(), now));
        if app.seen.as_ref().is_some_and(|(h, _)| h == revision) {
            app.seen = None;
        }
    }

    /// Start an operation syncing `revision`.
    fn start(app: &mut App, revision: &str, automated: bool, now: DateTime<Utc>) {
        Self::start_as(app, revision, automated, "tugboat", now);
    }

    fn start_as(app: &mut App, revision: &str, automated: bool, user: &str, now: DateTime<Utc>) {
        app.operation = Some(Op {
            revision: revision.to_owned(),
            phase: "Running",
            message: "one or more tasks are running".into(),
            automated,
            user: user.to_owned(),
            started: Instant::now(),
            started_at: now,
            finished_at: None,
            hold_until: None,
            retry_count: 0,
            hook: None,
            hook_done: false,
        });
    }

    fn files_at(&self, app: &App, revision: &str) -> Vec<Option<String>> {
        app.files
            .iter()
            .map(|f| self.github.read_at(revision, f))
            .collect()
    }

    /// Let time act on the application: notice main, run automated syncs, finish operations.
    fn advance(&self, app: &mut App) {
        let head = self.github.branch_sha("main");
        // With a Git webhook the controller compares at once; without, at a refresh or when
        // it polls Git.
        let moved = self.github.main_moved();
        let noticed = !self.lock().no_git_webhook
            || std::mem::take(&mut app.refresh_asked)
            || moved
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() >= GIT_POLL);
        // A commit that leaves the application's files as they are changes nothing to sync:
        // Argo CD compares manifests, so the application is Synced at the new revision.
        if let (true, Some(head), Some(rev)) = (noticed, &head, app.revision.clone())
            && *head != rev
            && app.operation.as_ref().is_none_or(|o| o.phase != "Running")
            && self.files_at(app, head) == self.files_at(app, &rev)
        {
            app.revision = Some(head.clone());
            app.reconciled_at = Some(self.github.now());
            app.seen = None;
        }
        if let (true, Some(head)) = (noticed, &head)
            && app.revision.as_deref() != Some(head.as_str())
            && app.seen.as_ref().is_none_or(|(h, _)| h != head)
        {
            // With a webhook, the change is noticed when main moved, not when asked.
            let webhook = !self.lock().no_git_webhook;
            let at = moved
                .filter(|(sha, _)| sha == head && webhook)
                .map_or_else(Instant::now, |(_, at)| at);
            app.seen = Some((head.clone(), at));
            // The controller compared the application to the new head: `reconciledAt` moves.
            app.reconciled_at = Some(self.github.now());
        }
        let running = app.operation.as_ref().is_some_and(|o| o.phase == "Running");
        // Manifests that do not render are not synced (a `ComparisonError`).
        let unrendered = app
            .quirks
            .comparison_error_until
            .is_some_and(|t| t > Instant::now());
        if app.automated
            && !app.deny_window
            && !running
            && !unrendered
            && let Some((h, at)) = app.seen.clone()
            && at.elapsed() >= self.sync_delay
        {
            Self::start(app, &h, true, self.github.now());
            // An automated sync starts once the change is noticed; it finishes at once.
            if let Some(op) = &mut app.operation {
                op.started = at + self.sync_delay;
            }
        }
        self.finish(app);
    }

    /// Run a due operation to its end: applied (`Succeeded`), refused by the cluster
    /// (`Failed`), retried with an apply error first, or held `Running` by a paused Rollout.
    fn finish(&self, app: &mut App) {
        let now = Instant::now();
        if let Some(op) = &mut app.operation
            && op.phase == "Running"
            && op.hold_until.is_some_and(|t| t <= now)
        {
            op.hold_until = None;
            op.phase = "Succeeded";
            op.message = "successfully synced (all tasks run)".into();
            op.finished_at = Some(self.github.now());
            return;
        }
        let due = app.operation.as_ref().is_some_and(|o| {
            o.phase == "Running"
                && o.hold_until.is_none()
                && (o.automated || o.started.elapsed() >= self.sync_delay)
        });
        if !due {
            return;
        }
        if let (Some(lasts), Some(op)) = (app.quirks.presync_hook, &mut app.operation)
            && !op.hook_done
        {
            let job = format!("{}-migrate", app.name);
            let until = op.hook.get_or_insert_with(|| (job.clone(), now + lasts)).1;
            if until > now {
                op.message = format!("waiting for completion of hook batch/Job/{job}");
                return;
            }
            op.hook_done = true;
        }
        if let Some(retry) = app.quirks.retrying
            && let Some(op) = &mut app.operation
        {
            Self::retry(op, retry, &mut app.quirks, self.github.now());
            return;
        }
        let Some(mut op) = app.operation.take() else {
            return;
        };
        let failing = self.lock().failing.clone();
        let images = self.images_at(app, &op.revision);
        match Self::marked(&images, &failing) {
            Some(i) => {
                op.phase = "Failed";
                op.message = format!(
                    "one or more objects failed to apply, reason: admission webhook \"images.policy\" denied the request: {i}"
                );
            }
            None => {
                self.sync(app, &op.revision);
                if let Some(d) = app.quirks.transient_degraded {
                    app.quirks.degraded_until = Some(now + d);
                }
                if let Some(d) = app.quirks.flapping {
                    app.quirks.flapping_until = Some(now + d);
                }
                if let Some(d) = app.quirks.paused {
                    // Argo CD waits for the Rollout's health before it ends the operation.
                    op.hold_until = Some(now + d);
                    op.message = format!(
                        "waiting for healthy state of argoproj.io/Rollout/{}",
                        app.name
                    );
                    app.operation = Some(op);
                    return;
                }
                op.phase = "Succeeded";
                op.message = "successfully synced (all tasks run)".into();
            }
        }
        op.finished_at = Some(self.github.now());
        app.operation = Some(op);
    }

    /// A sync under `syncPolicy.retry` whose apply fails, for `retry` after it was due, then
    /// `Failed` (its limit reached). As Argo CD's `controller/appcontroller.go` does: a
    /// failed attempt goes back to `Running` with `retryCount` one more and the message
    /// "<error>. Retrying attempt #N at <3:04PM>."; the last one fails with
    /// "<error> (retried N times)." (its default backoff: 5 s).
    fn retry(op: &mut Op, retry: Duration, quirks: &mut Quirks, now: DateTime<Utc>) {
        let error = "one or more objects failed to apply, reason: Deployment.apps \"app\" is invalid: spec.template.spec.containers[0].image: Required value";
        let elapsed = op.started.elapsed();
        let attempts = u32::try_from(elapsed.as_secs() / 5 + 1).unwrap_or(u32::MAX);
        if elapsed < retry {
            op.retry_count = attempts;
            let at = (now + chrono::Duration::seconds(5)).format("%-I:%M%p");
            op.message = format!("{error}. Retrying attempt #{attempts} at {at}.");
            return;
        }
        op.phase = "Failed";
        op.message = format!("{error} (retried {} times).", op.retry_count);
        op.finished_at = Some(now);
        quirks.retrying = None;
    }

    fn not_found(name: &str) -> Response {
        grpc_error(
            StatusCode::NOT_FOUND,
            5,
            &format!("applications.argoproj.io \"{name}\" not found"),
        )
    }

    /// Count a call about application `name` (and check the token, as [`Self::guard`]).
    fn guard_for(&self, headers: &HeaderMap, op: &str, name: &str) -> Option<Response> {
        {
            let mut g = self.lock();
            let of = g.app_calls.entry(name.to_owned()).or_default();
            *of.entry(op.to_owned()).or_insert(0) += 1;
        }
        self.guard(headers, op)
    }

    /// Count the call and check the token: `None` when the request may go on.
    fn guard(&self, headers: &HeaderMap, op: &str) -> Option<Response> {
        let denied = {
            let mut g = self.lock();
            *g.calls.entry(op.to_owned()).or_insert(0) += 1;
            g.denied_token.clone()
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if token.is_some() && token == denied.as_deref() {
            return Some(grpc_error(
                StatusCode::FORBIDDEN,
                7,
                "permission denied: applications, get, default/*, sub: tugboat",
            ));
        }
        if token != Some(self.token.as_str()) {
            return Some(grpc_error(StatusCode::UNAUTHORIZED, 16, "invalid session"));
        }
        None
    }
}
