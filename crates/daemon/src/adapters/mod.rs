//! One adapter per outside system; the only modules that import the client crates.
pub mod argocd;
pub mod aws;
pub mod ecr;
pub mod eventbridge;
pub mod git;
mod git_http;
pub mod github;
pub mod github_app;
pub mod lease;
pub mod notify;
pub mod oci;
pub mod relay;
pub mod sqs;
pub mod ssm;
pub mod tls;
