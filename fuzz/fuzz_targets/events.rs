//! An SQS message body, as anyone allowed to send to the queue may write it: reading it never
//! panics, a refusal's text is bounded and printable, and an event it accepts names a
//! repository without an ARN and a plausible account and region.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::events::{MAX_BODY, parse};

fuzz_target!(|body: &str| {
    match parse(body) {
        Ok(e) => {
            assert!(body.len() <= MAX_BODY);
            assert!(!e.repository.is_empty() && !e.repository.starts_with("arn:"));
            assert!(!e.id.is_empty());
            assert!(e.account.len() == 12 && e.account.bytes().all(|b| b.is_ascii_digit()));
            assert!(!e.region.is_empty() && !e.region.chars().any(char::is_control));
        }
        Err(r) => {
            let text = r.to_string();
            assert!(text.len() < 4096, "a refusal of {} bytes", text.len());
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    }
});
