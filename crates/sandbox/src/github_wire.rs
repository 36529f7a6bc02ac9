//! The GitHub stand-in's objects in full: every property GitHub's OpenAPI description
//! (`@octokit/openapi`, `api.github.com.json`) requires of a user, repository, label, pull
//! request, issue, comment, review, reaction and status, so that the contract tests can hold
//! the stand-in to that description.

use serde_json::{Value, json};

pub(crate) const API: &str = "https://api.github.com";
const WEB: &str = "https://github.com";

/// A `simple-user`; `kind` is `User`, `Bot` or `Organization`.
pub fn user(login: &str) -> Value {
    let kind = if login.ends_with("[bot]") {
        "Bot"
    } else {
        "User"
    };
    account(login, kind)
}

pub fn account(login: &str, kind: &str) -> Value {
    let id = 100 + login.bytes().map(u64::from).sum::<u64>();
    // As GitHub writes an app's login in addresses: `tugboat%5Bbot%5D`.
    let path = login.replace('[', "%5B").replace(']', "%5D");
    let u = format!("{API}/users/{path}");
    json!({
        "login": login, "id": id, "node_id": format!("U_{id}"), "type": kind, "site_admin": false,
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"), "gravatar_id": "",
        "url": u, "html_url": format!("{WEB}/{path}"),
        "followers_url": format!("{u}/followers"), "following_url": format!("{u}/following{{/other_user}}"),
        "gists_url": format!("{u}/gists{{/gist_id}}"), "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{u}/subscriptions"), "organizations_url": format!("{u}/orgs"),
        "repos_url": format!("{u}/repos"), "events_url": format!("{u}/events{{/privacy}}"),
        "received_events_url": format!("{u}/received_events"),
    })
}

/// The `…_url` properties of a repository: name and what follows the repository's API address.
const REPO_URLS: [(&str, &str); 37] = [
    ("archive_url", "/{archive_format}{/ref}"),
    ("assignees_url", "/assignees{/user}"),
    ("blobs_url", "/git/blobs{/sha}"),
    ("branches_url", "/branches{/branch}"),
    ("collaborators_url", "/collaborators{/collaborator}"),
    ("comments_url", "/comments{/number}"),
    ("commits_url", "/commits{/sha}"),
    ("compare_url", "/compare/{base}...{head}"),
    ("contents_url", "/contents/{+path}"),
    ("contributors_url", "/contributors"),
    ("deployments_url", "/deployments"),
    ("downloads_url", "/downloads"),
    ("events_url", "/events"),
    ("forks_url", "/forks"),
    ("git_commits_url", "/git/commits{/sha}"),
    ("git_refs_url", "/git/refs{/sha}"),
    ("git_tags_url", "/git/tags{/sha}"),
    ("hooks_url", "/hooks"),
    ("issue_comment_url", "/issues/comments{/number}"),
    ("issue_events_url", "/issues/events{/number}"),
    ("issues_url", "/issues{/number}"),
    ("keys_url", "/keys{/key_id}"),
    ("labels_url", "/labels{/name}"),
    ("languages_url", "/languages"),
    ("merges_url", "/merges"),
    ("milestones_url", "/milestones{/number}"),
    (
        "notifications_url",
        "/notifications{?since,all,participating}",
    ),
    ("pulls_url", "/pulls{/number}"),
    ("releases_url", "/releases{/id}"),
    ("stargazers_url", "/stargazers"),
    ("statuses_url", "/statuses/{sha}"),
    ("subscribers_url", "/subscribers"),
    ("subscription_url", "/subscription"),
    ("tags_url", "/tags"),
    ("teams_url", "/teams"),
    ("trees_url", "/git/trees{/sha}"),
    ("url", ""),
];

/// The authenticated user (`GET /user`), as a `public-user`.
pub fn me(login: &str) -> Value {
    let mut u = user(login);
    let more = json!({
        "name": null, "company": null, "blog": "", "location": null, "email": null, "hireable": null,
        "bio": null, "public_repos": 0, "public_gists": 0, "followers": 0, "following": 0,
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
    });
    if let (Some(u), Value::Object(more)) = (u.as_object_mut(), more) {
        u.extend(more);
    }
    u
}

/// A `minimal-repository`.
pub fn minimal_repository(owner: &str, repo: &str) -> Value {
    let api = format!("{API}/repos/{owner}/{repo}");
    let mut r = json!({
        "id": 42, "node_id": "R_42", "name": repo, "full_name": format!("{owner}/{repo}"),
        "owner": account(owner, "Organization"), "private": true, "fork": false, "description": null,
        "html_url": format!("{WEB}/{owner}/{repo}"),
    });
    if let Some(o) = r.as_object_mut() {
        for (name, rest) in REPO_URLS {
            o.insert(name.to_owned(), json!(format!("{api}{rest}")));
        }
    }
    r
}

/// A `repository`.
pub fn repository(owner: &str, repo: &str) -> Value {
    let mut r = minimal_repository(owner, repo);
    let more = json!({
        "clone_url": format!("{WEB}/{owner}/{repo}.git"), "git_url": format!("git://github.com/{owner}/{repo}.git"),
        "ssh_url": format!("git@github.com:{owner}/{repo}.git"), "svn_url": format!("{WEB}/{owner}/{repo}"),
        "mirror_url": null, "homepage": null, "language": null, "license": null, "default_branch": "main",
        "forks": 0, "forks_count": 0, "open_issues": 0, "open_issues_count": 0, "size": 0,
        "stargazers_count": 0, "watchers": 0, "watchers_count": 0,
        "has_downloads": true, "has_issues": true, "has_projects": false, "has_wiki": false, "has_pages": false,
        "archived": false, "disabled": false,
        "pushed_at": "2026-01-01T00:00:00Z", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
    });
    if let (Some(r), Value::Object(more)) = (r.as_object_mut(), more) {
        r.extend(more);
    }
    r
}

/// A `label`.
pub fn label(owner: &str, repo: &str, name: &str) -> Value {
    let id = 7000 + name.bytes().map(u64::from).sum::<u64>();
    json!({
        "id": id, "node_id": format!("LA_{id}"), "name": name, "description": "", "default": false,
        "url": format!("{API}/repos/{owner}/{repo}/labels/{}", name.replace(':', "%3A")),
        "color": if name.starts_with("tugboat") { "0e8a16" } else { "ededed" },
    })
}

pub fn labels(owner: &str, repo: &str, names: &[String]) -> Vec<Value> {
    names.iter().map(|n| label(owner, repo, n)).collect()
}

/// What a pull request or issue is, for the objects below.
pub struct Item<'a> {
    pub owner: &'a str,
    pub repo: &'a str,
    pub number: u64,
    pub title: &'a str,
    pub body: &'a str,
    pub state: &'a str,
    pub labels: &'a [String],
    pub created_at: &'a str,
    pub updated_at: &'a str,
    pub closed_at: Option<&'a str>,
    pub comments: usize,
    /// Who opened it.
    pub user: &'a str,
}

/// An `issue` (with `pull_request` added by the caller for a pull request).
pub fn issue(i: &Item<'_>) -> Value {
    let (o, r, n) = (i.owner, i.repo, i.number);
    let u = format!("{API}/repos/{o}/{r}/issues/{n}");
    json!({
        "id": 5000 + n, "node_id": format!("I_{n}"), "number": n, "url": u,
        "repository_url": format!("{API}/repos/{o}/{r}"), "labels_url": format!("{u}/labels{{/name}}"),
        "comments_url": format!("{u}/comments"), "events_url": format!("{u}/events"),
        "html_url": format!("{WEB}/{o}/{r}/issues/{n}"),
        "state": i.state, "title": i.title, "body": i.body, "locked": false,
        "user": user(i.user), "assignee": null, "assignees": [], "milestone": null,
        "labels": labels(o, r, i.labels), "comments": i.comments, "author_association": "NONE",
        "created_at": i.created_at, "updated_at": i.updated_at, "closed_at": i.closed_at,
    })
}

/// A branch end of a pull request (`head` or `base`).
pub fn end(owner: &str, repo: &str, branch: &str, sha: &str) -> Value {
    json!({"label": format!("{owner}:{branch}"), "ref": branch, "sha": sha,
           "user": account(owner, "Organization"), "repo": repository(owner, repo)})
}

/// A `pull-request` (also a valid `pull-request-simple`).
pub fn pull_request(
    i: &Item<'_>,
    head: Value,
    base: Value,
    merged_at: Option<&str>,
    merge_sha: Option<&str>,
) -> Value {
    let (o, r, n) = (i.owner, i.repo, i.number);
    let u = format!("{API}/repos/{o}/{r}/pulls/{n}");
    let html = format!("{WEB}/{o}/{r}/pull/{n}");
    let issue_url = format!("{API}/repos/{o}/{r}/issues/{n}");
    let statuses = format!(
        "{API}/repos/{o}/{r}/statuses/{}",
        head["sha"].as_str().unwrap_or_default()
    );
    let links = json!({
        "self": {"href": u}, "html": {"href": html}, "issue": {"href": issue_url},
        "comments": {"href": format!("{issue_url}/comments")},
        "review_comments": {"href": format!("{u}/comments")},
        "review_comment": {"href": format!("{API}/repos/{o}/{r}/pulls/comments{{/number}}")},
        "commits": {"href": format!("{u}/commits")}, "statuses": {"href": statuses},
    });
    let mut pr = json!({
        "id": 1000 + n, "node_id": format!("PR_{n}"), "number": n, "url": u, "html_url": html,
        "diff_url": format!("{html}.diff"), "patch_url": format!("{html}.patch"), "issue_url": issue_url,
        "commits_url": format!("{u}/commits"), "review_comments_url": format!("{u}/comments"),
        "review_comment_url": format!("{API}/repos/{o}/{r}/pulls/comments{{/number}}"),
        "comments_url": format!("{issue_url}/comments"), "statuses_url": statuses, "_links": links,
        "state": i.state, "title": i.title, "body": i.body, "locked": false, "draft": false,
        "user": user(i.user), "assignee": null, "assignees": [], "requested_reviewers": [],
        "requested_teams": [], "milestone": null, "labels": labels(o, r, i.labels),
        "head": head, "base": base, "author_association": "NONE", "auto_merge": null,
    });
    let merge = json!({
        "merged": merged_at.is_some(), "merged_at": merged_at, "merge_commit_sha": merge_sha,
        "merged_by": if merged_at.is_some() { user(super::github::BOT) } else { Value::Null },
        "mergeable": if i.state == "open" { json!(true) } else { Value::Null },
        "mergeable_state": if i.state == "open" { "clean" } else { "unknown" },
        "maintainer_can_modify": false, "comments": i.comments, "review_comments": 0,
        "commits": 1, "additions": 1, "deletions": 1, "changed_files": 1,
        "created_at": i.created_at, "updated_at": i.updated_at, "closed_at": i.closed_at,
    });
    if let (Some(pr), Value::Object(merge)) = (pr.as_object_mut(), merge) {
        pr.extend(merge);
    }
    pr
}

/// An `issue-comment`.
pub fn comment(owner: &str, repo: &str, number: u64, c: &Comment<'_>) -> Value {
    let u = format!("{API}/repos/{owner}/{repo}/issues/comments/{}", c.id);
    json!({
        "id": c.id, "node_id": format!("IC_{}", c.id), "url": u, "body": c.body,
        "html_url": format!("{WEB}/{owner}/{repo}/issues/{number}#issuecomment-{}", c.id),
        "issue_url": format!("{API}/repos/{owner}/{repo}/issues/{number}"),
        "user": user(c.user), "author_association": if c.user.ends_with("[bot]") { "NONE" } else { "COLLABORATOR" },
        "created_at": c.created_at, "updated_at": c.updated_at,
    })
}

/// What [`comment`] needs of a comment.
pub struct Comment<'a> {
    pub id: u64,
    pub user: &'a str,
    pub body: &'a str,
    pub created_at: &'a str,
    pub updated_at: &'a str,
}

/// A `reaction`.
pub fn reaction(id: u64, login: &str, content: &str, at: &str) -> Value {
    json!({"id": id, "node_id": format!("REA_{id}"), "user": user(login), "content": content, "created_at": at})
}

/// A `pull-request-review`.
pub fn review(owner: &str, repo: &str, number: u64, r: &Review<'_>) -> Value {
    let html = format!(
        "{WEB}/{owner}/{repo}/pull/{number}#pullrequestreview-{}",
        r.id
    );
    let pr = format!("{API}/repos/{owner}/{repo}/pulls/{number}");
    json!({
        "id": r.id, "node_id": format!("PRR_{}", r.id), "user": user(r.user), "body": "",
        "state": r.state, "commit_id": r.commit_id, "html_url": html, "pull_request_url": pr,
        "_links": {"html": {"href": html}, "pull_request": {"href": pr}},
        "author_association": "COLLABORATOR", "submitted_at": r.submitted_at,
    })
}

/// What [`review`] needs of a review.
pub struct Review<'a> {
    pub id: u64,
    pub user: &'a str,
    pub state: &'a str,
    pub commit_id: &'a str,
    pub submitted_at: &'a str,
}

/// A `status` (as `POST …/statuses/{sha}` answers) or, without `creator`, a
/// `simple-commit-status`.
pub fn status(owner: &str, repo: &str, sha: &str, s: &Status<'_>) -> Value {
    let id = 3000 + s.context.bytes().map(u64::from).sum::<u64>();
    json!({
        "id": id, "node_id": format!("SC_{id}"), "url": format!("{API}/repos/{owner}/{repo}/statuses/{sha}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/1?v=4"),
        "state": s.state, "description": s.description, "target_url": null, "context": s.context,
        "created_at": s.at, "updated_at": s.at, "creator": user(super::github::BOT),
    })
}

/// What [`status`] needs of a commit status.
pub struct Status<'a> {
    pub context: &'a str,
    pub state: &'a str,
    pub description: &'a str,
    pub at: &'a str,
}

/// The permissions tugboat's App asks for (and the install chapter, docs/install.md, lists).
fn app_permissions() -> Value {
    json!({
        "contents": "write", "pull_requests": "write", "issues": "write",
        "statuses": "write", "checks": "write", "members": "read", "metadata": "read",
    })
}

/// An `integration`: the sandbox's GitHub App (`GET /app`).
pub fn app(owner: &str) -> Value {
    use crate::github_app::{APP_ID, APP_SLUG};
    json!({
        "id": APP_ID, "slug": APP_SLUG, "node_id": format!("A_{APP_ID}"),
        "client_id": "Iv1.sandbox", "owner": account(owner, "Organization"),
        "name": "tugboat (sandbox)", "description": "tugboat's sandbox App",
        "external_url": WEB, "html_url": format!("{WEB}/apps/{APP_SLUG}"),
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        "permissions": app_permissions(),
        "events": ["issue_comment", "pull_request", "pull_request_review", "check_run"],
        "installations_count": 1,
    })
}

/// An `integration` that is not tugboat's: GitHub Actions (`github-actions`, App id 15368 on
/// github.com), whose check runs a workflow's jobs report.
pub fn actions_app(slug: &str) -> Value {
    json!({
        "id": 15368, "slug": slug, "node_id": "MDM6QXBwMTUzNjg=",
        "owner": account("github", "Organization"),
        "name": "GitHub Actions", "description": "Automate your workflow from idea to production",
        "external_url": "https://help.github.com/en/actions",
        "html_url": "https://github.com/apps/github-actions",
        "created_at": "2018-07-30T09:30:17Z", "updated_at": "2024-04-10T20:33:16Z",
        "permissions": {"actions": "write", "checks": "write", "contents": "write",
                        "metadata": "read", "pull_requests": "write", "statuses": "write"},
        "events": ["check_run", "pull_request", "push"],
    })
}

/// An `installation` of the sandbox's App on `owner` (`GET /repos/{owner}/{repo}/installation`).
pub fn installation(owner: &str) -> Value {
    use crate::github_app::{APP_ID, APP_SLUG, INSTALLATION_ID};
    json!({
        "id": INSTALLATION_ID, "account": account(owner, "Organization"),
        "repository_selection": "selected",
        "access_tokens_url": format!("{API}/app/installations/{INSTALLATION_ID}/access_tokens"),
        "repositories_url": format!("{API}/installation/repositories"),
        "html_url": format!("{WEB}/organizations/{owner}/settings/installations/{INSTALLATION_ID}"),
        "app_id": APP_ID, "target_id": 1, "target_type": "Organization",
        "permissions": app_permissions(),
        "events": ["issue_comment", "pull_request", "pull_request_review", "check_run"],
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        "single_file_name": null, "app_slug": APP_SLUG, "suspended_by": null, "suspended_at": null,
    })
}

/// An `installation-token` (`POST /app/installations/{id}/access_tokens`).
pub fn installation_token(token: &str, expires_at: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "token": token,
        "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "permissions": app_permissions(),
        "repository_selection": "selected",
    })
}

/// A check run as the stand-in keeps it.
pub struct CheckRun<'a> {
    pub id: u64,
    pub name: &'a str,
    pub head_sha: &'a str,
    pub status: &'a str,
    pub conclusion: Option<&'a str>,
    pub title: Option<&'a str>,
    pub summary: Option<&'a str>,
    pub details_url: Option<&'a str>,
    pub started_at: &'a str,
    pub completed_at: Option<&'a str>,
}

/// A `check-run`, with the open pull requests whose head is its commit (number, head branch,
/// base branch, base sha).
pub fn check_run(
    owner: &str,
    repo: &str,
    c: &CheckRun<'_>,
    prs: &[(u64, &str, &str, &str)],
    other_app: Option<&str>,
) -> Value {
    let url = format!("{API}/repos/{owner}/{repo}/check-runs/{}", c.id);
    let app = match other_app {
        Some(slug) => actions_app(slug),
        None => app(owner),
    };
    let repo_min = json!({"id": 1, "url": format!("{API}/repos/{owner}/{repo}"), "name": repo});
    let pulls: Vec<Value> = prs
        .iter()
        .map(|(n, head, base, base_sha)| {
            json!({
                "id": 1000 + n, "number": n,
                "url": format!("{API}/repos/{owner}/{repo}/pulls/{n}"),
                "head": {"ref": head, "sha": c.head_sha, "repo": repo_min},
                "base": {"ref": base, "sha": base_sha, "repo": repo_min},
            })
        })
        .collect();
    json!({
        "id": c.id, "node_id": format!("CR_{}", c.id), "head_sha": c.head_sha, "name": c.name,
        "external_id": "", "url": url,
        "html_url": format!("{WEB}/{owner}/{repo}/runs/{}", c.id),
        "details_url": c.details_url, "status": c.status, "conclusion": c.conclusion,
        "started_at": c.started_at, "completed_at": c.completed_at,
        "output": {
            "title": c.title, "summary": c.summary, "text": null, "annotations_count": 0,
            "annotations_url": format!("{url}/annotations"),
        },
        "check_suite": {"id": 1},
        "app": app,
        "pull_requests": pulls,
    })
}

/// A `short-blob` (`POST /repos/{owner}/{repo}/git/blobs`).
pub fn blob(owner: &str, repo: &str, sha: &str) -> Value {
    json!({"sha": sha, "url": format!("{API}/repos/{owner}/{repo}/git/blobs/{sha}")})
}

/// A `git-tree` (`POST /repos/{owner}/{repo}/git/trees`): its top-level entries (path, mode,
/// type, sha).
pub fn tree(
    owner: &str,
    repo: &str,
    sha: &str,
    entries: &[(String, String, String, String)],
) -> Value {
    let tree: Vec<Value> = entries
        .iter()
        .map(|(path, mode, kind, sha)| {
            json!({"path": path, "mode": mode, "type": kind, "sha": sha,
                   "url": format!("{API}/repos/{owner}/{repo}/git/{kind}s/{sha}")})
        })
        .collect();
    json!({"sha": sha, "url": format!("{API}/repos/{owner}/{repo}/git/trees/{sha}"),
           "tree": tree, "truncated": false})
}

/// A commit's author or committer.
pub struct Person<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub date: &'a str,
}

/// A commit as GitHub describes it.
pub struct GitCommit<'a> {
    pub sha: &'a str,
    pub author: Person<'a>,
    pub committer: Person<'a>,
    pub message: &'a str,
    pub tree: &'a str,
    pub parents: &'a [String],
    /// Whether GitHub made and signed it.
    pub verified: bool,
}

/// A `git-commit` (`POST /repos/{owner}/{repo}/git/commits`), verified when GitHub signed it.
pub fn git_commit(owner: &str, repo: &str, c: &GitCommit<'_>) -> Value {
    let person = |p: &Person<'_>| json!({"name": p.name, "email": p.email, "date": p.date});
    let parents: Vec<Value> = c
        .parents
        .iter()
        .map(|p| {
            json!({"sha": p, "url": format!("{API}/repos/{owner}/{repo}/git/commits/{p}"),
                   "html_url": format!("{WEB}/{owner}/{repo}/commit/{p}")})
        })
        .collect();
    let (sha, tree, verified) = (c.sha, c.tree, c.verified);
    json!({
        "sha": sha, "node_id": format!("C_{sha}"),
        "url": format!("{API}/repos/{owner}/{repo}/git/commits/{sha}"),
        "html_url": format!("{WEB}/{owner}/{repo}/commit/{sha}"),
        "author": person(&c.author), "committer": person(&c.committer), "message": c.message,
        "tree": {"sha": tree, "url": format!("{API}/repos/{owner}/{repo}/git/trees/{tree}")},
        "parents": parents,
        "verification": {
            "verified": verified,
            "reason": if verified { "valid" } else { "unsigned" },
            "signature": verified.then_some("-----BEGIN PGP SIGNATURE-----\n(sandbox)\n-----END PGP SIGNATURE-----"),
            "payload": verified.then_some(c.message),
            "verified_at": verified.then_some(c.committer.date),
        },
    })
}

/// A `git-ref`.
pub fn git_ref(owner: &str, repo: &str, name: &str, sha: &str) -> Value {
    json!({
        "ref": name, "node_id": format!("REF_{sha}"),
        "url": format!("{API}/repos/{owner}/{repo}/git/{name}"),
        "object": {"type": "commit", "sha": sha,
                   "url": format!("{API}/repos/{owner}/{repo}/git/commits/{sha}")},
    })
}

/// A branch's head commit as a `branch-with-protection` carries it (a `commit`).
pub struct BranchHead<'a> {
    pub sha: &'a str,
    pub message: &'a str,
    pub tree: &'a str,
    pub date: &'a str,
    pub parents: &'a [String],
}

/// A `branch-with-protection` (`GET /repos/{owner}/{repo}/branches/{branch}`): what anyone
/// who may read the repository sees of its classic branch protection, the required status
/// checks among it.
pub fn branch(
    owner: &str,
    repo: &str,
    name: &str,
    head: &BranchHead<'_>,
    checks: &[String],
) -> Value {
    let r = format!("{API}/repos/{owner}/{repo}");
    let sha = head.sha;
    let parents: Vec<Value> = head
        .parents
        .iter()
        .map(|p| json!({"sha": p, "url": format!("{r}/commits/{p}"), "html_url": format!("{WEB}/{owner}/{repo}/commit/{p}")}))
        .collect();
    let person = json!({"name": "GitHub", "email": "noreply@github.com", "date": head.date});
    let required: Vec<Value> = checks
        .iter()
        .map(|c| json!({"context": c, "app_id": null}))
        .collect();
    let protection_url = format!("{r}/branches/{name}/protection");
    json!({
        "name": name,
        "commit": {
            "url": format!("{r}/commits/{sha}"), "sha": sha, "node_id": format!("C_{sha}"),
            "html_url": format!("{WEB}/{owner}/{repo}/commit/{sha}"),
            "comments_url": format!("{r}/commits/{sha}/comments"),
            "commit": {
                "url": format!("{r}/git/commits/{sha}"), "author": person, "committer": person,
                "message": head.message, "comment_count": 0,
                "tree": {"sha": head.tree, "url": format!("{r}/git/trees/{}", head.tree)},
            },
            "author": null, "committer": null, "parents": parents,
        },
        "_links": {"html": format!("{WEB}/{owner}/{repo}/tree/{name}"), "self": format!("{r}/branches/{name}")},
        "protected": !checks.is_empty(),
        "protection": {
            "enabled": !checks.is_empty(),
            "required_status_checks": {
                "enforcement_level": if checks.is_empty() { "off" } else { "non_admins" },
                "contexts": checks, "checks": required,
            },
        },
        "protection_url": protection_url,
    })
}
