//! The hidden state blocks of PR and issue bodies, which anyone with write access can edit:
//! reading never panics, a promotion state (or a group PR's) that parses holds valid image
//! values and writes back to itself, a block written into any body reads back as written,
//! once, and the dashboard renders over any previous body, keeping one table row per row and
//! one block. Outside text quoted inert (`markdown::inert`) can open no comment or code
//! span, break no table cell and mention nobody, and a body quoting it above a block still
//! reads back that block.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::block;
use tugboat_core::domain::dashboard;
use tugboat_core::domain::group::{GROUP_MARKER, GroupState};
use tugboat_core::domain::markdown;
use tugboat_core::domain::promotion::PromotionState;
use tugboat_core::domain::rescan::State;

const MARKER: &str = "<!-- tugboat:state ";

fuzz_target!(|input: (&str, &str, u64)| {
    let (body, text, n) = input;
    let _ = block::read::<serde_json::Value>(body, MARKER);
    let _ = State::parse(body);
    // A dashboard edited by anyone renders anew: its rows, and a block that reads back.
    let row = dashboard::Row {
        service: text.to_owned(),
        environment: "prod".into(),
        running: Some(text.to_owned()),
        ..Default::default()
    };
    let now = chrono::DateTime::from_timestamp((n % 4_000_000_000) as i64, 0).unwrap_or_default();
    let rendered = dashboard::render(&[row], Some(body), now);
    assert!(dashboard::is_dashboard(&rendered));
    assert_eq!(dashboard::render(&[], Some(&rendered), now).matches("tugboat:dashboard").count(), 1);
    // A promotion state that parses is made of valid values, and writes back to itself.
    if let Ok(state) = PromotionState::parse(body) {
        assert!(state.tag.is_some() || state.digest.is_some());
        let again = state.write_into(body);
        assert_eq!(PromotionState::parse(&again).as_ref(), Ok(&state));
    }
    // So does a group PR's state: members with valid values, each service once (`text` is
    // also tried as the block's JSON, which the fuzzer reaches far sooner than a marker).
    for body in [body.to_owned(), format!("{GROUP_MARKER}{text} -->")] {
        if let Ok(group) = GroupState::parse(&body) {
            assert!(!group.members.is_empty() && group.members.len() <= 100);
            let again = group.write_into(&body);
            assert_eq!(GroupState::parse(&again).as_ref(), Ok(&group));
        }
    }
    // Outside text, quoted inert, carries none of Markdown's or HTML's powers.
    let quoted = markdown::inert(text);
    for power in ["<", ">", "`", "|", "\n", "\r"] {
        assert!(!quoted.contains(power), "{quoted:?} holds {power:?}");
    }
    assert_eq!(quoted.matches('@').count(), quoted.matches("@\u{200B}").count());
    // A block written below quoted text reads back, whatever the text held.
    let value = serde_json::json!({"n": n});
    let below = block::write(&format!("A commit said \"{quoted}\".\n"), MARKER, &value);
    assert_eq!(block::read::<serde_json::Value>(&below, MARKER), Some(value));
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
