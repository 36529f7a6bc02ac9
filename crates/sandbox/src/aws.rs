//! A stand-in for ECR and SSM speaking the AWS JSON 1.1 protocol (`X-Amz-Target`), for the
//! operations tugboat uses plus `PutImage` and `PutParameter`, so images and policies can be
//! pushed from outside with any AWS client; SQS (JSON 1.0, `sqs.rs`) and EventBridge
//! (`eventbridge.rs`) answer on the same endpoint, and every push and finished scan puts its
//! event on the bus, whose rules send it to the events queue. ECR's registry API (OCI
//! distribution) serves the images and cosign's signatures (`registry.rs`): every image the
//! sandbox pushes is signed by its CI key unless seeded otherwise, as a pipeline running
//! `cosign sign` after the push does; an image put with `PutImage` from outside is not.
//! AWS's request signatures (SigV4) are not checked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;

mod ecr;
mod registry;
mod ssm;

pub use registry::SeedSignature;

use super::SandboxClock;
use super::eventbridge::EventBridge;
use super::sqs::{REGION, Sqs};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tugboat::clock::Clock as _;

/// One finding seeded into the registry.
#[derive(Debug, Clone, Deserialize)]
pub struct SeedFinding {
    pub id: String,
    pub severity: String,
    #[serde(default)]
    pub package: Option<String>,
    /// Inspector's finding status under enhanced scanning: `ACTIVE` (the default),
    /// `SUPPRESSED` (a suppression rule) or `CLOSED` (remediated)
    /// (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_EnhancedImageScanFinding.html).
    #[serde(default)]
    pub status: Option<String>,
}

/// One platform of an index pushed the way Buildx pushes it.
#[derive(Debug, Clone, Deserialize)]
pub struct SeedPlatform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub findings: Vec<SeedFinding>,
}

/// What an index push stored: the index's digest and each child's.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushedIndex {
    pub digest: String,
    /// `os/architecture[/variant]` → the platform image's digest.
    pub platforms: BTreeMap<String, String>,
    /// The attestation manifests' digests (`unknown/unknown`).
    pub attestations: Vec<String>,
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// A basic scan of BuildKit's attestation manifest fails: it has no filesystem layer
/// (docker/build-push-action discussion #945).
const ATTESTATION_SCAN_FAILURE: &str = "LayerError: Failed to extract layer for image scan";

#[derive(Debug, Clone)]
struct Image {
    digest: String,
    /// The manifest as pushed, and its media type.
    manifest: String,
    media_type: String,
    tags: Vec<String>,
    pushed_at: f64,
    scan_status: String,
    /// The description of a `FAILED` scan.
    scan_failure: Option<String>,
    /// `ACTIVE`, or `ARCHIVED` once archived (pulls then fail until it is restored).
    status: &'static str,
    findings: Vec<SeedFinding>,
    /// The day StartImageScan last started a scan (one per image per day, as in ECR).
    scan_started: Option<chrono::NaiveDate>,
    /// A started scan answers `IN_PROGRESS` to this many more DescribeImageScanFindings
    /// calls, then `COMPLETE`, as a real scan takes a while.
    polls_until_complete: Option<u32>,
}

#[derive(Debug, Clone)]
struct Parameter {
    value: String,
    kind: String,
    version: i64,
}

#[derive(Default)]
struct Inner {
    repos: BTreeMap<String, Vec<Image>>,
    params: BTreeMap<String, Parameter>,
    calls: BTreeMap<String, u64>,
    /// Registry scanning: Amazon Inspector (enhanced) instead of basic.
    enhanced: bool,
    /// SecureString parameters whose KMS key this role may not use (`kms:Decrypt` denied).
    undecryptable: BTreeSet<String>,
    /// The repository filters of the registry's one scanning rule (scan on push, or
    /// continuous under enhanced scanning); `None`: `*`, every repository.
    scan_filters: Option<Vec<String>>,
    /// Repositories whose `imageTagMutability` is not ECR's default, `MUTABLE`.
    mutability: BTreeMap<String, String>,
    /// Under enhanced scanning, how long after a push Inspector answers "done" with no
    /// findings yet (aws/aws-sdk#289, aws/aws-cli#6759).
    inspector_delay: chrono::Duration,
    /// Pushes and scans put events on the queue (off while the sandbox seeds its history).
    emitting: bool,
    /// The registry API's blobs (signature payloads, configs) by digest.
    blobs: BTreeMap<String, Vec<u8>>,
    /// What `GetAuthorizationToken`'s token says after `AWS:` (made on first use).
    registry_password: String,
}

/// The shared state of the AWS stand-in.
#[derive(Clone)]
pub struct Aws {
    inner: Arc<Mutex<Inner>>,
    /// Stamps pushes and the day of a scan.
    clock: SandboxClock,
    /// SQS, with the queue the EventBridge rules fill with ECR and Inspector events.
    pub sqs: Sqs,
    /// EventBridge's default bus with the rules of manifests/aws/events.cfn.yaml.
    pub events: EventBridge,
    /// The CI's signing key and a stranger's.
    keys: Arc<registry::SigningKeys>,
}

impl Default for Aws {
    fn default() -> Self {
        Self::with_clock(SandboxClock::default())
    }
}

impl Aws {
    /// A stand-in stamping from `clock`.
    pub fn with_clock(clock: SandboxClock) -> Self {
        let sqs = Sqs::with_clock(clock.clone());
        Self {
            inner: Arc::default(),
            events: EventBridge::new(sqs.clone(), clock.clone()),
            sqs,
            clock,
            keys: Arc::new(registry::SigningKeys::generate()),
        }
    }

    /// From now on, every push and finished scan puts its event on the events queue.
    pub fn emit_events(&self) {
        self.lock().emitting = true;
    }

    /// The push's event, and for an image whose scan is complete, the scan's, as ECR would
    /// send them through EventBridge.
    fn announce(&self, repository: &str, tag: &str, digest: &str, scanned: Option<&[SeedFinding]>) {
        if !self.lock().emitting {
            return;
        }
        let mut detail = json!({"result": "SUCCESS", "repository-name": repository, "image-digest": digest,
                                "action-type": "PUSH"});
        // An untagged child of an index is pushed by digest: its event has no tag. ECR sends
        // a PUSH event "when each image push is completed" (ECR user guide, "Amazon ECR
        // events and EventBridge"); one event per child is inferred from that, not documented.
        if !tag.is_empty() {
            detail["image-tag"] = json!(tag);
        }
        self.events
            .put("aws.ecr", "ECR Image Action", vec![], detail);
        if let Some(findings) = scanned {
            self.announce_scan(repository, tag, digest, findings);
        }
    }

    /// A finished scan's event: ECR's for basic scanning, Inspector's for enhanced.
    fn announce_scan(&self, repository: &str, tag: &str, digest: &str, findings: &[SeedFinding]) {
        let (emitting, enhanced) = {
            let g = self.lock();
            (g.emitting, g.enhanced)
        };
        if !emitting {
            return;
        }
        let arn = format!("arn:aws:ecr:{REGION}:{REGISTRY_ID}:repository/{repository}");
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for f in findings {
            *counts.entry(f.severity.as_str()).or_insert(0) += 1;
        }
        let (source, kind, status, name) = if enhanced {
            (
                "aws.inspector2",
                "Inspector2 Scan",
                "INITIAL_SCAN_COMPLETE",
                arn.clone(),
            )
        } else {
            (
                "aws.ecr",
                "ECR Image Scan",
                "COMPLETE",
                repository.to_owned(),
            )
        };
        self.events.put(
            source,
            kind,
            vec![arn],
            json!({"scan-status": status, "repository-name": name, "finding-severity-counts": counts,
                   "image-digest": digest, "image-tags": if tag.is_empty() { vec![] } else { vec![tag] }}),
        );
    }
}

pub const REGISTRY_ID: &str = "123456789012";

/// One manifest to store.
struct Stored<'a> {
    manifest: &'a str,
    media_type: &'a str,
    scan_status: &'a str,
    findings: Vec<SeedFinding>,
    pushed_at: chrono::DateTime<Utc>,
}

/// A runnable image's manifest, derived from where it is pushed (and its platform).
fn image_manifest(repository: &str, tag: &str, platform: Option<&str>) -> String {
    let mut annotations = json!({"sandbox.repository": repository, "sandbox.tag": tag});
    if let Some(p) = platform {
        annotations["sandbox.platform"] = json!(p);
    }
    json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "digest": digest_of(&annotations.to_string()), "size": 1469},
           "layers": [], "annotations": annotations})
    .to_string()
}

fn digest_of(manifest: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(manifest.as_bytes()))
    )
}

fn aws_error(code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        Json(json!({"__type": code, "message": message})).to_string(),
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        v.to_string(),
    )
        .into_response()
}

impl Aws {
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/", post(dispatch))
            .route("/_sandbox/ecr/images", post(seed_image))
            .route("/v2/", get(registry::base))
            .route("/v2/{*rest}", get(registry::get_v2))
            .route("/_sandbox/s3/{digest}", get(registry::s3_blob))
            .route("/_sandbox/stats", get(stats))
            .route("/_sandbox/events/rules", post(put_rule))
            .with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Push an image (a manifest derived from repository and tag) with a scan result.
    pub fn push(
        &self,
        repository: &str,
        tag: &str,
        scan_status: &str,
        findings: Vec<SeedFinding>,
    ) -> String {
        self.push_at(repository, tag, scan_status, findings, self.clock.now())
    }

    /// [`Aws::push`] with a given push time, signed by the CI's key.
    pub fn push_at(
        &self,
        repository: &str,
        tag: &str,
        scan_status: &str,
        findings: Vec<SeedFinding>,
        pushed_at: chrono::DateTime<Utc>,
    ) -> String {
        let seed = (scan_status, findings, SeedSignature::Valid);
        self.push_signed(repository, tag, seed, pushed_at)
    }

    /// Push an image with a scan result and no signature (as a person or a pipeline without
    /// cosign pushes it).
    pub fn push_unsigned(
        &self,
        repository: &str,
        tag: &str,
        scan_status: &str,
        findings: Vec<SeedFinding>,
    ) -> String {
        let seed = (scan_status, findings, SeedSignature::None);
        self.push_signed(repository, tag, seed, self.clock.now())
    }

    /// Push an image with a scan result, signed as `seed.2` says.
    pub fn push_signed(
        &self,
        repository: &str,
        tag: &str,
        (scan_status, findings, signature): (&str, Vec<SeedFinding>, SeedSignature),
        pushed_at: chrono::DateTime<Utc>,
    ) -> String {
        let manifest = image_manifest(repository, tag, None);
        let digest = self.put_image(repository, tag, &manifest, scan_status, findings, pushed_at);
        self.sign(repository, &digest, signature, pushed_at);
        digest
    }

    fn put_image(
        &self,
        repository: &str,
        tag: &str,
        manifest: &str,
        scan_status: &str,
        findings: Vec<SeedFinding>,
        pushed_at: chrono::DateTime<Utc>,
    ) -> String {
        let digest = digest_of(manifest);
        let complete = (scan_status == "COMPLETE").then(|| findings.clone());
        let stored = Stored {
            manifest,
            media_type: OCI_MANIFEST,
            scan_status,
            findings,
            pushed_at,
        };
        self.store_image(repository, tag, &digest, stored);
        self.announce(repository, tag, &digest, complete.as_deref());
        digest
    }

    /// Push `tag` as Docker Buildx pushes it since BuildKit 0.11 (moby/buildkit#3499): an
    /// OCI image index whose tag names the index, one untagged image manifest per platform
    /// scanned on push with its own findings (ECR scans the children, never the index:
    /// docker/setup-buildx-action#186), and, with `attestations`, one untagged attestation
    /// manifest per platform (`unknown/unknown`, annotated `attestation-manifest`) whose
    /// basic scan fails. Each manifest's push is its own event, the children's without a tag.
    pub fn push_index(
        &self,
        repository: &str,
        tag: &str,
        platforms: Vec<SeedPlatform>,
        (attestations, signature): (bool, SeedSignature),
    ) -> PushedIndex {
        let now = self.clock.now();
        let mut entries = Vec::new();
        let mut pushed = PushedIndex {
            digest: String::new(),
            platforms: BTreeMap::new(),
            attestations: Vec::new(),
        };
        for p in platforms {
            let name = match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            };
            let manifest = image_manifest(repository, tag, Some(&name));
            let digest = self.put_image(repository, "", &manifest, "COMPLETE", p.findings, now);
            let mut platform = json!({"architecture": p.architecture, "os": p.os});
            if let Some(v) = &p.variant {
                platform["variant"] = json!(v);
            }
            entries.push(json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(), "platform": platform}));
            pushed.platforms.insert(name, digest);
        }
        if attestations {
            for image in pushed.platforms.values() {
                let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": digest_of(image), "size": 2},
                    "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": digest_of(&format!("provenance of {image}")), "size": 1024,
                                "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}]})
                .to_string();
                let failed = vec![];
                let digest = digest_of(&manifest);
                let stored = Stored {
                    manifest: &manifest,
                    media_type: OCI_MANIFEST,
                    scan_status: "FAILED",
                    findings: failed,
                    pushed_at: now,
                };
                self.store_image(repository, "", &digest, stored);
                self.announce(repository, "", &digest, None);
                entries.push(json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(),
                    "annotations": {"vnd.docker.reference.digest": image, "vnd.docker.reference.type": "attestation-manifest"},
                    "platform": {"architecture": "unknown", "os": "unknown"}}));
                pushed.attestations.push(digest);
            }
        }
        let index =
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).to_string();
        pushed.digest = digest_of(&index);
        let stored = Stored {
            manifest: &index,
            media_type: OCI_INDEX,
            // No scan of the index: ECR scans its children only (docker/setup-buildx-action#186).
            // That DescribeImageScanFindings then answers ScanNotFoundException is inferred,
            // not documented.
            scan_status: "NONE",
            findings: vec![],
            pushed_at: now,
        };
        self.store_image(repository, tag, &pushed.digest, stored);
        self.announce(repository, tag, &pushed.digest, None);
        // cosign signs the digest it is given: a tag's, the index's.
        self.sign(repository, &pushed.digest, signature, now);
        pushed
    }

    /// cosign signs `digest` with the CI's key `after` now (`cosign sign` after the push):
    /// a signature manifest under the tag `sha256-<hex>.sig` (cosign's SIGNATURE_SPEC), an
    /// ordinary tag of the repository whose basic scan is modelled as failing with
    /// `UnsupportedImageError`, as for any image without an operating system (inferred: a
    /// signature manifest has no filesystem layer). Returns the tag.
    pub fn push_signature(
        &self,
        repository: &str,
        digest: &str,
        after: chrono::Duration,
    ) -> String {
        let at = self.clock.now() + after;
        self.sign(repository, digest, SeedSignature::Valid, at)
            .unwrap_or_default()
    }

    fn store_image(&self, repository: &str, tag: &str, digest: &str, mut image: Stored<'_>) {
        if !self.scanned_on_push(repository) {
            image.scan_status = "NONE";
        }
        let mut g = self.lock();
        let images = g.repos.entry(repository.to_owned()).or_default();
        if !tag.is_empty() {
            for img in images.iter_mut() {
                img.tags.retain(|t| t != tag);
            }
        }
        let now = image.pushed_at.timestamp_micros() as f64 / 1e6;
        // A failed scan's words, as ECR gives them for what it cannot scan: an attestation,
        // or an image without an operating system (aws-observability/aws-otel-collector#2193).
        let scan_failure = (image.scan_status == "FAILED").then(|| {
            if image.manifest.contains("in-toto") {
                ATTESTATION_SCAN_FAILURE.to_owned()
            } else {
                "UnsupportedImageError: The operating system and/or package manager are not supported.".to_owned()
            }
        });
        match images.iter_mut().find(|i| i.digest == digest) {
            Some(img) if !tag.is_empty() => img.tags.push(tag.to_owned()),
            Some(_) => {}
            None => images.push(Image {
                digest: digest.to_owned(),
                manifest: image.manifest.to_owned(),
                media_type: image.media_type.to_owned(),
                tags: if tag.is_empty() {
                    vec![]
                } else {
                    vec![tag.to_owned()]
                },
                pushed_at: now,
                scan_status: image.scan_status.to_owned(),
                scan_failure,
                status: "ACTIVE",
                findings: image.findings,
                scan_started: None,
                polls_until_complete: None,
            }),
        }
    }

    /// The digest that `tag` of `repository` points at.
    pub fn digest(&self, repository: &str, tag: &str) -> Option<String> {
        self.lock()
            .repos
            .get(repository)?
            .iter()
            .find(|i| i.tags.iter().any(|t| t == tag))
            .map(|i| i.digest.clone())
    }

    /// Narrow the registry's scanning rule to repositories matching `filters` (ECR's
    /// `WILDCARD` filters): an image pushed to another repository gets no scan on push (no
    /// rule matches it), as `PutRegistryScanningConfiguration` documents ("filters to
    /// determine which individual repositories, or all repositories, are scanned when new
    /// images are pushed").
    pub fn set_scan_filters(&self, filters: &[&str]) {
        self.lock().scan_filters = Some(filters.iter().map(|f| (*f).to_owned()).collect());
    }

    /// Whether the registry's scanning rule matches `repository`.
    fn scanned_on_push(&self, repository: &str) -> bool {
        self.lock().scan_filters.as_ref().is_none_or(|filters| {
            filters
                .iter()
                .any(|f| tugboat::domain::doctor::wildcard(f, repository))
        })
    }

    /// Switch the registry between basic and enhanced (Inspector) scanning.
    pub fn set_enhanced_scanning(&self, enhanced: bool) {
        self.lock().enhanced = enhanced;
    }

    /// Set a repository's `imageTagMutability` (`IMMUTABLE`, …); ECR creates repositories
    /// `MUTABLE` unless told otherwise (API_CreateRepository).
    pub fn set_tag_mutability(&self, repository: &str, word: &str) {
        self.lock()
            .mutability
            .insert(repository.to_owned(), word.to_owned());
    }

    /// Archive an image: ECR keeps listing it, with `imageStatus: ARCHIVED`, and pulls of
    /// it fail until it is restored (ECR user guide, "Archiving an image").
    pub fn archive(&self, repository: &str, digest: &str) {
        if let Ok(img) = ecr::image_mut(&mut self.lock(), repository, digest) {
            img.status = "ARCHIVED";
        }
    }

    /// Delete an image, as BatchDeleteImage or a lifecycle rule's expiry does: it is gone
    /// from every answer.
    pub fn delete(&self, repository: &str, digest: &str) {
        if let Some(images) = self.lock().repos.get_mut(repository) {
            images.retain(|i| i.digest != digest);
        }
    }

    /// Under enhanced scanning, answer "done" with no findings for `delay` after each push,
    /// as Inspector does before its findings exist (aws/aws-sdk#289).
    pub fn set_inspector_delay(&self, delay: std::time::Duration) {
        self.lock().inspector_delay = chrono::Duration::from_std(delay).unwrap_or_default();
    }

    /// Change the scan state of an image (as a new scan, or Inspector, would find it).
    pub fn set_scan(
        &self,
        repository: &str,
        digest: &str,
        status: &str,
        findings: Vec<SeedFinding>,
    ) {
        let mut g = self.lock();
        let Some(img) = g
            .repos
            .get_mut(repository)
            .and_then(|i| i.iter_mut().find(|i| i.digest == digest))
        else {
            return;
        };
        img.scan_status = status.to_owned();
        img.findings = findings.clone();
        img.polls_until_complete = None;
        let tag = img.tags.first().cloned().unwrap_or_default();
        drop(g);
        if status == "COMPLETE" {
            self.announce_scan(repository, &tag, digest, &findings);
        }
    }

    pub fn put_parameter(&self, name: &str, value: &str, kind: &str) -> i64 {
        let mut g = self.lock();
        let version = g.params.get(name).map_or(1, |p| p.version + 1);
        g.params.insert(
            name.to_owned(),
            Parameter {
                value: value.to_owned(),
                kind: kind.to_owned(),
                version,
            },
        );
        version
    }

    /// Make parameter `name` a SecureString under a KMS key the role may not use: a read with
    /// decryption is refused with KMS's AccessDeniedException.
    pub fn deny_decrypt(&self, name: &str) {
        let mut g = self.lock();
        if let Some(p) = g.params.get_mut(name) {
            p.kind = "SecureString".to_owned();
        }
        g.undecryptable.insert(name.to_owned());
    }

    /// A parameter's value, as `GetParameter` with decryption answers it.
    pub fn parameter(&self, name: &str) -> Option<String> {
        self.lock().params.get(name).map(|p| p.value.clone())
    }

    /// How many calls each operation received.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }
}

async fn stats(State(aws): State<Aws>) -> Json<BTreeMap<String, u64>> {
    Json(aws.calls())
}

#[derive(Deserialize)]
struct SeedImage {
    repository: String,
    tag: String,
    #[serde(default = "complete")]
    scan_status: String,
    #[serde(default)]
    findings: Vec<SeedFinding>,
    /// Push an index the way Buildx does, one image per platform.
    #[serde(default)]
    platforms: Option<Vec<SeedPlatform>>,
    /// With `platforms`: one attestation manifest per platform (Buildx's default).
    #[serde(default = "yes")]
    attestations: bool,
    /// Who signs it: `valid` (the CI's key, the default), `unknown-key` or `none`.
    #[serde(default)]
    signature: SeedSignature,
}

fn yes() -> bool {
    true
}

fn complete() -> String {
    "COMPLETE".into()
}

/// A rule of the default bus, made or changed from outside (what `PutRule` does), for the
/// doctor's tests: `{"name", "pattern", "enabled"}`.
#[derive(Debug, Deserialize)]
struct PutRule {
    name: String,
    pattern: Value,
    #[serde(default = "enabled")]
    enabled: bool,
}

const fn enabled() -> bool {
    true
}

async fn put_rule(State(aws): State<Aws>, Json(r): Json<PutRule>) -> Response {
    if let Err(why) = super::eventbridge::matches(&r.pattern, &json!({})) {
        return aws_error("InvalidEventPatternException", &why);
    }
    aws.events.put_rule(&r.name, &r.pattern, r.enabled);
    ok(json!({"RuleArn": format!("arn:aws:events:{REGION}:{REGISTRY_ID}:rule/{}", r.name)}))
}

async fn seed_image(State(aws): State<Aws>, Json(s): Json<SeedImage>) -> Json<Value> {
    let mut out = match s.platforms {
        Some(platforms) => {
            let how = (s.attestations, s.signature);
            json!(aws.push_index(&s.repository, &s.tag, platforms, how))
        }
        None => {
            let seed = (s.scan_status.as_str(), s.findings, s.signature);
            json!({"digest": aws.push_signed(&s.repository, &s.tag, seed, aws.clock.now())})
        }
    };
    if s.signature != SeedSignature::None
        && let Some(digest) = out["digest"].as_str().map(str::to_owned)
    {
        out["signature_tag"] = json!(format!("{}.sig", digest.replacen(':', "-", 1)));
    }
    Json(out)
}

fn page<T: Clone>(items: &[T], token: Option<&str>, max: usize) -> (Vec<T>, Option<String>) {
    let start: usize = token.and_then(|t| t.parse().ok()).unwrap_or(0);
    let end = (start + max).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    (
        items.get(start..end).map(<[T]>::to_vec).unwrap_or_default(),
        next,
    )
}

async fn dispatch(State(aws): State<Aws>, headers: HeaderMap, body: String) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some((_, op)) = target.split_once('.') else {
        return aws_error("UnknownOperationException", "missing X-Amz-Target");
    };
    let Ok(req) = serde_json::from_str::<Value>(if body.is_empty() { "{}" } else { &body }) else {
        return aws_error("SerializationException", "body is not JSON");
    };
    *aws.lock().calls.entry(op.to_owned()).or_insert(0) += 1;
    if target.starts_with("AmazonSQS.") {
        return aws.sqs.handle(op, &req).await;
    }
    if target.starts_with("AWSEvents.") {
        return aws.events.handle(op, &req);
    }
    match op {
        "DescribeImages" => ecr::describe_images(&aws, &req),
        "DescribeImageScanFindings" => ecr::describe_findings(&aws, &req),
        "BatchGetImage" => ecr::batch_get_image(&aws, &req),
        "DescribeRepositories" => ecr::describe_repositories(&aws, &req),
        "StartImageScan" => ecr::start_scan(&aws, &req),
        "GetRegistryScanningConfiguration" => ecr::get_registry_scanning_configuration(&aws),
        "PutImage" => ecr::put_image(&aws, &req),
        "GetParametersByPath" => ssm::get_parameters_by_path(&aws, &req),
        "GetParameter" => ssm::get_parameter(&aws, &req),
        "PutParameter" => ssm::put_parameter(&aws, &req),
        "GetAuthorizationToken" => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            registry::get_authorization_token(&aws, host.unwrap_or("127.0.0.1"))
        }
        other => aws_error(
            "UnknownOperationException",
            &format!("the sandbox does not implement {other}"),
        ),
    }
}
