//! The merge queue of the stand-in's `main`, when its protection requires one.
//!
//! As GitHub documents it ("Managing a merge queue", "Merging a pull request with a merge
//! queue"; the GraphQL reference's `enqueuePullRequest`, `MergeQueueEntry` and
//! `RemovedFromMergeQueueEvent`):
//! - a pull request is queued through GraphQL (REST's merge is refused on such a branch) once
//!   it meets the branch's other rules;
//! - the queue makes a temporary branch `gh-readonly-queue/main/pr-<n>-<head>` holding the
//!   PR merged onto the current main, which CI runs on (`merge_group`); once the branch's
//!   required checks pass there, main is fast-forwarded to that commit (the PR's merge
//!   commit) and the PR is closed as merged;
//! - a required check that fails (or reports nothing within the queue's timeout) on that
//!   commit, or a push to the PR's branch, removes the PR from the queue, recorded as a
//!   `RemovedFromMergeQueueEvent` with its reason.
//!
//! The stand-in merges one entry at a time (a queue whose `max_entries_to_merge` is 1).

use super::*;

/// How long the queue waits for required checks on its commit before it gives up
/// (`check_response_timeout_minutes`).
const CHECK_TIMEOUT: chrono::TimeDelta = chrono::TimeDelta::minutes(60);

/// One queued pull request.
#[derive(Debug, Clone)]
pub(crate) struct QueueEntry {
    number: u64,
    /// The PR's head when it was queued.
    head: String,
    /// The queue's merge commit, the main it was made on, and when.
    group: Option<(String, String, DateTime<Utc>)>,
}

/// A PR the queue removed: when, and why.
#[derive(Debug, Clone)]
pub(crate) struct Removal {
    number: u64,
    reason: String,
    at: DateTime<Utc>,
    /// Who removed it: the queue itself, or whoever dequeued it.
    by: String,
}

/// The login the queue's own removals are recorded under.
const QUEUE_BOT: &str = "github-merge-queue[bot]";

fn temp_branch(e: &QueueEntry) -> String {
    format!("gh-readonly-queue/main/pr-{}-{}", e.number, e.head)
}

impl GitHub {
    /// Move the queue on by one step: build the first entry's merge commit, or judge the
    /// required checks on it and merge or remove it. Called on a timer, as GitHub's queue
    /// moves on its own.
    pub async fn tick_queue(&self) {
        let _git = self.git_lock.lock().await;
        let Some(entry) = self.lock().queue.first().cloned() else {
            return;
        };
        let Some(pr) = self.pulls().into_iter().find(|p| p.number == entry.number) else {
            return;
        };
        if pr.state != "open" {
            self.lock().queue.retain(|e| e.number != entry.number);
            return;
        }
        if self.branch_sha(&pr.head).as_deref() != Some(entry.head.as_str()) {
            return self.dequeue(&entry, "the pull request's branch was pushed to");
        }
        let main = self.branch_sha(&pr.base).unwrap_or_default();
        match &entry.group {
            Some((sha, on, built)) if *on == main => self.judge_group(&entry, &pr, sha, *built),
            _ => self.build_group(&entry, &pr),
        }
    }

    /// The queue's merge commit for `entry`, on the current main, on its temporary branch.
    fn build_group(&self, entry: &QueueEntry, pr: &Pr) {
        self.drop_temp_branch(entry); // made on an older main: made again
        let branch = temp_branch(entry);
        let title = format!("{} (#{})", pr.title, pr.number);
        let made = self.merge_onto(&pr.base, &pr.head, &title, &MergeMethod::Squash, &branch);
        let sha = match made {
            Ok(sha) => sha,
            Err((_, why)) => return self.dequeue(entry, &format!("it could not be merged: {why}")),
        };
        let main = self.branch_sha(&pr.base).unwrap_or_default();
        let now = self.now();
        if let Some(e) = self
            .lock()
            .queue
            .iter_mut()
            .find(|e| e.number == entry.number)
        {
            e.group = Some((sha, main, now));
        }
        self.note_pushes();
    }

    /// Merge `entry` once the required checks pass on the queue's commit `sha`; remove it
    /// when one fails or none reported in time.
    fn judge_group(&self, entry: &QueueEntry, pr: &Pr, sha: &str, built: DateTime<Utc>) {
        let required = self.protection().required_checks;
        let states: Vec<(String, Option<bool>)> = required
            .iter()
            .map(|c| (c.clone(), self.check_state(sha, c)))
            .collect();
        let failed: Vec<&str> = states
            .iter()
            .filter(|(_, s)| *s == Some(false))
            .map(|(c, _)| c.as_str())
            .collect();
        if !failed.is_empty() {
            let why = format!(
                "the required checks failed on the queue's commit: {}",
                failed.join(", ")
            );
            return self.dequeue(entry, &why);
        }
        if states.iter().any(|(_, s)| s.is_none()) {
            if self.now() - built > CHECK_TIMEOUT {
                self.dequeue(entry, "the required checks did not report in time");
            }
            return;
        }
        let Ok(repo) = git2::Repository::open_bare(self.repo_path()) else {
            return;
        };
        let Ok(oid) = git2::Oid::from_str(sha) else {
            return;
        };
        if repo
            .reference(&format!("refs/heads/{}", pr.base), oid, true, "merge queue")
            .is_err()
        {
            return;
        }
        self.note_activity(Some(BOT), Some("merge_queue_merge"));
        self.drop_temp_branch(entry);
        self.lock().queue.retain(|e| e.number != entry.number);
        self.merged_into(&pr.base, entry.number, sha, &entry.head);
    }

    fn dequeue(&self, entry: &QueueEntry, reason: &str) {
        self.remove_entry(entry, reason, QUEUE_BOT);
    }

    fn remove_entry(&self, entry: &QueueEntry, reason: &str, by: &str) {
        self.drop_temp_branch(entry);
        let now = self.now();
        let mut g = self.lock();
        g.queue.retain(|e| e.number != entry.number);
        g.removals.push(Removal {
            number: entry.number,
            reason: reason.to_owned(),
            at: now,
            by: by.to_owned(),
        });
    }

    fn drop_temp_branch(&self, entry: &QueueEntry) {
        if let Ok(repo) = git2::Repository::open_bare(self.repo_path())
            && let Ok(mut r) = repo.find_reference(&format!("refs/heads/{}", temp_branch(entry)))
        {
            let _ = r.delete();
        }
    }

    /// The PRs in the queue, first to merge first.
    pub fn queued(&self) -> Vec<u64> {
        self.lock().queue.iter().map(|e| e.number).collect()
    }
}

type Graphql = Result<Value, (&'static str, String)>;

/// `enqueuePullRequest(input: {pullRequestId, expectedHeadOid})`.
pub(super) fn enqueue(gh: &GitHub, vars: &Value) -> Graphql {
    let id = vars["id"].as_str().unwrap_or_default();
    let not_found = || {
        (
            "NOT_FOUND",
            format!("Could not resolve to a node with the global id of '{id}'"),
        )
    };
    let number: u64 = id
        .strip_prefix("PR_")
        .and_then(|n| n.parse().ok())
        .ok_or_else(not_found)?;
    let pr = gh
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .ok_or_else(not_found)?;
    if !gh.protection().merge_queue {
        return Err((
            "UNPROCESSABLE",
            "The merge queue is not enabled for this branch".into(),
        ));
    }
    if pr.state != "open" {
        return Err(("UNPROCESSABLE", "Pull request is closed".into()));
    }
    let head = gh.branch_sha(&pr.head).unwrap_or_default();
    if let Some(expected) = vars["head"].as_str()
        && expected != head
    {
        return Err((
            "UNPROCESSABLE",
            format!("Expected head oid {expected} is not the pull request's head {head}"),
        ));
    }
    let base = gh.branch_sha(&pr.base).unwrap_or_default();
    let broken = gh.rule_violations(number, &head, &base);
    if !broken.is_empty() {
        return Err((
            "UNPROCESSABLE",
            format!("Pull request is not mergeable: {}", broken.join(" ")),
        ));
    }
    let mut g = gh.lock();
    if !g.queue.iter().any(|e| e.number == number) {
        g.queue.push(QueueEntry {
            number,
            head,
            group: None,
        });
    }
    let position = g.queue.iter().position(|e| e.number == number).unwrap_or(0) + 1;
    Ok(
        json!({"enqueuePullRequest": {"mergeQueueEntry": {"position": position, "state": "QUEUED"}}}),
    )
}

/// `dequeuePullRequest(input: {id})`, by tugboat (the stand-in's one caller of it).
pub(super) fn dequeue(gh: &GitHub, vars: &Value) -> Graphql {
    let id = vars["id"].as_str().unwrap_or_default();
    let number: Option<u64> = id.strip_prefix("PR_").and_then(|n| n.parse().ok());
    let entry = number.and_then(|n| gh.lock().queue.iter().find(|e| e.number == n).cloned());
    let Some(entry) = entry else {
        return Err((
            "UNPROCESSABLE",
            "Pull request is not in the merge queue".into(),
        ));
    };
    gh.remove_entry(&entry, "dequeued", BOT);
    Ok(json!({"dequeuePullRequest": {"mergeQueueEntry": {"position": 0, "state": "QUEUED"}}}))
}

/// `repository(owner, name) { pullRequest(number) { id mergeQueueEntry timelineItems } }`.
pub(super) fn state(gh: &GitHub, vars: &Value) -> Graphql {
    let number = vars["number"].as_u64().unwrap_or_default();
    let missing = || {
        (
            "NOT_FOUND",
            format!("Could not resolve to a PullRequest with the number of {number}."),
        )
    };
    let owned = vars["owner"].as_str() == Some(gh.owner.as_str())
        && vars["name"].as_str() == Some(gh.repo.as_str());
    if !owned || !gh.pulls().iter().any(|p| p.number == number) {
        return Err(missing());
    }
    let g = gh.lock();
    let entry = g.queue.iter().position(|e| e.number == number).map(|i| {
        let state = if i == 0 { "AWAITING_CHECKS" } else { "QUEUED" };
        json!({"position": i + 1, "state": state})
    });
    let removed: Vec<Value> = g
        .removals
        .iter()
        .rfind(|r| r.number == number)
        .map(|r| json!({"createdAt": r.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "reason": r.reason, "actor": {"login": r.by}}))
        .into_iter()
        .collect();
    Ok(
        json!({"repository": {"pullRequest": {"id": format!("PR_{number}"),
        "mergeQueueEntry": entry, "timelineItems": {"nodes": removed}}}}),
    )
}
