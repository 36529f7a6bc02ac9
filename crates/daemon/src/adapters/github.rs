//! The GitHub adapter (octocrab): pull requests, merges, comments, commit statuses, and the
//! issues that carry rescan reports.
//!
//! Uses octocrab's authenticated route methods with small response types of our own, so
//! only the fields tugboat reads must be present.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use octocrab::Octocrab;
use serde::Deserialize;
use serde_json::{Value, json};

use super::github_app::GitHubApp;

mod budget;
mod commits;
use crate::credentials::Token;
use crate::domain::chatops;
use crate::ports::{
    Access, CheckKind, CheckReport, Checks, ChecksState, Conversation, ErrorKind, Issue, Issues,
    LabelEvent, LabelledPr, MergeMethod, NewPullRequest, Permission, PortError, PortResult,
    PullRequest, PullRequests, Reaction, StatusState,
};
use crate::secret::Secret;
use crate::telemetry::{ApiLabels, ApiMetrics};
pub use budget::{Priority, WRITES_PER_HOUR, WRITES_PER_MINUTE, WriteBudget};
use tokio::time::Instant;

/// An answer as octocrab gives it before any processing.
type Raw = http::Response<http_body_util::combinators::BoxBody<bytes::Bytes, octocrab::Error>>;

/// What a rate-limited answer's headers say about when to try again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LimitHint {
    /// `Retry-After`, seconds.
    retry_after: Option<u64>,
    /// `x-ratelimit-remaining` is 0 and `x-ratelimit-reset` is this many seconds away.
    reset_in: Option<u64>,
}

impl LimitHint {
    fn of(headers: &http::HeaderMap, now: i64) -> Self {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        Self {
            retry_after: num("retry-after").and_then(|s| u64::try_from(s).ok()),
            reset_in: match (num("x-ratelimit-remaining"), num("x-ratelimit-reset")) {
                (Some(0), Some(reset)) => Some(u64::try_from(reset - now).unwrap_or(0)),
                _ => None,
            },
        }
    }

    /// How long to pause, when the headers say (at least a second, at most an hour).
    fn wait(self) -> Option<Duration> {
        self.retry_after
            .or(self.reset_in)
            .map(|s| Duration::from_secs(s.clamp(1, 3600)))
    }
}

/// A list's first page with the ETag it was read with.
type CachedPage = (String, String);

/// How many polled lists keep their ETag: more than the PRs of any cycle, so that idle cycles
/// stay free, and bounded, so that months of merged PRs do not grow the cache forever.
const ETAG_ENTRIES: usize = 4096;

/// A GitHub repository through octocrab.
#[derive(Clone)]
pub struct GitHub {
    auth: Arc<Auth>,
    api: ApiMetrics,
    owner: String,
    repo: String,
    base: String,
    /// The first page of each polled list (comments, reviews, labelled PRs) with its ETag,
    /// by address, for conditional requests.
    etags: Arc<quick_cache::sync::Cache<String, CachedPage>>,
    me: Arc<tokio::sync::OnceCell<String>>,
    /// `squash`, `merge` or `rebase`.
    merge_method: MergeMethod,
    /// After a rate-limit answer: no request before this instant (and why).
    paused: Arc<Mutex<Option<(Instant, String)>>>,
    /// Content-creating requests: one at a time, within GitHub's minute and hour limits, the
    /// most needed first when they are short.
    writes: WriteBudget,
}

/// What the GitHub adapter authenticates with.
pub enum Credentials {
    /// A token (rotating): the client is built again when it changes.
    Token(Arc<dyn Token>),
    /// A GitHub App's installation: its own client, whose token octocrab renews.
    App(Arc<GitHubApp>),
}

/// The credentials and the client built with them.
struct Auth {
    api_url: String,
    source: Credentials,
    /// For a token: the token and the client built with it.
    built: std::sync::RwLock<(Secret, Arc<Octocrab>)>,
}

fn build_client(api_url: &str, token: &Secret) -> PortResult<Arc<Octocrab>> {
    Octocrab::builder()
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
        .map(Arc::new)
        .map_err(|e| map_err("connect", e))
}

impl Auth {
    async fn new(api_url: &str, source: Credentials) -> PortResult<Self> {
        let built = match &source {
            Credentials::Token(token) => {
                let first = token.token().await?;
                let client = build_client(api_url, &first)?;
                (first, client)
            }
            Credentials::App(app) => (Secret::new(""), app.client().await?),
        };
        Ok(Self {
            api_url: api_url.to_owned(),
            source,
            built: std::sync::RwLock::new(built),
        })
    }

    fn built(&self) -> (Secret, Arc<Octocrab>) {
        match self.built.read() {
            Ok(b) => b.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn store(&self, token: Secret, client: Arc<Octocrab>) {
        match self.built.write() {
            Ok(mut b) => *b = (token, client),
            Err(poisoned) => *poisoned.into_inner() = (token, client),
        }
    }

    /// Whether tugboat acts as a GitHub App (check runs and API commits are the App's).
    fn is_app(&self) -> bool {
        matches!(self.source, Credentials::App(_))
    }

    /// The client to send a request with now.
    async fn client(&self) -> PortResult<Arc<Octocrab>> {
        let token = match &self.source {
            Credentials::App(app) => return app.client().await,
            Credentials::Token(token) => token.token().await?,
        };
        let (built_for, client) = self.built();
        if built_for == token {
            return Ok(client);
        }
        let client = build_client(&self.api_url, &token)?;
        self.store(token, Arc::clone(&client));
        Ok(client)
    }

    /// A client for GitHub's GraphQL API (`<api>/graphql` on github.com, `/api/graphql` on
    /// GitHub Enterprise Server, whose REST API is under `/api/v3`), with the same token.
    async fn graphql(&self) -> PortResult<Arc<Octocrab>> {
        let token = match &self.source {
            Credentials::App(app) => app.token().await?,
            Credentials::Token(token) => token.token().await?,
        };
        let base = self.api_url.trim_end_matches('/');
        let base = base.strip_suffix("/v3").unwrap_or(base);
        build_client(base, &token)
    }

    /// GitHub refused the token (401): read it again at once, so the next request carries a
    /// rotated one. (An App's client has renewed its token and retried already.)
    async fn refused(&self) {
        let Credentials::Token(token) = &self.source else {
            return;
        };
        let (used, _) = self.built();
        if let Some(newer) = token.refused(&used).await
            && let Ok(client) = build_client(&self.api_url, &newer)
        {
            self.store(newer, client);
        }
    }
}

#[derive(Debug, Deserialize)]
struct UserWire {
    login: String,
}

#[derive(Debug, Deserialize)]
struct CommentWire {
    id: u64,
    user: Option<UserWire>,
    body: Option<String>,
    created_at: String,
    updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReviewWire {
    user: Option<UserWire>,
    state: String,
    commit_id: Option<String>,
}

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

impl From<CommentWire> for chatops::Comment {
    fn from(c: CommentWire) -> Self {
        let created_at = time(&c.created_at);
        Self {
            id: c.id,
            user: c.user.map(|u| u.login).unwrap_or_default(),
            body: c.body.unwrap_or_default(),
            edited: c
                .updated_at
                .as_deref()
                .is_some_and(|u| time(u) > created_at),
            created_at,
        }
    }
}

#[derive(Debug, Deserialize)]
struct PrWire {
    number: u64,
    html_url: Option<String>,
    title: String,
    body: Option<String>,
    head: HeadWire,
    base: BaseWire,
    user: Option<UserWire>,
    merged_at: Option<String>,
    merge_commit_sha: Option<String>,
    #[serde(default)]
    labels: Vec<LabelWire>,
}

#[derive(Debug, Deserialize)]
struct HeadWire {
    sha: String,
    #[serde(rename = "ref", default)]
    branch: String,
}

#[derive(Debug, Deserialize)]
struct BaseWire {
    #[serde(rename = "ref")]
    branch: String,
}

impl From<PrWire> for PullRequest {
    fn from(p: PrWire) -> Self {
        let merged = p.merged_at.is_some();
        Self {
            number: p.number,
            url: p.html_url.unwrap_or_default(),
            head_sha: p.head.sha,
            branch: p.head.branch,
            author: p.user.map(|u| u.login).unwrap_or_default(),
            title: p.title,
            body: p.body.unwrap_or_default(),
            merged,
            merge_sha: if merged { p.merge_commit_sha } else { None },
            labels: p.labels.into_iter().map(|l| l.name).collect(),
            base: p.base.branch,
        }
    }
}

#[derive(Debug, Deserialize)]
struct IssueWire {
    number: u64,
    /// The GraphQL id (`pinIssue` takes it).
    #[serde(default)]
    node_id: Option<String>,
    html_url: Option<String>,
    title: String,
    body: Option<String>,
    state: String,
    /// Present when the "issue" is a pull request (the issues API lists both).
    pull_request: Option<Value>,
    #[serde(default)]
    labels: Vec<LabelWire>,
    /// Who opened it (`null` for a deleted account).
    #[serde(default)]
    user: Option<UserWire>,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LabelWire {
    name: String,
}

/// One of an issue's events (`issue-event-for-issue`); only labellings are read.
#[derive(Debug, Deserialize)]
struct IssueEventWire {
    event: String,
    #[serde(default)]
    actor: Option<UserWire>,
    #[serde(default)]
    label: Option<LabelWire>,
}

impl From<IssueWire> for Issue {
    fn from(i: IssueWire) -> Self {
        Self {
            number: i.number,
            url: i.html_url.unwrap_or_default(),
            title: i.title,
            body: i.body.unwrap_or_default(),
            open: i.state == "open",
            author: i.user.map(|u| u.login).unwrap_or_default(),
            updated_at: i.updated_at.as_deref().map(time),
        }
    }
}

/// Issues listed per page; the list is read until a short page (at most `MAX_PAGES`).
const PER_PAGE: usize = 100;
const MAX_PAGES: u32 = 10;

/// Whether an answer is GitHub limiting the rate (429, or 403 saying so).
fn throttled(status: u16, message: &str) -> bool {
    status == 429 || (status == 403 && message.to_ascii_lowercase().contains("rate limit"))
}

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
    pub async fn new(
        api_url: &str,
        credentials: Credentials,
        owner: &str,
        repo: &str,
        base: &str,
        api: &ApiMetrics,
    ) -> Result<Self, PortError> {
        let auth = Arc::new(Auth::new(api_url, credentials).await?);
        Ok(Self {
            auth,
            api: api.clone(),
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            base: base.to_owned(),
            etags: Arc::new(quick_cache::sync::Cache::new(ETAG_ENTRIES)),
            merge_method: MergeMethod::Squash,
            me: Arc::default(),
            paused: Arc::default(),
            writes: WriteBudget::new(WRITES_PER_MINUTE, WRITES_PER_HOUR),
        })
    }

    /// Send one request: not while paused by a rate limit; writes one at a time within the
    /// write window; a rate-limit answer pauses every later request (for its `Retry-After`,
    /// until its `x-ratelimit-reset`, or as GitHub advises when it gives neither). A `304`
    /// to a conditional request is returned as it is.
    async fn send(
        &self,
        operation: &'static str,
        request: impl std::future::Future<Output = Result<Raw, octocrab::Error>>,
    ) -> PortResult<Raw> {
        let write = ApiLabels {
            system: "github".into(),
            operation: operation.into(),
        }
        .is_write();
        self.check_paused(operation)?;
        // Held until the answer: writes go one at a time.
        let _turn = if write {
            Some(self.writes.acquire(Priority::of(operation)).await)
        } else {
            None
        };
        self.check_paused(operation)?;
        let r = match request.await {
            Ok(resp) if resp.status() == http::StatusCode::NOT_MODIFIED => Ok(resp),
            Ok(resp) => {
                let hint = LimitHint::of(resp.headers(), Utc::now().timestamp());
                let r = octocrab::map_github_error(resp).await;
                if let Err(octocrab::Error::GitHub { source, .. }) = &r {
                    if throttled(source.status_code.as_u16(), &source.message) {
                        self.pause(&source.message, hint).await;
                    } else if source.status_code == http::StatusCode::UNAUTHORIZED {
                        self.auth.refused().await;
                    }
                }
                r
            }
            Err(e) => Err(e),
        };
        self.done(operation, r)
    }

    /// [`send`](Self::send), then read the answer's JSON.
    async fn req<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        request: impl std::future::Future<Output = Result<Raw, octocrab::Error>>,
    ) -> PortResult<T> {
        let resp = self.send(operation, request).await?;
        let text = self
            .auth
            .built()
            .1
            .body_to_string(resp)
            .await
            .map_err(|e| map_err(operation, e))?;
        let text = if text.trim().is_empty() {
            "null"
        } else {
            &text
        };
        serde_json::from_str(text).map_err(|e| {
            PortError::new(
                "github",
                operation,
                ErrorKind::Rejected,
                format!("answer: {e}"),
            )
        })
    }

    /// `route` with `query` (a JSON object of strings and numbers) as its query string.
    fn with_query(route: String, query: &Value) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(o) = query.as_object() {
            for (k, v) in o {
                match v {
                    Value::String(s) => q.append_pair(k, s),
                    other => q.append_pair(k, &other.to_string()),
                };
            }
        }
        let q = q.finish();
        if q.is_empty() {
            route
        } else {
            format!("{route}?{q}")
        }
    }

    fn check_paused(&self, operation: &'static str) -> PortResult<()> {
        let paused = self.paused.lock().ok().and_then(|p| p.clone());
        match paused {
            Some((until, why)) if Instant::now() < until => Err(PortError::new(
                "github",
                operation,
                ErrorKind::Throttled,
                format!(
                    "not sent: {why}; requests resume in {}s",
                    until.saturating_duration_since(Instant::now()).as_secs()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Pause until GitHub's limit resets: as long as its `Retry-After` says, else until its
    /// `x-ratelimit-reset` when nothing remains, else a secondary limit for a minute (GitHub's
    /// advice when it gives no time) and the primary one until `/rate_limit` says it resets.
    async fn pause(&self, message: &str, hint: LimitHint) {
        let secondary = message.to_ascii_lowercase().contains("secondary");
        let wait = if let Some(wait) = hint.wait() {
            wait
        } else if secondary {
            Duration::from_secs(60)
        } else {
            #[derive(Deserialize)]
            struct Core {
                reset: i64,
            }
            #[derive(Deserialize)]
            struct Resources {
                core: Core,
            }
            #[derive(Deserialize)]
            struct RateLimit {
                resources: Resources,
            }
            // Asking costs no rate limit.
            let client = self.auth.built().1;
            let limit: Result<RateLimit, _> = client.get("/rate_limit", None::<&()>).await;
            self.api.record("github", "rate-limit/get", &limit);
            match limit {
                Ok(l) => Duration::from_secs(
                    u64::try_from(l.resources.core.reset - Utc::now().timestamp())
                        .unwrap_or(0)
                        .clamp(1, 3600),
                ),
                Err(_) => Duration::from_secs(60),
            }
        };
        let why = if secondary {
            "GitHub's secondary rate limit was hit"
        } else {
            "GitHub's rate limit is used up"
        };
        tracing::warn!(seconds = wait.as_secs(), why, "pausing GitHub requests");
        if let Ok(mut p) = self.paused.lock() {
            *p = Some((Instant::now() + wait, why.to_owned()));
        }
    }

    /// Count the call (and its failure) by GitHub's operationId, and map the error.
    fn done<T>(&self, operation: &'static str, r: Result<T, octocrab::Error>) -> PortResult<T> {
        self.api.record("github", operation, &r);
        r.map_err(|e| map_err(operation, e))
    }

    fn route(&self, rest: &str) -> String {
        format!("/repos/{}/{}/{rest}", self.owner, self.repo)
    }

    /// Act as `login` without asking `GET /user` (which a GitHub App installation token may
    /// not call).
    pub fn with_login(self, login: Option<&str>) -> Self {
        if let Some(login) = login {
            let _ = self.me.set(login.to_owned());
        }
        self
    }

    /// Spend `budget` on content-creating requests (GitHub's secondary limits are 80 a
    /// minute and 500 an hour; a GitHub Enterprise Server may set others).
    pub fn with_write_budget(mut self, budget: WriteBudget) -> Self {
        self.writes = budget;
        self
    }

    /// Merge with `method` (`squash`, `merge` or `rebase`) instead of squashing.
    pub fn with_merge_method(mut self, method: MergeMethod) -> Self {
        self.merge_method = method;
        self
    }

    /// GET a JSON list page by page (100 a page) until a short page, at most `MAX_PAGES`.
    /// `query` (a JSON object) gets `per_page` and `page` added.
    async fn pages<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        rest: &str,
        query: Value,
    ) -> PortResult<Vec<T>> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut q = query.clone();
            q["per_page"] = json!(PER_PAGE);
            q["page"] = json!(page);
            let items: Vec<T> = self
                .req(
                    operation,
                    self.auth
                        .client()
                        .await?
                        ._get(Self::with_query(self.route(rest), &q)),
                )
                .await?;
            let short = items.len() < PER_PAGE;
            all.extend(items);
            if short {
                break;
            }
        }
        Ok(all)
    }

    /// GET a list that is polled every cycle: the first page conditionally (an unchanged page
    /// answers 304 from its ETag and costs no rate limit), further pages only when it is full.
    /// `query` is a JSON object of query parameters.
    async fn conditional_list<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        rest: &str,
        query: Value,
    ) -> PortResult<Vec<T>> {
        let mut first = query.clone();
        first["per_page"] = json!(PER_PAGE);
        let uri = Self::with_query(self.route(rest), &first);
        let cached = self.etags.get(&uri);
        let mut headers = http::HeaderMap::new();
        if let Some((etag, _)) = &cached
            && let Ok(v) = http::HeaderValue::from_str(etag)
        {
            headers.insert(http::header::IF_NONE_MATCH, v);
        }
        let response = self
            .send(
                op,
                self.auth
                    .client()
                    .await?
                    ._get_with_headers(uri.clone(), Some(headers)),
            )
            .await?;
        let response = (response.status() != http::StatusCode::NOT_MODIFIED).then_some(response);
        let text = match (response, cached) {
            (Some(response), _) => {
                let etag = response
                    .headers()
                    .get(http::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let text = self
                    .auth
                    .built()
                    .1
                    .body_to_string(response)
                    .await
                    .map_err(|e| map_err(op, e))?;
                if let Some(etag) = etag {
                    self.etags.insert(uri, (etag, text.clone()));
                }
                text
            }
            (None, Some((_, text))) => text,
            (None, None) => {
                return Err(PortError::new(
                    "github",
                    op,
                    ErrorKind::Rejected,
                    "HTTP 304 to a request that named no ETag",
                ));
            }
        };
        let first: Vec<T> = serde_json::from_str(&text).map_err(|e| {
            PortError::new("github", op, ErrorKind::Rejected, format!("answer: {e}"))
        })?;
        if first.len() < PER_PAGE {
            return Ok(first);
        }
        // More than a page: read them all (not conditionally).
        self.pages(op, rest, query).await
    }
}

#[async_trait]
impl PullRequests for GitHub {
    async fn find_open_pr(&self, branch: &str) -> PortResult<Option<PullRequest>> {
        let head = format!("{}:{branch}", self.owner);
        let prs: Vec<PrWire> = self
            .conditional_list(
                "pulls/list",
                "pulls",
                json!({"state": "open", "head": head, "base": self.base}),
            )
            .await?;
        Ok(prs.into_iter().next().map(Into::into))
    }

    async fn pull(&self, number: u64) -> PortResult<PullRequest> {
        let pr: PrWire = self
            .req(
                "pulls/get",
                self.auth
                    .client()
                    .await?
                    ._get(self.route(&format!("pulls/{number}"))),
            )
            .await?;
        Ok(pr.into())
    }

    async fn labelled_prs(
        &self,
        labels: &[String],
        open_only: bool,
    ) -> PortResult<Vec<LabelledPr>> {
        let state = if open_only { "open" } else { "all" };
        let query = json!({"state": state, "sort": "created", "direction": "asc",
                           "labels": labels.join(",")});
        let mut found: Vec<IssueWire> = self
            .conditional_list("issues/list-for-repo", "issues", query)
            .await?;
        found.sort_by_key(|i| i.number);
        Ok(found
            .into_iter()
            .filter_map(|i| {
                let pr = i.pull_request?;
                Some(LabelledPr {
                    number: i.number,
                    url: i.html_url.unwrap_or_default(),
                    title: i.title,
                    body: i.body.unwrap_or_default(),
                    labels: i.labels.into_iter().map(|l| l.name).collect(),
                    open: i.state == "open",
                    merged_at: pr.get("merged_at").and_then(Value::as_str).map(time),
                    author: i.user.map(|u| u.login).unwrap_or_default(),
                    updated_at: i.updated_at.as_deref().map(time),
                })
            })
            .collect())
    }

    async fn open_pr(&self, pr: NewPullRequest) -> PortResult<PullRequest> {
        let body = json!({
            "title": pr.title, "head": pr.branch, "base": self.base, "body": pr.body,
            "maintainer_can_modify": false,
        });
        let created: PrWire = self
            .req(
                "pulls/create",
                self.auth
                    .client()
                    .await?
                    ._post(self.route("pulls"), Some(&body)),
            )
            .await?;
        if !pr.labels.is_empty() {
            let _: Value = self
                .req(
                    "issues/add-labels",
                    self.auth.client().await?._post(
                        self.route(&format!("issues/{}/labels", created.number)),
                        Some(&json!({"labels": pr.labels})),
                    ),
                )
                .await?;
        }
        Ok(PullRequest {
            labels: pr.labels,
            ..created.into()
        })
    }

    async fn update_pr(&self, number: u64, title: &str, body: &str) -> PortResult<()> {
        let _: Value = self
            .req(
                "pulls/update",
                self.auth.client().await?._patch(
                    self.route(&format!("pulls/{number}")),
                    Some(&json!({"title": title, "body": body})),
                ),
            )
            .await?;
        Ok(())
    }

    async fn close_pr(&self, number: u64, why: &str) -> PortResult<()> {
        self.comment(number, why).await?;
        let _: Value = self
            .req(
                "pulls/update",
                self.auth.client().await?._patch(
                    self.route(&format!("pulls/{number}")),
                    Some(&json!({"state": "closed"})),
                ),
            )
            .await?;
        Ok(())
    }

    async fn merge(&self, number: u64, expected_head: &str, title: &str) -> PortResult<String> {
        #[derive(Deserialize)]
        struct Merged {
            sha: String,
        }
        let mut body = json!({"sha": expected_head, "merge_method": self.merge_method.as_str()});
        if self.merge_method != MergeMethod::Rebase {
            body["commit_title"] = json!(title);
        }
        let m: Merged = self
            .req(
                "pulls/merge",
                self.auth
                    .client()
                    .await?
                    ._put(self.route(&format!("pulls/{number}/merge")), Some(&body)),
            )
            .await?;
        Ok(m.sha)
    }

    async fn add_labels(&self, number: u64, labels: &[String]) -> PortResult<()> {
        let _: Value = self
            .req(
                "issues/add-labels",
                self.auth.client().await?._post(
                    self.route(&format!("issues/{number}/labels")),
                    Some(&json!({"labels": labels})),
                ),
            )
            .await?;
        Ok(())
    }

    async fn relabel(
        &self,
        number: u64,
        add: &[&str],
        remove: &[&str],
        body: Option<&str>,
    ) -> PortResult<()> {
        #[derive(Deserialize)]
        struct Labelled {
            #[serde(default)]
            labels: Vec<LabelWire>,
        }
        // A read: it costs no write budget.
        let now: Labelled = self
            .req(
                "pulls/get",
                self.auth
                    .client()
                    .await?
                    ._get(self.route(&format!("pulls/{number}"))),
            )
            .await?;
        let before: Vec<String> = now.labels.into_iter().map(|l| l.name).collect();
        let mut after: Vec<String> = before
            .iter()
            .filter(|l| !remove.contains(&l.as_str()))
            .cloned()
            .collect();
        for l in add {
            if !after.iter().any(|a| a == l) {
                after.push((*l).to_owned());
            }
        }
        if after == before && body.is_none() {
            return Ok(());
        }
        let mut edit = json!({"labels": after});
        if let Some(b) = body {
            edit["body"] = json!(b);
        }
        let _: Value = self
            .req(
                "issues/update",
                self.auth
                    .client()
                    .await?
                    ._patch(self.route(&format!("issues/{number}")), Some(&edit)),
            )
            .await?;
        Ok(())
    }

    async fn remove_label(&self, number: u64, label: &str) -> PortResult<()> {
        let path = format!("issues/{number}/labels/{}", label.replace(' ', "%20"));
        match self
            .req::<Value>(
                "issues/remove-label",
                self.auth
                    .client()
                    .await?
                    ._delete(self.route(&path), None::<&()>),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Conversation for GitHub {
    async fn comment(&self, number: u64, body: &str) -> PortResult<()> {
        let _: Value = self
            .req(
                "issues/create-comment",
                self.auth.client().await?._post(
                    self.route(&format!("issues/{number}/comments")),
                    Some(&json!({"body": body})),
                ),
            )
            .await?;
        Ok(())
    }

    async fn comments(&self, number: u64) -> PortResult<Vec<chatops::Comment>> {
        let mut comments: Vec<chatops::Comment> = self
            .conditional_list::<CommentWire>(
                "issues/list-comments",
                &format!("issues/{number}/comments"),
                json!({}),
            )
            .await?
            .into_iter()
            .map(Into::into)
            .collect();
        comments.sort_by_key(|c| c.id);
        Ok(comments)
    }

    async fn reviews(&self, number: u64) -> PortResult<Vec<chatops::Review>> {
        let reviews: Vec<ReviewWire> = self
            .conditional_list(
                "pulls/list-reviews",
                &format!("pulls/{number}/reviews"),
                json!({}),
            )
            .await?;
        Ok(reviews
            .into_iter()
            .map(|r| chatops::Review {
                user: r.user.map(|u| u.login).unwrap_or_default(),
                state: r.state,
                commit_id: r.commit_id.unwrap_or_default(),
            })
            .collect())
    }

    async fn react(&self, comment_id: u64, reaction: Reaction) -> PortResult<()> {
        let _: Value = self
            .req(
                "reactions/create-for-issue-comment",
                self.auth.client().await?._post(
                    self.route(&format!("issues/comments/{comment_id}/reactions")),
                    Some(&json!({"content": reaction.as_str()})),
                ),
            )
            .await?;
        Ok(())
    }

    async fn me(&self) -> PortResult<String> {
        self.me
            .get_or_try_init(|| async {
                let u: UserWire = self
                    .req(
                        "users/get-authenticated",
                        self.auth.client().await?._get("/user"),
                    )
                    .await?;
                Ok(u.login)
            })
            .await
            .cloned()
    }
}

#[async_trait]
impl Access for GitHub {
    async fn permission(&self, user: &str) -> PortResult<Permission> {
        #[derive(Deserialize)]
        struct Level {
            permission: String,
        }
        let p: PortResult<Level> = self
            .req(
                "repos/get-collaborator-permission-level",
                self.auth
                    .client()
                    .await?
                    ._get(self.route(&format!("collaborators/{user}/permission"))),
            )
            .await;
        match p {
            Ok(p) => Ok(Permission::parse(&p.permission)),
            // A login that no longer exists (or never had access): no permission at all.
            Err(e) if e.kind == ErrorKind::NotFound => Ok(Permission::None),
            Err(e) => Err(e),
        }
    }

    async fn team_member(&self, org: &str, team: &str, user: &str) -> PortResult<bool> {
        #[derive(Deserialize)]
        struct Membership {
            state: String,
        }
        let r: PortResult<Membership> = self
            .req(
                "teams/get-membership-for-user-in-org",
                self.auth
                    .client()
                    .await?
                    ._get(format!("/orgs/{org}/teams/{team}/memberships/{user}")),
            )
            .await;
        match r {
            Ok(m) => Ok(m.state == "active"),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Checks for GitHub {
    async fn checks(&self, sha: &str) -> PortResult<ChecksState> {
        #[derive(Deserialize)]
        struct Combined {
            state: String,
            total_count: u64,
        }
        let c: Combined = self
            .req(
                "repos/get-combined-status-for-ref",
                self.auth
                    .client()
                    .await?
                    ._get(self.route(&format!("commits/{sha}/status"))),
            )
            .await?;
        let statuses = match (c.total_count, c.state.as_str()) {
            (0, _) => ChecksState::None,
            (_, "success") => ChecksState::Success,
            (_, "pending") => ChecksState::Pending,
            _ => ChecksState::Failure,
        };
        if !self.auth.is_app() {
            return Ok(statuses);
        }
        // An App may read check runs (a token may lack the permission): CI as GitHub Actions.
        let runs = self.check_runs(sha).await?;
        Ok(combine(statuses, checks_of(&runs)))
    }

    async fn report(&self, r: &CheckReport) -> PortResult<()> {
        let body = if self.auth.is_app() {
            check_run(r)
        } else {
            let description: String = r.title.chars().take(140).collect();
            let mut body = json!({"state": r.state.as_str(), "context": r.kind.name(),
                                  "description": description});
            if let Some(link) = &r.link {
                body["target_url"] = json!(link);
            }
            body
        };
        let (operation, route) = if self.auth.is_app() {
            ("checks/create", self.route("check-runs"))
        } else {
            (
                "repos/create-commit-status",
                self.route(&format!("statuses/{}", r.sha)),
            )
        };
        let _: Value = self
            .req(
                operation,
                self.auth.client().await?._post(route, Some(&body)),
            )
            .await?;
        Ok(())
    }

    async fn first_report(&self, sha: &str, kind: CheckKind) -> PortResult<Option<DateTime<Utc>>> {
        if self.auth.is_app() {
            self.first_run(sha, kind).await
        } else {
            self.first_status(sha, kind).await
        }
    }
}

impl GitHub {
    /// When tugboat's own login first set status `kind` on `sha` (a token's reports).
    async fn first_status(&self, sha: &str, kind: CheckKind) -> PortResult<Option<DateTime<Utc>>> {
        #[derive(Deserialize)]
        struct StatusWire {
            context: String,
            created_at: String,
            #[serde(default)]
            creator: Option<UserWire>,
        }
        let me = self.me().await?;
        let statuses: Vec<StatusWire> = self
            .conditional_list(
                "repos/list-commit-statuses-for-ref",
                &format!("commits/{sha}/statuses"),
                json!({}),
            )
            .await?;
        Ok(statuses
            .into_iter()
            .filter(|s| s.context == kind.name())
            .filter(|s| {
                s.creator
                    .as_ref()
                    .is_some_and(|c| crate::domain::provenance::same_login(&c.login, &me))
            })
            .map(|s| time(&s.created_at))
            .min())
    }

    /// When tugboat's App first ran check `kind` on `sha` (an App's reports; no one else
    /// can create a check run in its name).
    async fn first_run(&self, sha: &str, kind: CheckKind) -> PortResult<Option<DateTime<Utc>>> {
        #[derive(Deserialize)]
        struct Page {
            check_runs: Vec<OwnRunWire>,
        }
        #[derive(Deserialize)]
        struct OwnRunWire {
            name: String,
            started_at: Option<String>,
            #[serde(default)]
            app: Option<AppWire>,
        }
        #[derive(Deserialize)]
        struct AppWire {
            slug: String,
        }
        let me = self.me().await?;
        let route = Self::with_query(
            self.route(&format!("commits/{sha}/check-runs")),
            &json!({"check_name": kind.name(), "filter": "all", "per_page": 100}),
        );
        let page: Page = self
            .req("checks/list-for-ref", self.auth.client().await?._get(route))
            .await?;
        Ok(page
            .check_runs
            .into_iter()
            .filter(|r| r.name == kind.name())
            .filter(|r| {
                r.app.as_ref().is_some_and(|a| {
                    crate::domain::provenance::same_login(&format!("{}[bot]", a.slug), &me)
                })
            })
            .filter_map(|r| r.started_at.as_deref().map(time))
            .min())
    }
}

/// The most a check run's summary may hold (GitHub's limit is 65,535 characters).
const SUMMARY_MAX: usize = 60_000;

/// A check run for `r`: completed with a conclusion when final, in progress when not.
fn check_run(r: &CheckReport) -> Value {
    let title: String = r.title.chars().take(200).collect();
    let mut summary: String = r.summary.chars().take(SUMMARY_MAX).collect();
    if summary.len() < r.summary.len() {
        summary.push_str("\n\n(cut short)");
    }
    let mut body = json!({
        "name": r.kind.name(),
        "head_sha": r.sha,
        "output": {"title": title, "summary": summary},
    });
    match r.state {
        StatusState::Success | StatusState::Failure => {
            body["status"] = json!("completed");
            body["conclusion"] = json!(if r.state == StatusState::Success {
                "success"
            } else {
                "failure"
            });
        }
        StatusState::Pending | StatusState::Error => body["status"] = json!("in_progress"),
    }
    if let Some(link) = &r.link {
        body["details_url"] = json!(link);
    }
    body
}

/// A check run as listed.
#[derive(Debug, Deserialize)]
struct RunWire {
    name: String,
    status: String,
    conclusion: Option<String>,
}

/// The state of a commit's check runs other than tugboat's own (the newest run per name).
fn checks_of(runs: &[RunWire]) -> ChecksState {
    let mut state = ChecksState::None;
    for run in runs.iter().filter(|r| CheckKind::named(&r.name).is_none()) {
        let this = match (run.status.as_str(), run.conclusion.as_deref()) {
            ("completed", Some("success" | "neutral" | "skipped")) => ChecksState::Success,
            ("completed", _) => ChecksState::Failure,
            _ => ChecksState::Pending,
        };
        state = combine(state, this);
    }
    state
}

/// Two states as one: a failure wins, then pending, then success.
fn combine(a: ChecksState, b: ChecksState) -> ChecksState {
    use ChecksState as S;
    match (a, b) {
        (S::Failure, _) | (_, S::Failure) => S::Failure,
        (S::Pending, _) | (_, S::Pending) => S::Pending,
        (S::Success, _) | (_, S::Success) => S::Success,
        (S::None, S::None) => S::None,
    }
}

impl GitHub {
    /// The check runs of a commit (the newest of each name first, as GitHub lists them).
    async fn check_runs(&self, sha: &str) -> PortResult<Vec<RunWire>> {
        #[derive(Deserialize)]
        struct Page {
            check_runs: Vec<RunWire>,
        }
        let route = Self::with_query(
            self.route(&format!("commits/{sha}/check-runs")),
            &json!({"filter": "latest", "per_page": 100}),
        );
        let page: Page = self
            .req("checks/list-for-ref", self.auth.client().await?._get(route))
            .await?;
        Ok(page.check_runs)
    }
}

#[async_trait]
impl Issues for GitHub {
    async fn open_issues(&self, labels: &[String]) -> PortResult<Vec<Issue>> {
        let q = json!({"state": "open", "labels": labels.join(","), "sort": "created",
                       "direction": "asc"});
        // Conditional: the hold issues are listed every cycle, and an unchanged list is free.
        let mut found: Vec<IssueWire> = self
            .conditional_list("issues/list-for-repo", "issues", q)
            .await?;
        found.retain(|i| i.pull_request.is_none() && i.state == "open");
        found.sort_by_key(|i| i.number);
        Ok(found.into_iter().map(Into::into).collect())
    }

    async fn open_issue(&self, title: &str, body: &str, labels: &[String]) -> PortResult<Issue> {
        let created: IssueWire = self
            .req(
                "issues/create",
                self.auth.client().await?._post(
                    self.route("issues"),
                    Some(&json!({"title": title, "body": body, "labels": labels})),
                ),
            )
            .await?;
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
        let _: Value = self
            .req(
                "issues/update",
                self.auth
                    .client()
                    .await?
                    ._patch(self.route(&format!("issues/{number}")), Some(&patch)),
            )
            .await?;
        Ok(())
    }

    async fn pin_issue(&self, number: u64) -> PortResult<()> {
        let issue: IssueWire = self
            .req(
                "issues/get",
                self.auth
                    .client()
                    .await?
                    ._get(self.route(&format!("issues/{number}"))),
            )
            .await?;
        let refused = |kind, message: String| {
            PortError::new(
                "github",
                "graphql/pin-issue",
                kind,
                format!("issue #{number}: {message}"),
            )
        };
        let id = issue
            .node_id
            .ok_or_else(|| refused(ErrorKind::Rejected, "GitHub gave no node_id".into()))?;
        let mutation =
            "mutation($id: ID!) { pinIssue(input: {issueId: $id}) { issue { number } } }";
        let body = json!({"query": mutation, "variables": {"id": id}});
        let graphql = self.auth.graphql().await?;
        let answer: Value = self
            .req("graphql/pin-issue", graphql._post("/graphql", Some(&body)))
            .await?;
        match answer["errors"].as_array().and_then(|e| e.first()) {
            None => Ok(()),
            Some(e) => {
                let kind = match e["type"].as_str() {
                    Some("FORBIDDEN") => ErrorKind::Denied,
                    Some("NOT_FOUND") => ErrorKind::NotFound,
                    _ => ErrorKind::Rejected,
                };
                let message = e["message"].as_str().unwrap_or("refused").to_owned();
                Err(refused(kind, message))
            }
        }
    }

    async fn label_events(&self, number: u64) -> PortResult<Vec<LabelEvent>> {
        // A conditional listing: unchanged events cost no rate limit.
        let events: Vec<IssueEventWire> = self
            .conditional_list(
                "issues/list-events",
                &format!("issues/{number}/events"),
                json!({}),
            )
            .await?;
        Ok(events
            .into_iter()
            .filter(|e| e.event == "labeled" || e.event == "unlabeled")
            .filter_map(|e| {
                Some(LabelEvent {
                    label: e.label?.name,
                    // A deleted account shows as `null`; it is nobody tugboat trusts.
                    actor: e.actor.map(|a| a.login).unwrap_or_default(),
                    added: e.event == "labeled",
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_rate_limit_answer_says_how_long_to_pause_by_its_headers() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = http::HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, http::HeaderValue::from_static(v));
            }
            m
        };
        let now = 1_800_000_000;
        let secondary = LimitHint::of(&h(&[("retry-after", "120")]), now);
        assert_eq!(secondary.wait(), Some(Duration::from_secs(120)));
        let primary = LimitHint::of(
            &h(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1800000042"),
            ]),
            now,
        );
        assert_eq!(primary.wait(), Some(Duration::from_secs(42)));
        // Retry-After wins; a reset with requests left is no reason to wait.
        let both = LimitHint::of(
            &h(&[
                ("retry-after", "5"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1800000042"),
            ]),
            now,
        );
        assert_eq!(both.wait(), Some(Duration::from_secs(5)));
        let left = LimitHint::of(
            &h(&[
                ("x-ratelimit-remaining", "12"),
                ("x-ratelimit-reset", "1800000042"),
            ]),
            now,
        );
        assert_eq!(left.wait(), None);
        // A reset already past still pauses a second; nonsense is ignored.
        let past = LimitHint::of(
            &h(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1700000000"),
            ]),
            now,
        );
        assert_eq!(past.wait(), Some(Duration::from_secs(1)));
        assert_eq!(
            LimitHint::of(&h(&[("retry-after", "soon")]), now).wait(),
            None
        );
    }
    use super::*;

    #[test]
    fn other_check_runs_decide_the_checks_and_tugboats_own_are_left_out() {
        let run = |name: &str, status: &str, conclusion: Option<&str>| RunWire {
            name: name.into(),
            status: status.into(),
            conclusion: conclusion.map(Into::into),
        };
        assert_eq!(checks_of(&[]), ChecksState::None);
        let own = run("tugboat/scan-gate", "in_progress", None);
        assert_eq!(checks_of(std::slice::from_ref(&own)), ChecksState::None);
        let ci = run("build", "completed", Some("success"));
        let lint = run("lint", "completed", Some("skipped"));
        assert_eq!(checks_of(&[own, ci, lint]), ChecksState::Success);
        let slow = run("e2e", "queued", None);
        let red = run("unit", "completed", Some("timed_out"));
        assert_eq!(checks_of(std::slice::from_ref(&slow)), ChecksState::Pending);
        assert_eq!(checks_of(&[slow, red]), ChecksState::Failure);
        assert_eq!(
            combine(ChecksState::None, ChecksState::Pending),
            ChecksState::Pending
        );
        assert_eq!(
            combine(ChecksState::Success, ChecksState::None),
            ChecksState::Success
        );
    }

    #[test]
    fn a_report_is_a_completed_check_run_when_final_and_in_progress_when_not() {
        let mut r = CheckReport {
            sha: "a".repeat(40),
            kind: CheckKind::Deploy,
            state: StatusState::Failure,
            title: "not Healthy".into(),
            summary: "x".repeat(70_000),
            link: Some("https://argocd.example/applications/api".into()),
        };
        let body = check_run(&r);
        assert_eq!(body["name"], "tugboat/deploy");
        assert_eq!(
            (body["status"].as_str(), body["conclusion"].as_str()),
            (Some("completed"), Some("failure"))
        );
        assert_eq!(
            body["details_url"],
            "https://argocd.example/applications/api"
        );
        let summary = body["output"]["summary"].as_str().unwrap();
        assert!(summary.len() < 65_535 && summary.ends_with("(cut short)"));
        r.state = StatusState::Error;
        let body = check_run(&r);
        assert_eq!(body["status"], "in_progress");
        assert!(body.get("conclusion").is_none());
    }

    #[test]
    fn rate_limit_answers_are_recognised() {
        assert!(throttled(429, ""));
        assert!(throttled(403, "API rate limit exceeded for user ID 1."));
        assert!(throttled(403, "You have exceeded a secondary rate limit."));
        assert!(!throttled(403, "Resource not accessible by integration"));
        assert!(!throttled(404, "rate limit"));
    }
}
