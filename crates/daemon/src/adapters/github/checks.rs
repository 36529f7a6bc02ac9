//! Commit statuses and check runs: tugboat's reports, and the checks a merge waits for.

use super::*;

#[async_trait]
impl Checks for GitHub {
    async fn checks(&self, sha: &str) -> PortResult<Vec<Check>> {
        #[derive(Deserialize)]
        struct Combined {
            #[serde(default)]
            statuses: Vec<StatusWire>,
        }
        #[derive(Deserialize)]
        struct StatusWire {
            context: String,
            state: String,
        }
        // The combined status lists the newest status of each context.
        let c: Combined = self
            .req(
                "repos/get-combined-status-for-ref",
                self.auth
                    .client()
                    .await?
                    ._get(self.route(&format!("commits/{sha}/status"))),
            )
            .await?;
        let mut out: Vec<Check> = c
            .statuses
            .into_iter()
            .filter(|s| CheckKind::named(&s.context).is_none())
            .map(|s| Check {
                state: match s.state.as_str() {
                    "success" => CheckState::Success,
                    "pending" => CheckState::Pending,
                    _ => CheckState::Failure,
                },
                name: s.context,
            })
            .collect();
        // GitHub Actions reports as check runs, which the combined status never shows. A
        // fine-grained token without "Checks: read" is refused them (403): it then sees
        // the statuses only, and says so.
        match self.check_runs(sha).await {
            Ok(runs) => out.extend(checks_of(&runs)),
            Err(e) if e.kind == ErrorKind::Denied => {
                tracing::warn!(error = %e, "cannot read check runs (give the token Checks: read); judging commit statuses only");
            }
            Err(e) => return Err(e),
        }
        Ok(out)
    }

    async fn report(&self, r: &CheckReport) -> PortResult<()> {
        let body = if self.auth.is_app() {
            check_run(r)
        } else {
            let description: String = r.title.chars().take(140).collect();
            let mut body = json!({"state": r.state.as_str(), "context": r.kind.name(),
                                  "description": description});
            if let Some(link) = &r.link {
                body["target_url"] = json!(link);
            }
            body
        };
        let (operation, route) = if self.auth.is_app() {
            ("checks/create", self.route("check-runs"))
        } else {
            (
                "repos/create-commit-status",
                self.route(&format!("statuses/{}", r.sha)),
            )
        };
        let _: Value = self
            .req(
                operation,
                self.auth.writer().await?._post(route, Some(&body)),
            )
            .await?;
        Ok(())
    }

    async fn first_report(&self, sha: &str, kind: CheckKind) -> PortResult<Option<DateTime<Utc>>> {
        if self.auth.is_app() {
            self.first_run(sha, kind).await
        } else {
            self.first_status(sha, kind).await
        }
    }

    /// `GET /repos/{o}/{r}/activity?ref=refs/heads/{branch}` ("List repository activities",
    /// docs.github.com/en/rest/repos/repos#list-repository-activities: the repository's
    /// history of ref updates, newest first, each with its `before`, `after`, `actor` and
    /// `activity_type`). The newest push, force push or creation of the branch that left it
    /// at `sha`. A repository or token that does not show its activity (GitHub Enterprise
    /// Server before the endpoint, a token without Metadata read) is no record, not an error.
    async fn pushed_by(&self, branch: &str, sha: &str) -> PortResult<Option<Pushed>> {
        #[derive(Deserialize)]
        struct ActivityWire {
            after: String,
            activity_type: String,
            timestamp: DateTime<Utc>,
            #[serde(default)]
            actor: Option<UserWire>,
        }
        let route = Self::with_query(
            self.route("activity"),
            &json!({"ref": format!("refs/heads/{branch}"), "per_page": 30}),
        );
        let answer: PortResult<Vec<ActivityWire>> = self
            .req(
                "repos/list-activities",
                self.auth.client().await?._get(route),
            )
            .await;
        let list = match answer {
            Ok(list) => list,
            Err(e) if matches!(e.kind, ErrorKind::Denied | ErrorKind::NotFound) => {
                tracing::debug!(error = %e, "the repository's activity cannot be read");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        Ok(list
            .into_iter()
            .find(|a| {
                a.after == sha
                    && matches!(
                        a.activity_type.as_str(),
                        "push" | "force_push" | "branch_creation"
                    )
            })
            .map(|a| Pushed {
                actor: a.actor.map(|u| u.login),
                at: a.timestamp,
            }))
    }

    /// `GET /repos/{o}/{r}/rules/branches/{branch}` ("Get rules for a branch"): the active
    /// rules of every repository and organization ruleset on the branch, readable with
    /// Metadata read (so with any token or installation that reaches the repository).
    async fn rules(&self) -> PortResult<BranchRules> {
        let route = Self::with_query(
            self.route(&format!("rules/branches/{}", self.base)),
            &json!({"per_page": 100}),
        );
        let answer: PortResult<Vec<RuleWire>> = self
            .req(
                "repos/get-branch-rules",
                self.auth.client().await?._get(route),
            )
            .await;
        let mut rules = BranchRules {
            branch: self.base.clone(),
            ..BranchRules::default()
        };
        match answer {
            Ok(list) => list.into_iter().for_each(|r| r.fold_into(&mut rules)),
            Err(e) if matches!(e.kind, ErrorKind::Denied | ErrorKind::NotFound) => {
                rules.unreadable = Some(format!("its rulesets: {e}"));
            }
            Err(e) => return Err(e),
        }
        rules.merge(self.classic_protection().await?);
        Ok(rules)
    }
}

impl GitHub {
    /// Classic branch protection's required status checks, as "Get a branch" shows them to
    /// anyone who may read the repository (the rest of classic protection needs admin
    /// rights to read, and is not asked for).
    async fn classic_protection(&self) -> PortResult<BranchRules> {
        #[derive(Deserialize)]
        struct BranchWire {
            #[serde(default)]
            protection: Option<ProtectionWire>,
        }
        #[derive(Deserialize)]
        struct ProtectionWire {
            #[serde(default)]
            required_status_checks: Option<RequiredWire>,
        }
        #[derive(Deserialize)]
        struct RequiredWire {
            #[serde(default)]
            enforcement_level: Option<String>,
            #[serde(default)]
            contexts: Vec<String>,
        }
        let answer: PortResult<BranchWire> = self
            .req(
                "repos/get-branch",
                self.auth
                    .client()
                    .await?
                    ._get(self.route(&format!("branches/{}", self.base))),
            )
            .await;
        let mut rules = BranchRules::default();
        match answer {
            Ok(b) => {
                let required = b.protection.and_then(|p| p.required_status_checks);
                if let Some(r) = required.filter(|r| r.enforcement_level.as_deref() != Some("off"))
                {
                    rules.required_checks = r.contexts;
                }
            }
            Err(e) if matches!(e.kind, ErrorKind::Denied | ErrorKind::NotFound) => {
                rules.unreadable = Some(format!("its branch protection: {e}"));
            }
            Err(e) => return Err(e),
        }
        Ok(rules)
    }
}

/// One rule as "Get rules for a branch" lists it (`repository-rule-detailed`).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum RuleWire {
    RequiredStatusChecks {
        parameters: StatusChecksWire,
    },
    PullRequest {
        parameters: PullRequestWire,
    },
    MergeQueue,
    RequiredSignatures,
    RequiredLinearHistory,
    /// Rules that do not bear on how tugboat merges (deletion, name patterns, …).
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub(super) struct StatusChecksWire {
    required_status_checks: Vec<ContextWire>,
    #[serde(default)]
    strict_required_status_checks_policy: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct ContextWire {
    context: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct PullRequestWire {
    #[serde(default)]
    required_approving_review_count: u32,
}

impl RuleWire {
    fn fold_into(self, rules: &mut BranchRules) {
        let mut one = BranchRules::default();
        match self {
            RuleWire::RequiredStatusChecks { parameters } => {
                one.required_checks = parameters
                    .required_status_checks
                    .into_iter()
                    .map(|c| c.context)
                    .collect();
                one.up_to_date = parameters.strict_required_status_checks_policy;
            }
            RuleWire::PullRequest { parameters } => {
                one.required_reviews = parameters.required_approving_review_count;
            }
            RuleWire::MergeQueue => one.merge_queue = true,
            RuleWire::RequiredSignatures => one.signed_commits = true,
            RuleWire::RequiredLinearHistory => one.linear_history = true,
            RuleWire::Other => {}
        }
        rules.merge(one);
    }
}

impl GitHub {
    /// When tugboat's own login first set status `kind` on `sha` (a token's reports).
    pub(super) async fn first_status(
        &self,
        sha: &str,
        kind: CheckKind,
    ) -> PortResult<Option<DateTime<Utc>>> {
        #[derive(Deserialize)]
        struct StatusWire {
            context: String,
            created_at: String,
            #[serde(default)]
            creator: Option<UserWire>,
        }
        let me = self.me().await?;
        let statuses: Vec<StatusWire> = self
            .conditional_list(
                "repos/list-commit-statuses-for-ref",
                &format!("commits/{sha}/statuses"),
                json!({}),
            )
            .await?;
        Ok(statuses
            .into_iter()
            .filter(|s| s.context == kind.name())
            .filter(|s| {
                s.creator
                    .as_ref()
                    .is_some_and(|c| crate::domain::provenance::same_login(&c.login, &me))
            })
            .map(|s| time(&s.created_at))
            .min())
    }

    /// When tugboat's App first ran check `kind` on `sha` (an App's reports; no one else
    /// can create a check run in its name).
    pub(super) async fn first_run(
        &self,
        sha: &str,
        kind: CheckKind,
    ) -> PortResult<Option<DateTime<Utc>>> {
        #[derive(Deserialize)]
        struct Page {
            check_runs: Vec<OwnRunWire>,
        }
        #[derive(Deserialize)]
        struct OwnRunWire {
            name: String,
            started_at: Option<String>,
            #[serde(default)]
            app: Option<AppWire>,
        }
        #[derive(Deserialize)]
        struct AppWire {
            slug: String,
        }
        let me = self.me().await?;
        let route = Self::with_query(
            self.route(&format!("commits/{sha}/check-runs")),
            &json!({"check_name": kind.name(), "filter": "all", "per_page": 100}),
        );
        let page: Page = self
            .req("checks/list-for-ref", self.auth.client().await?._get(route))
            .await?;
        Ok(page
            .check_runs
            .into_iter()
            .filter(|r| r.name == kind.name())
            .filter(|r| {
                r.app.as_ref().is_some_and(|a| {
                    crate::domain::provenance::same_login(&format!("{}[bot]", a.slug), &me)
                })
            })
            .filter_map(|r| r.started_at.as_deref().map(time))
            .min())
    }
}

/// The most a check run's summary may hold (GitHub's limit is 65,535 characters).
pub(super) const SUMMARY_MAX: usize = 60_000;

/// A check run for `r`: completed with a conclusion when final, in progress when not.
pub(super) fn check_run(r: &CheckReport) -> Value {
    let title: String = r.title.chars().take(200).collect();
    let mut summary: String = r.summary.chars().take(SUMMARY_MAX).collect();
    if summary.len() < r.summary.len() {
        summary.push_str("\n\n(cut short)");
    }
    let mut body = json!({
        "name": r.kind.name(),
        "head_sha": r.sha,
        "output": {"title": title, "summary": summary},
    });
    match r.state {
        StatusState::Success | StatusState::Failure => {
            body["status"] = json!("completed");
            body["conclusion"] = json!(if r.state == StatusState::Success {
                "success"
            } else {
                "failure"
            });
        }
        StatusState::Pending | StatusState::Error => body["status"] = json!("in_progress"),
    }
    if let Some(link) = &r.link {
        body["details_url"] = json!(link);
    }
    body
}

/// A check run as listed.
#[derive(Debug, Deserialize)]
pub(super) struct RunWire {
    pub(super) name: String,
    pub(super) status: String,
    pub(super) conclusion: Option<String>,
}

/// A commit's check runs other than tugboat's own, the newest of each name (GitHub lists
/// the newest first).
pub(super) fn checks_of(runs: &[RunWire]) -> Vec<Check> {
    let mut out: Vec<Check> = Vec::new();
    for run in runs.iter().filter(|r| CheckKind::named(&r.name).is_none()) {
        if out.iter().any(|c| c.name == run.name) {
            continue;
        }
        let state = match (run.status.as_str(), run.conclusion.as_deref()) {
            ("completed", Some("success" | "neutral" | "skipped")) => CheckState::Success,
            ("completed", _) => CheckState::Failure,
            _ => CheckState::Pending,
        };
        out.push(Check {
            name: run.name.clone(),
            state,
        });
    }
    out
}

impl GitHub {
    /// The check runs of a commit (the newest of each name first, as GitHub lists them).
    pub(super) async fn check_runs(&self, sha: &str) -> PortResult<Vec<RunWire>> {
        #[derive(Deserialize)]
        struct Page {
            check_runs: Vec<RunWire>,
        }
        let route = Self::with_query(
            self.route(&format!("commits/{sha}/check-runs")),
            &json!({"filter": "latest", "per_page": 100}),
        );
        let page: Page = self
            .req("checks/list-for-ref", self.auth.client().await?._get(route))
            .await?;
        Ok(page.check_runs)
    }
}
