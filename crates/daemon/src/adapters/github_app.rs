//! The GitHub adapter's identity as a GitHub App: installation tokens from the App's key,
//! through octocrab's App support (it signs the RS256 JWT and caches the token).
//!
//! - The installation is the configured one, or the GitHub repository's
//!   (`GET /repos/{owner}/{repo}/installation`).
//! - The login is derived from the App's slug (`<slug>[bot]`, from `GET /app`), so no
//!   `GET /user` is needed (an installation token cannot call it).
//! - A token is renewed a minute before it expires, and at once when a server refused it;
//!   the same token serves REST and git.
//! - The key is a rotating secret: when its file or SSM parameter changes, the App is built
//!   again with the new key.
//! - Tokens are opaque: nothing assumes a prefix or a length.
//!
//! Errors name the App id and what failed, never the key, a JWT or a token.

use std::sync::Arc;

use async_trait::async_trait;
use octocrab::Octocrab;
use octocrab::models::{AppId, InstallationId};
use octocrab::secrecy::ExposeSecret;
use serde::Deserialize;

use crate::credentials::{Rotating, Token};
use crate::ports::{ErrorKind, PortError, PortResult};
use crate::secret::Secret;

/// Renew an installation token this long before it expires.
const AHEAD: i64 = 60;

/// A GitHub App installation's tokens.
pub struct GitHubApp {
    app_id: u64,
    api_url: String,
    installation: u64,
    slug: String,
    key: Arc<Rotating>,
    /// The HTTP client under the App's octocrab clients (`tls::github`).
    http: reqwest::Client,
    /// The installation's client, and the key it was built with. One instance, shared by
    /// every request, so that its cached token is one: a renewal by git serves REST too.
    client: tokio::sync::Mutex<(Secret, Arc<Octocrab>)>,
}

impl std::fmt::Debug for GitHubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubApp")
            .field("app_id", &self.app_id)
            .field("installation", &self.installation)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AppWire {
    slug: String,
}

#[derive(Deserialize)]
struct InstallationWire {
    id: u64,
    /// What the installation was granted ("permissions", `installation` in GitHub's REST
    /// description): permission name → `read` / `write` / `admin`.
    #[serde(default)]
    permissions: std::collections::BTreeMap<String, String>,
}

/// Where to find the App's installation.
#[derive(Debug, Clone)]
pub struct Installation<'a> {
    pub api_url: &'a str,
    pub owner: &'a str,
    pub repo: &'a str,
    /// Configured, or discovered from the repository when `None`.
    pub id: Option<u64>,
}

impl GitHubApp {
    /// Authenticate as App `app_id` with `key`, find its installation, and get a first token:
    /// a wrong, revoked or unreadable key fails here, naming the App.
    pub async fn connect(
        app_id: u64,
        key: Arc<Rotating>,
        at: Installation<'_>,
    ) -> PortResult<Self> {
        let fail = |what: &str, e: octocrab::Error| app_error(app_id, what, e);
        let pem = key.current().await;
        let http = super::tls::github().map_err(|e| {
            PortError::new(
                "github",
                "app",
                ErrorKind::Rejected,
                format!("GitHub App {app_id}: {e}"),
            )
        })?;
        let app = app_client(&http, app_id, at.api_url, &pem)?;
        let id = match at.id {
            Some(id) => id,
            None => {
                let route = format!("/repos/{}/{}/installation", at.owner, at.repo);
                app.get::<InstallationWire, _, ()>(route, None)
                    .await
                    .map_err(|e| {
                        fail(
                            &format!("finding its installation on {}/{}", at.owner, at.repo),
                            e,
                        )
                    })?
                    .id
            }
        };
        let slug = app
            .get::<AppWire, _, ()>("/app", None)
            .await
            .map_err(|e| fail("reading the App (GET /app)", e))?
            .slug;
        let installation = app
            .installation(InstallationId(id))
            .map_err(|e| fail("choosing its installation", e))?;
        installation
            .installation_token()
            .await
            .map_err(|e| fail(&format!("getting a token for installation {id}"), e))?;
        tracing::info!(
            app_id,
            installation = id,
            slug,
            "authenticated as a GitHub App"
        );
        Ok(Self {
            app_id,
            api_url: at.api_url.to_owned(),
            installation: id,
            slug,
            key,
            http,
            client: tokio::sync::Mutex::new((pem, Arc::new(installation))),
        })
    }

    /// The repository permissions the installation on `owner/repo` was granted
    /// (`GET /repos/{owner}/{repo}/installation`, as the App), for `tugboat doctor`.
    pub async fn granted(
        &self,
        owner: &str,
        repo: &str,
    ) -> PortResult<std::collections::BTreeMap<String, String>> {
        let pem = self.key.current().await;
        let app = app_client(&self.http, self.app_id, &self.api_url, &pem)?;
        let route = format!("/repos/{owner}/{repo}/installation");
        app.get::<InstallationWire, _, ()>(route, None)
            .await
            .map(|w| w.permissions)
            .map_err(|e| app_error(self.app_id, "reading its installation's permissions", e))
    }

    /// The login GitHub shows for this App's actions: `<slug>[bot]`.
    pub fn login(&self) -> String {
        format!("{}[bot]", self.slug)
    }

    /// The installation's client (octocrab renews its token before it expires, and once
    /// after a 401, retrying the request), built again first when the key rotated.
    pub async fn client(&self) -> PortResult<Arc<Octocrab>> {
        let pem = self.key.current().await;
        let mut client = self.client.lock().await;
        if client.0 != pem {
            let app = app_client(&self.http, self.app_id, &self.api_url, &pem)?;
            let installation = app
                .installation(InstallationId(self.installation))
                .map_err(|e| app_error(self.app_id, "choosing its installation", e))?;
            tracing::info!(
                app_id = self.app_id,
                "the App's key rotated; using the new one"
            );
            *client = (pem, Arc::new(installation));
        }
        Ok(Arc::clone(&client.1))
    }

    async fn fetch(&self, ahead: chrono::Duration) -> PortResult<Secret> {
        let client = self.client().await?;
        client
            .installation_token_with_buffer(ahead)
            .await
            .map(|t| Secret::new(t.expose_secret()))
            .map_err(|e| {
                app_error(
                    self.app_id,
                    &format!("getting a token for installation {}", self.installation),
                    e,
                )
            })
    }
}

fn app_client(
    http: &reqwest::Client,
    app_id: u64,
    api_url: &str,
    pem: &Secret,
) -> PortResult<Octocrab> {
    let refused = |message: String| {
        PortError::new(
            "github",
            "app",
            ErrorKind::Rejected,
            format!("GitHub App {app_id}: {message}"),
        )
    };
    let key = octocrab::jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose().as_bytes())
        .map_err(|e| refused(format!("the private key is not an RSA key in PEM ({e})")))?;
    Octocrab::builder()
        .base_uri(api_url)
        .map_err(|e| refused(format!("api url '{api_url}': {e}")))?
        .app(AppId(app_id), key)
        .build_with_reqwest(http.clone())
        .map_err(|e| refused(e.to_string()))
}

fn app_error(app_id: u64, what: &str, e: octocrab::Error) -> PortError {
    let (kind, said) = match &e {
        octocrab::Error::GitHub { source, .. } => {
            let code = source.status_code.as_u16();
            // "If you exceed a secondary rate limit, you will receive a 403 or 429 response
            // and an error message that indicates that you exceeded a secondary rate limit"
            // (GitHub's REST docs, "Rate limits for the REST API"); the primary limit's 403
            // says "API rate limit exceeded". Either passes: it is not a refusal.
            let limited = source.message.to_ascii_lowercase().contains("rate limit");
            let kind = match code {
                403 | 429 if limited => ErrorKind::Throttled,
                429 => ErrorKind::Throttled,
                401 | 403 => ErrorKind::Denied,
                404 => ErrorKind::NotFound,
                500..=599 => ErrorKind::Transient,
                _ => ErrorKind::Rejected,
            };
            let hint = if code == 401 {
                " (a wrong or revoked private key, or another App's id)"
            } else if code == 404 {
                " (is the App installed on the repository?)"
            } else {
                ""
            };
            (kind, format!("HTTP {code}: {}{hint}", source.message))
        }
        other => (ErrorKind::Transient, other.to_string()),
    };
    PortError::new(
        "github",
        "app",
        kind,
        format!("GitHub App {app_id}: {what}: {said}"),
    )
}

#[async_trait]
impl Token for GitHubApp {
    async fn token(&self) -> PortResult<Secret> {
        self.fetch(chrono::Duration::seconds(AHEAD)).await
    }

    async fn refused(&self, used: &Secret) -> Option<Secret> {
        // Another request may have renewed it already.
        if let Ok(now) = self.token().await
            && now != *used
        {
            return Some(now);
        }
        // Asking for more time than any token has left makes octocrab get a new one.
        match self.fetch(chrono::Duration::days(1)).await {
            Ok(t) if t != *used => Some(t),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(app_id = self.app_id, error = %e.message, "cannot renew the installation token");
                None
            }
        }
    }
}
