//! The GitHub stand-in's issue routes: issues (and the pull requests GitHub lists with them), labels, comments, reactions, and pinning by GraphQL.

use super::*;

#[derive(Deserialize)]
pub(super) struct IssuesQuery {
    state: Option<String>,
    labels: Option<String>,
    per_page: Option<usize>,
    page: Option<usize>,
}

/// Issues *and* pull requests, as GitHub lists them (pull requests carry `pull_request`),
/// oldest first, filtered by state and by every one of the comma-separated labels.
pub(super) async fn list_issues(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r)): Repo,
    Query(q): Query<IssuesQuery>,
) -> Response {
    guard!(gh, headers, o, r, "GET issues");
    let state = q.state.unwrap_or_else(|| "open".into());
    let wanted: Vec<String> = q
        .labels
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let keep = |st: &str, labels: &[String]| {
        (state == "all" || st == state) && wanted.iter().all(|w| labels.contains(w))
    };
    let mut all: Vec<(u64, Value)> = {
        let g = gh.lock();
        g.issues
            .iter()
            .filter(|i| keep(&i.state, &i.labels))
            .map(|i| (i.number, gh.issue_json(i, g.comments_on(i.number).len())))
            .collect()
    };
    for p in gh.pulls().iter().filter(|p| keep(&p.state, &p.labels)) {
        all.push((p.number, gh.pr_as_issue_json(p)));
    }
    all.sort_by_key(|(n, _)| *n);
    let items = all.into_iter().map(|(_, v)| v);
    paged(&gh, &headers, "GET issues 304", items, (q.per_page, q.page))
}

impl GitHub {
    /// `PATCH /issues/{n}` of pull request `n`: its issue JSON after the edit, or `None`
    /// when `n` is no pull request.
    fn edit_pr_as_issue(&self, n: u64, u: &UpdateIssue) -> Option<Value> {
        let p = {
            let now = self.now();
            let mut g = self.lock();
            let p = g.prs.iter_mut().find(|p| p.number == n)?;
            if let Some(t) = &u.title {
                p.title.clone_from(t);
            }
            if let Some(b) = &u.body {
                p.body.clone_from(b);
            }
            if let Some(l) = &u.labels {
                g.relabel(n, BOT, l.clone(), now);
            }
            g.touch(n, now);
            g.prs.iter().find(|p| p.number == n)?.clone()
        };
        Some(self.pr_as_issue_json(&p))
    }
}

#[derive(Deserialize)]
pub(super) struct CreateIssue {
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
}

pub(super) async fn create_issue(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r)): Repo,
    Json(c): Json<CreateIssue>,
) -> Response {
    guard!(gh, headers, o, r, "POST issues");
    if c.title.trim().is_empty() {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: title is missing",
        );
    }
    let issue = {
        let now = gh.now();
        let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut g = gh.lock();
        let number = g.next_number();
        g.issues.push(IssueRec {
            number,
            title: c.title,
            body: c.body.unwrap_or_default(),
            state: "open".into(),
            state_reason: None,
            labels: Vec::new(),
            comments: vec![],
            created_at: at.clone(),
            pinned: false,
            user: BOT.to_owned(),
            updated_at: at,
        });
        // Labels given at creation are events by the creator, as on GitHub.
        g.relabel(number, BOT, c.labels, now);
        g.issues
            .iter()
            .find(|i| i.number == number)
            .cloned()
            .unwrap_or_else(|| unreachable!())
    };
    (StatusCode::CREATED, Json(gh.issue_json(&issue, 0))).into_response()
}

pub(super) async fn get_issue(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
) -> Response {
    guard!(gh, headers, o, r, "GET issue");
    let g = gh.lock();
    match g.issues.iter().find(|i| i.number == n) {
        Some(i) => Json(gh.issue_json(i, g.comments_on(n).len())).into_response(),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// GitHub allows this many pinned issues per repository.
const MAX_PINNED: usize = 3;

/// GitHub's GraphQL endpoint, serving the one mutation tugboat sends: `pinIssue` (by the
/// issue's node id). GraphQL answers `200` with `errors` when it refuses.
pub(super) async fn graphql(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    Json(q): Json<Value>,
) -> Response {
    let (owner, repo) = (gh.owner.clone(), gh.repo.clone());
    guard!(gh, headers, owner, repo, "POST graphql");
    let error = |kind: &str, message: String| {
        Json(json!({"data": null, "errors": [{"type": kind, "message": message}]})).into_response()
    };
    let query = q["query"].as_str().unwrap_or_default();
    let queue = if query.contains("enqueuePullRequest") {
        Some(super::queue::enqueue(&gh, &q["variables"]))
    } else if query.contains("dequeuePullRequest") {
        Some(super::queue::dequeue(&gh, &q["variables"]))
    } else if query.contains("mergeQueueEntry") {
        Some(super::queue::state(&gh, &q["variables"]))
    } else {
        None
    };
    if let Some(answer) = queue {
        return match answer {
            Ok(data) => Json(json!({"data": data})).into_response(),
            Err((kind, message)) => error(kind, message),
        };
    }
    if !query.contains("pinIssue") {
        return error(
            "UNSUPPORTED",
            "the sandbox serves only pinIssue, enqueuePullRequest, dequeuePullRequest and a pull request's mergeQueueEntry".into(),
        );
    }
    let id = q["variables"]["id"].as_str().unwrap_or_default().to_owned();
    let mut g = gh.lock();
    let pinned = g.issues.iter().filter(|i| i.pinned).count();
    let Some(issue) = g
        .issues
        .iter_mut()
        .find(|i| format!("I_{}", i.number) == id)
    else {
        return error(
            "NOT_FOUND",
            format!("Could not resolve to a node with the global id of '{id}'"),
        );
    };
    if !issue.pinned && pinned >= MAX_PINNED {
        return error(
            "UNPROCESSABLE",
            format!("Repository can't have more than {MAX_PINNED} pinned issues"),
        );
    }
    issue.pinned = true;
    Json(json!({"data": {"pinIssue": {"issue": {"number": issue.number}}}})).into_response()
}

#[derive(Deserialize)]
pub(super) struct UpdateIssue {
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
    state_reason: Option<String>,
    /// Replaces every label (names; created on first use, as GitHub does).
    labels: Option<Vec<String>>,
}

pub(super) async fn update_issue(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
    Json(u): Json<UpdateIssue>,
) -> Response {
    guard!(gh, headers, o, r, "PATCH issue");
    if let Some(st) = u.state.as_deref()
        && st != "open"
        && st != "closed"
    {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("Validation Failed: state '{st}' is not open or closed"),
        );
    }
    // A pull request is an issue too: its title, body and labels can be edited here.
    if let Some(pr) = gh.edit_pr_as_issue(n, &u) {
        return Json(pr).into_response();
    }
    let issue = {
        let now = gh.now();
        let mut g = gh.lock();
        if !g.issues.iter().any(|i| i.number == n) {
            return gh_error(StatusCode::NOT_FOUND, "Not Found");
        }
        if let Some(l) = &u.labels {
            g.relabel(n, BOT, l.clone(), now);
        }
        g.touch(n, now);
        let Some(i) = g.issues.iter_mut().find(|i| i.number == n) else {
            return gh_error(StatusCode::NOT_FOUND, "Not Found");
        };
        if let Some(t) = u.title {
            i.title = t;
        }
        if let Some(b) = u.body {
            i.body = b;
        }
        if let Some(st) = u.state {
            i.state_reason = match st.as_str() {
                "closed" => Some(u.state_reason.unwrap_or_else(|| "completed".into())),
                _ => (i.state == "closed").then(|| "reopened".into()),
            };
            i.state = st;
        }
        i.clone()
    };
    let comments = gh.lock().comments_on(issue.number).len();
    Json(gh.issue_json(&issue, comments)).into_response()
}

#[derive(Deserialize)]
pub(super) struct Labels {
    labels: Vec<String>,
}

pub(super) async fn add_labels(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
    Json(l): Json<Labels>,
) -> Response {
    guard!(gh, headers, o, r, "POST labels");
    let now = gh.now();
    let mut g = gh.lock();
    let Some(mut labels) = g.labels_mut(n).map(|l| l.clone()) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    for label in l.labels {
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    g.relabel(n, BOT, labels.clone(), now);
    Json(wire::labels(&gh.owner, &gh.repo, &labels)).into_response()
}

pub(super) async fn remove_label(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n, name)): UrlPath<(String, String, u64, String)>,
) -> Response {
    guard!(gh, headers, o, r, "DELETE label");
    let now = gh.now();
    let mut g = gh.lock();
    let Some(mut labels) = g.labels_mut(n).map(|l| l.clone()) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if !labels.contains(&name) {
        return gh_error(StatusCode::NOT_FOUND, "Label does not exist");
    }
    labels.retain(|l| *l != name);
    g.relabel(n, BOT, labels.clone(), now);
    Json(wire::labels(&gh.owner, &gh.repo, &labels)).into_response()
}

#[derive(Deserialize)]
pub(super) struct CommentReq {
    body: String,
}

pub(super) async fn add_comment(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
    Json(c): Json<CommentReq>,
) -> Response {
    guard!(gh, headers, o, r, "POST comment");
    let mut g = gh.lock();
    if !g.exists(n) {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let c = g.add_comment(gh.now(), n, BOT, &c.body);
    (StatusCode::CREATED, Json(comment_json(&gh, &c))).into_response()
}

/// The comments of a PR or issue, oldest first, with an ETag; `If-None-Match` with the
/// current ETag is answered 304 with no body, as GitHub does (and such a request does not
/// count against the rate limit there).
pub(super) async fn list_comments(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
    Query(q): Query<PageQuery>,
) -> Response {
    guard!(gh, headers, o, r, "GET comments");
    let all: Vec<Value> = {
        let g = gh.lock();
        if !g.exists(n) {
            return gh_error(StatusCode::NOT_FOUND, "Not Found");
        }
        g.comments
            .iter()
            .filter(|c| c.number == n)
            .map(|c| comment_json(&gh, c))
            .collect()
    };
    paged(&gh, &headers, "GET comments 304", all, (q.per_page, q.page))
}

#[derive(Deserialize)]
pub(super) struct ReactionReq {
    content: String,
}

pub(super) async fn add_reaction(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, id)): RepoN,
    Json(req): Json<ReactionReq>,
) -> Response {
    guard!(gh, headers, o, r, "POST reaction");
    const CONTENTS: [&str; 8] = [
        "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
    ];
    if !CONTENTS.contains(&req.content.as_str()) {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "Validation Failed: content '{}' is not a reaction",
                req.content
            ),
        );
    }
    let mut g = gh.lock();
    let Some(c) = g.comments.iter_mut().find(|c| c.id == id) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let mine = (BOT.to_owned(), req.content.clone());
    // GitHub answers 200 for a reaction that already exists, 201 for a new one.
    let code = if c.reactions.contains(&mine) {
        StatusCode::OK
    } else {
        c.reactions.push(mine);
        StatusCode::CREATED
    };
    (
        code,
        Json(wire::reaction(
            id * 10 + c.reactions.len() as u64,
            BOT,
            &req.content,
            &gh.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )),
    )
        .into_response()
}
