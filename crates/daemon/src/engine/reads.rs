//! What a step reads of the outside and keeps: an environment's files on the base branch
//! and the image reference they deploy; an image's scan as the gate reads it (an image
//! index as its platform images, each scanned; a complete scan cached by digest).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::failure::manifest_error;
use super::{At, Cause, Engine, Mode, Step, StepError};
use crate::config::{EnvConfig, ServiceConfig};
use crate::domain::gate::{PlatformScan, ScanReport, ScanStatus};
use crate::domain::image::{Digest, ImageRef};
use crate::domain::index::{ImageKind, Platform, PlatformImage};
use crate::manifest;
use crate::ports::{PortError, ScanStart};

impl Engine {
    /// A candidate with no scan at all: its repository scans only on request (no scan on
    /// push filter matches it), so start one, once per image a day as ECR allows. `None` once
    /// started; else the status to report: in a plan (no writes) that one will be started,
    /// after today's scan that there is none, or ECR's refusal.
    async fn start_missing_scan(
        &self,
        svc: &ServiceConfig,
        digest: &Digest,
        mode: Mode,
    ) -> Result<Option<ScanStatus>, PortError> {
        if mode == Mode::Plan {
            return Ok(Some(ScanStatus::NotStarted));
        }
        let started = match self
            .ports
            .registry
            .start_scan(svc.registry_id.as_deref(), &svc.repository, digest)
            .await
        {
            Ok(s) => s,
            // Enhanced scanning takes no StartImageScan; whatever the reason, the image still
            // has no scan, and the gate says so as it did before asking.
            Err(e) => {
                tracing::warn!(service = %svc.name, %digest, error = %e, "could not start a scan of an image that has none");
                return Ok(Some(ScanStatus::NotFound));
            }
        };
        Ok(match started {
            ScanStart::Started => {
                tracing::info!(service = %svc.name, %digest, "the image had no scan: started one");
                None
            }
            ScanStart::AlreadyScannedToday => Some(ScanStatus::NotFound),
            ScanStart::Refused(why) => Some(ScanStatus::Other(why)),
        })
    }

    /// The environment's files on the base branch.
    pub(super) async fn read_files(
        &self,
        env: &EnvConfig,
    ) -> Result<Vec<(String, String)>, StepError> {
        let mut out = Vec::new();
        for path in &env.files {
            match self.ports.repo.read(path).await.at(Step::Read)? {
                Some(text) => out.push((path.clone(), text)),
                None => {
                    return Err(StepError::new(
                        Step::Read,
                        Cause::MissingFile { path: path.clone() },
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The scans that decide on an image: for an image index (what Buildx pushes), the scan
    /// of each platform image, since ECR never scans an index itself, only its children
    /// (docker/setup-buildx-action#186, aws/containers-roadmap#1683); else the image's own.
    pub(super) async fn image_scan(
        &self,
        svc: &ServiceConfig,
        digest: &Digest,
        kind: &ImageKind,
        mode: Mode,
    ) -> Result<Vec<PlatformScan>, PortError> {
        let parts = self.scanned_parts(svc, digest, kind).await?;
        let mut out = Vec::with_capacity(parts.len());
        for (platform, part) in parts {
            out.push(PlatformScan {
                platform,
                report: self.scan(svc, &part, mode).await?,
            });
        }
        Ok(out)
    }

    /// The digests ECR scans for an image: an index's platform images, each with its
    /// platform (ECR scans no index); else the image itself, with no platform.
    pub(super) async fn scanned_parts(
        &self,
        svc: &ServiceConfig,
        digest: &Digest,
        kind: &ImageKind,
    ) -> Result<Vec<(Option<Platform>, Digest)>, PortError> {
        if *kind != ImageKind::Index {
            return Ok(vec![(None, digest.clone())]);
        }
        let children = self.children(svc, digest).await?;
        Ok(children
            .iter()
            .map(|c| (Some(c.platform.clone()), c.digest.clone()))
            .collect())
    }

    /// The platform images of the index `digest`, read once: a digest names its content, so
    /// its children never change, and an idle cycle costs no call per known index.
    pub(super) async fn children(
        &self,
        svc: &ServiceConfig,
        digest: &Digest,
    ) -> Result<Arc<Vec<PlatformImage>>, PortError> {
        if let Some(c) = self.indexes.get(digest) {
            return Ok(c);
        }
        let c = Arc::new(
            self.ports
                .registry
                .platforms(svc.registry_id.as_deref(), &svc.repository, digest)
                .await?,
        );
        self.indexes.insert(digest.clone(), Arc::clone(&c));
        Ok(c)
    }

    /// The scan report of a digest: cached once complete, polled within `scan_wait` while pending.
    pub(super) async fn scan(
        &self,
        svc: &ServiceConfig,
        digest: &Digest,
        mode: Mode,
    ) -> Result<ScanReport, PortError> {
        if let Some(r) = self.scans.get(digest) {
            return Ok(r);
        }
        let wait = match mode {
            Mode::Plan => Duration::ZERO,
            Mode::Apply => self.cfg.engine.scan_wait,
        };
        let deadline = Instant::now() + wait;
        let mut asked = false;
        loop {
            let mut r = self
                .ports
                .registry
                .scan_report(svc.registry_id.as_deref(), &svc.repository, digest)
                .await?;
            if r.status == ScanStatus::NotFound && !asked {
                asked = true;
                match self.start_missing_scan(svc, digest, mode).await? {
                    Some(status) => r.status = status,
                    None => continue, // started: read it again within the wait
                }
            }
            let pending = matches!(r.status, ScanStatus::Pending | ScanStatus::InProgress);
            if !pending {
                if r.status == ScanStatus::Complete {
                    self.scans.insert(digest.clone(), r.clone());
                }
                return Ok(r);
            }
            if Instant::now() >= deadline {
                return Ok(r);
            }
            tokio::time::sleep(Duration::from_secs(2).min(self.cfg.engine.scan_wait)).await;
        }
    }
}

/// The reference of the service's image that the environment's files deploy.
pub(super) fn deployed_reference(
    files: &[(String, String)],
    svc: &ServiceConfig,
) -> Result<Option<ImageRef>, StepError> {
    let mut found: Option<ImageRef> = None;
    for (path, text) in files {
        let refs = manifest::locate(text).map_err(|e| manifest_error(Step::Read, path, e))?;
        let mine: Vec<_> = refs.iter().filter(|r| r.is_for(&svc.image)).collect();
        if mine.is_empty() {
            let error = manifest::ManifestError::NotFound {
                repository: svc.image.to_string(),
                found: refs.iter().map(|r| r.repository.to_string()).collect(),
            };
            return Err(manifest_error(Step::Read, path, error));
        }
        if found.is_none() {
            found = Some(ImageRef {
                repository: svc.image.clone(),
                tag: mine[0].tag.clone(),
                digest: mine[0].digest.clone(),
            });
        }
    }
    Ok(found.filter(|f| f.tag.is_some() || f.digest.is_some()))
}
