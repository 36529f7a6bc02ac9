//! Discovering services and environments (`tugboat init`): which ECR images the files of
//! each Argo CD application reference, grouped into services (one ECR repository each) and
//! environments (one application each), in an order guessed from names and explained.
//! Everything it cannot place is listed with the reason; nothing is dropped silently.
//!
//! An application's files are what Argo CD renders from its path: the YAML files directly in
//! it (all below it with `directory.recurse`), or, for a Helm source with value files, those
//! files. A file outside the path (a kustomize base) is shared by every environment that
//! builds on it, so tugboat never edits it for one environment.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::image::{Repository, Tag};
use crate::manifest::{self as edit, refs};

pub mod stage;

/// An Argo CD application, as discovery needs it.
#[derive(Debug, Clone)]
pub struct Application {
    pub name: String,
    pub source: AppSource,
    /// `status.summary.images`: what it runs, for explaining an application with no reference.
    pub images: Vec<String>,
}

/// Where an application's manifests come from.
#[derive(Debug, Clone)]
pub enum AppSource {
    /// A source in the GitOps repository.
    Ours {
        /// `spec.source.path`, relative to the repository's root.
        path: String,
        /// `spec.source.targetRevision`.
        revision: String,
        /// `spec.source.helm.valueFiles`, relative to `path`.
        value_files: Vec<String>,
        /// `spec.source.directory.recurse`.
        recurse: bool,
    },
    /// No source of the application is the GitOps repository.
    Elsewhere { repo_url: String },
}

/// An ECR repository, from the registry host a manifest spells.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ecr {
    pub account: String,
    pub region: String,
    /// The repository's name in ECR (`team/api`).
    pub repository: String,
}

impl Ecr {
    /// `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]/<name>` ("Amazon ECR private
    /// registry": docs.aws.amazon.com/AmazonECR/latest/userguide/Registries.html), else `None`.
    pub fn of(repository: &Repository) -> Option<Self> {
        let (host, name) = repository.as_str().split_once('/')?;
        let parts: Vec<&str> = host.split('.').collect();
        let suffix_ok = matches!(
            &parts[4.min(parts.len())..],
            ["amazonaws", "com"] | ["amazonaws", "com", "cn"]
        );
        let ok = parts.len() >= 6
            && parts[0].len() == 12
            && parts[0].bytes().all(|b| b.is_ascii_digit())
            && parts[1] == "dkr"
            && matches!(parts[2], "ecr" | "ecr-fips")
            && !parts[3].is_empty()
            && suffix_ok;
        ok.then(|| Self {
            account: parts[0].to_owned(),
            region: parts[3].to_owned(),
            repository: name.to_owned(),
        })
    }
}

/// A service found: one ECR repository, and the environments whose files reference it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub ecr: Ecr,
    /// The repository as the manifests spell it.
    pub image: Repository,
    /// In promotion order.
    pub environments: Vec<Environment>,
}

/// An environment of a service: one application and the files that hold its reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    pub application: String,
    pub files: Vec<String>,
}

/// Something discovery could not place, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unplaced {
    /// An application, a file (`path:line`) or an image.
    pub what: String,
    pub why: String,
}

/// What discovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    pub services: Vec<Service>,
    /// Every environment name, in promotion order.
    pub order: Vec<String>,
    /// Why that order: a line per environment.
    pub reasons: Vec<String>,
    pub unplaced: Vec<Unplaced>,
}

/// The files and directories to read from the repository for `apps`: a file is wanted when
/// its path starts with one of these (`""` is the whole repository).
pub fn wanted(apps: &[Application]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for app in apps {
        if let AppSource::Ours {
            path, value_files, ..
        } = &app.source
        {
            let dir = normal(path).unwrap_or_default();
            match value_files.is_empty() {
                true => out.insert(dir),
                false => {
                    out.extend(value_files.iter().filter_map(|v| value_file(&dir, v).ok()));
                    true
                }
            };
        }
    }
    out
}

/// Whether an application with `source` renders `file` (a path in the repository): one of
/// its value files, or a YAML file in (with `recurse`, below) its path.
pub fn renders(source: &AppSource, file: &str) -> bool {
    let AppSource::Ours {
        path,
        value_files,
        recurse,
        ..
    } = source
    else {
        return false;
    };
    let Some(dir) = normal(path) else {
        return false;
    };
    if value_files.is_empty() {
        return yaml(file) && in_dir(file, &dir, *recurse);
    }
    value_files
        .iter()
        .any(|v| value_file(&dir, v).is_ok_and(|f| f == file))
}

/// Whether an application deploying `revision` follows `branch` (its head, or `HEAD`, the
/// default branch: "If omitted, will equal to HEAD", Argo CD's `v1alpha1ApplicationSource`).
pub fn tracks(revision: &str, branch: &str) -> bool {
    let r = revision.trim();
    r.is_empty() || r == "HEAD" || r == branch || r.strip_prefix("refs/heads/") == Some(branch)
}

/// Discover the services of `apps`, whose sources in the GitOps repository are read from
/// `files` (path → text, at `branch`'s head).
pub fn discover(apps: &[Application], files: &BTreeMap<String, String>, branch: &str) -> Discovery {
    let mut unplaced = Vec::new();
    // ECR repository → application → (its files, the repository as they spell it).
    let mut found: BTreeMap<Ecr, BTreeMap<String, (BTreeSet<String>, Repository)>> =
        BTreeMap::new();
    let mut stages = BTreeMap::new();
    for app in apps {
        let Some(read) = read_app(app, files, branch, &mut unplaced) else {
            continue;
        };
        if read.is_empty() {
            unplaced.push(no_reference(app));
        }
        stages.insert(app.name.clone(), app_stage(app));
        for (ecr, (file, image)) in read {
            let entry = found.entry(ecr).or_default();
            let (files, _) = entry
                .entry(app.name.clone())
                .or_insert_with(|| (BTreeSet::new(), image));
            files.insert(file);
        }
    }
    let names = service_names(found.keys());
    let mut services = Vec::new();
    let mut ranks = BTreeMap::new();
    for (ecr, by_app) in found {
        let name = names[&ecr].clone();
        if let Some(s) = service(name, ecr, by_app, &stages, &mut unplaced) {
            for (env, rank) in s.1 {
                ranks.insert(env, rank);
            }
            services.push(s.0);
        }
    }
    let (order, reasons) = order(&ranks, &stages);
    unplaced.sort();
    unplaced.dedup();
    Discovery {
        services,
        order,
        reasons,
        unplaced,
    }
}

/// One application's ECR references: (repository, (file, as spelled)); `None` when the
/// application cannot be placed at all (said in `unplaced`).
fn read_app(
    app: &Application,
    files: &BTreeMap<String, String>,
    branch: &str,
    unplaced: &mut Vec<Unplaced>,
) -> Option<Vec<(Ecr, (String, Repository))>> {
    let what = format!("application {}", app.name);
    let (path, revision, value_files, recurse) = match &app.source {
        AppSource::Elsewhere { repo_url } => {
            unplaced.push(Unplaced {
                what,
                why: format!("its source is another repository ({repo_url})"),
            });
            return None;
        }
        AppSource::Ours {
            path,
            revision,
            value_files,
            recurse,
        } => (path, revision, value_files, *recurse),
    };
    if !tracks(revision, branch) {
        unplaced.push(Unplaced {
            what,
            why: format!(
                "it deploys revision '{revision}', not the branch '{branch}' that tugboat commits to"
            ),
        });
        return None;
    }
    let Some(dir) = normal(path) else {
        unplaced.push(Unplaced {
            what,
            why: format!("its path '{path}' leaves the repository"),
        });
        return None;
    };
    let mut refs = Vec::new();
    for file in app_files(&app.name, &dir, value_files, recurse, files, unplaced) {
        refs.extend(ecr_references(&file, &files[&file], unplaced));
    }
    Some(refs)
}

/// The files Argo CD renders for an application from the repository, as `files` holds them.
fn app_files(
    app: &str,
    dir: &str,
    value_files: &[String],
    recurse: bool,
    files: &BTreeMap<String, String>,
    unplaced: &mut Vec<Unplaced>,
) -> Vec<String> {
    if value_files.is_empty() {
        return files
            .keys()
            .filter(|f| yaml(f) && in_dir(f, dir, recurse))
            .cloned()
            .collect();
    }
    let mut out = Vec::new();
    for v in value_files {
        let what = format!("application {app}: value file {v}");
        match value_file(dir, v) {
            Ok(f) if files.contains_key(&f) => out.push(f),
            Ok(f) => unplaced.push(Unplaced {
                what,
                why: format!("{f} is not in the repository"),
            }),
            Err(why) => unplaced.push(Unplaced { what, why }),
        }
    }
    out
}

/// A Helm value file's path in the repository.
fn value_file(dir: &str, v: &str) -> Result<String, String> {
    if v.starts_with('$') || v.contains("://") {
        return Err(
            "it is read from another source or a URL; tugboat edits only the GitOps repository's files"
                .to_owned(),
        );
    }
    let joined = if dir.is_empty() {
        v.to_owned()
    } else {
        format!("{dir}/{v}")
    };
    normal(&joined).ok_or_else(|| "it leaves the repository".to_owned())
}

/// A path without `.`, `..` and empty parts; `None` when it leaves the root.
fn normal(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn yaml(file: &str) -> bool {
    file.ends_with(".yaml") || file.ends_with(".yml")
}

fn in_dir(file: &str, dir: &str, recurse: bool) -> bool {
    let rest = if dir.is_empty() {
        Some(file)
    } else {
        file.strip_prefix(dir).and_then(|r| r.strip_prefix('/'))
    };
    rest.is_some_and(|r| recurse || !r.contains('/'))
}

/// The ECR references of one file that tugboat can edit; the others said in `unplaced`.
fn ecr_references(
    file: &str,
    text: &str,
    unplaced: &mut Vec<Unplaced>,
) -> Vec<(Ecr, (String, Repository))> {
    let found = match refs::locate(text) {
        Ok(r) => r,
        Err(e) => {
            unplaced.push(Unplaced {
                what: file.to_owned(),
                why: e.to_string(),
            });
            return Vec::new();
        }
    };
    let mut out: Vec<(Ecr, (String, Repository))> = Vec::new();
    for r in found {
        let at = format!("{file}:{}", r.line);
        let Some(ecr) = Ecr::of(&r.repository) else {
            unplaced.push(Unplaced {
                what: at,
                why: format!(
                    "image {} is not in an ECR registry; tugboat promotes ECR images",
                    r.repository
                ),
            });
            continue;
        };
        if out.iter().any(|(e, _)| *e == ecr) {
            continue;
        }
        match editable(text, &r) {
            Ok(()) => out.push((ecr, (file.to_owned(), r.repository.clone()))),
            Err(why) => unplaced.push(Unplaced { what: at, why }),
        }
    }
    out
}

/// Whether the editor can point the file's references of `r`'s repository at a new tag.
fn editable(text: &str, r: &refs::Reference) -> Result<(), String> {
    let probe = Tag::parse("tugboat-init-probe").map_err(|e| e.to_string())?;
    // A digest-only reference is promoted by its digest alone (`set_reference`).
    let tag = (r.tag.is_some() || r.digest.is_none()).then_some(&probe);
    edit::set_reference(text, &r.repository, tag, r.digest.as_ref())
        .map(|_| ())
        .map_err(|e| format!("tugboat cannot edit this reference: {e}"))
}

/// Why an application contributes no service.
fn no_reference(app: &Application) -> Unplaced {
    let ecr: Vec<&str> = app
        .images
        .iter()
        .map(String::as_str)
        .filter(|i| {
            let repo = i.split(['@']).next().unwrap_or(i);
            let repo = repo.rsplit_once(':').filter(|(_, t)| !t.contains('/'));
            let repo = repo.map_or(*i, |(r, _)| r);
            Repository::parse(repo)
                .ok()
                .and_then(|r| Ecr::of(&r))
                .is_some()
        })
        .collect();
    let mut why = "no file it renders from the repository references an ECR image".to_owned();
    if !ecr.is_empty() {
        why.push_str(&format!(
            " (it runs {}: that reference is in a file outside its path, such as a kustomize base, which every environment building on it shares)",
            ecr.join(", ")
        ));
    }
    Unplaced {
        what: format!("application {}", app.name),
        why,
    }
}

/// The stage an application's name (else its path) says.
fn app_stage(app: &Application) -> Option<stage::Stage> {
    stage::of(&app.name).or_else(|| match &app.source {
        AppSource::Ours { path, .. } => stage::of(path),
        AppSource::Elsewhere { .. } => None,
    })
}

/// A name as the configuration takes it: letters, digits, `_` and `-`.
fn config_name(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            _ => '-',
        })
        .collect()
}

/// Each repository's service name: its last path component, or its whole path where two
/// repositories share one.
fn service_names<'a>(ecrs: impl Iterator<Item = &'a Ecr> + Clone) -> BTreeMap<Ecr, String> {
    let short = |e: &Ecr| config_name(e.repository.rsplit('/').next().unwrap_or(""));
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for e in ecrs.clone() {
        *count.entry(short(e)).or_default() += 1;
    }
    ecrs.map(|e| {
        let name = match count[&short(e)] {
            1 => short(e),
            _ => config_name(&format!("{}-{}-{}", e.account, e.region, e.repository)),
        };
        (e.clone(), name)
    })
    .collect()
}

type Stages = BTreeMap<String, Option<stage::Stage>>;

/// A service from its applications; with the rank of each environment name.
fn service(
    name: String,
    ecr: Ecr,
    by_app: BTreeMap<String, (BTreeSet<String>, Repository)>,
    stages: &Stages,
    unplaced: &mut Vec<Unplaced>,
) -> Option<(Service, Vec<(String, u8)>)> {
    let image = by_app.values().next()?.1.clone();
    let mut envs: Vec<(u8, Environment)> = by_app
        .into_iter()
        .map(|(app, (files, _))| {
            let st = stages.get(&app).cloned().flatten();
            let rank = st.as_ref().map_or(stage::UNKNOWN_RANK, |s| s.rank);
            let env_name = st.map_or_else(|| config_name(&app), |s| s.word);
            let env = Environment {
                name: env_name,
                application: app,
                files: files.into_iter().collect(),
            };
            (rank, env)
        })
        .collect();
    // Two applications of one service with one stage word: each keeps its own name.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (_, e) in &envs {
        *seen.entry(e.name.clone()).or_default() += 1;
    }
    for (_, e) in &mut envs {
        if seen[&e.name] > 1 {
            e.name = config_name(&e.application);
        }
    }
    drop_shared_files(&name, &mut envs, unplaced);
    envs.sort_by(|(ra, a), (rb, b)| (ra, &a.name).cmp(&(rb, &b.name)));
    let ranks = envs.iter().map(|(r, e)| (e.name.clone(), *r)).collect();
    let environments: Vec<Environment> = envs.into_iter().map(|(_, e)| e).collect();
    (!environments.is_empty()).then_some((
        Service {
            name,
            ecr,
            image,
            environments,
        },
        ranks,
    ))
}

/// A file two environments of a service render would deploy both at one edit: it is no
/// environment's, and an environment left without files is no environment.
fn drop_shared_files(
    service: &str,
    envs: &mut Vec<(u8, Environment)>,
    unplaced: &mut Vec<Unplaced>,
) {
    let mut apps_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, e) in envs.iter() {
        for f in &e.files {
            apps_of
                .entry(f.clone())
                .or_default()
                .push(e.application.clone());
        }
    }
    for (file, apps) in apps_of.iter().filter(|(_, a)| a.len() > 1) {
        unplaced.push(Unplaced {
            what: file.clone(),
            why: format!(
                "applications {} all render it: one edit for {service} would deploy them at once; give each environment its own file",
                apps.join(", ")
            ),
        });
    }
    for (_, e) in envs.iter_mut() {
        e.files.retain(|f| apps_of[f].len() == 1);
    }
    envs.retain(|(_, e)| !e.files.is_empty());
}

/// Every environment name in promotion order, and why.
fn order(ranks: &BTreeMap<String, u8>, stages: &Stages) -> (Vec<String>, Vec<String>) {
    let mut names: Vec<(&u8, &String)> = ranks.iter().map(|(n, r)| (r, n)).collect();
    names.sort();
    let words: BTreeMap<&str, &str> = stages
        .values()
        .flatten()
        .map(|s| (s.word.as_str(), s.why.as_str()))
        .collect();
    let reasons = names
        .iter()
        .map(|(_, n)| match words.get(n.as_str()) {
            Some(why) => (*why).to_owned(),
            None => format!(
                "'{n}' names no known stage: placed after the others and before production; move it if that is wrong"
            ),
        })
        .collect();
    (names.into_iter().map(|(_, n)| n.clone()).collect(), reasons)
}

#[cfg(test)]
mod tests;
