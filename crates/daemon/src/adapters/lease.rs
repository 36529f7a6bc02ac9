//! The Kubernetes Lease adapter (kube-rs): leader election's lease, read and written with the
//! API server's optimistic concurrency (a replace names the `resourceVersion` it read, and a
//! conflict means another replica wrote first).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

use crate::domain::lease::Record;
use crate::ports::{Election, ErrorKind, PortError, PortResult, Versioned};
use crate::telemetry::ApiMetrics;

/// The annotation where the holder says where its followers hand on webhook deliveries. An
/// annotation, not a spec field: `LeaseSpec` has none for it (coordination.k8s.io/v1), and
/// annotations are where Kubernetes keeps "arbitrary non-identifying metadata" ("Annotations",
/// kubernetes.io/docs/concepts/overview/working-with-objects/annotations).
pub const ADDRESS_ANNOTATION: &str = "tugboat.dev/webhook-address";

/// One Lease in one namespace.
pub struct KubeLease {
    api: Api<Lease>,
    name: String,
    metrics: ApiMetrics,
}

fn map_err(op: &'static str, e: kube::Error) -> PortError {
    let kind = match &e {
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => ErrorKind::Denied,
        kube::Error::Api(s) if s.code == 404 => ErrorKind::NotFound,
        kube::Error::Api(s) if s.code == 429 => ErrorKind::Throttled,
        kube::Error::Api(s) if s.code >= 500 => ErrorKind::Transient,
        kube::Error::Api(_) => ErrorKind::Rejected,
        _ => ErrorKind::Transient,
    };
    PortError::new("kubernetes", op, kind, e.to_string())
}

fn micro(t: Option<DateTime<Utc>>) -> Option<MicroTime> {
    let t = t?;
    let nanos = i32::try_from(t.timestamp_subsec_nanos()).ok()?;
    k8s_openapi::jiff::Timestamp::new(t.timestamp(), nanos)
        .ok()
        .map(MicroTime)
}

fn chrono_of(t: Option<&MicroTime>) -> Option<DateTime<Utc>> {
    let t = t?.0;
    DateTime::from_timestamp(t.as_second(), u32::try_from(t.subsec_nanosecond()).ok()?)
}

impl KubeLease {
    /// The lease `name` in `namespace`, through `client`.
    pub fn new(client: kube::Client, namespace: &str, name: &str, metrics: &ApiMetrics) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            metrics: metrics.clone(),
        }
    }

    /// A client for the API server at `url` (without credentials: a test's stand-in, or
    /// `kubectl proxy`), or else the cluster tugboat runs in (its service account), or the
    /// kubeconfig.
    pub async fn client(url: Option<&str>) -> PortResult<kube::Client> {
        let config = match url {
            Some(u) => {
                let uri = u.parse().map_err(|e| {
                    PortError::new(
                        "kubernetes",
                        "connect",
                        ErrorKind::Rejected,
                        format!("{u}: {e}"),
                    )
                })?;
                kube::Config::new(uri)
            }
            None => kube::Config::infer().await.map_err(|e| {
                PortError::new("kubernetes", "connect", ErrorKind::Rejected, e.to_string())
            })?,
        };
        kube::Client::try_from(config).map_err(|e| {
            PortError::new("kubernetes", "connect", ErrorKind::Rejected, e.to_string())
        })
    }

    /// Whether the credentials of `client` may `verb` (`create`, `update`) the lease `name`
    /// in `namespace`: a SelfSubjectAccessReview, as `kubectl auth can-i` asks it ("Checking
    /// API access", kubernetes.io/docs/reference/access-authn-authz/authorization). Creating a
    /// review stores nothing, and every authenticated client may make one (the default
    /// `system:basic-user` ClusterRole); the answer is its `status.allowed`.
    pub async fn may(
        client: kube::Client,
        namespace: &str,
        name: &str,
        verb: &str,
        metrics: &ApiMetrics,
    ) -> PortResult<bool> {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some("coordination.k8s.io".to_owned()),
                    resource: Some("leases".to_owned()),
                    verb: Some(verb.to_owned()),
                    namespace: Some(namespace.to_owned()),
                    // RBAC cannot limit `create` to a name (the name is not known before).
                    name: (verb != "create").then(|| name.to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let api: Api<SelfSubjectAccessReview> = Api::all(client);
        let got = api.create(&PostParams::default(), &review).await;
        metrics.record("kubernetes", "selfsubjectaccessreviews/create", &got);
        let got = got.map_err(|e| map_err("selfsubjectaccessreviews/create", e))?;
        Ok(got.status.is_some_and(|s| s.allowed))
    }

    fn count<T>(&self, op: &'static str, r: &Result<T, kube::Error>) {
        self.metrics.record("kubernetes", op, r);
    }
}

#[async_trait]
impl Election for KubeLease {
    async fn read(&self) -> PortResult<Option<Versioned>> {
        let got = self.api.get_opt(&self.name).await;
        self.count("leases/get", &got);
        let Some(lease) = got.map_err(|e| map_err("leases/get", e))? else {
            return Ok(None);
        };
        let spec = lease.spec.unwrap_or_default();
        Ok(Some(Versioned {
            record: Record {
                holder: spec.holder_identity,
                renewed: chrono_of(spec.renew_time.as_ref()),
                duration_secs: spec.lease_duration_seconds,
                transitions: spec.lease_transitions.unwrap_or(0),
                acquired: chrono_of(spec.acquire_time.as_ref()),
                address: lease
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ADDRESS_ANNOTATION))
                    .filter(|a| !a.is_empty())
                    .cloned(),
            },
            version: lease.metadata.resource_version.unwrap_or_default(),
        }))
    }

    async fn write(&self, record: &Record, version: Option<&str>) -> PortResult<bool> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: version.map(str::to_owned),
                annotations: record.address.as_ref().map(|a| {
                    std::collections::BTreeMap::from([(ADDRESS_ANNOTATION.to_owned(), a.clone())])
                }),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: record.holder.clone(),
                renew_time: micro(record.renewed),
                acquire_time: micro(record.acquired),
                lease_duration_seconds: record.duration_secs,
                lease_transitions: Some(record.transitions),
                ..LeaseSpec::default()
            }),
        };
        let pp = PostParams::default();
        let (op, written) = match version {
            None => ("leases/create", self.api.create(&pp, &lease).await),
            Some(_) => (
                "leases/replace",
                self.api.replace(&self.name, &pp, &lease).await,
            ),
        };
        self.count(op, &written);
        match written {
            Ok(_) => Ok(true),
            // Another replica created or replaced it first.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(map_err(op, e)),
        }
    }
}
