//! Keyless cosign signatures, verified offline. cosign's classic format keeps them in the
//! signature layer's annotations (specs/SIGNATURE_SPEC.md): the Fulcio certificate (PEM,
//! `dev.sigstore.cosign/certificate`), its chain (`…/chain`) and the Rekor bundle
//! (`…/bundle`: the log entry's body, integrated time, index and log id, with the log's
//! signed entry timestamp, SET). Together they are a Sigstore bundle of version 0.1 (a
//! `hashedrekord` entry with an inclusion promise and no proof), which sigstore-verify checks
//! against the policy's trusted root: the certificate chains to a Fulcio CA of the root at
//! the time the entry was logged, the signature verifies under the certificate's key, the
//! SET verifies under a Rekor key of the root, and the entry describes this signature and
//! payload. The certificate's identity and issuer must then be a signer the policy names.
//!
//! SCTs are verified when the trusted root lists CT logs; a private Sigstore without CT
//! (no `ctlogs`) has none to verify.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use sigstore_verify::trust_root::TrustedRoot;
use sigstore_verify::types::Bundle;
use sigstore_verify::{VerificationPolicy, Verifier};

use crate::domain::signature::{self, Identity, KeySource, Refusal, Signer};
use crate::ports::StoredSignature;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A trusted root the policy names, parsed.
pub struct TrustRoot {
    verifier: Verifier,
    /// Whether it lists CT logs (whose SCTs a certificate must then carry).
    ctlogs: bool,
    /// SHA-256 of its text, hex: what the evidence and the cache know it by.
    fingerprint: String,
}

impl TrustRoot {
    /// Parse the trusted root `json` that `source` names; an error says what is wrong.
    pub fn parse(source: &KeySource, json: &str) -> Result<Self, String> {
        let root = TrustedRoot::from_json(json).map_err(|e| {
            format!("the trusted root {source} is not a Sigstore trusted root: {e}")
        })?;
        let verifier = Verifier::new(&root)
            .map_err(|e| format!("the trusted root {source} cannot verify: {e}"))?;
        Ok(Self {
            verifier,
            ctlogs: !root.ctlogs.is_empty(),
            fingerprint: hex::encode(Sha256::digest(json.as_bytes())),
        })
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// Who signed `stored` keylessly, when its certificate, signature and log entry verify
/// against `root` and its identity is one of `signers`.
pub fn verify(
    stored: &StoredSignature,
    root: &TrustRoot,
    signers: &[Identity],
) -> Result<Signer, Refusal> {
    let bundle = classic_bundle(stored).map_err(Refusal::Malformed)?;
    let mut policy = VerificationPolicy::any_identity();
    if !root.ctlogs {
        policy = policy.skip_sct();
    }
    let result = root
        .verifier
        .verify(stored.payload.as_slice(), &bundle, &policy)
        .map_err(|e| Refusal::Unverifiable(e.to_string()))?;
    let subject = result
        .identity()
        .map(ToString::to_string)
        .unwrap_or_default();
    let issuer = result.issuer().unwrap_or_default().to_owned();
    let logged_at = result
        .integrated_time()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.as_second(), 0))
        .unwrap_or(DateTime::UNIX_EPOCH);
    if !signers
        .iter()
        .any(|s| s.subject == subject && s.issuer == issuer)
    {
        return Err(Refusal::OtherIdentity { subject, issuer });
    }
    Ok(Signer::Certificate {
        subject,
        issuer,
        logged_at,
    })
}

/// The Sigstore bundle (v0.1) a classic keyless signature's annotations make.
fn classic_bundle(stored: &StoredSignature) -> Result<Bundle, String> {
    let certificate = stored.certificate.as_deref().ok_or("no certificate")?;
    let mut certificates = Vec::new();
    for pem in [Some(certificate), stored.chain.as_deref()]
        .into_iter()
        .flatten()
    {
        for der in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let der = der.map_err(|e| format!("a certificate that is not PEM: {e}"))?;
            certificates.push(json!({"rawBytes": B64.encode(der.as_ref())}));
        }
    }
    let annotation = stored
        .bundle
        .as_deref()
        .ok_or("no Rekor bundle: keyless signatures are verified by their log entry")?;
    let entry = signature::rekor_entry(annotation)?;
    let bundle = json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": {
            "x509CertificateChain": {"certificates": certificates},
            "tlogEntries": [entry],
        },
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": B64.encode(Sha256::digest(&stored.payload))},
            "signature": stored.signature.trim(),
        },
    });
    Bundle::from_json(&bundle.to_string()).map_err(|e| format!("not a Sigstore bundle: {e}"))
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
