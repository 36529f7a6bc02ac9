//! The ECR and SSM adapters, through aws-sdk-ecr / aws-sdk-ssm, against moto (a third-party
//! AWS emulator) and against the sandbox: the same checks must pass on both.
//!
//! moto is started from `$TUGBOAT_MOTO_SERVER`, else `.venv/bin/moto_server` (the README's
//! test command installs it there).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ecr::types::{
    ImageIdentifier, RegistryScanningRule, ScanFrequency, ScanningRepositoryFilter,
    ScanningRepositoryFilterType,
};
use serde_json::json;
use tugboat::adapters::{aws::sdk_config, ecr::Ecr, ssm::Ssm};
use tugboat::config::AwsConfig;
use tugboat::domain::gate::{self, GateDecision, ScanPolicy, ScanStatus};
use tugboat::domain::image::Digest;
use tugboat::ports::{ParameterStore, Registry, ScanStart, ScanType};
use tugboat::telemetry::{ApiMetrics, count};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> (Moto, String) {
    let bin = std::env::var("TUGBOAT_MOTO_SERVER").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/moto_server").to_owned()
    });
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start moto_server at {bin} ({e}); run the README's test command, which installs it"));
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not start within 30s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (Moto(child), url)
}

async fn sdk(url: &str) -> aws_config::SdkConfig {
    sdk_config(&AwsConfig {
        region: "eu-north-1".into(),
        registry_id: None,
        endpoint_url: Some(url.into()),
        registry_url: None,
        test_credentials: true,
    })
    .await
}

const CLEAN: &str = "clean";
const CRITICAL: &str = "critical";
const IN_PROGRESS: &str = "in-progress";

/// What each emulator must be able to do for the shared checks.
trait Seed {
    async fn image(&self, repo: &str, tag: &str, scan: &str) -> String;
    async fn parameter(&self, name: &str, value: &str, secure: bool);
    /// How many DescribeImages pages of at most 1,000 the emulator sends for `images` images.
    fn describe_images_pages(&self, images: usize) -> u64;
    /// Switch the registry to enhanced (Inspector) scanning.
    async fn enhanced_scanning(&self);
}

struct MotoSeed {
    url: String,
    ecr: aws_sdk_ecr::Client,
    ssm: aws_sdk_ssm::Client,
}

impl Seed for MotoSeed {
    fn describe_images_pages(&self, _images: usize) -> u64 {
        1 // moto 5.2.1 ignores maxResults for DescribeImages and answers in one page
    }

    async fn enhanced_scanning(&self) {
        self.ecr
            .put_registry_scanning_configuration()
            .scan_type(aws_sdk_ecr::types::ScanType::Enhanced)
            .rules(
                RegistryScanningRule::builder()
                    .scan_frequency(ScanFrequency::ContinuousScan)
                    .repository_filters(
                        ScanningRepositoryFilter::builder()
                            .filter("*")
                            .filter_type(ScanningRepositoryFilterType::Wildcard)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }

    async fn image(&self, repo: &str, tag: &str, scan: &str) -> String {
        let _ = self
            .ecr
            .create_repository()
            .repository_name(repo)
            .send()
            .await;
        let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": {"digest": format!("sha256:{:0>64}", hex::encode(format!("{repo}:{tag}"))), "size": 1, "mediaType": "application/vnd.docker.container.image.v1+json"}, "layers": [{"digest": format!("sha256:{:0>64}", hex::encode(format!("{repo}{tag}"))), "size": 1, "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}]}).to_string();
        let out = self
            .ecr
            .put_image()
            .repository_name(repo)
            .image_tag(tag)
            .image_manifest(manifest)
            .send()
            .await
            .unwrap();
        let digest = out
            .image()
            .and_then(|i| i.image_id())
            .and_then(|i| i.image_digest())
            .unwrap()
            .to_owned();
        if scan == "none" {
            return digest;
        }
        // moto allows one scan per image per day, like ECR basic scanning: a second start is refused.
        if let Err(e) = self
            .ecr
            .start_image_scan()
            .repository_name(repo)
            .image_id(ImageIdentifier::builder().image_digest(&digest).build())
            .send()
            .await
        {
            assert_eq!(
                aws_sdk_ecr::error::ProvideErrorMetadata::code(&e),
                Some("LimitExceededException"),
                "{e:?}"
            );
        }
        let findings = if scan == CRITICAL {
            json!([{"name": "CVE-2026-0001", "severity": "CRITICAL", "uri": "https://example.com", "attributes": [{"key": "package_name", "value": "openssl"}]}])
        } else {
            json!([])
        };
        let counts = if scan == CRITICAL {
            json!({"CRITICAL": 1})
        } else {
            json!({})
        };
        let status = if scan == IN_PROGRESS {
            "IN_PROGRESS"
        } else {
            "COMPLETE"
        };
        let result = json!({"results": [{"registryId": "123456789012", "repositoryName": repo, "imageId": {"imageDigest": digest},
            "imageScanStatus": {"status": status, "description": "The scan was completed successfully."},
            "imageScanFindings": {"findings": findings, "findingSeverityCounts": counts}}], "region": "eu-north-1"});
        let r = reqwest::Client::new()
            .post(format!(
                "{}/moto-api/static/ecr/scan-finding-results",
                self.url
            ))
            .json(&result)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        digest
    }

    async fn parameter(&self, name: &str, value: &str, secure: bool) {
        let kind = if secure {
            aws_sdk_ssm::types::ParameterType::SecureString
        } else {
            aws_sdk_ssm::types::ParameterType::String
        };
        self.ssm
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(kind)
            .overwrite(true)
            .send()
            .await
            .unwrap();
    }
}

struct SandboxSeed(tugboat_sandbox::aws::Aws);

impl Seed for SandboxSeed {
    fn describe_images_pages(&self, images: usize) -> u64 {
        images.div_ceil(1_000) as u64
    }

    async fn enhanced_scanning(&self) {
        self.0.set_enhanced_scanning(true);
    }

    async fn image(&self, repo: &str, tag: &str, scan: &str) -> String {
        let findings = if scan == CRITICAL {
            vec![tugboat_sandbox::SeedFinding {
                id: "CVE-2026-0001".into(),
                severity: "CRITICAL".into(),
                package: Some("openssl".into()),
                status: None,
            }]
        } else {
            vec![]
        };
        // Unsigned, as moto's pushes are: the shared checks compare the two listings.
        self.0.push_unsigned(
            repo,
            tag,
            match scan {
                "none" => "NONE",
                IN_PROGRESS => "IN_PROGRESS",
                _ => "COMPLETE",
            },
            findings,
        )
    }

    async fn parameter(&self, name: &str, value: &str, secure: bool) {
        self.0
            .put_parameter(name, value, if secure { "SecureString" } else { "String" });
    }
}

/// The checks both emulators must pass through the real adapters.
async fn shared_checks(url: &str, seed: &impl Seed) {
    let sdk = sdk(url).await;
    let ecr = Ecr::new(&sdk, &ApiMetrics::default());
    let clean = seed.image("user_service", "1.0.0", CLEAN).await;
    let bad = seed.image("user_service", "1.1.0", CRITICAL).await;
    let unscanned = seed.image("user_service", "1.2.0", "none").await;

    let mut images = ecr.list_images(None, "user_service").await.unwrap();
    images.sort_by(|a, b| a.tags.cmp(&b.tags));
    let tags: Vec<String> = images
        .iter()
        .flat_map(|i| i.tags.iter().map(ToString::to_string))
        .collect();
    assert_eq!(tags, ["1.0.0", "1.1.0", "1.2.0"]);
    assert_eq!(images[0].digest.as_str(), clean);

    let today = chrono::Utc::now().date_naive();
    let r = ecr
        .scan_report(None, "user_service", &Digest::parse(&clean).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, ScanStatus::Complete);
    assert!(
        matches!(
            gate::gate(&r, &ScanPolicy::default(), today),
            GateDecision::Pass { .. }
        ),
        "{r:?}"
    );

    let r = ecr
        .scan_report(None, "user_service", &Digest::parse(&bad).unwrap())
        .await
        .unwrap();
    let GateDecision::Block { reasons, .. } = gate::gate(&r, &ScanPolicy::default(), today) else {
        panic!("{r:?}")
    };
    assert_eq!(
        reasons,
        ["1 CRITICAL finding(s) exceed the threshold of 0 (CVE-2026-0001)"]
    );
    assert_eq!(r.findings[0].package.as_deref(), Some("openssl"));

    let r = ecr
        .scan_report(None, "user_service", &Digest::parse(&unscanned).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, ScanStatus::NotFound);

    // A repository is created MUTABLE (ECR's default), and an image listed is pullable while
    // one the repository never had is gone (DescribeImages by digest: ImageNotFoundException).
    assert_eq!(
        ecr.tag_mutability(None, "user_service").await.unwrap(),
        "MUTABLE"
    );
    assert_eq!(
        ecr.pullable(None, "user_service", &Digest::parse(&clean).unwrap())
            .await
            .unwrap(),
        tugboat::ports::Pullable::Yes
    );
    let never = Digest::parse(&format!("sha256:{}", "e".repeat(64))).unwrap();
    assert_eq!(
        ecr.pullable(None, "user_service", &never).await.unwrap(),
        tugboat::ports::Pullable::Gone
    );

    // StartImageScan: one scan per image per day. The second start is "already scanned
    // today", an answer, not an error, and it is not retried.
    let api = ApiMetrics::default();
    let scanner = Ecr::new(&sdk, &api);
    let fresh = Digest::parse(&seed.image("user_service", "1.4.0", "none").await).unwrap();
    assert_eq!(
        scanner
            .start_scan(None, "user_service", &fresh)
            .await
            .unwrap(),
        ScanStart::Started
    );
    assert_eq!(
        scanner
            .start_scan(None, "user_service", &fresh)
            .await
            .unwrap(),
        ScanStart::AlreadyScannedToday
    );
    let starts = count(&api.snapshot(), "ecr", "StartImageScan");
    assert_eq!(
        (starts.calls, starts.retries),
        (2, 0),
        "two calls, no retry"
    );
    let gone = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
    let e = scanner
        .start_scan(None, "user_service", &gone)
        .await
        .unwrap_err();
    assert_eq!(e.kind, tugboat::ports::ErrorKind::NotFound, "{e}");

    // A scan still running is reported as such, not as clean or missing.
    let running = seed.image("user_service", "1.3.0", IN_PROGRESS).await;
    let r = ecr
        .scan_report(None, "user_service", &Digest::parse(&running).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, ScanStatus::InProgress, "{r:?}");

    // Many pages: 1,050 images need two DescribeImages pages of 1,000 (where the emulator
    // paginates); every image arrives and each page is one counted call.
    for i in 0..1_050 {
        seed.image("big_repo", &format!("1.0.{i}"), "none").await;
    }
    let api = ApiMetrics::default();
    let counted = Ecr::new(&sdk, &api);
    let before = api.snapshot();
    let images = counted.list_images(None, "big_repo").await.unwrap();
    assert_eq!(images.len(), 1_050);
    let calls = api.since(&before);
    let describe = count(&calls, "ecr", "DescribeImages");
    let pages = seed.describe_images_pages(1_050);
    assert_eq!((describe.calls, describe.errors), (pages, 0), "{calls:?}");

    let missing = counted.list_images(None, "no_such_repo").await.unwrap_err();
    let failed = api.since(&before);
    let describe = count(&failed, "ecr", "DescribeImages");
    assert_eq!(
        (describe.calls, describe.errors),
        (pages + 1, 1),
        "a missing repository is one failed call, not retried: {failed:?}"
    );
    assert_eq!(
        missing.kind,
        tugboat::ports::ErrorKind::NotFound,
        "{missing}"
    );

    // SSM: 23 documents need three pages of 10; a SecureString is decrypted.
    let ssm = Ssm::new(&sdk, &ApiMetrics::default());
    for i in 0..23 {
        seed.parameter(
            &format!("/t/promotion/services/svc{i:02}"),
            "environments: {}",
            false,
        )
        .await;
    }
    seed.parameter(
        "/t/promotion/defaults",
        "environments:\n  dev: {auto_merge: true}\n",
        false,
    )
    .await;
    seed.parameter("/t/other/ignored", "x", false).await;
    let docs = ssm.documents("/t/promotion/").await.unwrap();
    assert_eq!(docs.len(), 24);
    assert_eq!(docs[0].name, "/t/promotion/defaults");
    assert!(docs[0].version >= 1);
    seed.parameter("/t/secret/token", "s3cr3t-value", true)
        .await;
    assert_eq!(
        ssm.secret("/t/secret/token").await.unwrap().expose(),
        "s3cr3t-value"
    );
    let e = ssm.secret("/t/secret/nope").await.unwrap_err();
    assert_eq!(e.kind, tugboat::ports::ErrorKind::NotFound);

    // The registry's scanning decides whether a rescan starts scans.
    assert_eq!(ecr.scan_type().await.unwrap(), ScanType::Basic);
    seed.enhanced_scanning().await;
    assert_eq!(ecr.scan_type().await.unwrap(), ScanType::Enhanced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ecr_and_ssm_adapters_work_against_moto() {
    let (_moto, url) = start_moto();
    let sdk = sdk(&url).await;
    let seed = MotoSeed {
        url: url.clone(),
        ecr: aws_sdk_ecr::Client::new(&sdk),
        ssm: aws_sdk_ssm::Client::new(&sdk),
    };
    shared_checks(&url, &seed).await;
}

/// The sandbox's AWS stand-in served on loopback, and its address.
async fn sandbox_aws() -> (tugboat_sandbox::aws::Aws, String) {
    let aws = tugboat_sandbox::aws::Aws::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = aws.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (aws, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ecr_and_ssm_adapters_work_against_the_sandbox() {
    let (aws, url) = sandbox_aws().await;
    shared_checks(&url, &SandboxSeed(aws)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_against_moto_takes_limit_exceeded_as_scanned_today_and_follows_changed_findings()
{
    use tugboat::engine::Engine;
    use tugboat::engine::rescan::{IssueAction, Scope};
    use tugboat_sandbox::{Fleet, Options, Sandbox, Style};
    tugboat::app::init_crypto();
    let (_moto, url) = start_moto();
    let sdk = sdk(&url).await;
    let seed = MotoSeed {
        url: url.clone(),
        ecr: aws_sdk_ecr::Client::new(&sdk),
        ssm: aws_sdk_ssm::Client::new(&sdk),
    };
    // moto is the registry and the parameter store; the sandbox is GitHub and Argo CD, where
    // dev deploys user_service:1.0.0.
    let sb = Sandbox::start(Options {
        fleet: Fleet {
            services: vec![("user_service".into(), Style::Kustomize)],
            environments: vec!["dev".into()],
            tags: 1,
        },
        ..Options::default()
    })
    .await
    .unwrap();
    let policy = "environments:\n  dev:\n    scan:\n      thresholds: {CRITICAL: 0, HIGH: 0}\n";
    let seed_registry = || async {
        // The seed scans the image once: the rescan's StartImageScan is the day's second.
        let digest = seed.image("user_service", "1.0.0", CRITICAL).await;
        seed.parameter("/salon/promotion/defaults", policy, false)
            .await;
        digest
    };
    let digest = seed_registry().await;
    let work = tempfile::tempdir().unwrap();
    let toml = sb
        .config_toml(&work.path().join("w"))
        .replace(&sb.aws_url, &url);
    let cfg = std::sync::Arc::new(
        tugboat::config::Config::parse(&toml, "moto.toml", std::iter::empty()).unwrap(),
    );
    let api = ApiMetrics::default();
    let engine = Engine::new(cfg.clone(), tugboat::app::ports(&cfg, &api).await.unwrap());

    let first = engine.rescan(&Scope::default()).await.unwrap();
    assert_eq!(first.scan_type, ScanType::Basic, "asked of the registry");
    assert_eq!(
        (
            first.images,
            first.scans_started,
            first.already_scanned_today
        ),
        (1, 0, 1),
        "LimitExceededException is 'already scanned today': {first:?}"
    );
    let starts = count(&api.snapshot(), "ecr", "StartImageScan");
    assert_eq!((starts.calls, starts.retries), (1, 0), "never retried");
    let svc = &first.services[0];
    let IssueAction::Opened { number, .. } = svc.issue.clone() else {
        panic!("{first:?}")
    };
    assert_eq!(svc.rows[0].deployed.digest.as_str(), digest);
    assert_eq!(svc.rows[0].new, ["CVE-2026-0001"]);
    assert!(svc.rows[0].blocked);

    // The registry's findings change. moto pins a custom result to an image once read, so
    // it is reset and the same manifest (so the same digest) pushed again, scanned clean.
    let reset = reqwest::Client::new()
        .post(format!("{url}/moto-api/reset"))
        .send()
        .await
        .unwrap();
    assert!(reset.status().is_success());
    seed.image("user_service", "1.0.0", CLEAN).await;
    seed.parameter("/salon/promotion/defaults", policy, false)
        .await;
    engine.refresh_policy();

    let second = engine.rescan(&Scope::default()).await.unwrap();
    assert_eq!(second.already_scanned_today, 1);
    let svc = &second.services[0];
    assert_eq!(svc.rows[0].deployed.digest.as_str(), digest, "same image");
    assert!(
        matches!(svc.issue, IssueAction::Closed { number: n, .. } if n == number),
        "{second:?}"
    );
    assert_eq!(svc.rows[0].gone, ["CVE-2026-0001"]);
    let issues = sb.github.issues();
    assert_eq!((issues.len(), issues[0].state.as_str()), (1, "closed"));
}

/// A documented "ECR Image Action" push (Amazon ECR user guide) of `user_service:<tag>`.
fn push_event(id: &str, tag: &str) -> String {
    json!({"version": "0", "id": id, "detail-type": "ECR Image Action", "source": "aws.ecr",
           "account": "123456789012", "time": "2026-12-01T10:00:00Z", "region": "eu-north-1",
           "resources": [], "detail": {"result": "SUCCESS", "repository-name": "user_service",
           "image-digest": format!("sha256:{}", "7f".repeat(32)), "action-type": "PUSH", "image-tag": tag}})
    .to_string()
}

/// The checks of the SQS adapter that both emulators must pass: long polls of up to ten,
/// batch deletes, the queue's depth, and a missing queue named as such.
async fn queue_checks(sdk: &aws_config::SdkConfig, queue_url: &str) {
    use tugboat::adapters::sqs::Sqs;
    use tugboat::domain::events::{Change, parse};
    use tugboat::ports::{ErrorKind, EventQueue};
    let api = ApiMetrics::default();
    let queue = Sqs::new(sdk, queue_url, &api);
    let client = aws_sdk_sqs::Client::new(sdk);
    for i in 0..12 {
        client
            .send_message()
            .queue_url(queue_url)
            .message_body(push_event(&format!("e{i}"), &format!("1.{i}.0")))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(queue.depth().await.unwrap(), 12);
    let first = queue.receive().await.unwrap();
    assert_eq!(first.len(), 10, "at most ten a receive");
    for m in &first {
        let e = parse(&m.body).unwrap();
        assert_eq!(
            (e.change, e.repository.as_str()),
            (Change::Pushed, "user_service")
        );
    }
    let receipts: Vec<String> = first.iter().map(|m| m.receipt.clone()).collect();
    queue.delete(&receipts).await.unwrap();
    let rest = queue.receive().await.unwrap();
    assert_eq!(rest.len(), 2);
    let mut ids: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|m| parse(&m.body).unwrap().id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12, "each message once");
    queue
        .delete(&rest.iter().map(|m| m.receipt.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(queue.depth().await.unwrap(), 0);
    assert_eq!(count(&api.snapshot(), "sqs", "ReceiveMessage").calls, 2);

    let missing = queue_url.replace("tugboat-events", "nobody-made-this");
    let e = Sqs::new(sdk, &missing, &api).depth().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("GetQueueAttributes"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_adapter_works_against_moto() {
    let (_moto, url) = start_moto();
    let sdk = sdk(&url).await;
    let queue_url = events_queue(&aws_sdk_sqs::Client::new(&sdk)).await;
    queue_checks(&sdk, &queue_url).await;
}

/// moto's `tugboat-events` queue, made: its URL.
async fn events_queue(sqs: &aws_sdk_sqs::Client) -> String {
    sqs.create_queue()
        .queue_name("tugboat-events")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_adapter_works_against_the_sandbox() {
    let (_aws, url) = sandbox_aws().await;
    let queue_url = tugboat_sandbox::sqs::Sqs::queue_url(&url, tugboat_sandbox::sqs::EVENTS_QUEUE);
    queue_checks(&sdk(&url).await, &queue_url).await;
}

/// One EventBridge request to moto (JSON 1.1), in eu-north-1.
async fn eventbridge(url: &str, operation: &str, body: serde_json::Value) -> serde_json::Value {
    let response = reqwest::Client::new()
        .post(url)
        .header("X-Amz-Target", format!("AWSEvents.{operation}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        // moto reads the region from the credential scope; it checks no signature.
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261201/eu-north-1/events/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{operation}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloudformation_rules_send_exactly_the_events_tugboat_uses_to_the_queue() {
    let (_moto, url) = start_moto();
    let sdk = sdk(&url).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (queue_url, _) = queue_with_stack_rules(&url, &sqs).await;
    let digest = format!("sha256:{}", "7f".repeat(32));
    let repo_arn = "arn:aws:ecr:eu-north-1:123456789012:repository/user_service";
    let entry = |source: &str, kind: &str, detail: serde_json::Value| json!({"Source": source, "DetailType": kind, "Detail": detail.to_string()});
    let sent = [
        (
            true,
            entry(
                "aws.ecr",
                "ECR Image Action",
                json!({"result": "SUCCESS", "action-type": "PUSH", "repository-name": "user_service", "image-digest": digest, "image-tag": "1.1.0"}),
            ),
        ),
        (
            true,
            entry(
                "aws.ecr",
                "ECR Image Action",
                json!({"result": "SUCCESS", "action-type": "DELETE", "repository-name": "user_service", "image-digest": digest, "image-tag": "1.1.0"}),
            ),
        ),
        (
            false,
            entry(
                "aws.ecr",
                "ECR Image Action",
                json!({"result": "FAILURE", "action-type": "PUSH", "repository-name": "user_service"}),
            ),
        ),
        (
            true,
            entry(
                "aws.ecr",
                "ECR Image Scan",
                json!({"scan-status": "COMPLETE", "repository-name": "user_service", "image-digest": digest, "finding-severity-counts": {"HIGH": 1}}),
            ),
        ),
        (
            false,
            entry(
                "aws.ecr",
                "ECR Image Scan",
                json!({"scan-status": "FAILED", "repository-name": "user_service", "image-digest": digest}),
            ),
        ),
        (
            true,
            entry(
                "aws.inspector2",
                "Inspector2 Scan",
                json!({"scan-status": "INITIAL_SCAN_COMPLETE", "repository-name": repo_arn, "image-digest": digest}),
            ),
        ),
        (
            true,
            entry(
                "aws.inspector2",
                "Inspector2 Finding",
                json!({"severity": "HIGH", "resources": [{"type": "AWS_ECR_CONTAINER_IMAGE", "details": {"awsEcrContainerImage": {"repositoryName": "user_service", "imageHash": digest}}}]}),
            ),
        ),
        (
            false,
            entry(
                "aws.ecr",
                "ECR Replication Action",
                json!({"result": "SUCCESS", "repository-name": "user_service"}),
            ),
        ),
        (
            false,
            entry(
                "aws.ec2",
                "EC2 Instance State-change Notification",
                json!({"state": "running"}),
            ),
        ),
    ];
    let entries: Vec<serde_json::Value> = sent.iter().map(|(_, e)| e.clone()).collect();
    let put = eventbridge(&url, "PutEvents", json!({"Entries": entries})).await;
    assert_eq!(put["FailedEntryCount"], 0, "{put}");
    let mut got = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let batch = out.messages.unwrap_or_default();
        if batch.is_empty() {
            break;
        }
        for m in batch {
            let body: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
            got.push(json!({"Source": body["source"], "DetailType": body["detail-type"], "Detail": body["detail"].to_string()}));
            sqs.delete_message()
                .queue_url(&queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    let key = |e: &serde_json::Value| e.to_string();
    let mut want: Vec<String> = sent
        .iter()
        .filter(|(d, _)| *d)
        .map(|(_, e)| {
            let mut e = e.clone();
            // Compare the detail as a value, not as text.
            e["Detail"] = serde_json::from_str::<serde_json::Value>(e["Detail"].as_str().unwrap())
                .unwrap()
                .to_string()
                .into();
            key(&e)
        })
        .collect();
    let mut got: Vec<String> = got
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e["Detail"] = serde_json::from_str::<serde_json::Value>(e["Detail"].as_str().unwrap())
                .unwrap()
                .to_string()
                .into();
            key(&e)
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "the rules deliver what tugboat reads, and nothing else"
    );
}

/// A Buildx-style push seeded over the sandbox's HTTP endpoint, read through the real ECR
/// adapter as ECR answers it: the tag names an index, its platform images and attestations
/// are untagged, ECR refuses to scan the index and has no scan for it, the attestation's
/// scan failed, and the cosign tag pushed after it is listed like any tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buildx_index_seeded_in_the_sandbox_reads_through_the_ecr_adapter_as_ecr_answers() {
    use tugboat::domain::index::ImageKind;
    let (aws, url) = sandbox_aws().await;
    let seeded: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/_sandbox/ecr/images"))
        .json(
            &json!({"repository": "api", "tag": "2.0.0", "signature": "valid",
                      "platforms": [{"os": "linux", "architecture": "amd64"},
                                    {"os": "linux", "architecture": "arm64",
                                     "findings": [{"id": "CVE-2026-9", "severity": "HIGH"}]}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let index = Digest::parse(seeded["digest"].as_str().unwrap()).unwrap();
    let arm64 = Digest::parse(seeded["platforms"]["linux/arm64"].as_str().unwrap()).unwrap();
    let attestation = Digest::parse(seeded["attestations"][0].as_str().unwrap()).unwrap();
    let sig = seeded["signature_tag"].as_str().unwrap();
    assert_eq!(sig, format!("{}.sig", index.as_str().replace(':', "-")));

    let ecr = Ecr::new(&sdk(&url).await, &ApiMetrics::default());
    let images = ecr.list_images(None, "api").await.unwrap();
    assert_eq!(
        images.len(),
        2,
        "the index and the signature; children are untagged"
    );
    let listed = images.iter().find(|i| i.digest == index).unwrap();
    assert_eq!(listed.kind, ImageKind::Index);
    let platforms = ecr.platforms(None, "api", &index).await.unwrap();
    let names: Vec<String> = platforms.iter().map(|p| p.platform.to_string()).collect();
    assert_eq!(names, ["linux/amd64", "linux/arm64"]);
    assert_eq!(platforms[1].digest, arm64);

    assert_eq!(
        ecr.scan_report(None, "api", &index).await.unwrap().status,
        ScanStatus::NotFound,
        "an index has no scan of its own"
    );
    let Ok(ScanStart::Refused(why)) = ecr.start_scan(None, "api", &index).await else {
        panic!("StartImageScan of an index must be refused")
    };
    assert!(
        why.contains("UnsupportedImageTypeException")
            && why.contains("application/vnd.oci.image.index.v1+json' cannot be scanned"),
        "{why}"
    );
    let r = ecr.scan_report(None, "api", &arm64).await.unwrap();
    assert_eq!(r.findings[0].id, "CVE-2026-9");
    let r = ecr.scan_report(None, "api", &attestation).await.unwrap();
    assert!(
        matches!(&r.status, ScanStatus::Failed(m) if m.contains("LayerError")),
        "{r:?}"
    );
    let distroless = Digest::parse(&aws.push("api", "2.0.1-distroless", "FAILED", vec![])).unwrap();
    let r = ecr.scan_report(None, "api", &distroless).await.unwrap();
    assert!(
        matches!(&r.status, ScanStatus::UnsupportedImage(m) if m.contains("UnsupportedImageError")),
        "{r:?}"
    );
}

/// Whether an image can still be pulled, through the real adapter: ACTIVE, then ARCHIVED
/// (still listed, pulls fail), then deleted (ImageNotFoundException).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_or_deleted_image_is_not_pullable_and_an_archived_one_is_no_candidate() {
    use tugboat::ports::Pullable;
    let (aws, url) = sandbox_aws().await;
    let ecr = Ecr::new(&sdk(&url).await, &ApiMetrics::default());
    let digest = Digest::parse(&aws.push("api", "1.0.0", "COMPLETE", vec![])).unwrap();
    assert_eq!(
        ecr.pullable(None, "api", &digest).await.unwrap(),
        Pullable::Yes
    );
    aws.archive("api", digest.as_str());
    assert_eq!(
        ecr.pullable(None, "api", &digest).await.unwrap(),
        Pullable::NotActive("ARCHIVED".into())
    );
    assert!(
        !ecr.list_images(None, "api")
            .await
            .unwrap()
            .iter()
            .any(|i| i.digest == digest),
        "an archived image is never a candidate (its signature's tag stays listed)"
    );
    let Ok(ScanStart::Refused(why)) = ecr.start_scan(None, "api", &digest).await else {
        panic!("an archived image cannot be scanned")
    };
    assert!(why.starts_with("ImageArchivedException"), "{why}");
    aws.delete("api", digest.as_str());
    assert_eq!(
        ecr.pullable(None, "api", &digest).await.unwrap(),
        Pullable::Gone
    );
}

/// The stack's rules, from manifests/aws/events.cfn.yaml: (logical name, event pattern).
fn stack_rules() -> Vec<(String, serde_json::Value)> {
    let template: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/aws/events.cfn.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Events::Rule")
        .map(|(name, r)| (name.clone(), r["Properties"]["EventPattern"].clone()))
        .collect()
}

/// moto's `tugboat-events` queue with the stack's three rules targeting it, as the stack
/// makes them (PutRule, PutTargets): the queue's URL and ARN.
async fn queue_with_stack_rules(url: &str, sqs: &aws_sdk_sqs::Client) -> (String, String) {
    let queue_url = events_queue(sqs).await;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let rules = stack_rules();
    assert_eq!(rules.len(), 3);
    for (name, pattern) in rules {
        eventbridge(
            url,
            "PutRule",
            json!({"Name": name, "EventPattern": pattern.to_string()}),
        )
        .await;
        eventbridge(
            url,
            "PutTargets",
            json!({"Rule": name, "Targets": [{"Id": "q", "Arn": arn}]}),
        )
        .await;
    }
    (queue_url, arn)
}

/// The EventBridge adapter's reads against a bus holding the stack's rules, all targeting
/// `queue_arn`: the rules are found with their patterns and states, and a queue no rule
/// targets has none.
async fn rule_reads(
    sdk: &aws_config::SdkConfig,
    queue_arn: &str,
) -> Vec<tugboat::domain::doctor::rules::EventRule> {
    use tugboat::adapters::eventbridge::EventBridge;
    let api = ApiMetrics::default();
    let bus = EventBridge::new(sdk, &api);
    let rules = bus.rules_targeting(queue_arn).await.unwrap();
    let mut found: Vec<serde_json::Value> = rules
        .iter()
        .map(|r| serde_json::from_str(r.pattern.as_deref().unwrap()).unwrap())
        .collect();
    let mut stack: Vec<serde_json::Value> = stack_rules().into_iter().map(|(_, p)| p).collect();
    found.sort_by_key(ToString::to_string);
    stack.sort_by_key(ToString::to_string);
    assert_eq!(found, stack, "the stack's patterns, read back");
    assert!(rules.iter().all(|r| r.enabled), "{rules:?}");
    let other = queue_arn.replace("tugboat-events", "nobody-sends-here");
    assert!(bus.rules_targeting(&other).await.unwrap().is_empty());
    assert_eq!(
        count(&api.snapshot(), "eventbridge", "ListRuleNamesByTarget").calls,
        2
    );
    assert_eq!(
        count(&api.snapshot(), "eventbridge", "DescribeRule").calls,
        3
    );
    rules
}

/// EventBridge's matcher (TestEventPattern), asked through the adapter, tells each of the
/// stack's rules' events apart, and refuses a pattern that is not one.
async fn matcher_checks(sdk: &aws_config::SdkConfig, queue_arn: &str) {
    use tugboat::adapters::eventbridge::EventBridge;
    use tugboat::domain::doctor::rules::{EventKind, queue_home, sample_event};
    let rules = rule_reads(sdk, queue_arn).await;
    let bus = EventBridge::new(sdk, &ApiMetrics::default());
    let (region, account) = queue_home(queue_arn).unwrap();
    let event = |kind| sample_event(kind, "user_service", &account, &region);
    let pattern_of = |kind: &str| {
        rules
            .iter()
            .map(|r| r.pattern.clone().unwrap())
            .find(|p| p.contains(kind))
            .unwrap()
    };
    let (push, scan, inspector) = (
        pattern_of("ECR Image Action"),
        pattern_of("ECR Image Scan"),
        pattern_of("Inspector2 Scan"),
    );
    assert!(bus.matches(&push, &event(EventKind::Push)).await.unwrap());
    assert!(
        !bus.matches(&push, &event(EventKind::BasicScan))
            .await
            .unwrap()
    );
    assert!(
        bus.matches(&scan, &event(EventKind::BasicScan))
            .await
            .unwrap()
    );
    assert!(
        bus.matches(&inspector, &event(EventKind::EnhancedScan))
            .await
            .unwrap()
    );
    let narrowed = r#"{"detail":{"repository-name":[{"prefix":"orders"}]}}"#;
    assert!(
        !bus.matches(narrowed, &event(EventKind::Push))
            .await
            .unwrap()
    );
    let e = bus
        .matches(r#"{"detail": "not a list"}"#, &event(EventKind::Push))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("TestEventPattern"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eventbridge_adapter_reads_the_rules_of_moto() {
    let (_moto, url) = start_moto();
    let sdk = sdk(&url).await;
    let (_, arn) = queue_with_stack_rules(&url, &aws_sdk_sqs::Client::new(&sdk)).await;
    // moto answers ListRuleNamesByTarget and DescribeRule, but not TestEventPattern (its
    // events backend raises NotImplementedError): the matcher is checked against the
    // sandbox's, which follows the EventBridge user guide.
    rule_reads(&sdk, &arn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eventbridge_adapter_reads_the_rules_and_asks_their_matcher_of_the_sandbox() {
    let (_aws, url) = sandbox_aws().await;
    let arn = tugboat_sandbox::eventbridge::queue_arn(tugboat_sandbox::sqs::EVENTS_QUEUE);
    matcher_checks(&sdk(&url).await, &arn).await;
}

/// The registry adapter reads cosign's signatures from the ECR stand-in as from ECR: a token
/// from `GetAuthorizationToken` (the registry refuses a request without it), the signature
/// manifest by digest, each payload through the blob's redirect to "S3" on another host,
/// which refuses a request that still carries the token (so the token never leaves the
/// registry); the signatures verify under the CI key, and one made by another key does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_adapter_reads_cosign_signatures_through_ecrs_registry_api() {
    use tugboat::adapters::oci::OciRegistry;
    use tugboat::domain::select::ImageRecord;
    use tugboat::domain::signature::{KeySource, Refusal, signature_tag};
    use tugboat::ports::Signatures;
    use tugboat::signature::{TrustedKey, verify};
    use tugboat_sandbox::aws::SeedSignature;

    let (aws, url) = sandbox_aws().await;
    let refused = reqwest::get(format!("{url}/v2/")).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(
        refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );

    let digest = aws.push("api", "1.0.0", "COMPLETE", vec![]);
    let now = chrono::Utc::now();
    aws.sign("api", &digest, SeedSignature::UnknownKey, now);
    let digest = Digest::parse(&digest).unwrap();
    let api = ApiMetrics::default();
    let ecr = Ecr::new(&sdk(&url).await, &api);
    let images: Vec<ImageRecord> = ecr.list_images(None, "api").await.unwrap();
    let tag = signature_tag(&digest);
    let manifest = images
        .iter()
        .find(|i| i.tags.iter().any(|t| t.as_str() == tag))
        .map(|i| i.digest.clone())
        .expect("the signature tag is listed like any tag");

    let oci = OciRegistry::new(&sdk(&url).await, &api).unwrap();
    let stored = oci.cosign_signatures(None, "api", &manifest).await.unwrap();
    assert_eq!(
        stored.len(),
        2,
        "the CI's signature and the stranger's, appended"
    );
    let source = KeySource::Ssm("/salon/cosign/ci.pub".into());
    let keys = [TrustedKey::parse(&source, &aws.ci_public_key()).unwrap()];
    let outcomes: Vec<_> = stored
        .iter()
        .map(|s| verify(s, &digest, &manifest, &keys, now))
        .collect();
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    assert_eq!(outcomes[1], Err(Refusal::UnknownKey));

    let calls = count(&api.snapshot(), "ecr", "GetAuthorizationToken");
    oci.cosign_signatures(None, "api", &manifest).await.unwrap();
    assert_eq!(
        count(&api.snapshot(), "ecr", "GetAuthorizationToken"),
        calls,
        "the token is kept"
    );
    let missing = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
    let e = oci
        .cosign_signatures(None, "api", &missing)
        .await
        .unwrap_err();
    assert_eq!(e.kind, tugboat::ports::ErrorKind::NotFound, "{e}");
}
