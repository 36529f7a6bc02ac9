//! ECR's registry API (the OCI distribution API v2) for the stand-in's images, and cosign's
//! signatures made by the sandbox's CI key.
//!
//! - `GetAuthorizationToken` answers a token (base64 of `AWS:<password>`), valid 12 hours,
//!   and the registry's address as `proxyEndpoint` (ECR API reference,
//!   GetAuthorizationToken; ECR's is `https://<account>.dkr.ecr.<region>.amazonaws.com`,
//!   the stand-in's is its own address).
//! - `GET /v2/` and `GET /v2/<name>/manifests/<reference>` (tag or digest) and
//!   `/v2/<name>/blobs/<digest>` ask for that token as basic authentication and answer 401
//!   with `WWW-Authenticate: Basic` without it (distribution-spec, "Pulling manifests",
//!   "Pulling blobs"; ECR user guide, "Private registry authentication"). A manifest is
//!   answered with its media type and `Docker-Content-Digest`; a blob with a
//!   `307 Temporary Redirect` to a pre-signed S3 URL, as ECR does (the URL
//!   `GetDownloadUrlForLayer` gives), here the stand-in under another host name
//!   (`localhost` for `127.0.0.1`), which refuses a request that also carries an
//!   `Authorization` header, as S3 refuses a pre-signed URL sent with one ("Only one auth
//!   mechanism allowed", S3 API reference, "Authenticating requests: query parameters").
//!   Errors are the spec's JSON (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `UNAUTHORIZED`).
//! - cosign's signature of a digest (specs/SIGNATURE_SPEC.md): the simple-signing payload
//!   signed with ECDSA P-256/SHA-256 (what `cosign generate-key-pair` makes), stored as a
//!   layer of the manifest tagged `sha256-<hex>.sig`, its signature in the layer's
//!   `dev.cosignproject.cosign/signature` annotation; signing again appends a layer (a new
//!   manifest under the same tag), as cosign does.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use axum::extract::{Path, State};
use base64::Engine as _;

use super::*;

/// Which key signs a pushed image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeedSignature {
    /// The sandbox's CI key, which the printed policy trusts for prod.
    #[default]
    Valid,
    /// A key no policy names.
    UnknownKey,
    /// No signature at all.
    None,
}

/// The sandbox's signing keys: its CI's, and a stranger's.
pub(super) struct SigningKeys {
    ci: EcdsaKeyPair,
    other: EcdsaKeyPair,
}

impl SigningKeys {
    pub(super) fn generate() -> Self {
        let new = || {
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
                .unwrap_or_else(|e| panic!("generating a P-256 key: {e}"))
        };
        Self {
            ci: new(),
            other: new(),
        }
    }
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// cosign's payload layer and its signature annotation.
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// A public key as PEM (`-----BEGIN PUBLIC KEY-----`, as `cosign.pub`).
fn pem(pair: &EcdsaKeyPair) -> String {
    let der = pair
        .public_key()
        .as_der()
        .unwrap_or_else(|e| panic!("encoding a public key: {e}"));
    let b64 = B64.encode(der.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

impl Aws {
    /// The sandbox CI's public key (PEM), which the printed policy's prod trusts.
    pub fn ci_public_key(&self) -> String {
        pem(&self.keys.ci)
    }

    /// Sign `digest` of `repository` as `cosign sign --key` does, with the key `which`
    /// names, `after` the image's push; nothing for [`SeedSignature::None`]. Returns the
    /// signature tag.
    pub fn sign(
        &self,
        repository: &str,
        digest: &str,
        which: SeedSignature,
        at: chrono::DateTime<Utc>,
    ) -> Option<String> {
        let pair = match which {
            SeedSignature::Valid => &self.keys.ci,
            SeedSignature::UnknownKey => &self.keys.other,
            SeedSignature::None => return None,
        };
        let reference = format!("{REGISTRY_ID}.dkr.ecr.{REGION}.amazonaws.com/{repository}");
        let payload = json!({"critical": {"identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest}, "type": "cosign container image signature"},
            "optional": null})
        .to_string();
        let signature = pair
            .sign(&SystemRandom::new(), payload.as_bytes())
            .unwrap_or_else(|e| panic!("signing: {e}"));
        let layer = json!({"mediaType": SIMPLE_SIGNING, "size": payload.len(), "digest": digest_of(&payload),
            "annotations": {SIGNATURE_ANNOTATION: B64.encode(signature.as_ref())}});
        self.lock()
            .blobs
            .insert(digest_of(&payload), payload.into_bytes());
        Some(self.append_signature(repository, digest, layer, at))
    }

    /// Store the signature manifest of `digest` with one more layer.
    fn append_signature(
        &self,
        repository: &str,
        digest: &str,
        layer: Value,
        at: chrono::DateTime<Utc>,
    ) -> String {
        let tag = format!("{}.sig", digest.replacen(':', "-", 1));
        let mut layers: Vec<Value> = self
            .manifest(repository, &tag)
            .and_then(|(m, _)| serde_json::from_str::<Value>(&m).ok())
            .and_then(|m| m["layers"].as_array().cloned())
            .unwrap_or_default();
        layers.push(layer);
        let config = "{}";
        self.lock()
            .blobs
            .insert(digest_of(config), config.as_bytes().to_vec());
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": digest_of(config)},
            "layers": layers})
        .to_string();
        let sig = digest_of(&manifest);
        let stored = Stored {
            manifest: &manifest,
            media_type: OCI_MANIFEST,
            scan_status: "FAILED",
            findings: vec![],
            pushed_at: at,
        };
        self.store_image(repository, &tag, &sig, stored);
        self.announce(repository, &tag, &sig, None);
        tag
    }

    /// The manifest `reference` (a tag or a digest) of `repository`, with its media type.
    fn manifest(&self, repository: &str, reference: &str) -> Option<(String, String)> {
        let g = self.lock();
        g.repos
            .get(repository)?
            .iter()
            .find(|i| i.digest == reference || i.tags.iter().any(|t| t == reference))
            .map(|i| (i.manifest.clone(), i.media_type.clone()))
    }

    fn password(&self) -> String {
        let mut g = self.lock();
        if g.registry_password.is_empty() {
            g.registry_password = crate::token("ecr");
        }
        g.registry_password.clone()
    }
}

/// `GetAuthorizationToken`: a token for the registry API at the stand-in's own address.
pub(super) fn get_authorization_token(aws: &Aws, host: &str) -> Response {
    let token = B64.encode(format!("AWS:{}", aws.password()));
    let expires = (aws.clock.now() + chrono::Duration::hours(12)).timestamp();
    ok(
        json!({"authorizationData": [{"authorizationToken": token, "expiresAt": expires,
        "proxyEndpoint": format!("http://{host}")}]}),
    )
}

/// A registry error as the distribution spec words it.
fn registry_error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut resp = (
        status,
        Json(json!({"errors": [{"code": code, "message": message}]})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(
                "Basic realm=\"https://sandbox.dkr.ecr\",service=\"ecr.amazonaws.com\"",
            ),
        );
    }
    resp
}

fn authorized(aws: &Aws, headers: &HeaderMap) -> bool {
    let want = format!("Basic {}", B64.encode(format!("AWS:{}", aws.password())));
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == want)
}

/// `GET /v2/`: the API's version check.
pub(super) async fn base(State(aws): State<Aws>, headers: HeaderMap) -> Response {
    if !authorized(&aws, &headers) {
        return registry_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
        );
    }
    Json(json!({})).into_response()
}

/// `GET /v2/<name>/manifests/<reference>` and `GET /v2/<name>/blobs/<digest>`.
pub(super) async fn get_v2(
    State(aws): State<Aws>,
    Path(rest): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&aws, &headers) {
        return registry_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
        );
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        *aws.lock()
            .calls
            .entry("registry:GetManifest".into())
            .or_insert(0) += 1;
        return match aws.manifest(name, reference) {
            Some((body, media_type)) => {
                let digest = digest_of(&body);
                (
                    [
                        (header::CONTENT_TYPE, media_type),
                        (
                            header::HeaderName::from_static("docker-content-digest"),
                            digest,
                        ),
                    ],
                    body,
                )
                    .into_response()
            }
            None => registry_error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
            ),
        };
    }
    if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
        *aws.lock()
            .calls
            .entry("registry:GetBlob".into())
            .or_insert(0) += 1;
        if !aws.lock().blobs.contains_key(digest) {
            return registry_error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                "blob unknown to registry",
            );
        }
        let port = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.rsplit_once(':'))
            .map_or("80", |(_, p)| p);
        let location = format!(
            "http://localhost:{port}/_sandbox/s3/{digest}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=sandbox"
        );
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    registry_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "not a registry path")
}

/// A layer's pre-signed download.
pub(super) async fn s3_blob(
    State(aws): State<Aws>,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        let body = "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified</Message></Error>";
        return (StatusCode::BAD_REQUEST, body).into_response();
    }
    match aws.lock().blobs.get(&digest) {
        Some(b) => b.clone().into_response(),
        None => (StatusCode::NOT_FOUND, "NoSuchKey").into_response(),
    }
}
