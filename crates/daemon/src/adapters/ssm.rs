//! The SSM Parameter Store adapter (aws-sdk-ssm): policy documents and SecureString secrets.

use async_trait::async_trait;
use aws_sdk_ssm::Client;

use super::aws::{CountCalls, map_err};
use crate::domain::policy::PolicyDocument;
use crate::ports::{ParameterStore, PortResult};
use crate::secret::Secret;
use crate::telemetry::ApiMetrics;

/// SSM through the AWS SDK.
#[derive(Clone)]
pub struct Ssm {
    client: Client,
}

impl Ssm {
    /// A client whose every request is counted into `api`.
    pub fn new(sdk: &aws_config::SdkConfig, api: &ApiMetrics) -> Self {
        let conf = aws_sdk_ssm::config::Builder::from(sdk)
            .interceptor(CountCalls {
                system: "ssm",
                api: api.clone(),
            })
            .build();
        Self {
            client: Client::from_conf(conf),
        }
    }
}

#[async_trait]
impl ParameterStore for Ssm {
    async fn documents(&self, path: &str) -> PortResult<Vec<PolicyDocument>> {
        // GetParametersByPath wants the path without a trailing slash (except "/").
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        let mut pages = self
            .client
            .get_parameters_by_path()
            .path(path)
            .recursive(true)
            .with_decryption(true)
            .max_results(10)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map_err("ssm", "GetParametersByPath", &e, &[]))?;
            for p in page.parameters() {
                out.push(PolicyDocument {
                    name: p.name().unwrap_or_default().to_owned(),
                    version: p.version(),
                    body: p.value().unwrap_or_default().to_owned(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn secret(&self, name: &str) -> PortResult<Secret> {
        let out = self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| map_err("ssm", "GetParameter", &e, &["ParameterNotFound"]))?;
        Ok(Secret::new(
            out.parameter().and_then(|p| p.value()).unwrap_or_default(),
        ))
    }

    async fn create_secret(&self, name: &str, value: &Secret) -> PortResult<bool> {
        // Without `overwrite`, PutParameter refuses a name that exists with
        // ParameterAlreadyExists (AWS SSM API reference, PutParameter: "Overwrite … Default:
        // false"): the first replica's key wins and the others read it.
        let put = self
            .client
            .put_parameter()
            .name(name)
            .value(value.expose())
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .description("tugboat: the key that seals its records in GitHub")
            .overwrite(false)
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_parameter_already_exists()) =>
            {
                Ok(false)
            }
            Err(e) => Err(map_err("ssm", "PutParameter", &e, &[])),
        }
    }
}
