//! The signature gate over the in-memory fake: a required signature by the policy's key
//! promotes with its signer in the evidence; an unsigned candidate and one signed by another
//! key are blocked naming what was found; a known signature costs no second registry call.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use chrono::Duration as Span;

use super::tests::{row, world};
use super::{Action, Mode};
use crate::domain::image::Digest;
use crate::domain::plan::Decision;
use crate::domain::signature::KeySource;
use crate::ports::ErrorKind;

use super::fake::{POLICY, World};
use crate::clock::Clock as _;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn ci_key() -> KeySource {
    KeySource::Ssm("/salon/cosign/ci.pub".into())
}

/// A P-256 pair as `cosign generate-key-pair` makes, with its public PEM.
fn key() -> (EcdsaKeyPair, String) {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let der = pair.public_key().as_der().unwrap();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        B64.encode(der.as_ref())
    );
    (pair, pem)
}

/// cosign signs `digest` with `pair`.
fn sign(w: &World, pair: &EcdsaKeyPair, digest: &Digest) -> Digest {
    let payload = crate::signature::payload(
        "123456789012.dkr.ecr.eu-north-1.amazonaws.com/user_service",
        digest,
    );
    let s = pair.sign(&SystemRandom::new(), &payload).unwrap();
    w.sign(digest, payload, B64.encode(s.as_ref()))
}

/// The fake's policy with prod requiring a signature by the CI key.
fn requiring(w: &World, pem: &str) {
    let policy = POLICY.replace(
        "    rollback: manual\n",
        "    rollback: manual\n    signatures:\n      required: true\n      keys: [{ssm: /salon/cosign/ci.pub}]\n",
    );
    w.set_policy("/salon/promotion/defaults", &policy);
    w.public_key(ci_key(), pem);
}

/// Push `tag`, signed or not, and run dev's promotion and prod's step an hour later.
async fn to_prod(
    sign_with: Option<&EcdsaKeyPair>,
    tag: &str,
) -> (std::sync::Arc<World>, super::EnvReport, super::Engine) {
    let (w, clock, engine) = world();
    let (_, ci_pem) = key();
    requiring(&w, &ci_pem);
    let d = w.push(tag, 'b');
    if let Some(pair) = sign_with {
        sign(&w, pair, &d);
    }
    let dev = row(&engine.cycle(Mode::Apply).await.unwrap(), "dev");
    assert!(
        matches!(dev.action, Action::Merged { .. }),
        "dev requires nothing: {:?}",
        dev.action
    );
    assert_eq!(dev.signature, None, "and verifies nothing");
    clock.advance(Span::hours(2));
    let prod = row(&engine.cycle(Mode::Apply).await.unwrap(), "prod");
    (w, prod, engine)
}

#[tokio::test(start_paused = true)]
async fn a_signed_candidate_opens_its_prod_pr_with_the_key_that_signed_it() {
    let (ci, ci_pem) = key();
    let (w, clock, engine) = world();
    requiring(&w, &ci_pem);
    let d = w.push("1.1.0", 'b');
    let manifest = sign(&w, &ci, &d);
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::hours(2));
    let prod = row(&engine.cycle(Mode::Apply).await.unwrap(), "prod");
    assert!(
        matches!(prod.action, Action::AwaitingApproval { .. }),
        "{:?}",
        prod.action
    );
    let fingerprint = crate::signature::TrustedKey::parse(&ci_key(), &ci_pem)
        .unwrap()
        .fingerprint()
        .to_owned();
    let pr = w.pr_from("tugboat/prod/user_service").unwrap();
    assert!(
        pr.body.contains(&format!(
            "Verified: signed by the key `sha256:{fingerprint}` (`ssm:/salon/cosign/ci.pub`); signature `{manifest}` pushed"
        )),
        "{}",
        pr.body
    );
}

#[tokio::test(start_paused = true)]
async fn an_unsigned_candidate_is_blocked_in_prod_naming_the_signature_tag_it_lacks() {
    let (_, prod, _) = to_prod(None, "1.1.0").await;
    let Decision::Blocked { reasons, .. } = &prod.decision else {
        panic!("{:?}", prod.decision)
    };
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].starts_with(&format!(
            "signature required: no signature: the registry has no sha256-{}.sig",
            "b".repeat(64)
        )),
        "{reasons:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_candidate_signed_by_another_key_is_blocked_as_signed_by_an_unknown_key() {
    let (other, _) = key();
    let (w, prod, _) = to_prod(Some(&other), "1.1.0").await;
    let Decision::Blocked { reasons, .. } = &prod.decision else {
        panic!("{:?}", prod.decision)
    };
    assert_eq!(
        reasons,
        &["signature required: no valid signature: signed by an unknown key"]
    );
    assert!(
        w.pr_from("tugboat/prod/user_service").is_none(),
        "no prod PR is opened"
    );
}

/// 1.1.0 signed by the CI key, which prod requires, promoted in dev and soaked there.
async fn signed_past_devs_soak() -> (
    std::sync::Arc<World>,
    std::sync::Arc<super::fake::TestClock>,
    super::Engine,
) {
    let (w, clock, engine) = world();
    let (ci, ci_pem) = key();
    requiring(&w, &ci_pem);
    let d = w.push("1.1.0", 'b');
    sign(&w, &ci, &d);
    engine.cycle(Mode::Apply).await.unwrap();
    clock.advance(Span::hours(2));
    (w, clock, engine)
}

#[tokio::test(start_paused = true)]
async fn a_known_signature_is_read_from_the_registry_once_however_many_cycles_follow() {
    let (w, clock, engine) = signed_past_devs_soak().await;
    for _ in 0..5 {
        engine.cycle(Mode::Apply).await.unwrap();
        clock.advance(Span::minutes(1));
    }
    assert_eq!(w.calls("cosign_signatures"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_registry_that_cannot_be_read_makes_a_required_signature_wait_never_block() {
    let (w, _clock, engine) = signed_past_devs_soak().await;
    w.fail("cosign_signatures", ErrorKind::Transient);
    let prod = row(&engine.cycle(Mode::Apply).await.unwrap(), "prod");
    let Decision::Waiting { reason, .. } = &prod.decision else {
        panic!("{:?}", prod.decision)
    };
    assert!(
        reason.starts_with("signatures cannot be verified now: "),
        "{reason}"
    );
}

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const WORKFLOW: &str =
    "https://github.com/salon/backend/.github/workflows/ci-cd-pipeline.yml@refs/heads/main";

/// prod requires a keyless signature by the CI workflow, against `sigstore`'s trusted root.
fn requiring_keyless(w: &World, sigstore: &crate::signature::keyless::testing::Sigstore) {
    let policy = POLICY.replace(
        "    rollback: manual\n",
        &format!("    rollback: manual\n    signatures:\n      required: true\n      keyless: [{{issuer: '{ISSUER}', subject: '{WORKFLOW}'}}]\n      trusted_root: {{ssm: /salon/cosign/trusted-root.json}}\n"),
    );
    w.set_policy("/salon/promotion/defaults", &policy);
    let root = KeySource::Ssm("/salon/cosign/trusted-root.json".into());
    w.public_key(root, &sigstore.trusted_root());
}

#[tokio::test(start_paused = true)]
async fn a_keyless_signature_by_the_ci_workflow_opens_prod_naming_it_and_another_workflows_is_blocked()
 {
    let sigstore = crate::signature::keyless::testing::Sigstore::new();
    for (subject, promoted) in [
        (WORKFLOW, true),
        (
            "https://github.com/mallory/fork/.github/workflows/x.yml@refs/heads/main",
            false,
        ),
    ] {
        let (w, clock, engine) = world();
        requiring_keyless(&w, &sigstore);
        let d = w.push("1.1.0", 'b');
        let payload = crate::signature::payload(
            "123456789012.dkr.ecr.eu-north-1.amazonaws.com/user_service",
            &d,
        );
        let logged = clock.now().timestamp();
        w.sign_stored(&d, sigstore.sign(&payload, subject, ISSUER, logged));
        engine.cycle(Mode::Apply).await.unwrap();
        clock.advance(Span::hours(2));
        let prod = row(&engine.cycle(Mode::Apply).await.unwrap(), "prod");
        if promoted {
            assert!(
                matches!(prod.action, Action::AwaitingApproval { .. }),
                "{:?}",
                prod.decision
            );
            let pr = w.pr_from("tugboat/prod/user_service").unwrap();
            assert!(
                pr.body.contains(&format!(
                    "Verified: signed by `{}` (issuer `{ISSUER}`), logged in Rekor",
                    crate::domain::markdown::inert(WORKFLOW)
                )),
                "{}",
                pr.body
            );
        } else {
            let Decision::Blocked { reasons, .. } = &prod.decision else {
                panic!("{:?}", prod.decision)
            };
            assert_eq!(
                reasons,
                &[format!(
                    "signature required: no valid signature: certificate subject {subject} (issuer {ISSUER}) does not match a signer of the policy"
                )]
            );
        }
    }
}
