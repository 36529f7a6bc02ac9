//! What the Argo CD stand-in answers: an application as `v1alpha1Application` JSON (its
//! comparison, health and operation as the real API shows them) and its resource tree.

use super::*;

impl ArgoCd {
    pub(super) fn repo_url(&self) -> String {
        format!(
            "https://github.com/{}/{}.git",
            self.github.owner, self.github.repo
        )
    }

    /// The application's source in the GitOps repository: the directory of its file, and for
    /// a Helm values file (not a `kustomization.yaml`) that file as its value file, as a
    /// chart directory with one values file per environment is deployed ("Value Files":
    /// `spec.source.helm.valueFiles`, relative to the source's path,
    /// argo-cd.readthedocs.io/en/stable/user-guide/helm/).
    fn git_source(app: &App, repo_url: &str) -> Value {
        let file = app.files.first().map_or("", String::as_str);
        let (dir, name) = file.rsplit_once('/').unwrap_or(("", file));
        let mut source = json!({"repoURL": repo_url, "targetRevision": "main", "path": dir});
        if !name.is_empty() && !name.starts_with("kustomization.") {
            source["helm"] = json!({"valueFiles": [name]});
        }
        source
    }

    /// The revision fields as a single- or multi-source application shows them.
    pub(super) fn revisions(app: &App, revision: &str) -> Value {
        if app.multi_source {
            json!({"revisions": [CHART_VERSION, revision]})
        } else {
            json!({"revision": revision})
        }
    }

    /// Application `name` as time left it (see [`ArgoCd::advance`]), kept so.
    fn advanced(&self, name: &str) -> Option<App> {
        let mut app = self.lock().apps.get(name)?.clone();
        self.advance(&mut app);
        self.lock().apps.insert(name.to_owned(), app.clone());
        Some(app)
    }

    pub(super) fn status_of(&self, name: &str) -> Option<Value> {
        let app = self.advanced(name)?;
        let health = Self::health(&app);
        // What this answer says, quirks included (a transient Degraded is no Healthy).
        if health["status"] == "Healthy" {
            self.with_app(name, |a| {
                a.answered_healthy.get_or_insert_with(Instant::now);
            });
        }
        let repo_url = self.repo_url();
        let git_source = Self::git_source(&app, &repo_url);
        let chart_source = json!({"repoURL": "https://charts.example.com", "chart": "base", "targetRevision": CHART_VERSION});
        let mut status = self.comparison(&app, name, (&chart_source, &git_source));
        status["health"] = health;
        let images = if app.quirks.no_summary_images {
            Vec::new()
        } else {
            app.images.clone()
        };
        status["summary"] = json!({ "images": images });
        status["sourceType"] = json!(if git_source.get("helm").is_some() {
            "Helm"
        } else {
            "Kustomize"
        });
        if let Some(t) = app.reconciled_at {
            status["reconciledAt"] = json!(rfc3339(t));
        }
        status["history"] = Value::Array(
            app.history
                .iter()
                .enumerate()
                .map(|(i, (rev, at))| {
                    let mut h = json!({"id": i + 1, "deployedAt": rfc3339(*at), "deployStartedAt": rfc3339(*at)});
                    merge(&mut h, Self::revisions(&app, rev));
                    if app.multi_source {
                        h["sources"] = json!([chart_source, git_source]);
                    } else {
                        h["source"] = git_source.clone();
                    }
                    h
                })
                .collect(),
        );
        if let Some(op) = &app.operation {
            status["operationState"] = Self::operation_state(&app, op);
        }
        let mut spec = json!({"project": "default",
            "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
            "syncPolicy": if app.automated { json!({"automated": {"prune": true, "selfHeal": true}}) } else { json!({}) }});
        if app.multi_source {
            spec["sources"] = json!([chart_source, git_source]);
        } else {
            spec["source"] = git_source;
        }
        Some(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": "argocd"},
            "spec": spec,
            "status": status,
        }))
    }

    /// `status.sync` and `status.conditions`: the comparison. Its revision is the one the
    /// comparison was made to, not what was synced (Argo CD's swagger, `v1alpha1SyncStatus`:
    /// "the revision the comparison has been performed to"; argo-cd#7629): once the
    /// controller noticed main move, it names main's head while nothing is synced yet.
    pub(super) fn comparison(
        &self,
        app: &App,
        name: &str,
        (chart, git): (&Value, &Value),
    ) -> Value {
        let head = self.github.branch_sha("main");
        let compared = match (&app.seen, &head) {
            (Some(_), Some(head)) => Some(head.clone()),
            _ => app.revision.clone(),
        };
        let failing = app.seen.is_some()
            && app
                .quirks
                .comparison_error_until
                .is_some_and(|t| t > Instant::now());
        let status = if failing {
            "Unknown"
        } else if app.revision.is_some() && app.revision == compared {
            // Compared to what it runs: main's head, or (a new commit not noticed yet) the
            // revision it last compared to.
            "Synced"
        } else {
            "OutOfSync"
        };
        let mut sync = json!({ "status": status });
        let mut to =
            json!({"destination": {"server": "https://kubernetes.default.svc", "namespace": name}});
        if app.multi_source {
            to["sources"] = json!([chart, git]);
        } else {
            to["source"] = git.clone();
        }
        sync["comparedTo"] = to;
        if let Some(rev) = &compared {
            merge(&mut sync, Self::revisions(app, rev));
        }
        let mut out = json!({ "sync": sync });
        if failing {
            let at = rfc3339(self.github.now());
            out["conditions"] = json!([{
                "type": "ComparisonError",
                "message": "Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = Unknown desc = `kustomize build .` failed exit status 1: Error: accumulating resources: accumulation err='accumulating resources from 'deployment.yaml': missing Resource metadata'",
                "lastTransitionTime": at,
            }]);
        }
        out
    }

    /// `status.health`: `Progressing` while a rollout settles; `Suspended` while a Rollout
    /// pauses under a running operation; `Degraded` while a transient lasts; else settled.
    pub(super) fn health(app: &App) -> Value {
        let now = Instant::now();
        let paused = app
            .operation
            .as_ref()
            .is_some_and(|o| o.phase == "Running" && o.hold_until.is_some_and(|t| t > now));
        let (health, message) = if paused {
            ("Suspended", Some("Rollout is paused".to_owned()))
        } else if app.quirks.degraded_until.is_some_and(|t| t > now) {
            let m = "HPA: the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: no metrics returned from resource metrics API";
            ("Degraded", Some(m.to_owned()))
        } else if app.settles > now {
            ("Progressing", None)
        } else if app
            .quirks
            .flapping_until
            .is_some_and(|t| t > now && (t - now).as_millis() / 300 % 2 == 1)
        {
            let m = "Waiting for rollout to finish: 1 of 2 updated replicas are available...";
            ("Progressing", Some(m.to_owned()))
        } else {
            (app.health.as_str(), app.message.clone())
        };
        let mut v = json!({ "status": health });
        if let Some(m) = message {
            v["message"] = json!(m);
        }
        v
    }

    /// `status.operationState` of `app`'s last sync operation `op`: its phase, who started
    /// it, and (once finished) its result.
    pub(super) fn operation_state(app: &App, op: &Op) -> Value {
        let initiated = if op.automated {
            json!({"automated": true})
        } else {
            json!({"username": op.user})
        };
        let mut o = json!({
            "phase": op.phase, "message": op.message, "startedAt": rfc3339(op.started_at),
            "retryCount": op.retry_count,
            "operation": {"sync": Self::revisions(app, &op.revision), "initiatedBy": initiated},
        });
        // Argo CD writes `syncResult` as the sync goes, hooks included (a hook's phase, from
        // the Job's); a plain sync's result shows once it finished.
        let hooks: Vec<Value> = op
            .hook
            .iter()
            .map(|(job, _)| {
                let phase = if op.hook_done { "Succeeded" } else { "Running" };
                json!({"group": "batch", "version": "v1", "kind": "Job", "namespace": "default",
                       "name": job, "hookType": "PreSync", "hookPhase": phase, "syncPhase": "PreSync",
                       "status": "Synced", "message": format!("job {}", phase.to_lowercase())})
            })
            .collect();
        if op.finished_at.is_some() || !hooks.is_empty() {
            let mut result = Self::revisions(app, &op.revision);
            result["resources"] = Value::Array(hooks);
            o["syncResult"] = result;
        }
        if let Some(f) = op.finished_at {
            o["finishedAt"] = json!(rfc3339(f));
        }
        o
    }

    /// `GET …/resource-tree` (`v1alpha1ApplicationTree`): the application's Deployment and
    /// its pods, each node with the `images` it runs (Argo CD fills `images` for pods and
    /// workloads). Built from the live objects, so it lists the images even where
    /// `summary.images` is empty (the `no-summary-images` quirk).
    pub(super) fn tree_of(&self, name: &str) -> Option<Value> {
        let app = self.advanced(name)?;
        let health = Self::health(&app);
        let deployment = json!({"group": "apps", "version": "v1", "kind": "Deployment",
            "namespace": name, "name": name, "uid": format!("{name}-deployment"),
            "images": app.images, "health": health});
        let pod = json!({"version": "v1", "kind": "Pod", "namespace": name,
            "name": format!("{name}-7d9f8c6b5-x2x9q"), "uid": format!("{name}-pod"),
            "images": app.images, "health": health,
            "parentRefs": [{"group": "apps", "kind": "ReplicaSet", "namespace": name, "name": format!("{name}-7d9f8c6b5")}]});
        Some(json!({"nodes": [deployment, pod]}))
    }
}
