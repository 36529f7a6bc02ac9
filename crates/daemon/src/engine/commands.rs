//! Comment commands on an open promotion PR, read by polling (a conditional request per PR
//! and cycle): who approved the current head, whether it is held, and an answer to every new
//! command — a reaction when done, a reply saying why when not.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use chrono::{DateTime, Utc};

use super::{At, Engine, EnvCtx, Step, StepError};
use crate::domain::chatops::{self, Answer, Comment, Review};
use crate::domain::image::Digest;
use crate::domain::promotion;
use crate::domain::provenance::same_login;
use crate::domain::rules;
use crate::ports::{Reaction, ScanStart};

/// Said on a PR whose record was lost (`domain::seal`): its commands are not carried out
/// twice, and not guessed either.
pub(super) const LOST_NOTICE: &str = "tugboat's record in this pull request's description was changed by someone other than tugboat, so tugboat does not trust it. Commands posted before this comment will not be carried out; if they still stand, post them again. (Approvals and holds are read again from the comments as always.)";

/// How long an approver check (permission and team membership) is trusted.
const APPROVER_TTL: Duration = Duration::from_secs(300);

/// What the commands on a PR add up to, for the engine and the PR body.
#[derive(Debug, Clone, Default)]
pub struct Commands {
    pub approvals: Vec<String>,
    pub held_by: Option<String>,
    /// The newest command comment answered (kept in the PR body across restarts).
    pub answered_through: u64,
    /// Accepted `/rollback` and `/unblock` commands (by whom, and the word after the
    /// command: the service, on a group PR), for the caller to carry out; `/rescan` is
    /// carried out here when the target names one digest, else left to it.
    pub actions: Vec<(String, chatops::Action, Option<String>)>,
    /// Who approved the head this cycle's push replaced, and has not approved the new one.
    pub dropped: Vec<String>,
    /// Who approved the PR as GitHub counts reviews (read when the base branch requires
    /// reviews): latest review approving, write access.
    pub reviewed_by: Vec<String>,
    /// Whether tugboat already said on the PR that GitHub requires reviews it cannot give.
    pub review_notice_said: bool,
}

/// A PR's reviews, and what GitHub makes of them.
struct Reviewed {
    /// Every review (empty when neither the policy nor GitHub wants approvals).
    reviews: Vec<Review>,
    /// Who approved it as GitHub counts (only read when the base branch requires reviews).
    approved_by: Vec<String>,
    /// Whether tugboat said on it that GitHub requires reviews it cannot give.
    notice_said: bool,
}

/// The PR (or hold issue) whose commands are read, and the commit approvals bind to.
pub struct Target<'a> {
    pub number: u64,
    /// Comment ids up to this one were answered before (kept in the body's block).
    pub answered_through: u64,
    pub subject: chatops::Subject,
    pub head_sha: &'a str,
    pub head_at: DateTime<Utc>,
    /// The image digest `/rescan` scans (none on a hold issue, where it is refused, and on a
    /// group PR, whose caller scans each member's).
    pub digest: Option<&'a Digest>,
    /// The head a push of this cycle replaced, and when it was committed.
    pub previous: Option<(&'a str, DateTime<Utc>)>,
}

impl Engine {
    /// Replay the PR's comments and reviews, answer new commands, carry out `/rescan`.
    pub(super) async fn commands(
        &self,
        cx: &EnvCtx<'_>,
        pr: &Target<'_>,
    ) -> Result<Commands, StepError> {
        let forge = &self.ports.forge;
        let comments = forge.comments(pr.number).await.at(Step::Commands)?;
        let me = forge.me().await.at(Step::Commands)?;
        let reviewed = self
            .reviews_of(cx, (pr.number, pr.subject), &comments, &me)
            .await?;
        let reviews = &reviewed.reviews;
        let answered_through = self.lost_through(pr, &comments, &me).await?;
        // Who may approve: only the users who gave a command or review.
        let mut users: BTreeSet<&str> = comments
            .iter()
            .filter(|c| chatops::parse(&c.body).is_some())
            .map(|c| c.user.as_str())
            .collect();
        users.extend(reviews.iter().map(|r| r.user.as_str()));
        let mut approvers = BTreeSet::new();
        for user in users {
            if self.is_approver(user, &cx.env_policy.approvers).await? {
                approvers.insert(user.to_owned());
            }
        }
        let ctx = chatops::Context {
            head_sha: pr.head_sha,
            head_at: pr.head_at,
            me: &me,
            answered_through,
            subject: pr.subject,
        };
        let state = chatops::replay(&comments, reviews, &ctx, |u| approvers.contains(u));
        // Who approved the replaced head (no answers owed: that replay only counts).
        let dropped: Vec<String> = match pr.previous {
            Some((head_sha, head_at)) => {
                let before = chatops::Context {
                    head_sha,
                    head_at,
                    answered_through: u64::MAX,
                    ..ctx
                };
                chatops::replay(&comments, reviews, &before, |u| approvers.contains(u))
                    .approvals
                    .into_iter()
                    .filter(|u| !state.approvals.contains(u))
                    .collect()
            }
            None => Vec::new(),
        };
        let newest = self.answer(pr, &comments, &state.answers).await?;
        let mut actions = Vec::new();
        for (id, (user, action)) in state.actions {
            // A PR of many images (a group's) names none: its caller rescans each.
            match (action, pr.digest) {
                (chatops::Action::Rescan, Some(digest)) => {
                    self.rescan_requested(cx, &user, digest).await?;
                }
                _ => {
                    let body = comments
                        .iter()
                        .find(|c| c.id == id)
                        .map(|c| c.body.as_str());
                    actions.push((user, action, body.and_then(chatops::argument)));
                }
            }
        }
        Ok(Commands {
            approvals: state.approvals.into_iter().collect(),
            held_by: state.held_by,
            answered_through: newest.max(answered_through),
            actions,
            dropped,
            reviewed_by: reviewed.approved_by,
            review_notice_said: reviewed.notice_said,
        })
    }

    /// The reviews of a PR: read when the policy wants approvals (an approver's review
    /// is an `/approve`) or GitHub requires reviews before it merges (whatever the policy).
    /// `subject` is what the comments are on (only an open PR merges).
    async fn reviews_of(
        &self,
        cx: &EnvCtx<'_>,
        (number, subject): (u64, chatops::Subject),
        comments: &[Comment],
        me: &str,
    ) -> Result<Reviewed, StepError> {
        let open = subject == chatops::Subject::Open;
        let required = if open {
            self.branch_rules().await?.required_reviews
        } else {
            0
        };
        let reviews = if !open || (cx.env_policy.auto_merge && required == 0) {
            Vec::new() // no approvals needed: only holds matter
        } else {
            let forge = &self.ports.forge;
            forge.reviews(number).await.at(Step::Commands)?
        };
        let approved_by = if required > 0 {
            self.github_approvers(&reviews).await?
        } else {
            Vec::new()
        };
        let notice_said = comments
            .iter()
            .any(|c| same_login(&c.user, me) && rules::is_review_notice(&c.body));
        Ok(Reviewed {
            reviews,
            approved_by,
            notice_said,
        })
    }

    /// Who GitHub counts as having approved the PR: people whose latest review approves it
    /// and who may write to the repository (GitHub counts no other review).
    async fn github_approvers(&self, reviews: &[Review]) -> Result<Vec<String>, StepError> {
        let mut latest: Vec<(&str, &str)> = Vec::new();
        for r in reviews.iter().filter(|r| {
            matches!(
                r.state.as_str(),
                "APPROVED" | "CHANGES_REQUESTED" | "DISMISSED"
            )
        }) {
            latest.retain(|(u, _)| !same_login(u, &r.user));
            latest.push((&r.user, &r.state));
        }
        let mut out = Vec::new();
        for (user, state) in latest {
            // Write access, checked (and cached) as an approver's is.
            if state == "APPROVED" && self.is_approver(user, &[]).await? {
                out.push(user.to_owned());
            }
        }
        Ok(out)
    }

    /// The comment commands were answered through: as recorded, or, when the record was lost
    /// ([`promotion::LOST`]), every comment so far, saying so on the PR when a command is
    /// among them.
    async fn lost_through(
        &self,
        pr: &Target<'_>,
        comments: &[Comment],
        me: &str,
    ) -> Result<u64, StepError> {
        if pr.answered_through != promotion::LOST {
            return Ok(pr.answered_through);
        }
        let newest = comments.iter().map(|c| c.id).max().unwrap_or(0);
        let commands = comments
            .iter()
            .any(|c| !c.user.eq_ignore_ascii_case(me) && chatops::parse(&c.body).is_some());
        if commands {
            self.ports
                .forge
                .comment(pr.number, LOST_NOTICE)
                .await
                .at(Step::Commands)?;
        }
        Ok(newest)
    }

    /// Answer every new command: a reaction when done, a reply saying why when not. Returns
    /// the newest comment answered.
    async fn answer(
        &self,
        pr: &Target<'_>,
        comments: &[Comment],
        answers: &std::collections::BTreeMap<u64, (String, chatops::Command, Answer)>,
    ) -> Result<u64, StepError> {
        let forge = &self.ports.forge;
        let mut newest = 0;
        for (id, (user, cmd, answer)) in answers {
            tracing::info!(user = %user, command = ?cmd, pr = pr.number, head = %pr.head_sha, answer = ?answer, "comment command");
            let done = match answer {
                Answer::Accepted => forge.react(*id, Reaction::PlusOne).await,
                Answer::Refused(why) => {
                    let line = first_line(comments, *id);
                    forge
                        .comment(pr.number, &format!("@{user} `{line}`: not done: {why}."))
                        .await
                }
                Answer::Help => {
                    forge
                        .comment(pr.number, &format!("@{user} {}", chatops::HELP))
                        .await
                }
            };
            done.at(Step::Commands)?;
            newest = newest.max(*id);
        }
        Ok(newest)
    }

    /// `/rescan` on a PR: a new scan of its digest; the next look reads it, and the evidence
    /// follows.
    pub(super) async fn rescan_requested(
        &self,
        cx: &EnvCtx<'_>,
        user: &str,
        digest: &Digest,
    ) -> Result<(), StepError> {
        tracing::info!(user = %user, digest = %digest, "rescan requested on the PR");
        let svc = cx.svc;
        // ECR scans an index's platform images, never the index (it refuses to).
        let kind = crate::domain::select::kind_of(cx.images, digest);
        let parts = self
            .scanned_parts(svc, digest, &kind)
            .await
            .at(Step::Commands)?;
        for (_, part) in &parts {
            let started = self
                .ports
                .registry
                .start_scan(svc.registry_id.as_deref(), &svc.repository, part)
                .await;
            if let Ok(ScanStart::Refused(why)) = started {
                return Err(ScanStart::refusal(why)).at(Step::Commands);
            }
            started.at(Step::Commands)?;
            self.scans.remove(part);
        }
        Ok(())
    }

    /// Whether `user` may approve: write access to the GitOps repository, and listed by the
    /// environment's policy (a login or an `org/team`) when it lists anyone. Cached briefly.
    async fn is_approver(&self, user: &str, listed: &[String]) -> Result<bool, StepError> {
        let key = (user.to_owned(), listed.join(","));
        if let Some((at, ok)) = self.approver_cache.get(&key)
            && at.elapsed() < APPROVER_TTL
        {
            return Ok(ok);
        }
        let forge = &self.ports.forge;
        let permission = forge.permission(user).await.at(Step::Commands)?;
        let mut ok = permission.writes();
        if ok && !listed.is_empty() {
            ok = false;
            for entry in listed {
                ok = match entry.split_once('/') {
                    Some((org, team)) => forge
                        .team_member(org, team, user)
                        .await
                        .at(Step::Commands)?,
                    None => entry.eq_ignore_ascii_case(user),
                };
                if ok {
                    break;
                }
            }
        }
        self.approver_cache.insert(key, (Instant::now(), ok));
        Ok(ok)
    }
}

/// The command line of a comment, quoted in a refusal (made safe for inline code).
fn first_line(comments: &[Comment], id: u64) -> String {
    comments
        .iter()
        .find(|c| c.id == id)
        .and_then(|c| c.body.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("")
        .chars()
        .filter(|c| *c != '`')
        .take(60)
        .collect()
}
