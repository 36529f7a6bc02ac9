//! The signature gate's ports: cosign's signatures as the registry stores them, and the
//! public keys the policy names.

use async_trait::async_trait;

use super::PortResult;
use crate::domain::image::Digest;
use crate::domain::signature::KeySource;

/// One cosign signature as stored: a layer of a `sha256-<hex>.sig` manifest, whose blob is
/// the signed "simple signing" payload and whose `dev.cosignproject.cosign/signature`
/// annotation is the signature in base64 (cosign's specs/SIGNATURE_SPEC.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSignature {
    /// The payload's bytes, as signed (checked against the layer's digest).
    pub payload: Vec<u8>,
    /// The annotation's value (base64), as stored.
    pub signature: String,
    /// A keyless signature's Fulcio certificate, its chain (PEM) and its Rekor bundle
    /// (JSON), from `dev.sigstore.cosign/certificate`, `…/chain` and `…/bundle`.
    pub certificate: Option<String>,
    pub chain: Option<String>,
    pub bundle: Option<String>,
}

/// Where cosign's signatures are kept: the registry's OCI distribution API (ECR's, with a
/// token from `GetAuthorizationToken`).
#[async_trait]
pub trait Signatures: Send + Sync {
    /// The signatures of the signature manifest `manifest` (the digest the registry's
    /// listing gives the `sha256-<hex>.sig` tag) in `repository`. A digest is content: the
    /// answer never changes, so callers cache what they make of it.
    async fn cosign_signatures(
        &self,
        registry_id: Option<&str>,
        repository: &str,
        manifest: &Digest,
    ) -> PortResult<Vec<StoredSignature>>;
}

/// Where the policy's public keys and trusted roots are kept (SSM parameters, files), each
/// read again as it rotates.
#[async_trait]
pub trait PublicKeys: Send + Sync {
    /// The text of the key (PEM) or trusted root (JSON) `source` names.
    async fn public_key(&self, source: &KeySource) -> PortResult<String>;
}
