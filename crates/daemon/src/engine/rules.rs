//! The base branch's rules as GitHub enforces them (its rulesets), read through a short
//! cache, and what a promotion does about the ones tugboat cannot meet by itself: reviews it
//! may not give (said once; the reviews themselves are read with the PR's commands),
//! signatures a token's commits do not carry.

use std::time::Duration;

use tokio::time::Instant;

use super::{At, Cause, Engine, Step, StepError};
use crate::config::{CommitVia, GithubAuth};
use crate::domain::rules::{self, BranchRules};

/// How long the base branch's rules are trusted: a ruleset changes rarely, and a change
/// shows within this.
const RULES_TTL: Duration = Duration::from_secs(300);

impl Engine {
    /// The base branch's rules, read at most once per [`RULES_TTL`].
    pub(super) async fn branch_rules(&self) -> Result<BranchRules, StepError> {
        let cached = self.rules_cache.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|(at, _)| at.elapsed() < RULES_TTL)
                .map(|(_, r)| r.clone())
        });
        if let Some(rules) = cached {
            return Ok(rules);
        }
        let rules = self.ports.forge.rules().await.at(Step::Merge)?;
        if let Some(why) = &rules.unreadable {
            tracing::warn!(%why, "cannot read all of the base branch's rules; merges follow what could be read");
        }
        if let Ok(mut c) = self.rules_cache.lock() {
            *c = Some((Instant::now(), rules.clone()));
        }
        Ok(rules)
    }

    /// What `plan` says of the base branch: its rules, and what tugboat cannot meet (a
    /// token's commits on a branch that requires signed commits).
    pub async fn branch_summary(&self) -> Result<(BranchRules, Option<String>), StepError> {
        let rules = self.branch_rules().await?;
        let gh = &self.cfg.github;
        let signs = matches!(gh.auth, GithubAuth::App { .. }) && gh.commits == CommitVia::Api;
        let warning = (rules.signed_commits && !signs).then(|| unsigned_warning(&rules.branch, gh));
        Ok((rules, warning))
    }

    /// Say once on PR `number` that GitHub requires `needed` reviews tugboat cannot give
    /// (`said`: it did, in an earlier cycle); no write after that.
    pub(super) async fn say_reviews_needed(
        &self,
        number: u64,
        needed: u32,
        said: bool,
    ) -> Result<(), StepError> {
        if said {
            return Ok(());
        }
        tracing::info!(
            pr = number,
            needed,
            "GitHub requires reviews tugboat cannot give; said so on the PR"
        );
        self.ports
            .forge
            .comment(number, &rules::review_notice(needed))
            .await
            .at(Step::Merge)
    }
}

impl Engine {
    /// A merge GitHub refused for unsigned commits, with why they are unsigned: tugboat's own
    /// (a token's, or pushed), or, when GitHub signs tugboat's, a commit someone else pushed.
    pub(super) fn explain_unsigned(&self, mut refusal: StepError) -> StepError {
        let gh = &self.cfg.github;
        let signs = matches!(gh.auth, GithubAuth::App { .. }) && gh.commits == CommitVia::Api;
        let why = if signs {
            "tugboat's commits are GitHub's, signed: a commit on the branch that someone else \
             pushed is not"
                .to_owned()
        } else {
            unsigned_warning(&gh.base_branch, gh)
        };
        if let Cause::Port(p) = &mut refusal.cause {
            p.message = format!("{}: {why}", p.message.trim_end());
        }
        refusal
    }
}

/// Why a token install's merges will be refused on a branch that requires signed commits.
fn unsigned_warning(branch: &str, gh: &crate::config::GithubConfig) -> String {
    let how = match (&gh.auth, gh.commits) {
        (GithubAuth::Token(_), CommitVia::Push) => "pushed with a token",
        (GithubAuth::Token(_), CommitVia::Api) => "made through the API with a token",
        (GithubAuth::App { .. }, _) => "pushed (github.commits = \"push\")",
    };
    format!(
        "{branch} requires signed commits, and tugboat's commits are {how}, which GitHub does not \
         sign: every merge will be refused. GitHub signs only the commits a GitHub App makes \
         through its API: install tugboat as a GitHub App ([github.app]) with github.commits = \
         \"api\""
    )
}
