//! The `[github]` section: the repository, how tugboat authenticates (a token or an App), how it commits and merges, its write budget and its former logins.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGithub {
    pub(super) repository: String,
    #[serde(default = "default_branch")]
    pub(super) base_branch: String,
    pub(super) api_url: Option<String>,
    pub(super) clone_url: Option<String>,
    pub(super) token: Option<SecretRef>,
    pub(super) app: Option<RawApp>,
    pub(super) webhook_secret: Option<SecretRef>,
    pub(super) state_key: Option<SecretRef>,
    #[serde(default)]
    pub(super) merge_method: MergeMethod,
    pub(super) login: Option<String>,
    #[serde(default)]
    pub(super) former_logins: Vec<String>,
    pub(super) writes_per_minute: Option<usize>,
    pub(super) writes_per_hour: Option<usize>,
    pub(super) commits: Option<CommitVia>,
    #[serde(default)]
    pub(super) dashboard: bool,
}

/// `[github.app]`: tugboat authenticates as this GitHub App's installation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    pub(super) id: u64,
    pub(super) private_key: SecretRef,
    pub(super) installation_id: Option<u64>,
}

pub(super) fn default_branch() -> String {
    "main".into()
}

#[derive(Debug, Clone)]
pub struct GithubConfig {
    pub owner: String,
    pub repo: String,
    pub base_branch: String,
    pub api_url: String,
    pub clone_url: String,
    /// A token, or a GitHub App.
    pub auth: GithubAuth,
    /// Enables `POST /webhooks/github`: deliveries must be signed with it.
    pub webhook_secret: Option<SecretRef>,
    /// The keys that seal the records tugboat keeps in PR and issue bodies
    /// (`domain::seal`). By default the SSM parameter `/tugboat/<owner>/<repo>/state-key`,
    /// which tugboat creates when it is absent.
    pub state_key: SecretRef,
    /// How promotion and rollback PRs are merged: `squash` (default), `merge` or `rebase`;
    /// the repository must allow it.
    pub merge_method: MergeMethod,
    /// The login tugboat's token acts as, when `GET /user` cannot tell (a GitHub App
    /// installation token: `my-app[bot]`).
    pub login: Option<String>,
    /// Logins tugboat acted as before (a token's user before a move to a GitHub App): the
    /// records and labels they wrote are still tugboat's.
    pub former_logins: Vec<String>,
    /// Content-creating requests a minute at most (GitHub's secondary limit: 80).
    pub writes_per_minute: usize,
    /// Content-creating requests an hour at most (GitHub: 500).
    pub writes_per_hour: usize,
    /// How promotion and rollback commits reach GitHub (`github.commits`).
    pub commits: CommitVia,
    /// Keep the promotion dashboard issue (`github.dashboard`).
    pub dashboard: bool,
}

/// How tugboat's commits reach GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitVia {
    /// A git push of a commit made locally (unsigned). The default for a token.
    Push,
    /// GitHub's Git Data API makes the commit and signs it (Verified), which branch
    /// protection's "Require signed commits" needs. The default for a GitHub App.
    Api,
}

/// How tugboat authenticates to GitHub (REST and git alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GithubAuth {
    /// `github.token`: a personal, fine-grained or installation token kept elsewhere.
    Token(SecretRef),
    /// `[github.app]`: installation tokens from the App's private key, renewed as they expire.
    App {
        id: u64,
        private_key: SecretRef,
        /// Discovered from the repository when not given.
        installation_id: Option<u64>,
    },
}

pub(super) fn github(raw: RawGithub, f: &Fields<'_>) -> Result<GithubConfig, ConfigError> {
    let (owner, repo) = raw
        .repository
        .split_once('/')
        .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
        .ok_or_else(|| {
            f.err(
                "github.repository",
                format!("'{}' is not of the form 'owner/name'", raw.repository),
            )
        })?;
    let api_url = raw
        .api_url
        .unwrap_or_else(|| "https://api.github.com".into());
    let clone_url = raw
        .clone_url
        .unwrap_or_else(|| format!("https://github.com/{owner}/{repo}.git"));
    f.http_url("github.api_url", &api_url)?;
    f.http_url("github.clone_url", &clone_url)?;
    if let Some(l) = &raw.login
        && (l.trim().is_empty() || l.contains(char::is_whitespace))
    {
        return Err(f.err("github.login", format!("'{l}' is not a GitHub login")));
    }
    let auth = github_auth(raw.token, raw.app, f)?;
    former_logins(f, &raw.former_logins)?;
    let (writes_per_minute, writes_per_hour) =
        write_budget(raw.writes_per_minute, raw.writes_per_hour, f)?;
    Ok(GithubConfig {
        owner: owner.to_owned(),
        repo: repo.to_owned(),
        base_branch: raw.base_branch,
        api_url,
        clone_url,
        webhook_secret: raw.webhook_secret,
        state_key: raw
            .state_key
            .unwrap_or_else(|| SecretRef::Ssm(format!("/tugboat/{owner}/{repo}/state-key"))),
        merge_method: raw.merge_method,
        commits: raw.commits.unwrap_or(match auth {
            GithubAuth::App { .. } => CommitVia::Api,
            GithubAuth::Token(_) => CommitVia::Push,
        }),
        auth,
        login: raw.login,
        former_logins: raw.former_logins,
        writes_per_minute,
        writes_per_hour,
        dashboard: raw.dashboard,
    })
}

/// `github.token` or `[github.app]`: exactly one, with plausible ids.
pub(super) fn github_auth(
    token: Option<SecretRef>,
    app: Option<RawApp>,
    f: &Fields<'_>,
) -> Result<GithubAuth, ConfigError> {
    Ok(match (token, app) {
        (Some(token), None) => GithubAuth::Token(token),
        (None, Some(app)) => {
            if app.id == 0 {
                return Err(f.err("github.app.id", "0 is not a GitHub App id".to_owned()));
            }
            if app.installation_id == Some(0) {
                return Err(f.err(
                    "github.app.installation_id",
                    "0 is not an installation id".to_owned(),
                ));
            }
            GithubAuth::App {
                id: app.id,
                private_key: app.private_key,
                installation_id: app.installation_id,
            }
        }
        (Some(_), Some(_)) => {
            return Err(f.err(
                "github",
                "both a token and [github.app] are given; choose one".to_owned(),
            ));
        }
        (None, None) => {
            return Err(f.err(
                "github",
                "no credentials: give `token` or a [github.app] section".to_owned(),
            ));
        }
    })
}

/// `github.writes_per_minute` and `writes_per_hour` (GitHub's limits by default), the hour
/// holding the minute.
pub(super) fn write_budget(
    per_minute: Option<usize>,
    per_hour: Option<usize>,
    f: &Fields<'_>,
) -> Result<(usize, usize), ConfigError> {
    let writes_per_minute = per_minute.unwrap_or(crate::adapters::github::WRITES_PER_MINUTE);
    if !(1..=10_000).contains(&writes_per_minute) {
        return Err(f.err(
            "github.writes_per_minute",
            format!("{writes_per_minute} is not between 1 and 10000"),
        ));
    }
    let writes_per_hour = per_hour.unwrap_or(crate::adapters::github::WRITES_PER_HOUR);
    if !(writes_per_minute..=600_000).contains(&writes_per_hour) {
        return Err(f.err(
            "github.writes_per_hour",
            format!(
                "{writes_per_hour} is not between github.writes_per_minute ({writes_per_minute}) and 600000"
            ),
        ));
    }
    Ok((writes_per_minute, writes_per_hour))
}

/// `github.former_logins`: each a GitHub login (letters, digits and `-`, up to 39), an App's
/// optionally ending in `[bot]`.
pub(super) fn former_logins(f: &Fields<'_>, logins: &[String]) -> Result<(), ConfigError> {
    for (i, login) in logins.iter().enumerate() {
        let name = login.strip_suffix("[bot]").unwrap_or(login);
        let valid = !name.is_empty()
            && name.len() <= 39
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            return Err(f.err(
                &format!("github.former_logins[{i}]"),
                format!("'{login}' is not a GitHub login (letters, digits and '-', up to 39, optionally ending in [bot])"),
            ));
        }
    }
    Ok(())
}
