//! The `[[services]]` section: each service's image and its environments, in promotion order.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) name: String,
    pub(super) repository: String,
    pub(super) registry_id: Option<String>,
    pub(super) image: Option<String>,
    pub(super) environments: Vec<RawEnv>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnv {
    pub(super) name: String,
    pub(super) files: Vec<String>,
    pub(super) argocd_application: String,
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    /// The ECR repository name.
    pub repository: String,
    pub registry_id: Option<String>,
    /// The repository as manifests spell it (registry host + path).
    pub image: Repository,
    pub environments: Vec<EnvConfig>,
}

#[derive(Debug, Clone)]
pub struct EnvConfig {
    pub name: String,
    pub files: Vec<String>,
    pub argocd_application: String,
}

pub(super) fn services(
    raw: Vec<RawService>,
    aws: &RawAws,
    f: &Fields<'_>,
) -> Result<Vec<ServiceConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(f.err(
            "services",
            "no services are configured; add at least one [[services]] table",
        ));
    }
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, s) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("services[{i}].{field}");
        if !valid_name(&s.name) {
            return Err(f.err(
                &at("name"),
                format!("'{}' must be letters, digits, '_' or '-'", s.name),
            ));
        }
        if !names.insert(s.name.clone()) {
            return Err(f.err(
                &at("name"),
                format!("service '{}' is configured twice", s.name),
            ));
        }
        out.push(service(s, aws, i, f)?);
    }
    Ok(out)
}

pub(super) fn service(
    s: RawService,
    aws: &RawAws,
    i: usize,
    f: &Fields<'_>,
) -> Result<ServiceConfig, ConfigError> {
    let at = |field: &str| format!("services[{i}].{field}");
    let registry = s.registry_id.clone().or_else(|| aws.registry_id.clone());
    let image = match (&s.image, &registry) {
        (Some(img), _) => img.clone(),
        (None, Some(id)) => format!("{id}.dkr.ecr.{}.amazonaws.com/{}", aws.region, s.repository),
        (None, None) => {
            return Err(f.err(
                &at("image"),
                "set `image` (the repository as manifests spell it) or aws.registry_id",
            ));
        }
    };
    let image = Repository::parse(&image).map_err(|e| f.err(&at("image"), e.to_string()))?;
    if s.environments.is_empty() {
        return Err(f.err(
            &at("environments"),
            "no environments; add at least one [[services.environments]]",
        ));
    }
    let mut env_names = BTreeSet::new();
    let mut environments = Vec::new();
    for (j, e) in s.environments.into_iter().enumerate() {
        let at = |field: &str| format!("services[{i}].environments[{j}].{field}");
        if !env_names.insert(e.name.clone()) {
            return Err(f.err(
                &at("name"),
                format!("environment '{}' is listed twice", e.name),
            ));
        }
        environments.push(environment(e, &at, f)?);
    }
    Ok(ServiceConfig {
        name: s.name,
        repository: s.repository,
        registry_id: s.registry_id,
        image,
        environments,
    })
}

pub(super) fn environment(
    e: RawEnv,
    at: &dyn Fn(&str) -> String,
    f: &Fields<'_>,
) -> Result<EnvConfig, ConfigError> {
    if !valid_name(&e.name) {
        return Err(f.err(
            &at("name"),
            format!("'{}' must be letters, digits, '_' or '-'", e.name),
        ));
    }
    if e.files.is_empty() {
        return Err(f.err(
            &at("files"),
            "list at least one file that holds the image reference",
        ));
    }
    for file in &e.files {
        if file.starts_with('/') || file.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(f.err(
                &at("files"),
                format!("'{file}' must be a relative path inside the repository"),
            ));
        }
    }
    Ok(EnvConfig {
        name: e.name,
        files: e.files,
        argocd_application: e.argocd_application,
    })
}

/// Service and environment names: letters, digits, '_' or '-' (they become branch names and labels).
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
