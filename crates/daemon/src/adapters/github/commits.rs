//! GitHub's Git Data API: tugboat's commits made by GitHub instead of pushed, so that GitHub
//! signs them and branch protection's "Require signed commits" accepts them. The blobs and
//! the tree must hash exactly as the local clone's: the byte-exact edit is checked, not
//! trusted.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::GitHub;
use crate::adapters::git::{ApiFile, CommitApi};
use crate::ports::{ErrorKind, PortError, PortResult};

#[derive(Deserialize)]
struct Made {
    sha: String,
}

/// A ref's name as one path segment (`heads%2Ftugboat%2Fdev%2Fapi`), as GitHub accepts it.
fn ref_segment(branch: &str) -> String {
    form_urlencoded::byte_serialize(format!("heads/{branch}").as_bytes()).collect()
}

fn differs(operation: &'static str, what: &str, ours: &str, theirs: &str) -> PortError {
    PortError::new(
        "github",
        operation,
        ErrorKind::Rejected,
        format!(
            "GitHub hashed {what} as {theirs}, the local clone as {ours}: not committing an edit that is not byte-exact"
        ),
    )
}

#[async_trait]
impl CommitApi for GitHub {
    async fn create_commit(
        &self,
        parent: &str,
        base_tree: &str,
        files: &[ApiFile<'_>],
        tree: &str,
        message: &str,
    ) -> PortResult<String> {
        let mut entries = Vec::new();
        for f in files {
            // The text is UTF-8, and JSON carries it exactly; the sha below proves it.
            let body = json!({"content": f.text, "encoding": "utf-8"});
            let blob: Made = self
                .req(
                    "git/create-blob",
                    self.auth
                        .writer()
                        .await?
                        ._post(self.route("git/blobs"), Some(&body)),
                )
                .await?;
            if blob.sha != f.blob {
                return Err(differs("git/create-blob", f.path, &f.blob, &blob.sha));
            }
            entries.push(json!({"path": f.path, "mode": format!("{:06o}", f.mode),
                                "type": "blob", "sha": blob.sha}));
        }
        let body = json!({"base_tree": base_tree, "tree": entries});
        let made: Made = self
            .req(
                "git/create-tree",
                self.auth
                    .writer()
                    .await?
                    ._post(self.route("git/trees"), Some(&body)),
            )
            .await?;
        if made.sha != tree {
            return Err(differs("git/create-tree", "the tree", tree, &made.sha));
        }
        // No author or committer: GitHub makes the commit as the App (or the token's user)
        // and signs it.
        let body = json!({"message": message, "tree": tree, "parents": [parent]});
        let commit: Made = self
            .req(
                "git/create-commit",
                self.auth
                    .writer()
                    .await?
                    ._post(self.route("git/commits"), Some(&body)),
            )
            .await?;
        Ok(commit.sha)
    }

    async fn set_branch(&self, branch: &str, sha: &str, exists: bool) -> PortResult<bool> {
        if exists {
            let body = json!({"sha": sha, "force": true});
            let route = self.route(&format!("git/refs/{}", ref_segment(branch)));
            let moved: PortResult<Value> = self
                .req(
                    "git/update-ref",
                    self.auth.writer().await?._patch(route, Some(&body)),
                )
                .await;
            match moved {
                Ok(_) => return Ok(true),
                // Deleted since the fetch (a merged PR's branch): create it instead.
                Err(e) if e.kind == ErrorKind::Rejected => {
                    tracing::info!(branch, error = %e, "the branch is gone; creating it");
                }
                Err(e) => return Err(e),
            }
        }
        let body = json!({"ref": format!("refs/heads/{branch}"), "sha": sha});
        let created: PortResult<Value> = self
            .req(
                "git/create-ref",
                self.auth
                    .writer()
                    .await?
                    ._post(self.route("git/refs"), Some(&body)),
            )
            .await;
        match created {
            Ok(_) => Ok(true),
            // "Reference already exists": another replica created it a moment ago.
            Err(e) if e.kind == ErrorKind::Rejected => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_branch_with_slashes_is_one_escaped_path_segment() {
        assert_eq!(
            ref_segment("tugboat/dev/api"),
            "heads%2Ftugboat%2Fdev%2Fapi"
        );
    }
}
