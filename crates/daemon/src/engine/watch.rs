//! What tugboat looks after, read once at the start of a cycle: its labelled pull requests
//! (each with the state its body carries; a group PR as its members) and the open hold
//! issues. What tugboat must remember lives there, found by label with conditional listings
//! (free when nothing changed):
//! - `tugboat:verifying`: merged (or about to be), its verification not reported yet;
//! - `tugboat:deployed`: the promotion an environment runs now, where `/rollback` is read;
//! - `tugboat:bad`: its digest failed; it is never promoted again until an approver comments
//!   `/unblock` (or someone removes the label), and while its environment still deploys it,
//!   tugboat rolls it back.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::group::{GROUP_MARKER, GroupState, Outcome};
use crate::domain::hold::Hold;
use crate::domain::image::{Digest, ImageRef};
use crate::domain::promotion::{PromotionState, StateError};
use crate::ports::{Issue, LabelledPr, PullRequest};

pub const VERIFYING: &str = "tugboat:verifying";
pub const DEPLOYED: &str = "tugboat:deployed";
pub const BAD: &str = "tugboat:bad";
pub const ROLLBACK: &str = "tugboat:rollback";

/// An open hold issue, read at the start of a cycle.
#[derive(Debug, Clone)]
pub struct HoldIssue {
    pub issue: Issue,
    pub hold: Hold,
}

/// A labelled pull request with the state its body carries: a promotion or a rollback, or
/// one member of a group PR (`group`), whose state is that member's as a single promotion.
#[derive(Debug, Clone)]
pub struct Watched {
    pub pr: LabelledPr,
    pub state: PromotionState,
    /// The group PR's whole state, when this is one of its members: the PR and its labels
    /// are shared, so what changes one member's record changes the block, not the labels
    /// alone (`Engine::supersede`).
    pub group: Option<Arc<GroupState>>,
}

/// The merged promotions tugboat looks after, read at the start of a cycle.
#[derive(Debug, Default)]
pub struct Watch {
    pub(super) verifying: Vec<Watched>,
    pub(super) deployed: Vec<Watched>,
    pub(super) bad: Vec<Watched>,
    /// Every open tugboat PR (promotions and rollbacks).
    pub(super) open: Vec<Watched>,
    /// The open hold issues.
    pub(super) holds: Vec<HoldIssue>,
    /// Holds lifted during this cycle (by `/resume` on a merged promotion).
    pub(super) lifted: std::sync::Mutex<std::collections::BTreeSet<u64>>,
}

pub(super) fn of<'a>(list: &'a [Watched], service: &str, env: &str) -> Vec<&'a Watched> {
    list.iter()
        .filter(|w| w.state.service == service && w.state.environment == env)
        .collect()
}

/// A PR merged a moment ago, as the labelled listing will show it.
pub(super) fn merged_now(pr: &PullRequest, merged_at: DateTime<Utc>) -> LabelledPr {
    LabelledPr {
        number: pr.number,
        url: pr.url.clone(),
        title: pr.title.clone(),
        body: pr.body.clone(),
        labels: pr.labels.clone(),
        open: false,
        merged_at: Some(merged_at),
        // Opened by tugboat this cycle; it is not read back from a listing.
        author: String::new(),
        updated_at: None,
    }
}

impl Watch {
    /// The open promotion PR of this service and environment that promotes `digest`.
    pub fn open_promotion(&self, service: &str, env: &str, digest: &Digest) -> Option<&Watched> {
        of(&self.open, service, env).into_iter().find(|w| {
            w.group.is_none()
                && w.state.rollback_of.is_none()
                && w.state.digest.as_ref() == Some(digest)
        })
    }

    /// Every open PR and hold issue by number, with its service.
    pub fn subjects(&self) -> std::collections::HashMap<u64, String> {
        // A group PR is no one service's: a command there wakes a whole cycle.
        let prs = self
            .open
            .iter()
            .filter(|w| w.group.is_none())
            .map(|w| (w.pr.number, w.state.service.clone()));
        let holds = self
            .holds
            .iter()
            .map(|h| (h.issue.number, h.hold.service.clone()));
        prs.chain(holds).collect()
    }

    /// The environment's open hold (the oldest, should two replicas have opened one each).
    pub fn hold_of(&self, service: &str, env: &str) -> Option<&HoldIssue> {
        let lifted = |n: &u64| self.lifted.lock().is_ok_and(|l| l.contains(n));
        self.holds
            .iter()
            .filter(|h| h.hold.service == service && h.hold.environment == env)
            .filter(|h| !lifted(&h.issue.number))
            .min_by_key(|h| h.issue.number)
    }

    /// Open hold issues of the environment besides the one that counts (two replicas, each
    /// opening one at the same moment).
    pub fn duplicate_holds(&self, service: &str, env: &str) -> Vec<&HoldIssue> {
        let keep = self.hold_of(service, env).map(|h| h.issue.number);
        self.holds
            .iter()
            .filter(|h| h.hold.service == service && h.hold.environment == env)
            .filter(|h| Some(h.issue.number) != keep)
            .collect()
    }

    /// A hold lifted during this cycle: the rest of the cycle sees the environment free.
    pub fn lift(&self, issue: u64) {
        if let Ok(mut l) = self.lifted.lock() {
            l.insert(issue);
        }
    }

    /// tugboat's record of its last promotion to the environment: the newest merged PR
    /// labelled `tugboat:deployed` there.
    pub fn record_of(&self, service: &str, env: &str) -> Option<&Watched> {
        of(&self.deployed, service, env)
            .into_iter()
            // A promotion marked bad (and not yet unlabelled, say by a stop) is no record; a
            // group PR's `bad` is another member's (this one is listed only while deployed).
            .filter(|w| {
                w.pr.merged_at.is_some()
                    && (w.group.is_some() || !w.pr.labels.iter().any(|l| l == BAD))
            })
            .max_by_key(|w| w.pr.merged_at)
    }

    /// The environment's open promotion PRs (not rollbacks, nor a group PR, which the group
    /// step rewrites without a member that is no longer ready).
    pub fn open_of(&self, service: &str, env: &str) -> Vec<&Watched> {
        of(&self.open, service, env)
            .into_iter()
            .filter(|w| w.state.rollback_of.is_none() && w.group.is_none())
            .collect()
    }

    /// The merged group PRs with a member deployed or bad, each once: where commands are read.
    pub fn merged_groups(&self) -> Vec<&Watched> {
        group_prs(self.deployed.iter().chain(&self.bad))
    }

    /// The group PRs the group step looks after, each once: the open ones, and those
    /// labelled `verifying` (merged with members not verified yet, or closed unmerged).
    pub fn groups(&self) -> Vec<&Watched> {
        group_prs(self.open.iter().chain(&self.verifying))
    }

    /// The PR that marked this service's digest bad, if one did (in any environment).
    pub fn bad_digest(&self, service: &str, digest: &Digest) -> Option<&Watched> {
        self.bad
            .iter()
            .find(|w| w.state.service == service && w.state.digest.as_ref() == Some(digest))
    }
}

/// The group PRs among `listed` (each expanded into its members), each once.
fn group_prs<'a>(listed: impl Iterator<Item = &'a Watched>) -> Vec<&'a Watched> {
    let mut seen = std::collections::BTreeSet::new();
    listed
        .filter(|w| w.group.is_some() && seen.insert(w.pr.number))
        .collect()
}

/// A labelled PR as what tugboat looks after: a promotion or a rollback, or the members of a
/// group PR that `label` stands for there (`verifying`: those not verified yet; `deployed`:
/// those deployed; `bad`: the bad ones; any other label: all of them). A PR whose block was
/// edited by hand into something tugboat did not write is logged and not acted on.
pub(super) fn watched(pr: LabelledPr, label: &str) -> Vec<Watched> {
    let refused = |pr: &LabelledPr, e: &dyn std::fmt::Display| {
        tracing::warn!(pr = pr.number, label, error = %e, "ignoring a labelled PR whose state block is refused");
        Vec::new()
    };
    match PromotionState::parse(&pr.body) {
        Ok(state) => vec![Watched {
            pr,
            state,
            group: None,
        }],
        Err(StateError::Missing) if pr.body.contains(GROUP_MARKER) => {
            match GroupState::parse(&pr.body) {
                Ok(g) => members(pr, Arc::new(g), label),
                Err(e) => refused(&pr, &e),
            }
        }
        Err(e) => refused(&pr, &e),
    }
}

/// The members of group PR `pr` that `label` stands for, each as a single promotion.
fn members(pr: LabelledPr, g: Arc<GroupState>, label: &str) -> Vec<Watched> {
    g.members
        .iter()
        .filter(|m| match label {
            VERIFYING => m.outcome.is_none(),
            DEPLOYED => m.deployed(),
            BAD => m.outcome == Some(Outcome::Bad),
            _ => true,
        })
        .map(|m| Watched {
            pr: pr.clone(),
            state: g.promotion(m),
            group: Some(Arc::clone(&g)),
        })
        .collect()
}

/// Whether `deployed` is the image a watched promotion put there.
pub(super) fn deploys(deployed: Option<&ImageRef>, state: &PromotionState) -> bool {
    deployed.is_some_and(|d| state.is_deployed_as(d))
}
