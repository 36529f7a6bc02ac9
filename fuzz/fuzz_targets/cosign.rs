//! A cosign signature manifest, a signed payload and a keyless signature's Rekor bundle, as
//! anyone who can push to the repository may write them: reading them never panics, at most
//! `MAX_LAYERS` layers are taken, a payload names a digest only under cosign's type, and a
//! Rekor entry is read only with all its parts; a refusal's text is bounded and has no
//! control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::signature::{
    MAX_LAYERS, MAX_PAYLOAD, layers, rekor_entry, signed_digest,
};

fn bounded(e: &str) {
    assert!(e.len() < 4096, "a refusal of {} bytes", e.len());
    assert!(!e.chars().any(char::is_control), "{e:?}");
}

fuzz_target!(|data: &[u8]| {
    match layers(data) {
        Ok(found) => assert!(found.len() <= MAX_LAYERS),
        Err(e) => bounded(&e),
    }
    match signed_digest(data) {
        Ok(_) => {
            assert!(data.len() <= MAX_PAYLOAD);
            let v: serde_json::Value = serde_json::from_slice(data).unwrap();
            assert_eq!(v["critical"]["type"], "cosign container image signature");
        }
        Err(e) => bounded(&e),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        match rekor_entry(text) {
            Ok(entry) => assert!(entry["canonicalizedBody"].is_string() && entry["inclusionPromise"].is_object()),
            Err(e) => bounded(&e),
        }
    }
});
