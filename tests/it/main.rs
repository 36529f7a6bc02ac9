//! The integration tests, built as one binary: each module is a topic, and the daemon, the
//! sandbox and the AWS SDKs are linked once for all of them instead of once per file.
//! `tests/crash.rs` stays a binary of its own: its failpoints are process wide, and a test
//! of another topic running beside it would be stopped by them.

#[path = "../common/mod.rs"]
mod common;

mod architecture;
mod argocd_quirks;
mod argocd_tls;
mod aws_adapters;
mod cli;
mod contract;
mod corpus;
mod deploy;
mod docs;
mod doctor;
mod e2e;
mod editor_properties;
mod faults;
mod forgery;
mod init;
mod notify;
mod policies;
mod port_contract;
mod protection;
mod registry;
mod replicas;
mod signatures;
