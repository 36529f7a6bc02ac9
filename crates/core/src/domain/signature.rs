//! The signature gate: which cosign signatures an environment requires of the digest it
//! pins, and what was found.
//!
//! cosign stores a signature of `sha256:<hex>` as the image tagged `sha256-<hex>.sig` in the
//! same repository: an OCI manifest with one layer per signature, each a "simple signing"
//! payload whose `critical.image.docker-manifest-digest` names the signed digest, with the
//! base64 signature in the layer's `dev.cosignproject.cosign/signature` annotation
//! (https://github.com/sigstore/cosign/blob/main/specs/SIGNATURE_SPEC.md). Signing a
//! multi-platform image signs its index (`cosign sign` signs the digest it is given; the
//! digest of a tag is the index's), so the digest tugboat pins is the one to verify.
//!
//! What is checked here is pure: the policy's keys and the outcome of each signature the
//! daemon verified (`tugboat::signature`) are values in; the gate's decision comes out.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::gate::GateDecision;
use super::image::Digest;

/// Where a public key is kept: an SSM parameter (String or SecureString), or a file on
/// the daemon's disk (a mounted Kubernetes Secret). Read again as it rotates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum KeySource {
    Ssm(String),
    File(String),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ssm(n) => write!(f, "ssm:{n}"),
            Self::File(p) => write!(f, "file:{p}"),
        }
    }
}

impl KeySource {
    /// Whether the reference can name a key: an SSM parameter's absolute name (1–2048
    /// characters of its alphabet), or an absolute file path.
    fn check(&self) -> Result<(), String> {
        match self {
            Self::Ssm(n) => {
                let ok = n.starts_with('/')
                    && n.len() <= 2048
                    && n.bytes()
                        .skip(1)
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b))
                    && !n.ends_with('/');
                ok.then_some(()).ok_or_else(|| {
                    format!(
                        "'{n}' is not an SSM parameter name (absolute, e.g. /salon/cosign/ci.pub: letters, digits, _ . - /)"
                    )
                })
            }
            Self::File(p) => (p.starts_with('/') && !p.contains('\0'))
                .then_some(())
                .ok_or_else(|| format!("'{p}' is not an absolute file path")),
        }
    }
}

/// What an environment's policy asks of signatures.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignaturePolicy {
    /// A candidate without a valid signature by one of `keys` is blocked. Without it,
    /// signatures are verified and shown, and block nothing.
    pub required: bool,
    /// The cosign public keys (PEM) whose signatures count; any one may sign.
    pub keys: Vec<KeySource>,
}

impl SignaturePolicy {
    /// Whether anything is to be verified at all.
    pub fn active(&self) -> bool {
        !self.keys.is_empty()
    }
}

/// The policy's `signatures:` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignatures {
    required: Option<bool>,
    keys: Option<Vec<KeySource>>,
}

/// Check `signatures:` (`field`, message) and build it.
pub fn build(raw: &RawSignatures) -> Result<SignaturePolicy, (String, String)> {
    let keys = raw.keys.clone().unwrap_or_default();
    for (i, k) in keys.iter().enumerate() {
        k.check()
            .map_err(|m| (format!("signatures.keys[{i}]"), m))?;
        if keys[..i].contains(k) {
            return Err((
                format!("signatures.keys[{i}]"),
                format!("{k} is listed twice"),
            ));
        }
    }
    let required = raw.required.unwrap_or(false);
    if required && keys.is_empty() {
        return Err((
            "signatures.required".to_owned(),
            "signatures are required but no key may sign: list the signers' public keys in signatures.keys (e.g. [{ssm: /salon/cosign/ci.pub}])".to_owned(),
        ));
    }
    Ok(SignaturePolicy { required, keys })
}

/// Who signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Signer {
    /// A key: the SHA-256 of its DER SubjectPublicKeyInfo, in hex (what
    /// `openssl pkey -pubin -in key.pub -outform DER | sha256sum` prints), and where the
    /// policy keeps it.
    Key { fingerprint: String, source: String },
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key {
                fingerprint,
                source,
            } => write!(f, "key sha256:{fingerprint} ({source})"),
        }
    }
}

/// A signature that verified: who signed, and when the signature was pushed (the
/// registry's push time of the signature manifest: the last signing's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signed {
    pub signer: Signer,
    /// The signature manifest's digest (the `sha256-<hex>.sig` tag's).
    pub manifest: String,
    pub pushed_at: DateTime<Utc>,
}

/// Why one stored signature does not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its payload names another digest (a signature copied from another image).
    OtherDigest(String),
    /// It verifies under none of the policy's keys.
    UnknownKey,
    /// It cannot be read (bad base64, a payload that is not cosign's).
    Malformed(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OtherDigest(d) => write!(f, "a signature of another image ({d})"),
            Self::UnknownKey => f.write_str("signed by an unknown key"),
            Self::Malformed(why) => write!(f, "an unreadable signature ({why})"),
        }
    }
}

/// What was found for a digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum SignatureCheck {
    Verified(Signed),
    /// No valid signature; the reason says what was found.
    Unverified {
        reason: String,
    },
}

impl SignatureCheck {
    pub fn signed(&self) -> Option<&Signed> {
        match self {
            Self::Verified(s) => Some(s),
            Self::Unverified { .. } => None,
        }
    }
}

/// cosign's simple-signing payload layer (specs/SIGNATURE_SPEC.md).
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation that holds a layer's signature (base64).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The most signatures read from one manifest: cosign appends a layer per `cosign sign`.
pub const MAX_LAYERS: usize = 64;
/// The most a simple-signing payload may weigh: cosign's is a few hundred bytes, with
/// annotations a few kilobytes.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// A signature layer of a signature manifest: its payload blob's digest and size, and its
/// signature as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub digest: String,
    pub size: u64,
    pub signature: String,
}

/// The signature layers of a signature manifest, in order (at most [`MAX_LAYERS`]): the
/// simple-signing layers that carry a signature; anything else in it is not cosign's.
pub fn layers(manifest: &[u8]) -> Result<Vec<Layer>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    let layers = v["layers"].as_array().ok_or("the manifest has no layers")?;
    let mut out = Vec::new();
    for l in layers.iter().take(MAX_LAYERS) {
        if l["mediaType"].as_str() != Some(SIMPLE_SIGNING) {
            continue;
        }
        let signature = l["annotations"][SIGNATURE_ANNOTATION].as_str();
        let (Some(signature), Some(digest)) = (signature, l["digest"].as_str()) else {
            continue;
        };
        out.push(Layer {
            digest: digest.to_owned(),
            size: l["size"].as_u64().unwrap_or(u64::MAX),
            signature: signature.to_owned(),
        });
    }
    Ok(out)
}

/// The digest a simple-signing payload signs (`critical.image.docker-manifest-digest`),
/// once its type is cosign's. Read only from a payload whose signature verified.
pub fn signed_digest(payload: &[u8]) -> Result<String, String> {
    if payload.len() > MAX_PAYLOAD {
        return Err(format!("its payload is over {MAX_PAYLOAD} bytes"));
    }
    let v: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("its payload is not JSON: {e}"))?;
    let critical = &v["critical"];
    let kind = critical["type"].as_str().unwrap_or_default();
    if kind != "cosign container image signature" {
        // Whoever signed it wrote it: quoted, escaped and cut short.
        let kind: String = kind.chars().take(64).collect();
        return Err(format!(
            "its payload's critical.type is {kind:?}, not \"cosign container image signature\""
        ));
    }
    critical["image"]["docker-manifest-digest"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "its payload has no critical.image.docker-manifest-digest".to_owned())
}

/// The tag cosign stores the signatures of `digest` under.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}.sig", digest.as_str().replacen(':', "-", 1))
}

/// The check of `digest` from the outcome of each signature stored for it, in order: the
/// first that verified, else a reason naming what was found.
pub fn judge(digest: &Digest, outcomes: Vec<Result<Signed, Refusal>>) -> SignatureCheck {
    let mut refused: Vec<String> = Vec::new();
    for o in outcomes {
        match o {
            Ok(s) => return SignatureCheck::Verified(s),
            Err(r) => {
                let r = r.to_string();
                if !refused.contains(&r) {
                    refused.push(r);
                }
            }
        }
    }
    let reason = if refused.is_empty() {
        format!(
            "no signature: the registry has no {} for {digest}",
            signature_tag(digest)
        )
    } else {
        format!("no valid signature: {}", refused.join("; "))
    };
    SignatureCheck::Unverified { reason }
}

/// The gate's decision with the signature check: a required signature that is missing
/// blocks a candidate the scan gate passed, with the check's reason; a scan block keeps
/// its reasons and gains this one.
pub fn gate(
    decision: GateDecision,
    check: &SignatureCheck,
    policy: &SignaturePolicy,
) -> GateDecision {
    let SignatureCheck::Unverified { reason } = check else {
        return decision;
    };
    if !policy.required {
        return decision;
    }
    let reason = format!("signature required: {reason}");
    match decision {
        GateDecision::Pass { counts, .. } => GateDecision::Block {
            counts,
            reasons: vec![reason],
        },
        GateDecision::Block {
            counts,
            mut reasons,
        } => {
            reasons.push(reason);
            GateDecision::Block { counts, reasons }
        }
        wait @ GateDecision::Wait { .. } => wait,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn digest() -> Digest {
        Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap()
    }

    fn signed() -> Signed {
        Signed {
            signer: Signer::Key {
                fingerprint: "00".repeat(32),
                source: "ssm:/salon/cosign/ci.pub".into(),
            },
            manifest: format!("sha256:{}", "cd".repeat(32)),
            pushed_at: DateTime::UNIX_EPOCH,
        }
    }

    fn raw(yaml: &str) -> RawSignatures {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn only_simple_signing_layers_with_a_signature_are_read() {
        let m = serde_json::json!({"layers": [
            {"mediaType": SIMPLE_SIGNING, "digest": "sha256:aa", "size": 200,
             "annotations": {SIGNATURE_ANNOTATION: "MEUC"}},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:bb", "size": 1,
             "annotations": {SIGNATURE_ANNOTATION: "MEUC"}},
            {"mediaType": SIMPLE_SIGNING, "digest": "sha256:cc", "size": 1}
        ]});
        let got = layers(m.to_string().as_bytes()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].digest.as_str(), got[0].size), ("sha256:aa", 200));
        assert!(layers(b"[]").is_err() && layers(b"{").is_err());
    }

    #[test]
    fn a_payload_names_its_digest_only_under_cosigns_type() {
        let ok = br#"{"critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":"sha256:ab"}}}"#;
        assert_eq!(signed_digest(ok).unwrap(), "sha256:ab");
        let other = br#"{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":"sha256:ab"}}}"#;
        assert!(
            signed_digest(other)
                .unwrap_err()
                .contains("\"atomic container signature\"")
        );
        assert!(signed_digest(&vec![b' '; MAX_PAYLOAD + 1]).is_err());
    }

    #[test]
    fn the_signature_tag_is_the_digest_with_a_dash_and_sig() {
        assert_eq!(
            signature_tag(&digest()),
            format!("sha256-{}.sig", "ab".repeat(32))
        );
    }

    #[test]
    fn no_stored_signature_is_reported_as_none_naming_the_tag_looked_for() {
        let SignatureCheck::Unverified { reason } = judge(&digest(), vec![]) else {
            panic!()
        };
        assert!(reason.starts_with("no signature: the registry has no sha256-abab"));
    }

    #[test]
    fn one_valid_signature_among_refused_ones_verifies() {
        let outcomes = vec![Err(Refusal::UnknownKey), Ok(signed())];
        assert_eq!(
            judge(&digest(), outcomes),
            SignatureCheck::Verified(signed())
        );
    }

    #[test]
    fn refusals_are_named_once_each() {
        let outcomes = vec![
            Err(Refusal::UnknownKey),
            Err(Refusal::UnknownKey),
            Err(Refusal::OtherDigest("sha256:ff".into())),
        ];
        let SignatureCheck::Unverified { reason } = judge(&digest(), outcomes) else {
            panic!()
        };
        assert_eq!(
            reason,
            "no valid signature: signed by an unknown key; a signature of another image (sha256:ff)"
        );
    }

    #[test]
    fn a_required_signature_that_is_missing_blocks_a_passing_candidate() {
        let policy = build(&raw("required: true\nkeys: [{ssm: /k}]")).unwrap();
        let pass = GateDecision::Pass {
            counts: BTreeMap::new(),
            ignored: vec![],
            note: None,
        };
        let check = judge(&digest(), vec![Err(Refusal::UnknownKey)]);
        let GateDecision::Block { reasons, .. } = gate(pass.clone(), &check, &policy) else {
            panic!()
        };
        assert_eq!(
            reasons,
            ["signature required: no valid signature: signed by an unknown key"]
        );
        let verified = SignatureCheck::Verified(signed());
        assert_eq!(gate(pass.clone(), &verified, &policy), pass);
    }

    #[test]
    fn a_signature_that_is_not_required_blocks_nothing() {
        let policy = build(&raw("keys: [{file: /etc/tugboat/ci.pub}]")).unwrap();
        assert!(policy.active() && !policy.required);
        let pass = GateDecision::Pass {
            counts: BTreeMap::new(),
            ignored: vec![],
            note: None,
        };
        let check = judge(&digest(), vec![]);
        assert_eq!(gate(pass.clone(), &check, &policy), pass);
    }

    #[test]
    fn a_required_signature_without_keys_is_refused_saying_what_to_add() {
        let (field, msg) = build(&raw("required: true")).unwrap_err();
        assert_eq!(field, "signatures.required");
        assert!(msg.contains("signatures.keys"), "{msg}");
    }

    #[test]
    fn a_key_reference_that_names_nothing_is_refused_with_its_index() {
        for (yaml, field) in [
            ("keys: [{ssm: salon/ci.pub}]", "signatures.keys[0]"),
            (
                "keys: [{ssm: /a}, {file: relative.pub}]",
                "signatures.keys[1]",
            ),
            ("keys: [{ssm: /a}, {ssm: /a}]", "signatures.keys[1]"),
        ] {
            let (f, msg) = build(&raw(yaml)).unwrap_err();
            assert_eq!(f, field, "{yaml}: {msg}");
        }
    }
}
