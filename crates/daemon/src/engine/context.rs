//! The one context of an environment's step: everything the steps read, gathered once.

use chrono::{DateTime, Utc};

use super::deploy::Watch;
use super::{Action, EnvReport, Mode, StepError};
use crate::config::{EnvConfig, ServiceConfig};
use crate::domain::image::ImageRef;
use crate::domain::plan::Decision;
use crate::domain::policy::{EnvPolicy, ServicePolicy};
use crate::domain::select::ImageRecord;

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
    pub gathered: Option<&'a super::group::Gathered>,
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
