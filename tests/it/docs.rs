//! The manual (`docs/`, an mdBook) cannot drift from the code: every link between its
//! chapters resolves, and every policy field and comment command is in it. (The
//! configuration reference and the metrics: unit tests in `config/show.rs` and `metrics.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

/// Every chapter: (path relative to `docs/`, text).
fn chapters() -> Vec<(String, String)> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let path = e.path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|x| x == "md") {
                let rel = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&docs(), &docs(), &mut out);
    out
}

/// The whole manual as one text.
fn manual() -> String {
    chapters().into_iter().map(|(_, t)| t).collect()
}

/// A heading's anchor as mdBook makes it: lower case, letters, digits, `-` and `_` kept,
/// spaces as `-`, the rest dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a chapter's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fence = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fence = !fence;
        } else if !fence && line.starts_with('#') {
            out.insert(anchor(
                line.trim_start_matches('#').replace('`', "").as_str(),
            ));
        }
    }
    out
}

/// The targets of a text's Markdown links `[text](target)` (outside code blocks).
fn links(text: &str) -> Vec<String> {
    let mut fence = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_link_between_chapters_of_the_manual_resolves_and_every_chapter_is_in_the_summary() {
    let chapters = chapters();
    let by_path: std::collections::BTreeMap<&str, &str> = chapters
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let mut broken = Vec::new();
    for (path, text) in &chapters {
        let dir = Path::new(path).parent().unwrap_or(Path::new(""));
        for target in links(text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, frag) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if file.is_empty() {
                path.clone()
            } else {
                normalise(&dir.join(file))
            };
            match by_path.get(resolved.as_str()) {
                None => broken.push(format!("{path}: {target} (no chapter {resolved})")),
                Some(t) if !frag.is_empty() && !anchors(t).contains(frag) => broken.push(format!(
                    "{path}: {target} (no heading #{frag} in {resolved})"
                )),
                Some(_) => {}
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    let summary = by_path["SUMMARY.md"];
    let listed: BTreeSet<String> = links(summary).into_iter().collect();
    let unlisted: Vec<&str> = by_path
        .keys()
        .filter(|p| **p != "SUMMARY.md" && !listed.contains(**p))
        .copied()
        .collect();
    assert!(
        unlisted.is_empty(),
        "chapters not in docs/SUMMARY.md: {unlisted:?}"
    );
}

/// `a/../b.md` as `b.md`.
fn normalise(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

#[test]
fn every_policy_field_of_the_schema_is_in_the_manual() {
    fn fields(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        let Some(o) = v.as_object() else { return };
        if let Some(props) = o.get("properties").and_then(|p| p.as_object()) {
            for (k, v) in props {
                out.insert(k.clone());
                fields(v, out);
            }
        }
        for key in ["$defs", "definitions", "patternProperties"] {
            if let Some(m) = o.get(key).and_then(|p| p.as_object()) {
                m.values().for_each(|v| fields(v, out));
            }
        }
        for key in ["additionalProperties", "items"] {
            if let Some(v) = o.get(key) {
                fields(v, out);
            }
        }
        for key in ["oneOf", "anyOf", "allOf"] {
            if let Some(a) = o.get(key).and_then(|p| p.as_array()) {
                a.iter().for_each(|v| fields(v, out));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("policies/schema.json")).unwrap())
            .unwrap();
    let mut all = BTreeSet::new();
    fields(&schema, &mut all);
    assert!(all.len() > 30, "{all:?}");
    let manual = manual();
    let missing: Vec<&String> = all
        .iter()
        .filter(|f| !manual.contains(&format!("`{f}")) && !manual.contains(&format!("{f}:")))
        .collect();
    assert!(
        missing.is_empty(),
        "policy fields the manual does not name: {missing:?}"
    );
}

#[test]
fn every_comment_command_is_in_the_manual() {
    let help = tugboat::domain::chatops::HELP;
    let commands: BTreeSet<&str> = help
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|c| c.starts_with('/'))
        .collect();
    assert!(commands.len() >= 9, "{commands:?}");
    let chapter = std::fs::read_to_string(docs().join("comment-commands.md")).unwrap();
    let missing: Vec<&&str> = commands
        .iter()
        .filter(|c| !chapter.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "commands docs/comment-commands.md does not name: {missing:?}"
    );
    // And every spelling the parser takes, aliases included.
    for spelling in ["/lgtm", "/hold cancel"] {
        let parsed = tugboat::domain::chatops::parse(spelling);
        assert!(
            !matches!(
                parsed,
                Some(tugboat::domain::chatops::Command::Unknown(_)) | None
            ),
            "{spelling}"
        );
        assert!(chapter.contains(&format!("`{spelling}`")), "{spelling}");
    }
}
