//! The worked policy examples in `policies/` and the JSON Schema stay true to the parser.

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
