//! Leader election with a Kubernetes Lease (`coordination.k8s.io/v1`), as client-go does it:
//! the rule, without I/O. The leader renews the lease every `retry_period`; a candidate takes
//! it only when its holder has not renewed it for `lease_duration`; a leader that could not
//! renew for `renew_deadline` (shorter than the lease) stops acting before anyone else may
//! take the lease, so two tugboats never act at once.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// client-go's defaults: 15 s, 10 s, 2 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease not renewed stays its holder's.
    pub lease_duration: Duration,
    /// How long a leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the lease is tried (renewed, or watched for expiry).
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// Why these timings cannot work, if they cannot: the renew deadline must be shorter than
    /// the lease (or a leader would still act after another took over), and the retry period
    /// shorter than the deadline (or it would never renew in time).
    pub fn check(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "renew_deadline ({:?}) must be shorter than lease_duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(format!(
                "retry_period ({:?}) must be above zero and shorter than renew_deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// A Lease's spec, as the rule needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// `holderIdentity`; empty or absent when released.
    pub holder: Option<String>,
    /// `renewTime`.
    pub renewed: Option<DateTime<Utc>>,
    /// `leaseDurationSeconds`.
    pub duration_secs: Option<i32>,
    /// `leaseTransitions`.
    pub transitions: i32,
    /// `acquireTime`.
    pub acquired: Option<DateTime<Utc>>,
    /// Where the holder takes webhook deliveries its followers hand on (an annotation on the
    /// Lease, written by the holder with each renewal); `None` when it gave none.
    pub address: Option<String>,
}

/// What a candidate does with the lease now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write it as ours (taken over, or renewed): the record to write.
    Write(Record),
    /// Someone else holds it until `until`.
    Wait {
        holder: String,
        until: DateTime<Utc>,
    },
}

/// The next step for candidate `me` at `now`, given the lease as read (`None`: it does not
/// exist yet) and when this candidate first saw it as it is (`observed`). As in client-go, a
/// lease expires `leaseDurationSeconds` (its holder's, over ours) after it was *observed*
/// unchanged by this candidate's own clock, never by comparing the holder's `renewTime` with
/// it: clocks of two nodes may disagree.
pub fn step(
    lease: Option<&Record>,
    observed: DateTime<Utc>,
    me: &str,
    now: DateTime<Utc>,
    timing: &Timing,
) -> Step {
    let ours = |acquired: DateTime<Utc>, transitions: i32| Record {
        holder: Some(me.to_owned()),
        renewed: Some(now),
        duration_secs: Some(i32::try_from(timing.lease_duration.as_secs()).unwrap_or(i32::MAX)),
        transitions,
        acquired: Some(acquired),
        address: None,
    };
    let Some(lease) = lease else {
        return Step::Write(ours(now, 0));
    };
    let holder = lease.holder.as_deref().filter(|h| !h.is_empty());
    match holder {
        Some(h) if h == me => Step::Write(ours(lease.acquired.unwrap_or(now), lease.transitions)),
        Some(h) => {
            let duration = lease.duration_secs.map_or(timing.lease_duration, |s| {
                Duration::from_secs(u64::try_from(s).unwrap_or(0))
            });
            let until =
                observed + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
            if now < until {
                Step::Wait {
                    holder: h.to_owned(),
                    until,
                }
            } else {
                Step::Write(ours(now, lease.transitions + 1))
            }
        }
        // Released (or never held): take it.
        None => Step::Write(ours(now, lease.transitions + 1)),
    }
}

/// Whether a leader whose last successful renewal was at `renewed` may still act at `now`.
pub fn may_act(renewed: DateTime<Utc>, now: DateTime<Utc>, timing: &Timing) -> bool {
    now - renewed
        < chrono::Duration::from_std(timing.renew_deadline).unwrap_or(chrono::Duration::MAX)
}

/// The lease as its holder leaves it on shutdown: no holder, so a follower takes it at its
/// next try instead of waiting for it to expire.
pub fn released(lease: &Record) -> Record {
    Record {
        holder: None,
        duration_secs: Some(1),
        address: None,
        ..lease.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn held_by(who: &str, renewed: &str) -> Record {
        Record {
            holder: Some(who.into()),
            renewed: Some(t(renewed)),
            duration_secs: Some(15),
            transitions: 3,
            acquired: Some(t("2026-12-01T09:00:00Z")),
            address: None,
        }
    }

    #[test]
    fn a_free_expired_or_released_lease_is_taken_and_a_held_one_waited_for() {
        let timing = Timing::default();
        let now = t("2026-12-01T10:00:00Z");
        let Step::Write(new) = step(None, now, "a", now, &timing) else {
            panic!()
        };
        assert_eq!(
            (new.holder.as_deref(), new.transitions, new.duration_secs),
            (Some("a"), 0, Some(15))
        );

        // Observed unchanged since 09:59:50 by this candidate's clock (whatever its renewTime
        // says): it is b's until 10:00:05.
        let fresh = held_by("b", "2026-12-01T11:00:00Z");
        assert_eq!(
            step(Some(&fresh), t("2026-12-01T09:59:50Z"), "a", now, &timing),
            Step::Wait {
                holder: "b".into(),
                until: t("2026-12-01T10:00:05Z")
            }
        );
        let expired = held_by("b", "2026-12-01T09:00:00Z");
        let Step::Write(taken) = step(Some(&expired), t("2026-12-01T09:59:45Z"), "a", now, &timing)
        else {
            panic!()
        };
        assert_eq!(
            (taken.holder.as_deref(), taken.transitions, taken.acquired),
            (Some("a"), 4, Some(now))
        );

        let gone = released(&fresh);
        let Step::Write(taken) = step(Some(&gone), now, "a", now, &timing) else {
            panic!()
        };
        assert_eq!(
            taken.holder.as_deref(),
            Some("a"),
            "a released lease is taken at once"
        );
    }

    #[test]
    fn the_holder_renews_keeping_its_acquire_time_and_stops_acting_at_the_deadline() {
        let timing = Timing::default();
        let mine = held_by("a", "2026-12-01T09:59:58Z");
        let now = t("2026-12-01T10:00:00Z");
        let Step::Write(renewed) = step(Some(&mine), now, "a", now, &timing) else {
            panic!()
        };
        assert_eq!(
            (renewed.renewed, renewed.acquired, renewed.transitions),
            (Some(now), mine.acquired, 3)
        );
        let last = t("2026-12-01T10:00:00Z");
        assert!(may_act(last, t("2026-12-01T10:00:09Z"), &timing));
        assert!(!may_act(last, t("2026-12-01T10:00:10Z"), &timing));
        // It stops acting before anyone may take the lease it renewed last.
        assert!(timing.renew_deadline < timing.lease_duration);
    }

    #[test]
    fn timings_that_would_let_two_leaders_act_are_refused() {
        assert!(Timing::default().check().is_ok());
        let bad = Timing {
            renew_deadline: Duration::from_secs(15),
            ..Timing::default()
        };
        assert!(bad.check().unwrap_err().contains("renew_deadline"));
        let bad = Timing {
            retry_period: Duration::from_secs(10),
            ..Timing::default()
        };
        assert!(bad.check().unwrap_err().contains("retry_period"));
    }
}
