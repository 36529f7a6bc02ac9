//! A PR comment's text: parsing it never panics, and a command is only ever read from a line
//! that starts with `/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::chatops::{Command, argument, parse};

fuzz_target!(|body: &str| {
    if let Some(cmd) = parse(body) {
        let first = body.lines().map(str::trim).find(|l| !l.is_empty());
        assert!(first.is_some_and(|l| l.starts_with('/')), "{cmd:?} from {body:?}");
        if let Command::Unknown(word) = cmd {
            assert!(word.starts_with('/'));
        }
    }
    // An argument comes only with a command, one word from its line.
    if let Some(arg) = argument(body) {
        assert!(parse(body).is_some() && !arg.is_empty() && !arg.contains(char::is_whitespace));
    }
});
