//! One adapter per outside system; the only modules that import the client crates.
pub mod argocd;
pub mod aws;
pub mod ecr;
pub mod git;
pub mod github;
pub mod lease;
pub mod ssm;
