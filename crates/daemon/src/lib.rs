//! tugboat: promotes container images from AWS ECR into Kubernetes through GitOps pull
//! requests, gated on scan findings and verified with Argo CD.
//!
//! # Layout
//! - [`domain`], [`manifest`]: the pure core, re-exported from the `tugboat-core` crate
//!   (`crates/core`), which has no runtime, no network client and no clock.
//! - [`ports`]: the narrow traits the engine sees; [`adapters`]: one file per outside system,
//!   the only code that uses their client crates.
//! - [`engine`]: the reconcile cycle and its steps, the evidence it writes, the rescan and the
//!   scheduler.
//! - [`daemon`]: `tugboat run`, the loop of cycles, scheduled jobs and rescans; [`clock`]: the
//!   one source of the time of day.
//! - [`config`] (the only reader of files and the environment), [`secret`], [`app`] (wiring),
//!   [`server`] and [`webhook`] (HTTP), [`metrics`] and [`telemetry`], [`report`] (tables).
//!
//! The sandbox (wire-level stand-ins for ECR, SSM, GitHub and Argo CD) and the demo are the
//! crate `tugboat-sandbox`, which depends on this one: this library cannot import them.
//!
//! ARCHITECTURE.md has the code map and the invariants.

/// A failpoint: a step where the crash tests stop tugboat (`fail::cfg(name, "panic")`), to
/// prove that a tugboat killed there is finished by the next one. Nothing at all unless the
/// crate is built with its `failpoints` feature (the tests' build only).
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name);
    };
}

/// In a build with failpoints (the tests' binary), `TUGBOAT_ABORT_AT=<failpoint>` makes the
/// process die at that step as `kill -9` would: no destructor runs, no buffer is flushed, no
/// lock is let go of but by the kernel. The crash tests restart the real binary after it. In
/// every other build this does nothing.
pub fn abort_at_failpoint_from_env() {
    #[cfg(feature = "failpoints")]
    if let Ok(point) = std::env::var("TUGBOAT_ABORT_AT") {
        let name = point.clone();
        let set = fail::cfg_callback(point, move || {
            eprintln!("tugboat: aborted at the failpoint {name}");
            std::process::abort();
        });
        if let Err(e) = set {
            eprintln!("tugboat: TUGBOAT_ABORT_AT: {e}");
        }
    }
}

pub mod adapters;
pub mod app;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod doctor;
pub mod engine;
pub mod events;
pub mod init;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod once;
pub mod ports;
pub mod report;
pub mod secret;
pub mod server;
pub mod signature;
pub mod telemetry;
pub mod trust;
pub mod webhook;

pub use tugboat_core::{domain, manifest};
