//! The repository's activity: every update of a branch, who made it and when, as GitHub
//! documents it ("List repository activities", `GET /repos/{owner}/{repo}/activity`,
//! docs.github.com/en/rest/repos/repos#list-repository-activities): newest first by default
//! (`direction`), filtered by `ref` (`main` or `refs/heads/main`), `actor` and
//! `activity_type` (`push`, `force_push`, `branch_creation`, `branch_deletion`, `pr_merge`,
//! `merge_queue_merge`), `per_page` up to 100; each entry has `before` and `after` (forty
//! zeros for a branch created or deleted), `ref`, `timestamp`, `activity_type` and `actor`
//! (nullable). Readable with Metadata read.
//!
//! The stand-in records an update where it makes one: a push over smart HTTP or through the
//! Git Data API (by the token's user), a person's push (`commit_as`, `force_push_as`), a
//! merge. An update found that none of them recorded (the merge queue's temporary branches)
//! is recorded with no actor.

use super::*;

/// Forty zeros: no commit (a branch created or deleted).
const NONE: &str = "0000000000000000000000000000000000000000";

/// One branch update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRec {
    pub id: u64,
    pub before: String,
    pub after: String,
    /// `refs/heads/<branch>`.
    pub reference: String,
    pub timestamp: DateTime<Utc>,
    pub activity_type: String,
    pub actor: Option<String>,
}

/// The activity, and each branch's head when last recorded.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    records: Vec<ActivityRec>,
    heads: BTreeMap<String, String>,
}

impl GitHub {
    /// Record every branch that moved since the last record as updated by `actor`; `merge`
    /// names the update when it is a merge (`pr_merge`, `merge_queue_merge`).
    pub(crate) fn note_activity(&self, actor: Option<&str>, merge: Option<&str>) {
        let Ok(repo) = git2::Repository::open_bare(self.repo_path()) else {
            return;
        };
        let Ok(refs) = repo.references_glob("refs/heads/*") else {
            return;
        };
        let now: BTreeMap<String, String> = refs
            .flatten()
            .filter_map(|r| {
                let name = r.name().ok().map(str::to_owned);
                Some((name?, r.target()?.to_string()))
            })
            .collect();
        let at = self.now();
        let mut g = self.lock();
        let seen = std::mem::take(&mut g.activity.heads);
        let mut names: Vec<&String> = now.keys().chain(seen.keys()).collect();
        names.sort();
        names.dedup();
        let mut records = Vec::new();
        for name in names {
            let (before, after) = (seen.get(name), now.get(name));
            if before == after {
                continue;
            }
            let kind = match (before, after) {
                (None, _) => "branch_creation",
                (_, None) => "branch_deletion",
                (Some(b), Some(a)) => match merge {
                    Some(m) => m,
                    None if descends(&repo, a, b) => "push",
                    None => "force_push",
                },
            };
            records.push((name.clone(), before.cloned(), after.cloned(), kind));
        }
        for (reference, before, after, kind) in records {
            let id = g.activity.records.len() as u64 + 1;
            g.activity.records.push(ActivityRec {
                id,
                before: before.unwrap_or_else(|| NONE.to_owned()),
                after: after.unwrap_or_else(|| NONE.to_owned()),
                reference,
                timestamp: at,
                activity_type: kind.to_owned(),
                actor: actor.map(str::to_owned),
            });
        }
        g.activity.heads = now;
    }

    /// Every branch update recorded, oldest first.
    pub fn activities(&self) -> Vec<ActivityRec> {
        self.note_activity(None, None);
        self.lock().activity.records.clone()
    }
}

fn descends(repo: &git2::Repository, after: &str, before: &str) -> bool {
    match (git2::Oid::from_str(after), git2::Oid::from_str(before)) {
        (Ok(a), Ok(b)) => repo.graph_descendant_of(a, b).unwrap_or(false),
        _ => false,
    }
}

#[derive(Deserialize)]
pub(super) struct ActivityQuery {
    #[serde(default)]
    direction: Option<String>,
    #[serde(default)]
    per_page: Option<usize>,
    #[serde(rename = "ref", default)]
    reference: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    activity_type: Option<String>,
}

pub(super) async fn list_activities(
    State(gh): State<GitHub>,
    headers: HeaderMap,
    Query(q): Query<ActivityQuery>,
) -> Response {
    gh.count("GET activity");
    if !gh.authorized(&headers) {
        return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let reference = q.reference.map(|r| {
        if r.starts_with("refs/") {
            r
        } else {
            format!("refs/heads/{r}")
        }
    });
    let mut list: Vec<ActivityRec> = gh
        .activities()
        .into_iter()
        .filter(|a| reference.as_ref().is_none_or(|r| &a.reference == r))
        .filter(|a| q.actor.is_none() || a.actor == q.actor)
        .filter(|a| {
            q.activity_type
                .as_ref()
                .is_none_or(|t| &a.activity_type == t)
        })
        .collect();
    if q.direction.as_deref() != Some("asc") {
        list.reverse();
    }
    list.truncate(q.per_page.unwrap_or(30).clamp(1, 100));
    let body: Vec<Value> = list
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "node_id": format!("RA_{}", a.id),
                "before": a.before,
                "after": a.after,
                "ref": a.reference,
                "timestamp": a.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "activity_type": a.activity_type,
                "actor": a.actor.as_deref().map(wire::user),
            })
        })
        .collect();
    Json(body).into_response()
}
