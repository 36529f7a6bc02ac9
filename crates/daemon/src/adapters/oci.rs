//! cosign's signatures through ECR's registry API, the OCI distribution API v2
//! (https://github.com/opencontainers/distribution-spec/blob/main/spec.md), with the token
//! ECR's `GetAuthorizationToken` gives: base64 of `AWS:<password>`, sent as HTTP basic
//! authentication, valid for 12 hours, with the registry's address as `proxyEndpoint`
//! (ECR user guide, "Private registry authentication"; API reference,
//! GetAuthorizationToken). A layer's blob is answered with a redirect to a pre-signed S3
//! URL (what `GetDownloadUrlForLayer` gives); reqwest drops the `Authorization` header when
//! a redirect leaves the registry's host.
//!
//! Everything read is content-addressed and checked: the manifest's bytes against the
//! digest asked for, each payload against its layer's digest.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ecr::Client;
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::aws::{CountCalls, map_err};
use crate::domain::image::Digest;
use crate::domain::signature;
use crate::ports::{ErrorKind, PortError, PortResult, Signatures, StoredSignature};
use crate::secret::Secret;
use crate::telemetry::ApiMetrics;

/// The manifest types a signature manifest is stored as (cosign pushes OCI; older
/// registries convert to Docker's).
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
/// ECR's largest manifest (ECR service quotas: "Image manifest size", 4 MiB).
const MAX_MANIFEST: usize = 4 * 1024 * 1024;
/// How long a token is used: ECR's last 12 hours, so half of that never meets an expired
/// one without reading a clock of the day (and a refusal renews it at once anyway).
const TOKEN_USE: Duration = Duration::from_secs(6 * 3600);

/// A registry token and where it is valid.
#[derive(Clone)]
struct Token {
    /// `Basic <base64 of AWS:password>`.
    header: Secret,
    /// The registry's address, without a trailing slash.
    endpoint: String,
    until: Instant,
}

/// ECR's OCI distribution API.
pub struct OciRegistry {
    client: Client,
    http: reqwest::Client,
    api: ApiMetrics,
    /// The token in hand, with the account's registry's address.
    tokens: Mutex<Option<Token>>,
    /// The registry's address when it is not the one the token names (`aws.registry_url`).
    endpoint: Option<String>,
}

impl OciRegistry {
    /// A client whose every request is counted into `api` (`ecr` for the token, `registry`
    /// for the distribution API).
    pub fn new(sdk: &aws_config::SdkConfig, api: &ApiMetrics) -> Result<Self, String> {
        let conf = aws_sdk_ecr::config::Builder::from(sdk)
            .interceptor(CountCalls {
                system: "ecr",
                api: api.clone(),
            })
            .build();
        let http = super::tls::builder()?
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("the registry's HTTP client: {e}"))?;
        Ok(Self {
            client: Client::from_conf(conf),
            http,
            api: api.clone(),
            tokens: Mutex::default(),
            endpoint: None,
        })
    }

    /// The registry API at `url` rather than where the token says (an interface VPC
    /// endpoint's own name; a registry on loopback in the tests), with the same token.
    pub fn at(mut self, url: &str) -> Self {
        self.endpoint = Some(url.trim_end_matches('/').to_owned());
        self
    }

    /// The token, asked of ECR when there is none still valid, and the address of the
    /// registry `registry_id` (`None`: the account's own). One token serves every registry
    /// the principal may read (GetAuthorizationToken: "specifying a registry ID doesn't
    /// change the permissions scope"); another account's registry is the same host with
    /// its account ID (`<account>.dkr.ecr.<region>.amazonaws.com`).
    async fn token(&self, registry_id: Option<&str>) -> PortResult<Token> {
        let mut held = self.tokens.lock().await;
        let token = match held.as_ref() {
            Some(t) if t.until > Instant::now() => t.clone(),
            _ => {
                let t = self.new_token().await?;
                *held = Some(t.clone());
                t
            }
        };
        let own = self.endpoint.as_deref().unwrap_or(&token.endpoint);
        Ok(Token {
            endpoint: registry_endpoint(own, registry_id),
            ..token
        })
    }

    async fn new_token(&self) -> PortResult<Token> {
        let op = "GetAuthorizationToken";
        let out = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| map_err("ecr", op, &e, &[]))?;
        let bad = |m: &str| PortError::new("ecr", op, ErrorKind::Rejected, m);
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| bad("no authorization data in the answer"))?;
        let (Some(token), Some(endpoint)) = (data.authorization_token(), data.proxy_endpoint())
        else {
            return Err(bad("the answer has no token or no proxyEndpoint"));
        };
        Ok(Token {
            header: Secret::new(format!("Basic {token}")),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            until: Instant::now() + TOKEN_USE,
        })
    }

    /// Whether the registry API answers with a token (`GET /v2/`, the distribution spec's
    /// version check), for `tugboat doctor`: the address it answered at.
    pub async fn check(&self) -> PortResult<String> {
        let token = self.token(None).await?;
        self.get(None, "Ping", "/v2/", 64 * 1024).await?;
        Ok(token.endpoint)
    }

    /// GET `path` of the registry with its token (once more with a new token if refused),
    /// at most `limit` bytes.
    async fn get(
        &self,
        registry_id: Option<&str>,
        op: &'static str,
        path: &str,
        limit: usize,
    ) -> PortResult<Vec<u8>> {
        let mut token = self.token(registry_id).await?;
        for attempt in 0..2 {
            self.api.call("registry", op);
            let sent = self
                .http
                .get(format!("{}{path}", token.endpoint))
                .header(reqwest::header::ACCEPT, ACCEPT)
                .header(reqwest::header::AUTHORIZATION, token.header.expose())
                .send()
                .await;
            let resp = sent.map_err(|e| self.failed(op, ErrorKind::Transient, without_url(e)))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                *self.tokens.lock().await = None;
                token = self.token(registry_id).await?;
                continue;
            }
            if !status.is_success() {
                return Err(self.failed(op, kind_of(status), format!("{path}: HTTP {status}")));
            }
            return read_limited(resp, limit)
                .await
                .map_err(|m| self.failed(op, ErrorKind::Transient, format!("{path}: {m}")));
        }
        Err(self.failed(
            op,
            ErrorKind::Denied,
            format!("{path}: HTTP 401 with a new token"),
        ))
    }

    fn failed(&self, op: &'static str, kind: ErrorKind, message: String) -> PortError {
        self.api.error("registry", op);
        PortError::new("registry", op, kind, message)
    }
}

/// The address of registry `registry_id` given the account's (`proxyEndpoint`): the same
/// with the account ID swapped, where the host is ECR's `<account>.dkr.ecr.…`.
fn registry_endpoint(own: &str, registry_id: Option<&str>) -> String {
    let Some(id) = registry_id else {
        return own.to_owned();
    };
    let (scheme, host) = own.split_once("://").unwrap_or(("https", own));
    match host.split_once(".dkr.ecr.") {
        Some((account, rest)) if account.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{scheme}://{id}.dkr.ecr.{rest}")
        }
        _ => own.to_owned(),
    }
}

/// The error's words without its URL, which may be a pre-signed S3 URL (credentials in
/// its query).
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_redirect() {
        "too many redirects"
    } else {
        "the request failed"
    };
    format!("{kind}: {}", e.without_url())
}

fn kind_of(status: StatusCode) -> ErrorKind {
    match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::Denied,
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::Throttled,
        s if s.is_server_error() => ErrorKind::Transient,
        _ => ErrorKind::Rejected,
    }
}

/// The body, refused once it passes `limit` bytes.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is over {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether `bytes` are what `digest` names.
fn matches(bytes: &[u8], digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex::encode(Sha256::digest(bytes)) == hex)
}

#[async_trait]
impl Signatures for OciRegistry {
    async fn cosign_signatures(
        &self,
        registry_id: Option<&str>,
        repository: &str,
        manifest: &Digest,
    ) -> PortResult<Vec<StoredSignature>> {
        let op = "GetManifest";
        let path = format!("/v2/{repository}/manifests/{manifest}");
        let body = self.get(registry_id, op, &path, MAX_MANIFEST).await?;
        if !matches(&body, manifest.as_str()) {
            return Err(self.failed(
                op,
                ErrorKind::Rejected,
                format!("{path}: the manifest does not match its digest"),
            ));
        }
        let layers = signature::layers(&body)
            .map_err(|m| self.failed(op, ErrorKind::Rejected, format!("{path}: {m}")))?;
        let mut out = Vec::new();
        for l in layers {
            if l.size > signature::MAX_PAYLOAD as u64 {
                continue;
            }
            let path = format!("/v2/{repository}/blobs/{}", l.digest);
            let payload = self
                .get(registry_id, "GetBlob", &path, signature::MAX_PAYLOAD)
                .await?;
            if !matches(&payload, &l.digest) {
                return Err(self.failed(
                    "GetBlob",
                    ErrorKind::Rejected,
                    format!("{path}: the blob does not match its digest"),
                ));
            }
            out.push(StoredSignature {
                payload,
                signature: l.signature,
                certificate: l.certificate,
                chain: l.chain,
                bundle: l.bundle,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_accounts_registry_is_the_same_host_with_its_account_id() {
        let own = "https://111122223333.dkr.ecr.eu-west-1.amazonaws.com";
        assert_eq!(registry_endpoint(own, None), own);
        assert_eq!(
            registry_endpoint(own, Some("444455556666")),
            "https://444455556666.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            registry_endpoint("http://127.0.0.1:5000", Some("444455556666")),
            "http://127.0.0.1:5000"
        );
    }

    #[test]
    fn a_manifest_is_believed_only_if_it_matches_its_digest() {
        let body = b"{}";
        let d = format!("sha256:{}", hex::encode(Sha256::digest(body)));
        assert!(matches(body, &d));
        assert!(!matches(b"{ }", &d));
        assert!(!matches(body, "sha512:00"));
    }
}
