//! Grouped promotions' formation rule: which services ride in a group's PR, and when it opens.
//!
//! A group (`group: {name, window, max}` of an environment) puts the services whose
//! candidates become ready within `window` of the first one into one PR, at most `max` of
//! them. The rule is stateless: it reads when each candidate became ready (for the first
//! environment its push, for the next ones the previous environment's deployment plus the
//! soak) and the members of the group's open PR, so a restart or a second replica forms the
//! same group from the same facts. A service that is not ready (held, its digest marked bad,
//! refused by the gate) is simply not among `ready`: it leaves the group, never blocking the
//! others.
//!
//! Issue 22 builds grouped promotions on it; the engine does not use it yet.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The most members one group PR may carry: each brings its evidence, and a PR body holds at
/// most 65,536 characters.
pub const MAX_MEMBERS: usize = 100;
/// The longest gathering window: a promotion waits for its group no longer than this.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// An environment's group rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Part of the group's branch name: lowercase letters, digits and `-`.
    pub name: String,
    /// How long after the first ready member the group waits for more.
    pub window: Duration,
    /// The most members one PR carries; the rest ride in the next one.
    pub max: usize,
}

impl Rule {
    /// A rule, checked: the error names the field and the value.
    pub fn new(name: &str, window: Duration, max: usize) -> Result<Self, String> {
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if name.is_empty() || name.len() > 63 || !name.chars().all(valid) || name.starts_with('-') {
            return Err(format!(
                "group.name: '{name}' must be 1 to 63 lowercase letters, digits or '-', not starting with '-' (it names a branch)"
            ));
        }
        if window > MAX_WINDOW {
            return Err(format!(
                "group.window: {}s is longer than the most a promotion may wait for its group ({}s)",
                window.as_secs(),
                MAX_WINDOW.as_secs()
            ));
        }
        if !(2..=MAX_MEMBERS).contains(&max) {
            return Err(format!(
                "group.max: {max} is not between 2 and {MAX_MEMBERS}"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            window,
            max,
        })
    }
}

/// A service whose candidate may ride: since when it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub service: String,
    pub since: DateTime<Utc>,
}

/// What the group does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formation {
    /// No service is ready.
    Empty,
    /// The window is open: these wait for more until `closes`.
    Gathering {
        members: Vec<String>,
        closes: DateTime<Utc>,
    },
    /// Open the group's PR with `members`, or bring the open one to them; `next` wait for the
    /// PR after it (over `max`).
    Ride {
        members: Vec<String>,
        next: Vec<String>,
    },
}

/// The group's formation at `now`, from the ready services and the members of its open PR
/// (`riding`, empty when none is open). The members of an open PR that are still ready keep
/// their seats, first; then the others by when they became ready (then by name, so every
/// replica orders them alike). A service listed twice counts once, at its first place.
pub fn form(rule: &Rule, ready: &[Ready], riding: &[String], now: DateTime<Utc>) -> Formation {
    if ready.is_empty() {
        return Formation::Empty;
    }
    let mut order: Vec<&Ready> = ready.iter().collect();
    order.sort_by(|a, b| {
        let seated = |r: &Ready| !riding.contains(&r.service);
        (seated(a), a.since, &a.service).cmp(&(seated(b), b.since, &b.service))
    });
    let mut seen = std::collections::BTreeSet::new();
    order.retain(|r| seen.insert(r.service.as_str()));
    let names: Vec<String> = order.iter().map(|r| r.service.clone()).collect();
    let first = order.iter().map(|r| r.since).min().unwrap_or(now);
    let closes = first + chrono::Duration::from_std(rule.window).unwrap_or_default();
    // With the group's PR open, a newly ready service joins it at once: no second window.
    if riding.is_empty() && now < closes && names.len() < rule.max {
        return Formation::Gathering {
            members: names,
            closes,
        };
    }
    let cut = names.len().min(rule.max);
    Formation::Ride {
        members: names[..cut].to_vec(),
        next: names[cut..].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        format!("2026-12-02T{s}Z").parse().unwrap()
    }

    fn ready(service: &str, since: &str) -> Ready {
        Ready {
            service: service.into(),
            since: at(since),
        }
    }

    fn rule(max: usize) -> Rule {
        Rule::new("base-image", Duration::from_secs(120), max).unwrap()
    }

    #[test]
    fn services_ready_within_the_window_wait_for_it_to_close_then_ride_together() {
        let fleet = [ready("b", "10:00:30"), ready("a", "10:00:00")];
        assert_eq!(
            form(&rule(50), &fleet, &[], at("10:01:00")),
            Formation::Gathering {
                members: vec!["a".into(), "b".into()],
                closes: at("10:02:00"),
            }
        );
        assert_eq!(
            form(&rule(50), &fleet, &[], at("10:02:00")),
            Formation::Ride {
                members: vec!["a".into(), "b".into()],
                next: vec![],
            }
        );
    }

    #[test]
    fn a_full_group_rides_at_once_and_the_rest_wait_for_the_next_pr() {
        let fleet = [
            ready("c", "10:00:02"),
            ready("a", "10:00:00"),
            ready("b", "10:00:01"),
        ];
        assert_eq!(
            form(&rule(2), &fleet, &[], at("10:00:03")),
            Formation::Ride {
                members: vec!["a".into(), "b".into()],
                next: vec!["c".into()],
            }
        );
    }

    #[test]
    fn a_held_member_leaves_the_open_pr_and_a_newly_ready_one_joins_it_without_a_new_window() {
        // `b` was riding and is held now: it is not ready, so it leaves; `d` joins at once.
        let riding = ["a".to_owned(), "b".to_owned()];
        let fleet = [ready("a", "10:00:00"), ready("d", "10:05:00")];
        assert_eq!(
            form(&rule(50), &fleet, &riding, at("10:05:01")),
            Formation::Ride {
                members: vec!["a".into(), "d".into()],
                next: vec![],
            }
        );
        // Every rider left: a newcomer still joins the open PR at once; none left, it is empty.
        let fleet = [ready("d", "10:05:00")];
        assert_eq!(
            form(&rule(50), &fleet, &riding, at("10:05:01")),
            Formation::Ride {
                members: vec!["d".into()],
                next: vec![],
            }
        );
        assert_eq!(
            form(&rule(50), &[], &riding, at("10:05:01")),
            Formation::Empty
        );
    }

    #[test]
    fn the_riding_members_keep_their_seats_before_earlier_newcomers() {
        let riding = ["z".to_owned()];
        let fleet = [ready("a", "09:00:00"), ready("z", "10:00:00")];
        assert_eq!(
            form(&rule(2), &fleet, &riding, at("10:00:01")),
            Formation::Ride {
                members: vec!["z".into(), "a".into()],
                next: vec![],
            }
        );
        let fleet = [
            ready("a", "09:00:00"),
            ready("b", "09:00:00"),
            ready("z", "10:00:00"),
        ];
        assert_eq!(
            form(&rule(2), &fleet, &riding, at("10:00:01")),
            Formation::Ride {
                members: vec!["z".into(), "a".into()],
                next: vec!["b".into()],
            }
        );
    }

    #[test]
    fn every_replica_forms_the_same_group_whatever_order_it_read_the_services_in() {
        let mut fleet = vec![
            ready("c", "10:00:00"),
            ready("a", "10:00:00"),
            ready("b", "10:00:00"),
            ready("a", "10:00:00"),
        ];
        let one = form(&rule(2), &fleet, &[], at("10:03:00"));
        fleet.reverse();
        assert_eq!(form(&rule(2), &fleet, &[], at("10:03:00")), one);
        assert_eq!(
            one,
            Formation::Ride {
                members: vec!["a".into(), "b".into()],
                next: vec!["c".into()],
            }
        );
        assert_eq!(form(&rule(2), &[], &[], at("10:03:00")), Formation::Empty);
    }

    #[test]
    fn a_rule_names_the_field_and_the_value_it_refuses() {
        let two_min = Duration::from_secs(120);
        for (name, window, max, error) in [
            (
                "Base Image",
                two_min,
                50,
                "group.name: 'Base Image' must be",
            ),
            ("-x", two_min, 50, "group.name: '-x'"),
            ("", two_min, 50, "group.name: ''"),
            (
                "base",
                Duration::from_secs(7200),
                50,
                "group.window: 7200s is longer",
            ),
            ("base", two_min, 1, "group.max: 1 is not between 2 and 100"),
            ("base", two_min, 101, "group.max: 101"),
        ] {
            let refused = Rule::new(name, window, max).unwrap_err();
            assert!(refused.starts_with(error), "{refused}");
        }
        assert_eq!(rule(50).name, "base-image");
    }
}
