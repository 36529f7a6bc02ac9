//! One replica of the soak: its configuration and the `tugboat run` process running it,
//! killed with `kill -9` and sampled for memory and open files from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::Sample;
use crate::WithoutHarnessVars;

/// One replica: its configuration and the process running it.
pub(super) struct Replica {
    pub(super) name: &'static str,
    pub(super) port: u16,
    pub(super) config: PathBuf,
    pub(super) log: PathBuf,
    pub(super) child: Option<Child>,
    pub(super) started: Instant,
    pub(super) incarnation: usize,
}

impl Replica {
    pub(super) fn spawn(&mut self, binary: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .ok();
        let stderr = log.map_or_else(Stdio::null, Stdio::from);
        let child = Command::new(binary)
            .without_harness_vars()
            .args(["run", "--config"])
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("TUGBOAT_SOAK_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .env("NO_COLOR", "1")
            // As the image runs it (Dockerfile: glibc's arenas capped at two), so that the
            // memory curve is the one a cluster sees.
            .env("MALLOC_ARENA_MAX", "2")
            .env_remove("TUGBOAT_ABORT_AT")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn();
        match child {
            Ok(c) => self.child = Some(c),
            Err(e) => eprintln!("soak: cannot start {}: {e}", self.name),
        }
        self.started = Instant::now();
        self.incarnation += 1;
    }

    /// `kill -9`, reaped.
    pub(super) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(super) fn sample(&self) -> Option<Sample> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
        Some(Sample {
            uptime: self.started.elapsed(),
            rss_kib,
            fds,
        })
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}
