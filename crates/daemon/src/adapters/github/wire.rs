//! GitHub's answers as tugboat reads them: small wire types with only the fields it uses.

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct UserWire {
    pub(super) login: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct CommentWire {
    pub(super) id: u64,
    pub(super) user: Option<UserWire>,
    pub(super) body: Option<String>,
    pub(super) created_at: String,
    pub(super) updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ReviewWire {
    pub(super) user: Option<UserWire>,
    pub(super) state: String,
    pub(super) commit_id: Option<String>,
}

pub(super) fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

impl From<CommentWire> for chatops::Comment {
    fn from(c: CommentWire) -> Self {
        let created_at = time(&c.created_at);
        Self {
            id: c.id,
            user: c.user.map(|u| u.login).unwrap_or_default(),
            body: c.body.unwrap_or_default(),
            edited: c
                .updated_at
                .as_deref()
                .is_some_and(|u| time(u) > created_at),
            created_at,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct PrWire {
    pub(super) number: u64,
    pub(super) html_url: Option<String>,
    pub(super) title: String,
    pub(super) body: Option<String>,
    pub(super) head: HeadWire,
    pub(super) base: BaseWire,
    pub(super) user: Option<UserWire>,
    pub(super) merged_at: Option<String>,
    pub(super) merge_commit_sha: Option<String>,
    #[serde(default)]
    pub(super) labels: Vec<LabelWire>,
    /// Only in a single pull request's answer; `null` while GitHub computes it.
    #[serde(default)]
    pub(super) mergeable: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub(super) struct HeadWire {
    pub(super) sha: String,
    #[serde(rename = "ref", default)]
    pub(super) branch: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct BaseWire {
    #[serde(rename = "ref")]
    pub(super) branch: String,
}

impl From<PrWire> for PullRequest {
    fn from(p: PrWire) -> Self {
        let merged = p.merged_at.is_some();
        Self {
            number: p.number,
            url: p.html_url.unwrap_or_default(),
            head_sha: p.head.sha,
            branch: p.head.branch,
            author: p.user.map(|u| u.login).unwrap_or_default(),
            title: p.title,
            body: p.body.unwrap_or_default(),
            merged,
            merge_sha: if merged { p.merge_commit_sha } else { None },
            labels: p.labels.into_iter().map(|l| l.name).collect(),
            base: p.base.branch,
            mergeable: p.mergeable,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct IssueWire {
    pub(super) number: u64,
    /// The GraphQL id (`pinIssue` takes it).
    #[serde(default)]
    pub(super) node_id: Option<String>,
    pub(super) html_url: Option<String>,
    pub(super) title: String,
    pub(super) body: Option<String>,
    pub(super) state: String,
    /// Present when the "issue" is a pull request (the issues API lists both).
    pub(super) pull_request: Option<Value>,
    #[serde(default)]
    pub(super) labels: Vec<LabelWire>,
    /// Who opened it (`null` for a deleted account).
    #[serde(default)]
    pub(super) user: Option<UserWire>,
    #[serde(default)]
    pub(super) updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct LabelWire {
    pub(super) name: String,
}

/// One of an issue's events (`issue-event-for-issue`); only labellings are read.
#[derive(Debug, Deserialize)]
pub(super) struct IssueEventWire {
    pub(super) event: String,
    #[serde(default)]
    pub(super) actor: Option<UserWire>,
    #[serde(default)]
    pub(super) label: Option<LabelWire>,
}

impl From<IssueWire> for Issue {
    fn from(i: IssueWire) -> Self {
        Self {
            number: i.number,
            url: i.html_url.unwrap_or_default(),
            title: i.title,
            body: i.body.unwrap_or_default(),
            open: i.state == "open",
            author: i.user.map(|u| u.login).unwrap_or_default(),
            updated_at: i.updated_at.as_deref().map(time),
        }
    }
}
