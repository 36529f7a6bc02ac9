//! The Argo CD stand-in's HTTP routes: the Application API tugboat calls, and the test
//! controls under `/_sandbox/`. The application's behaviour is `ArgoCd`'s.

use super::*;
use axum::body::Bytes;
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

#[derive(Deserialize)]
pub(super) struct ListQuery {
    name: Option<String>,
    repo: Option<String>,
}

/// `GET /api/v1/applications` (`ApplicationService_List`): a `v1alpha1ApplicationList` of
/// the applications, restricted by `name` and by `repo` ("the repoURL to restrict returned
/// list applications", Argo CD's swagger). Argo CD lists only the applications the token may
/// `get` and refuses none ("RBAC", argo-cd.readthedocs.io/en/stable/operator-manual/rbac/:
/// a list shows what the subject may see), so a token without the permission sees an empty
/// list, not a 403.
pub(super) async fn list_apps(
    State(argo): State<ArgoCd>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let denied = match argo.guard(&headers, "GET applications") {
        Some(r) if r.status() == StatusCode::FORBIDDEN => true,
        Some(refused) => return refused,
        None => false,
    };
    let mut items = Vec::new();
    for name in argo.names() {
        if denied || q.name.as_ref().is_some_and(|n| *n != name) {
            continue;
        }
        let Some(app) = argo.status_of(&name) else {
            continue;
        };
        let sources = app["spec"]["sources"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![app["spec"]["source"].clone()]);
        if q.repo
            .as_ref()
            .is_some_and(|r| !sources.iter().any(|s| s["repoURL"] == *r))
        {
            continue;
        }
        items.push(app);
    }
    Json(json!({"metadata": {"resourceVersion": "1"}, "items": items})).into_response()
}

/// `AccountService.CanI` over gRPC-Web (`POST /account.AccountService/CanI`, `Content-Type:
/// application/grpc-web+proto`), which Argo CD's server hands to its gRPC-Web handler
/// (server/server.go, `handlerSwitcher`). The REST route `GET
/// /api/v1/account/can-i/{resource}/{action}/{subresource}` is not served: for an
/// application the subresource is `<project>/<name>`, and Argo CD routes REST on the decoded
/// path, where a `%2F` is a `/` too many (only its clusters', repositories' and repocreds'
/// paths are unescaped back, `bug21955Workaround`). The request is a frame (a flag byte and
/// a 4-byte big-endian length, grpc/grpc doc/PROTOCOL-WEB.md) of `CanIRequest { resource =
/// 1; action = 2; subresource = 3; }`; the answer a frame of `CanIResponse { value = 1; }`
/// (server/account/account.proto), `yes` or `no`, then the trailers frame. A token that is
/// not a session is refused as a trailers-only answer (`grpc-status: 16` in the headers);
/// a token whose RBAC grants nothing is told `no`, as the server's `CanI` answers.
pub(super) async fn can_i(State(argo): State<ArgoCd>, headers: HeaderMap, body: Bytes) -> Response {
    let grpc_web = "application/grpc-web+proto";
    let status_only = |code: u32, message: &str| {
        (
            [
                (header::CONTENT_TYPE, grpc_web.to_owned()),
                (
                    header::HeaderName::from_static("grpc-status"),
                    code.to_string(),
                ),
                (
                    header::HeaderName::from_static("grpc-message"),
                    message.to_owned(),
                ),
            ],
            "",
        )
            .into_response()
    };
    if argo.grpc_web_blocked() {
        let page = "<html><body><h1>404 Not Found</h1></body></html>";
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/html")],
            page,
        )
            .into_response();
    }
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some(grpc_web)
    {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let denied = match argo.guard(&headers, "POST AccountService.CanI (gRPC-Web)") {
        Some(r) if r.status() == StatusCode::FORBIDDEN => true,
        Some(_) => return status_only(16, "invalid session: token is not valid"),
        None => false,
    };
    let Some(fields) = can_i_fields(&body) else {
        return status_only(13, "grpc: error unmarshalling request");
    };
    let allowed = fields[0] == "applications"
        && fields[2].contains('/')
        && !denied
        && match fields[1].as_str() {
            "get" => true,
            "sync" => argo.may_sync(),
            _ => false,
        };
    let value: &[u8] = if allowed { b"yes" } else { b"no" };
    let mut out = vec![0u8, 0, 0, 0, value.len() as u8 + 2, 0x0a, value.len() as u8];
    out.extend_from_slice(value);
    let trailers = b"grpc-status:0\r\ngrpc-message:\r\n";
    out.push(0x80);
    out.extend_from_slice(&(trailers.len() as u32).to_be_bytes());
    out.extend_from_slice(trailers);
    ([(header::CONTENT_TYPE, grpc_web)], out).into_response()
}

/// `[resource, action, subresource]` of one framed `CanIRequest`; `None` when the bytes are
/// not one (only length-delimited fields of at most 127 bytes are expected here).
fn can_i_fields(body: &[u8]) -> Option<[String; 3]> {
    let (head, mut message) = body.split_first_chunk::<5>()?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if head[0] != 0 || message.len() != len {
        return None;
    }
    let mut fields: [String; 3] = Default::default();
    while let [key, n, rest @ ..] = message {
        let (n, field) = (usize::from(*n), usize::from(key >> 3));
        if key & 7 != 2 || n > 127 || rest.len() < n || !(1..=3).contains(&field) {
            return None;
        }
        fields[field - 1] = String::from_utf8(rest[..n].to_vec()).ok()?;
        message = &rest[n..];
    }
    message.is_empty().then_some(fields)
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
    if !argo.may_sync() {
        return grpc_error(
            StatusCode::FORBIDDEN,
            7,
            &format!("permission denied: applications, sync, default/{name}, sub: tugboat"),
        );
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
