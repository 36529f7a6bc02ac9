//! A PR comment's text: parsing it never panics, and a command is only ever read from a line
//! that starts with `/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::chatops::{Command, parse};

fuzz_target!(|body: &str| {
    if let Some(cmd) = parse(body) {
        let first = body.lines().map(str::trim).find(|l| !l.is_empty());
        assert!(first.is_some_and(|l| l.starts_with('/')), "{cmd:?} from {body:?}");
        if let Command::Unknown(word) = cmd {
            assert!(word.starts_with('/'));
        }
    }
});
