//! A test Sigstore for keyless signatures, made as Fulcio and Rekor make them: its own CA
//! and Rekor key, generated here (the tests' trusted root).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::ports::StoredSignature;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A test Sigstore: a Fulcio CA and a Rekor log key.
pub(crate) struct Sigstore {
    ca: CertifiedIssuer<'static, KeyPair>,
    rekor: EcdsaKeyPair,
}

impl Sigstore {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tugboat test Fulcio");
        Self {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
            rekor: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap(),
        }
    }

    fn rekor_der(&self) -> Vec<u8> {
        self.rekor.public_key().as_der().unwrap().as_ref().to_vec()
    }

    /// Its trusted_root.json: the CA, the Rekor key, no CT log.
    pub(crate) fn trusted_root(&self) -> String {
        let rekor = self.rekor_der();
        json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{
                "baseUrl": "https://rekor.test",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": B64.encode(&rekor), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                              "validFor": {"start": "2020-01-01T00:00:00Z"}},
                "logId": {"keyId": B64.encode(Sha256::digest(&rekor))}
            }],
            "certificateAuthorities": [{
                "subject": {"organization": "tugboat", "commonName": "tugboat test Fulcio"},
                "uri": "https://fulcio.test",
                "certChain": {"certificates": [{"rawBytes": B64.encode(self.ca.der().as_ref())}]},
                "validFor": {"start": "2020-01-01T00:00:00Z"}
            }],
            "ctlogs": [],
            "timestampAuthorities": []
        })
        .to_string()
    }

    /// A Fulcio certificate for `subject` from `issuer`, and its key.
    fn certificate(&self, subject: &str, issuer: &str) -> (String, EcdsaKeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(subject.try_into().unwrap())];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Fulcio's OIDC issuer (v2): a DER UTF8String.
        let mut value = vec![0x0c, u8::try_from(issuer.len()).unwrap()];
        value.extend_from_slice(issuer.as_bytes());
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 57264, 1, 8],
            value,
        )];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.serialize_der())
            .unwrap();
        (cert.pem(), pair)
    }

    /// `payload` signed keylessly by `subject`, logged in Rekor at `at`, as cosign stores it.
    pub(crate) fn sign(
        &self,
        payload: &[u8],
        subject: &str,
        issuer: &str,
        at: i64,
    ) -> StoredSignature {
        let (pem, key) = self.certificate(subject, issuer);
        let rng = SystemRandom::new();
        let signature = B64.encode(key.sign(&rng, payload).unwrap().as_ref());
        let body = json!({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))}},
            "signature": {"content": signature, "publicKey": {"content": B64.encode(&pem)}}}});
        let body = B64.encode(body.to_string());
        let log_id = hex::encode(Sha256::digest(self.rekor_der()));
        // The SET signs the entry's canonical JSON (RFC 8785: keys sorted, no spaces).
        let entry = format!(
            r#"{{"body":"{body}","integratedTime":{at},"logID":"{log_id}","logIndex":42}}"#
        );
        let set = B64.encode(self.rekor.sign(&rng, entry.as_bytes()).unwrap().as_ref());
        StoredSignature {
            payload: payload.to_vec(),
            signature,
            certificate: Some(pem),
            chain: Some(self.ca.pem()),
            bundle: Some(
                json!({"SignedEntryTimestamp": set, "Payload": {
                    "body": body, "integratedTime": at, "logIndex": 42, "logID": log_id}})
                .to_string(),
            ),
        }
    }
}
