//! Arbitrary valid tags written into each kind of manifest tugboat edits: the edit lands, the
//! file reads back with the new tag, and bumping back restores every byte (but the quotes a
//! number- or boolean-like tag needed in a plain scalar).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::image::{Repository, Tag};
use tugboat_core::manifest::{locate, plain_is_string, set_image};

const REPO: &str = "123456789012.dkr.ecr.eu-north-1.amazonaws.com/api";

/// One file of each shape, every one at tag `1.0.0`.
const FILES: [&str; 6] = [
    // kustomization images
    "images:\n- name: 123456789012.dkr.ecr.eu-north-1.amazonaws.com/api\n  newTag: 1.0.0 # pinned\n",
    // a raw Deployment, quoted
    "spec:\n  template:\n    spec:\n      containers:\n      - name: api\n        image: \"123456789012.dkr.ecr.eu-north-1.amazonaws.com/api:1.0.0\"\n",
    // Helm values, repository + tag, single quotes, CRLF
    "image:\r\n  repository: 123456789012.dkr.ecr.eu-north-1.amazonaws.com/api\r\n  tag: '1.0.0'\r\n",
    // a flow mapping
    "image: {repository: 123456789012.dkr.ecr.eu-north-1.amazonaws.com/api, tag: 1.0.0}\n",
    // two documents, an anchor used twice
    "---\nx: &t 1.0.0\n---\nimage:\n  repository: 123456789012.dkr.ecr.eu-north-1.amazonaws.com/api\n  tag: 1.0.0\n",
    // an Argo CD Application with inline Helm values
    "spec:\n  source:\n    helm:\n      values: |\n        image:\n          repository: 123456789012.dkr.ecr.eu-north-1.amazonaws.com/api\n          tag: 1.0.0\n",
];

fuzz_target!(|input: (u8, &str)| {
    let (which, raw) = input;
    let Ok(tag) = Tag::parse(raw) else { return };
    let Ok(repo) = Repository::parse(REPO) else {
        return;
    };
    let Ok(old) = Tag::parse("1.0.0") else { return };
    let file = FILES[usize::from(which) % FILES.len()];
    let edited = match set_image(file, &repo, &tag, None) {
        Ok(e) => e,
        Err(e) => panic!("a valid tag {tag} was refused in file {which}: {e}"),
    };
    let found = locate(&edited.text).expect("the edited file still parses");
    assert!(
        found
            .iter()
            .filter(|r| r.is_for(&repo))
            .all(|r| r.tag.as_ref() == Some(&tag)),
        "tag {tag} did not read back from {:?}",
        edited.text
    );
    let back = set_image(&edited.text, &repo, &old, None).expect("bumping back");
    if plain_is_string(tag.as_str()) {
        assert_eq!(back.text, file, "bumping {tag} back did not restore the bytes");
    } else {
        // A tag YAML would read as another type (`1e3`, `yes`) had to be quoted where it was
        // plain; the quotes stay when bumping back, and nothing else differs.
        let unquoted = |t: &str| t.replace("\"1.0.0\"", "1.0.0");
        assert_eq!(unquoted(&back.text), unquoted(file), "bumping {tag} back");
    }
});
