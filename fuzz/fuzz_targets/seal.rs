//! The seal on tugboat's bodies and the key text it comes from: anyone with write access can
//! edit a sealed body, and an operator writes the key text. Reading either never panics; a
//! key text that parses seals any body so that it opens to exactly that body; a sealed body
//! changed anywhere (one byte flipped, text added) no longer opens as sealed; and a body that
//! does not open keeps none of tugboat's blocks. A ledger file's seal (any text where a seal
//! belongs) verifies only for the file and bytes it was made for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::seal::{self, Keys, Opened};

const KEY: &str = "0123456789abcdef0123456789abcdef"; // pragma: allowlist secret (a test key)

fuzz_target!(|input: (&str, &str, u16)| {
    let (body, key_text, at) = input;
    // Any key text: a clear refusal or keys; never a panic, never the key in the error.
    if let Err(e) = Keys::parse(key_text) {
        let shown = e.to_string();
        for word in key_text.split_whitespace().filter(|w| w.len() >= seal::MIN_KEY_LEN) {
            assert!(!shown.contains(word), "{shown} repeats a key");
        }
    }
    let keys = Keys::parse(KEY).unwrap();
    // A ledger file's seal, as anyone can push one: only tugboat's verifies.
    let _ = keys.verifies("claims.json", body.as_bytes(), key_text);
    let tag = keys.tag("claims.json", body.as_bytes());
    assert!(keys.verifies("claims.json", body.as_bytes(), &tag));
    assert!(!keys.verifies("schedules.json", body.as_bytes(), &tag));
    // Any body read back: what is returned holds no block unless its seal opened.
    match keys.open(body, None) {
        Opened::Plain => assert!(!body.contains("<!-- tugboat:")),
        Opened::Sealed(inner) => assert!(body.starts_with(&inner)),
        Opened::Legacy => panic!("no `since`: nothing is an earlier tugboat's"),
        Opened::Forged(stripped) => {
            assert!(seal::forgotten(&stripped));
            let without = stripped.replace(seal::FORGOTTEN, "");
            assert!(!without.contains("<!-- tugboat:"), "{stripped:?} kept a block");
        }
    }
    // Any body sealed opens to itself (its own seal, if it had one, replaced).
    let sealed = keys.seal(body);
    match keys.open(&sealed, None) {
        Opened::Plain => assert!(!sealed.contains("<!-- tugboat:")),
        Opened::Sealed(inner) => {
            assert_eq!(keys.seal(&inner), sealed, "sealing is stable");
            // Flip one byte of what the seal covers: it no longer opens as sealed.
            let mut bytes = inner.into_bytes();
            if !bytes.is_empty() {
                let i = usize::from(at) % bytes.len();
                bytes[i] ^= 0x01;
                if let Ok(changed) = String::from_utf8(bytes) {
                    let tampered = format!("{changed}{}", &sealed[changed.len()..]);
                    assert!(
                        !matches!(keys.open(&tampered, None), Opened::Sealed(_)),
                        "an edit kept the seal"
                    );
                }
            }
        }
        other => panic!("tugboat's own seal did not open: {other:?}"),
    }
});
