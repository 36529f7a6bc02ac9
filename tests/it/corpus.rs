//! The shared corpus of 80 real-world GitOps files (`../shared/corpus`, read in place):
//! every image reference its INDEX lists is found (or deliberately refused, with the reason
//! below), and bumping each repository changes exactly the bytes of its tag/digest scalars,
//! re-parses to the same document with just those values changed, and bumps back to the
//! original bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tugboat::domain::image::{Digest, ImageRef, Repository, Tag};
use tugboat::manifest::tree::{self, Node, SNode};
use tugboat::manifest::{Reference, locate, set_reference};

/// INDEX entries tugboat deliberately does not treat as editable references: (file name
/// fragment, entry fragment, why). The closing note of the editor issue lists the same.
const REFUSED: &[(&str, &str, &str)] = &[
    (
        "212clab__wealist-advanced-k8s__services",
        "${AWS_ACCOUNT_ID}",
        "templated repository and tag: resolved by envsubst in CI, not a concrete image",
    ),
    (
        "212clab__wealist-advanced-k8s__charts",
        "tag=",
        "a tag with no repository beside it (the chart builds it from globals): cannot be matched by repository",
    ),
    (
        "DecentM__fleet-infra__infrastructure",
        "repository=",
        "a repository with no tag key (the chart's appVersion is used): nothing to bump without inventing a key",
    ),
    (
        "instana__robot-shop",
        "repo=robotshop",
        "`repo` is an organisation prefix and `version` a shared tag for all services: not one image",
    ),
    (
        "aws-samples__ack-rds-gitops-workshop",
        "<account_id>",
        "templated registry (<account_id>, <region>): not a concrete image",
    ),
    (
        "small-hack__argocd-apps__demo__local-path-provisioner",
        "|embedded",
        "an image inside a ConfigMap's data string: not part of the manifest, never edited",
    ),
    (
        "gitops-bridge-dev",
        "",
        "the tag is a generator value ({{values.clusterAutoScalerImageTag}}) with the repository in a template: no concrete reference",
    ),
    (
        "small-hack__argocd-apps__generic-app",
        "",
        "templated repository and tag ('{{ .generic_app_image_repo }}'): not a concrete image",
    ),
    (
        "angelnu__k8s-gitops",
        "defaultRegistry",
        "a registry override alone (no repository, no tag): the chart supplies the image",
    ),
    (
        "aws-containers__retail-store-sample-app",
        "tag=<empty>",
        "`tag:` with no value at all: tugboat edits existing scalars and does not invent a value where the chart relies on its default",
    ),
];

/// Repositories whose bump cannot be undone through the public API, and why.
const NO_ROUND_TRIP: &[(&str, &str)] = &[
    (
        "ghcr.io/agoric/agoric-sdk",
        "the reference had no tag; the bump adds one",
    ),
    (
        "inxnacrtestdo1532hy.azurecr.io/dlrpicontainerizedspike",
        "the reference had no tag; the bump adds one",
    ),
    (
        "ghcr.io/containerd/busybox",
        "the kustomize entry had no newTag; the bump adds the line",
    ),
    ("docker.io/grafana/promtail", "the tag was empty (\"\")"),
    ("quay.io/argoproj/argo-rollouts", "the tag was empty (\"\")"),
    (
        "quay.io/argoproj/kubectl-argo-rollouts",
        "the tag was empty (\"\")",
    ),
    (
        "registry.k8s.io/kube-state-metrics/kube-state-metrics",
        "the tag was empty (\"\")",
    ),
    (
        "quay.io/sustainable_computing_io/kepler",
        "the tag was empty (\"\")",
    ),
    (
        "my-docker2",
        "the digest was not a valid digest (sha256:25a0d4); the bump writes a real one",
    ),
];

/// Repositories whose original tag was a plain number (`tag: 2`): tugboat writes a tag
/// YAML would read as a number double-quoted, so the way back adds quotes and nothing else.
const QUOTED_ON_THE_WAY_BACK: &[&str] = &[
    "registry-quay-quay-enterprise.apps.mgt.scp.gcp1.kafd.sa/pipelines/backend-application",
    "wikibase/wdqs",
    "wikibase/wdqs-frontend",
    "quay.io/openshift/origin-oauth-proxy",
];

fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    assert!(
        dir.join("INDEX.tsv").is_file(),
        "the shared corpus is expected at {} (CI provides it beside the clone)",
        dir.display()
    );
    dir
}

struct File {
    kind: String,
    name: String,
    text: String,
    entries: Vec<String>,
}

fn corpus() -> Vec<File> {
    let dir = corpus_dir();
    let index = std::fs::read_to_string(dir.join("INDEX.tsv")).unwrap();
    index
        .lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let (kind, name) = (cols[0].to_owned(), cols[1].to_owned());
            let text = std::fs::read_to_string(dir.join("files").join(&kind).join(&name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let entries = cols[5]
                .split("; ")
                .filter(|e| !e.starts_with("<note") && !e.starts_with("parsed with"))
                .map(str::to_owned)
                .collect();
            File {
                kind,
                name,
                text,
                entries,
            }
        })
        .collect()
}

/// `key=value` pairs of an INDEX entry (values may be quoted, or `*alias(=value)`, or
/// `&anchor value`).
fn fields(entry: &str) -> BTreeMap<String, String> {
    let re = regex::Regex::new(r#"(\w+)=(\*\w+\(=[^)]*\)|&\S+ \S+|"[^"]*"|'[^']*'|\S+)"#).unwrap();
    re.captures_iter(entry)
        .map(|c| {
            let mut v = c[2].to_owned();
            if let Some(inner) = v.strip_prefix('*').and_then(|r| r.split_once("(=")) {
                v = inner.1.trim_end_matches(')').to_owned();
            } else if v.starts_with('&') {
                v = v
                    .split_once(' ')
                    .map(|(_, r)| r.to_owned())
                    .unwrap_or_default();
            }
            let v = v.trim_matches(['"', '\'']).to_owned();
            (c[1].to_owned(), v)
        })
        .collect()
}

/// The repository an INDEX entry names, when it names one on its own.
fn index_repository(kind: &str, entry: &str) -> Option<String> {
    let f = fields(entry);
    if kind == "A" && f.contains_key("name") {
        return f.get("newName").or(f.get("name")).cloned();
    }
    if let Some(name) = f.get("name") {
        // helm.parameters: the repository entry names the image; the tag entry pairs with it.
        return name
            .ends_with("repository")
            .then(|| f.get("value").cloned())
            .flatten();
    }
    let repo = f
        .get("repository")
        .or(f.get("repo"))
        .or(f.get("image").filter(|_| f.contains_key("tag")));
    if let Some(repo) = repo {
        return Some(match f.get("registry") {
            Some(r) if !r.is_empty() => format!("{r}/{repo}"),
            _ => repo.clone(),
        });
    }
    // `...image=REF`, `kustomize.images[0]=REF`, `path="REF"`.
    let (_, value) = entry.split_once("]=").or_else(|| entry.rsplit_once('='))?;
    let value = value
        .split(" #")
        .next()
        .unwrap()
        .trim()
        .trim_matches(['"', '\'']);
    let value = value.split_once('=').map_or(value, |(_, v)| v);
    ImageRef::split_loose(value).map(|(r, _, _)| r.to_string())
}

fn refused(file: &str, entry: &str) -> Option<&'static str> {
    REFUSED
        .iter()
        .find(|(f, e, _)| file.contains(f) && entry.contains(e))
        .map(|(_, _, why)| *why)
}

#[test]
fn every_listed_reference_is_found_or_refused_for_a_stated_reason() {
    let mut problems = Vec::new();
    let mut counted = (0, 0);
    for file in corpus() {
        let refs = locate(&file.text).unwrap_or_else(|e| panic!("{}: {e}", file.name));
        let located: BTreeSet<String> = refs.iter().map(|r| r.repository.to_string()).collect();
        let mut expected = BTreeSet::new();
        for entry in &file.entries {
            if entry == "images=<empty>" {
                continue;
            }
            let repo = index_repository(&file.kind, entry);
            match (refused(&file.name, entry), repo) {
                (Some(_), Some(r)) if located.contains(&r) && !expected.contains(&r) => {
                    problems.push(format!("{}: refused entry '{entry}' is located", file.name));
                }
                (Some(_), _) => counted.1 += 1,
                (None, Some(r)) => {
                    counted.0 += 1;
                    expected.insert(r);
                }
                (None, None) if entry.contains("name=") && entry.contains(".tag") => {}
                (None, None) => problems.push(format!(
                    "{}: cannot tell the repository of '{entry}'",
                    file.name
                )),
            }
        }
        for missing in expected.difference(&located) {
            problems.push(format!("{}: '{missing}' not located", file.name));
        }
        for extra in located.difference(&expected) {
            problems.push(format!(
                "{}: located '{extra}' the INDEX does not list",
                file.name
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    eprintln!("{} references found, {} refused", counted.0, counted.1);
    assert_eq!(counted, (188, 45), "(found, refused)");
}

/// A scalar that differs between the original and the bumped document.
#[derive(Debug)]
struct Leaf {
    line: usize,
    column: usize,
    old_raw: String,
    new_raw: String,
    old_value: String,
    new_value: String,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Walk two documents in step: same shape, same keys; record differing scalars. A block
/// scalar whose text differs is compared as YAML in its turn (Argo CD `helm.values`).
fn compare(
    old_text: &str,
    new_text: &str,
    a: &SNode,
    b: &SNode,
    offset: (usize, usize),
    out: &mut Vec<Leaf>,
) -> Result<(), String> {
    match (&a.value, &b.value) {
        (Node::Map(x), Node::Map(y)) if x.len() == y.len() => {
            for ((ka, va), (kb, vb)) in x.iter().zip(y) {
                if ka.value.as_str() != kb.value.as_str() {
                    return Err(format!("key {:?} became {:?}", ka.value, kb.value));
                }
                compare(old_text, new_text, va, vb, offset, out)?;
            }
            Ok(())
        }
        (Node::Seq(x), Node::Seq(y)) if x.len() == y.len() => {
            for (va, vb) in x.iter().zip(y) {
                compare(old_text, new_text, va, vb, offset, out)?;
            }
            Ok(())
        }
        (Node::Scalar(x), Node::Scalar(y)) if x == y => Ok(()),
        (Node::Null, Node::Null) => Ok(()),
        (Node::Scalar(x), Node::Scalar(y)) => {
            let (ra, rb) = (tree::byte_range(a).unwrap(), tree::byte_range(b).unwrap());
            if tree::block_indicator(old_text, a).is_some() {
                let (da, db) = (
                    tree::parse_documents(x).map_err(|e| e.message)?,
                    tree::parse_documents(y).map_err(|e| e.message)?,
                );
                let (line, column) = line_col(old_text, ra.start);
                let inner = (offset.0 + line - 1, offset.1 + column - 1);
                for (ia, ib) in da.iter().zip(&db) {
                    compare(x, y, ia, ib, inner, out)?;
                }
                return Ok(());
            }
            let (line, column) = line_col(old_text, ra.start);
            out.push(Leaf {
                line: offset.0 + line,
                column: offset.1 + column,
                old_raw: old_text[ra].to_owned(),
                new_raw: new_text[rb].to_owned(),
                old_value: x.clone(),
                new_value: y.clone(),
            });
            Ok(())
        }
        _ => Err(format!("{:?} became {:?}", a.value, b.value)),
    }
}

fn digest(c: char) -> Digest {
    Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
}

fn same<T: Clone + PartialEq>(items: impl Iterator<Item = Option<T>>) -> Option<Option<T>> {
    let v: Vec<Option<T>> = items.collect();
    v.windows(2).all(|w| w[0] == w[1]).then(|| v[0].clone())
}

#[test]
fn bumping_each_repository_changes_only_its_bytes_and_bumps_back_exactly() {
    let new_tag = Tag::parse("tugboat-9.9.9").unwrap();
    let new_digest = digest('e');
    let mut bumped = 0;
    let mut no_round_trip = BTreeSet::new();
    let mut quoted = 0;
    let mut problems = Vec::new();
    for file in corpus() {
        let refs = locate(&file.text).unwrap();
        let mut by_repo: BTreeMap<String, Vec<&Reference>> = BTreeMap::new();
        for r in &refs {
            by_repo.entry(r.repository.to_string()).or_default().push(r);
        }
        for (repo, group) in by_repo {
            let repository = Repository::parse(&repo).unwrap();
            let pinned = group.iter().any(|r| r.digest.is_some());
            let digest_only = group.iter().all(|r| r.tag.is_none()) && pinned;
            let tag = (!digest_only).then_some(&new_tag);
            let d = pinned.then_some(&new_digest);
            let where_ = format!("{} / {repo}", file.name);
            let first = set_reference(&file.text, &repository, tag, d);
            let first = match first {
                // A digest key with an invalid value: the edit must bring a real digest.
                Err(e) if e.to_string().contains("give the new digest") => {
                    set_reference(&file.text, &repository, tag, Some(&new_digest))
                }
                other => other,
            };
            let edited = match first {
                Ok(e) => e,
                Err(e) => {
                    problems.push(format!("{where_}: {e}"));
                    continue;
                }
            };
            bumped += 1;
            if let Err(e) = check_bytes(&file.text, &edited.text, &new_tag, &new_digest) {
                problems.push(format!("{where_}: {e}"));
                continue;
            }
            let after = locate(&edited.text).unwrap();
            for r in after.iter().filter(|r| r.is_for(&repository)) {
                // A digest-only kustomize entry records the digest, not the tag.
                let ok = match &r.tag {
                    Some(t) => tag.is_none() || *t == new_tag,
                    None => r.digest.as_ref() == Some(&new_digest),
                };
                if !ok {
                    problems.push(format!("{where_}: line {} reads {}", r.line, r.image()));
                }
            }
            // Back to the original: only when the original is something tugboat would write.
            let old_tag = same(group.iter().map(|r| r.tag.clone()));
            let old_digest = same(group.iter().map(|r| r.digest.clone()));
            let original_tag_valid = group.iter().all(|r| r.tag.is_some()) || digest_only;
            match (old_tag, old_digest) {
                (Some(t), Some(od)) if original_tag_valid => {
                    match set_reference(&edited.text, &repository, t.as_ref(), od.as_ref()) {
                        Ok(back) if back.text == file.text => {}
                        Ok(back)
                            if QUOTED_ON_THE_WAY_BACK.contains(&repo.as_str())
                                && back.text.replace('"', "") == file.text.replace('"', "") =>
                        {
                            quoted += 1;
                        }
                        Ok(_) => problems.push(format!("{where_}: bumping back differs")),
                        Err(e) => problems.push(format!("{where_}: bumping back: {e}")),
                    }
                }
                _ => {
                    no_round_trip.insert(repo.clone());
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let expected: BTreeSet<String> = NO_ROUND_TRIP.iter().map(|(r, _)| (*r).to_owned()).collect();
    assert_eq!(no_round_trip, expected, "repositories without a round trip");
    assert_eq!(
        quoted,
        QUOTED_ON_THE_WAY_BACK.len(),
        "quoted on the way back"
    );
    assert_eq!(bumped, 176, "repositories bumped");
    eprintln!("{bumped} repository bumps checked");
}

/// Only the bytes of differing scalars changed (plus an added `newTag:` line), and every
/// differing scalar now holds the new tag or digest.
fn check_bytes(old: &str, new: &str, tag: &Tag, digest: &Digest) -> Result<(), String> {
    let (da, db) = (
        tree::parse_documents(old).map_err(|e| e.message)?,
        tree::parse_documents(new).map_err(|e| e.message)?,
    );
    let mut leaves = Vec::new();
    let mut inserted = 0;
    if da.len() != db.len() {
        return Err("document count changed".into());
    }
    for (a, b) in da.iter().zip(&db) {
        if let Err(e) = compare(old, new, a, b, (0, 0), &mut leaves) {
            // An added kustomize `newTag` makes the entry one key longer.
            if e.contains("Map") && new.contains(&format!("newTag: {tag}")) {
                inserted = 1;
                continue;
            }
            return Err(e);
        }
    }
    let hex = digest.as_str().trim_start_matches("sha256:");
    for leaf in &leaves {
        if !leaf.new_value.contains(tag.as_str()) && !leaf.new_value.contains(hex) {
            return Err(format!(
                "line {}: {:?} is neither",
                leaf.line, leaf.new_value
            ));
        }
        // What precedes the new tag/digest (a repository, `name=repo`) is what was there.
        let kept = leaf
            .new_value
            .trim_end_matches(hex)
            .trim_end_matches("sha256:")
            .trim_end_matches('@')
            .trim_end_matches(tag.as_str())
            .trim_end_matches(':');
        if !leaf.old_value.starts_with(kept) {
            return Err(format!(
                "line {}: {:?} became {:?}: more than the tag changed",
                leaf.line, leaf.old_value, leaf.new_value
            ));
        }
    }
    // An alias and its anchor are one scalar in the text.
    leaves.sort_by_key(|l| (l.line, l.column));
    leaves.dedup_by_key(|l| (l.line, l.column));
    let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
    let mut new_lines: Vec<&str> = new.split_inclusive('\n').collect();
    if inserted == 1 {
        let i = new_lines
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("newTag: {tag}")))
            .ok_or("no newTag line")?;
        let line = new_lines.remove(i);
        // The line before carries the line break the insertion moved.
        if i > 0 && !line.ends_with('\n') {
            let prev = new_lines[i - 1].trim_end_matches(['\r', '\n']);
            if old_lines.get(i - 1).copied() != Some(prev) {
                return Err("insertion at the end changed the line before".into());
            }
            new_lines[i - 1] = old_lines[i - 1];
        }
    }
    if old_lines.len() != new_lines.len() {
        return Err(format!(
            "line count {} became {}",
            old_lines.len(),
            new_lines.len()
        ));
    }
    for (i, (a, b)) in old_lines.iter().zip(&new_lines).enumerate() {
        let mut on_line: Vec<&Leaf> = leaves.iter().filter(|l| l.line == i + 1).collect();
        on_line.sort_by_key(|l| std::cmp::Reverse(l.column));
        let mut expect = (*a).to_owned();
        for l in on_line {
            let at = l.column - 1;
            if expect.get(at..at + l.old_raw.len()) != Some(l.old_raw.as_str()) {
                return Err(format!("line {}: scalar not where the parser says", i + 1));
            }
            expect.replace_range(at..at + l.old_raw.len(), &l.new_raw);
        }
        if expect != *b {
            return Err(format!(
                "line {} changed beyond its scalars:\n-{a}+{b}",
                i + 1
            ));
        }
    }
    Ok(())
}
