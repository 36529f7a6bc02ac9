//! The GitHub stand-in's pull request routes (pulls, merges, reviews, commit statuses), lists
//! paged and answered conditionally as GitHub answers them, and the test controls.

use super::*;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    state: Option<String>,
    head: Option<String>,
    base: Option<String>,
}

pub(super) async fn list_pulls(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r)): Repo,
    Query(q): Query<ListQuery>,
) -> Response {
    guard!(gh, headers, o, r, "GET pulls");
    let state = q.state.unwrap_or_else(|| "open".into());
    let prs: Vec<Value> = gh
        .pulls()
        .iter()
        .filter(|p| state == "all" || p.state == state)
        .filter(|p| {
            q.head
                .as_ref()
                .is_none_or(|h| *h == format!("{}:{}", gh.owner, p.head))
        })
        .filter(|p| q.base.as_ref().is_none_or(|b| *b == p.base))
        .map(|p| gh.pr_json(p))
        .collect();
    etagged(
        &gh,
        &headers,
        "GET pulls 304",
        Value::Array(prs).to_string(),
    )
}

/// A list answer with a weak ETag of its body; `If-None-Match` with that ETag gets a bodiless
/// 304 (counted as `op304`), as GitHub answers conditional requests.
pub(crate) fn etagged(gh: &GitHub, headers: &HeaderMap, op304: &str, body: String) -> Response {
    let etag = format!(
        "W/\"{}\"",
        hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes())[..16])
    );
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    if matches {
        gh.count(op304);
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::ETAG, etag),
            (
                header::CONTENT_TYPE,
                "application/json; charset=utf-8".to_owned(),
            ),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct CreatePull {
    title: String,
    head: String,
    base: String,
    #[serde(default)]
    body: Option<String>,
}

pub(super) async fn create_pull(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r)): Repo,
    Json(c): Json<CreatePull>,
) -> Response {
    guard!(gh, headers, o, r, "POST pulls");
    if gh.branch_sha(&c.head).is_none() {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: head does not exist",
        );
    }
    let pr = {
        let mut g = gh.lock();
        if g.prs
            .iter()
            .any(|p| p.state == "open" && p.head == c.head && p.base == c.base)
        {
            return gh_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!(
                    "Validation Failed: A pull request already exists for {}:{}.",
                    gh.owner, c.head
                ),
            );
        }
        let pr = Pr {
            number: g.next_number(),
            title: c.title,
            body: c.body.unwrap_or_default(),
            head: c.head,
            base: c.base,
            state: "open".into(),
            merged_at: None,
            merge_sha: None,
            closed_head: None,
            labels: vec![],
            comments: vec![],
            created_at: gh.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            user: BOT.to_owned(),
            updated_at: gh.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        g.prs.push(pr.clone());
        pr
    };
    (StatusCode::CREATED, Json(gh.pr_json(&pr))).into_response()
}

pub(super) async fn get_pull(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
) -> Response {
    guard!(gh, headers, o, r, "GET pull");
    match gh.pulls().iter().find(|p| p.number == n) {
        Some(p) => Json(gh.pr_json(p)).into_response(),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

#[derive(Deserialize)]
pub(super) struct UpdatePull {
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
}

pub(super) async fn update_pull(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
    Json(u): Json<UpdatePull>,
) -> Response {
    guard!(gh, headers, o, r, "PATCH pull");
    let now = gh.now();
    let pr = {
        let mut g = gh.lock();
        g.touch(n, now);
        let Some(p) = g.prs.iter_mut().find(|p| p.number == n) else {
            return gh_error(StatusCode::NOT_FOUND, "Not Found");
        };
        if let Some(t) = u.title {
            p.title = t;
        }
        if let Some(b) = u.body {
            p.body = b;
        }
        if let Some(st) = u.state {
            if p.merged_at.is_some() {
                return gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation Failed: a merged pull request cannot change state",
                );
            }
            p.state = st;
        }
        p.clone()
    };
    let head = gh.branch_sha(&pr.head);
    if pr.state == "closed"
        && let Some(p) = gh.lock().prs.iter_mut().find(|p| p.number == n)
    {
        p.closed_head = head;
    }
    Json(gh.pr_json(&pr)).into_response()
}

#[derive(Deserialize)]
pub(super) struct MergeReq {
    sha: Option<String>,
    commit_title: Option<String>,
    merge_method: Option<String>,
}

pub(super) async fn merge_pull(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
    Json(m): Json<MergeReq>,
) -> Response {
    guard!(gh, headers, o, r, "PUT merge");
    // Held from the look at the PR's state to its update, as GitHub does: of two merges of one
    // PR at the same moment, the second finds it merged and is refused.
    let _merging = gh.git_lock.lock().await;
    let Some(pr) = gh.pulls().into_iter().find(|p| p.number == n) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if pr.state != "open" {
        return gh_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Pull Request is not mergeable",
        );
    }
    let head = gh.branch_sha(&pr.head).unwrap_or_default();
    if m.sha.as_ref().is_some_and(|s| *s != head) {
        return gh_error(
            StatusCode::CONFLICT,
            "Head branch was modified. Review and try the merge again.",
        );
    }
    let base_head = gh.branch_sha(&pr.base).unwrap_or_default();
    if gh.lock().require_up_to_date && !gh.contains(&head, &base_head) {
        return gh_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "1 of 1 required status checks are expected.",
        );
    }
    if let Some(refused) = protection::merge_refusal(&gh, n, &head, &base_head) {
        return refused;
    }
    let method = match m.merge_method.as_deref().unwrap_or("merge") {
        "squash" => MergeMethod::Squash,
        "merge" => MergeMethod::Merge,
        "rebase" => MergeMethod::Rebase,
        other => {
            return gh_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("Validation Failed: merge_method '{other}'"),
            );
        }
    };
    let title = match (&method, m.commit_title) {
        (MergeMethod::Squash, t) => format!("{} (#{n})", t.unwrap_or_else(|| pr.title.clone())),
        (MergeMethod::Merge, Some(t)) => t,
        (MergeMethod::Merge, None) => format!(
            "Merge pull request #{n} from {}/{}\n\n{}",
            gh.owner, pr.head, pr.title
        ),
        (MergeMethod::Rebase, _) => String::new(),
    };
    match gh.merge_into(&pr.base, &pr.head, &title, &method) {
        Ok(sha) => {
            gh.merged_into(&pr.base, n, &sha, &head);
            Json(json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}))
                .into_response()
        }
        Err((code, msg)) => gh_error(code, &msg),
    }
}

#[derive(Deserialize)]
pub(super) struct StatusReq {
    state: String,
    context: Option<String>,
    description: Option<String>,
}

pub(super) async fn add_status(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, sha)): RepoS,
    Json(s): Json<StatusReq>,
) -> Response {
    guard!(gh, headers, o, r, "POST status");
    if !matches!(
        s.state.as_str(),
        "success" | "pending" | "failure" | "error"
    ) {
        return gh_error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed: state");
    }
    let context = s.context.unwrap_or_else(|| "default".into());
    let description = s.description.unwrap_or_default();
    gh.lock().set_status(
        crate::github_people::StatusRec {
            id: 0,
            sha: sha.clone(),
            context: context.clone(),
            state: s.state.clone(),
            creator: BOT.to_owned(),
            created_at: gh.now(),
        },
        &description,
    );
    let at = gh.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let status = wire::status(
        &gh.owner,
        &gh.repo,
        &sha,
        &wire::Status {
            context: &context,
            state: &s.state,
            description: &description,
            at: &at,
        },
    );
    (StatusCode::CREATED, Json(status)).into_response()
}

pub(super) async fn combined_status(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, sha)): RepoS,
) -> Response {
    guard!(gh, headers, o, r, "GET combined status");
    let list = gh.statuses(&sha);
    let state = if list.iter().any(|(_, s, _)| s == "failure" || s == "error") {
        "failure"
    } else if list.iter().all(|(_, s, _)| s == "success") && !list.is_empty() {
        "success"
    } else {
        "pending"
    };
    let at = gh.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let statuses: Vec<Value> = list
        .iter()
        .map(|(c, s, d)| {
            let mut v = wire::status(
                &gh.owner,
                &gh.repo,
                &sha,
                &wire::Status {
                    context: c,
                    state: s,
                    description: d,
                    at: &at,
                },
            );
            if let Some(o) = v.as_object_mut() {
                o.remove("creator");
            }
            v
        })
        .collect();
    let commit = format!(
        "https://api.github.com/repos/{}/{}/commits/{sha}",
        gh.owner, gh.repo
    );
    Json(
        json!({"state": state, "sha": sha, "total_count": statuses.len(), "statuses": statuses,
                "repository": wire::minimal_repository(&gh.owner, &gh.repo),
                "commit_url": commit, "url": format!("{commit}/status")}),
    )
    .into_response()
}

pub(super) async fn dump(State(gh): State<GitHub>) -> Json<Value> {
    Json(Value::Array(
        gh.pulls()
            .iter()
            .map(|p| {
                let mut v = gh.pr_json(p);
                v["comments"] = json!(
                    p.comments
                        .iter()
                        .map(|(u, b)| json!({"user": u, "body": b}))
                        .collect::<Vec<_>>()
                );
                v
            })
            .collect(),
    ))
}

pub(super) async fn stats(State(gh): State<GitHub>) -> Json<BTreeMap<String, u64>> {
    Json(gh.calls())
}

#[derive(Deserialize)]
pub(super) struct CommentAs {
    pr: u64,
    user: String,
    body: String,
}

pub(super) async fn comment_as(State(gh): State<GitHub>, Json(c): Json<CommentAs>) -> Response {
    match gh.comment_as(c.pr, &c.user, &c.body) {
        Some(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// One page of a list, with GitHub's paging defaults (30 a page, at most 100; pages from 1).
pub(crate) fn page_of<T>(
    items: impl IntoIterator<Item = T>,
    per_page: Option<usize>,
    page: Option<usize>,
) -> Vec<T> {
    let per_page = per_page.unwrap_or(30).clamp(1, 100);
    let page = page.unwrap_or(1).max(1);
    items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect()
}

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    pub(crate) per_page: Option<usize>,
    pub(crate) page: Option<usize>,
}

/// One page (`per_page`, `page`) of a list, answered as GitHub answers lists: paged, with a
/// weak ETag that a conditional request gets a 304 for (counted as `op304`).
pub(crate) fn paged(
    gh: &GitHub,
    headers: &HeaderMap,
    op304: &str,
    items: impl IntoIterator<Item = Value>,
    (per_page, page): (Option<usize>, Option<usize>),
) -> Response {
    let body = Value::Array(page_of(items, per_page, page)).to_string();
    etagged(gh, headers, op304, body)
}

pub(super) async fn list_reviews(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): RepoN,
    Query(q): Query<PageQuery>,
) -> Response {
    guard!(gh, headers, o, r, "GET reviews");
    let reviews: Vec<Value> = gh
        .lock()
        .reviews
        .iter()
        .filter(|v| v.number == n)
        .map(|v| {
            wire::review(
                &gh.owner,
                &gh.repo,
                n,
                &wire::Review {
                    id: v.id,
                    user: &v.user,
                    state: &v.state,
                    commit_id: &v.commit_id,
                    // Not kept: a fixed time keeps the list's ETag stable.
                    submitted_at: "2026-01-01T00:00:00Z",
                },
            )
        })
        .collect();
    paged(
        &gh,
        &headers,
        "GET reviews 304",
        reviews,
        (q.per_page, q.page),
    )
}
