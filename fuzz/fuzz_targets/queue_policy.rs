//! An SQS queue's access policy, as anyone who may set the queue's attributes may write it:
//! judging it never panics, is never an error (a policy EventBridge cannot use is a
//! warning), and what it says of it is bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::doctor::{Level, queue_policy};

fuzz_target!(|policy: &str| {
    let f = queue_policy("q", Some(policy));
    assert_ne!(f.level, Level::Error);
    assert!(f.fact.len() < 4096, "a fact of {} bytes", f.fact.len());
});
