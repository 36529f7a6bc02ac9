//! The Argo CD stand-in's HTTP routes: the Application API tugboat calls, and the test
//! controls under `/_sandbox/`. The application's behaviour is `ArgoCd`'s.

use super::*;

#[derive(Deserialize)]
pub(super) struct GetQuery {
    refresh: Option<String>,
}

pub(super) async fn get_app(
    State(argo): State<ArgoCd>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<GetQuery>,
) -> Response {
    let op = match q.refresh.as_deref() {
        Some("hard") => "GET application (hard refresh)",
        Some(_) => "GET application (refresh)",
        None => "GET application",
    };
    if let Some(refused) = argo.guard(&headers, op) {
        return refused;
    }
    match argo.status_of(&name) {
        Some(v) => Json(v).into_response(),
        None => ArgoCd::not_found(&name),
    }
}

pub(super) async fn resource_tree(
    State(argo): State<ArgoCd>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(refused) = argo.guard(&headers, "GET resource-tree") {
        return refused;
    }
    match argo.tree_of(&name) {
        Some(v) => Json(v).into_response(),
        None => ArgoCd::not_found(&name),
    }
}

/// `applicationApplicationSyncRequest`, the fields the stand-in reads.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct SyncRequest {
    revision: Option<String>,
}

pub(super) async fn sync_app(
    State(argo): State<ArgoCd>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<SyncRequest>,
) -> Response {
    if let Some(refused) = argo.guard(&headers, "POST sync") {
        return refused;
    }
    let Some(mut app) = argo.lock().apps.get(&name).cloned() else {
        return ArgoCd::not_found(&name);
    };
    argo.advance(&mut app);
    let outcome = if app.deny_window {
        Err((
            StatusCode::FORBIDDEN,
            7,
            "Cannot sync: Blocked by sync window".to_owned(),
        ))
    } else if app.operation.as_ref().is_some_and(|o| o.phase == "Running") {
        Err((
            StatusCode::BAD_REQUEST,
            9,
            "another operation is already in progress".to_owned(),
        ))
    } else {
        let revision = req
            .revision
            .filter(|r| !r.is_empty())
            .or_else(|| argo.github.branch_sha("main"))
            .unwrap_or_default();
        if git2::Oid::from_str(&revision).is_err() {
            Err((
                StatusCode::BAD_REQUEST,
                3,
                format!("unknown revision '{revision}'"),
            ))
        } else {
            ArgoCd::start(&mut app, &revision, false, argo.github.now());
            Ok(())
        }
    };
    argo.lock().apps.insert(name.clone(), app);
    match outcome {
        Ok(()) => match argo.status_of(&name) {
            Some(v) => Json(v).into_response(),
            None => ArgoCd::not_found(&name),
        },
        Err((status, code, message)) => grpc_error(status, code, &message),
    }
}

pub(super) async fn sync_windows(
    State(argo): State<ArgoCd>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(refused) = argo.guard(&headers, "GET syncwindows") {
        return refused;
    }
    let Some(app) = argo.lock().apps.get(&name).cloned() else {
        return ArgoCd::not_found(&name);
    };
    if app.deny_window {
        let w = json!({"kind": "deny", "schedule": "0 0 * * *", "duration": "24h", "manualSync": false});
        Json(json!({"assignedWindows": [w], "activeWindows": [w], "canSync": false}))
            .into_response()
    } else {
        Json(json!({"assignedWindows": [], "activeWindows": [], "canSync": true})).into_response()
    }
}

#[derive(Deserialize)]
pub(super) struct Crashing {
    image: String,
}

pub(super) async fn crashing(State(argo): State<ArgoCd>, Json(c): Json<Crashing>) -> StatusCode {
    argo.mark_crashing(&c.image);
    StatusCode::NO_CONTENT
}

/// `POST /_sandbox/quirks`: `{"application", "quirk", "seconds"}`.
#[derive(Deserialize)]
pub(super) struct QuirkRequest {
    application: String,
    quirk: String,
    #[serde(default)]
    seconds: u64,
}

pub(super) async fn quirks(State(argo): State<ArgoCd>, Json(q): Json<QuirkRequest>) -> Response {
    let lasts = Duration::from_secs(q.seconds);
    match argo.set_quirk(&q.application, &q.quirk, lasts) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

pub(super) async fn stats(State(argo): State<ArgoCd>) -> Json<BTreeMap<String, u64>> {
    Json(argo.calls())
}
