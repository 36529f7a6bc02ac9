//! What tugboat needs to trust only what it wrote: the keys that seal its records
//! (`github.state_key`, `domain::seal`), and the log of records found forged, which the
//! engine, the forge's seal (`engine::seal`) and the ledger (`adapters::git`) share so that
//! one metric counts them all.
//!
//! The keys are read again every five minutes (a rotation reaches a running tugboat), and,
//! kept in SSM and absent, made from 32 random bytes and stored there by the first replica to
//! start (`PutParameter` without overwrite: the others read it).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::clock::Clock;
use crate::config::{SecretRef, read_local_secret};
use crate::credentials::SSM_REFRESH;
use crate::domain::provenance::Forgery;
use crate::domain::seal::Keys;
use crate::ports::{ErrorKind, ParameterStore, PortError, PortResult};
use crate::secret::Secret;

/// Where the keys come from, and the keys last read.
pub struct KeyRing {
    source: SecretRef,
    /// SSM, for a key kept there (none for [`KeyRing::local`]).
    params: Option<Arc<dyn ParameterStore>>,
    clock: std::sync::Mutex<Arc<dyn Clock>>,
    /// Whether this cycle may write (`Mode::Apply`): a plan neither stores a new key nor
    /// seals an earlier tugboat's record.
    writes: AtomicBool,
    held: tokio::sync::Mutex<Option<(Instant, Arc<Keys>)>>,
}

impl KeyRing {
    pub fn new(source: SecretRef, params: Arc<dyn ParameterStore>, clock: Arc<dyn Clock>) -> Self {
        Self::with_params(source, Some(params), clock)
    }

    /// Keys kept in a file or an environment variable, with no SSM client at hand (a key in
    /// SSM is then refused with that reason).
    pub fn local(source: SecretRef, clock: Arc<dyn Clock>) -> Self {
        Self::with_params(source, None, clock)
    }

    fn with_params(
        source: SecretRef,
        params: Option<Arc<dyn ParameterStore>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            source,
            params,
            clock: std::sync::Mutex::new(clock),
            writes: AtomicBool::new(true),
            held: tokio::sync::Mutex::new(None),
        }
    }

    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        if let Ok(mut c) = self.clock.lock() {
            *c = clock;
        }
    }

    pub fn set_writes(&self, writes: bool) {
        self.writes.store(writes, Ordering::Relaxed);
    }

    pub(crate) fn writes(&self) -> bool {
        self.writes.load(Ordering::Relaxed)
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.lock().map_or_else(|_| Utc::now(), |c| c.now())
    }

    /// The keys: those in hand while fresh, else read again (a failed read keeps those in
    /// hand and says so; with none in hand it fails the caller).
    pub async fn keys(&self) -> PortResult<Arc<Keys>> {
        let mut held = self.held.lock().await;
        if let Some((at, keys)) = held.as_ref()
            && (at.elapsed() < SSM_REFRESH || matches!(self.source, SecretRef::Env(_)))
        {
            return Ok(Arc::clone(keys));
        }
        match self.read().await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *held = Some((Instant::now(), Arc::clone(&keys)));
                Ok(keys)
            }
            Err(e) => match held.as_mut() {
                Some((at, keys)) => {
                    tracing::warn!(error = %e, "github.state_key: reading it again failed; keeping the keys in hand");
                    *at = Instant::now();
                    Ok(Arc::clone(keys))
                }
                None => Err(e),
            },
        }
    }

    async fn read(&self) -> PortResult<Keys> {
        let text = match &self.source {
            SecretRef::Ssm(name) => {
                let Some(params) = &self.params else {
                    return Err(refused(format!(
                        "github.state_key: {name} is in SSM, and this command has no SSM client"
                    )));
                };
                match params.secret(name).await {
                    Ok(text) => text,
                    Err(e) if e.kind == ErrorKind::NotFound => self.create(params, name).await?,
                    Err(e) => return Err(e),
                }
            }
            local => read_local_secret(local, |n| std::env::var(n).ok())
                .map_err(|e| refused(format!("github.state_key: {e}")))?
                .unwrap_or_else(|| Secret::new("")),
        };
        Keys::parse(text.expose()).map_err(|e| refused(format!("github.state_key: {e}")))
    }

    /// A new key, stored in SSM parameter `name` unless another replica stored one first
    /// (then that one). A plan stores nothing: its key lives as long as the process.
    async fn create(&self, params: &Arc<dyn ParameterStore>, name: &str) -> PortResult<Secret> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| refused(format!("github.state_key: no random bytes for a key: {e}")))?;
        let text = Secret::new(Keys::text(&hex::encode(bytes), self.now()));
        if !self.writes() {
            tracing::warn!(
                parameter = name,
                "github.state_key: no key yet; this plan uses one of its own, and the first run stores one"
            );
            return Ok(text);
        }
        if params.create_secret(name, &text).await? {
            tracing::info!(
                parameter = name,
                "github.state_key: made a new key and stored it in SSM"
            );
            Ok(text)
        } else {
            params.secret(name).await
        }
    }
}

fn refused(message: String) -> PortError {
    PortError::new("tugboat", "state_key", ErrorKind::Rejected, message)
}

/// The forged records found: each reported once in the log, and counted by kind until the
/// daemon takes the count for its metrics.
#[derive(Default)]
pub struct ForgeryLog {
    /// Forged records already reported: (PR or issue number, what gave it away).
    reported: Mutex<HashSet<String>>,
    /// Forged records found since the daemon last took the count, by kind.
    found: Mutex<BTreeMap<Forgery, u64>>,
}

/// How many forged records are remembered as reported (beyond it, one may be reported again).
const REPORTED_ENTRIES: usize = 4_096;

impl ForgeryLog {
    /// Whether `key` is said for the first time (and remember it).
    fn first(&self, key: String) -> bool {
        self.reported.lock().is_ok_and(|mut r| {
            if r.len() >= REPORTED_ENTRIES {
                r.clear();
            }
            r.insert(key)
        })
    }

    /// Report `record` ("PR #12", "tugboat-ledger:claims.json") as forged (`kind`, because
    /// `why`), once.
    pub fn report(&self, record: &str, kind: Forgery, why: &str) {
        if !self.first(format!("{}: {record}", kind.as_str())) {
            return;
        }
        tracing::warn!(
            record,
            kind = kind.as_str(),
            "ignoring {record}, which tugboat did not write: {why}"
        );
        self.count(kind);
    }

    /// Say once that `record` is not acted on, and why, when nothing was forged (a person
    /// reopened what tugboat closed): a warning, no count.
    pub fn notice(&self, record: &str, why: &str) {
        if self.first(format!("notice: {record}")) {
            tracing::warn!(record, "not acting on {record}: {why}");
        }
    }

    /// One more forged record of `kind` for the metrics.
    pub fn count(&self, kind: Forgery) {
        if let Ok(mut found) = self.found.lock() {
            *found.entry(kind).or_default() += 1;
        }
    }

    /// The forged records found since the last call, by kind.
    pub fn take(&self) -> BTreeMap<Forgery, u64> {
        self.found
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default()
    }
}
