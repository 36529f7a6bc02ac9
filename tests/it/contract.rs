//! The stand-ins and tugboat, held to the official API descriptions: tugboat's GitHub and
//! Argo CD traffic goes through Prism proxies (`prism proxy --errors`), which check every
//! request tugboat sends and every response the stand-in returns against GitHub's OpenAPI
//! description (npm `@octokit/openapi`) and Argo CD's swagger
//! (`../shared/specs/argocd-v3.5.1-swagger.json`). A violation is a 500 from the proxy (the
//! scenario fails) and a line in its log (listed in the failure).
//!
//! The test command installs Prism and the GitHub description (`npm ci`); CI provides the Argo
//! CD swagger beside the clone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::row;
use tugboat::domain::deploy::Evidence;
use tugboat::domain::plan::Decision;
use tugboat::engine::rescan::{IssueAction, Scope};
use tugboat::engine::{Action, Mode, Verification};
use tugboat_sandbox::{self as sandbox, Options, SeedFinding, app_name};

/// A running `prism proxy --errors`, killed on drop.
struct Prism {
    child: tokio::process::Child,
    url: String,
    log: PathBuf,
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Prism {
    /// Start Prism on a free port. The port is picked free, but Prism binds it only after it
    /// has read the description (seconds, for GitHub's), and the tests running meanwhile may
    /// take it: then it is started again on another.
    async fn start(spec: &Path, upstream: &str, log: PathBuf) -> Self {
        for _ in 0..5 {
            match Self::start_once(spec, upstream, &log).await {
                Ok(prism) => return prism,
                Err(text) if text.contains("EADDRINUSE") => {}
                Err(text) => panic!("prism did not start:\n{text}"),
            }
        }
        panic!("prism found no free port in five tries");
    }

    async fn start_once(spec: &Path, upstream: &str, log: &Path) -> Result<Self, String> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let bin = root.join("node_modules/.bin/prism");
        assert!(
            bin.is_file(),
            "{} is missing: run the test command (scripts/test), which runs `npm ci`",
            bin.display()
        );
        assert!(spec.is_file(), "{} is missing", spec.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = std::fs::File::create(log).unwrap();
        let child = tokio::process::Command::new(bin)
            .args(["proxy", "--errors", "--host", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .arg(spec)
            .arg(upstream)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let prism = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log: log.to_owned(),
        };
        // Prism reads the description first (the GitHub one takes seconds; allow two minutes
        // on a slow machine).
        for _ in 0..1200 {
            let text = prism.text();
            if text.contains("Prism is listening") {
                return Ok(prism);
            }
            if text.contains("EADDRINUSE") {
                return Err(text);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(prism.text())
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every error Prism logged (a request or response against the description). Warnings
    /// are not counted: the one seen is a 304 to a conditional request, which GitHub sends
    /// but its description does not list.
    fn violations(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains("✖"))
            .map(str::to_owned)
            .collect()
    }

    /// How many requests went through.
    fn requests(&self) -> usize {
        self.text()
            .lines()
            .filter(|l| l.contains("Request received"))
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tugboats_github_and_argo_cd_traffic_matches_the_official_api_descriptions() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let argo_spec = root.join("../shared/specs/argocd-v3.5.1-swagger.json");
    let sb = crate::common::start(Options::default()).await;
    let logs = tempfile::tempdir().unwrap();
    let gh = Prism::start(
        &root.join("node_modules/@octokit/openapi/generated/api.github.com.json"),
        &sb.github_url,
        logs.path().join("github.log"),
    )
    .await;
    let argo = Prism::start(&argo_spec, &sb.argocd_url, logs.path().join("argocd.log")).await;

    // tugboat talks to both through the proxies; git still goes to the stand-in directly.
    let work = tempfile::tempdir().unwrap();
    let toml = sb
        .config_toml(&work.path().join("w"))
        .replace(
            &format!("api_url = \"{}\"", sb.github_url),
            &format!("api_url = \"{}\"", gh.url),
        )
        .replace(
            &format!("url = \"{}\"", sb.argocd_url),
            &format!("url = \"{}\"", argo.url),
        );
    assert!(toml.contains(&gh.url) && toml.contains(&argo.url));
    let engine = crate::common::engine_from(&sb, &toml, &Default::default()).await;

    // A scenario that uses every GitHub and Argo CD operation tugboat calls.
    crate::common::approver(&sb, "alice");
    sb.aws.put_parameter(
        "/salon/promotion/services/service_management",
        "environments:\n  dev:\n    rollback: auto\n",
        "String",
    );
    sb.aws.put_parameter(
        "/salon/promotion/services/staff_management",
        "environments:\n  dev:\n    sync: true\n",
        "String",
    );
    sb.argocd
        .set_automated(&app_name("staff_management", "dev"), false);
    sb.aws.push("user_service", "1.1.0", "COMPLETE", vec![]);
    sb.aws.push("staff_management", "1.1.0", "COMPLETE", vec![]);
    sb.aws
        .push("service_management", "1.1.0", "COMPLETE", vec![]);
    sb.argocd.mark_crashing(&format!(
        "{}:1.1.0",
        sandbox::image_of("service_management")
    ));
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let failures: Vec<String> = r
        .iter()
        .filter_map(|x| match &x.action {
            Action::Failed { error } => Some(format!("{}/{}: {error}", x.service, x.environment)),
            _ => None,
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}\n{:#?}", gh.violations());
    for svc in ["user_service", "staff_management", "service_management"] {
        let action = &row(&r, svc, "dev").action;
        let healthy = |v: &Verification| matches!(v, Verification::Healthy { .. });
        assert!(
            match action {
                Action::Merged { verification, .. } => healthy(verification),
                Action::RolledBack { verification, .. } => healthy(verification),
                _ => false,
            },
            "{svc}: {action:?}\n{:#?}\n{:#?}",
            gh.violations(),
            argo.violations()
        );
    }
    assert!(matches!(
        row(&r, "service_management", "dev").action,
        Action::RolledBack { .. }
    ));

    // prod: a PR awaiting approval; a hold, an approval by comment and one by review.
    let r = engine.cycle(Mode::Apply).await.unwrap();
    let Action::AwaitingApproval { number, .. } = row(&r, "user_service", "prod").action else {
        panic!(
            "{:?}\n{:#?}",
            row(&r, "user_service", "prod"),
            gh.violations()
        )
    };
    sb.advance(Duration::from_secs(1)); // comments are stamped to the second
    sb.github.comment_as(number, "alice", "/help").unwrap();
    sb.github.comment_as(number, "alice", "/approve").unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(
            row(&r, "user_service", "prod").action,
            Action::Merged { .. }
        ),
        "{:?}\n{:#?}",
        row(&r, "user_service", "prod"),
        gh.violations()
    );
    // An approver rolls prod back; the bad digest blocks.
    sb.github.comment_as(number, "alice", "/rollback").unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(
            row(&r, "user_service", "prod").action,
            Action::RolledBack { .. }
        ),
        "{:?}\n{:#?}",
        row(&r, "user_service", "prod"),
        gh.violations()
    );
    let r = engine.cycle(Mode::Plan).await.unwrap();
    assert!(matches!(
        row(&r, "user_service", "prod").decision,
        Decision::Blocked { .. }
    ));

    // The rescan: a new CRITICAL in a deployed image opens an issue; its fix closes it.
    let shipped = sb
        .aws
        .digest("appointment_service", "1.0.0")
        .expect("seeded");
    let cve = SeedFinding {
        id: "CVE-2026-0001".into(),
        severity: "CRITICAL".into(),
        package: Some("openssl".into()),
        status: None,
    };
    for findings in [vec![cve], vec![]] {
        sb.aws
            .set_scan("appointment_service", &shipped, "COMPLETE", findings);
        let report = engine.rescan(&Scope::default()).await.unwrap();
        let issue = &report
            .services
            .iter()
            .find(|s| s.service == "appointment_service")
            .unwrap()
            .issue;
        assert!(
            matches!(
                issue,
                IssueAction::Opened { .. } | IssueAction::Closed { .. }
            ),
            "{issue:?}\n{:#?}",
            gh.violations()
        );
    }

    // A real application's quirks answer in Argo CD's schema too: the manifests stop
    // rendering (a `ComparisonError` condition, sync status `Unknown`), the summary lists no
    // image, and the verification fails in Argo CD's words at its first look.
    let app = app_name("user_service", "dev");
    for quirk in ["comparison-error", "no-summary-images"] {
        sb.argocd
            .set_quirk(&app, quirk, Duration::from_secs(600))
            .unwrap();
    }
    sb.aws.push("user_service", "1.2.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(
            &row(&r, "user_service", "dev").action,
            Action::Merged { verification: Verification::Failed { reason }, .. }
                if reason.contains("ComparisonError")
        ),
        "{:?}\n{:#?}",
        row(&r, "user_service", "dev"),
        argo.violations()
    );

    // A PreSync hook runs before the apply (the operation's `syncResult` while it runs),
    // and the summary lists no image: the resource tree is read, in Argo CD's schema.
    let app = app_name("appointment_service", "dev");
    sb.argocd
        .set_quirk(&app, "presync-hook", Duration::from_secs(1))
        .unwrap();
    sb.argocd
        .set_quirk(&app, "no-summary-images", Duration::ZERO)
        .unwrap();
    sb.aws
        .push("appointment_service", "1.3.0", "COMPLETE", vec![]);
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(
            &row(&r, "appointment_service", "dev").action,
            Action::Merged {
                verification: Verification::Healthy {
                    evidence: Some(Evidence::ResourceTree),
                    ..
                },
                ..
            }
        ),
        "{:?}\n{:#?}",
        row(&r, "appointment_service", "dev"),
        argo.violations()
    );
    assert!(sb.argocd.calls().contains_key("GET resource-tree"));

    // Who pushed a head, from the repository's activity (asked when a head tugboat keeps
    // has no report of its own on it).
    {
        use tugboat::ports::Checks as _;
        let pushed = sb
            .github
            .force_push_as(
                "alice",
                "notes",
                "main",
                ("notes.txt", "hi\n"),
                sb.github.now(),
            )
            .unwrap();
        let github = crate::common::github_at(&sb, &gh.url).await;
        let record = github.pushed_by("notes", &pushed).await.unwrap().unwrap();
        assert_eq!(record.actor.as_deref(), Some("alice"));
    }

    // `tugboat init` lists the applications (ApplicationService_List).
    {
        let mut cmd = sb.init_command(&work.path().join("init"));
        cmd.args.argocd = Some(argo.url.clone());
        let init = tugboat::init::run(&cmd.args, cmd.env).await.unwrap();
        assert_eq!(
            init.discovery.services.len(),
            6,
            "{:#?}",
            init.discovery.unplaced
        );
        assert!(sb.argocd.calls().contains_key("GET applications"));
    }

    let gh_violations = gh.violations();
    let argo_violations = argo.violations();
    assert!(
        gh_violations.is_empty() && argo_violations.is_empty(),
        "GitHub:\n{}\nArgo CD:\n{}",
        gh_violations.join("\n"),
        argo_violations.join("\n")
    );
    eprintln!(
        "prism checked {} GitHub and {} Argo CD requests and their answers",
        gh.requests(),
        argo.requests()
    );
    assert!(gh.requests() > 50, "{}", gh.requests());
    assert!(argo.requests() > 10, "{}", argo.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_a_github_app_its_tokens_check_runs_and_api_commits_match_githubs_description() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sb = crate::common::start(Options::default()).await;
    // A protected main: the rules tugboat reads (a ruleset's and classic protection's), and
    // GitHub Actions' check runs, all through Prism.
    sb.github.protect(sandbox::Protection {
        signed_commits: true,
        required_checks: vec!["ci".into()],
        classic_checks: vec!["ci".into()],
        ci: vec![sandbox::CiJob {
            name: "ci".into(),
            after: Duration::ZERO,
            takes: Duration::ZERO,
            conclusion: "success".into(),
        }],
        ..Default::default()
    });
    let logs = tempfile::tempdir().unwrap();
    let gh = Prism::start(
        &root.join("node_modules/@octokit/openapi/generated/api.github.com.json"),
        &sb.github_url,
        logs.path().join("github.log"),
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let toml = sb.config_toml_as_app(&work.path().join("w")).replace(
        &format!("api_url = \"{}\"", sb.github_url),
        &format!("api_url = \"{}\"", gh.url),
    );
    assert!(toml.contains(&gh.url) && toml.contains("[github.app]"));
    // Connecting: the installation, the App, an installation token.
    let engine = crate::common::engine_from(&sb, &toml, &Default::default()).await;
    crate::common::approver(&sb, "alice");
    sb.aws.put_parameter(
        "/salon/promotion/services/user_service",
        "environments:\n  dev:\n    auto_merge: false\n",
        "String",
    );

    // A PR (a commit through the Git Data API, a gate check run), then a newer tag moves its
    // branch (a ref update), an approval merges it (check runs read), the deploy is a check.
    let mut number = 0;
    for tag in ["1.1.0", "1.2.0"] {
        sb.aws.push("user_service", tag, "COMPLETE", vec![]);
        sb.github.app.expire_tokens(); // and a renewal on the way
        let r = engine.cycle(Mode::Apply).await.unwrap();
        let Action::AwaitingApproval { number: n, .. } = row(&r, "user_service", "dev").action
        else {
            panic!(
                "{:?}\n{:#?}",
                row(&r, "user_service", "dev"),
                gh.violations()
            )
        };
        number = n;
    }
    sb.advance(Duration::from_secs(1)); // comments are stamped to the second
    sb.github.comment_as(number, "alice", "/approve").unwrap();
    let r = engine.cycle(Mode::Apply).await.unwrap();
    assert!(
        matches!(
            &row(&r, "user_service", "dev").action,
            Action::Merged {
                verification: Verification::Healthy { .. },
                ..
            }
        ),
        "{:?}\n{:#?}",
        row(&r, "user_service", "dev"),
        gh.violations()
    );

    let calls = sb.github.calls();
    for op in [
        "GET installation",
        "GET app",
        "POST access_tokens",
        "POST git/blobs",
        "POST git/trees",
        "POST git/commits",
        "POST git/refs",
        "PATCH git/refs",
        "POST check-runs",
        "GET check-runs",
        "GET rules",
        "GET branch",
    ] {
        assert!(
            calls.get(op).is_some_and(|n| *n > 0),
            "{op} not exercised: {calls:?}"
        );
    }
    let violations = gh.violations();
    assert!(violations.is_empty(), "GitHub:\n{}", violations.join("\n"));
    eprintln!(
        "prism checked {} GitHub requests of an App and their answers",
        gh.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_elections_lease_traffic_matches_kubernetes_own_description() {
    use crate::common::election::{QUICK, candidate, stand_in, until_leading};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let spec = root.join("../shared/specs/kubernetes-coordination.k8s.io-v1-openapi.json");
    let kube = stand_in();
    let (url, _server) = kube.start().await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let prism = Prism::start(&spec, &url, logs.path().join("kube.log")).await;
    // Every call leader election makes: create, read, renew, release, and a takeover.
    let a = candidate(&prism.url, "tugboat-a", QUICK).await;
    until_leading(&a).await;
    let b = candidate(&prism.url, "tugboat-b", QUICK).await;
    tokio::time::sleep(QUICK.retry_period * 5).await;
    a.stop.send(true).unwrap();
    until_leading(&b).await;
    b.stop.send(true).unwrap();
    let _ = b.task.await;
    assert_eq!(kube.holder("tugboat", "tugboat"), None, "released");
    let calls = kube.calls();
    assert!(
        calls.get("POST") >= Some(&1)
            && calls.get("PUT") >= Some(&3)
            && calls.get("GET") >= Some(&5),
        "{calls:?}"
    );
    assert!(prism.requests() >= 9, "{}", prism.text());
    assert_eq!(prism.violations(), Vec::<String>::new(), "{}", prism.text());
}
