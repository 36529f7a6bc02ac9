//! The ECR registry adapter (aws-sdk-ecr): DescribeImages, BatchGetImage (an index's
//! children), DescribeRepositories (tag mutability), DescribeImageScanFindings, StartImageScan
//! and GetRegistryScanningConfiguration.

use async_trait::async_trait;
use aws_sdk_ecr::Client;
use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_sdk_ecr::types::{
    DescribeImagesFilter, ImageIdentifier, ScanStatus as EcrScanStatus, TagStatus,
};
use chrono::{DateTime, Utc};

use super::aws::{CountCalls, map_err};
use crate::domain::doctor::RegistryScanning;
use crate::domain::gate::{Finding, ScanReport, ScanStatus, Severity};
use crate::domain::image::{Digest, Tag};
use crate::domain::index::{self, ImageKind, PlatformImage};
use crate::domain::select::ImageRecord;
use crate::ports::{ErrorKind, PortError, PortResult, Pullable, Registry, ScanStart, ScanType};
use crate::telemetry::ApiMetrics;

/// ECR through the AWS SDK.
#[derive(Clone)]
pub struct Ecr {
    client: Client,
}

impl Ecr {
    /// A client whose every request is counted into `api`.
    pub fn new(sdk: &aws_config::SdkConfig, api: &ApiMetrics) -> Self {
        let conf = aws_sdk_ecr::config::Builder::from(sdk)
            .interceptor(CountCalls {
                system: "ecr",
                api: api.clone(),
            })
            .build();
        Self {
            client: Client::from_conf(conf),
        }
    }

    /// The registry's scanning configuration with its rules (GetRegistryScanningConfiguration).
    pub async fn registry_scanning(&self) -> PortResult<RegistryScanning> {
        let out = self
            .client
            .get_registry_scanning_configuration()
            .send()
            .await
            .map_err(|e| map_err("ecr", "GetRegistryScanningConfiguration", &e, &[]))?;
        let conf = out.scanning_configuration();
        Ok(RegistryScanning {
            // "When a registry scanning configuration is not defined, by default the BASIC
            // scan type is used" (PutRegistryScanningConfiguration).
            scan_type: conf
                .and_then(|c| c.scan_type())
                .map_or("BASIC", |t| t.as_str())
                .to_owned(),
            rules: conf
                .map(|c| c.rules())
                .unwrap_or_default()
                .iter()
                .map(|r| {
                    let filters = r.repository_filters().iter().map(|f| f.filter().to_owned());
                    (r.scan_frequency().as_str().to_owned(), filters.collect())
                })
                .collect(),
        })
    }

    /// A repository's `imageTagMutability` and its own `scanOnPush` (DescribeRepositories);
    /// a repository that does not exist is a `NotFound` error.
    pub async fn repository(
        &self,
        registry_id: Option<&str>,
        name: &str,
    ) -> PortResult<(String, bool)> {
        let out = self
            .client
            .describe_repositories()
            .set_registry_id(registry_id.map(str::to_owned))
            .repository_names(name)
            .send()
            .await
            .map_err(|e| {
                map_err(
                    "ecr",
                    "DescribeRepositories",
                    &e,
                    &["RepositoryNotFoundException"],
                )
            })?;
        let repo = out.repositories().first();
        // Absent, it is ECR's default: MUTABLE (API_Repository).
        Ok((
            repo.and_then(|r| r.image_tag_mutability())
                .map_or("MUTABLE", |m| m.as_str())
                .to_owned(),
            repo.and_then(|r| r.image_scanning_configuration())
                .is_some_and(|c| c.scan_on_push()),
        ))
    }
}

fn image_id(digest: &Digest) -> ImageIdentifier {
    ImageIdentifier::builder()
        .image_digest(digest.as_str())
        .build()
}

fn time(t: Option<&aws_sdk_ecr::primitives::DateTime>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or_default()
}

#[async_trait]
impl Registry for Ecr {
    async fn scan_type(&self) -> PortResult<ScanType> {
        Ok(match self.registry_scanning().await?.scan_type.as_str() {
            "ENHANCED" => ScanType::Enhanced,
            _ => ScanType::Basic,
        })
    }

    async fn list_images(
        &self,
        registry_id: Option<&str>,
        repository: &str,
    ) -> PortResult<Vec<ImageRecord>> {
        let mut pages = self
            .client
            .describe_images()
            .set_registry_id(registry_id.map(str::to_owned))
            .repository_name(repository)
            .filter(
                DescribeImagesFilter::builder()
                    .tag_status(TagStatus::Tagged)
                    .build(),
            )
            .max_results(1000)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                map_err(
                    "ecr",
                    "DescribeImages",
                    &e,
                    &["RepositoryNotFoundException"],
                )
            })?;
            for d in page.image_details() {
                let Some(digest) = d.image_digest().and_then(|s| Digest::parse(s).ok()) else {
                    tracing::warn!(repository, digest = ?d.image_digest(), "skipping an image whose digest is not sha256");
                    continue;
                };
                let mut tags = Vec::new();
                for t in d.image_tags() {
                    match Tag::parse(t) {
                        Ok(t) => tags.push(t),
                        Err(e) => {
                            tracing::warn!(repository, error = %e, "skipping a tag that violates the OCI grammar")
                        }
                    }
                }
                // An archived image stays listed but cannot be pulled
                // (https://docs.aws.amazon.com/AmazonECR/latest/userguide/archive-image.html).
                let archived = d.image_status().is_some_and(|s| s.as_str() != "ACTIVE");
                if !tags.is_empty() && !archived {
                    out.push(ImageRecord {
                        digest,
                        tags,
                        pushed_at: time(d.image_pushed_at()),
                        kind: ImageKind::of(d.image_manifest_media_type(), d.artifact_media_type()),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn platforms(
        &self,
        registry_id: Option<&str>,
        repository: &str,
        digest: &Digest,
    ) -> PortResult<Vec<PlatformImage>> {
        // The API reference lists only image manifest types as accepted, but ECR serves
        // indexes and manifest lists through BatchGetImage, which is how a pull of a
        // multi-architecture image gets its index (AWS, "Introducing multi-architecture
        // container images for Amazon ECR", 2020); without these two types ECR answers
        // with an image-manifest conversion failure.
        let out = self
            .client
            .batch_get_image()
            .set_registry_id(registry_id.map(str::to_owned))
            .repository_name(repository)
            .image_ids(image_id(digest))
            .accepted_media_types(index::OCI_INDEX)
            .accepted_media_types(index::DOCKER_LIST)
            .send()
            .await
            .map_err(|e| map_err("ecr", "BatchGetImage", &e, &["RepositoryNotFoundException"]))?;
        let rejected =
            |message: String| PortError::new("ecr", "BatchGetImage", ErrorKind::Rejected, message);
        if let Some(f) = out.failures().first() {
            let code = f.failure_code().map_or("", |c| c.as_str());
            let kind = if code == "ImageNotFound" {
                ErrorKind::NotFound
            } else {
                ErrorKind::Rejected
            };
            return Err(PortError::new(
                "ecr",
                "BatchGetImage",
                kind,
                format!("{code}: {}", f.failure_reason().unwrap_or_default()),
            ));
        }
        let manifest = out
            .images()
            .first()
            .and_then(|i| i.image_manifest())
            .ok_or_else(|| rejected(format!("no manifest for {digest}")))?;
        index::platforms(manifest).map_err(|e| rejected(format!("{digest}: {e}")))
    }

    async fn tag_mutability(
        &self,
        registry_id: Option<&str>,
        repository: &str,
    ) -> PortResult<String> {
        Ok(self.repository(registry_id, repository).await?.0)
    }

    async fn pullable(
        &self,
        registry_id: Option<&str>,
        repository: &str,
        digest: &Digest,
    ) -> PortResult<Pullable> {
        let out = self
            .client
            .describe_images()
            .set_registry_id(registry_id.map(str::to_owned))
            .repository_name(repository)
            .image_ids(image_id(digest))
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if e.code() == Some("ImageNotFoundException") => return Ok(Pullable::Gone),
            Err(e) => {
                return Err(map_err(
                    "ecr",
                    "DescribeImages",
                    &e,
                    &["RepositoryNotFoundException"],
                ));
            }
        };
        // An archived image stays listed with its status; pulls of it fail until it is
        // restored (https://docs.aws.amazon.com/AmazonECR/latest/userguide/archive-image.html).
        Ok(
            match out.image_details().first().map(|d| d.image_status()) {
                None => Pullable::Gone,
                Some(None) => Pullable::Yes,
                Some(Some(s)) if s.as_str() == "ACTIVE" => Pullable::Yes,
                Some(Some(s)) => Pullable::NotActive(s.as_str().to_owned()),
            },
        )
    }

    async fn start_scan(
        &self,
        registry_id: Option<&str>,
        repository: &str,
        digest: &Digest,
    ) -> PortResult<ScanStart> {
        // One attempt: the SDK's retry policy counts LimitExceededException as throttling and
        // would spend its backoff on an answer that cannot change until tomorrow.
        let once = aws_sdk_ecr::config::Builder::default()
            .retry_config(aws_sdk_ecr::config::retry::RetryConfig::standard().with_max_attempts(1));
        let out = self
            .client
            .start_image_scan()
            .set_registry_id(registry_id.map(str::to_owned))
            .repository_name(repository)
            .image_id(image_id(digest))
            .customize()
            .config_override(once)
            .send()
            .await;
        match out {
            Ok(_) => Ok(ScanStart::Started),
            Err(e) if e.code() == Some("LimitExceededException") => {
                Ok(ScanStart::AlreadyScannedToday)
            }
            // "An artifact with media type 'application/vnd.oci.image.index.v1+json' cannot
            // be scanned" (docker/setup-buildx-action#186), and an archived image; both are in
            // StartImageScanError of aws-sdk-ecr.
            Err(e)
                if matches!(
                    e.code(),
                    Some("UnsupportedImageTypeException" | "ImageArchivedException")
                ) =>
            {
                Ok(ScanStart::Refused(format!(
                    "{}: {}",
                    e.code().unwrap_or_default(),
                    e.message().unwrap_or_default()
                )))
            }
            Err(e) => Err(map_err(
                "ecr",
                "StartImageScan",
                &e,
                &["ImageNotFoundException", "RepositoryNotFoundException"],
            )),
        }
    }

    async fn scan_report(
        &self,
        registry_id: Option<&str>,
        repository: &str,
        digest: &Digest,
    ) -> PortResult<ScanReport> {
        let mut pages = self
            .client
            .describe_image_scan_findings()
            .set_registry_id(registry_id.map(str::to_owned))
            .repository_name(repository)
            .image_id(image_id(digest))
            .max_results(1000)
            .into_paginator()
            .send();
        let mut report = ScanReport::not_found();
        let mut answered = false;
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    let err = map_err(
                        "ecr",
                        "DescribeImageScanFindings",
                        &e,
                        &["ScanNotFoundException"],
                    );
                    if err.kind == ErrorKind::NotFound {
                        return Ok(ScanReport::not_found());
                    }
                    return Err(err);
                }
            };
            if let Some(st) = page.image_scan_status() {
                report.status = status_of(st);
            }
            if let Some(f) = page.image_scan_findings() {
                answered |= read_findings(f, &mut report);
            }
        }
        if report.status == ScanStatus::NotFound {
            return Err(PortError::new(
                "ecr",
                "DescribeImageScanFindings",
                ErrorKind::Rejected,
                "answer had no imageScanStatus",
            ));
        }
        if !report.not_counted.is_empty() {
            // The summary counts may include what is not counted: the list decides.
            report.counts.clear();
        }
        if report.status == ScanStatus::Complete && !answered {
            // Right after a push, enhanced scanning answers COMPLETE (scan on push) or ACTIVE
            // (continuous) with `findings: []` and nothing else; the findings arrive seconds
            // later (aws/aws-sdk#289, aws/aws-cli#6759). A finished scan carries its
            // completion time or its counts, so until one is there the scan is still running.
            report.status = ScanStatus::InProgress;
        }
        Ok(report)
    }
}

/// ECR's scan status as the gate reads it.
fn status_of(st: &aws_sdk_ecr::types::ImageScanStatus) -> ScanStatus {
    let desc = st.description().unwrap_or("").to_owned();
    match st.status() {
        // ACTIVE is enhanced (continuous) scanning's "monitored" status.
        Some(EcrScanStatus::Complete) | Some(EcrScanStatus::Active) => ScanStatus::Complete,
        Some(EcrScanStatus::Pending) => ScanStatus::Pending,
        Some(EcrScanStatus::InProgress) => ScanStatus::InProgress,
        // A basic scan of a scratch or distroless image fails with "UnsupportedImageError:
        // The operating system and/or package manager are not supported" rather than
        // answering UNSUPPORTED_IMAGE (aws-observability/aws-otel-collector#2193; ECR user
        // guide, "Troubleshooting image scanning").
        Some(EcrScanStatus::Failed) if desc.contains("UnsupportedImageError") => {
            ScanStatus::UnsupportedImage(desc)
        }
        Some(EcrScanStatus::Failed) => ScanStatus::Failed(desc),
        Some(EcrScanStatus::UnsupportedImage) => ScanStatus::UnsupportedImage(desc),
        Some(other) => ScanStatus::Other(other.as_str().to_owned()),
        None => ScanStatus::NotFound,
    }
}

/// One page's findings into `report`; whether the page shows a finished scan (a completion
/// time, severity counts or any finding).
fn read_findings(f: &aws_sdk_ecr::types::ImageScanFindings, report: &mut ScanReport) -> bool {
    let answered = f.image_scan_completed_at().is_some()
        || f.finding_severity_counts().is_some()
        || !f.findings().is_empty()
        || !f.enhanced_findings().is_empty();
    if let Some(counts) = f.finding_severity_counts() {
        for (sev, n) in counts {
            if let Some(s) = Severity::parse(sev.as_str()) {
                report.counts.insert(s, u32::try_from(*n).unwrap_or(0));
            }
        }
    }
    for x in f.findings() {
        let Some(severity) = x.severity().and_then(|s| Severity::parse(s.as_str())) else {
            continue;
        };
        let package = x
            .attributes()
            .iter()
            .find(|a| a.key() == "package_name")
            .and_then(|a| a.value())
            .map(str::to_owned);
        report.findings.push(Finding {
            id: x.name().unwrap_or("(unnamed)").to_owned(),
            severity,
            package,
            fixed_in: None,
            url: x.uri().map(str::to_owned),
            platforms: Vec::new(),
        });
    }
    for x in f.enhanced_findings() {
        read_enhanced(x, report);
    }
    answered
}

/// One Inspector finding. Only an `ACTIVE` one counts: `SUPPRESSED` (an Inspector
/// suppression rule) and `CLOSED` (remediated) are listed as not counted
/// (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_EnhancedImageScanFinding.html).
fn read_enhanced(x: &aws_sdk_ecr::types::EnhancedImageScanFinding, report: &mut ScanReport) {
    let Some(severity) = x.severity().and_then(Severity::parse) else {
        return;
    };
    let vuln = x.package_vulnerability_details();
    let id = vuln
        .and_then(|v| v.vulnerability_id())
        .or(x.title())
        .unwrap_or("(unnamed)")
        .to_owned();
    match x.status() {
        Some(s) if !s.eq_ignore_ascii_case("ACTIVE") => {
            report.not_counted.push(format!("{id} ({s})"));
            return;
        }
        _ => {}
    }
    let package = vuln.and_then(|v| v.vulnerable_packages().first());
    report.findings.push(Finding {
        id,
        severity,
        package: package.and_then(|p| p.name()).map(str::to_owned),
        fixed_in: package
            .and_then(|p| p.fixed_in_version())
            .filter(|v| !v.is_empty() && *v != "NotAvailable")
            .map(str::to_owned),
        url: vuln.and_then(|v| v.source_url()).map(str::to_owned),
        platforms: Vec::new(),
    });
}
