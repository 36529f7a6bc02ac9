//! A cosign signature manifest and a signed payload, as anyone who can push to the
//! repository may write them: reading them never panics, at most `MAX_LAYERS` layers are
//! taken, each a simple-signing layer with a signature, and a payload names a digest only
//! under cosign's type; a refusal's text is bounded and has no control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::signature::{MAX_LAYERS, MAX_PAYLOAD, layers, signed_digest};

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
});
