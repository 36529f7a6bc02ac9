//! The GitHub stand-in's access routes: who may do what (permission, team membership, collaborators), the rate limit, the user, and GitHub App authentication.

use super::*;

pub(super) async fn permission(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, user)): RepoS,
) -> Response {
    guard!(gh, headers, o, r, "GET permission");
    // The token's own user pushes branches and merges here, which GitHub allows only with
    // write access ("Repository roles for an organization": Write can push, merge PRs): it
    // is a collaborator with `write` unless a test says otherwise.
    let perm = gh
        .lock()
        .collaborators
        .get(&user)
        .cloned()
        .or_else(|| (user == BOT).then(|| "write".into()))
        .unwrap_or_else(|| "none".into());
    let role = match perm.as_str() {
        "admin" => "admin",
        "write" => "write",
        "read" => "read",
        _ => "none",
    };
    let mut who = wire::user(&user);
    who["role_name"] = json!(role);
    Json(json!({"permission": perm, "role_name": role, "user": who})).into_response()
}

pub(super) async fn team_membership(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((org, team, user)): UrlPath<(String, String, String)>,
) -> Response {
    gh.count("GET team membership");
    if !gh.authorized(&headers) {
        return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let member = gh
        .lock()
        .teams
        .get(&format!("{org}/{team}"))
        .is_some_and(|m| m.contains(&user));
    if !member {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    Json(
        json!({"url": format!("https://api.github.com/organizations/1/team/1/memberships/{user}"),
                "role": "member", "state": "active"}),
    )
    .into_response()
}

/// The primary limit resets 30 seconds from now (asking does not count against it).
pub(super) async fn rate_limit(State(gh): State<GitHub>, headers: HeaderMap) -> Response {
    gh.count("GET rate_limit");
    if !gh.authorized(&headers) {
        return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let reset = Utc::now().timestamp() + 30;
    let core = json!({"limit": 5000, "remaining": 0, "reset": reset, "used": 5000});
    Json(json!({"resources": {"core": core, "search": {"limit": 30, "remaining": 30, "reset": reset, "used": 0}}, "rate": core})).into_response()
}

pub(super) async fn authenticated_user(State(gh): State<GitHub>, headers: HeaderMap) -> Response {
    gh.count("GET user");
    if !gh.authorized(&headers) {
        return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    Json(wire::me(BOT)).into_response()
}

/// The App JWT of a request, checked: `None` when it may go on.
pub(super) fn app_refusal(gh: &GitHub, headers: &HeaderMap) -> Option<Response> {
    let jwt = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(jwt) = jwt else {
        return Some(gh_error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        ));
    };
    if gh.app.verify_jwt(jwt).is_err() {
        return Some(gh_error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        ));
    }
    // The App's own requests (its JWT) are REST requests like any other, under the same
    // rate limits ("Rate limits for the REST API"): a throttle asked for applies here too.
    gh.take_throttle().map(|message| super::throttled(&message))
}

pub(super) async fn get_app(State(gh): State<GitHub>, headers: HeaderMap) -> Response {
    gh.count("GET app");
    if let Some(refused) = app_refusal(&gh, &headers) {
        return refused;
    }
    Json(wire::app(&gh.owner)).into_response()
}

pub(super) async fn repo_installation(
    State(gh): State<GitHub>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    gh.count("GET installation");
    if let Some(refused) = app_refusal(&gh, &headers) {
        return refused;
    }
    if owner != gh.owner || repo != gh.repo {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    Json(wire::installation(&gh.owner)).into_response()
}

pub(super) async fn create_installation_token(
    State(gh): State<GitHub>,
    UrlPath(id): UrlPath<u64>,
    headers: HeaderMap,
) -> Response {
    gh.count("POST access_tokens");
    if let Some(refused) = app_refusal(&gh, &headers) {
        return refused;
    }
    if id != crate::github_app::INSTALLATION_ID {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let (token, expires_at) = gh.app.issue();
    (
        StatusCode::CREATED,
        Json(wire::installation_token(&token, expires_at)),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct Collaborator {
    user: String,
    permission: String,
}

pub(super) async fn add_collaborator(
    State(gh): State<GitHub>,
    Json(c): Json<Collaborator>,
) -> StatusCode {
    if !matches!(c.permission.as_str(), "admin" | "write" | "read") {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    gh.add_collaborator(&c.user, &c.permission);
    StatusCode::NO_CONTENT
}
