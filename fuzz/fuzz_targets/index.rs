//! An image index as BatchGetImage returns it, as anyone who can push to the repository may
//! write it: reading it never panics, a refusal's text is bounded and printable, and what it
//! accepts is at least one real platform image, none an attestation or `unknown`, each
//! platform once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::index::{MAX_INDEX_ENTRIES, platforms};

fuzz_target!(|body: &str| {
    match platforms(body) {
        Ok(images) => {
            assert!(!images.is_empty() && images.len() <= MAX_INDEX_ENTRIES);
            for (i, p) in images.iter().enumerate() {
                assert!(p.platform.os != "unknown" && p.platform.architecture != "unknown");
                assert!(images[..i].iter().all(|q| q.platform != p.platform));
            }
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.len() < 4096, "a refusal of {} bytes", text.len());
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    }
});
