//! Arbitrary bytes as a manifest: locating references never panics; where a reference is
//! found, bumping it changes nothing outside its own lines and bumping back restores the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::image::Tag;
use tugboat_core::manifest::{locate, plain_is_string, set_image};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(refs) = locate(text) else { return };
    let Some(r) = refs.iter().find(|r| r.tag.is_some() && r.digest.is_none()) else {
        return;
    };
    let Ok(new) = Tag::parse("fuzz-9.9.9") else {
        return;
    };
    let Ok(edited) = set_image(text, &r.repository, &new, None) else {
        return;
    };
    // Only the lines of a change differ (a kustomize entry may gain one `newTag:` line).
    let before: Vec<&str> = text.split('\n').collect();
    let after: Vec<&str> = edited.text.split('\n').collect();
    assert!(after.len() >= before.len() && after.len() <= before.len() + edited.changes.len());
    if after.len() == before.len() {
        let changed: Vec<usize> = edited.changes.iter().map(|c| c.line).collect();
        for (i, (a, b)) in before.iter().zip(&after).enumerate() {
            if a != b {
                assert!(changed.contains(&(i + 1)), "line {} changed: {a:?} -> {b:?}", i + 1);
            }
        }
        // And back: every reference of the repository had the same old tag, so restoring it
        // restores every byte, unless the old tag was a plain scalar YAML reads as another
        // type (`newTag: FALSE`): written back as a tag, it is rightly quoted.
        let mine: Vec<_> = refs.iter().filter(|x| x.is_for(&r.repository)).collect();
        if let Some(old) = &r.tag
            && plain_is_string(old.as_str())
            && mine.iter().all(|x| x.tag.as_ref() == Some(old) && x.digest.is_none())
            && let Ok(back) = set_image(&edited.text, &r.repository, old, None)
        {
            assert_eq!(back.text, text);
        }
    }
});
