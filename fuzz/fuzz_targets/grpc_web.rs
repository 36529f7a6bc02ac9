//! An answer to Argo CD's `AccountService.CanI` over gRPC-Web, as Argo CD or whatever stands
//! in front of it may send it: reading it never panics, an error is bounded and printable,
//! and a value read is what the bytes hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::grpc_web::{Answer, MAX_ANSWER, can_i_answer};

fuzz_target!(|input: (Option<(u32, String)>, &[u8])| {
    let (header, body) = input;
    match can_i_answer(header, body) {
        Ok(Answer::Value(v)) => {
            assert!(body.len() <= MAX_ANSWER);
            assert!(v.len() <= body.len());
        }
        Ok(Answer::Status(code, _)) => assert_ne!(code, 0),
        Err(e) => {
            assert!(e.len() < 4096, "an error of {} bytes", e.len());
            assert!(!e.chars().any(char::is_control), "{e:?}");
        }
    }
});
