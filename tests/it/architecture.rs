//! ARCHITECTURE.md stays true: every crate and source directory is named in its code map
//! (which stays short, as does the README), the core crate stays free of runtime, network and clock dependencies, and
//! the one `unsafe` block is the git transport's registration; the engine's files depend on
//! each other without a cycle, along an allowed-edges table.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every directory of source under `dir`, `dir` itself included.
fn directories(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for path in entries {
        directories(&path, out);
    }
}

#[test]
fn every_crate_and_source_directory_is_named_in_the_code_map() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut all = Vec::new();
    for krate in ["crates/core", "crates/daemon", "crates/sandbox"] {
        assert!(
            map.contains(&format!("`{krate}/`")),
            "the code map does not name {krate}/"
        );
        directories(&root().join(krate).join("src"), &mut all);
    }
    let missing: Vec<String> = all
        .iter()
        .filter(|dir| !dir.ends_with("src"))
        .filter(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy();
            !map.contains(&format!("`{name}/`")) && !map.contains(&format!("/{name}/`"))
        })
        .map(|dir| dir.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map does not name these directories: {}",
        missing.join(", ")
    );
}

#[test]
fn the_readme_and_the_architecture_stay_short_enough_to_read() {
    for (file, most) in [("README.md", 200), ("ARCHITECTURE.md", 150)] {
        let lines = std::fs::read_to_string(root().join(file))
            .unwrap()
            .lines()
            .count();
        assert!(
            lines <= most,
            "{file} has {lines} lines; at most {most}: the manual (docs/) takes the rest"
        );
    }
}

#[test]
fn the_core_crate_depends_on_no_runtime_network_or_clock() {
    let manifest = std::fs::read_to_string(root().join("crates/core/Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap_or_default();
    for banned in [
        "tokio", "reqwest", "hyper", "axum", "octocrab", "git2", "aws-", "tracing",
    ] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(banned)),
            "tugboat-core depends on {banned}: the core must stay pure"
        );
    }
    let chrono = deps
        .lines()
        .find(|l| l.trim_start().starts_with("chrono ="))
        .unwrap_or_default();
    assert!(
        chrono.contains("default-features = false") && !chrono.contains("clock"),
        "tugboat-core must take chrono without its `clock` feature: {chrono}"
    );
}

/// Every `fn` of a source file with its length in lines (to its closing brace at the same
/// indentation; rustfmt lays code out so).
fn functions(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let Some(rest) = [
            "pub(super) async fn ",
            "pub(super) fn ",
            "pub async fn ",
            "pub fn ",
            "async fn ",
            "fn ",
        ]
        .iter()
        .find_map(|p| trimmed.strip_prefix(p)) else {
            continue;
        };
        // A declaration without a body (a trait's method), on one line or several.
        let opens = lines[i..]
            .iter()
            .find(|l| l.contains('{') || l.trim_end().ends_with(';'));
        if opens.is_none_or(|l| !l.contains('{')) {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{indent}}}");
        if let Some(end) = lines[i..].iter().position(|l| *l == close) {
            out.push((name, end + 1));
        }
    }
    out
}

#[test]
fn no_engine_function_runs_past_80_lines_and_none_hides_a_long_parameter_list() {
    let dir = root().join("crates/daemon/src/engine");
    let mut long = Vec::new();
    let mut hidden = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for (name, len) in functions(&text) {
            if len > 80 {
                long.push(format!("{file}: {name} ({len} lines)"));
            }
        }
        if text.contains("too_many_arguments") {
            hidden.push(file);
        }
    }
    long.sort();
    assert!(long.is_empty(), "engine functions over 80 lines: {long:?}");
    assert!(
        hidden.is_empty(),
        "allow(too_many_arguments) in: {hidden:?}"
    );
}

/// The source files of the workspace's crates that are not tests: every `.rs` under
/// `src/` and `crates/*/src/`, but the engine's test files and fake, with each file's
/// `#[cfg(test)] mod tests` cut off.
#[allow(clippy::unwrap_used)] // test code: a panic is the failure report
fn non_test_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("src"), &mut files);
    for krate in std::fs::read_dir(root().join("crates")).unwrap().flatten() {
        walk(&krate.path().join("src"), &mut files);
    }
    files.sort();
    files
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !(name == "tests.rs" || name == "fake.rs" || name.ends_with("_tests.rs"))
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text
                .split("\n#[cfg(test)]\nmod tests")
                .next()
                .unwrap_or_default()
                .to_owned();
            let shown = p.strip_prefix(root()).unwrap_or(&p).display().to_string();
            (shown, code)
        })
        .collect()
}

#[test]
fn no_function_of_the_workspace_runs_past_80_lines() {
    let (mut long, mut measured) = (Vec::new(), 0);
    let sources = non_test_sources();
    for (file, code) in &sources {
        for (name, len) in functions(code) {
            measured += 1;
            if len > 80 {
                long.push(format!("{file}: {name} ({len} lines)"));
            }
        }
    }
    assert!(
        sources.len() > 80 && measured > 1_000,
        "the whole workspace is read: {} files, {measured} functions",
        sources.len()
    );
    assert!(long.is_empty(), "functions over 80 lines: {long:?}");
}

#[test]
fn no_source_file_of_the_workspace_runs_past_800_lines_outside_its_tests() {
    let sources = non_test_sources();
    let mut long: Vec<String> = sources
        .iter()
        .map(|(file, code)| (file, code.lines().count()))
        .filter(|(_, n)| *n > 800)
        .map(|(file, n)| format!("{file} ({n} lines)"))
        .collect();
    long.sort();
    let largest = sources.iter().map(|(_, c)| c.lines().count()).max();
    assert!(
        largest.is_some_and(|n| n > 400),
        "the measure reads whole files: the largest has {largest:?} lines"
    );
    assert!(long.is_empty(), "source files over 800 lines: {long:?}");
}

#[test]
fn the_function_measure_counts_a_function_to_its_closing_brace() {
    let text = "impl X {\n    pub async fn a(&self) {\n        one();\n    }\n}\nfn b() -> u8 {\n    2\n}\n";
    assert_eq!(
        functions(text),
        vec![("a".to_owned(), 3), ("b".to_owned(), 3)]
    );
    // A trait's method without a body, its signature over several lines, is no function.
    let text = "trait T {\n    fn a(\n        &self,\n    ) -> u8;\n    fn b(&self) {\n        x();\n    }\n}\n";
    assert_eq!(functions(text), vec![("b".to_owned(), 3)]);
}

#[test]
fn the_sandbox_depends_on_the_daemon_library_so_the_library_cannot_import_it() {
    let sandbox = std::fs::read_to_string(root().join("crates/sandbox/Cargo.toml")).unwrap();
    let daemon = std::fs::read_to_string(root().join("crates/daemon/Cargo.toml")).unwrap();
    assert!(
        sandbox.contains("tugboat-daemon = { path = \"../daemon\" }"),
        "the sandbox depends on the daemon library (a reverse dependency would be a cycle)"
    );
    assert!(!daemon.contains("tugboat-sandbox"));
}

#[test]
fn unsafe_code_appears_only_where_the_git_transport_is_registered() {
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut all = Vec::new();
    for dir in ["src", "crates", "benches", "tests", "fuzz/fuzz_targets"] {
        rust_files(&root().join(dir), &mut all);
    }
    // The workspace denies `unsafe_code`; an `allow` of it is where unsafe code can be.
    let needle = ["allow(", "unsafe_code)"].concat();
    let mut sites = Vec::new();
    for path in &all {
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains(&needle) {
                sites.push(format!("{}:{}", path.display(), n + 1));
            }
        }
    }
    assert_eq!(
        sites.len(),
        1,
        "unsafe code allowed outside the git transport's registration: {sites:?}"
    );
    assert!(sites[0].contains("adapters/git_http.rs"), "{sites:?}");
}

/// The engine's files a file depends on, by file stem: a `super::<file>` path, or a call
/// `self.<method>(` (or `engine.<method>(`) of an `Engine` method another file defines. Its
/// tests, its fake and `mod.rs` (the `Engine` type every file extends) are left out.
fn engine_graph() -> std::collections::BTreeSet<(String, String)> {
    let dir = root().join("crates/daemon/src/engine");
    let mut files = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.extension().is_none_or(|e| e != "rs")
            || stem == "mod"
            || stem == "fake"
            || stem.ends_with("tests")
        {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        files.push((stem, text));
    }
    graph_of(&files)
}

/// The dependencies among `files` (file stem, text), as [`engine_graph`] reads them.
fn graph_of(sources: &[(String, String)]) -> std::collections::BTreeSet<(String, String)> {
    let mut files = Vec::new();
    for (stem, text) in sources {
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        // A method chained onto the next line (`self\n    .name(`) joins its receiver.
        let mut joined = String::new();
        for line in code.lines() {
            if line.trim_start().starts_with('.') {
                joined.push_str(line.trim_start());
            } else {
                joined.push('\n');
                joined.push_str(line);
            }
        }
        files.push((stem.clone(), joined));
    }
    let mut methods = std::collections::BTreeMap::new();
    for (stem, code) in &files {
        let mut inside = false;
        for line in code.lines() {
            if line.starts_with("impl Engine {") {
                inside = true;
            } else if inside && line.starts_with('}') {
                inside = false;
            } else if inside && line.starts_with("    ") && !line.starts_with("     ") {
                let words: Vec<&str> = line.split_whitespace().collect();
                if let Some(i) = words.iter().position(|w| *w == "fn") {
                    let name = words[i + 1].split(['(', '<']).next().unwrap_or_default();
                    methods.insert(name.to_owned(), stem.clone());
                }
            }
        }
    }
    let stems: Vec<&String> = files.iter().map(|(s, _)| s).collect();
    let mut edges = std::collections::BTreeSet::new();
    for (stem, code) in &files {
        for (method, owner) in &methods {
            let called = [format!("self.{method}("), format!("engine.{method}(")]
                .iter()
                .any(|c| code.contains(c.as_str()));
            if owner != stem && called {
                edges.insert((stem.clone(), owner.clone()));
            }
        }
        for other in &stems {
            let path = format!("super::{other}");
            // `super::pr` is not `super::promote`: the name must end there.
            let named = code.match_indices(&path).any(|(i, _)| {
                code[i + path.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
            });
            if *other != stem && named {
                edges.insert((stem.clone(), (*other).clone()));
            }
        }
    }
    edges
}

/// Who may depend on whom among the engine's files: lower layers first (what a cycle reads
/// and keeps, PR plumbing, records), the promotion pipeline above them, the steps on top.
const ENGINE_EDGES: &[(&str, &str)] = &[
    ("commands", "reads"),
    ("commands", "rules"),
    ("context", "watch"),
    ("dashboard", "provenance"),
    ("deploy", "evidence"),
    ("deploy", "hold"),
    ("deploy", "records"),
    ("deploy", "watch"),
    ("environment", "context"),
    ("environment", "hold"),
    ("environment", "merged"),
    ("environment", "pipeline"),
    ("environment", "promote"),
    ("environment", "reads"),
    ("environment", "signature"),
    ("group", "context"),
    ("group", "evidence"),
    ("group", "group_pr"),
    ("group", "landed"),
    ("group", "merged"),
    ("group", "watch"),
    ("group_pr", "commands"),
    ("group_pr", "context"),
    ("group_pr", "evidence"),
    ("group_pr", "landed"),
    ("group_pr", "pipeline"),
    ("group_pr", "pr"),
    ("group_pr", "promote"),
    ("group_pr", "verified"),
    ("group_pr", "watch"),
    ("hold", "commands"),
    ("hold", "context"),
    ("hold", "provenance"),
    ("hold", "records"),
    ("hold", "watch"),
    ("landed", "deploy"),
    ("landed", "hold"),
    ("landed", "provenance"),
    ("landed", "rollback"),
    ("landed", "verified"),
    ("landed", "watch"),
    ("merged", "commands"),
    ("merged", "evidence"),
    ("merged", "hold"),
    ("merged", "landed"),
    ("merged", "records"),
    ("merged", "rollback"),
    ("merged", "watch"),
    ("pipeline", "commands"),
    ("pipeline", "pr"),
    ("pipeline", "provenance"),
    ("pipeline", "queue"),
    ("pipeline", "rules"),
    ("pipeline", "watch"),
    ("promote", "commands"),
    ("promote", "context"),
    ("promote", "deploy"),
    ("promote", "evidence"),
    ("promote", "failure"),
    ("promote", "landed"),
    ("promote", "pipeline"),
    ("promote", "pr"),
    ("promote", "verified"),
    ("promote", "watch"),
    ("provenance", "commands"),
    ("provenance", "evidence"),
    ("provenance", "pr"),
    ("provenance", "reads"),
    ("reads", "failure"),
    ("queue", "rules"),
    ("queue", "watch"),
    ("records", "provenance"),
    ("records", "watch"),
    ("rescan", "provenance"),
    ("rescan", "reads"),
    ("rescan", "signature"),
    ("rollback", "evidence"),
    ("rollback", "failure"),
    ("rollback", "hold"),
    ("rollback", "pr"),
    ("rollback", "provenance"),
    ("rollback", "reads"),
    ("rollback", "verified"),
    ("rollback", "watch"),
    ("verified", "deploy"),
    ("verified", "records"),
    ("verified", "watch"),
];

#[test]
fn the_engine_file_graph_has_no_cycle_and_only_the_allowed_edges() {
    let graph = engine_graph();
    let allowed: std::collections::BTreeSet<(String, String)> = ENGINE_EDGES
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    let new: Vec<String> = graph
        .difference(&allowed)
        .map(|(a, b)| format!("{a} -> {b}"))
        .collect();
    let gone: Vec<String> = allowed
        .difference(&graph)
        .map(|(a, b)| format!("{a} -> {b}"))
        .collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "the engine's file graph changed: new edges {new:?} (allowed only if they add no cycle: add them to ENGINE_EDGES), edges gone {gone:?} (remove them from ENGINE_EDGES)"
    );
    // Kahn's algorithm: every file is removed once nothing left depends on it.
    let mut left = graph.clone();
    let mut nodes: std::collections::BTreeSet<String> = graph
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    while let Some(leaf) = nodes
        .iter()
        .find(|n| !left.iter().any(|(a, _)| a == *n))
        .cloned()
    {
        nodes.remove(&leaf);
        left.retain(|(_, b)| *b != leaf);
    }
    assert!(
        nodes.is_empty(),
        "the engine's files depend on each other in a cycle among {nodes:?}: {left:?}"
    );
}

#[test]
fn the_engine_graph_sees_a_call_chained_onto_the_next_line_and_a_use() {
    let files = [
        ("a", "impl Engine {\n    pub(super) async fn one(&self) {}\n}\n"),
        ("b", "impl Engine {\n    async fn two(&self) {\n        self\n            .one()\n            .await;\n    }\n}\n"),
        ("c", "use super::a::Thing;\nuse super::ab::Other;\n"),
        ("ab", "fn ab() {}\n"),
        ("d", "fn d() {}\n#[cfg(test)]\nmod tests {\n    fn t() { engine.one(); }\n}\n"),
    ]
    .map(|(s, t)| (s.to_owned(), t.to_owned()));
    let graph = graph_of(&files);
    let want: std::collections::BTreeSet<(String, String)> = [("b", "a"), ("c", "a"), ("c", "ab")]
        .iter()
        .map(|(x, y)| ((*x).to_owned(), (*y).to_owned()))
        .collect();
    assert_eq!(graph, want, "a test module's calls are no dependency");
}
