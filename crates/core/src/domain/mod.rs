//! The pure domain core: image names, tag selection, the scan gate, the policy, the plan,
//! comment commands and the meaning of webhook deliveries.
//!
//! Nothing here performs I/O, reads the clock or the environment; every function is text or
//! values in, values out, so none of it can fail with an I/O error.

pub mod block;
pub mod chatops;
pub mod checks;
pub mod dashboard;
pub mod deploy;
pub mod discover;
pub mod doctor;
pub mod events;
pub mod gate;
pub mod group;
pub mod grpc_web;
pub mod hold;
pub mod image;
pub mod index;
pub mod lease;
pub mod markdown;
pub mod merge;
pub mod notify;
pub mod plan;
pub mod policy;
pub mod promotion;
pub mod provenance;
pub mod rescan;
pub mod rules;
pub mod schedule;
pub mod seal;
pub mod select;
pub mod signature;
pub mod webhook;
pub mod window;
