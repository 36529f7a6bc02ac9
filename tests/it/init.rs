//! `tugboat init` against the sandbox, run as a new user would: the configuration it writes
//! plans exactly as the sandbox's own printed configuration does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::{Command, Output};

use tugboat_sandbox::{Options, Sandbox, WithoutHarnessVars};

fn tugboat(args: &[String], env: &[(String, String)], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tugboat"))
        .without_harness_vars()
        .current_dir(dir)
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .unwrap()
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// `plan --output json`'s rows, in (service, environment) order.
fn plan(config: &Path, dir: &Path) -> Vec<serde_json::Value> {
    let args = [
        "plan",
        "--config",
        &config.display().to_string(),
        "--output",
        "json",
    ]
    .map(String::from);
    let out = tugboat(&args, &[], dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rows = plan["rows"].as_array().unwrap().clone();
    rows.sort_by_key(|r| (r["service"].to_string(), r["environment"].to_string()));
    rows
}

#[test]
fn init_writes_a_configuration_that_plans_exactly_as_the_sandboxs_own() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sb = rt.block_on(Sandbox::start(Options::default())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cmd = sb.init_command(&dir.path().join("work-init"));
    let (args, env) = (cmd.flags(), cmd.env);

    let out = tugboat(&args, &env, dir.path());
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let said = text(&out.stdout);
    assert!(
        said.starts_with("Read 12 Argo CD application(s) in "),
        "{said}"
    );
    assert!(
        said.contains("6 service(s), environments in order dev → prod"),
        "{said}"
    );
    assert!(
        said.contains("order: 'dev' is a development name"),
        "{said}"
    );
    assert!(said.contains("reports-analytics-prod"), "{said}");
    assert!(!said.contains("Not placed"), "{said}");
    let written = std::fs::read_to_string(dir.path().join("tugboat.toml")).unwrap();
    assert!(
        written.contains("# The AWS region of the registry"),
        "{written}"
    );
    assert!(
        written.contains("files = [\"apps/reports_analytics/values-prod.yaml\"]"),
        "{written}"
    );
    // It wrote nothing remote: no PR or issue, Argo CD only read.
    assert!(sb.github.pulls().is_empty() && sb.github.issues().is_empty());
    let argo: Vec<String> = sb.argocd.calls().into_keys().collect();
    assert!(argo.iter().all(|c| c.starts_with("GET ")), "{argo:?}");
    let policy = std::fs::read_to_string(dir.path().join("tugboat-policy.yaml")).unwrap();
    assert!(policy.contains("/salon/promotion/defaults"), "{policy}");

    // The sandbox's own configuration, beside it.
    let own = dir.path().join("sandbox.toml");
    std::fs::write(&own, sb.config_toml(&dir.path().join("work-own"))).unwrap();
    let (mine, theirs) = (
        plan(&dir.path().join("tugboat.toml"), dir.path()),
        plan(&own, dir.path()),
    );
    assert_eq!(mine.len(), 12);
    assert_eq!(mine, theirs);

    // A second run keeps what is there unless told; a dry run prints and writes nothing.
    let again = tugboat(&args, &env, dir.path());
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("tugboat.toml exists; give --force"));
    let mut dry = args.clone();
    dry.push("--dry-run".into());
    std::fs::remove_file(dir.path().join("tugboat-policy.yaml")).unwrap();
    let out = tugboat(&dry, &env, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("--- tugboat-policy.yaml ---\n# tugboat's starting policy"));
    assert!(!dir.path().join("tugboat-policy.yaml").exists());
}

#[test]
fn init_with_an_argo_cd_token_that_may_see_nothing_writes_nothing_and_says_why() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sb = rt.block_on(Sandbox::start(Options::default())).unwrap();
    sb.argocd.deny_token(Some(&sb.argocd_token));
    let dir = tempfile::tempdir().unwrap();
    let cmd = sb.init_command(&dir.path().join("work"));
    let (args, env) = (cmd.flags(), cmd.env);
    let out = tugboat(&args, &env, dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("Read 0 Argo CD application(s)"), "{said}");
    assert!(said.contains("may not get any application"), "{said}");
    assert!(
        said.contains("No service found: nothing written."),
        "{said}"
    );
    assert!(!dir.path().join("tugboat.toml").exists());
}
