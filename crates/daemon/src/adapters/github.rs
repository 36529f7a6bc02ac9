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
use octocrab::service::middleware::retry::RetryConfig;
use serde::Deserialize;
use serde_json::{Value, json};

use super::github_app::GitHubApp;

mod budget;
mod checks;
mod commits;
mod conversation;
mod issues;
mod pulls;
mod queue;
mod wire;

use crate::credentials::Token;
use crate::domain::chatops;
use crate::ports::{
    Access, BranchRules, Check, CheckKind, CheckReport, CheckState, Checks, Conversation,
    ErrorKind, Issue, Issues, LabelEvent, LabelledPr, MergeMethod, NewPullRequest, Permission,
    PortError, PortResult, PullRequest, PullRequests, Pushed, Reaction, StatusState,
};
use crate::secret::Secret;
use crate::telemetry::{ApiLabels, ApiMetrics};
pub use budget::{Priority, WRITES_PER_HOUR, WRITES_PER_MINUTE, WriteBudget};
use tokio::time::Instant;
use wire::*;

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

/// The bytes the cached pages may hold together. A page is kept whole (a labelled-PR listing
/// of a hundred PRs with their bodies is a few hundred KB), so a count alone let 4096 pages
/// hold hundreds of MB, filled over weeks as each new PR's comments and events are polled.
/// 16 MiB keeps a large fleet's listings and its open records' pages; a page evicted is read
/// again in full once.
const ETAG_BYTES: u64 = 16 * 1024 * 1024;

/// What an entry costs besides its text: three `String` headers, the cache's slot and the
/// allocator's rounding. The cache bounds the weight alone (the entry count it is given is an
/// estimate, not a limit), so without it a million empty lists (`[]`) would weigh 16 MiB and
/// hold several times that.
const ENTRY_OVERHEAD: usize = 256;

/// A cached page weighs its bytes and its entry's overhead.
#[derive(Clone)]
struct PageBytes;

impl quick_cache::Weighter<String, CachedPage> for PageBytes {
    fn weight(&self, uri: &String, (etag, body): &CachedPage) -> u64 {
        u64::try_from(ENTRY_OVERHEAD + uri.len() + etag.len() + body.len()).unwrap_or(u64::MAX)
    }
}

type PageCache = quick_cache::sync::Cache<String, CachedPage, PageBytes>;

fn page_cache() -> PageCache {
    PageCache::with_weighter(ETAG_ENTRIES, ETAG_BYTES, PageBytes)
}

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
    etags: Arc<PageCache>,
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

/// The credentials and the clients built with them.
struct Auth {
    api_url: String,
    /// The HTTP client under every octocrab client built here (one pool, one TLS
    /// configuration; `tls::github`).
    http: reqwest::Client,
    source: Credentials,
    /// For a token: the token and the reading client built with it.
    built: std::sync::RwLock<(Secret, Arc<Octocrab>)>,
    /// The token and the writing client built with it (App and token alike), once a write
    /// needed it.
    writer: std::sync::RwLock<Option<(Secret, Arc<Octocrab>)>>,
}

/// Whether a client sends a request again after a 5xx or a cut connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Reads: octocrab's own policy (three more tries at once).
    Reads,
    /// Writes: never. A 5xx or a cut connection may come after GitHub made the write (a
    /// gateway timing out on a slow backend answers 502/504 for a request that went
    /// through), and sending a comment, a PR, an issue or a check run again makes a second
    /// one. The step fails instead; the engine's next cycle reads what is there first.
    Never,
}

fn build_client(
    http: &reqwest::Client,
    api_url: &str,
    token: &Secret,
    resend: Resend,
) -> PortResult<Arc<Octocrab>> {
    let retry = match resend {
        Resend::Reads => RetryConfig::Simple(3),
        Resend::Never => RetryConfig::None,
    };
    Octocrab::builder()
        .add_retry_config(retry)
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
        .build_with_reqwest(http.clone())
        .map(Arc::new)
        .map_err(|e| map_err("connect", e))
}

impl Auth {
    async fn new(api_url: &str, source: Credentials) -> PortResult<Self> {
        let http = super::tls::github()
            .map_err(|e| PortError::new("github", "connect", ErrorKind::Rejected, e))?;
        let built = match &source {
            Credentials::Token(token) => {
                let first = token.token().await?;
                let client = build_client(&http, api_url, &first, Resend::Reads)?;
                (first, client)
            }
            Credentials::App(app) => (Secret::new(""), app.client().await?),
        };
        Ok(Self {
            api_url: api_url.to_owned(),
            http,
            source,
            writer: std::sync::RwLock::default(),
            built: std::sync::RwLock::new(built),
        })
    }

    fn built(&self) -> (Secret, Arc<Octocrab>) {
        read(&self.built)
    }

    fn store(&self, token: Secret, client: Arc<Octocrab>) {
        write(&self.built, (token, client));
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
        let client = build_client(&self.http, &self.api_url, &token, Resend::Reads)?;
        self.store(token, Arc::clone(&client));
        Ok(client)
    }

    /// The token to write with now: the configured one, or the App's installation token
    /// (the same one its reading client holds).
    async fn token(&self) -> PortResult<Secret> {
        match &self.source {
            Credentials::App(app) => app.token().await,
            Credentials::Token(token) => token.token().await,
        }
    }

    /// The client to send a write with now: one that never sends it again by itself.
    async fn writer(&self) -> PortResult<Arc<Octocrab>> {
        let token = self.token().await?;
        if let Some((built_for, client)) = read(&self.writer)
            && built_for == token
        {
            return Ok(client);
        }
        let client = build_client(&self.http, &self.api_url, &token, Resend::Never)?;
        write(&self.writer, Some((token, Arc::clone(&client))));
        Ok(client)
    }

    /// A client for GitHub's GraphQL API (`<api>/graphql` on github.com, `/api/graphql` on
    /// GitHub Enterprise Server, whose REST API is under `/api/v3`), with the same token.
    /// Mutations go through it, so it never sends a request again by itself either.
    async fn graphql(&self) -> PortResult<Arc<Octocrab>> {
        let token = self.token().await?;
        let base = self.api_url.trim_end_matches('/');
        let base = base.strip_suffix("/v3").unwrap_or(base);
        build_client(&self.http, base, &token, Resend::Never)
    }

    /// GitHub refused the token (401) of a read or a `write`: get a new one at once, so the
    /// next request carries it. (An App's reading client has renewed its token and retried
    /// already; its writes carry the token they were sent with.)
    async fn refused(&self, write: bool) {
        match &self.source {
            Credentials::Token(token) => {
                let (used, _) = self.built();
                if let Some(newer) = token.refused(&used).await
                    && let Ok(client) =
                        build_client(&self.http, &self.api_url, &newer, Resend::Reads)
                {
                    self.store(newer, client);
                }
            }
            Credentials::App(app) if write => {
                if let Some((used, _)) = read(&self.writer) {
                    let _ = app.refused(&used).await;
                }
            }
            Credentials::App(_) => {}
        }
    }
}

fn read<T: Clone>(lock: &std::sync::RwLock<T>) -> T {
    match lock.read() {
        Ok(b) => b.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn write<T>(lock: &std::sync::RwLock<T>, built: T) {
    match lock.write() {
        Ok(mut b) => *b = built,
        Err(poisoned) => *poisoned.into_inner() = built,
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
            etags: Arc::new(page_cache()),
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
                        self.auth.refused(write).await;
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

    /// A GraphQL request: its `data`, or GitHub's first error (typed as its `type` says),
    /// worded as about `subject`.
    pub(super) async fn graphql_data(
        &self,
        operation: &'static str,
        body: Value,
        subject: &str,
    ) -> PortResult<Value> {
        let graphql = self.auth.graphql().await?;
        let answer: Value = self
            .req(operation, graphql._post("/graphql", Some(&body)))
            .await?;
        match answer["errors"].as_array().and_then(|e| e.first()) {
            None => Ok(answer["data"].clone()),
            Some(e) => {
                let kind = match e["type"].as_str() {
                    Some("FORBIDDEN") => ErrorKind::Denied,
                    Some("NOT_FOUND") => ErrorKind::NotFound,
                    _ => ErrorKind::Rejected,
                };
                let message = e["message"].as_str().unwrap_or("refused");
                Err(PortError::new(
                    "github",
                    operation,
                    kind,
                    format!("{subject}: {message}"),
                ))
            }
        }
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
                    // Rounded up: a pause with 300 ms left is not "0s".
                    until
                        .saturating_duration_since(Instant::now())
                        .as_secs_f64()
                        .ceil()
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

#[cfg(test)]
mod tests {
    use super::checks::{RunWire, check_run, checks_of};
    use super::*;

    #[test]
    fn the_etag_cache_holds_at_most_its_bytes_however_many_pages_are_polled() {
        let cache = page_cache();
        let page = "x".repeat(256 * 1024);
        for n in 0..200 {
            cache.insert(
                format!("/repos/o/r/issues/{n}/comments"),
                ("\"e\"".into(), page.clone()),
            );
        }
        assert!(cache.weight() <= ETAG_BYTES, "{} bytes", cache.weight());
        assert!(cache.len() >= 16, "it still keeps pages: {}", cache.len());
    }

    #[test]
    fn the_etag_cache_counts_each_entrys_overhead_so_empty_pages_cannot_pile_up() {
        let cache = page_cache();
        for n in 0..200_000 {
            cache.insert(
                format!("/repos/o/r/issues/{n}/comments"),
                ("\"e\"".into(), "[]".into()),
            );
        }
        let most = usize::try_from(ETAG_BYTES).unwrap() / ENTRY_OVERHEAD;
        assert!(cache.len() <= most, "{} entries", cache.len());
        assert!(
            cache.len() >= most / 2,
            "it still keeps pages: {}",
            cache.len()
        );
    }

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

    #[test]
    fn other_check_runs_are_the_checks_the_newest_of_each_name_and_tugboats_own_are_left_out() {
        let run = |name: &str, status: &str, conclusion: Option<&str>| RunWire {
            name: name.into(),
            status: status.into(),
            conclusion: conclusion.map(Into::into),
        };
        let check = |name: &str, state: CheckState| Check {
            name: name.into(),
            state,
        };
        assert_eq!(checks_of(&[]), []);
        let own = run("tugboat/scan-gate", "in_progress", None);
        assert_eq!(checks_of(std::slice::from_ref(&own)), []);
        let runs = [
            own,
            run("build", "completed", Some("success")),
            run("lint", "completed", Some("skipped")),
            run("e2e", "queued", None),
            run("unit", "completed", Some("timed_out")),
            run("unit", "completed", Some("success")),
        ];
        assert_eq!(
            checks_of(&runs),
            [
                check("build", CheckState::Success),
                check("lint", CheckState::Success),
                check("e2e", CheckState::Pending),
                check("unit", CheckState::Failure),
            ],
            "a re-run listed later (older) does not replace the newest"
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
