//! The registry adapter against a real OCI registry and a real client: Debian's
//! docker-registry (the CNCF distribution server) on loopback, a multi-platform image (an
//! index) and a plain image pushed by skopeo, and cosign-format signatures of them
//! (`tests/registry/oci_fixture.py`) pushed by skopeo as the tags `sha256-<hex>.sig`.
//! tugboat's adapter reads them through the distribution API (with a token from the ECR
//! stand-in's `GetAuthorizationToken`, which this registry does not ask for), and they verify
//! under the signer's key only.
//!
//! The signatures are not made by cosign: Debian's skopeo 1.9 has its sigstore signing
//! disabled ("Debian-local change: sigstore disabled"), cosign is in no registry reachable
//! here, and the sigstore crate's signing pulls `rsa` (RUSTSEC-2023-0071) into the audited
//! build. The fixture writes cosign's format from its spec instead; the registry, the client
//! and the digests are real.
//!
//! The tools come from `$TUGBOAT_DOCKER_REGISTRY` and `$TUGBOAT_SKOPEO` (the README's test
//! command installs both) and the fixture runs on `$TUGBOAT_PYTHON`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tugboat::adapters::aws::sdk_config;
use tugboat::adapters::oci::OciRegistry;
use tugboat::config::AwsConfig;
use tugboat::domain::image::Digest;
use tugboat::domain::signature::{KeySource, Refusal};
use tugboat::ports::Signatures;
use tugboat::signature::{TrustedKey, verify};
use tugboat::telemetry::ApiMetrics;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("${var} is not set: run the README's test command, which installs the tool")
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// docker-registry serving `dir` on a loopback port.
fn start_registry(dir: &Path) -> (Running, u16) {
    let port = free_port();
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let bin = tool("TUGBOAT_DOCKER_REGISTRY");
    let child = Command::new(&bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "docker-registry did not start within 30s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Running(child), port)
}

/// The fixture script's output for `args`.
fn fixture(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/registry/oci_fixture.py");
    let out = Command::new(tool("TUGBOAT_PYTHON"))
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// skopeo copies `tag` of the layout `layout` to the registry, every image of an index and
/// its digests as they are.
fn push(layout: &Path, tag: &str, port: u16) {
    let out = Command::new(tool("TUGBOAT_SKOPEO"))
        .args(["--insecure-policy", "copy", "--all", "--preserve-digests"])
        .arg("--dest-tls-verify=false")
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://127.0.0.1:{port}/salon/api:{tag}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The digest the registry gives `reference` (its `Docker-Content-Digest`).
async fn digest_of(port: u16, reference: &str) -> Digest {
    let resp = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{port}/v2/salon/api/manifests/{reference}"
        ))
        .header(
            "accept",
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{reference}: {}", resp.status());
    Digest::parse(resp.headers()["docker-content-digest"].to_str().unwrap()).unwrap()
}

/// The registry adapter on `port`, with a token from an ECR stand-in.
async fn adapter(port: u16, api: &ApiMetrics) -> OciRegistry {
    let aws = tugboat_sandbox::aws::Aws::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = aws.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let sdk = sdk_config(&AwsConfig {
        region: "eu-north-1".into(),
        registry_id: None,
        endpoint_url: Some(url),
        registry_url: None,
        test_credentials: true,
    })
    .await;
    OciRegistry::new(&sdk, api)
        .unwrap()
        .at(&format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_pushed_by_a_real_client_to_the_distribution_registry_verify_under_their_key_only()
 {
    let tmp = tempfile::tempdir().unwrap();
    let (_registry, port) = start_registry(tmp.path());
    let layout = tmp.path().join("images");
    let pushed: serde_json::Value =
        serde_json::from_str(&fixture(&["images", layout.to_str().unwrap()])).unwrap();
    push(&layout, "1.0.0", port);
    push(&layout, "1.0.1", port);
    let index = digest_of(port, "1.0.0").await;
    let single = digest_of(port, "1.0.1").await;
    assert_eq!(
        index.as_str(),
        pushed["1.0.0"],
        "the registry keeps the index's digest"
    );
    assert_eq!(single.as_str(), pushed["1.0.1"]);

    // The CI key signs the index (what cosign signs for a tag of a multi-platform image);
    // another key signs the plain image.
    let reference = format!("127.0.0.1:{port}/salon/api");
    let ci_key = tmp.path().join("ci.pem");
    let other_key = tmp.path().join("other.pem");
    let mut signatures = Vec::new();
    for (name, digest, key) in [
        ("sig-index", &index, &ci_key),
        ("sig-single", &single, &other_key),
    ] {
        let dir = tmp.path().join(name);
        let args = [
            "sign",
            dir.to_str().unwrap(),
            digest.as_str(),
            reference.as_str(),
            key.to_str().unwrap(),
        ];
        let tag = fixture(&args);
        assert_eq!(tag, format!("{}.sig", digest.as_str().replace(':', "-")));
        push(&dir, &tag, port);
        signatures.push(digest_of(port, &tag).await);
    }

    let api = ApiMetrics::default();
    let oci = adapter(port, &api).await;
    let pem = |path: &Path| std::fs::read_to_string(path.with_extension("pem.pub")).unwrap();
    let ci = [TrustedKey::parse(&KeySource::File("/ci.pub".into()), &pem(&ci_key)).unwrap()];
    let other =
        [TrustedKey::parse(&KeySource::File("/other.pub".into()), &pem(&other_key)).unwrap()];
    let now = chrono::Utc::now();

    let of_index = oci
        .cosign_signatures(None, "salon/api", &signatures[0])
        .await
        .unwrap();
    assert_eq!(of_index.len(), 1);
    let signed = verify(&of_index[0], &index, &signatures[0], &ci, now).unwrap();
    assert_eq!(signed.manifest, signatures[0].to_string());
    assert_eq!(
        verify(&of_index[0], &index, &signatures[0], &other, now),
        Err(Refusal::UnknownKey)
    );
    // The index's signature is not a signature of the image tagged 1.0.1.
    assert_eq!(
        verify(&of_index[0], &single, &signatures[0], &ci, now),
        Err(Refusal::OtherDigest(index.to_string()))
    );

    let of_single = oci
        .cosign_signatures(None, "salon/api", &signatures[1])
        .await
        .unwrap();
    assert_eq!(
        verify(&of_single[0], &single, &signatures[1], &ci, now),
        Err(Refusal::UnknownKey),
        "signed by a key the policy does not name"
    );
    assert!(verify(&of_single[0], &single, &signatures[1], &other, now).is_ok());

    let missing = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
    let e = oci
        .cosign_signatures(None, "salon/api", &missing)
        .await
        .unwrap_err();
    assert_eq!(e.kind, tugboat::ports::ErrorKind::NotFound, "{e}");
}
