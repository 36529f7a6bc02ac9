//! Pull requests: open, update, list, merge, and their labels.

use super::*;

#[async_trait]
impl PullRequests for GitHub {
    async fn find_open_pr(&self, branch: &str) -> PortResult<Option<PullRequest>> {
        let head = format!("{}:{branch}", self.owner);
        let prs: Vec<PrWire> = self
            .conditional_list(
                "pulls/list",
                "pulls",
                json!({"state": "open", "head": head, "base": self.base}),
            )
            .await?;
        Ok(prs.into_iter().next().map(Into::into))
    }

    async fn pull(&self, number: u64) -> PortResult<PullRequest> {
        let pr: PrWire = self
            .req(
                "pulls/get",
                self.auth
                    .client()
                    .await?
                    ._get(self.route(&format!("pulls/{number}"))),
            )
            .await?;
        Ok(pr.into())
    }

    async fn labelled_prs(
        &self,
        labels: &[String],
        open_only: bool,
    ) -> PortResult<Vec<LabelledPr>> {
        let state = if open_only { "open" } else { "all" };
        let query = json!({"state": state, "sort": "created", "direction": "asc",
                           "labels": labels.join(",")});
        let mut found: Vec<IssueWire> = self
            .conditional_list("issues/list-for-repo", "issues", query)
            .await?;
        found.sort_by_key(|i| i.number);
        Ok(found
            .into_iter()
            .filter_map(|i| {
                let pr = i.pull_request?;
                Some(LabelledPr {
                    number: i.number,
                    url: i.html_url.unwrap_or_default(),
                    title: i.title,
                    body: i.body.unwrap_or_default(),
                    labels: i.labels.into_iter().map(|l| l.name).collect(),
                    open: i.state == "open",
                    merged_at: pr.get("merged_at").and_then(Value::as_str).map(time),
                    author: i.user.map(|u| u.login).unwrap_or_default(),
                    updated_at: i.updated_at.as_deref().map(time),
                })
            })
            .collect())
    }

    async fn open_pr(&self, pr: NewPullRequest) -> PortResult<PullRequest> {
        let body = json!({
            "title": pr.title, "head": pr.branch, "base": self.base, "body": pr.body,
            "maintainer_can_modify": false,
        });
        let created: PrWire = self
            .req(
                "pulls/create",
                self.auth
                    .writer()
                    .await?
                    ._post(self.route("pulls"), Some(&body)),
            )
            .await?;
        if !pr.labels.is_empty() {
            let _: Value = self
                .req(
                    "issues/add-labels",
                    self.auth.writer().await?._post(
                        self.route(&format!("issues/{}/labels", created.number)),
                        Some(&json!({"labels": pr.labels})),
                    ),
                )
                .await?;
        }
        Ok(PullRequest {
            labels: pr.labels,
            ..created.into()
        })
    }

    async fn update_pr(&self, number: u64, title: &str, body: &str) -> PortResult<()> {
        let _: Value = self
            .req(
                "pulls/update",
                self.auth.writer().await?._patch(
                    self.route(&format!("pulls/{number}")),
                    Some(&json!({"title": title, "body": body})),
                ),
            )
            .await?;
        Ok(())
    }

    async fn close_pr(&self, number: u64, why: &str) -> PortResult<()> {
        self.comment(number, why).await?;
        let _: Value = self
            .req(
                "pulls/update",
                self.auth.writer().await?._patch(
                    self.route(&format!("pulls/{number}")),
                    Some(&json!({"state": "closed"})),
                ),
            )
            .await?;
        Ok(())
    }

    async fn merge(&self, number: u64, expected_head: &str, title: &str) -> PortResult<String> {
        #[derive(Deserialize)]
        struct Merged {
            sha: String,
        }
        let mut body = json!({"sha": expected_head, "merge_method": self.merge_method.as_str()});
        if self.merge_method != MergeMethod::Rebase {
            body["commit_title"] = json!(title);
        }
        let m: Merged = self
            .req(
                "pulls/merge",
                self.auth
                    .writer()
                    .await?
                    ._put(self.route(&format!("pulls/{number}/merge")), Some(&body)),
            )
            .await?;
        Ok(m.sha)
    }

    async fn add_labels(&self, number: u64, labels: &[String]) -> PortResult<()> {
        let _: Value = self
            .req(
                "issues/add-labels",
                self.auth.writer().await?._post(
                    self.route(&format!("issues/{number}/labels")),
                    Some(&json!({"labels": labels})),
                ),
            )
            .await?;
        Ok(())
    }

    async fn relabel(
        &self,
        number: u64,
        add: &[&str],
        remove: &[&str],
        body: Option<&str>,
    ) -> PortResult<()> {
        #[derive(Deserialize)]
        struct Labelled {
            #[serde(default)]
            labels: Vec<LabelWire>,
        }
        // A read: it costs no write budget.
        let now: Labelled = self
            .req(
                "pulls/get",
                self.auth
                    .client()
                    .await?
                    ._get(self.route(&format!("pulls/{number}"))),
            )
            .await?;
        let before: Vec<String> = now.labels.into_iter().map(|l| l.name).collect();
        let mut after: Vec<String> = before
            .iter()
            .filter(|l| !remove.contains(&l.as_str()))
            .cloned()
            .collect();
        for l in add {
            if !after.iter().any(|a| a == l) {
                after.push((*l).to_owned());
            }
        }
        if after == before && body.is_none() {
            return Ok(());
        }
        let mut edit = json!({"labels": after});
        if let Some(b) = body {
            edit["body"] = json!(b);
        }
        let _: Value = self
            .req(
                "issues/update",
                self.auth
                    .writer()
                    .await?
                    ._patch(self.route(&format!("issues/{number}")), Some(&edit)),
            )
            .await?;
        Ok(())
    }

    async fn remove_label(&self, number: u64, label: &str) -> PortResult<()> {
        let path = format!("issues/{number}/labels/{}", label.replace(' ', "%20"));
        match self
            .req::<Value>(
                "issues/remove-label",
                self.auth
                    .writer()
                    .await?
                    ._delete(self.route(&path), None::<&()>),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}
