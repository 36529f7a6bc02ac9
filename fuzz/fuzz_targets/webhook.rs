//! A signed webhook delivery's body and event name, as GitHub (or anyone holding the secret)
//! may send them: classifying never panics, and only a command or a tugboat PR wakes a cycle.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::webhook::{Meaning, classify};

const EVENTS: [&str; 8] = [
    "issue_comment",
    "pull_request",
    "pull_request_review",
    "check_run",
    "check_suite",
    "ping",
    "push",
    "",
];

fuzz_target!(|input: (u8, &[u8])| {
    let (which, body) = input;
    let event = EVENTS[usize::from(which) % EVENTS.len()];
    if let Ok(Meaning::Wake { why, .. }) = classify(event, body) {
        assert!(
            why.starts_with("a command on #") || why.starts_with(event),
            "wake reason {why:?} for event {event:?}"
        );
    }
});
