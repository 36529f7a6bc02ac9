//! What the doctor reads of EventBridge, as anyone who may put a rule or name a queue may
//! write it: a rule's event pattern and a queue's ARN. Judging them never panics, a pattern
//! that is not JSON is asked per repository (EventBridge then says what is wrong with it), and
//! what the verdict says of rule names is bounded.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::doctor::Level;
use tugboat_core::domain::doctor::rules::{
    Coverage, EventKind, EventRule, event_rules, names_repositories, queue_home,
};

fuzz_target!(|input: (&str, &str, bool)| {
    let (text, name, enabled) = input;
    if serde_json::from_str::<serde_json::Value>(text).is_err() {
        assert!(names_repositories(text));
    } else {
        let _ = names_repositories(text);
    }
    if let Some((region, account)) = queue_home(text) {
        assert!(!region.contains(':') && !account.contains(':'));
    }
    let rules = [EventRule {
        name: name.to_owned(),
        enabled,
        pattern: Some(text.to_owned()),
    }];
    let unmatched: BTreeSet<String> = text.split(',').take(100).map(str::to_owned).collect();
    let coverage = [Coverage {
        kind: EventKind::Push,
        unmatched,
    }];
    for f in event_rules("q", &rules, 100, &coverage) {
        assert_ne!(f.level, Level::Error, "events are hints: at worst a warning");
        assert!(f.fact.len() < 4096, "a fact of {} bytes", f.fact.len());
    }
});
