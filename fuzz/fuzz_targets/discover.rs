//! `tugboat init`'s discovery over arbitrary repository files (outside input: whatever the
//! GitOps repository holds): it never panics, and what it places holds together — each
//! environment's files exist and render for its application, no file is in two environments
//! of a service, and no service is left without an environment.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::discover::{AppSource, Application, discover, renders};

fn app(name: &str, path: &str, value_files: &[&str], recurse: bool) -> Application {
    Application {
        name: name.to_owned(),
        source: AppSource::Ours {
            path: path.to_owned(),
            revision: "main".to_owned(),
            value_files: value_files.iter().map(|v| (*v).to_owned()).collect(),
            recurse,
        },
        images: vec![],
    }
}

fuzz_target!(|input: &str| {
    // Each NUL-separated part is a file, spread over a few directories the applications read.
    let dirs = ["apps/a/dev", "apps/a/prod", "apps/b", "apps/b/deep"];
    let mut files = BTreeMap::new();
    for (i, text) in input.split('\0').take(16).enumerate() {
        let dir = dirs[i % dirs.len()];
        let name = if i % 5 == 4 { "values-prod.yaml".to_owned() } else { format!("f{i}.yaml") };
        files.insert(format!("{dir}/{name}"), text.to_owned());
    }
    let apps = [
        app("a-dev", "apps/a/dev", &[], false),
        app("a-prod", "./apps/a/prod/", &[], false),
        app("b-dev", "apps/b", &[], true),
        app("b-prod", "apps/b", &["values-prod.yaml", "../b/deep/values-prod.yaml"], false),
    ];
    let found = discover(&apps, &files, "main");
    for s in &found.services {
        assert!(!s.environments.is_empty(), "{s:?}");
        let mut seen = BTreeSet::new();
        for e in &s.environments {
            let app = apps.iter().find(|a| a.name == e.application).expect("a known application");
            assert!(!e.files.is_empty());
            for f in &e.files {
                assert!(files.contains_key(f), "{f} is no file");
                assert!(renders(&app.source, f), "{f} is not rendered by {}", app.name);
                assert!(seen.insert(f.clone()), "{f} is in two environments of {}", s.name);
            }
        }
    }
    assert_eq!(found.order.len(), found.reasons.len());
});
