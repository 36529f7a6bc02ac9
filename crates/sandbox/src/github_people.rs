//! Who did what in the GitHub stand-in. On GitHub, people with ordinary roles write where
//! tugboat keeps its memory: triage labels pull requests and issues and opens issues, write
//! edits bodies, retargets and merges pull requests, anyone opens one from a fork. Each
//! record here keeps its author (`user`), and every labelling is an issue event with its
//! `actor`, as GitHub reports them:
//! - `GET /repos/{owner}/{repo}/issues/{issue_number}/events` lists an issue's or pull
//!   request's events oldest first; a `labeled` / `unlabeled` event carries `actor` and
//!   `label {name, color}` (GitHub REST, "Issue events": "List issue events", and the
//!   `labeled-issue-event` schema of `@octokit/openapi`).
//! - Adding or removing a label, a comment and an edit move the issue's `updated_at`
//!   (inferred: the REST reference only calls it the time of the last update; tugboat also
//!   keys its cache on the labels it saw, so a label change is caught either way).
//! - A person with write access can change an open pull request's base ("Changing the base
//!   branch of a pull request", GitHub Docs) and merge it there.
//!
//! Requests made with tugboat's credentials act as [`crate::github::BOT`]; the test controls
//! here act as a named person.

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::github::{GitHub, Inner, IssueRec, PageQuery, Pr, gh_error, paged};
use crate::github_wire as wire;

/// One commit status as set: by whom and when (GitHub keeps every one, newest first in its
/// list, each with its `creator`).
#[derive(Debug, Clone)]
pub struct StatusRec {
    pub id: u64,
    pub sha: String,
    pub context: String,
    pub state: String,
    pub creator: String,
    pub created_at: DateTime<Utc>,
}

/// One issue event: a label added or removed, by whom, when.
#[derive(Debug, Clone)]
pub struct EventRec {
    pub id: u64,
    pub number: u64,
    pub actor: String,
    /// `labeled` or `unlabeled`.
    pub event: &'static str,
    pub label: String,
    pub created_at: DateTime<Utc>,
}

fn secs(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Inner {
    /// Something about PR or issue `number` changed at `now` (its `updated_at` moves).
    pub(crate) fn touch(&mut self, number: u64, now: DateTime<Utc>) {
        let at = secs(&now);
        if let Some(p) = self.prs.iter_mut().find(|p| p.number == number) {
            p.updated_at = at;
        } else if let Some(i) = self.issues.iter_mut().find(|i| i.number == number) {
            i.updated_at = at;
        }
    }

    /// PR `number` merged at `now` as `sha`, its branch's head then `head`.
    pub(crate) fn merged(&mut self, number: u64, sha: &str, head: &str, now: DateTime<Utc>) {
        if let Some(p) = self.prs.iter_mut().find(|p| p.number == number) {
            p.state = "closed".into();
            p.merged_at = Some(now.to_rfc3339());
            p.merge_sha = Some(sha.to_owned());
            p.closed_head = Some(head.to_owned());
        }
        self.touch(number, now);
    }

    /// Set a commit status (its `id` is given here): kept in the log with who set it, and
    /// counted in the commit's combined status in place of the one of its context before.
    pub(crate) fn set_status(&mut self, mut status: StatusRec, description: &str) {
        status.id = 8000 + self.status_log.len() as u64 + 1;
        let list = self.statuses.entry(status.sha.clone()).or_default();
        list.retain(|(c, _, _)| *c != status.context);
        list.push((
            status.context.clone(),
            status.state.clone(),
            description.to_owned(),
        ));
        self.status_log.push(status);
    }

    /// `actor` sets the labels of PR or issue `number` to `labels`: an event for each label
    /// added or removed. `false` when there is no such PR or issue.
    pub(crate) fn relabel(
        &mut self,
        number: u64,
        actor: &str,
        labels: Vec<String>,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(current) = self.labels_mut(number) else {
            return false;
        };
        let before = std::mem::replace(current, labels.clone());
        let removed = before.iter().filter(|l| !labels.contains(l));
        let added = labels.iter().filter(|l| !before.contains(l));
        let changes: Vec<(&'static str, String)> = removed
            .map(|l| ("unlabeled", l.clone()))
            .chain(added.map(|l| ("labeled", l.clone())))
            .collect();
        if changes.is_empty() {
            return true;
        }
        for (event, label) in changes {
            let id = 7000 + self.events.len() as u64 + 1;
            self.events.push(EventRec {
                id,
                number,
                actor: actor.to_owned(),
                event,
                label,
                created_at: now,
            });
        }
        self.touch(number, now);
        true
    }
}

/// The routes of this file: GitHub's issue events, and the test controls that act as a
/// person.
pub fn routes() -> axum::Router<GitHub> {
    axum::Router::new()
        .route("/repos/{owner}/{repo}/issues/{n}/events", get(list_events))
        .route(
            "/repos/{owner}/{repo}/commits/{sha}/statuses",
            get(list_statuses),
        )
        .route("/_sandbox/people/pulls", post(open_pr_as))
        .route("/_sandbox/people/issues", post(open_issue_as))
        .route("/_sandbox/people/labels", post(label_as))
}

async fn list_events(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, n)): UrlPath<(String, String, u64)>,
    Query(q): Query<PageQuery>,
) -> Response {
    if let Some(refused) = gh.refusal(&headers, &o, &r, "GET issue events") {
        return refused;
    }
    let events: Vec<Value> = {
        let g = gh.lock();
        if !g.prs.iter().any(|p| p.number == n) && !g.issues.iter().any(|i| i.number == n) {
            return gh_error(StatusCode::NOT_FOUND, "Not Found");
        }
        g.events
            .iter()
            .filter(|e| e.number == n)
            .map(|e| event_json(&gh, e))
            .collect()
    };
    paged(
        &gh,
        &headers,
        "GET issue events 304",
        events,
        (q.per_page, q.page),
    )
}

/// `GET /repos/{owner}/{repo}/commits/{ref}/statuses`: every status of a commit, newest
/// first, each a `status` with its `creator` (GitHub REST, "List commit statuses for a
/// reference").
async fn list_statuses(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    UrlPath((o, r, sha)): UrlPath<(String, String, String)>,
    Query(q): Query<PageQuery>,
) -> Response {
    if let Some(refused) = gh.refusal(&headers, &o, &r, "GET statuses") {
        return refused;
    }
    let statuses: Vec<Value> = {
        let g = gh.lock();
        g.status_log
            .iter()
            .rev()
            .filter(|s| s.sha == sha)
            .map(|s| {
                let mut v = wire::status(
                    &gh.owner,
                    &gh.repo,
                    &s.sha,
                    &wire::Status {
                        context: &s.context,
                        state: &s.state,
                        description: "",
                        at: &secs(&s.created_at),
                    },
                );
                v["id"] = json!(s.id);
                v["creator"] = wire::user(&s.creator);
                v
            })
            .collect()
    };
    paged(
        &gh,
        &headers,
        "GET statuses 304",
        statuses,
        (q.per_page, q.page),
    )
}

/// A `labeled-issue-event` (or `unlabeled-issue-event`).
fn event_json(gh: &GitHub, e: &EventRec) -> Value {
    let url = format!(
        "{}/repos/{}/{}/issues/events/{}",
        wire::API,
        gh.owner,
        gh.repo,
        e.id
    );
    json!({
        "id": e.id, "node_id": format!("LE_{}", e.id), "url": url,
        "actor": wire::user(&e.actor), "event": e.event, "commit_id": null, "commit_url": null,
        "created_at": secs(&e.created_at), "performed_via_github_app": null,
        "label": {"name": e.label, "color": "ededed"},
    })
}

impl GitHub {
    /// `user` (a person) opens a pull request from `head` into `base`, and labels it
    /// `labels` (a person with triage access can). Its number, or `None` when `head` does
    /// not exist.
    pub fn open_pr_as(
        &self,
        user: &str,
        head: &str,
        base: &str,
        body: &str,
        labels: &[&str],
    ) -> Option<u64> {
        self.branch_sha(head)?;
        let now = self.now();
        let mut g = self.lock();
        let number = g.next_number();
        g.prs.push(Pr {
            number,
            title: format!("Changes from {user}"),
            body: body.to_owned(),
            head: head.to_owned(),
            base: base.to_owned(),
            state: "open".into(),
            merged_at: None,
            merge_sha: None,
            closed_head: None,
            labels: Vec::new(),
            comments: Vec::new(),
            created_at: secs(&now),
            user: user.to_owned(),
            updated_at: secs(&now),
        });
        g.relabel(
            number,
            user,
            labels.iter().map(|l| (*l).to_owned()).collect(),
            now,
        );
        Some(number)
    }

    /// `user` (a person) opens an issue labelled `labels`; its number.
    pub fn open_issue_as(&self, user: &str, title: &str, body: &str, labels: &[&str]) -> u64 {
        let now = self.now();
        let mut g = self.lock();
        let number = g.next_number();
        g.issues.push(IssueRec {
            number,
            title: title.to_owned(),
            body: body.to_owned(),
            state: "open".into(),
            state_reason: None,
            labels: Vec::new(),
            comments: Vec::new(),
            created_at: secs(&now),
            pinned: false,
            user: user.to_owned(),
            updated_at: secs(&now),
        });
        g.relabel(
            number,
            user,
            labels.iter().map(|l| (*l).to_owned()).collect(),
            now,
        );
        number
    }

    /// `user` (a person with triage access) adds `label` to PR or issue `number`.
    pub fn label_as(&self, number: u64, user: &str, label: &str) -> bool {
        let now = self.now();
        let mut g = self.lock();
        let Some(mut labels) = g.labels_mut(number).map(|l| l.clone()) else {
            return false;
        };
        if !labels.iter().any(|l| l == label) {
            labels.push(label.to_owned());
        }
        g.relabel(number, user, labels, now)
    }

    /// A person with write access replaces the body of PR or issue `number`.
    pub fn edit_body_as(&self, number: u64, body: &str) -> bool {
        let now = self.now();
        let mut g = self.lock();
        let found = if let Some(p) = g.prs.iter_mut().find(|p| p.number == number) {
            p.body = body.to_owned();
            true
        } else if let Some(i) = g.issues.iter_mut().find(|i| i.number == number) {
            i.body = body.to_owned();
            true
        } else {
            false
        };
        if found {
            g.touch(number, now);
        }
        found
    }

    /// A person with write access changes the base branch of open PR `number` (GitHub's
    /// "Edit" of a pull request's base).
    pub fn retarget(&self, number: u64, base: &str) -> bool {
        let now = self.now();
        let mut g = self.lock();
        let Some(p) = g
            .prs
            .iter_mut()
            .find(|p| p.number == number && p.state == "open")
        else {
            return false;
        };
        p.base = base.to_owned();
        g.touch(number, now);
        true
    }

    /// A person with write access squash-merges open PR `number` into its base (whatever
    /// that is now); the merge commit, or `None` when it cannot merge.
    pub fn merge_as(&self, number: u64) -> Option<String> {
        let pr = self
            .pulls()
            .into_iter()
            .find(|p| p.number == number && p.state == "open")?;
        let head = self.branch_sha(&pr.head)?;
        let method = crate::github::MergeMethod::Squash;
        let sha = self
            .merge_into(&pr.base, &pr.head, &pr.title, &method)
            .ok()?;
        self.lock().merged(number, &sha, &head, self.now());
        Some(sha)
    }

    /// A person with write access pushes a new branch `name` at `from`'s head.
    pub fn branch_as(&self, name: &str, from: &str) -> Option<String> {
        let repo = git2::Repository::open_bare(self.repo_path()).ok()?;
        let head = repo
            .find_reference(&format!("refs/heads/{from}"))
            .ok()?
            .peel_to_commit()
            .ok()?;
        repo.branch(name, &head, false).ok()?;
        Some(head.id().to_string())
    }

    /// `user` (a person with write access) sets a commit status on `sha`.
    pub fn status_as(&self, user: &str, sha: &str, context: &str, state: &str) {
        let status = StatusRec {
            id: 0,
            sha: sha.to_owned(),
            context: context.to_owned(),
            state: state.to_owned(),
            creator: user.to_owned(),
            created_at: self.now(),
        };
        self.lock().set_status(status, "");
    }

    /// A person with write access force-pushes to `branch` one commit on `base`'s head that
    /// sets `path` to `text`, dated `dated` (a commit's date is whatever its author writes).
    /// The new head.
    pub fn force_push_as(
        &self,
        who: &str,
        branch: &str,
        base: &str,
        file: (&str, &str),
        dated: DateTime<Utc>,
    ) -> Option<String> {
        self.person_commit(who, branch, base, file, dated)
    }

    /// Every issue event, for tests.
    pub fn issue_events(&self) -> Vec<EventRec> {
        self.lock().events.clone()
    }
}

#[derive(Deserialize)]
struct OpenPrAs {
    user: String,
    head: String,
    base: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    labels: Vec<String>,
}

async fn open_pr_as(State(gh): State<GitHub>, Json(c): Json<OpenPrAs>) -> Response {
    let labels: Vec<&str> = c.labels.iter().map(String::as_str).collect();
    match gh.open_pr_as(&c.user, &c.head, &c.base, &c.body, &labels) {
        Some(number) => (StatusCode::CREATED, Json(json!({"number": number}))).into_response(),
        None => gh_error(StatusCode::UNPROCESSABLE_ENTITY, "head does not exist"),
    }
}

#[derive(Deserialize)]
struct OpenIssueAs {
    user: String,
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    labels: Vec<String>,
}

async fn open_issue_as(State(gh): State<GitHub>, Json(c): Json<OpenIssueAs>) -> Response {
    let labels: Vec<&str> = c.labels.iter().map(String::as_str).collect();
    let number = gh.open_issue_as(&c.user, &c.title, &c.body, &labels);
    (StatusCode::CREATED, Json(json!({"number": number}))).into_response()
}

#[derive(Deserialize)]
struct LabelAs {
    user: String,
    number: u64,
    label: String,
}

async fn label_as(State(gh): State<GitHub>, Json(c): Json<LabelAs>) -> StatusCode {
    if gh.label_as(c.number, &c.user, &c.label) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}
