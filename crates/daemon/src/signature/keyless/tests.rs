//! Keyless signatures made as Fulcio and Rekor make them (`testing::Sigstore`), verified
//! against its trusted root.

use serde_json::Value;

use super::testing::Sigstore;
use super::*;

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const SUBJECT: &str =
    "https://github.com/salon/backend/.github/workflows/ci-cd-pipeline.yml@refs/heads/main";

fn root(s: &Sigstore) -> TrustRoot {
    let source = KeySource::Ssm("/salon/cosign/trusted-root.json".into());
    TrustRoot::parse(&source, &s.trusted_root()).unwrap()
}

fn ci() -> Vec<Identity> {
    vec![Identity {
        issuer: ISSUER.into(),
        subject: SUBJECT.into(),
    }]
}

const NOW: i64 = 1_796_000_000;

#[test]
fn a_keyless_signature_of_the_policys_workflow_verifies_naming_it_and_when_it_was_logged() {
    let s = Sigstore::new();
    let stored = s.sign(b"payload", SUBJECT, ISSUER, NOW);
    let signer = verify(&stored, &root(&s), &ci()).unwrap();
    assert_eq!(
        signer,
        Signer::Certificate {
            subject: SUBJECT.into(),
            issuer: ISSUER.into(),
            logged_at: DateTime::from_timestamp(NOW, 0).unwrap(),
        }
    );
}

#[test]
fn a_keyless_signature_by_another_workflow_is_refused_naming_its_subject() {
    let s = Sigstore::new();
    let other =
        "https://github.com/salon/backend/.github/workflows/ci-cd-pipeline.yml@refs/heads/feature";
    let stored = s.sign(b"payload", other, ISSUER, NOW);
    let err = verify(&stored, &root(&s), &ci()).unwrap_err();
    assert_eq!(
        err,
        Refusal::OtherIdentity {
            subject: other.into(),
            issuer: ISSUER.into()
        }
    );
    assert!(err.to_string().starts_with(&format!(
        "certificate subject {other} (issuer {ISSUER}) does not match"
    )));
}

#[test]
fn a_changed_payload_a_foreign_ca_or_a_foreign_log_does_not_verify() {
    let s = Sigstore::new();
    let mut changed = s.sign(b"payload", SUBJECT, ISSUER, NOW);
    changed.payload = b"another payload".to_vec();
    let foreign = Sigstore::new();
    let by_foreign = foreign.sign(b"payload", SUBJECT, ISSUER, NOW);
    for stored in [changed, by_foreign] {
        let err = verify(&stored, &root(&s), &ci()).unwrap_err();
        assert!(matches!(err, Refusal::Unverifiable(_)), "{err:?}");
    }
}

#[test]
fn a_keyless_signature_without_its_rekor_bundle_is_refused_saying_so() {
    let s = Sigstore::new();
    let mut stored = s.sign(b"payload", SUBJECT, ISSUER, NOW);
    stored.bundle = None;
    let Err(Refusal::Malformed(why)) = verify(&stored, &root(&s), &ci()) else {
        panic!()
    };
    assert!(why.starts_with("no Rekor bundle"), "{why}");
}

#[test]
fn a_log_entry_whose_time_was_changed_after_rekor_signed_it_does_not_verify() {
    let s = Sigstore::new();
    let mut stored = s.sign(b"payload", SUBJECT, ISSUER, NOW);
    let mut rekor: Value = serde_json::from_str(stored.bundle.as_deref().unwrap()).unwrap();
    rekor["Payload"]["integratedTime"] = json!(NOW - 3600);
    stored.bundle = Some(rekor.to_string());
    let err = verify(&stored, &root(&s), &ci()).unwrap_err();
    assert!(matches!(err, Refusal::Unverifiable(_)), "{err:?}");
}
