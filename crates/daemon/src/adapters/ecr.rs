//! The ECR registry adapter (aws-sdk-ecr): DescribeImages, DescribeImageScanFindings,
//! StartImageScan and GetRegistryScanningConfiguration.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ecr::Client;
use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_sdk_ecr::types::{
    DescribeImagesFilter, ImageIdentifier, ScanStatus as EcrScanStatus, TagStatus,
};
use chrono::{DateTime, Utc};

use super::aws::{CountCalls, map_err};
use crate::domain::gate::{Finding, ScanReport, ScanStatus, Severity};
use crate::domain::image::{Digest, Tag};
use crate::domain::select::ImageRecord;
use crate::ports::{ErrorKind, PortError, PortResult, Registry, ScanStart, ScanType};
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
        let out = self
            .client
            .get_registry_scanning_configuration()
            .send()
            .await
            .map_err(|e| map_err("ecr", "GetRegistryScanningConfiguration", &e, &[]))?;
        Ok(
            match out
                .scanning_configuration()
                .and_then(|c| c.scan_type())
                .map(|t| t.as_str())
            {
                Some("ENHANCED") => ScanType::Enhanced,
                _ => ScanType::Basic,
            },
        )
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
                if !tags.is_empty() {
                    out.push(ImageRecord {
                        digest,
                        tags,
                        pushed_at: time(d.image_pushed_at()),
                    });
                }
            }
        }
        Ok(out)
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
        let mut report = ScanReport {
            status: ScanStatus::NotFound,
            counts: BTreeMap::new(),
            findings: Vec::new(),
        };
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
                let desc = st.description().unwrap_or("").to_owned();
                report.status = match st.status() {
                    Some(EcrScanStatus::Complete) | Some(EcrScanStatus::Active) => {
                        ScanStatus::Complete
                    }
                    Some(EcrScanStatus::Pending) => ScanStatus::Pending,
                    Some(EcrScanStatus::InProgress) => ScanStatus::InProgress,
                    Some(EcrScanStatus::Failed) => ScanStatus::Failed(desc),
                    Some(EcrScanStatus::UnsupportedImage) => ScanStatus::UnsupportedImage(desc),
                    Some(other) => ScanStatus::Other(other.as_str().to_owned()),
                    None => ScanStatus::NotFound,
                };
            }
            if let Some(f) = page.image_scan_findings() {
                if let Some(counts) = f.finding_severity_counts() {
                    for (sev, n) in counts {
                        if let Some(s) = Severity::parse(sev.as_str()) {
                            report.counts.insert(s, u32::try_from(*n).unwrap_or(0));
                        }
                    }
                }
                for x in f.findings() {
                    let Some(severity) = x.severity().and_then(|s| Severity::parse(s.as_str()))
                    else {
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
                    });
                }
                for x in f.enhanced_findings() {
                    let Some(severity) = x.severity().and_then(Severity::parse) else {
                        continue;
                    };
                    let vuln = x.package_vulnerability_details();
                    let package = vuln.and_then(|v| v.vulnerable_packages().first());
                    report.findings.push(Finding {
                        id: vuln
                            .and_then(|v| v.vulnerability_id())
                            .or(x.title())
                            .unwrap_or("(unnamed)")
                            .to_owned(),
                        severity,
                        package: package.and_then(|p| p.name()).map(str::to_owned),
                        fixed_in: package
                            .and_then(|p| p.fixed_in_version())
                            .filter(|v| !v.is_empty() && *v != "NotAvailable")
                            .map(str::to_owned),
                        url: vuln.and_then(|v| v.source_url()).map(str::to_owned),
                    });
                }
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
        Ok(report)
    }
}
