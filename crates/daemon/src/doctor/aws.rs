//! The doctor's AWS checks: the policy in SSM, each service's ECR repository, and the
//! signature gate's keys and registry API.

use std::collections::BTreeMap;
use std::sync::Arc;

use tugboat_core::domain::doctor::{self, Finding, Level};
use tugboat_core::domain::policy::{MutableTags, ServicePolicy, resolve};
use tugboat_core::domain::signature::KeySource;

use crate::adapters::{ecr::Ecr, oci::OciRegistry, ssm::Ssm};
use crate::config::Config;
use crate::credentials::{PolicyKeys, SSM_REFRESH};
use crate::ports::{ErrorKind, ParameterStore};
use crate::signature::TrustedKey;
use crate::signature::keyless::TrustRoot;

/// The policy documents under `policy.ssm_path`, and each service's policy resolved from
/// them for its environments.
pub(super) async fn policy(
    cfg: &Config,
    ssm: &Ssm,
) -> (Vec<Finding>, BTreeMap<String, ServicePolicy>) {
    let path = &cfg.policy.ssm_path;
    let docs = match ssm.documents(path).await {
        Ok(d) if d.is_empty() => {
            return (
                vec![Finding::new(
                    Level::Error,
                    "ssm",
                    path,
                    "no policy document under this path: every service is blocked",
                    format!(
                        "store a policy as {path}defaults (`tugboat init` writes a starting one)"
                    ),
                )],
                BTreeMap::new(),
            );
        }
        Ok(d) => d,
        Err(e) => {
            return (
                vec![Finding::new(
                    Level::Error,
                    "ssm",
                    path,
                    format!("the policy cannot be read: {}", e.message),
                    format!(
                        "give tugboat's role ssm:GetParametersByPath on {path}* and kms:Decrypt on the key of its SecureStrings"
                    ),
                )],
                BTreeMap::new(),
            );
        }
    };
    let mut out = Vec::new();
    let mut policies = BTreeMap::new();
    for s in &cfg.services {
        let envs: Vec<String> = s.environments.iter().map(|e| e.name.clone()).collect();
        match resolve(&docs, path, &s.name, &envs) {
            Ok(p) => {
                let from: Vec<String> = p.sources.iter().map(ToString::to_string).collect();
                out.push(Finding::ok(
                    "ssm",
                    &s.name,
                    format!("policy for {} from {}", envs.join(", "), from.join(", ")),
                ));
                policies.insert(s.name.clone(), p);
            }
            Err(e) => out.push(Finding::new(
                Level::Error,
                "ssm",
                &s.name,
                e.to_string(),
                "correct the document (`tugboat policy check FILE` checks it offline)",
            )),
        }
    }
    (out, policies)
}

/// Each service's repository: it exists, its tags' mutability, and whether its new images
/// are scanned without tugboat asking; with the registry's scanning type when it was read
/// (`BASIC` / `ENHANCED`), which decides the scan event the queue's rules must match.
pub(super) async fn ecr(
    cfg: &Config,
    ecr: &Ecr,
    policies: &BTreeMap<String, ServicePolicy>,
) -> (Vec<Finding>, Option<String>) {
    let mut out = Vec::new();
    let scanning = match ecr.registry_scanning().await {
        Ok(r) => {
            out.push(Finding::ok(
                "ecr",
                "registry",
                format!("{} scanning, {} rule(s)", r.scan_type, r.rules.len()),
            ));
            Some(r)
        }
        Err(e) => {
            out.push(Finding::new(
                Level::Error,
                "ecr",
                "registry",
                format!("its scanning configuration cannot be read: {}", e.message),
                "give tugboat's role ecr:GetRegistryScanningConfiguration",
            ));
            None
        }
    };
    for s in &cfg.services {
        let registry = s.registry_id.as_deref().or(cfg.aws.registry_id.as_deref());
        let (mutability, scan_on_push) = match ecr.repository(registry, &s.repository).await {
            Ok(facts) => facts,
            Err(e) => {
                out.push(missing(&s.repository, registry, &e));
                continue;
            }
        };
        // The scanning configuration read is this account's; another account's registry
        // has its own.
        let ours = s.registry_id.is_none() || s.registry_id == cfg.aws.registry_id;
        if let (Some(reg), true) = (&scanning, ours) {
            out.push(doctor::scanning(&s.repository, reg, scan_on_push));
        }
        // A service whose policy did not resolve has its error above; nothing is assumed.
        let envs: Vec<(&String, &tugboat_core::domain::policy::EnvPolicy)> = policies
            .get(&s.name)
            .map(|p| {
                p.environments
                    .iter()
                    .filter(|(_, e)| !e.pin_digest)
                    .collect()
            })
            .unwrap_or_default();
        let unpinned: Vec<String> = envs.iter().map(|(n, _)| (*n).clone()).collect();
        let refusing: Vec<String> = envs
            .iter()
            .filter(|(_, e)| e.mutable_tags == MutableTags::Refuse)
            .map(|(n, _)| (*n).clone())
            .collect();
        out.push(doctor::mutability(
            &s.repository,
            &mutability,
            &unpinned,
            &refusing,
        ));
    }
    (out, scanning.map(|r| r.scan_type))
}

/// The signature gate's setup, where a policy verifies signatures: each key it names can be
/// read and is a public key, and ECR's registry API answers with a token.
pub(super) async fn signatures(
    ssm: &Ssm,
    registry: &OciRegistry,
    policies: &BTreeMap<String, ServicePolicy>,
) -> Vec<Finding> {
    use crate::ports::PublicKeys;
    let mut users: BTreeMap<(KeySource, bool), Vec<String>> = BTreeMap::new();
    for (svc, p) in policies {
        for (env, e) in &p.environments {
            let s = &e.signatures;
            let root = s.trusted_root.iter().filter(|_| !s.keyless.is_empty());
            let sources = s
                .keys
                .iter()
                .map(|k| (k, false))
                .chain(root.map(|r| (r, true)));
            for (k, is_root) in sources {
                let used = users.entry((k.clone(), is_root)).or_default();
                used.push(format!("{svc}/{env}"));
            }
        }
    }
    if users.is_empty() {
        return Vec::new();
    }
    let keys = PolicyKeys::new(Arc::new(ssm.clone()), SSM_REFRESH);
    let mut out = Vec::new();
    for ((source, is_root), used_by) in &users {
        let subject = source.to_string();
        let used_by = used_by.join(", ");
        let read = keys.public_key(source).await.map_err(|e| e.message);
        let parsed = read.and_then(|text| match is_root {
            true => TrustRoot::parse(source, &text)
                .map(|r| format!("trusted root sha256:{}", r.fingerprint())),
            false => TrustedKey::parse(source, &text)
                .map(|k| format!("public key sha256:{}", k.fingerprint())),
        });
        out.push(match parsed {
            Ok(what) => Finding::ok("signatures", &subject, format!("{what} (verifies {used_by})")),
            Err(why) => Finding::new(
                Level::Error,
                "signatures",
                &subject,
                format!("{why}: {used_by} cannot promote"),
                "store the signers' cosign public key (cosign.pub, PEM) or the Sigstore trusted_root.json there, and give tugboat's role ssm:GetParameter on it",
            ),
        });
    }
    out.push(match registry.check().await {
        Ok(at) => Finding::ok("signatures", "registry API", format!("{at} answers with a token")),
        Err(e) => Finding::new(
            Level::Error,
            "signatures",
            "registry API",
            format!("signatures cannot be read: {e}"),
            "give tugboat's role ecr:GetAuthorizationToken, and ecr:BatchGetImage and ecr:GetDownloadUrlForLayer on the repositories; behind an interface VPC endpoint without private DNS, set aws.registry_url",
        ),
    });
    out
}

fn missing(repository: &str, registry: Option<&str>, e: &crate::ports::PortError) -> Finding {
    let registry = registry.unwrap_or("of the credentials' account");
    match e.kind {
        ErrorKind::NotFound => Finding::new(
            Level::Error,
            "ecr",
            repository,
            format!("no such repository in registry {registry}"),
            "check services[].repository and registry_id (the repository's name in ECR, not its URI)",
        ),
        _ => Finding::new(
            Level::Error,
            "ecr",
            repository,
            format!("it cannot be described: {}", e.message),
            "give tugboat's role ecr:DescribeRepositories on it (manifests/iam-policy.json)",
        ),
    }
}
