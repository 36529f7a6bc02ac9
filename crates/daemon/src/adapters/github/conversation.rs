//! A PR's or issue's conversation (comments, reviews, reactions) and who may approve.

use super::*;

#[async_trait]
impl Conversation for GitHub {
    async fn comment(&self, number: u64, body: &str) -> PortResult<()> {
        let _: Value = self
            .req(
                "issues/create-comment",
                self.auth.writer().await?._post(
                    self.route(&format!("issues/{number}/comments")),
                    Some(&json!({"body": body})),
                ),
            )
            .await?;
        Ok(())
    }

    async fn comments(&self, number: u64) -> PortResult<Vec<chatops::Comment>> {
        let mut comments: Vec<chatops::Comment> = self
            .conditional_list::<CommentWire>(
                "issues/list-comments",
                &format!("issues/{number}/comments"),
                json!({}),
            )
            .await?
            .into_iter()
            .map(Into::into)
            .collect();
        comments.sort_by_key(|c| c.id);
        Ok(comments)
    }

    async fn reviews(&self, number: u64) -> PortResult<Vec<chatops::Review>> {
        let reviews: Vec<ReviewWire> = self
            .conditional_list(
                "pulls/list-reviews",
                &format!("pulls/{number}/reviews"),
                json!({}),
            )
            .await?;
        Ok(reviews
            .into_iter()
            .map(|r| chatops::Review {
                user: r.user.map(|u| u.login).unwrap_or_default(),
                state: r.state,
                commit_id: r.commit_id.unwrap_or_default(),
            })
            .collect())
    }

    async fn react(&self, comment_id: u64, reaction: Reaction) -> PortResult<()> {
        let _: Value = self
            .req(
                "reactions/create-for-issue-comment",
                self.auth.writer().await?._post(
                    self.route(&format!("issues/comments/{comment_id}/reactions")),
                    Some(&json!({"content": reaction.as_str()})),
                ),
            )
            .await?;
        Ok(())
    }

    async fn me(&self) -> PortResult<String> {
        self.me
            .get_or_try_init(|| async {
                let u: UserWire = self
                    .req(
                        "users/get-authenticated",
                        self.auth.client().await?._get("/user"),
                    )
                    .await?;
                Ok(u.login)
            })
            .await
            .cloned()
    }
}

#[async_trait]
impl Access for GitHub {
    async fn permission(&self, user: &str) -> PortResult<Permission> {
        #[derive(Deserialize)]
        struct Level {
            permission: String,
        }
        let p: PortResult<Level> = self
            .req(
                "repos/get-collaborator-permission-level",
                self.auth
                    .client()
                    .await?
                    ._get(self.route(&format!("collaborators/{user}/permission"))),
            )
            .await;
        match p {
            Ok(p) => Ok(Permission::parse(&p.permission)),
            // A login that no longer exists (or never had access): no permission at all.
            Err(e) if e.kind == ErrorKind::NotFound => Ok(Permission::None),
            Err(e) => Err(e),
        }
    }

    async fn team_member(&self, org: &str, team: &str, user: &str) -> PortResult<bool> {
        #[derive(Deserialize)]
        struct Membership {
            state: String,
        }
        let r: PortResult<Membership> = self
            .req(
                "teams/get-membership-for-user-in-org",
                self.auth
                    .client()
                    .await?
                    ._get(format!("/orgs/{org}/teams/{team}/memberships/{user}")),
            )
            .await;
        match r {
            Ok(m) => Ok(m.state == "active"),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}
