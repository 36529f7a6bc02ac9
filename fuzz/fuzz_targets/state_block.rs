//! The hidden state blocks of PR and issue bodies, which anyone with write access can edit:
//! reading never panics, and a block written into any body reads back as written, once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::block;
use tugboat_core::domain::rescan::State;

const MARKER: &str = "<!-- tugboat:state ";

fuzz_target!(|input: (&str, &str, u64)| {
    let (body, text, n) = input;
    let _ = block::read::<serde_json::Value>(body, MARKER);
    let _ = State::parse(body);
    // Round trip through an arbitrary body: the value survives any text around it, and the
    // body holds exactly one block afterwards.
    let value = serde_json::json!({"text": text, "n": n});
    if body.contains(MARKER.trim_end()) {
        return; // a body that already holds a (maybe broken) marker is rewritten in place
    }
    let written = block::write(body, MARKER, &value);
    assert_eq!(block::read::<serde_json::Value>(&written, MARKER), Some(value));
    assert_eq!(written.matches(MARKER).count(), 1);
    assert!(written.starts_with(body));
});
