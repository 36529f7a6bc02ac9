//! The base branch's merge queue, through GitHub's GraphQL API (REST has no merge queue):
//! `enqueuePullRequest`, `dequeuePullRequest`, and a pull request's `mergeQueueEntry` and last
//! `RemovedFromMergeQueueEvent` (GitHub's GraphQL reference, "Pull requests" and "Merge
//! queue"; "Managing a merge queue" in GitHub's documentation).

use super::*;
use crate::ports::{MergeQueue, QueueState};

/// A PR's node id, queue entry and last removal from the queue.
const STATE: &str = "query($owner: String!, $name: String!, $number: Int!) { \
    repository(owner: $owner, name: $name) { pullRequest(number: $number) { id \
    mergeQueueEntry { position state } \
    timelineItems(last: 1, itemTypes: [REMOVED_FROM_MERGE_QUEUE_EVENT]) { nodes { \
    ... on RemovedFromMergeQueueEvent { createdAt reason actor { login } } } } } } }";

const ENQUEUE: &str = "mutation($id: ID!, $head: GitObjectID) { \
    enqueuePullRequest(input: {pullRequestId: $id, expectedHeadOid: $head}) { \
    mergeQueueEntry { position state } } }";

const DEQUEUE: &str = "mutation($id: ID!) { dequeuePullRequest(input: {id: $id}) { \
    mergeQueueEntry { position } } }";

#[derive(Debug, Deserialize)]
struct EntryWire {
    position: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemovedWire {
    created_at: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    actor: Option<UserWire>,
}

#[derive(Debug, Deserialize)]
struct TimelineWire {
    #[serde(default)]
    nodes: Vec<Option<RemovedWire>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullWire {
    id: String,
    merge_queue_entry: Option<EntryWire>,
    timeline_items: Option<TimelineWire>,
}

impl GitHub {
    async fn queue_pull(&self, number: u64) -> PortResult<PullWire> {
        let body = json!({"query": STATE, "variables":
            {"owner": self.owner, "name": self.repo, "number": number}});
        let subject = format!("PR #{number}");
        let data = self
            .graphql_data("graphql/merge-queue-entry", body, &subject)
            .await?;
        serde_json::from_value(data["repository"]["pullRequest"].clone()).map_err(|e| {
            PortError::new(
                "github",
                "graphql/merge-queue-entry",
                ErrorKind::Rejected,
                format!("{subject}: answer: {e}"),
            )
        })
    }
}

#[async_trait]
impl MergeQueue for GitHub {
    async fn enqueue(&self, number: u64, head: &str) -> PortResult<u32> {
        let pull = self.queue_pull(number).await?;
        if let Some(entry) = pull.merge_queue_entry {
            return Ok(entry.position); // queued already (another replica, a restart)
        }
        let body = json!({"query": ENQUEUE, "variables": {"id": pull.id, "head": head}});
        let data = self
            .graphql_data("graphql/enqueue", body, &format!("PR #{number}"))
            .await?;
        Ok(data["enqueuePullRequest"]["mergeQueueEntry"]["position"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(1))
    }

    async fn dequeue(&self, number: u64) -> PortResult<()> {
        let pull = self.queue_pull(number).await?;
        if pull.merge_queue_entry.is_none() {
            return Ok(()); // not queued (any more)
        }
        let body = json!({"query": DEQUEUE, "variables": {"id": pull.id}});
        self.graphql_data("graphql/dequeue", body, &format!("PR #{number}"))
            .await?;
        Ok(())
    }

    async fn queue_state(&self, number: u64) -> PortResult<QueueState> {
        let pull = self.queue_pull(number).await?;
        if let Some(entry) = pull.merge_queue_entry {
            return Ok(QueueState::Queued {
                position: entry.position,
            });
        }
        let removed = pull
            .timeline_items
            .and_then(|t| t.nodes.into_iter().flatten().next_back());
        Ok(match removed {
            Some(r) => QueueState::Removed {
                reason: r
                    .reason
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| "no reason given".to_owned()),
                at: time(&r.created_at),
                by: r.actor.map(|a| a.login).unwrap_or_default(),
            },
            None => QueueState::Absent,
        })
    }
}
