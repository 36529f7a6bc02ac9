//! The labelled PRs read at a cycle's start (`watch`), and one member's verification with
//! Argo CD (`verify`): polled until it runs the merge Synced and Healthy, fails, or times
//! out. What is done with the outcome is `verified`'s and `landed`'s.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::evidence::PromotionState;
use super::{At, Engine, EnvCtx, Mode, Step, StepError, Verification};
use crate::domain::chatops;
use crate::domain::deploy::{self, Evidence, Listed, Observation, OperationView, Pause, Verdict};
use crate::domain::image::{self, ImageRef};
use crate::ports::{AppEvents, AppStatus, ErrorKind, SyncStart};
use futures_util::StreamExt;

use super::records::MARKED_BAD;
pub use super::watch::{BAD, DEPLOYED, ROLLBACK, VERIFYING, Watch, Watched};

/// How long opening the application event stream may take before polling is used instead.
const STREAM_OPEN: Duration = Duration::from_secs(2);
/// How long after a failed attempt to open an event stream verifications poll before they
/// try again (Argo CD may be upgraded, a proxy reconfigured).
const STREAM_RETRY: Duration = Duration::from_secs(600);

/// How long a replica's claim to report a verification keeps the others from reporting it.
pub(super) const REPORT_CLAIM_TTL: Duration = Duration::from_secs(120);
/// Starts tugboat's verification report: a comment when the promotion failed (looked for so
/// that nothing is reported twice), the PR body's last section when it turned Healthy.
pub(super) const REPORTED: &str = "<!-- tugboat:verified ";

/// What a verification remembers from one look to the next.
#[derive(Default)]
struct Watching {
    /// tugboat asked Argo CD to sync the merge (once per verification).
    synced: bool,
    /// Since when the synced merge's objects have been `Degraded` or `Missing`.
    degraded_since: Option<Instant>,
}

/// One look at the application during a verification.
enum Look {
    /// Healthy; whether the application syncs by itself, and what showed the image runs.
    Healthy(bool, Evidence),
    Done(Verification),
    /// Not there yet, and why.
    Waiting(String),
    /// A Rollout paused at a step (and whether the application syncs by itself): waited
    /// on, never failed for; `on_pause` says what it means.
    Paused(String, bool),
    /// A hook of the merge's sync runs: waited on up to `hook_timeout` after the merge.
    Hook(String),
}

/// Whether the application syncs by itself, as a look saw it.
fn look_automated(look: &Look) -> bool {
    matches!(look, Look::Healthy(true, _) | Look::Paused(_, true))
}

/// What the last look found still under way, when the health timeout comes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pending {
    Nothing,
    Paused,
    Hook,
}

/// A verification under way: its bounds, and what the looks so far saw.
struct Verifying {
    start: Instant,
    deadline: Instant,
    /// Until the next look (backs off while Argo CD cannot be read).
    delay: Duration,
    watching: Watching,
    /// What the last look said.
    last: String,
    /// Whether the last look read the application (a timeout then is a failure).
    seen: bool,
    pending: Pending,
    /// How many looks it took so far.
    looks: u32,
    /// The application's event stream, while open.
    events: Option<AppEvents>,
    /// Whether to (re)open it.
    watchable: bool,
    /// The status the stream brought for the next look.
    streamed: Option<AppStatus>,
}

impl Verifying {
    fn new(timeout: Duration, poll: Duration) -> Self {
        let start = Instant::now();
        Self {
            start,
            deadline: start + timeout,
            delay: poll,
            watching: Watching::default(),
            last: String::new(),
            seen: false,
            pending: Pending::Nothing,
            looks: 0,
            events: None,
            watchable: true,
            streamed: None,
        }
    }
}

/// A duration as people read it ("1h 30m").
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

impl Engine {
    /// Read the labelled PRs and the holds of this cycle. Plan mode only needs the bad marks,
    /// the deployed promotions and the holds.
    ///
    /// The listings are read one after another while other replicas (or a write answered
    /// late) move labels, in the order a promotion moves: `verifying` before `deployed`
    /// and `bad`. A promotion whose verification ends between two reads is then listed
    /// twice, never in neither (read the other way round, it was missing from both, and its
    /// environment was held for a manual change that was tugboat's own merge); the later
    /// reads win, so it is dropped from `verifying`.
    pub(super) async fn watch(&self, mode: Mode) -> Result<Watch, StepError> {
        if mode == Mode::Plan {
            return Ok(Watch {
                deployed: self.labelled(DEPLOYED, false).await?,
                bad: self.labelled(BAD, false).await?,
                holds: self.holds().await?,
                ..Watch::default()
            });
        }
        let mut verifying = self.labelled(VERIFYING, false).await?;
        let deployed = self.labelled(DEPLOYED, false).await?;
        let bad = self.labelled(BAD, false).await?;
        let ended: std::collections::HashSet<(u64, &str, &str)> = deployed
            .iter()
            .chain(&bad)
            .map(|w| {
                (
                    w.pr.number,
                    w.state.service.as_str(),
                    w.state.environment.as_str(),
                )
            })
            .collect();
        verifying.retain(|w| {
            !ended.contains(&(
                w.pr.number,
                w.state.service.as_str(),
                w.state.environment.as_str(),
            ))
        });
        Ok(Watch {
            verifying,
            deployed,
            bad,
            holds: self.holds().await?,
            open: self.labelled("tugboat", true).await?,
            lifted: std::sync::Mutex::default(),
        })
    }

    /// When tugboat marked promotion `number` bad (its latest "Marked bad" comment): the
    /// moment the failure a rollback undoes was detected. Read from the PR, so a rollback
    /// after a restart measures from the same moment; `None` (and a warning) when unreadable.
    pub(super) async fn marked_bad_at(&self, number: u64) -> Option<DateTime<Utc>> {
        match self.own_comments(number).await {
            Ok(comments) => comments
                .into_iter()
                .filter(|c| c.body.starts_with(MARKED_BAD))
                .map(|c| c.created_at)
                .max(),
            Err(e) => {
                tracing::warn!(pr = number, error = %e, "could not read when the promotion was marked bad");
                None
            }
        }
    }

    /// Whether tugboat reported a verification on the PR already, and if so whether healthy.
    pub(super) async fn reported(&self, number: u64) -> Result<Option<bool>, StepError> {
        let comments = self.own_comments(number).await.at(Step::Verify)?;
        Ok(comments
            .into_iter()
            .find_map(|c| c.body.find(REPORTED).map(|i| c.body[i..].to_owned()))
            .map(|report| report.contains("\"healthy\":true")))
    }

    /// tugboat's own comments on PR `number`.
    pub(super) async fn own_comments(
        &self,
        number: u64,
    ) -> Result<Vec<chatops::Comment>, crate::ports::PortError> {
        let forge = &self.ports.forge;
        let me = forge.me().await?;
        let mut comments = forge.comments(number).await?;
        comments.retain(|c| c.user == me);
        Ok(comments)
    }

    /// Whether any of `revisions` is `sha` or descends from it (Helm chart versions of a
    /// multi-source application never are).
    async fn at_merge(&self, revisions: &[&str], sha: &str) -> bool {
        for rev in revisions.iter().filter(|r| deploy::is_commit(r)) {
            if self.ports.repo.includes(rev, sha).await.unwrap_or(false) {
                return true;
            }
        }
        false
    }

    /// Look at the application (at each change its event stream brings, else every poll
    /// interval) until it runs `image` at `sha`, Synced and Healthy, or fails, or the
    /// environment's health timeout passes (a refresh at most once per
    /// `argocd.refresh_interval`). Syncs the merge itself when the policy says `sync: true`
    /// and nothing else does. An Argo CD that cannot be read, a paused Rollout and a running
    /// hook within their own bounds are `Unknown` at the timeout, never a failure that would
    /// roll back: the next cycle looks again.
    pub(super) async fn verify(
        &self,
        cx: &EnvCtx<'_>,
        sha: &str,
        image: &ImageRef,
        merged_at: DateTime<Utc>,
    ) -> Verification {
        let poll = self.cfg.argocd.poll_interval;
        let mut v = Verifying::new(cx.env_policy.health_timeout, poll);
        loop {
            // A change the event stream brought, else a read (a refresh when one is due).
            let read = match v.streamed.take() {
                Some(status) => Ok(status),
                None => {
                    let refresh = self.refresh_due(cx.app, v.looks == 0);
                    self.ports.deployer.app(cx.app, refresh).await
                }
            };
            v.looks += 1;
            match read {
                Ok(s) => {
                    v.delay = poll;
                    let look = self
                        .look(cx, &s, sha, image, merged_at, &mut v.watching)
                        .await;
                    if let Some(done) = self.looked(cx, look, merged_at, &mut v) {
                        return done;
                    }
                }
                // A refused token or a missing application does not heal by waiting.
                Err(e) if matches!(e.kind, ErrorKind::Denied | ErrorKind::NotFound) => {
                    return Verification::Unknown {
                        reason: e.to_string(),
                    };
                }
                Err(e) => {
                    v.delay = (v.delay * 2).min(poll * 8);
                    (v.last, v.seen, v.pending) = (e.to_string(), false, Pending::Nothing);
                }
            }
            if Instant::now() >= v.deadline {
                return self.timed_out(cx, &v, merged_at);
            }
            self.wait(cx, &mut v).await;
        }
    }

    /// Until the next look: the next change on the application's event stream (opened at
    /// the first wait), or the poll interval where there is none (backing off while Argo CD
    /// cannot be read). With a stream, a look by reading comes at the latest when a
    /// Degraded's grace ends or a refresh is due, whatever the stream says.
    async fn wait(&self, cx: &EnvCtx<'_>, v: &mut Verifying) {
        let left = v.deadline.saturating_duration_since(Instant::now());
        if v.events.is_none() && v.watchable {
            v.events = self.open_events(cx.app, left).await;
            v.watchable = v.events.is_some();
        }
        let Some(events) = v.events.as_mut() else {
            tokio::time::sleep(v.delay.min(left)).await;
            return;
        };
        let quiet = match v.watching.degraded_since {
            Some(since) => {
                let grace = cx.env_policy.degraded_grace.saturating_sub(since.elapsed());
                grace + self.cfg.argocd.poll_interval
            }
            None => self.cfg.argocd.refresh_interval,
        };
        match tokio::time::timeout(quiet.min(left), events.next()).await {
            Ok(Some(Ok(status))) => v.streamed = Some(status),
            Ok(Some(Err(e))) => {
                tracing::info!(app = cx.app, error = %e, "the event stream failed; polling");
                (v.events, v.watchable) = (None, false);
            }
            // Ended (its time bound, a proxy's): polling for the rest of this verification.
            Ok(None) => (v.events, v.watchable) = (None, false),
            Err(_) => {} // nothing changed for a while: a look by reading
        }
    }

    /// The application's event stream for up to `lasting`, unless the configuration turns it
    /// off or a recent attempt found none (then `None` for [`STREAM_RETRY`]: polling).
    async fn open_events(&self, app: &str, lasting: Duration) -> Option<AppEvents> {
        if !self.cfg.argocd.watch {
            return None;
        }
        if let Ok(until) = self.stream_refused.lock()
            && until.is_some_and(|t| Instant::now() < t)
        {
            return None;
        }
        // Argo CD answers a watch with its headers at once; a proxy that buffers the stream
        // holds them back until it ends.
        let why = match tokio::time::timeout(STREAM_OPEN, self.ports.deployer.watch(app, lasting))
            .await
        {
            Ok(Ok(events)) => return Some(events),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {}", human(STREAM_OPEN)),
        };
        tracing::info!(app, why = %why, "no application event stream; polling for the next {}", human(STREAM_RETRY));
        if let Ok(mut until) = self.stream_refused.lock() {
            *until = Some(Instant::now() + STREAM_RETRY);
        }
        None
    }

    /// Whether this look at `app` asks Argo CD for a refresh: a verification's first look
    /// does (without a Git webhook, that is what compares the application to the merge),
    /// then at most one per `argocd.refresh_interval` for the application (the looks between
    /// read the status as the controller keeps it: health and operations follow the cluster
    /// without a refresh).
    fn refresh_due(&self, app: &str, first: bool) -> bool {
        let Ok(mut refreshed) = self.refreshed.lock() else {
            return true;
        };
        let due = first
            || refreshed
                .get(app)
                .is_none_or(|when| when.elapsed() >= self.cfg.argocd.refresh_interval);
        if due {
            refreshed.insert(app.to_owned(), Instant::now());
        }
        due
    }

    /// What a look says for the verification: its end, or what it waits on.
    fn looked(
        &self,
        cx: &EnvCtx<'_>,
        look: Look,
        merged_at: DateTime<Utc>,
        v: &mut Verifying,
    ) -> Option<Verification> {
        let (after, automated) = (v.start.elapsed(), look_automated(&look));
        let healthy = |evidence| Verification::Healthy {
            after,
            automated: Some(automated),
            evidence: Some(evidence),
        };
        v.seen = true;
        v.pending = Pending::Nothing;
        let p = cx.env_policy;
        match look {
            Look::Healthy(_, evidence) => Some(healthy(evidence)),
            Look::Done(done) => Some(done),
            Look::Waiting(why) => {
                v.last = why;
                None
            }
            Look::Hook(why) => {
                (v.last, v.pending) = (why, Pending::Hook);
                None
            }
            Look::Paused(why, _) => {
                let since = self.since(merged_at);
                match deploy::on_pause(p.on_pause, since, p.pause_timeout) {
                    Pause::Accept => Some(healthy(Evidence::PausedAccepted)),
                    Pause::Hold => Some(Verification::Paused {
                        reason: format!(
                            "{why}, {} after the merge (pause_timeout {})",
                            human(since),
                            human(p.pause_timeout)
                        ),
                    }),
                    Pause::Wait => {
                        failpoint!("paused");
                        (v.last, v.pending) = (why, Pending::Paused);
                        None
                    }
                }
            }
        }
    }

    /// How long ago the merge was, on the engine's clock (a restart measures the same).
    fn since(&self, merged_at: DateTime<Utc>) -> Duration {
        (self.clock.now() - merged_at).to_std().unwrap_or_default()
    }

    /// The end of a verification at its health timeout: a failure when Argo CD was read and
    /// the merge is not Healthy; not known when it could not be read, a Rollout pauses
    /// (within `pause_timeout`), or a hook still runs within `hook_timeout` of the merge.
    fn timed_out(&self, cx: &EnvCtx<'_>, v: &Verifying, merged_at: DateTime<Utc>) -> Verification {
        let p = cx.env_policy;
        let waited = human(p.health_timeout);
        let since = self.since(merged_at);
        let reason = format!("timed out after {waited} ({})", v.last);
        match v.pending {
            // Argo Rollouts pauses a canary for as long as its steps say, or until a person
            // promotes it (argo-cd#25054): `on_pause` says when that is held.
            Pending::Paused => Verification::Unknown {
                reason: format!(
                    "{}; waited {waited}, looking again next cycle (held once paused {} after the merge)",
                    v.last,
                    human(p.pause_timeout)
                ),
            },
            Pending::Hook if since < p.hook_timeout => Verification::Unknown {
                reason: format!(
                    "{}; waited {waited}, looking again next cycle (up to hook_timeout, {} after the merge)",
                    v.last,
                    human(p.hook_timeout)
                ),
            },
            Pending::Hook => Verification::Failed {
                reason: format!(
                    "{}, still {} after the merge (hook_timeout {})",
                    v.last,
                    human(since),
                    human(p.hook_timeout)
                ),
            },
            Pending::Nothing if v.seen => Verification::Failed { reason },
            Pending::Nothing => Verification::Unknown { reason },
        }
    }

    /// Judge one reading of the application; ask Argo CD to sync the merge when the policy
    /// says so and nothing else will.
    async fn look(
        &self,
        cx: &EnvCtx<'_>,
        s: &AppStatus,
        sha: &str,
        image: &ImageRef,
        merged_at: DateTime<Utc>,
        watching: &mut Watching,
    ) -> Look {
        let compared_at_merge = self.at_merge(&s.all_revisions(), sha).await;
        let op = match &s.operation {
            Some(o) => {
                let revs: Vec<&str> = o.revisions.iter().map(String::as_str).collect();
                Some(OperationView {
                    phase: o.phase,
                    message: o.message.as_deref(),
                    for_merge: self.at_merge(&revs, sha).await,
                    retries: o.retry_count,
                    hook: o.hook.as_deref(),
                })
            }
            None => None,
        };
        let error = s.error_condition();
        let mut obs = Observation {
            sync_status: s.sync_status,
            health: s.health,
            health_message: s.health_message.as_deref(),
            compared_at_merge,
            reconciled_after_merge: s
                .reconciled_at
                .is_some_and(|t| t.timestamp() >= merged_at.timestamp()),
            operation: op,
            listed: listed(&s.images, image),
            condition_error: error.as_deref(),
            degraded_for: Duration::ZERO,
            degraded_grace: cx.env_policy.degraded_grace,
            retry_limit: cx.env_policy.retry_limit,
            tree: None,
        };
        if obs.merge_synced() && obs.unhealthy() {
            let since = *watching.degraded_since.get_or_insert_with(Instant::now);
            obs.degraded_for = since.elapsed();
            failpoint!("degraded");
        } else {
            watching.degraded_since = None;
        }
        match self.judged(cx, &mut obs, image).await {
            Verdict::Healthy(evidence) => {
                if evidence != Evidence::Summary {
                    tracing::info!(
                        app = cx.app,
                        evidence = evidence.as_str(),
                        "Healthy without the summary's image list"
                    );
                }
                Look::Healthy(s.automated, evidence)
            }
            Verdict::Failed(reason) => Look::Done(Verification::Failed { reason }),
            Verdict::Paused(why) => Look::Paused(why, s.automated),
            Verdict::Hook(why) => Look::Hook(why),
            Verdict::Waiting(why) => {
                // Argo CD's comparison moves to the merge on a refresh, before any sync: what
                // tells that the merge was synced is an operation for it (argo-cd#7629).
                let busy = op.is_some_and(|o| o.phase.running());
                let merge_operated = op.is_some_and(|o| o.for_merge);
                let wanted = !watching.synced && !merge_operated && !s.automated && !busy;
                if cx.env_policy.sync && wanted {
                    self.sync_merge(cx, sha, why, &mut watching.synced).await
                } else {
                    Look::Waiting(why)
                }
            }
        }
    }

    /// Judge an observation; when the summary lists nothing of the promoted repository and
    /// all else says Healthy, read the resource tree and judge by it.
    async fn judged(
        &self,
        cx: &EnvCtx<'_>,
        obs: &mut Observation<'_>,
        image: &ImageRef,
    ) -> Verdict {
        let verdict = deploy::judge(obs);
        if verdict != Verdict::Healthy(Evidence::SyncedMerge) {
            return verdict;
        }
        match self.ports.deployer.workload_images(cx.app).await {
            Ok(images) => {
                obs.tree = Some(listed(&images, image));
                deploy::judge(obs)
            }
            Err(e) => {
                tracing::warn!(app = cx.app, error = %e, "could not read the resource tree");
                verdict
            }
        }
    }

    /// Ask Argo CD to sync the merge (once per verification).
    async fn sync_merge(&self, cx: &EnvCtx<'_>, sha: &str, why: String, synced: &mut bool) -> Look {
        match self.ports.deployer.sync(cx.app, sha).await {
            Ok(SyncStart::Started) => {
                tracing::info!(revision = %sha, "asked Argo CD to sync the merge");
                *synced = true;
                Look::Waiting(why)
            }
            Ok(SyncStart::Busy(m)) => Look::Waiting(format!("{why}; {m}")),
            Err(e) if e.kind == ErrorKind::Denied => Look::Done(Verification::Unknown {
                reason: e.to_string(),
            }),
            Err(e) => Look::Waiting(format!("{why}; sync refused: {e}")),
        }
    }
}

/// When the image a promotion deployed was pushed, from this cycle's registry listing.
pub(super) fn pushed_at(cx: &EnvCtx<'_>, state: &PromotionState) -> Option<DateTime<Utc>> {
    let digest = state.digest.as_ref()?;
    cx.images
        .iter()
        .find(|i| &i.digest == digest)
        .map(|i| i.pushed_at)
}

/// What `summary.images` says of `image`: listed, its repository at other references (the
/// old pods), or nothing of its repository.
fn listed(images: &[String], image: &ImageRef) -> Listed {
    if image::runs(images, image) {
        Listed::Promoted
    } else if image::of_repository(images, &image.repository)
        .next()
        .is_some()
    {
        Listed::Other
    } else {
        Listed::Nothing
    }
}
