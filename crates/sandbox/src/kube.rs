//! A stand-in for the Kubernetes API server's Leases (`coordination.k8s.io/v1`), behaving
//! like the real one where leader election depends on it: namespaced Leases read, created
//! (409 `AlreadyExists` when one is there) and replaced with optimistic concurrency (409
//! `Conflict` when the `resourceVersion` named is not the current one), errors as `Status`
//! objects. Held to Kubernetes' own description by Prism in `tests/it/contract.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tugboat::clock::Clock;

#[derive(Default)]
struct Inner {
    /// (namespace, name) → the Lease object as stored.
    leases: BTreeMap<(String, String), Value>,
    version: u64,
    calls: BTreeMap<String, u64>,
    /// The client's RBAC grants only `get` on leases.
    writes_denied: bool,
}

/// The shared state of the Lease stand-in.
#[derive(Clone)]
pub struct Kube {
    inner: Arc<Mutex<Inner>>,
    /// Stamps creation times.
    clock: Arc<dyn Clock>,
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

impl Kube {
    /// An API server with no Lease yet, stamping from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::default(),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serve on a loopback port chosen by the OS; returns its URL.
    pub async fn start(&self) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
        super::serve(self.router(), SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub fn router(&self) -> axum::Router {
        let base = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases";
        axum::Router::new()
            .route(base, post(create))
            .route(&format!("{base}/{{name}}"), get(read).put(replace))
            .route(
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                post(access_review),
            )
            .with_state(self.clone())
    }

    /// Who holds the lease `namespace/name` now.
    pub fn holder(&self, namespace: &str, name: &str) -> Option<String> {
        let g = self.lock();
        let lease = g.leases.get(&(namespace.to_owned(), name.to_owned()))?;
        lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
    }

    /// Make `holder` the holder of lease `namespace/name`, renewed now, as another client of
    /// the API server may (a `kubectl edit`, a second release with the same lease): the
    /// replica that held it finds it lost at its next renewal. `false` when there is none.
    pub fn steal(&self, namespace: &str, name: &str, holder: &str) -> bool {
        let key = (namespace.to_owned(), name.to_owned());
        let Some(old) = self.lock().leases.get(&key).cloned() else {
            return false;
        };
        let mut lease = old.clone();
        let now = self.clock.now();
        lease["spec"]["holderIdentity"] = json!(holder);
        lease["spec"]["renewTime"] =
            json!(now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        if let Some(a) = lease["metadata"].as_object_mut() {
            a.remove("annotations");
        }
        self.store(namespace, name, lease, Some(&old));
        true
    }

    /// Let the client get leases but not create or update them, as a Role with `get` only
    /// would: an access review answers so. (Writes themselves are not refused: the
    /// election's own tests need them; this is the doctor's fault to find.)
    pub fn deny_writes(&self, denied: bool) {
        self.lock().writes_denied = denied;
    }

    /// Requests served, by method.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    fn count(&self, what: &str) {
        *self.lock().calls.entry(what.to_owned()).or_default() += 1;
    }

    /// Store `lease` as `namespace/name` with a new resourceVersion (and a uid and creation
    /// time on creation), returning it as stored.
    fn store(
        &self,
        namespace: &str,
        name: &str,
        mut lease: Value,
        created: Option<&Value>,
    ) -> Value {
        let now = self.clock.now();
        let mut g = self.lock();
        g.version += 1;
        let meta = &mut lease["metadata"];
        meta["name"] = json!(name);
        meta["namespace"] = json!(namespace);
        meta["resourceVersion"] = json!(g.version.to_string());
        let (uid, at) = match created {
            Some(old) => (
                old["metadata"]["uid"].clone(),
                old["metadata"]["creationTimestamp"].clone(),
            ),
            None => (
                json!(format!("00000000-0000-4000-8000-{:012x}", g.version)),
                json!(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            ),
        };
        meta["uid"] = uid;
        meta["creationTimestamp"] = at;
        lease["apiVersion"] = json!("coordination.k8s.io/v1");
        lease["kind"] = json!("Lease");
        g.leases
            .insert((namespace.to_owned(), name.to_owned()), lease.clone());
        lease
    }
}

async fn read(State(k): State<Kube>, Path((namespace, name)): Path<(String, String)>) -> Response {
    k.count("GET");
    let found = k.lock().leases.get(&(namespace, name.clone())).cloned();
    match found {
        Some(lease) => Json(lease).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("leases.coordination.k8s.io \"{name}\" not found"),
        ),
    }
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: whether the client may do
/// what `spec.resourceAttributes` says, as `kubectl auth can-i` asks ("Checking API access",
/// kubernetes.io/docs/reference/access-authn-authz/authorization): the review comes back with
/// `status.allowed` (and `status.reason`), and nothing is stored. Here the client may do
/// anything to leases, but create or update them when `deny_writes` is set; anything else is
/// not allowed.
async fn access_review(State(k): State<Kube>, Json(mut review): Json<Value>) -> Response {
    k.count("POST selfsubjectaccessreviews");
    let attrs = &review["spec"]["resourceAttributes"];
    let leases = attrs["group"] == "coordination.k8s.io" && attrs["resource"] == "leases";
    let verb = attrs["verb"].as_str().unwrap_or_default();
    let allowed = leases && !(k.lock().writes_denied && matches!(verb, "create" | "update"));
    review["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by RoleBinding \"tugboat\""})
    } else {
        json!({"allowed": false})
    };
    (StatusCode::CREATED, Json(review)).into_response()
}

async fn create(
    State(k): State<Kube>,
    Path(namespace): Path<String>,
    Json(lease): Json<Value>,
) -> Response {
    k.count("POST");
    let Some(name) = lease["metadata"]["name"].as_str().map(str::to_owned) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value",
        );
    };
    if k.lock()
        .leases
        .contains_key(&(namespace.clone(), name.clone()))
    {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("leases.coordination.k8s.io \"{name}\" already exists"),
        );
    }
    let stored = k.store(&namespace, &name, lease, None);
    (StatusCode::CREATED, Json(stored)).into_response()
}

async fn replace(
    State(k): State<Kube>,
    Path((namespace, name)): Path<(String, String)>,
    Json(lease): Json<Value>,
) -> Response {
    k.count("PUT");
    let current = k
        .lock()
        .leases
        .get(&(namespace.clone(), name.clone()))
        .cloned();
    let Some(current) = current else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("leases.coordination.k8s.io \"{name}\" not found"),
        );
    };
    let asked = lease["metadata"]["resourceVersion"].as_str();
    if asked.is_some_and(|v| Some(v) != current["metadata"]["resourceVersion"].as_str()) {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        );
    }
    Json(k.store(&namespace, &name, lease, Some(&current))).into_response()
}
