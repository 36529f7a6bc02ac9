//! What a tag points at, as build tools really push it: one image manifest, an image index
//! of platform images (what Docker Buildx pushes by default), or an artifact that is not an
//! image (a signature, an attestation, an SBOM, a Helm chart).
//!
//! The facts modelled here:
//! - BuildKit ≥ 0.11 (buildx ≥ 0.10) pushes an OCI image index even for one platform: the
//!   platform image manifests plus one attestation manifest per platform, marked with
//!   `platform: unknown/unknown` and the annotation
//!   `vnd.docker.reference.type: attestation-manifest` (moby/buildkit#3499, docker/buildx#1509,
//!   https://docs.docker.com/build/metadata/attestations/attestation-storage/).
//! - The tag points at the index; the children are untagged (docker/buildx#940).
//! - ECR never scans an index, only its children (docker/setup-buildx-action#186).
//! - ECR's `DescribeImages` gives `imageManifestMediaType` and, for an image, `artifactMediaType`
//!   (the config's media type; https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_ImageDetail.html).

use std::fmt;

use serde::Deserialize;

use super::image::{Digest, printable};

/// The OCI image index media type (the image-spec's `image-index.md`).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker's manifest list, the index of the Docker v2 schema 2 format.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker's v2 schema 2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The config media types of runnable images: anything else in `artifactMediaType` is an
/// artifact (a Helm chart's `application/vnd.cncf.helm.config.v1+json`, an SBOM, …).
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// BuildKit's annotation on an attestation manifest inside an index.
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// Most manifests an index may list before it is refused (Buildx pushes two per platform).
pub const MAX_INDEX_ENTRIES: usize = 256;

/// What a registry stores under a digest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ImageKind {
    /// One image manifest (or a registry that did not say: treated as an image).
    #[default]
    Image,
    /// An image index / manifest list: the platform images are its children.
    Index,
    /// Not a runnable image; the media type that says so.
    Artifact(String),
}

impl ImageKind {
    /// From `DescribeImages`' `imageManifestMediaType` and `artifactMediaType`.
    pub fn of(manifest_media_type: Option<&str>, artifact_media_type: Option<&str>) -> Self {
        match manifest_media_type {
            Some(OCI_INDEX | DOCKER_LIST) => return Self::Index,
            Some(m) if m != OCI_MANIFEST && m != DOCKER_MANIFEST && !m.is_empty() => {
                return Self::Artifact(m.to_owned());
            }
            _ => {}
        }
        match artifact_media_type {
            Some(a) if !a.is_empty() && !IMAGE_CONFIGS.contains(&a) => Self::Artifact(a.to_owned()),
            _ => Self::Image,
        }
    }
}

/// An OCI platform: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`, `linux/arm64/v8`: lowercase words of letters, digits, `_` and `-`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let word = |w: &str| {
            !w.is_empty()
                && w.len() <= 32
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| word(p)) {
            return Err(format!(
                "'{s}' is not a platform (os/architecture[/variant], e.g. linux/arm64)"
            ));
        }
        Ok(Self {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
    }

    /// Whether an image of this platform runs where `wanted` is asked for: the same os and
    /// architecture, and the same variant when `wanted` names one.
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        self.os == wanted.os
            && self.architecture == wanted.architecture
            && (wanted.variant.is_none() || wanted.variant == self.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// One runnable child of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformImage {
    pub platform: Platform,
    pub digest: Digest,
}

/// Why an index could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("the manifest is not JSON of an image index: {0}")]
    Malformed(String),
    #[error("the manifest's mediaType is '{0}', not an image index")]
    NotAnIndex(String),
    #[error("manifests[{index}].digest: {message}")]
    BadDigest { index: usize, message: String },
    #[error("manifests[{index}].platform: '{platform}' is not an os/architecture[/variant]")]
    BadPlatform { index: usize, platform: String },
    #[error("the index lists {0} manifests, more than {MAX_INDEX_ENTRIES}")]
    TooLarge(usize),
    #[error("the index lists no platform image (only attestations or unknown platforms)")]
    NoPlatformImage,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIndex {
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    digest: String,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    platform: Option<RawPlatform>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

/// The platform images of an index, in its order: attestation manifests and entries whose
/// platform is missing or `unknown/unknown` are left out, as are nested indexes (which no
/// build tool pushes) and duplicates of one platform after its first.
pub fn platforms(index: &str) -> Result<Vec<PlatformImage>, IndexError> {
    let raw: RawIndex = serde_json::from_str(index)
        .map_err(|e| IndexError::Malformed(printable(&e.to_string())))?;
    match raw.media_type.as_deref() {
        // The OCI image-spec makes `mediaType` optional in an index ("SHOULD be used").
        None | Some(OCI_INDEX | DOCKER_LIST) => {}
        Some(other) => return Err(IndexError::NotAnIndex(printable(other))),
    }
    if raw.manifests.len() > MAX_INDEX_ENTRIES {
        return Err(IndexError::TooLarge(raw.manifests.len()));
    }
    let mut out: Vec<PlatformImage> = Vec::new();
    for (i, m) in raw.manifests.into_iter().enumerate() {
        let attestation = m
            .annotations
            .get(REFERENCE_TYPE)
            .is_some_and(|t| t == "attestation-manifest");
        let nested = matches!(m.media_type.as_deref(), Some(OCI_INDEX | DOCKER_LIST));
        let Some(p) = m.platform else { continue };
        let unknown = |w: &str| w.is_empty() || w.eq_ignore_ascii_case("unknown");
        if attestation || nested || unknown(&p.os) || unknown(&p.architecture) {
            continue;
        }
        let digest = Digest::parse(&m.digest).map_err(|e| IndexError::BadDigest {
            index: i,
            message: e.to_string(),
        })?;
        // containerd matches platforms case-insensitively (platforms.Normalize), so a child
        // spelled `Linux/AMD64` still runs on amd64 nodes: it is gated, never skipped, and
        // a platform that is no platform refuses the whole index (fail closed).
        let spelled = match p.variant.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        };
        let platform = Platform::parse(&spelled.to_ascii_lowercase()).map_err(|_| {
            IndexError::BadPlatform {
                index: i,
                platform: printable(&spelled),
            }
        })?;
        if !out.iter().any(|o| o.platform == platform) {
            out.push(PlatformImage { platform, digest });
        }
    }
    if out.is_empty() {
        return Err(IndexError::NoPlatformImage);
    }
    Ok(out)
}

/// Whether a tag is a supply-chain artifact's rather than an image's: cosign's
/// `sha256-<hex>.sig`, `.att` and `.sbom` (https://github.com/sigstore/cosign/blob/main/specs/SIGNATURE_SPEC.md)
/// and the OCI referrers tag schema's `sha256-<hex>` (distribution-spec, "Referrers Tag
/// Schema"). They are pushed after the image and are never promoted, whatever the ordering
/// (Flux excludes them by default: fluxcd/image-reflector-controller#167).
pub fn is_supply_chain_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let (hex, suffix) = rest.split_at(rest.len().min(64));
    hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && (suffix.is_empty()
            || suffix
                .strip_prefix('.')
                .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn names(index: &str) -> Vec<String> {
        platforms(index)
            .unwrap()
            .iter()
            .map(|p| p.platform.to_string())
            .collect()
    }

    #[test]
    fn a_single_platform_buildx_push_with_provenance_has_one_platform_and_no_attestation() {
        assert_eq!(
            names(&fixture("buildx-single-provenance.json")),
            ["linux/amd64"]
        );
    }

    #[test]
    fn a_multi_platform_buildx_push_lists_each_platform_once_without_its_attestations() {
        assert_eq!(
            names(&fixture("buildx-multi-provenance.json")),
            ["linux/amd64", "linux/arm64"]
        );
    }

    #[test]
    fn a_docker_manifest_list_without_provenance_is_read_like_an_oci_index() {
        assert_eq!(
            names(&fixture("buildx-multi-no-provenance.json")),
            ["linux/amd64", "linux/arm64/v8"]
        );
    }

    #[test]
    fn an_index_of_attestations_only_is_refused_as_having_no_platform_image() {
        let only = r#"{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             "platform":{"os":"unknown","architecture":"unknown"}}]}"#;
        assert_eq!(platforms(only), Err(IndexError::NoPlatformImage));
    }

    #[test]
    fn an_image_manifest_is_not_taken_for_an_index() {
        let manifest = r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
        assert_eq!(
            platforms(manifest),
            Err(IndexError::NotAnIndex(OCI_MANIFEST.into()))
        );
    }

    #[test]
    fn a_bad_child_digest_is_refused_naming_its_position() {
        let bad = r#"{"manifests":[{"digest":"sha256:xyz","platform":{"os":"linux","architecture":"amd64"}}]}"#;
        assert!(matches!(
            platforms(bad),
            Err(IndexError::BadDigest { index: 0, .. })
        ));
    }

    #[test]
    fn the_kind_follows_the_manifest_then_the_artifact_media_type() {
        assert_eq!(ImageKind::of(Some(OCI_INDEX), None), ImageKind::Index);
        assert_eq!(ImageKind::of(Some(DOCKER_LIST), None), ImageKind::Index);
        assert_eq!(
            ImageKind::of(
                Some(OCI_MANIFEST),
                Some("application/vnd.oci.image.config.v1+json")
            ),
            ImageKind::Image
        );
        assert_eq!(ImageKind::of(None, None), ImageKind::Image);
        assert_eq!(
            ImageKind::of(
                Some(OCI_MANIFEST),
                Some("application/vnd.cncf.helm.config.v1+json")
            ),
            ImageKind::Artifact("application/vnd.cncf.helm.config.v1+json".into())
        );
    }

    #[test]
    fn cosign_and_referrers_tags_are_supply_chain_tags_and_versions_are_not() {
        let hex = "a".repeat(64);
        for t in [
            format!("sha256-{hex}.sig"),
            format!("sha256-{hex}.att"),
            format!("sha256-{hex}.sbom"),
            format!("sha256-{hex}"),
        ] {
            assert!(is_supply_chain_tag(&t), "{t}");
        }
        for t in [
            "1.2.3",
            "sha256-abc.sig",
            "sha256-",
            &format!("sha256-{hex}x"),
        ] {
            assert!(!is_supply_chain_tag(t), "{t}");
        }
    }

    #[test]
    fn platforms_parse_and_a_variant_is_matched_only_when_asked_for() {
        let arm = Platform::parse("linux/arm64/v8").unwrap();
        assert!(arm.satisfies(&Platform::parse("linux/arm64").unwrap()));
        assert!(!Platform::parse("linux/arm64").unwrap().satisfies(&arm));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("Linux/AMD64").is_err());
    }
}
