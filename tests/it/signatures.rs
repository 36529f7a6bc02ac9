//! The signature gate end to end, as a new user meets it in the sandbox: prod requires a
//! cosign signature by the sandbox's CI key (the printed policy), dev requires none. The
//! real engine reads the signatures through the real registry adapter (ECR's token from
//! `GetAuthorizationToken`, the OCI distribution API) from the ECR stand-in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{assert_healthy, row, setup};
use tugboat::domain::plan::Decision;
use tugboat::domain::signature::KeySource;
use tugboat::engine::{Action, Mode};
use tugboat_sandbox::Sandbox;

/// Seed `tag` of `repository` over the sandbox's HTTP surface, signed as `signature` says.
async fn seed(sb: &Sandbox, repository: &str, tag: &str, signature: &str) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{}/_sandbox/ecr/images", sb.aws_url))
        .json(&serde_json::json!({"repository": repository, "tag": tag, "signature": signature}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn registry_calls(sb: &Sandbox) -> u64 {
    sb.aws
        .calls()
        .iter()
        .filter(|(k, _)| k.starts_with("registry:"))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_promotes_the_image_the_ci_key_signed_and_blocks_the_others_naming_what_it_found() {
    let (sb, engine, _w) = setup().await;
    let signed = seed(&sb, "user_service", "1.1.0", "valid").await;
    seed(&sb, "appointment_service", "2.0.0", "unknown-key").await;
    let unsigned = seed(&sb, "staff_management", "3.0.0", "none").await;
    assert!(unsigned.get("signature_tag").is_none(), "{unsigned}");

    let reports = engine.cycle(Mode::Apply).await.unwrap();
    for svc in ["user_service", "appointment_service", "staff_management"] {
        assert_healthy(&reports, svc, "dev");
        assert_eq!(
            row(&reports, svc, "dev").signature,
            None,
            "dev verifies nothing"
        );
    }

    let reports = engine.cycle(Mode::Apply).await.unwrap();
    let user = row(&reports, "user_service", "prod");
    let Action::AwaitingApproval { number, .. } = user.action else {
        panic!("{:?} {:?}", user.decision, user.action)
    };
    let pem = sb.aws.parameter(tugboat_sandbox::CI_KEY_PARAMETER).unwrap();
    let ci = KeySource::Ssm(tugboat_sandbox::CI_KEY_PARAMETER.into());
    let fingerprint = tugboat::signature::TrustedKey::parse(&ci, &pem)
        .unwrap()
        .fingerprint()
        .to_owned();
    let pr = sb
        .github
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .unwrap();
    let digest = signed["digest"].as_str().unwrap();
    assert!(
        pr.body.contains(&format!(
            "Verified: signed by the key `sha256:{fingerprint}` (`ssm:/salon/cosign/ci.pub`)"
        )),
        "{}",
        pr.body
    );
    assert!(pr.body.contains(digest), "the PR pins the signed digest");
    let board = tugboat::engine::dashboard::row_of(user);
    assert_eq!(
        board.candidate.as_deref(),
        Some(format!("1.1.0 · signed by sha256:{}", &fingerprint[..12]).as_str()),
        "the dashboard names the signer"
    );

    let blocked = |svc: &str| match &row(&reports, svc, "prod").decision {
        Decision::Blocked { reasons, .. } => reasons.join("; "),
        other => panic!("{svc}: {other:?}"),
    };
    assert_eq!(
        blocked("appointment_service"),
        "signature required: no valid signature: signed by an unknown key"
    );
    let staff = blocked("staff_management");
    assert!(
        staff.starts_with("signature required: no signature: the registry has no sha256-")
            && staff.contains(unsigned["digest"].as_str().unwrap()),
        "{staff}"
    );
    let prod_prs = sb
        .github
        .pulls()
        .into_iter()
        .filter(|p| p.title.contains("prod"));
    assert_eq!(prod_prs.count(), 1, "no PR for what is blocked");

    let before = registry_calls(&sb);
    assert!(
        before >= 2,
        "the signature was read through the registry API: {before}"
    );
    engine.cycle(Mode::Apply).await.unwrap();
    assert_eq!(
        registry_calls(&sb),
        before,
        "a known signature costs no registry call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_shows_who_signed_as_json() {
    let (sb, engine, _w) = setup().await;
    seed(&sb, "user_service", "1.1.0", "valid").await;
    engine.cycle(Mode::Apply).await.unwrap();
    let plan = engine.cycle(Mode::Plan).await.unwrap();
    let json = tugboat::report::json(&plan);
    let prod = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "user_service" && r["environment"] == "prod")
        .unwrap();
    let s = &prod["signature"];
    assert_eq!(s["status"], "verified", "{prod}");
    assert_eq!(s["signer"]["kind"], "key");
    assert_eq!(s["signer"]["source"], "ssm:/salon/cosign/ci.pub");
    assert_eq!(s["signer"]["fingerprint"].as_str().unwrap().len(), 64);
    assert!(s["pushed_at"].as_str().is_some(), "{s}");
}

/// A rescan of what prod runs of user_service.
fn prod_of_user_service() -> tugboat::engine::rescan::Scope {
    tugboat::engine::rescan::Scope {
        service: Some("user_service".into()),
        environment: Some("prod".into()),
        dry_run: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rescan_flags_a_deployed_image_whose_signature_no_longer_verifies() {
    use tugboat::engine::rescan::IssueAction;
    let (sb, engine, _w) = setup().await;
    // prod runs 1.0.0, signed by the CI key when it was pushed: it verifies.
    let first = engine.rescan(&prod_of_user_service()).await.unwrap();
    let row = &first.services[0].rows[0];
    assert_eq!((row.blocked, &row.signature), (false, &None), "{row:?}");

    // The team revokes the CI key: prod now trusts another one only.
    let new_key = rcgen::KeyPair::generate().unwrap().public_key_pem();
    sb.aws
        .put_parameter("/salon/cosign/ci-2027.pub", &new_key, "String");
    sb.aws.put_parameter(
        "/salon/promotion/services/user_service",
        "environments:\n  prod:\n    signatures: {required: true, keys: [{ssm: /salon/cosign/ci-2027.pub}]}\n",
        "String",
    );
    engine.refresh_policy();
    let second = engine.rescan(&prod_of_user_service()).await.unwrap();
    let user = &second.services[0];
    let row = &user.rows[0];
    assert!(row.blocked, "{row:?}");
    assert_eq!(
        row.signature.as_deref(),
        Some("no valid signature: signed by an unknown key")
    );
    let IssueAction::Opened { number, .. } = user.issue else {
        panic!("{:?}", user.issue)
    };
    let issue = sb
        .github
        .issues()
        .into_iter()
        .find(|i| i.number == number)
        .unwrap();
    assert!(
        issue.body.contains(
            "Its signature no longer verifies: no valid signature: signed by an unknown key."
        ),
        "{}",
        issue.body
    );
}
