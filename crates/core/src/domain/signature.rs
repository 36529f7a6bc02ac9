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

/// A keyless signer: the OIDC issuer of a Fulcio certificate and the identity (its subject
/// alternative name: a URI for a CI workflow, an email for a person), both exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
}

/// What an environment's policy asks of signatures.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignaturePolicy {
    /// A candidate without a valid signature by one of `keys` or `keyless` is blocked.
    /// Without it, signatures are verified and shown, and block nothing.
    pub required: bool,
    /// The cosign public keys (PEM) whose signatures count; any one may sign.
    pub keys: Vec<KeySource>,
    /// The keyless signers whose signatures count, verified against `trusted_root`.
    pub keyless: Vec<Identity>,
    /// A Sigstore trusted root (its Fulcio CAs and Rekor keys, `trusted_root.json`).
    pub trusted_root: Option<KeySource>,
}

impl SignaturePolicy {
    /// Whether anything is to be verified at all.
    pub fn active(&self) -> bool {
        !self.keys.is_empty() || !self.keyless.is_empty()
    }
}

/// The policy's `signatures:` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignatures {
    required: Option<bool>,
    keys: Option<Vec<KeySource>>,
    keyless: Option<Vec<Identity>>,
    trusted_root: Option<KeySource>,
}

/// Check the keyless signers (`field`, message): an https issuer and a subject each, none
/// twice, and a trusted root to verify them against.
fn keyless(raw: &RawSignatures) -> Result<Vec<Identity>, (String, String)> {
    let ids = raw.keyless.clone().unwrap_or_default();
    for (i, id) in ids.iter().enumerate() {
        let at = |f: &str| format!("signatures.keyless[{i}].{f}");
        if !id.issuer.starts_with("https://") || id.issuer.contains(char::is_whitespace) {
            return Err((
                at("issuer"),
                format!(
                    "'{}' is not an OIDC issuer URL (https://…, e.g. https://token.actions.githubusercontent.com)",
                    id.issuer
                ),
            ));
        }
        if id.subject.is_empty() || id.subject.trim() != id.subject {
            return Err((
                at("subject"),
                format!(
                    "'{}' is not a certificate identity (a workflow URI or an email, exact)",
                    id.subject
                ),
            ));
        }
        if ids[..i].contains(id) {
            return Err((
                format!("signatures.keyless[{i}]"),
                "listed twice".to_owned(),
            ));
        }
    }
    if let Some(root) = &raw.trusted_root {
        root.check()
            .map_err(|m| ("signatures.trusted_root".to_owned(), m))?;
    }
    if !ids.is_empty() && raw.trusted_root.is_none() {
        return Err((
            "signatures.trusted_root".to_owned(),
            "keyless signers need a trusted root to verify their certificates and log entries against: a Sigstore trusted_root.json, e.g. {ssm: /salon/cosign/trusted-root.json} (`cosign trusted-root create`, or the public one from `sigstore/root-signing`)".to_owned(),
        ));
    }
    Ok(ids)
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
    let keyless = keyless(raw)?;
    let required = raw.required.unwrap_or(false);
    if required && keys.is_empty() && keyless.is_empty() {
        return Err((
            "signatures.required".to_owned(),
            "signatures are required but nobody may sign: list the signers' public keys in signatures.keys (e.g. [{ssm: /salon/cosign/ci.pub}]) or their identities in signatures.keyless".to_owned(),
        ));
    }
    Ok(SignaturePolicy {
        required,
        keys,
        keyless,
        trusted_root: raw.trusted_root.clone(),
    })
}

/// Who signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Signer {
    /// A key: the SHA-256 of its DER SubjectPublicKeyInfo, in hex (what
    /// `openssl pkey -pubin -in key.pub -outform DER | sha256sum` prints), and where the
    /// policy keeps it.
    Key { fingerprint: String, source: String },
    /// A Fulcio certificate: the identity it was issued to and its OIDC issuer, logged in
    /// Rekor at `logged_at`.
    Certificate {
        subject: String,
        issuer: String,
        logged_at: DateTime<Utc>,
    },
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
    /// A keyless signature whose certificate, signature or log entry does not verify
    /// against the trusted root.
    Unverifiable(String),
    /// A keyless signature that verifies, by an identity the policy does not name.
    OtherIdentity { subject: String, issuer: String },
    /// It cannot be read (bad base64, a payload that is not cosign's).
    Malformed(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OtherDigest(d) => write!(f, "a signature of another image ({d})"),
            Self::UnknownKey => f.write_str("signed by an unknown key"),
            Self::Unverifiable(why) => {
                write!(f, "a keyless signature that does not verify ({why})")
            }
            Self::OtherIdentity { subject, issuer } => write!(
                f,
                "certificate subject {subject} (issuer {issuer}) does not match a signer of the policy"
            ),
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

/// A keyless signature's Fulcio certificate (PEM), its chain (PEM) and its Rekor bundle
/// (the SET with the log entry), in these layer annotations (specs/SIGNATURE_SPEC.md).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// A signature layer of a signature manifest: its payload blob's digest and size, its
/// signature as stored, and for a keyless one its certificate, chain and Rekor bundle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layer {
    pub digest: String,
    pub size: u64,
    pub signature: String,
    pub certificate: Option<String>,
    pub chain: Option<String>,
    pub bundle: Option<String>,
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
        let note = |k: &str| l["annotations"][k].as_str().map(str::to_owned);
        out.push(Layer {
            digest: digest.to_owned(),
            size: l["size"].as_u64().unwrap_or(u64::MAX),
            signature: signature.to_owned(),
            certificate: note(CERTIFICATE_ANNOTATION),
            chain: note(CHAIN_ANNOTATION),
            bundle: note(BUNDLE_ANNOTATION),
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

/// The transparency log entry of a keyless signature as a Sigstore bundle (v0.1) holds it,
/// from cosign's `dev.sigstore.cosign/bundle` annotation: `{"SignedEntryTimestamp": …,
/// "Payload": {"body", "integratedTime", "logIndex", "logID"}}` (the log's entry with its
/// SET). Nothing in it is believed until the SET verifies.
pub fn rekor_entry(annotation: &str) -> Result<serde_json::Value, String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let rekor: serde_json::Value = serde_json::from_str(annotation)
        .map_err(|e| format!("its Rekor bundle is not JSON: {e}"))?;
    let entry = &rekor["Payload"];
    let body = entry["body"]
        .as_str()
        .ok_or("the Rekor bundle has no body")?;
    let logged: serde_json::Value = b64
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the Rekor entry's body is not base64 JSON")?;
    let log_id = entry["logID"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .ok_or("the Rekor bundle's logID is not hex")?;
    let number = |k: &str| {
        entry[k]
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or(format!("the Rekor bundle has no {k}"))
    };
    let set = rekor["SignedEntryTimestamp"]
        .as_str()
        .ok_or("the Rekor bundle has no SignedEntryTimestamp")?;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let (Some(kind), Some(version)) = (text(&logged["kind"]), text(&logged["apiVersion"])) else {
        return Err("the Rekor entry's body names no kind and apiVersion".to_owned());
    };
    Ok(serde_json::json!({
        "logIndex": number("logIndex")?.to_string(),
        "logId": {"keyId": b64.encode(log_id)},
        "kindVersion": {"kind": kind, "version": version},
        "integratedTime": number("integratedTime")?.to_string(),
        "inclusionPromise": {"signedEntryTimestamp": set},
        "canonicalizedBody": body,
    }))
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
    fn keyless_signers_are_read_and_need_a_trusted_root_an_https_issuer_and_a_subject() {
        let ok = "required: true\nkeyless: [{issuer: 'https://token.actions.githubusercontent.com', subject: 'https://github.com/salon/backend/.github/workflows/ci.yml@refs/heads/main'}]\ntrusted_root: {ssm: /salon/cosign/trusted-root.json}";
        let p = build(&raw(ok)).unwrap();
        assert!(p.required && p.active() && p.keys.is_empty());
        assert_eq!(p.keyless.len(), 1);
        assert_eq!(
            p.trusted_root,
            Some(KeySource::Ssm("/salon/cosign/trusted-root.json".into()))
        );
        for (yaml, field, says) in [
            (
                "keyless: [{issuer: 'https://i', subject: s}]",
                "signatures.trusted_root",
                "trusted_root.json",
            ),
            (
                "keyless: [{issuer: 'http://i', subject: s}]\ntrusted_root: {file: /r.json}",
                "signatures.keyless[0].issuer",
                "https://",
            ),
            (
                "keyless: [{issuer: 'https://i', subject: ''}]\ntrusted_root: {file: /r.json}",
                "signatures.keyless[0].subject",
                "identity",
            ),
            (
                "keyless: [{issuer: 'https://i', subject: s}, {issuer: 'https://i', subject: s}]\ntrusted_root: {file: /r.json}",
                "signatures.keyless[1]",
                "twice",
            ),
            (
                "keyless: [{issuer: 'https://i', subject: s}]\ntrusted_root: {file: r.json}",
                "signatures.trusted_root",
                "absolute",
            ),
        ] {
            let (f, msg) = build(&raw(yaml)).unwrap_err();
            assert_eq!(f, field, "{yaml}: {msg}");
            assert!(msg.contains(says), "{yaml}: {msg}");
        }
    }

    #[test]
    fn a_rekor_bundle_is_read_into_a_log_entry_only_with_all_its_parts() {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD
            .encode(r#"{"apiVersion":"0.0.1","kind":"hashedrekord"}"#);
        let full = format!(
            r#"{{"SignedEntryTimestamp":"MEUC","Payload":{{"body":"{body}","integratedTime":1796000000,"logIndex":42,"logID":"c0d2"}}}}"#
        );
        let e = rekor_entry(&full).unwrap();
        assert_eq!(e["logIndex"], "42");
        assert_eq!(e["integratedTime"], "1796000000");
        assert_eq!(e["kindVersion"]["kind"], "hashedrekord");
        assert_eq!(e["logId"]["keyId"], "wNI=");
        for broken in [
            full.replace(r#""logID":"c0d2""#, r#""logID":"zz""#),
            full.replace(r#""logIndex":42"#, r#""logIndex":-1"#),
            full.replace(r#""SignedEntryTimestamp":"MEUC","#, ""),
            full.replace(&body, "not base64"),
        ] {
            assert!(rekor_entry(&broken).is_err(), "{broken}");
        }
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
