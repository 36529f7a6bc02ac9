//! The one context of an environment's step: everything the steps read, gathered once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::watch::Watch;
use super::{Action, EnvReport, Mode, StepError};
use crate::config::{EnvConfig, ServiceConfig};
use crate::domain::gate::{Finding, GateDecision};
use crate::domain::group::Rule;
use crate::domain::image::ImageRef;
use crate::domain::plan::Decision;
use crate::domain::policy::{EnvPolicy, ServicePolicy};
use crate::domain::select::{Candidate, ImageRecord};
use crate::domain::signature::SignatureCheck;

/// The environment before this one in the service's chain, as its step left it.
pub(super) struct Upstream<'a> {
    pub env: &'a EnvConfig,
    /// Its Argo CD application.
    pub app: &'a str,
    /// What its files deploy after its step.
    pub deployed: Option<ImageRef>,
}

impl<'a> Upstream<'a> {
    pub fn new(env: &'a EnvConfig, app: &'a str, deployed: Option<ImageRef>) -> Self {
        Self { env, app, deployed }
    }
}

/// One service in one environment, in one cycle.
#[derive(Clone, Copy)]
pub(super) struct EnvCtx<'a> {
    pub svc: &'a ServiceConfig,
    pub env: &'a EnvConfig,
    /// The service's policy (its sources go into the evidence).
    pub policy: &'a ServicePolicy,
    /// This environment's part of it.
    pub env_policy: &'a EnvPolicy,
    /// The environment's Argo CD application.
    pub app: &'a str,
    pub mode: Mode,
    /// The time of day of this cycle, read once from the engine's clock.
    pub now: DateTime<Utc>,
    /// The registry's images of the service, listed once per cycle.
    pub images: &'a [ImageRecord],
    /// The labelled promotion PRs read at the cycle's start.
    pub watch: Result<&'a Watch, &'a StepError>,
    /// The previous environment, for every environment but the first.
    pub upstream: Option<&'a Upstream<'a>>,
    /// Where a grouped environment's step leaves its promotion for the group step (`None`:
    /// a step of the group step itself, or a plan).
    pub gathered: Option<&'a Gathered>,
}

impl EnvCtx<'_> {
    /// An empty row for this environment.
    pub fn report(&self) -> EnvReport {
        EnvReport {
            service: self.svc.name.clone(),
            environment: self.env.name.clone(),
            application: self.app.to_owned(),
            deployed: None,
            deployed_digest: None,
            decision: Decision::NoCandidate {
                reason: String::new(),
            },
            action: Action::None,
            policy: self.policy.sources.clone(),
            rejected: None,
            approvals: None,
            group: self.env_policy.group.clone(),
            signature: None,
        }
    }

    /// The labels of this environment's promotion PRs.
    pub fn labels(&self) -> Vec<String> {
        vec![
            "tugboat".to_owned(),
            format!("env:{}", self.env.name),
            format!("service:{}", self.svc.name),
        ]
    }

    /// The labelled PRs, when they could be read.
    pub fn watch(&self) -> Option<&Watch> {
        self.watch.ok()
    }
}

/// What the base branch holds for this environment.
pub(super) struct Seen {
    /// The environment's files, as read.
    pub files: Vec<(String, String)>,
    /// The service's image reference they deploy.
    pub deployed: Option<ImageRef>,
}

/// A candidate with the scan gate's judgement.
pub(super) struct Judged {
    pub candidate: Candidate,
    pub gate: GateDecision,
    pub findings: Vec<Finding>,
    /// The signature check of its digest, when the policy verifies signatures.
    pub signature: Option<SignatureCheck>,
    /// Since when it may be promoted: its push in the first environment, else when the
    /// previous environment deployed it plus the soak (a group's window counts from it).
    pub since: DateTime<Utc>,
}

/// A service's promotion left for its group: what it is, since when it is ready, and the
/// evidence its step judged.
pub(super) struct Rider {
    pub service: String,
    pub environment: String,
    pub rule: Rule,
    pub since: DateTime<Utc>,
    pub candidate: Candidate,
    pub from: Option<ImageRef>,
    pub pin_digest: bool,
    /// Its gate result in one line, and its evidence for the body.
    pub gate: String,
    pub section: String,
    /// How its environment merges (the group merges under one rule).
    pub terms: Terms,
}

impl Rider {
    /// `(section, gate)`: its evidence for the group's body, and its gate result in a line.
    pub fn new(
        cx: &EnvCtx<'_>,
        seen: &Seen,
        judged: &Judged,
        rule: Rule,
        (section, gate): (String, String),
    ) -> Self {
        Self {
            service: cx.svc.name.clone(),
            environment: cx.env.name.clone(),
            rule,
            since: judged.since,
            candidate: judged.candidate.clone(),
            from: seen.deployed.clone(),
            pin_digest: cx.env_policy.pin_digest,
            gate,
            section,
            terms: Terms::of(cx.env_policy),
        }
    }
}

/// What decides how an environment merges: a group's members must agree on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Terms {
    auto_merge: bool,
    approvals: u32,
    approvers: Vec<String>,
    windows: Vec<String>,
}

impl Terms {
    fn of(p: &EnvPolicy) -> Self {
        let mut approvers = p.approvers.clone();
        approvers.sort();
        Self {
            auto_merge: p.auto_merge,
            approvals: if p.auto_merge { 0 } else { p.approvals.max(1) },
            approvers,
            windows: p.windows.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A service as this cycle read it: what the group step needs to act for it.
pub(super) struct Seat {
    pub policy: ServicePolicy,
    pub images: Vec<ImageRecord>,
}

/// What the cycle's service steps leave for the group step.
#[derive(Default)]
pub(super) struct Gathered {
    pub seats: Mutex<HashMap<String, Arc<Seat>>>,
    pub riders: Mutex<Vec<Rider>>,
}

impl Gathered {
    /// `service` was read this cycle with this policy and these images.
    pub fn seat(&self, service: &str, seat: Seat) {
        if let Ok(mut s) = self.seats.lock() {
            s.insert(service.to_owned(), Arc::new(seat));
        }
    }

    pub fn ride(&self, rider: Rider) {
        if let Ok(mut r) = self.riders.lock() {
            r.push(rider);
        }
    }

    /// Whether some service left a promotion for its group.
    pub fn has_riders(&self) -> bool {
        self.riders.lock().is_ok_and(|r| !r.is_empty())
    }
}
