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
//! A group PR keeps its members in a hidden block of its body (`GroupState`): each one's
//! image, what it replaces, and its outcome once verified, so that verification, bad marks
//! and rollbacks stay per service while the PR and its labels are shared. The engine's
//! `group` step acts on it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::block;
use super::image::{Digest, ImageRef, Tag};
use super::promotion::PromotionState;

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

/// Whether `name` may name a group (and its branch).
fn valid_name(name: &str) -> bool {
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    !name.is_empty() && name.len() <= 63 && name.chars().all(valid) && !name.starts_with('-')
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

/// Where a group PR's body keeps its members.
pub const GROUP_MARKER: &str = "<!-- tugboat:group ";

/// How a member turned out once its application was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Synced and Healthy: the environment runs it.
    Healthy,
    /// It did not become Healthy and its environment leaves the rollback to a person
    /// (`rollback: manual`): it is deployed, and stays tugboat's record there.
    Unhealthy,
    /// It failed, or an approver said `/rollback`: its digest is never promoted again until
    /// an approver says `/unblock`.
    Bad,
    /// A later promotion of the service replaced it.
    Superseded,
}

/// One service riding in a group PR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub service: String,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
    /// The reference the environment deployed before (what its rollback restores).
    pub from: Option<ImageRef>,
    /// `None` until verified.
    pub outcome: Option<Outcome>,
    /// Whether its application synced by itself when it was verified (`None`: not seen).
    pub auto_sync: Option<bool>,
}

impl Member {
    /// Whether its environment runs it as tugboat's record (Healthy, or left to a person).
    pub fn deployed(&self) -> bool {
        matches!(self.outcome, Some(Outcome::Healthy | Outcome::Unhealthy))
    }
}

/// A group PR's state: the group, its environment, its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    pub group: String,
    pub environment: String,
    /// Comment commands up to this id have been answered.
    pub answered_through: u64,
    pub members: Vec<Member>,
}

/// Why a group PR's block was refused: the field (`members[2].digest`) and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the body has no tugboat group block")]
    Missing,
    #[error("the tugboat group block is not the JSON tugboat writes: {0}")]
    Json(String),
    #[error("the tugboat group block's {field} '{value}' is invalid: {reason}")]
    Field {
        field: String,
        value: String,
        reason: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    group: String,
    environment: String,
    #[serde(default)]
    answered_through: u64,
    members: Vec<WireMember>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMember {
    service: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    tag: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auto_sync: Option<bool>,
}

fn refused(field: String, value: &str, reason: impl ToString) -> GroupError {
    GroupError::Field {
        field,
        value: value.chars().take(80).collect(),
        reason: reason.to_string(),
    }
}

fn optional<T, E: std::fmt::Display>(
    field: String,
    value: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, GroupError> {
    block::optional(value, parse).map_err(|(value, reason)| GroupError::Field {
        field,
        value,
        reason,
    })
}

impl Member {
    fn parse(i: usize, w: WireMember) -> Result<Self, GroupError> {
        let at = |f: &str| format!("members[{i}].{f}");
        if w.service.is_empty() {
            return Err(refused(at("service"), "", "a member names its service"));
        }
        let member = Self {
            tag: optional(at("tag"), &w.tag, Tag::parse)?,
            digest: optional(at("digest"), &w.digest, Digest::parse)?,
            from: match &w.from {
                Some(f) => optional(at("from"), f, ImageRef::parse)?,
                None => None,
            },
            service: w.service,
            outcome: w.outcome,
            auto_sync: w.auto_sync,
        };
        if member.tag.is_none() && member.digest.is_none() {
            let why = "a member names a tag or a digest";
            return Err(refused(at("tag"), "", why));
        }
        Ok(member)
    }

    fn wire(&self) -> WireMember {
        WireMember {
            service: self.service.clone(),
            tag: block::text(self.tag.as_ref()),
            digest: block::text(self.digest.as_ref()),
            from: self.from.as_ref().map(ToString::to_string),
            outcome: self.outcome,
            auto_sync: self.auto_sync,
        }
    }
}

impl GroupState {
    /// The group block of `body`, parsed into validated values.
    pub fn parse(body: &str) -> Result<Self, GroupError> {
        let json = block::raw(body, GROUP_MARKER).ok_or(GroupError::Missing)?;
        let w: Wire = serde_json::from_str(json).map_err(|e| GroupError::Json(e.to_string()))?;
        if !valid_name(&w.group) {
            return Err(refused("group".into(), &w.group, "not a group name"));
        }
        if w.members.is_empty() || w.members.len() > MAX_MEMBERS {
            let n = w.members.len().to_string();
            let why = format!("a group PR carries 1 to {MAX_MEMBERS} members");
            return Err(refused("members".into(), &n, why));
        }
        let mut members: Vec<Member> = Vec::with_capacity(w.members.len());
        for (i, m) in w.members.into_iter().enumerate() {
            let m = Member::parse(i, m)?;
            if members.iter().any(|o| o.service == m.service) {
                let field = format!("members[{i}].service");
                return Err(refused(field, &m.service, "listed twice"));
            }
            members.push(m);
        }
        Ok(Self {
            group: w.group,
            environment: w.environment,
            answered_through: w.answered_through,
            members,
        })
    }

    /// `body` with this state in its block.
    pub fn write_into(&self, body: &str) -> String {
        let wire = Wire {
            group: self.group.clone(),
            environment: self.environment.clone(),
            answered_through: self.answered_through,
            members: self.members.iter().map(Member::wire).collect(),
        };
        block::write(body, GROUP_MARKER, &wire)
    }

    /// A member as a single promotion's state, for what stays per service: its
    /// verification, its bad mark, its rollback.
    pub fn promotion(&self, member: &Member) -> PromotionState {
        PromotionState {
            service: member.service.clone(),
            environment: self.environment.clone(),
            tag: member.tag.clone(),
            digest: member.digest.clone(),
            from: member.from.clone(),
            answered_through: self.answered_through,
            rollback_of: None,
            auto_sync: member.auto_sync,
        }
    }

    /// The members with `outcome` (`None`: not verified yet).
    pub fn with_outcome(&self, outcome: Option<Outcome>) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(move |m| m.outcome == outcome)
    }

    /// Record outcomes by service; a service that is not a member is ignored.
    pub fn record(&mut self, outcomes: &[(&str, Outcome)]) {
        for m in &mut self.members {
            if let Some((_, o)) = outcomes.iter().find(|(s, _)| *s == m.service) {
                m.outcome = Some(*o);
            }
        }
    }

    /// Which of tugboat's labels the PR carries for its members, as (verifying, deployed,
    /// bad): a member not yet verified keeps `verifying`, any deployed one (Healthy, or
    /// Unhealthy and left to a person) `deployed`, any bad one `bad`.
    pub fn labels(&self) -> (bool, bool, bool) {
        let any = |o: Option<Outcome>| self.members.iter().any(|m| m.outcome == o);
        (
            any(None),
            self.members.iter().any(Member::deployed),
            any(Some(Outcome::Bad)),
        )
    }

    /// The member for `service`, if it rides here.
    pub fn member(&self, service: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.service == service)
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

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn block(members: &str) -> String {
        format!(
            "Promote 2 services to dev\n\n<!-- tugboat:group {{\"group\":\"base-image\",\"environment\":\"dev\",\"answered_through\":7,\"members\":[{members}]}} -->\n"
        )
    }

    #[test]
    fn a_group_block_reads_back_as_written_and_each_member_is_its_own_promotion() {
        let members = format!(
            "{{\"service\":\"api\",\"tag\":\"1.1.0\",\"digest\":\"{}\",\"from\":\"reg.example.com/api:1.0.0\"}},{{\"service\":\"web\",\"digest\":\"{}\",\"outcome\":\"healthy\"}}",
            digest('a'),
            digest('b')
        );
        let body = block(&members);
        let state = GroupState::parse(&body).unwrap();
        assert_eq!(
            (state.group.as_str(), state.answered_through),
            ("base-image", 7)
        );
        assert_eq!(state.members.len(), 2);
        assert_eq!(state.write_into(&body), body, "written back byte for byte");
        let api = state.promotion(&state.members[0]);
        assert_eq!(
            (
                api.service.as_str(),
                api.environment.as_str(),
                api.tag_text()
            ),
            ("api", "dev", "1.1.0")
        );
        assert_eq!(api.from.unwrap().to_string(), "reg.example.com/api:1.0.0");
        assert_eq!(state.labels(), (true, true, false));
        let waiting: Vec<&str> = state
            .with_outcome(None)
            .map(|m| m.service.as_str())
            .collect();
        assert_eq!(waiting, ["api"]);
    }

    #[test]
    fn outcomes_are_recorded_per_member_and_the_labels_follow_them() {
        let members = r#"{"service":"api","tag":"1.1.0"},{"service":"web","tag":"2.0.0"},{"service":"db","tag":"3.0.0"}"#;
        let mut state = GroupState::parse(&block(members)).unwrap();
        assert_eq!(state.labels(), (true, false, false), "all verifying");
        state.record(&[
            ("api", Outcome::Healthy),
            ("web", Outcome::Bad),
            ("nobody", Outcome::Bad),
        ]);
        assert_eq!(state.labels(), (true, true, true), "db still verifying");
        state.record(&[("db", Outcome::Healthy)]);
        assert_eq!(state.labels(), (false, true, true));
        state.record(&[("api", Outcome::Superseded), ("db", Outcome::Superseded)]);
        assert_eq!(
            state.labels(),
            (false, false, true),
            "only web's bad mark is left"
        );
        let again = GroupState::parse(&state.write_into("")).unwrap();
        assert_eq!(again, state);
    }

    #[test]
    fn a_group_block_edited_into_something_else_is_refused_naming_the_field_and_value() {
        let ok = "{\"service\":\"api\",\"tag\":\"1.1.0\"}";
        for (members, error) in [
            (
                "{\"service\":\"api\",\"tag\":\"not a tag!\"}",
                "members[0].tag 'not a tag!' is invalid",
            ),
            (
                &format!("{ok},{{\"service\":\"web\",\"digest\":\"sha256:zz\"}}"),
                "members[1].digest 'sha256:zz'",
            ),
            (
                &format!("{ok},{ok}"),
                "members[1].service 'api' is invalid: listed twice",
            ),
            (
                "{\"service\":\"api\"}",
                "members[0].tag '' is invalid: a member names a tag or a digest",
            ),
            (
                "{\"service\":\"\",\"tag\":\"1.0.0\"}",
                "members[0].service ''",
            ),
            ("", "members '0' is invalid"),
            (
                "{\"service\":\"api\",\"tag\":\"1.1.0\",\"outcome\":\"great\"}",
                "not the JSON tugboat writes",
            ),
            (
                "{\"service\":\"api\",\"tag\":\"1.1.0\",\"extra\":1}",
                "unknown field `extra`",
            ),
        ] {
            let refused = GroupState::parse(&block(members)).unwrap_err().to_string();
            assert!(refused.contains(error), "{members}: {refused}");
        }
        let body = block(ok).replace("base-image", "Base Image");
        assert!(
            GroupState::parse(&body)
                .unwrap_err()
                .to_string()
                .contains("group 'Base Image'")
        );
        assert_eq!(GroupState::parse("no block"), Err(GroupError::Missing));
    }
}
