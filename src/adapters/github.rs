//! The GitHub adapter (octocrab): pull requests, merges, comments, commit statuses, and the
//! issues that carry rescan reports.
//!
//! Uses octocrab's authenticated route methods with small response types of our own, so
//! only the fields tugboat reads must be present.

use async_trait::async_trait;
use octocrab::Octocrab;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ports::{
    ChecksState, ErrorKind, Forge, Issue, NewPullRequest, PortError, PortResult, PullRequest,
    StatusState,
};
use crate::secret::Secret;
use crate::telemetry::ApiMetrics;

/// A GitHub repository through octocrab.
#[derive(Clone)]
pub struct GitHub {
    client: Octocrab,
    api: ApiMetrics,
    owner: String,
    repo: String,
    base: String,
}

#[derive(Debug, Deserialize)]
struct PrWire {
    number: u64,
    html_url: Option<String>,
    title: String,
    body: Option<String>,
    head: HeadWire,
    merged_at: Option<String>,
    merge_commit_sha: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HeadWire {
    sha: String,
}

impl From<PrWire> for PullRequest {
    fn from(p: PrWire) -> Self {
        let merged = p.merged_at.is_some();
        Self {
            number: p.number,
            url: p.html_url.unwrap_or_default(),
            head_sha: p.head.sha,
            title: p.title,
            body: p.body.unwrap_or_default(),
            merged,
            merge_sha: if merged { p.merge_commit_sha } else { None },
        }
    }
}

#[derive(Debug, Deserialize)]
struct IssueWire {
    number: u64,
    html_url: Option<String>,
    title: String,
    body: Option<String>,
    state: String,
    /// Present when the "issue" is a pull request (the issues API lists both).
    pull_request: Option<Value>,
}

impl From<IssueWire> for Issue {
    fn from(i: IssueWire) -> Self {
        Self {
            number: i.number,
            url: i.html_url.unwrap_or_default(),
            title: i.title,
            body: i.body.unwrap_or_default(),
            open: i.state == "open",
        }
    }
}

/// Issues listed per page; the list is read until a short page (at most `MAX_PAGES`).
const PER_PAGE: usize = 100;
const MAX_PAGES: u32 = 10;

fn map_err(operation: &'static str, e: octocrab::Error) -> PortError {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let code = source.status_code.as_u16();
            let limited = source.message.to_ascii_lowercase().contains("rate limit");
            let kind = match code {
                401 => ErrorKind::Denied,
                403 if limited => ErrorKind::Throttled,
                403 => ErrorKind::Denied,
                404 => ErrorKind::NotFound,
                429 => ErrorKind::Throttled,
                500..=599 => ErrorKind::Transient,
                _ => ErrorKind::Rejected,
            };
            PortError::new(
                "github",
                operation,
                kind,
                format!("HTTP {code}: {}", source.message),
            )
        }
        other => PortError::new("github", operation, ErrorKind::Transient, other.to_string()),
    }
}

impl GitHub {
    pub fn new(
        api_url: &str,
        token: &Secret,
        owner: &str,
        repo: &str,
        base: &str,
        api: &ApiMetrics,
    ) -> Result<Self, PortError> {
        let client = Octocrab::builder()
            .base_uri(api_url)
            .map_err(|e| {
                PortError::new(
                    "github",
                    "connect",
                    ErrorKind::Rejected,
                    format!("api url '{api_url}': {e}"),
                )
            })?
            .personal_token(token.expose().to_owned())
            .build()
            .map_err(|e| map_err("connect", e))?;
        Ok(Self {
            client,
            api: api.clone(),
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            base: base.to_owned(),
        })
    }

    /// Count the call (and its failure) by GitHub's operationId, and map the error.
    fn done<T>(&self, operation: &'static str, r: Result<T, octocrab::Error>) -> PortResult<T> {
        self.api.record("github", operation, &r);
        r.map_err(|e| map_err(operation, e))
    }

    fn route(&self, rest: &str) -> String {
        format!("/repos/{}/{}/{rest}", self.owner, self.repo)
    }
}

#[async_trait]
impl Forge for GitHub {
    async fn find_open_pr(&self, branch: &str) -> PortResult<Option<PullRequest>> {
        let head = format!("{}:{branch}", self.owner);
        let prs: Vec<PrWire> = self.done(
            "pulls/list",
            self.client
                .get(
                    self.route("pulls"),
                    Some(
                        &json!({"state": "open", "head": head, "base": self.base, "per_page": 10}),
                    ),
                )
                .await,
        )?;
        Ok(prs.into_iter().next().map(Into::into))
    }

    async fn open_issues(&self, labels: &[String]) -> PortResult<Vec<Issue>> {
        let mut found: Vec<IssueWire> = Vec::new();
        for page in 1..=MAX_PAGES {
            let q = json!({"state": "open", "labels": labels.join(","), "sort": "created",
                           "direction": "asc", "per_page": PER_PAGE, "page": page});
            let items: Vec<IssueWire> = self.done(
                "issues/list-for-repo",
                self.client.get(self.route("issues"), Some(&q)).await,
            )?;
            let short = items.len() < PER_PAGE;
            found.extend(
                items
                    .into_iter()
                    .filter(|i| i.pull_request.is_none() && i.state == "open"),
            );
            if short {
                break;
            }
        }
        found.sort_by_key(|i| i.number);
        Ok(found.into_iter().map(Into::into).collect())
    }

    async fn open_issue(&self, title: &str, body: &str, labels: &[String]) -> PortResult<Issue> {
        let created: IssueWire = self.done(
            "issues/create",
            self.client
                .post(
                    self.route("issues"),
                    Some(&json!({"title": title, "body": body, "labels": labels})),
                )
                .await,
        )?;
        Ok(created.into())
    }

    async fn update_issue(
        &self,
        number: u64,
        title: &str,
        body: &str,
        open: bool,
    ) -> PortResult<()> {
        let mut patch = json!({"title": title, "body": body,
                               "state": if open { "open" } else { "closed" }});
        if !open {
            patch["state_reason"] = json!("completed");
        }
        let _: Value = self.done(
            "issues/update",
            self.client
                .patch(self.route(&format!("issues/{number}")), Some(&patch))
                .await,
        )?;
        Ok(())
    }

    async fn open_pr(&self, pr: NewPullRequest) -> PortResult<PullRequest> {
        let body = json!({
            "title": pr.title, "head": pr.branch, "base": self.base, "body": pr.body,
            "maintainer_can_modify": false,
        });
        let created: PrWire = self.done(
            "pulls/create",
            self.client.post(self.route("pulls"), Some(&body)).await,
        )?;
        if !pr.labels.is_empty() {
            let _: Value = self.done(
                "issues/add-labels",
                self.client
                    .post(
                        self.route(&format!("issues/{}/labels", created.number)),
                        Some(&json!({"labels": pr.labels})),
                    )
                    .await,
            )?;
        }
        Ok(created.into())
    }

    async fn update_pr(&self, number: u64, title: &str, body: &str) -> PortResult<()> {
        let _: Value = self.done(
            "pulls/update",
            self.client
                .patch(
                    self.route(&format!("pulls/{number}")),
                    Some(&json!({"title": title, "body": body})),
                )
                .await,
        )?;
        Ok(())
    }

    async fn checks(&self, sha: &str) -> PortResult<ChecksState> {
        #[derive(Deserialize)]
        struct Combined {
            state: String,
            total_count: u64,
        }
        let c: Combined = self.done(
            "repos/get-combined-status-for-ref",
            self.client
                .get(self.route(&format!("commits/{sha}/status")), None::<&()>)
                .await,
        )?;
        Ok(match (c.total_count, c.state.as_str()) {
            (0, _) => ChecksState::None,
            (_, "success") => ChecksState::Success,
            (_, "pending") => ChecksState::Pending,
            _ => ChecksState::Failure,
        })
    }

    async fn merge(&self, number: u64, expected_head: &str, title: &str) -> PortResult<String> {
        #[derive(Deserialize)]
        struct Merged {
            sha: String,
        }
        let body = json!({"sha": expected_head, "merge_method": "squash", "commit_title": title});
        let m: Merged = self.done(
            "pulls/merge",
            self.client
                .put(self.route(&format!("pulls/{number}/merge")), Some(&body))
                .await,
        )?;
        Ok(m.sha)
    }

    async fn comment(&self, number: u64, body: &str) -> PortResult<()> {
        let _: Value = self.done(
            "issues/create-comment",
            self.client
                .post(
                    self.route(&format!("issues/{number}/comments")),
                    Some(&json!({"body": body})),
                )
                .await,
        )?;
        Ok(())
    }

    async fn set_status(
        &self,
        sha: &str,
        state: StatusState,
        context: &str,
        description: &str,
    ) -> PortResult<()> {
        let description: String = description.chars().take(140).collect();
        let body = json!({"state": state.as_str(), "context": context, "description": description});
        let _: Value = self.done(
            "repos/create-commit-status",
            self.client
                .post(self.route(&format!("statuses/{sha}")), Some(&body))
                .await,
        )?;
        Ok(())
    }
}
