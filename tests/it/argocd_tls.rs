//! TLS to Argo CD: verification is always on; an Argo CD behind a private CA is reached only
//! when `argocd.ca_bundle` holds that CA, and otherwise the error says why.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tugboat::adapters::argocd::{ArgoCd, ArgoOptions};
use tugboat::ports::{Deployer, ErrorKind};
use tugboat::secret::Secret;

const APP: &str = r#"{"metadata":{"name":"user-service-dev"},"spec":{"syncPolicy":{"automated":{}}},
"status":{"sync":{"status":"Synced","revision":"0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"},"health":{"status":"Healthy"}}}"#;

/// An HTTPS server on loopback with a certificate for 127.0.0.1 issued by a fresh private CA;
/// it answers every request with `APP`. Returns its address and the CA's PEM.
async fn private_argo() -> (String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tugboat test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{APP}",
                    APP.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (format!("https://{addr}"), ca.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argo_cd_behind_a_private_ca_is_reached_only_with_that_ca_in_the_bundle() {
    tugboat::app::init_crypto();
    let (url, ca_pem) = private_argo().await;
    let argo = |ca_bundle: Option<Vec<u8>>| {
        ArgoCd::new(
            &url,
            std::sync::Arc::new(tugboat::credentials::Rotating::fixed(
                Secret::new("token"),
                "argocd.token",
            )),
            &ArgoOptions {
                ca_bundle,
                hard_refresh: false,
            },
            &Default::default(),
        )
        .unwrap()
    };

    let trusted = argo(Some(ca_pem.into_bytes()))
        .app("user-service-dev", true)
        .await
        .unwrap();
    assert_eq!(
        (trusted.sync_status.as_str(), trusted.health.as_str()),
        ("Synced", "Healthy")
    );

    let e = argo(None).app("user-service-dev", true).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient);
    assert!(
        e.message
            .starts_with("application 'user-service-dev': Argo CD unreachable:"),
        "{e}"
    );
    assert!(
        e.message.contains("UnknownIssuer"),
        "the reason is named: {e}"
    );

    let refused = ArgoCd::new(
        &url,
        std::sync::Arc::new(tugboat::credentials::Rotating::fixed(
            Secret::new("token"),
            "argocd.token",
        )),
        &ArgoOptions {
            ca_bundle: Some(
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            hard_refresh: false,
        },
        &Default::default(),
    );
    assert!(
        refused.is_err(),
        "a bundle that does not parse is refused at start"
    );
}
