//! Shared AWS SDK set-up and error mapping for the ECR, SSM and SQS adapters.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use aws_sdk_ecr::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;

use crate::config::AwsConfig;
use crate::ports::{ErrorKind, PortError};
use crate::telemetry::ApiMetrics;

/// Load the SDK configuration: the standard credential chain (env, profile, IRSA / Pod
/// Identity, IMDS), or fixed dummy credentials for emulators when configured so.
pub async fn sdk_config(cfg: &AwsConfig) -> aws_config::SdkConfig {
    // Adaptive retries: throttling (ThrottlingException, 429) slows this client down with a
    // client-side token bucket instead of failing; other services' calls carry on.
    let retry = aws_config::retry::RetryConfig::adaptive()
        .with_max_attempts(5)
        .with_initial_backoff(std::time::Duration::from_millis(200));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(cfg.region.clone()))
        .retry_config(retry)
        .http_client(https_client());
    if let Some(url) = &cfg.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if cfg.test_credentials {
        loader = loader.credentials_provider(aws_sdk_ecr::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "tugboat-test-credentials",
        ));
    }
    loader.load().await
}

/// One HTTP client for every service client made from one `SdkConfig` (and its credential
/// providers): the SDK's default HTTPS client, as `aws-smithy-runtime` builds it for the
/// latest behavior version (rustls on aws-lc-rs; the proxy from `HTTPS_PROXY`/`NO_PROXY`),
/// made once here instead of once per service client. Its connectors are per timeout
/// settings, and each holds a parsed copy of the system's roots (`adapters::tls`).
fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::{Connector, proxy::ProxyConfig, tls};
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut builder = Connector::builder().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder.set_proxy_config(Some(ProxyConfig::from_env()));
        builder.build()
    })
}

/// Turn an SDK error into a port error; `not_found` lists the service codes that mean absence.
pub fn map_err<E, R>(
    system: &'static str,
    operation: &'static str,
    e: &SdkError<E, R>,
    not_found: &[&str],
) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = e.code().unwrap_or("");
    let kind = match e {
        SdkError::ServiceError(_) if not_found.contains(&code) => ErrorKind::NotFound,
        SdkError::ServiceError(_) => match code {
            "ThrottlingException"
            | "LimitExceededException"
            | "TooManyRequestsException"
            | "ThrottledException"
            | "RequestThrottled"
            | "OverLimit" => ErrorKind::Throttled,
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "ExpiredTokenException"
            | "InvalidSignatureException" => ErrorKind::Denied,
            c if c.starts_with("Internal") || c == "ServiceUnavailable" => ErrorKind::Transient,
            _ => ErrorKind::Rejected,
        },
        _ => ErrorKind::Transient,
    };
    let message = match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_owned(),
        _ => DisplayErrorContext(e).to_string(),
    };
    PortError::new(system, operation, kind, message)
}

/// Counts every attempt the SDK sends (pages and retries included) into [`ApiMetrics`], by
/// the SDK's own service and operation names; attempts after the first count as retries.
#[derive(Debug, Clone)]
pub struct CountCalls {
    pub system: &'static str,
    pub api: ApiMetrics,
}

fn operation(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>()
        .map_or_else(|| "unknown".to_owned(), |m| m.name().to_owned())
}

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "tugboat::CountCalls"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = operation(cfg);
        self.api.call(self.system, &op);
        if cfg
            .load::<RequestAttempts>()
            .is_some_and(|a| a.attempts() > 1)
        {
            self.api.retry(self.system, &op);
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let failed = context.response().is_none_or(|r| !r.status().is_success());
        if failed {
            self.api.error(self.system, &operation(cfg));
        }
        Ok(())
    }
}
