//! The Argo CD stand-in's HTTP routes: the Application API tugboat calls, and the test
//! controls under `/_sandbox/`. The application's behaviour is `ArgoCd`'s.

use super::*;
use futures_util::StreamExt;

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
    if let Some(refused) = argo.guard_for(&headers, op, &name) {
        return refused;
    }
    if q.refresh.is_some() {
        argo.ask_refresh(&name);
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
    if let Some(refused) = argo.guard_for(&headers, "GET resource-tree", &name) {
        return refused;
    }
    match argo.tree_of(&name) {
        Some(v) => Json(v).into_response(),
        None => ArgoCd::not_found(&name),
    }
}

#[derive(Deserialize)]
pub(super) struct WatchQuery {
    name: Option<String>,
}

/// How often the stand-in looks for a change to stream (its controller's pace).
const STREAM_TICK: Duration = Duration::from_millis(50);

/// `GET /api/v1/stream/applications?name=…` (`ApplicationService_Watch`): grpc-gateway's
/// stream of `v1alpha1ApplicationWatchEvent`s, one JSON object a line, each wrapped as
/// `{"result": …}`; the application as it is first (`ADDED`, as Argo CD's server sends the
/// applications it lists before their changes), then a `MODIFIED` at each change. It lasts
/// until the client goes away.
pub(super) async fn watch(
    State(argo): State<ArgoCd>,
    headers: HeaderMap,
    Query(q): Query<WatchQuery>,
) -> Response {
    let name = q.name.unwrap_or_default();
    if let Some(refused) = argo.guard_for(&headers, "GET stream", &name) {
        return refused;
    }
    if argo.buffers_streams() {
        std::future::pending::<()>().await;
    }
    let Some(first) = argo.status_of(&name) else {
        return ArgoCd::not_found(&name);
    };
    let line = |kind: &str, app: &Value| {
        format!(
            "{}\n",
            json!({"result": {"type": kind, "application": app}})
        )
    };
    let opening = line("ADDED", &first);
    let changes = futures_util::stream::unfold(
        (argo, name, first),
        move |(argo, name, mut last)| async move {
            loop {
                tokio::time::sleep(STREAM_TICK).await;
                let now = argo.status_of(&name)?;
                if now != last {
                    let said = line("MODIFIED", &now);
                    last = now;
                    return Some((said, (argo, name, last)));
                }
            }
        },
    );
    let lines = futures_util::stream::once(async move { opening })
        .chain(changes)
        .map(|l| Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(l)));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from_stream(lines))
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
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
    if let Some(refused) = argo.guard_for(&headers, "POST sync", &name) {
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
    if let Some(refused) = argo.guard_for(&headers, "GET syncwindows", &name) {
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
