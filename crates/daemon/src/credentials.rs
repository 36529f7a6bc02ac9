//! Secrets that rotate: a token kept in a file or in SSM is read again when it may have
//! changed, so a rotation reaches a running tugboat without a restart.
//!
//! - a file is read again when its modification time or size changes (a Kubernetes Secret
//!   volume swaps its files in place);
//! - an SSM parameter is read again after `refresh` (five minutes unless configured);
//! - both are read again at once when the system that uses the token refused it
//!   ([`Rotating::refused`]), so a rotation costs at most one refused request;
//! - an environment variable cannot change under a running process and is read once.
//!
//! A read that fails keeps the value in hand (it may still be valid) and says so in the log,
//! by the reference's name only; the value itself is never logged.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::{SecretRef, read_local_secret};
use crate::domain::signature::KeySource;
use crate::ports::{ErrorKind, ParameterStore, PortError, PortResult};
use crate::secret::Secret;

/// Where an adapter gets the token it sends: the one to use now, and what to do when the
/// server refused it.
#[async_trait::async_trait]
pub trait Token: Send + Sync {
    /// The token to send now.
    async fn token(&self) -> PortResult<Secret>;
    /// The server refused `used` (HTTP 401): a newer token to retry with once, or `None`
    /// when there is none.
    async fn refused(&self, used: &Secret) -> Option<Secret>;
}

#[async_trait::async_trait]
impl Token for Rotating {
    async fn token(&self) -> PortResult<Secret> {
        Ok(self.current().await)
    }

    async fn refused(&self, used: &Secret) -> Option<Secret> {
        Rotating::refused(self, used).await
    }
}

/// How often a secret kept in SSM is read again unless configured otherwise.
pub const SSM_REFRESH: Duration = Duration::from_secs(300);

/// The least time between two reads that refusals cause: a stream of requests with a bad
/// signature or a revoked token cannot turn into a stream of SSM reads.
pub const REREAD_GAP: Duration = Duration::from_secs(10);

/// A token read from its reference, and read again when it may have rotated.
pub struct Rotating {
    reference: SecretRef,
    /// The configuration key it comes from (`github.token`), for errors and logs.
    name: Cow<'static, str>,
    ssm: Option<Arc<dyn ParameterStore>>,
    refresh: Duration,
    state: Mutex<State>,
}

struct State {
    value: Secret,
    read_at: Instant,
    /// A file's modification time and size when it was read.
    stamp: Option<(SystemTime, u64)>,
    /// When a refusal last made it read the source again.
    refusal_read: Option<Instant>,
}

impl std::fmt::Debug for Rotating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotating")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Rotating {
    /// Read `reference` (named `name` in errors) for the first time: an error if it has no
    /// value. `ssm` reads `ssm` references.
    pub async fn read(
        reference: SecretRef,
        name: impl Into<Cow<'static, str>>,
        ssm: Option<Arc<dyn ParameterStore>>,
        refresh: Duration,
    ) -> PortResult<Self> {
        let me = Self {
            reference,
            name: name.into(),
            ssm,
            refresh,
            state: Mutex::new(State {
                value: Secret::new(""),
                read_at: Instant::now(),
                stamp: None,
                refusal_read: None,
            }),
        };
        let (value, stamp) = me.load().await?;
        *me.state.lock().await = State {
            value,
            read_at: Instant::now(),
            stamp,
            refusal_read: None,
        };
        Ok(me)
    }

    /// A secret that never changes (a test's, or one given on the command line).
    pub fn fixed(value: Secret, name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reference: SecretRef::Env(String::new()),
            name: name.into(),
            ssm: None,
            refresh: Duration::MAX,
            state: Mutex::new(State {
                value,
                read_at: Instant::now(),
                stamp: None,
                refusal_read: None,
            }),
        }
    }

    /// A secret kept in the file at `path` (the tests').
    #[cfg(test)]
    pub(crate) async fn file(path: &std::path::Path, name: &'static str) -> PortResult<Self> {
        Self::read(SecretRef::File(path.to_owned()), name, None, SSM_REFRESH).await
    }

    /// The configuration key this secret comes from.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn error(&self, message: String) -> PortError {
        PortError::new(
            "secret",
            "read",
            ErrorKind::Rejected,
            format!("{}: {message}", self.name),
        )
    }

    async fn load(&self) -> PortResult<(Secret, Option<(SystemTime, u64)>)> {
        match &self.reference {
            SecretRef::Ssm(parameter) => {
                let ssm = self.ssm.as_ref().ok_or_else(|| {
                    self.error(format!("SSM parameter {parameter} and no SSM client"))
                })?;
                let value = ssm.secret(parameter).await.map_err(|e| {
                    PortError::new(
                        "secret",
                        "read",
                        e.kind,
                        format!("{} (SSM parameter {parameter}): {}", self.name, e.message),
                    )
                })?;
                if value.expose().is_empty() {
                    return Err(self.error(format!("SSM parameter {parameter} is empty")));
                }
                Ok((value, None))
            }
            SecretRef::File(path) => {
                let before = stamp(path);
                let value = read_local_secret(&self.reference, |_| None)
                    .map_err(|e| self.error(e))?
                    .filter(|v| !v.expose().is_empty())
                    .ok_or_else(|| self.error(format!("{} is empty", path.display())))?;
                Ok((value, before))
            }
            SecretRef::Env(var) => {
                let value = read_local_secret(&self.reference, |k| std::env::var(k).ok())
                    .map_err(|e| self.error(e))?
                    .ok_or_else(|| self.error(format!("{var} has no value")))?;
                Ok((value, None))
            }
        }
    }

    /// Whether the source may hold a newer value than the one read at `state`.
    fn may_have_changed(&self, state: &State) -> bool {
        match &self.reference {
            SecretRef::File(path) => stamp(path) != state.stamp,
            SecretRef::Ssm(_) => state.read_at.elapsed() >= self.refresh,
            SecretRef::Env(_) => false,
        }
    }

    /// Read the source again into `state`; on failure keep the value in hand.
    async fn reload(&self, state: &mut State, why: &str) {
        match self.load().await {
            Ok((value, stamp)) => {
                if value != state.value {
                    tracing::info!(secret = %self.name, why, "a rotated secret was read");
                }
                state.value = value;
                state.read_at = Instant::now();
                state.stamp = stamp;
            }
            Err(e) => {
                // Try again on the next use, not at once on every request.
                state.read_at = Instant::now();
                tracing::warn!(secret = %self.name, why, error = %e.message, "cannot read the secret again; keeping the one in hand");
            }
        }
    }

    /// The value to use now: read again first when its source may have changed.
    pub async fn current(&self) -> Secret {
        let mut state = self.state.lock().await;
        if self.may_have_changed(&state) {
            self.reload(&mut state, "its source changed").await;
        }
        state.value.clone()
    }

    /// The system that uses this secret refused `used`: read it again at once (unless a
    /// refusal made it read less than [`REREAD_GAP`] ago). The new value when it differs (another request may
    /// have read it already), `None` when the source still holds the refused one.
    pub async fn refused(&self, used: &Secret) -> Option<Secret> {
        let mut state = self.state.lock().await;
        if state.value == *used
            && !matches!(self.reference, SecretRef::Env(_))
            && state
                .refusal_read
                .is_none_or(|at| at.elapsed() >= REREAD_GAP)
        {
            state.refusal_read = Some(Instant::now());
            self.reload(&mut state, "it was refused").await;
        }
        (state.value != *used).then(|| state.value.clone())
    }
}

/// The public keys the policy's `signatures.keys` name, each read once and then again as it
/// rotates (a [`Rotating`] per reference: a file when it changes, SSM after `refresh`).
pub struct PolicyKeys {
    ssm: Arc<dyn ParameterStore>,
    refresh: Duration,
    keys: Mutex<std::collections::HashMap<KeySource, Arc<Rotating>>>,
}

/// The most key references kept: a policy names a few; a policy edited for months may have
/// named more, which are dropped (and read again if named again).
const MOST_POLICY_KEYS: usize = 256;

impl PolicyKeys {
    pub fn new(ssm: Arc<dyn ParameterStore>, refresh: Duration) -> Self {
        Self {
            ssm,
            refresh,
            keys: Mutex::new(std::collections::HashMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl crate::ports::PublicKeys for PolicyKeys {
    async fn public_key(&self, source: &KeySource) -> PortResult<String> {
        let known = self.keys.lock().await.get(source).cloned();
        let key = match known {
            Some(k) => k,
            None => {
                let reference = match source {
                    KeySource::Ssm(n) => SecretRef::Ssm(n.clone()),
                    KeySource::File(p) => SecretRef::File(PathBuf::from(p)),
                };
                let name = format!("the policy's {source}");
                let read = Rotating::read(reference, name, Some(self.ssm.clone()), self.refresh);
                let k = Arc::new(read.await?);
                let mut keys = self.keys.lock().await;
                if keys.len() >= MOST_POLICY_KEYS {
                    keys.clear();
                }
                keys.insert(source.clone(), Arc::clone(&k));
                k
            }
        };
        Ok(key.current().await.expose().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::PolicyDocument;
    use std::sync::Mutex as StdMutex;

    /// SSM holding one parameter, counting its reads.
    #[derive(Default)]
    struct Store {
        value: StdMutex<String>,
        reads: StdMutex<u32>,
    }

    #[async_trait::async_trait]
    impl ParameterStore for Store {
        async fn documents(&self, _: &str) -> PortResult<Vec<PolicyDocument>> {
            Ok(Vec::new())
        }
        async fn secret(&self, _: &str) -> PortResult<Secret> {
            *self.reads.lock().unwrap() += 1;
            Ok(Secret::new(self.value.lock().unwrap().clone()))
        }
        async fn create_secret(&self, _: &str, _: &Secret) -> PortResult<bool> {
            unreachable!("rotation never creates a secret")
        }
    }

    #[tokio::test]
    async fn a_rotated_file_is_read_at_its_next_use_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let s = Rotating::file(&path, "github.token").await.unwrap();
        assert_eq!(s.current().await.expose(), "first");

        // A Kubernetes Secret volume swaps the file: a new one, of another size.
        std::fs::write(&path, "second-token\n").unwrap();
        assert_eq!(s.current().await.expose(), "second-token");
        assert_eq!(s.current().await.expose(), "second-token");
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_read_again_keeps_the_token_in_hand() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first").unwrap();
        let s = Rotating::file(&path, "github.token").await.unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(s.current().await.expose(), "first");
        // At first read, the same problem is an error naming the key and the file, not a value.
        let e = Rotating::file(&path, "github.token").await.unwrap_err();
        assert!(
            e.message
                .starts_with("github.token: cannot read secret file"),
            "{e}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_ssm_secret_is_read_again_after_the_refresh_interval_or_at_once_when_refused() {
        let store = Arc::new(Store::default());
        *store.value.lock().unwrap() = "one".into();
        let ssm: Arc<dyn ParameterStore> = store.clone();
        let s = Rotating::read(
            SecretRef::Ssm("/salon/tugboat/github-token".into()),
            "github.token",
            Some(ssm),
            Duration::from_secs(300),
        )
        .await
        .unwrap();
        *store.value.lock().unwrap() = "two".into();

        // Within the interval: the value in hand, no read.
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(s.current().await.expose(), "one");
        assert_eq!(*store.reads.lock().unwrap(), 1);

        // Refused: read at once, and the new value is handed over for the retry.
        assert_eq!(
            s.refused(&Secret::new("one")).await.unwrap().expose(),
            "two"
        );
        assert_eq!(*store.reads.lock().unwrap(), 2);
        // A second refusal of the old value (a concurrent request) reads nothing more.
        assert_eq!(
            s.refused(&Secret::new("one")).await.unwrap().expose(),
            "two"
        );
        assert_eq!(*store.reads.lock().unwrap(), 2);
        // The new value refused as well: not read again within the gap, then once more.
        assert!(s.refused(&Secret::new("two")).await.is_none());
        assert_eq!(*store.reads.lock().unwrap(), 2);
        tokio::time::advance(REREAD_GAP).await;
        assert!(s.refused(&Secret::new("two")).await.is_none());
        assert_eq!(*store.reads.lock().unwrap(), 3);

        // After the interval, the next use reads it again.
        *store.value.lock().unwrap() = "three".into();
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(s.current().await.expose(), "three");
        assert_eq!(*store.reads.lock().unwrap(), 4);
    }
}
