//! A stand-in for ECR and SSM speaking the AWS JSON 1.1 protocol (`X-Amz-Target`), for the
//! operations tugboat uses plus `PutImage` and `PutParameter`, so images and policies can be
//! pushed from outside with any AWS client; SQS (JSON 1.0, `sqs.rs`) answers on the same
//! endpoint, and every push and finished scan puts its EventBridge event on the events queue.
//! Signatures are not checked.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;

use super::SandboxClock;
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
}

#[derive(Debug, Clone)]
struct Image {
    digest: String,
    tags: Vec<String>,
    pushed_at: f64,
    scan_status: String,
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
    /// Pushes and scans put events on the queue (off while the sandbox seeds its history).
    emitting: bool,
}

/// The shared state of the AWS stand-in.
#[derive(Clone, Default)]
pub struct Aws {
    inner: Arc<Mutex<Inner>>,
    /// Stamps pushes and the day of a scan.
    clock: SandboxClock,
    /// SQS, with the queue an EventBridge rule would fill with ECR and Inspector events.
    pub sqs: Sqs,
}

impl Aws {
    /// A stand-in stamping from `clock`.
    pub fn with_clock(clock: SandboxClock) -> Self {
        Self {
            sqs: Sqs::with_clock(clock.clone()),
            clock,
            ..Self::default()
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
        self.sqs.emit(
            "aws.ecr",
            "ECR Image Action",
            vec![],
            json!({"result": "SUCCESS", "repository-name": repository, "image-digest": digest,
                   "action-type": "PUSH", "image-tag": tag}),
        );
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
        self.sqs.emit(
            source,
            kind,
            vec![arn],
            json!({"scan-status": status, "repository-name": name, "finding-severity-counts": counts,
                   "image-digest": digest, "image-tags": [tag]}),
        );
    }
}

pub const REGISTRY_ID: &str = "123456789012";

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
            .route("/_sandbox/stats", get(stats))
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

    /// [`Aws::push`] with a given push time.
    pub fn push_at(
        &self,
        repository: &str,
        tag: &str,
        scan_status: &str,
        findings: Vec<SeedFinding>,
        pushed_at: chrono::DateTime<Utc>,
    ) -> String {
        let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "annotations": {"sandbox.repository": repository, "sandbox.tag": tag}}).to_string();
        self.put_image(repository, tag, &manifest, scan_status, findings, pushed_at)
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
        self.store_image(repository, tag, &digest, scan_status, findings, pushed_at);
        self.announce(repository, tag, &digest, complete.as_deref());
        digest
    }

    fn store_image(
        &self,
        repository: &str,
        tag: &str,
        digest: &str,
        scan_status: &str,
        findings: Vec<SeedFinding>,
        pushed_at: chrono::DateTime<Utc>,
    ) {
        let mut g = self.lock();
        let images = g.repos.entry(repository.to_owned()).or_default();
        for img in images.iter_mut() {
            img.tags.retain(|t| t != tag);
        }
        let now = pushed_at.timestamp_micros() as f64 / 1e6;
        match images.iter_mut().find(|i| i.digest == digest) {
            Some(img) => img.tags.push(tag.to_owned()),
            None => images.push(Image {
                digest: digest.to_owned(),
                tags: vec![tag.to_owned()],
                pushed_at: now,
                scan_status: scan_status.to_owned(),
                findings,
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

    /// Switch the registry between basic and enhanced (Inspector) scanning.
    pub fn set_enhanced_scanning(&self, enhanced: bool) {
        self.lock().enhanced = enhanced;
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
}

fn complete() -> String {
    "COMPLETE".into()
}

async fn seed_image(State(aws): State<Aws>, Json(s): Json<SeedImage>) -> Json<Value> {
    let digest = aws.push(&s.repository, &s.tag, &s.scan_status, s.findings);
    Json(json!({"digest": digest}))
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
    let s = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_owned);
    match op {
        "DescribeImages" => describe_images(&aws, &req),
        "DescribeImageScanFindings" => describe_findings(&aws, &req),
        "StartImageScan" => start_scan(&aws, &req),
        "GetRegistryScanningConfiguration" => {
            let scan_type = if aws.lock().enhanced {
                "ENHANCED"
            } else {
                "BASIC"
            };
            let frequency = if scan_type == "ENHANCED" {
                "CONTINUOUS_SCAN"
            } else {
                "SCAN_ON_PUSH"
            };
            ok(
                json!({"registryId": REGISTRY_ID, "scanningConfiguration": {"scanType": scan_type,
                "rules": [{"scanFrequency": frequency, "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]}]}}),
            )
        }
        "PutImage" => {
            let (Some(repo), Some(manifest)) = (s("repositoryName"), s("imageManifest")) else {
                return aws_error(
                    "InvalidParameterException",
                    "repositoryName and imageManifest are required",
                );
            };
            let tag = s("imageTag").unwrap_or_default();
            let digest = aws.put_image(&repo, &tag, &manifest, "COMPLETE", vec![], aws.clock.now());
            ok(
                json!({"image": {"registryId": REGISTRY_ID, "repositoryName": repo, "imageId": {"imageDigest": digest, "imageTag": tag}, "imageManifest": manifest}}),
            )
        }
        "GetParametersByPath" => {
            let path = s("Path").unwrap_or_default();
            let recursive = req
                .get("Recursive")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let max = req
                .get("MaxResults")
                .and_then(Value::as_u64)
                .unwrap_or(10)
                .min(10) as usize;
            let prefix = if path.ends_with('/') {
                path.clone()
            } else {
                format!("{path}/")
            };
            let all: Vec<Value> = aws
                .lock()
                .params
                .iter()
                .filter(|(n, _)| {
                    n.starts_with(&prefix) && (recursive || !n[prefix.len()..].contains('/'))
                })
                .map(|(n, p)| param_json(n, p))
                .collect();
            let (items, next) = page(&all, s("NextToken").as_deref(), max);
            ok(json!({"Parameters": items, "NextToken": next}))
        }
        "GetParameter" => {
            let name = s("Name").unwrap_or_default();
            match aws.lock().params.get(&name) {
                Some(p) => ok(json!({"Parameter": param_json(&name, p)})),
                None => aws_error("ParameterNotFound", &format!("parameter {name} not found")),
            }
        }
        "PutParameter" => {
            let (Some(name), Some(value)) = (s("Name"), s("Value")) else {
                return aws_error("ValidationException", "Name and Value are required");
            };
            if value.len() > 4096 {
                return aws_error(
                    "ValidationException",
                    "Standard parameters are limited to 4096 characters",
                );
            }
            let version =
                aws.put_parameter(&name, &value, &s("Type").unwrap_or_else(|| "String".into()));
            ok(json!({"Version": version, "Tier": "Standard"}))
        }
        other => aws_error(
            "UnknownOperationException",
            &format!("the sandbox does not implement {other}"),
        ),
    }
}

fn param_json(name: &str, p: &Parameter) -> Value {
    json!({"Name": name, "Type": p.kind, "Value": p.value, "Version": p.version, "DataType": "text",
           "ARN": format!("arn:aws:ssm:eu-north-1:{REGISTRY_ID}:parameter{name}"),
           "LastModifiedDate": Utc::now().timestamp()})
}

fn describe_images(aws: &Aws, req: &Value) -> Response {
    let repo = req
        .get("repositoryName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let max = req
        .get("maxResults")
        .and_then(Value::as_u64)
        .unwrap_or(100)
        .clamp(1, 1000) as usize;
    let tagged_only = req.pointer("/filter/tagStatus").and_then(Value::as_str) == Some("TAGGED");
    let g = aws.lock();
    let Some(images) = g.repos.get(repo) else {
        return aws_error(
            "RepositoryNotFoundException",
            &format!(
                "The repository with name '{repo}' does not exist in the registry with id '{REGISTRY_ID}'"
            ),
        );
    };
    let all: Vec<Value> = images
        .iter()
        .filter(|i| !tagged_only || !i.tags.is_empty())
        .map(|i| json!({"registryId": REGISTRY_ID, "repositoryName": repo, "imageDigest": i.digest, "imageTags": i.tags,
                        "imageSizeInBytes": 52_428_800, "imagePushedAt": i.pushed_at,
                        "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json"}))
        .collect();
    let token = req.get("nextToken").and_then(Value::as_str);
    let (items, next) = page(&all, token, max);
    ok(json!({"imageDetails": items, "nextToken": next}))
}

/// The image `digest` of `repo`, or ECR's error (code, message) for a missing repository or
/// image.
fn image_mut<'a>(
    g: &'a mut Inner,
    repo: &str,
    digest: &str,
) -> Result<&'a mut Image, (&'static str, String)> {
    let Some(images) = g.repos.get_mut(repo) else {
        return Err((
            "RepositoryNotFoundException",
            format!("The repository with name '{repo}' does not exist"),
        ));
    };
    images
        .iter_mut()
        .find(|i| i.digest == digest)
        .ok_or_else(|| {
            (
                "ImageNotFoundException",
                format!("The image with imageId {{imageDigest:'{digest}'}} does not exist"),
            )
        })
}

fn start_scan(aws: &Aws, req: &Value) -> Response {
    let repo = req
        .get("repositoryName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let digest = req
        .pointer("/imageId/imageDigest")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let today = aws.clock.now().date_naive();
    let mut g = aws.lock();
    let img = match image_mut(&mut g, &repo, &digest) {
        Ok(i) => i,
        Err((code, message)) => return aws_error(code, &message),
    };
    if img.scan_started == Some(today) {
        return aws_error(
            "LimitExceededException",
            "The scan quota per image has been exceeded. Wait and try again.",
        );
    }
    img.scan_started = Some(today);
    // The scan is in progress for one more look; then the stored findings are its result.
    img.scan_status = "IN_PROGRESS".into();
    img.polls_until_complete = Some(1);
    ok(
        json!({"registryId": REGISTRY_ID, "repositoryName": repo, "imageId": {"imageDigest": digest},
               "imageScanStatus": {"status": "IN_PROGRESS"}}),
    )
}

fn describe_findings(aws: &Aws, req: &Value) -> Response {
    let repo = req
        .get("repositoryName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let digest = req
        .pointer("/imageId/imageDigest")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut g = aws.lock();
    let img = match image_mut(&mut g, repo, digest) {
        Ok(i) => i,
        Err((code, message)) => return aws_error(code, &message),
    };
    if img.scan_status == "NONE" {
        return aws_error(
            "ScanNotFoundException",
            &format!("Image scan does not exist for the image with '{{imageDigest:'{digest}'}}'"),
        );
    }
    match img.polls_until_complete {
        Some(0) => {
            img.scan_status = "COMPLETE".into();
            img.polls_until_complete = None;
        }
        Some(n) => img.polls_until_complete = Some(n - 1),
        None => {}
    }
    let mut counts: HashMap<String, u64> = HashMap::new();
    for f in &img.findings {
        *counts.entry(f.severity.clone()).or_insert(0) += 1;
    }
    let findings: Vec<Value> = img
        .findings
        .iter()
        .map(|f| json!({"name": f.id, "severity": f.severity, "uri": format!("https://nvd.nist.gov/vuln/detail/{}", f.id),
                        "attributes": f.package.iter().map(|p| json!({"key": "package_name", "value": p})).collect::<Vec<_>>()}))
        .collect();
    let max = req
        .get("maxResults")
        .and_then(Value::as_u64)
        .unwrap_or(100)
        .clamp(1, 1000) as usize;
    let (items, next) = page(&findings, req.get("nextToken").and_then(Value::as_str), max);
    let complete = img.scan_status == "COMPLETE";
    let mut out = json!({"registryId": REGISTRY_ID, "repositoryName": repo, "imageId": {"imageDigest": digest},
                         "imageScanStatus": {"status": img.scan_status, "description": if complete { "The scan was completed successfully." } else { "" }}});
    if complete {
        out["imageScanFindings"] = json!({"imageScanCompletedAt": img.pushed_at, "vulnerabilitySourceUpdatedAt": img.pushed_at,
                                          "findingSeverityCounts": counts, "findings": items});
        out["nextToken"] = json!(next);
    }
    ok(out)
}
