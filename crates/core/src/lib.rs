//! tugboat's pure core: everything that decides, and nothing that does.
//!
//! # Layout
//! - [`domain`]: image references, tag selection and ordering, the scan gate, the policy
//!   documents, the plan, comment commands, Argo CD judgements, schedules and windows, the
//!   hidden state blocks of PR and issue bodies, and the classification of webhook events.
//! - [`manifest`]: the format-preserving YAML reader and editor (text in, text out).
//!
//! This crate has no runtime, no network client and no clock (chrono is built without its
//! `clock` feature): whatever needs the time takes it as an argument. The daemon crate
//! (`tugboat`) re-exports both modules, so `tugboat::domain` and `tugboat::manifest` are these.

pub mod domain;
pub mod manifest;
