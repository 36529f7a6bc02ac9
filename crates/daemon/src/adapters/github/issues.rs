//! Issues: hold issues, rescan reports and the dashboard, with their labels and events.

use super::*;

#[async_trait]
impl Issues for GitHub {
    async fn open_issues(&self, labels: &[String]) -> PortResult<Vec<Issue>> {
        let q = json!({"state": "open", "labels": labels.join(","), "sort": "created",
                       "direction": "asc"});
        // Conditional: the hold issues are listed every cycle, and an unchanged list is free.
        let mut found: Vec<IssueWire> = self
            .conditional_list("issues/list-for-repo", "issues", q)
            .await?;
        found.retain(|i| i.pull_request.is_none() && i.state == "open");
        found.sort_by_key(|i| i.number);
        Ok(found.into_iter().map(Into::into).collect())
    }

    async fn open_issue(&self, title: &str, body: &str, labels: &[String]) -> PortResult<Issue> {
        let created: IssueWire = self
            .req(
                "issues/create",
                self.auth.writer().await?._post(
                    self.route("issues"),
                    Some(&json!({"title": title, "body": body, "labels": labels})),
                ),
            )
            .await?;
        Ok(created.into())
    }

    async fn update_issue(
        &self,
        number: u64,
        title: &str,
        body: &str,
        open: bool,
    ) -> PortResult<()> {
        let mut patch = json!({"title": title, "body": body,
                               "state": if open { "open" } else { "closed" }});
        if !open {
            patch["state_reason"] = json!("completed");
        }
        let _: Value = self
            .req(
                "issues/update",
                self.auth
                    .writer()
                    .await?
                    ._patch(self.route(&format!("issues/{number}")), Some(&patch)),
            )
            .await?;
        Ok(())
    }

    async fn pin_issue(&self, number: u64) -> PortResult<()> {
        let issue: IssueWire = self
            .req(
                "issues/get",
                self.auth
                    .client()
                    .await?
                    ._get(self.route(&format!("issues/{number}"))),
            )
            .await?;
        let subject = format!("issue #{number}");
        let id = issue.node_id.ok_or_else(|| {
            PortError::new(
                "github",
                "graphql/pin-issue",
                ErrorKind::Rejected,
                format!("{subject}: GitHub gave no node_id"),
            )
        })?;
        let mutation =
            "mutation($id: ID!) { pinIssue(input: {issueId: $id}) { issue { number } } }";
        let body = json!({"query": mutation, "variables": {"id": id}});
        self.graphql_data("graphql/pin-issue", body, &subject)
            .await?;
        Ok(())
    }

    async fn label_events(&self, number: u64) -> PortResult<Vec<LabelEvent>> {
        // A conditional listing: unchanged events cost no rate limit.
        let events: Vec<IssueEventWire> = self
            .conditional_list(
                "issues/list-events",
                &format!("issues/{number}/events"),
                json!({}),
            )
            .await?;
        Ok(events
            .into_iter()
            .filter(|e| e.event == "labeled" || e.event == "unlabeled")
            .filter_map(|e| {
                Some(LabelEvent {
                    label: e.label?.name,
                    // A deleted account shows as `null`; it is nobody tugboat trusts.
                    actor: e.actor.map(|a| a.login).unwrap_or_default(),
                    added: e.event == "labeled",
                })
            })
            .collect())
    }
}
