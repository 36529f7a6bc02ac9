//! Listing the applications (`ApplicationService_List`, `GET /api/v1/applications`), for
//! `tugboat init`: each application's source in the GitOps repository, as discovery reads
//! it; and, for `tugboat doctor`, one application's source and project, and what the token
//! may do (`AccountService_CanI`).

use serde::Deserialize;
use tugboat_core::domain::discover::{AppSource, Application};

use super::{ArgoCd, SummaryWire, SyncPolicyWire};
use crate::ports::{ErrorKind, PortError, PortResult};

/// `v1alpha1ApplicationList`. grpc-gateway writes an empty list as `"items": null`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct ListWire {
    items: Option<Vec<ListedWire>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct ListedWire {
    metadata: MetaWire,
    spec: ListedSpecWire,
    status: ListedStatusWire,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct MetaWire {
    name: String,
}

/// `v1alpha1ApplicationSpec`: one `source`, or `sources` (a multi-source application).
#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ListedSpecWire {
    project: String,
    source: Option<SourceWire>,
    sources: Vec<SourceWire>,
    sync_policy: Option<SyncPolicyWire>,
}

/// An application as `tugboat doctor` checks it.
#[derive(Debug, Clone)]
pub struct Described {
    pub app: Application,
    /// `spec.project`.
    pub project: String,
    /// It syncs by itself (`spec.syncPolicy.automated`).
    pub automated: bool,
}

/// `v1alpha1ApplicationSource`.
#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SourceWire {
    #[serde(rename = "repoURL")]
    repo_url: String,
    path: String,
    target_revision: String,
    /// A chart from a Helm repository: not files tugboat can edit.
    chart: Option<String>,
    helm: Option<HelmWire>,
    directory: Option<DirectoryWire>,
}

/// `v1alpha1ApplicationSourceHelm.valueFiles`.
#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct HelmWire {
    value_files: Vec<String>,
}

/// `v1alpha1ApplicationSourceDirectory.recurse`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct DirectoryWire {
    recurse: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct ListedStatusWire {
    summary: SummaryWire,
}

impl ArgoCd {
    /// Every application the token may see, with its source in the repository `ours`
    /// recognises by its URL (the first such source that is no chart), else where it comes
    /// from. Argo CD lists only the applications the token may `get` (RBAC).
    pub async fn applications(&self, ours: impl Fn(&str) -> bool) -> PortResult<Vec<Application>> {
        let op = "ApplicationService_List";
        let req = self.http.get(format!("{}/api/v1/applications", self.base));
        let resp = self.send(op, "*", req).await.map_err(|e| match e.kind {
            ErrorKind::NotFound => PortError::new(
                "argocd",
                op,
                ErrorKind::NotFound,
                format!(
                    "{}/api/v1/applications answered 404: argocd.url is not Argo CD's API server",
                    self.base
                ),
            ),
            _ => e,
        })?;
        let list: ListWire = Self::json(op, "*", resp).await?;
        let mut apps: Vec<Application> = list
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|a| application(a, &ours))
            .collect();
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(apps)
    }
}

impl ArgoCd {
    /// Application `name`'s source (as [`ArgoCd::applications`] reads it), project and
    /// sync policy (`ApplicationService_Get`).
    pub async fn describe(&self, name: &str, ours: impl Fn(&str) -> bool) -> PortResult<Described> {
        let op = "ApplicationService_Get";
        let resp = self
            .send(op, name, self.http.get(self.url(name, "")))
            .await?;
        let wire: ListedWire = Self::json(op, name, resp).await?;
        let (project, automated) = (
            wire.spec.project.clone(),
            wire.spec
                .sync_policy
                .as_ref()
                .is_some_and(|p| p.automated.is_some()),
        );
        Ok(Described {
            app: application(wire, &ours),
            project,
            automated,
        })
    }

    /// Whether the token may `action` (`get`, `sync`) the application `app` of `project`:
    /// `AccountService.CanI` over gRPC-Web, as `argocd --grpc-web account can-i` asks it
    /// (`domain::grpc_web` says why not over REST).
    pub async fn can_i(&self, action: &str, project: &str, app: &str) -> PortResult<bool> {
        use tugboat_core::domain::grpc_web::{self, Answer};
        let op = "AccountService_CanI";
        let object = format!("{project}/{app}");
        let req = self
            .http
            .post(format!("{}{}", self.base, grpc_web::CAN_I_PATH))
            .header(reqwest::header::CONTENT_TYPE, grpc_web::CONTENT_TYPE)
            .header("x-grpc-web", "1")
            .body(grpc_web::can_i_request("applications", action, &object));
        let fail = |kind, what: String| {
            PortError::new(
                "argocd",
                op,
                kind,
                format!("application '{app}': can-i {action}: {what}"),
            )
        };
        let resp = self.send(op, app, req).await.map_err(|e| match e.kind {
            // Argo CD's own 404 names an application; here the path itself is not served.
            ErrorKind::NotFound => fail(
                ErrorKind::Rejected,
                format!(
                    "HTTP 404 for {}: no gRPC-Web there (does a proxy pass only /api to Argo CD?)",
                    grpc_web::CAN_I_PATH
                ),
            ),
            _ => e,
        })?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        if !content_type.starts_with("application/grpc-web") {
            return Err(fail(
                ErrorKind::Rejected,
                format!(
                    "answered '{content_type}', not gRPC-Web: does a proxy in front of Argo CD refuse gRPC-Web (the argocd CLI's --grpc-web)?"
                ),
            ));
        }
        let status = header("grpc-status")
            .and_then(|c| c.trim().parse().ok())
            .map(|c| (c, header("grpc-message").unwrap_or_default()));
        // Read no more than one byte past the largest answer: a proxy's page or a runaway
        // stream is refused by its size without being held whole.
        let mut resp = resp;
        let mut body = Vec::new();
        while body.len() <= grpc_web::MAX_ANSWER {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return Err(fail(ErrorKind::Transient, e.without_url().to_string())),
            }
        }
        match grpc_web::can_i_answer(status, &body) {
            Ok(Answer::Value(v)) => Ok(v == "yes"),
            Ok(Answer::Status(code, message)) => {
                let kind = match code {
                    7 | 16 => ErrorKind::Denied,
                    5 => ErrorKind::NotFound,
                    4 | 14 => ErrorKind::Transient,
                    _ => ErrorKind::Rejected,
                };
                Err(fail(kind, format!("gRPC status {code}: {message}")))
            }
            Err(e) => Err(fail(
                ErrorKind::Rejected,
                format!("an answer that cannot be read: {e}"),
            )),
        }
    }
}

fn application(a: ListedWire, ours: &impl Fn(&str) -> bool) -> Application {
    let sources: Vec<SourceWire> = a.spec.source.into_iter().chain(a.spec.sources).collect();
    let elsewhere = sources
        .first()
        .map_or_else(|| "no source".to_owned(), |s| s.repo_url.clone());
    let source = match sources
        .into_iter()
        .find(|s| s.chart.is_none() && ours(&s.repo_url))
    {
        Some(s) => AppSource::Ours {
            path: s.path,
            revision: s.target_revision,
            value_files: s.helm.map(|h| h.value_files).unwrap_or_default(),
            recurse: s.directory.is_some_and(|d| d.recurse),
        },
        None => AppSource::Elsewhere {
            repo_url: elsewhere,
        },
    };
    Application {
        name: a.metadata.name,
        source,
        images: a.status.summary.images,
    }
}

/// Whether a repository URL Argo CD shows is GitHub repository `owner/repo`: its last two
/// path segments, in any case, with or without `.git`, over HTTPS or SSH
/// (`git@github.com:owner/repo.git`). The host is not compared: a GitHub Enterprise
/// repository, or one behind a mirror, is still the same `owner/repo`.
pub fn same_repository(url: &str, owner: &str, repo: &str) -> bool {
    let path = url.trim().trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let mut parts = path.rsplit(['/', ':']);
    let (Some(r), Some(o)) = (parts.next(), parts.next()) else {
        return false;
    };
    r.eq_ignore_ascii_case(repo) && o.eq_ignore_ascii_case(owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_url_is_matched_by_owner_and_name_whatever_its_form() {
        for url in [
            "https://github.com/salon/salon-gitops.git",
            "https://github.com/Salon/Salon-GitOps",
            "git@github.com:salon/salon-gitops.git",
            "ssh://git@github.example.com/salon/salon-gitops.git/",
        ] {
            assert!(same_repository(url, "salon", "salon-gitops"), "{url}");
        }
        for url in [
            "https://github.com/salon/salon-gitops-old.git",
            "https://github.com/other/salon-gitops.git",
            "salon-gitops",
        ] {
            assert!(!same_repository(url, "salon", "salon-gitops"), "{url}");
        }
    }

    #[test]
    fn a_listed_application_reads_its_git_source_value_files_and_images() {
        let wire: ListWire = serde_json::from_str(r#"{"items": [
            {"metadata": {"name": "api-prod"},
             "spec": {"sources": [
                {"repoURL": "https://charts.example.com", "chart": "base", "targetRevision": "1.2.0"},
                {"repoURL": "https://github.com/salon/salon-gitops.git", "path": "apps/api",
                 "targetRevision": "main", "helm": {"valueFiles": ["values-prod.yaml"]}}]},
             "status": {"summary": {"images": ["x/api:1"]}}},
            {"metadata": {"name": "grafana"},
             "spec": {"source": {"repoURL": "https://grafana.github.io/helm-charts", "chart": "grafana"}}}
        ]}"#).unwrap();
        let ours = |u: &str| same_repository(u, "salon", "salon-gitops");
        let apps: Vec<Application> = wire
            .items
            .unwrap()
            .into_iter()
            .map(|a| application(a, &ours))
            .collect();
        match &apps[0].source {
            AppSource::Ours {
                path,
                value_files,
                revision,
                recurse,
            } => {
                assert_eq!(path, "apps/api");
                assert_eq!(value_files, &vec!["values-prod.yaml".to_owned()]);
                assert_eq!(revision, "main");
                assert!(!recurse);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(apps[0].images, vec!["x/api:1"]);
        assert!(matches!(&apps[1].source,
            AppSource::Elsewhere { repo_url } if repo_url == "https://grafana.github.io/helm-charts"));
        let empty: ListWire = serde_json::from_str(r#"{"items": null, "metadata": {}}"#).unwrap();
        assert!(empty.items.is_none());
    }
}
