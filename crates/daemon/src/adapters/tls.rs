//! The process's one TLS client configuration, and the HTTP clients built on it.
//!
//! rustls on aws-lc-rs, verifying servers against the system's trust store through
//! rustls-platform-verifier: what reqwest builds by default, built once. reqwest's default
//! builds a verifier per client, and each verifier parses and keeps the whole system root
//! store (66 KB here; 150 KB with a larger bundle). tugboat had nine of them at rest (git,
//! Argo CD, two sinks, octocrab's per token, the AWS SDK's per service client): 0.6 MB of an
//! idle daemon's 2.5 MB heap (massif, `docs/dev/benchmarks.md`). Every reqwest client now
//! shares this one (GitHub's through octocrab too), and the AWS SDK's service clients share
//! one HTTP client (`aws::sdk_config`).
//!
//! A client with its own trust (Argo CD's `ca_bundle`) builds its own verifier, as before.

use std::sync::{Arc, OnceLock};

/// The shared configuration, or why the system's trust store could not be read.
fn shared() -> &'static Result<rustls::ClientConfig, String> {
    static SHARED: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    SHARED.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
            .map_err(|e| format!("the system's trust store: {e}"))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .dangerous() // not dangerous: the platform verifier is the verification
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        // What reqwest offers with its `http2` feature: HTTP/2 where the server speaks it.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    })
}

/// A reqwest client builder that uses the shared TLS configuration.
pub fn builder() -> Result<reqwest::ClientBuilder, String> {
    let config = shared().clone()?;
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config))
}

/// The HTTP client octocrab sends GitHub's requests with: the shared TLS configuration, a
/// bounded connect, and a read that may not stall (octocrab's own client set neither). No
/// user agent: octocrab sets its own on every request, which a client default never replaces.
pub fn github() -> Result<reqwest::Client, String> {
    builder()?
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| format!("the GitHub HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_configuration_offers_http2_then_http1_as_reqwest_does() {
        let config = shared().as_ref().unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(builder().unwrap().build().is_ok());
    }
}
