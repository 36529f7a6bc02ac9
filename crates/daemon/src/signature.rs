//! Verifying cosign's keyed signatures: a stored signature against the policy's public keys,
//! and its payload against the digest it must sign. Pure computation (no I/O, no clock);
//! the engine's signature step fetches, caches and decides with it.
//!
//! cosign signs the "simple signing" payload's bytes as stored (specs/SIGNATURE_SPEC.md):
//! ECDSA (P-256 with SHA-256 from `cosign generate-key-pair`, P-384 with SHA-384 from a KMS
//! key) as an ASN.1 DER signature, RSA as PKCS #1 v1.5 with SHA-256, Ed25519 as is. The
//! signature is checked first and the payload read only after, so nothing of an unsigned
//! payload is believed.

pub mod keyless;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest as _, Sha256};

use crate::domain::image::Digest;
use crate::domain::signature::{self, Identity, KeySource, Refusal, Signed, Signer};
use crate::ports::StoredSignature;

/// The algorithms a cosign public key may be for, tried in this order.
static ALGORITHMS: [&dyn VerificationAlgorithm; 6] = [
    &sig::ECDSA_P256_SHA256_ASN1,
    &sig::ECDSA_P384_SHA384_ASN1,
    &sig::ECDSA_P521_SHA512_ASN1,
    &sig::RSA_PKCS1_2048_8192_SHA256,
    &sig::RSA_PSS_2048_8192_SHA256,
    &sig::ED25519,
];

/// A public key the policy trusts, parsed.
pub struct TrustedKey {
    source: KeySource,
    /// SHA-256 of the DER SubjectPublicKeyInfo, hex.
    fingerprint: String,
    /// The key under each algorithm it parses for (an RSA key verifies PKCS #1 and PSS).
    parsed: Vec<ParsedPublicKey>,
}

impl TrustedKey {
    /// Parse the PEM `pem` of the key `source` names; an error says what is wrong.
    pub fn parse(source: &KeySource, pem: &str) -> Result<Self, String> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
            format!("the key {source} is not a PEM public key (-----BEGIN PUBLIC KEY-----): {e}")
        })?;
        let parsed: Vec<ParsedPublicKey> = ALGORITHMS
            .iter()
            .filter_map(|alg| ParsedPublicKey::new(*alg, der.as_ref()).ok())
            .collect();
        if parsed.is_empty() {
            return Err(format!(
                "the key {source} is of no algorithm cosign signs with (ECDSA P-256/P-384/P-521, RSA 2048-8192, Ed25519)"
            ));
        }
        Ok(Self {
            source: source.clone(),
            fingerprint: hex::encode(Sha256::digest(der.as_ref())),
            parsed,
        })
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Where the policy keeps it and what it is: `ssm:/salon/cosign/ci.pub=<fingerprint>`.
    pub fn identity(&self) -> String {
        format!("{}={}", self.source, self.fingerprint)
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.parsed
            .iter()
            .any(|k| k.verify_sig(message, signature).is_ok())
    }
}

/// Everything a policy trusts: its keys, and its keyless signers with the trusted root
/// their certificates and log entries are verified against.
#[derive(Default)]
pub struct Trust {
    pub keys: Vec<TrustedKey>,
    pub keyless: Option<(std::sync::Arc<keyless::TrustRoot>, Vec<Identity>)>,
}

impl Trust {
    /// What a verification under it is cached by: each key (where it is kept and what it
    /// is), the trusted root's fingerprint and the keyless signers.
    pub fn identity(&self) -> String {
        let mut parts: Vec<String> = self.keys.iter().map(TrustedKey::identity).collect();
        if let Some((root, signers)) = &self.keyless {
            parts.push(format!("root={}", root.fingerprint()));
            for s in signers {
                parts.push(format!("{}|{}", s.issuer, s.subject));
            }
        }
        parts.join(",")
    }
}

/// What one stored signature of `digest` (kept in the signature manifest `manifest`) is
/// worth under `keys`.
pub fn verify(
    stored: &StoredSignature,
    digest: &Digest,
    manifest: &Digest,
    keys: &[TrustedKey],
    pushed_at: DateTime<Utc>,
) -> Result<Signed, Refusal> {
    let signer = keyed(stored, keys)?;
    signed(stored, digest, manifest, signer, pushed_at)
}

/// What one stored signature of `digest` is worth under `trust`: a keyless one (it carries
/// a certificate) by its certificate, log entry and identity, any other by the keys.
pub fn verify_with(
    stored: &StoredSignature,
    digest: &Digest,
    manifest: &Digest,
    trust: &Trust,
    pushed_at: DateTime<Utc>,
) -> Result<Signed, Refusal> {
    let signer = match (&stored.certificate, &trust.keyless) {
        (Some(_), Some((root, signers))) => keyless::verify(stored, root, signers)?,
        (Some(_), None) => {
            return Err(Refusal::Unverifiable(
                "the policy names no keyless signer".to_owned(),
            ));
        }
        (None, _) => keyed(stored, &trust.keys)?,
    };
    signed(stored, digest, manifest, signer, pushed_at)
}

/// The key of `keys` that made `stored`'s signature.
fn keyed(stored: &StoredSignature, keys: &[TrustedKey]) -> Result<Signer, Refusal> {
    let signature = base64::engine::general_purpose::STANDARD
        .decode(stored.signature.trim())
        .map_err(|e| Refusal::Malformed(format!("its signature is not base64: {e}")))?;
    let key = keys
        .iter()
        .find(|k| k.verifies(&stored.payload, &signature))
        .ok_or(Refusal::UnknownKey)?;
    Ok(Signer::Key {
        fingerprint: key.fingerprint.clone(),
        source: key.source.to_string(),
    })
}

/// A verified signature, once its payload (read only now) names `digest`.
fn signed(
    stored: &StoredSignature,
    digest: &Digest,
    manifest: &Digest,
    signer: Signer,
    pushed_at: DateTime<Utc>,
) -> Result<Signed, Refusal> {
    let signed = signature::signed_digest(&stored.payload).map_err(Refusal::Malformed)?;
    if signed != digest.as_str() {
        return Err(Refusal::OtherDigest(signed));
    }
    Ok(Signed {
        signer,
        manifest: manifest.to_string(),
        pushed_at,
    })
}

/// The simple-signing payload cosign signs for `digest` of `reference` (its
/// `docker-reference` is the repository, without tag or digest).
pub fn payload(reference: &str, digest: &Digest) -> Vec<u8> {
    serde_json::json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest.as_str()},
            "type": "cosign container image signature"
        },
        "optional": null
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    use super::*;

    fn digest(fill: &str) -> Digest {
        Digest::parse(&format!("sha256:{}", fill.repeat(32))).unwrap()
    }

    /// A new P-256 key as `cosign generate-key-pair` makes: the pair, and its public PEM.
    fn key() -> (EcdsaKeyPair, String) {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let der = pair.public_key().as_der().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
        (pair, pem)
    }

    fn sign(pair: &EcdsaKeyPair, payload: &[u8]) -> StoredSignature {
        let s = pair.sign(&SystemRandom::new(), payload).unwrap();
        StoredSignature {
            payload: payload.to_vec(),
            signature: base64::engine::general_purpose::STANDARD.encode(s.as_ref()),
            certificate: None,
            chain: None,
            bundle: None,
        }
    }

    fn trusted(pem: &str) -> TrustedKey {
        TrustedKey::parse(&KeySource::Ssm("/salon/cosign/ci.pub".into()), pem).unwrap()
    }

    #[test]
    fn a_signature_by_a_trusted_key_of_the_digest_verifies_naming_the_key() {
        let (pair, pem) = key();
        let d = digest("ab");
        let stored = sign(&pair, &payload("123.dkr.ecr/salon/api", &d));
        let keys = [trusted(&pem)];
        let ok = verify(&stored, &d, &digest("cd"), &keys, DateTime::UNIX_EPOCH).unwrap();
        let Signer::Key {
            fingerprint,
            source,
        } = ok.signer
        else {
            panic!("{:?}", ok.signer)
        };
        assert_eq!(fingerprint, keys[0].fingerprint());
        assert_eq!(fingerprint.len(), 64);
        assert_eq!(source, "ssm:/salon/cosign/ci.pub");
        assert_eq!(ok.manifest, digest("cd").to_string());
    }

    #[test]
    fn a_signature_by_another_key_is_refused_as_an_unknown_key() {
        let (pair, _) = key();
        let (_, other) = key();
        let d = digest("ab");
        let stored = sign(&pair, &payload("r", &d));
        let got = verify(&stored, &d, &d, &[trusted(&other)], DateTime::UNIX_EPOCH);
        assert_eq!(got, Err(Refusal::UnknownKey));
    }

    #[test]
    fn a_valid_signature_of_another_digest_is_refused_naming_that_digest() {
        let (pair, pem) = key();
        let stored = sign(&pair, &payload("r", &digest("ef")));
        let got = verify(
            &stored,
            &digest("ab"),
            &digest("ab"),
            &[trusted(&pem)],
            DateTime::UNIX_EPOCH,
        );
        assert_eq!(got, Err(Refusal::OtherDigest(digest("ef").to_string())));
    }

    #[test]
    fn a_changed_payload_no_longer_verifies() {
        let (pair, pem) = key();
        let d = digest("ab");
        let mut stored = sign(&pair, &payload("r", &d));
        stored.payload.push(b' ');
        let got = verify(&stored, &d, &d, &[trusted(&pem)], DateTime::UNIX_EPOCH);
        assert_eq!(got, Err(Refusal::UnknownKey));
    }

    #[test]
    fn a_signed_payload_that_is_not_cosigns_is_refused_saying_why() {
        let (pair, pem) = key();
        let d = digest("ab");
        let stored = sign(
            &pair,
            br#"{"critical":{"type":"atomic container signature"}}"#,
        );
        let Err(Refusal::Malformed(why)) =
            verify(&stored, &d, &d, &[trusted(&pem)], DateTime::UNIX_EPOCH)
        else {
            panic!()
        };
        assert!(why.contains("\"atomic container signature\""), "{why}");
    }

    #[test]
    fn a_key_that_is_not_pem_is_refused_naming_its_source() {
        let source = KeySource::File("/etc/tugboat/ci.pub".into());
        let e = TrustedKey::parse(&source, "ssh-ed25519 AAAA")
            .err()
            .unwrap();
        assert!(e.contains("file:/etc/tugboat/ci.pub"), "{e}");
    }
}
