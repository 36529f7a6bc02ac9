//! The shipped examples stay true to the code: the worked policies in `policies/` and their
//! JSON Schema, the configs of the Helm chart and the kustomize base, and the IAM policy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use tugboat::domain::policy::{PolicyDocument, RollbackMode, parse_document, resolve};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The salon examples as SSM would hold them: `/salon/promotion/<relative path>`.
fn salon_documents() -> Vec<PolicyDocument> {
    let dir = root().join("policies/salon");
    let mut files = vec![dir.join("defaults.yaml")];
    for e in std::fs::read_dir(dir.join("services")).unwrap() {
        files.push(e.unwrap().path());
    }
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(&dir).unwrap().with_extension("");
            PolicyDocument {
                name: format!("/salon/promotion/{}", rel.display()),
                version: 1,
                body: std::fs::read_to_string(&f).unwrap(),
            }
        })
        .collect()
}

#[test]
fn the_salon_example_resolves_for_all_six_services_in_dev_staging_and_prod() {
    let docs = salon_documents();
    let envs: Vec<String> = ["dev", "staging", "prod"].map(String::from).to_vec();
    let services = [
        "user_service",
        "appointment_service",
        "staff_management",
        "service_management",
        "reports_analytics",
        "notification_service",
    ];
    for svc in services {
        let p = resolve(&docs, "/salon/promotion/", svc, &envs)
            .unwrap_or_else(|e| panic!("{svc}: {e}"));
        let prod = &p.environments["prod"];
        assert!(!prod.auto_merge, "{svc}: prod needs approval");
        assert_eq!(prod.rollback, RollbackMode::Manual);
        assert!(prod.pin_digest);
        assert!(p.environments["dev"].auto_merge);
    }
    let user = resolve(&docs, "/salon/promotion/", "user_service", &envs).unwrap();
    assert_eq!(user.environments["prod"].approvals, 2);
    assert_eq!(
        user.sources
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        [
            "/salon/promotion/defaults",
            "/salon/promotion/services/user_service"
        ]
    );
}

fn schema() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("policies/schema.json")).unwrap())
        .unwrap()
}

/// The fields the parser accepts at a level, read from its unknown-field error.
fn parser_fields(doc_with_bogus_field: &str) -> BTreeSet<String> {
    let e = parse_document(&PolicyDocument {
        name: "probe".into(),
        version: 1,
        body: doc_with_bogus_field.into(),
    })
    .unwrap_err();
    let list = e
        .message
        .split("expected one of ")
        .nth(1)
        .or_else(|| e.message.split("expected ").nth(1))
        .unwrap_or_else(|| panic!("{e}"));
    let list = list.split(';').next().unwrap();
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn schema_fields(s: &Value, def: &str) -> BTreeSet<String> {
    let node = if def.is_empty() { s } else { &s["$defs"][def] };
    node["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn the_schema_names_exactly_the_fields_the_parser_accepts_at_every_level() {
    let s = schema();
    let levels = [
        ("", "zz_bogus: 1"),
        ("environment", "environments: {dev: {zz_bogus: 1}}"),
        ("tag", "environments: {dev: {tag: {zz_bogus: 1}}}"),
        ("scan", "environments: {dev: {scan: {zz_bogus: 1}}}"),
        (
            "ignore",
            "environments: {dev: {scan: {ignore: [{id: a, reason: b, expires: 2026-01-01, zz_bogus: 1}]}}}",
        ),
        (
            "window",
            "environments: {dev: {windows: [{days: [MON], hours: '09:00-10:00', zz_bogus: 1}]}}",
        ),
        (
            "signatures",
            "environments: {dev: {signatures: {zz_bogus: 1}}}",
        ),
        (
            "key_source",
            "environments: {dev: {signatures: {keys: [{zz_bogus: /a}]}}}",
        ),
        (
            "keyless_signer",
            "environments: {dev: {signatures: {keyless: [{issuer: 'https://i', subject: s, zz_bogus: 1}]}}}",
        ),
    ];
    for (def, doc) in levels {
        assert_eq!(schema_fields(&s, def), parser_fields(doc), "level '{def}'");
    }
    let enums = [
        (
            "tag",
            "ordering",
            "environments: {dev: {tag: {ordering: zz_bogus}}}",
        ),
        (
            "environment",
            "rollback",
            "environments: {dev: {rollback: zz_bogus}}",
        ),
    ];
    for (def, property, doc) in enums {
        let listed: BTreeSet<String> = s["$defs"][def]["properties"][property]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, parser_fields(doc), "{def}.{property}");
    }
}

#[test]
fn policy_check_accepts_the_examples_and_rejects_a_bad_document_with_a_suggestion() {
    let dir = root().join("policies/salon");
    let mut args: Vec<String> = vec!["policy".into(), "check".into()];
    args.push(dir.join("defaults.yaml").display().to_string());
    for e in std::fs::read_dir(dir.join("services")).unwrap() {
        args.push(e.unwrap().path().display().to_string());
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tugboat"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "environments:\n  prod:\n    aprovals: 2\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tugboat"))
        .args(["policy", "check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("environments.prod.aprovals: unknown field `aprovals`")
            && text.contains("did you mean `approvals`?"),
        "{text}"
    );
}

#[test]
fn the_configs_shipped_with_the_chart_and_the_kustomize_base_parse() {
    #[derive(serde::Deserialize)]
    struct Values {
        config: String,
    }
    let values: Values = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("helm/tugboat/values.yaml")).unwrap(),
    )
    .unwrap();
    let kustomize = std::fs::read_to_string(root().join("manifests/tugboat.toml")).unwrap();
    for (name, text) in [
        ("values.yaml config", values.config),
        ("manifests/tugboat.toml", kustomize),
    ] {
        let c = tugboat::config::Config::parse(&text, name, std::iter::empty())
            .unwrap_or_else(|e| panic!("{e}"));
        // The container mounts the clone here and the Service targets this port.
        assert_eq!(c.engine.workdir, Path::new("/var/lib/tugboat"), "{name}");
        assert_eq!(c.server.listen.port(), 8080, "{name}");
        assert!(c.schedules.iter().any(|s| s.name == "rescan"), "{name}");
    }
}

#[test]
fn the_iam_policy_grants_exactly_the_aws_operations_the_adapters_call() {
    let policy: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("manifests/iam-policy.json")).unwrap(),
    )
    .unwrap();
    let granted: BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    // Every SDK operation the AWS adapters call (`client.<operation>()`, however the chain is
    // wrapped), as IAM spells it.
    let mut called = BTreeSet::new();
    for (file, service) in [
        ("ecr", "ecr"),
        ("ssm", "ssm"),
        ("sqs", "sqs"),
        ("eventbridge", "events"),
        ("oci", "ecr"),
    ] {
        let src =
            std::fs::read_to_string(root().join(format!("crates/daemon/src/adapters/{file}.rs")))
                .unwrap();
        let joined: String = src.split_whitespace().collect();
        for (at, _) in joined.match_indices("client.") {
            let rest = &joined[at + "client.".len()..];
            let op: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if op.is_empty() || op == "clone" || !rest[op.len()..].starts_with("()") {
                continue;
            }
            let camel: String = op
                .split('_')
                .map(|p| p[..1].to_uppercase() + &p[1..])
                .collect();
            // IAM has no action of its own for a batch delete: it is DeleteMessage.
            let camel = camel.strip_suffix("Batch").unwrap_or(&camel).to_owned();
            called.insert(format!("{service}:{camel}"));
        }
    }
    // The registry API (OCI distribution) the signature adapter reads, as IAM names what
    // each request needs (ECR user guide, "Private repository policies": a pull is
    // `ecr:BatchGetImage` for the manifest and `ecr:GetDownloadUrlForLayer` for a blob).
    let oci = std::fs::read_to_string(root().join("crates/daemon/src/adapters/oci.rs")).unwrap();
    for (path, action) in [
        ("/manifests/", "ecr:BatchGetImage"),
        ("/blobs/", "ecr:GetDownloadUrlForLayer"),
    ] {
        if oci.contains(&format!("/v2/{{repository}}{path}")) {
            called.insert(action.to_owned());
        }
    }
    assert!(called.contains("ecr:GetAuthorizationToken"), "{called:?}");
    assert!(called.contains("ecr:GetDownloadUrlForLayer"), "{called:?}");
    assert!(called.contains("ecr:StartImageScan"), "{called:?}");
    assert!(called.contains("sqs:DeleteMessage"), "{called:?}");
    assert!(called.contains("events:DescribeRule"), "{called:?}");
    called.insert("kms:Decrypt".to_owned()); // SecureString parameters
    assert_eq!(granted, called, "least privilege: no more, no less");
}
