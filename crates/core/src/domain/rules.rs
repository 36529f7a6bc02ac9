//! The rules GitHub enforces on the base branch (its rulesets and branch protection), as far
//! as they decide how tugboat merges: the checks that must pass, the reviews GitHub counts,
//! a merge queue, signed commits, linear history.

use std::fmt;

/// What the base branch requires of a merge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BranchRules {
    /// The branch's name.
    pub branch: String,
    /// Checks that must pass, by name (a required status check's context).
    pub required_checks: Vec<String>,
    /// Approving reviews GitHub counts before it merges (0: none).
    pub required_reviews: u32,
    /// Merges go through the merge queue.
    pub merge_queue: bool,
    /// Every commit must carry a signature GitHub verified.
    pub signed_commits: bool,
    /// No merge commits.
    pub linear_history: bool,
    /// The branch must be up to date with the base before it merges.
    pub up_to_date: bool,
    /// What could not be read, and why (then the rules above are what could be read).
    pub unreadable: Option<String>,
}

impl BranchRules {
    /// Fold another source's rules (a ruleset, branch protection) into these: the stricter
    /// of each.
    pub fn merge(&mut self, other: BranchRules) {
        for c in other.required_checks {
            if !self.required_checks.contains(&c) {
                self.required_checks.push(c);
            }
        }
        self.required_reviews = self.required_reviews.max(other.required_reviews);
        self.merge_queue |= other.merge_queue;
        self.signed_commits |= other.signed_commits;
        self.linear_history |= other.linear_history;
        self.up_to_date |= other.up_to_date;
        if self.unreadable.is_none() {
            self.unreadable = other.unreadable;
        }
    }

    /// Whether the branch requires nothing tugboat has to heed.
    pub fn is_empty(&self) -> bool {
        self.required_checks.is_empty()
            && self.required_reviews == 0
            && !self.merge_queue
            && !self.signed_commits
            && !self.linear_history
            && !self.up_to_date
    }
}

/// "main requires: checks lint, kubeconform; 1 review; merge queue", or "main requires
/// nothing of a merge".
impl fmt::Display for BranchRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if !self.required_checks.is_empty() {
            let s = if self.required_checks.len() == 1 {
                ""
            } else {
                "s"
            };
            parts.push(format!("check{s} {}", self.required_checks.join(", ")));
        }
        match self.required_reviews {
            0 => {}
            1 => parts.push("1 review".to_owned()),
            n => parts.push(format!("{n} reviews")),
        }
        for (on, what) in [
            (self.merge_queue, "merge queue"),
            (self.signed_commits, "signed commits"),
            (self.linear_history, "linear history"),
            (self.up_to_date, "up to date before merging"),
        ] {
            if on {
                parts.push(what.to_owned());
            }
        }
        if parts.is_empty() {
            write!(f, "{} requires nothing of a merge", self.branch)?;
        } else {
            write!(f, "{} requires: {}", self.branch, parts.join("; "))?;
        }
        if let Some(why) = &self.unreadable {
            write!(f, " (as far as tugboat can read: {why})")?;
        }
        Ok(())
    }
}

/// Where a pull request stands in the base branch's merge queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueState {
    /// Queued, at this position (1 merges next).
    Queued { position: u32 },
    /// Not queued; the queue last removed it at `at`, saying why (its checks failed on the
    /// queue's merge commit, a conflict, a push to its branch).
    Removed {
        reason: String,
        at: chrono::DateTime<chrono::Utc>,
        /// Who removed it (the queue's own bot, a person, or tugboat when a person held it).
        by: String,
    },
    /// Not queued, and never removed.
    Absent,
}

/// The approving reviews GitHub still waits for: `needed` less the ones `given`.
pub fn reviews_missing(needed: u32, given: usize) -> u32 {
    needed.saturating_sub(u32::try_from(given).unwrap_or(u32::MAX))
}

/// What a promotion PR says once when GitHub requires reviews tugboat cannot give.
pub fn review_notice(needed: u32) -> String {
    let reviews = if needed == 1 {
        "1 approving review".to_owned()
    } else {
        format!("{needed} approving reviews")
    };
    format!(
        "GitHub requires {reviews} before this pull request merges, and tugboat cannot review \
         its own pull request: a person with write access must review it, or exempt the tugboat \
         App in the ruleset's bypass list. tugboat merges it as soon as the review arrives."
    )
}

/// Whether `body` is the review notice, for any number of reviews (the count may have
/// changed since, or been unknown when it was said).
pub fn is_review_notice(body: &str) -> bool {
    let body = body.trim();
    body.starts_with("GitHub requires ")
        && body.contains("tugboat cannot review its own pull request")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> BranchRules {
        BranchRules {
            branch: "main".into(),
            ..BranchRules::default()
        }
    }

    #[test]
    fn a_branch_that_requires_nothing_says_so() {
        assert_eq!(rules().to_string(), "main requires nothing of a merge");
        assert!(rules().is_empty());
    }

    #[test]
    fn every_rule_is_named_in_one_line() {
        let r = BranchRules {
            required_checks: vec!["lint".into(), "kubeconform".into()],
            required_reviews: 1,
            merge_queue: true,
            signed_commits: true,
            ..rules()
        };
        assert_eq!(
            r.to_string(),
            "main requires: checks lint, kubeconform; 1 review; merge queue; signed commits"
        );
    }

    #[test]
    fn folding_two_sources_keeps_the_stricter_of_each_rule() {
        let mut a = BranchRules {
            required_checks: vec!["lint".into()],
            required_reviews: 1,
            ..rules()
        };
        a.merge(BranchRules {
            required_checks: vec!["lint".into(), "test".into()],
            required_reviews: 2,
            up_to_date: true,
            unreadable: Some("branch protection: 403".into()),
            ..rules()
        });
        assert_eq!(a.required_checks, ["lint", "test"]);
        assert_eq!(a.required_reviews, 2);
        assert!(a.up_to_date);
        assert!(
            a.to_string()
                .ends_with("(as far as tugboat can read: branch protection: 403)")
        );
    }

    #[test]
    fn reviews_missing_counts_down_to_zero() {
        assert_eq!(reviews_missing(2, 1), 1);
        assert_eq!(reviews_missing(1, 3), 0);
        assert_eq!(reviews_missing(0, 0), 0);
    }

    #[test]
    fn the_review_notice_says_what_a_person_can_do() {
        let n = review_notice(1);
        assert!(n.contains("1 approving review before"), "{n}");
        assert!(n.contains("bypass list"), "{n}");
        assert!(review_notice(2).contains("2 approving reviews"));
        assert!(is_review_notice(&review_notice(1)) && is_review_notice(&review_notice(3)));
        assert!(!is_review_notice("GitHub requires nothing"));
    }
}
