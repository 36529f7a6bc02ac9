//! `tugboat doctor` against the sandbox: clean, and with each fault a first cycle would
//! trip over injected in turn, each named by one error line with its fact and its fix.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Command;

use tugboat::config::Config;
use tugboat::domain::doctor::{Finding, Level, exit_code};
use tugboat_sandbox::{Options, SALON_SERVICES, Sandbox, WithoutHarnessVars, app_name};

fn warnings(findings: &[Finding]) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.level == Level::Warning)
        .collect()
}

fn errors(findings: &[Finding]) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.level == Level::Error)
        .collect()
}

async fn doctor(sb: &Sandbox, dir: &std::path::Path) -> Vec<Finding> {
    let toml = sb.config_toml(&dir.join("work"));
    let cfg = Config::parse(&toml, "sandbox.toml", std::iter::empty()).unwrap();
    tugboat::doctor::run(&cfg, false).await
}

/// The one error of `findings`, which must name `fact` and `fix`.
fn one_error<'a>(findings: &'a [Finding], fact: &str, fix: &str) -> &'a Finding {
    let e = errors(findings);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].fact.contains(fact), "fact: {:#?}", e[0]);
    assert!(e[0].fix.contains(fix), "fix: {:#?}", e[0]);
    assert_eq!(exit_code(findings), 2);
    e[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_clean_against_the_sandbox_and_names_each_injected_fault_with_its_fix() {
    let sb = Sandbox::start(Options::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    // As printed: no error; the one warning per repository is ECR's default, MUTABLE tags,
    // which no environment's policy pins digests against.
    let findings = doctor(&sb, dir.path()).await;
    assert!(errors(&findings).is_empty(), "{findings:#?}");
    let mutable = warnings(&findings);
    assert_eq!(mutable.len(), 6, "{mutable:#?}");
    assert!(
        mutable
            .iter()
            .all(|w| w.fact.starts_with("tags are MUTABLE"))
    );
    for area in [
        "config",
        "ssm",
        "ecr",
        "signatures",
        "github",
        "argocd",
        "events",
        "notify",
    ] {
        assert!(findings.iter().any(|f| f.area == area), "no {area} finding");
    }
    // It only read: no write to GitHub, AWS or Argo CD (the seal key is not made either).
    let github: Vec<String> = sb.github.calls().into_keys().collect();
    assert!(github.iter().all(|c| c.starts_with("GET ")), "{github:?}");
    let aws: Vec<String> = sb.aws.calls().into_keys().collect();
    // TestEventPattern asks EventBridge whether a pattern matches an event: it stores nothing.
    let reads = ["Get", "Describe", "List", "BatchGet", "TestEventPattern"];
    assert!(
        aws.iter().all(|c| reads.iter().any(|r| c.starts_with(r))),
        "{aws:?}"
    );
    assert!(
        sb.aws
            .parameter("/tugboat/salon/salon-gitops/state-key")
            .is_none()
    );
    let argo: Vec<String> = sb.argocd.calls().into_keys().collect();
    // The one POST is the CanI question (gRPC-Web has only POST), which changes nothing.
    assert!(
        argo.iter()
            .all(|c| c.starts_with("GET ") || c == "POST AccountService.CanI (gRPC-Web)"),
        "{argo:?}"
    );
    // With immutable tags, all is ok.
    for (svc, _) in SALON_SERVICES {
        sb.aws.set_tag_mutability(svc, "IMMUTABLE");
    }
    let findings = doctor(&sb, dir.path()).await;
    assert_eq!(exit_code(&findings), 0, "{findings:#?}");

    // A queue EventBridge may not send to: a warning (tugboat still polls), with the fix.
    let queue = tugboat_sandbox::sqs::EVENTS_QUEUE;
    let policy = sb.aws.sqs.policy(queue);
    assert!(
        policy
            .as_deref()
            .is_some_and(|p| p.contains("events.amazonaws.com"))
    );
    sb.aws.sqs.set_policy(queue, None);
    let findings = doctor(&sb, dir.path()).await;
    assert_eq!(exit_code(&findings), 1, "{findings:#?}");
    let w = warnings(&findings);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].area, "events");
    assert!(w[0].fact.contains("no access policy"), "{w:#?}");
    assert!(w[0].fix.contains("EventsQueuePolicy"), "{w:#?}");
    sb.aws.sqs.set_policy(queue, policy.as_deref());

    // The stack's rules send every watched repository's pushes and scans to the queue.
    let rules: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.area == "events" && f.subject.ends_with(')'))
        .collect();
    assert_eq!(rules.len(), 2, "{findings:#?}");
    assert!(
        rules[0]
            .fact
            .contains("pushes of all 6 watched repositories")
            && rules[1].fact.contains("finished scans of all 6"),
        "{rules:#?}"
    );
    // A push rule narrowed to one repository: the other five are named (a warning).
    let narrowed = serde_json::json!({"source": ["aws.ecr"], "detail-type": ["ECR Image Action"],
        "detail": {"action-type": ["PUSH"], "repository-name": [{"prefix": "user_"}]}});
    let stack_push = sb
        .aws
        .events
        .rules()
        .into_iter()
        .find(|r| r.name == "tugboat-ecr-image-action")
        .unwrap();
    sb.aws
        .events
        .put_rule("tugboat-ecr-image-action", &narrowed, true);
    let findings = doctor(&sb, dir.path()).await;
    assert_eq!(exit_code(&findings), 1, "{findings:#?}");
    let w = warnings(&findings);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].fact.contains("pushes of 5 of 6 watched repositories")
            && w[0].fact.contains("notification_service")
            && !w[0].fact.contains("user_service"),
        "{w:#?}"
    );
    assert!(w[0].fix.contains("events.cfn.yaml"), "{w:#?}");
    // Every rule disabled: nothing reaches the queue.
    for r in sb.aws.events.rules() {
        let pattern: serde_json::Value = serde_json::from_str(&r.pattern).unwrap();
        sb.aws.events.put_rule(&r.name, &pattern, false);
    }
    let findings = doctor(&sb, dir.path()).await;
    let w = warnings(&findings);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].fact.contains("no enabled rule") && w[0].fact.contains("tugboat-inspector"),
        "{w:#?}"
    );
    for r in sb.aws.events.rules() {
        let original = if r.name == stack_push.name {
            stack_push.pattern.clone()
        } else {
            r.pattern.clone()
        };
        let pattern: serde_json::Value = serde_json::from_str(&original).unwrap();
        sb.aws.events.put_rule(&r.name, &pattern, true);
    }
    assert_eq!(
        exit_code(&doctor(&sb, dir.path()).await),
        0,
        "the stack's rules again"
    );
    // A role without the `events:` grants: the rules cannot be checked (a warning naming
    // the grants), and nothing else changes.
    sb.aws.events.deny(true);
    let findings = doctor(&sb, dir.path()).await;
    let w = warnings(&findings);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].fact.contains("AccessDeniedException"), "{w:#?}");
    assert!(w[0].fix.contains("events:ListRuleNamesByTarget"), "{w:#?}");
    sb.aws.events.deny(false);

    // Enhanced scanning whose rule misses one repository: Inspector never scans it.
    sb.aws.set_enhanced_scanning(true);
    let others: Vec<String> = SALON_SERVICES[1..]
        .iter()
        .map(|(s, _)| format!("{s}*"))
        .collect();
    sb.aws
        .set_scan_filters(&others.iter().map(String::as_str).collect::<Vec<_>>());
    let findings = doctor(&sb, dir.path()).await;
    let e = one_error(
        &findings,
        "no scanning rule's filter matches",
        "PutRegistryScanningConfiguration",
    );
    assert_eq!(
        (e.area.as_str(), e.subject.as_str()),
        ("ecr", "user_service")
    );
    sb.aws.set_enhanced_scanning(false);
    sb.aws.set_scan_filters(&["*"]);

    // An Argo CD token that may not sync, and an application that does not sync by itself.
    sb.argocd.deny_sync(true);
    sb.argocd
        .set_automated(&app_name("user_service", "prod"), false);
    let findings = doctor(&sb, dir.path()).await;
    let e = one_error(
        &findings,
        "the token may not sync it",
        "`applications, sync, default/user-service-prod`",
    );
    assert_eq!(e.subject, "user-service-prod (user_service/prod)");
    sb.argocd.deny_sync(false);

    // A proxy in front of Argo CD that passes only /api: the question cannot be asked, which
    // matters only for the application that does not sync by itself (a warning, not an error).
    sb.argocd.serve_grpc_web(false);
    let findings = doctor(&sb, dir.path()).await;
    assert!(errors(&findings).is_empty(), "{findings:#?}");
    let w = warnings(&findings);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].subject, "user-service-prod (user_service/prod)");
    assert!(w[0].fact.contains("HTTP 404"), "{w:#?}");
    assert!(w[0].fix.contains("argocd account can-i sync"), "{w:#?}");
    sb.argocd.serve_grpc_web(true);

    // A protection tugboat cannot satisfy: signed commits, with a token that pushes.
    sb.github.protect(tugboat_sandbox::github::Protection {
        signed_commits: true,
        ..Default::default()
    });
    let findings = doctor(&sb, dir.path()).await;
    let e = one_error(
        &findings,
        "requires signed commits",
        "github.commits = \"api\"",
    );
    assert_eq!(e.subject, "branch main");
    sb.github.protect(Default::default());

    // A policy parameter tugboat may not decrypt.
    sb.aws
        .deny_decrypt("/salon/promotion/services/notification_service");
    let findings = doctor(&sb, dir.path()).await;
    let e = one_error(
        &findings,
        "kms:Decrypt",
        "kms:Decrypt on the key of its SecureStrings",
    );
    assert_eq!(
        (e.area.as_str(), e.subject.as_str()),
        ("ssm", "/salon/promotion/")
    );
}

#[test]
fn doctor_on_the_command_line_prints_a_line_per_check_or_json_and_exits_by_the_worst() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sb = rt.block_on(Sandbox::start(Options::default())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tugboat.toml");
    std::fs::write(&config, sb.config_toml(&dir.path().join("work"))).unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tugboat"))
            .without_harness_vars()
            .args(["doctor", "--config", &config.display().to_string()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "ok      ssm     user_service: policy for dev, prod from /salon/promotion/defaults"
        ),
        "{text}"
    );
    assert!(
        text.contains("warning ecr     user_service: tags are MUTABLE"),
        "{text}"
    );
    assert!(
        text.contains("fix: make the repository's tags IMMUTABLE"),
        "{text}"
    );
    assert!(text.contains("0 error(s)"), "{text}");
    assert!(
        !text.contains(&sb.github_token) && !text.contains(&sb.argocd_token),
        "{text}"
    );

    let out = run(&["--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["exit"], 1);
    assert!(
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["level"] == "warning" && f["area"] == "ecr")
    );

    // `--send-test` delivers one test notification to each sink, and says so; with
    // `--allow-warnings` the exit status is 0 (the init container's way).
    assert!(sb.sinks.received().is_empty());
    let out = run(&["--send-test", "--allow-warnings"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("ok      notify  slack: a test notification was delivered"),
        "{text}"
    );
    let got = sb.sinks.received();
    assert_eq!(got.len(), 2, "{got:#?}");
    let hook = got.iter().find(|r| r.sink == "webhook").unwrap();
    assert_eq!(
        (hook.event.as_deref(), hook.verified),
        (Some("test"), Some(true))
    );

    // A configuration that does not load is one error, and exit 2.
    std::fs::write(&config, "[aws]\nregion = 1\n").unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("error   config  "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_that_the_lease_may_be_read_created_and_updated_when_election_is_on() {
    let sb = Sandbox::start(Options::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kube = crate::common::election::stand_in();
    let (kube_url, _server) = kube.start().await.unwrap();
    let toml = format!(
        "{}\n[election]\nenabled = true\nnamespace = \"tugboat\"\nidentity = \"doctor\"\napi_url = \"{kube_url}\"\n",
        sb.config_toml(&dir.path().join("work"))
    );
    let cfg = Config::parse(&toml, "sandbox.toml", std::iter::empty()).unwrap();
    let lease = |findings: Vec<Finding>| {
        findings
            .into_iter()
            .find(|f| f.area == "election")
            .expect("an election finding")
    };

    let ok = lease(tugboat::doctor::run(&cfg, false).await);
    assert_eq!(ok.level, Level::Ok, "{ok:#?}");
    assert!(ok.fact.contains("may be created and updated"), "{ok:#?}");
    assert!(ok.fact.contains("does not exist yet"), "{ok:#?}");

    // A Role with `get` only: the doctor says no replica could lead, and which verbs.
    kube.deny_writes(true);
    let denied = lease(tugboat::doctor::run(&cfg, false).await);
    assert_eq!(denied.level, Level::Error, "{denied:#?}");
    assert!(
        denied.fact.contains("may not create or update it"),
        "{denied:#?}"
    );
    assert!(denied.fix.contains("rbac.yaml"), "{denied:#?}");
    // It asked; it wrote no Lease.
    assert!(kube.holder("tugboat", "tugboat").is_none());
    assert!(!kube.calls().contains_key("POST"), "{:?}", kube.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_signature_keys_the_policy_names_and_the_registry_api() {
    let sb = Sandbox::start(Options::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let findings = doctor(&sb, dir.path()).await;
    let sigs: Vec<&Finding> = findings.iter().filter(|f| f.area == "signatures").collect();
    assert_eq!(sigs.len(), 2, "{sigs:#?}");
    assert_eq!(sigs[0].subject, "ssm:/salon/cosign/ci.pub");
    assert!(
        sigs[0].fact.starts_with("public key sha256:")
            && sigs[0].fact.contains("user_service/prod"),
        "{sigs:#?}"
    );
    assert!(sigs[1].fact.ends_with("answers with a token"), "{sigs:#?}");

    // A parameter that holds no public key: every environment it verifies is named.
    sb.aws.put_parameter(
        tugboat_sandbox::CI_KEY_PARAMETER,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 ci@salon",
        "String",
    );
    let findings = doctor(&sb, dir.path()).await;
    let e = one_error(&findings, "is not a PEM public key", "cosign.pub");
    assert_eq!(e.area, "signatures");
    assert!(e.fact.contains("cannot promote"), "{e:#?}");
}
