//! Who wrote a record. tugboat keeps its memory on the forge (labels, issues, pull requests),
//! where people with ordinary roles can write too: triage can label and open issues, write
//! can edit bodies and push branches, anyone can open a pull request from a fork. A record
//! counts only when tugboat's own identity made it; this module decides that from what the
//! forge reports of who did what.

use std::collections::{BTreeMap, BTreeSet};

/// One labelling of a pull request or issue, as its events report it (GitHub's issue events
/// `labeled` / `unlabeled`, whose `actor` is who did it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelEvent {
    pub label: String,
    /// The login that added or removed the label.
    pub actor: String,
    /// `true` for `labeled`, `false` for `unlabeled`.
    pub added: bool,
}

/// The labels tugboat applied and still stands behind: those whose latest event (in the
/// order given, oldest first) is `me` adding them. A label a person added, or removed and
/// added again, is not tugboat's even when tugboat once applied it.
pub fn applied_by(events: &[LabelEvent], is_me: impl Fn(&str) -> bool) -> BTreeSet<String> {
    let mut last: BTreeMap<&str, &LabelEvent> = BTreeMap::new();
    for e in events {
        last.insert(&e.label, e);
    }
    last.into_iter()
        .filter(|(_, e)| e.added && is_me(&e.actor))
        .map(|(label, _)| label.to_owned())
        .collect()
}

/// The labels whose latest event is a removal, by anyone: a listing that still shows one was
/// read before it was removed (the listing and the events are two reads, and a label can go
/// between them), so the label is gone rather than forged.
pub fn removed(events: &[LabelEvent]) -> BTreeSet<String> {
    let mut last: BTreeMap<&str, bool> = BTreeMap::new();
    for e in events {
        last.insert(&e.label, e.added);
    }
    last.into_iter()
        .filter(|(_, added)| !added)
        .map(|(label, _)| label.to_owned())
        .collect()
}

/// GitHub logins compare without regard to case.
pub fn same_login(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// How far ahead of this replica's clock another replica's clock may run: a ledger entry
/// stamped later than that was not written by a tugboat.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Whether a time tugboat recorded in its ledger (a claim, a scheduled run) could have been
/// recorded by now: one far in the future (a claim dated 2099) is someone else's, and would
/// otherwise stand forever.
pub fn recorded_by_now(
    at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    at <= now + chrono::Duration::seconds(MAX_CLOCK_SKEW_SECS)
}

/// A record tugboat found but did not write, by what gave it away (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Forgery {
    /// A pull request or issue opened by someone else, carrying tugboat's labels or blocks.
    Author,
    /// One of tugboat's labels added by someone else.
    Label,
    /// A pull request of tugboat's merged into another branch than the configured base.
    Base,
    /// A state block whose recorded image differs from what git history says (a rollback
    /// target is taken from history).
    Block,
    /// A head of one of tugboat's branches that tugboat did not push (no report of its own
    /// on it): replaced by tugboat's own commit, its approvals void.
    Push,
    /// A body of tugboat's whose seal is missing or does not open (`domain::seal`): someone
    /// edited it, and what tugboat recorded in it is not read.
    Seal,
    /// A file of the ledger branch whose seal does not verify: someone pushed it, and its
    /// entries are not obeyed.
    Ledger,
}

impl Forgery {
    /// The metric label (`tugboat_forged_records_total{kind}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Author => "author",
            Self::Label => "label",
            Self::Base => "base",
            Self::Block => "block",
            Self::Push => "push",
            Self::Seal => "seal",
            Self::Ledger => "ledger",
        }
    }

    /// Every kind, for metrics that export zeros.
    pub const ALL: [Self; 7] = [
        Self::Author,
        Self::Label,
        Self::Base,
        Self::Block,
        Self::Push,
        Self::Seal,
        Self::Ledger,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(label: &str, actor: &str, added: bool) -> LabelEvent {
        LabelEvent {
            label: label.into(),
            actor: actor.into(),
            added,
        }
    }

    #[test]
    fn a_label_tugboat_added_is_tugboats() {
        let events = [ev("tugboat:bad", "tugboat[bot]", true)];
        assert_eq!(
            applied_by(&events, |l| same_login(l, "tugboat[bot]")),
            BTreeSet::from(["tugboat:bad".to_owned()])
        );
    }

    #[test]
    fn a_label_a_person_added_is_not_tugboats() {
        let events = [
            ev("tugboat", "tugboat[bot]", true),
            ev("tugboat:bad", "mallory", true),
        ];
        assert_eq!(
            applied_by(&events, |l| same_login(l, "tugboat[bot]")),
            BTreeSet::from(["tugboat".to_owned()])
        );
    }

    #[test]
    fn a_label_a_person_removed_and_added_again_is_no_longer_tugboats() {
        let events = [
            ev("tugboat:deployed", "tugboat[bot]", true),
            ev("tugboat:deployed", "mallory", false),
            ev("tugboat:deployed", "mallory", true),
        ];
        assert!(applied_by(&events, |l| same_login(l, "tugboat[bot]")).is_empty());
    }

    #[test]
    fn a_label_tugboat_removed_is_gone_even_if_it_added_it_before() {
        let events = [
            ev("tugboat:verifying", "tugboat[bot]", true),
            ev("tugboat:verifying", "tugboat[bot]", false),
        ];
        assert!(applied_by(&events, |l| same_login(l, "tugboat[bot]")).is_empty());
    }

    #[test]
    fn a_label_whose_latest_event_removed_it_is_gone_whoever_added_it() {
        let events = [
            ev("tugboat:verifying", "tugboat[bot]", true),
            ev("tugboat:bad", "mallory", true),
            ev("tugboat:verifying", "tugboat[bot]", false),
            ev("tugboat:deployed", "tugboat[bot]", false),
            ev("tugboat:deployed", "mallory", true),
        ];
        assert_eq!(
            removed(&events),
            BTreeSet::from(["tugboat:verifying".to_owned()])
        );
    }

    #[test]
    fn logins_compare_without_case_as_on_github() {
        let events = [ev("tugboat", "Tugboat[bot]", true)];
        assert_eq!(
            applied_by(&events, |l| same_login(l, "tugboat[bot]")).len(),
            1
        );
    }

    #[test]
    fn a_ledger_time_beyond_the_clock_skew_was_not_recorded_by_a_tugboat() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
            .unwrap()
            .to_utc();
        assert!(recorded_by_now(now, now));
        assert!(recorded_by_now(now + chrono::Duration::minutes(4), now));
        assert!(!recorded_by_now(now + chrono::Duration::minutes(6), now));
        let forged = chrono::DateTime::parse_from_rfc3339("2099-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        assert!(!recorded_by_now(forged, now));
    }

    #[test]
    fn every_forgery_kind_has_a_distinct_metric_label() {
        let labels: BTreeSet<_> = Forgery::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(labels.len(), Forgery::ALL.len());
    }
}
