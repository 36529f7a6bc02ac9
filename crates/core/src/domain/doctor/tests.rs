use super::*;

fn reg(scan_type: &str, rules: &[(&str, &[&str])]) -> RegistryScanning {
    RegistryScanning {
        scan_type: scan_type.into(),
        rules: rules
            .iter()
            .map(|(f, filters)| {
                (
                    (*f).to_owned(),
                    filters.iter().map(|s| (*s).to_owned()).collect(),
                )
            })
            .collect(),
    }
}

#[test]
fn a_wildcard_filter_matches_any_run_of_characters_and_nothing_else() {
    assert!(wildcard("*", "salon/user_service"));
    assert!(wildcard("salon/*", "salon/user_service"));
    assert!(wildcard("*service", "user_service"));
    assert!(wildcard("s*n/*_s*e", "salon/user_service"));
    assert!(wildcard("user_service", "user_service"));
    assert!(!wildcard("user_service", "user_service2"));
    assert!(!wildcard("salon/*", "other/user_service"));
    assert!(!wildcard("a*a", "a"));
}

#[test]
fn enhanced_scanning_without_a_matching_rule_is_an_error_and_with_one_is_ok() {
    let f = scanning(
        "api",
        &reg("ENHANCED", &[("CONTINUOUS_SCAN", &["prod-*"])]),
        true,
    );
    assert_eq!(f.level, Level::Error);
    assert!(
        f.fact.contains("no scanning rule's filter matches"),
        "{f:?}"
    );
    assert!(f.fix.contains("'api'"), "{f:?}");
    let f = scanning(
        "prod-api",
        &reg("ENHANCED", &[("CONTINUOUS_SCAN", &["prod-*"])]),
        false,
    );
    assert_eq!(f.level, Level::Ok);
    assert!(f.fact.contains("CONTINUOUS_SCAN, filter 'prod-*'"), "{f:?}");
}

#[test]
fn basic_scanning_without_scan_on_push_is_a_warning_that_says_what_waits() {
    let none = reg("BASIC", &[("MANUAL", &["*"])]);
    let f = scanning("api", &none, false);
    assert_eq!(f.level, Level::Warning);
    assert!(f.fact.contains("StartImageScan"), "{f:?}");
    assert_eq!(scanning("api", &none, true).level, Level::Ok);
    let on_push = reg("BASIC", &[("SCAN_ON_PUSH", &["*"])]);
    assert_eq!(scanning("api", &on_push, false).level, Level::Ok);
}

#[test]
fn mutable_tags_warn_unless_every_environment_pins_digests() {
    let (none, prod) = (Vec::new(), vec!["prod".to_owned()]);
    assert_eq!(
        mutability("api", "IMMUTABLE", &prod, &none).level,
        Level::Ok
    );
    assert_eq!(
        mutability("api", "IMMUTABLE_WITH_EXCLUSION", &prod, &none).level,
        Level::Ok
    );
    assert_eq!(mutability("api", "MUTABLE", &none, &none).level, Level::Ok);
    let f = mutability("api", "MUTABLE", &prod, &none);
    assert_eq!(f.level, Level::Warning);
    assert!(f.fix.contains("`pin_digest: true` for prod"), "{f:?}");
    assert!(!f.fix.contains("refuse"), "refusing would block: {f:?}");
}

#[test]
fn mutable_tags_under_a_refusing_policy_say_that_candidates_are_blocked_there() {
    let prod = vec!["prod".to_owned()];
    let f = mutability("api", "MUTABLE", &prod, &prod);
    assert_eq!(f.level, Level::Warning);
    assert!(
        f.fact.contains("the policy of prod refuses") && f.fact.contains("blocked"),
        "{f:?}"
    );
}

#[test]
fn signed_commits_tugboat_cannot_make_are_an_error_and_reviews_a_warning_for_auto_merge() {
    let rules = BranchRules {
        branch: "main".into(),
        signed_commits: true,
        required_reviews: 1,
        ..BranchRules::default()
    };
    let f = branch(&rules, false, true);
    assert_eq!(
        f.iter().map(|f| f.level).collect::<Vec<_>>(),
        vec![Level::Error, Level::Warning]
    );
    assert!(f[0].fix.contains("github.commits = \"api\""), "{f:?}");
    let f = branch(&rules, true, false);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].level, Level::Ok);
    assert!(
        f[0].fact
            .contains("main requires: 1 review; signed commits"),
        "{f:?}"
    );
}

#[test]
fn the_exit_code_is_the_worst_finding_and_the_text_gives_each_fix() {
    let ok = Finding::ok("ssm", "/p/defaults", "readable");
    let warn = Finding::new(
        Level::Warning,
        "ecr",
        "api",
        "tags are MUTABLE",
        "pin digests",
    );
    assert_eq!(exit_code(&[]), 0);
    assert_eq!(exit_code(std::slice::from_ref(&ok)), 0);
    assert_eq!(exit_code(&[ok.clone(), warn.clone()]), 1);
    let err = Finding::new(
        Level::Error,
        "argocd",
        "api-dev",
        "no such application",
        "check it",
    );
    assert_eq!(exit_code(&[warn.clone(), err]), 2);
    let t = text(&[ok, warn]);
    assert_eq!(
        t,
        "ok      ssm     /p/defaults: readable\nwarning ecr     api: tags are MUTABLE\n                fix: pin digests\n\n1 ok, 1 warning(s), 0 error(s)\n"
    );
}

#[test]
fn a_token_without_write_and_an_app_missing_a_permission_are_errors_naming_the_grant() {
    assert_eq!(token_access("o/r", "bot", "write").level, Level::Ok);
    let f = token_access("o/r", "bot", "read");
    assert_eq!(f.level, Level::Error);
    assert!(f.fact.contains("'read'"), "{f:?}");
    let mut granted: std::collections::BTreeMap<String, String> = [
        ("contents", "write"),
        ("pull_requests", "write"),
        ("issues", "write"),
        ("checks", "write"),
        ("statuses", "write"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(app_access("o/r", &granted, false)[0].level, Level::Ok);
    let f = app_access("o/r", &granted, true);
    assert_eq!(f.len(), 1);
    assert!(f[0].fact.contains("members: none"), "{f:?}");
    granted.insert("checks".into(), "read".into());
    let f = app_access("o/r", &granted, false);
    assert_eq!(f[0].level, Level::Error);
    assert!(f[0].fix.contains("checks: write"), "{f:?}");
}

fn facts() -> AppFacts {
    AppFacts {
        subject: "api/dev".into(),
        name: "api-dev".into(),
        project: "default".into(),
        source: crate::domain::discover::AppSource::Ours {
            path: "apps/api/overlays/dev".into(),
            revision: "main".into(),
            value_files: vec![],
            recurse: false,
        },
        files: vec!["apps/api/overlays/dev/kustomization.yaml".into()],
        branch: "main".into(),
        images_listed: true,
        automated: true,
        may_sync: Ok(true),
        policy_syncs: false,
    }
}

#[test]
fn an_application_that_renders_the_files_and_may_sync_is_ok() {
    let f = application(&facts(), "salon/gitops");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].level, Level::Ok);
    assert!(
        f[0].fact.contains("may get and sync it (automated sync)"),
        "{f:?}"
    );
}

#[test]
fn a_token_that_may_not_sync_matters_only_where_tugboat_must_sync() {
    let mut f = facts();
    f.may_sync = Ok(false);
    assert_eq!(application(&f, "o/r")[0].level, Level::Ok);
    f.policy_syncs = true;
    let out = application(&f, "o/r");
    assert_eq!(out[0].level, Level::Error);
    assert!(
        out[0].fix.contains("`applications, sync, default/api-dev`"),
        "{out:?}"
    );
    f.policy_syncs = false;
    f.automated = false;
    assert!(
        application(&f, "o/r")[0]
            .fact
            .contains("does not sync by itself")
    );
}

#[test]
fn another_repository_another_revision_a_file_outside_and_no_images_are_each_said() {
    let mut f = facts();
    f.source = crate::domain::discover::AppSource::Elsewhere {
        repo_url: "https://charts.example.com".into(),
    };
    assert_eq!(application(&f, "o/r")[0].level, Level::Error);
    let mut f = facts();
    f.branch = "release".into();
    f.files.push("apps/api/base/deployment.yaml".into());
    f.images_listed = false;
    let levels: Vec<Level> = application(&f, "o/r").iter().map(|x| x.level).collect();
    assert_eq!(
        levels,
        vec![Level::Error, Level::Warning, Level::Warning, Level::Ok]
    );
}

#[test]
fn a_queue_policy_lets_eventbridge_send_only_by_an_allow_of_sendmessage_to_its_principal() {
    // As manifests/aws/events.cfn.yaml writes it.
    let cfn = r#"{"Version":"2012-10-17","Statement":[{"Sid":"EventBridgeRulesOfThisStackSend",
        "Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},"Action":"sqs:SendMessage",
        "Resource":"arn:aws:sqs:eu-north-1:123456789012:tugboat-events",
        "Condition":{"ArnEquals":{"aws:SourceArn":["arn:aws:events:eu-north-1:123456789012:rule/r"]}}}]}"#;
    let ok = queue_policy("q", Some(cfn));
    assert_eq!(ok.level, Level::Ok, "{ok:?}");
    assert!(ok.fact.contains("'EventBridgeRulesOfThisStackSend'"));
    // One statement as an object, a list of services, any case of the action, a wildcard.
    for allowed in [
        r#"{"Statement":{"Effect":"Allow","Principal":{"Service":["sns.amazonaws.com","events.amazonaws.com"]},"Action":["SQS:SendMessage"]}}"#,
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"sqs:*"}]}"#,
        r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"*"}]}"#,
    ] {
        assert_eq!(
            queue_policy("q", Some(allowed)).level,
            Level::Ok,
            "{allowed}"
        );
    }
    for (refused, says) in [
        (None, "no access policy"),
        (Some(""), "no access policy"),
        (Some("{"), "not JSON"),
        (
            Some(r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"sqs:SendMessage"}]}"#),
            "no statement",
        ),
        (
            Some(
                r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"sns.amazonaws.com"},"Action":"sqs:SendMessage"}]}"#,
            ),
            "no statement",
        ),
        (
            Some(
                r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},"Action":"sqs:ReceiveMessage"}]}"#,
            ),
            "no statement",
        ),
        (Some(r#"{"Statement":"x"}"#), "no statement"),
    ] {
        let f = queue_policy("q", refused);
        assert_eq!(f.level, Level::Warning, "{refused:?}");
        assert!(f.fact.contains(says), "{refused:?}: {}", f.fact);
        assert!(f.fix.contains("EventsQueuePolicy"));
    }
}

#[test]
fn a_sync_permission_that_could_not_be_asked_matters_only_where_tugboat_syncs() {
    let mut f = facts();
    f.may_sync = Err("answered 'text/html', not gRPC-Web".into());
    f.automated = true;
    f.policy_syncs = false;
    let last = application(&f, "o/r").pop().unwrap();
    assert_eq!(last.level, Level::Ok, "{last:?}");
    f.automated = false;
    let last = application(&f, "o/r").pop().unwrap();
    assert_eq!(last.level, Level::Warning, "{last:?}");
    assert!(last.fact.contains("not gRPC-Web"), "{last:?}");
    assert!(
        last.fix
            .contains("argocd account can-i sync applications default/api-dev"),
        "{last:?}"
    );
}
