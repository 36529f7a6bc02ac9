//! The doctor's check of the EventBridge rules that fill the event queue: for each watched
//! repository, does an enabled rule targeting the queue match the push event ECR sends for it,
//! and the event of its finished scan (ECR's under basic scanning, Amazon Inspector's under
//! enhanced)? The samples are the events as the ECR user guide ("Amazon ECR events and
//! EventBridge") and the Inspector user guide ("Amazon Inspector initial scan notification")
//! show them; EventBridge itself (`TestEventPattern`) says whether a pattern matches one, so
//! no pattern language is guessed at here. Events are hints, so every gap is a warning: the
//! images are still found by polling, only later.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{Finding, Level, printable};

/// One rule of the default event bus that targets the queue, as `DescribeRule` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRule {
    pub name: String,
    pub enabled: bool,
    /// Its event pattern (JSON); `None` for a scheduled rule.
    pub pattern: Option<String>,
}

/// An event tugboat listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    /// `ECR Image Action`, a successful `PUSH`.
    Push,
    /// `ECR Image Scan`, `COMPLETE` (basic scanning).
    BasicScan,
    /// `Inspector2 Scan`, `INITIAL_SCAN_COMPLETE` (enhanced scanning).
    EnhancedScan,
}

impl EventKind {
    /// The events to test under the registry's scanning type (`BASIC` / `ENHANCED`; `None`:
    /// not known, so both scan events count).
    pub fn to_test(scan_type: Option<&str>) -> Vec<Self> {
        match scan_type {
            Some("ENHANCED") => vec![Self::Push, Self::EnhancedScan],
            Some(_) => vec![Self::Push, Self::BasicScan],
            None => vec![Self::Push, Self::BasicScan, Self::EnhancedScan],
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::Push => "pushes",
            Self::BasicScan | Self::EnhancedScan => "finished scans",
        }
    }
}

/// Where the queue is: the account and region of its ARN
/// (`arn:aws:sqs:REGION:ACCOUNT:NAME`), which its rules' events carry.
pub fn queue_home(arn: &str) -> Option<(String, String)> {
    let mut parts = arn.split(':');
    let (Some("arn"), Some(_), Some("sqs"), Some(region), Some(account), Some(_)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some((region.to_owned(), account.to_owned()))
}

/// The event of `kind` for an image of `repository` in `account`'s registry in `region`, with
/// every field `TestEventPattern` requires.
pub fn sample_event(kind: EventKind, repository: &str, account: &str, region: &str) -> String {
    let digest = format!("sha256:{}", "0".repeat(64));
    let repo_arn = format!("arn:aws:ecr:{region}:{account}:repository/{repository}");
    let (source, detail_type, resources, detail) = match kind {
        EventKind::Push => (
            "aws.ecr",
            "ECR Image Action",
            json!([]),
            json!({"result": "SUCCESS", "repository-name": repository, "image-digest": digest,
                   "action-type": "PUSH", "image-tag": "tugboat-doctor"}),
        ),
        EventKind::BasicScan => (
            "aws.ecr",
            "ECR Image Scan",
            json!([repo_arn]),
            json!({"scan-status": "COMPLETE", "repository-name": repository,
                   "finding-severity-counts": {}, "image-digest": digest,
                   "image-tags": ["tugboat-doctor"]}),
        ),
        // Inspector's event names the repository by its ARN in `repository-name`.
        EventKind::EnhancedScan => (
            "aws.inspector2",
            "Inspector2 Scan",
            json!([repo_arn]),
            json!({"scan-status": "INITIAL_SCAN_COMPLETE", "repository-name": repo_arn,
                   "finding-severity-counts": {"CRITICAL": 0, "HIGH": 0, "MEDIUM": 0, "TOTAL": 0},
                   "image-digest": digest, "image-tags": ["tugboat-doctor"]}),
        ),
    };
    json!({
        "version": "0",
        "id": "00000000-0000-0000-0000-000000000000",
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": "2026-01-01T00:00:00Z",
        "region": region,
        "resources": resources,
        "detail": detail,
    })
    .to_string()
}

/// Whether `pattern`'s answer can differ from one repository to another: it names a field
/// that carries the repository (`repository-name`, `resources`, Inspector's `repositoryName`)
/// anywhere, or it is not JSON (then every repository is asked, and EventBridge says what is
/// wrong with it). When it cannot differ, one repository's answer stands for all.
pub fn names_repositories(pattern: &str) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::Object(fields) => fields.iter().any(|(k, v)| {
                matches!(
                    k.as_str(),
                    "repository-name" | "resources" | "repositoryName"
                ) || walk(v)
            }),
            Value::Array(items) => items.iter().any(walk),
            _ => false,
        }
    }
    serde_json::from_str::<Value>(pattern).map_or(true, |v| walk(&v))
}

/// What was found for one kind of event: the repositories no enabled rule matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub kind: EventKind,
    pub unmatched: BTreeSet<String>,
}

/// The verdict on the queue's rules: one finding for the rules themselves, and one per kind
/// of event (pushes, finished scans) saying which watched repositories no enabled rule covers.
/// `coverage` holds one entry per tested kind; the scan kinds are merged (a repository is
/// covered when any scan event of it matched).
pub fn event_rules(
    queue: &str,
    rules: &[EventRule],
    watched: usize,
    coverage: &[Coverage],
) -> Vec<Finding> {
    let area = "events";
    let stack = "manifests/aws/events.cfn.yaml";
    let enabled: Vec<&str> = rules
        .iter()
        .filter(|r| r.enabled && r.pattern.is_some())
        .map(|r| r.name.as_str())
        .collect();
    if enabled.is_empty() {
        let fact = if rules.is_empty() {
            "no EventBridge rule of the default bus sends to this queue".to_owned()
        } else {
            format!(
                "no enabled rule with an event pattern sends to this queue ({} disabled or scheduled)",
                names(rules.iter().map(|r| r.name.as_str()))
            )
        };
        return vec![Finding::new(
            Level::Warning,
            area,
            queue,
            format!("{fact}: new tags and finished scans are found by polling only"),
            format!("deploy the rules of {stack} with this queue as their target"),
        )];
    }
    let mut out = Vec::new();
    for (what, missing) in merged(coverage) {
        let subject = format!("{queue} ({what})");
        out.push(if missing.is_empty() {
            Finding::ok(
                area,
                subject,
                format!(
                    "the rules {} send the {what} of all {watched} watched repositories",
                    names(enabled.iter().copied())
                ),
            )
        } else {
            Finding::new(
                Level::Warning,
                area,
                subject,
                format!(
                    "no enabled rule sends the {what} of {} of {watched} watched repositories ({}): they are found by polling only",
                    missing.len(),
                    names(missing.iter().map(String::as_str))
                ),
                format!(
                    "widen a rule's pattern to these repositories, or use the patterns of {stack} (they match every repository)"
                ),
            )
        });
    }
    out
}

/// The coverage by what people call it: pushes, and finished scans (a repository counts as
/// covered when any scan kind matched it).
fn merged(coverage: &[Coverage]) -> Vec<(&'static str, BTreeSet<String>)> {
    let mut push: Option<BTreeSet<String>> = None;
    let mut scan: Option<BTreeSet<String>> = None;
    for c in coverage {
        let slot = if c.kind == EventKind::Push {
            &mut push
        } else {
            &mut scan
        };
        *slot = Some(match slot.take() {
            None => c.unmatched.clone(),
            Some(prev) => prev.intersection(&c.unmatched).cloned().collect(),
        });
    }
    [(EventKind::Push, push), (EventKind::BasicScan, scan)]
        .into_iter()
        .filter_map(|(k, set)| Some((k.what(), set?)))
        .collect()
}

/// Up to five names, then how many more: a finding stays one line on a large fleet.
fn names<'a>(all: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = all.collect();
    let shown: Vec<String> = all.iter().take(5).map(|n| printable(n, 80)).collect();
    let shown = shown.join(", ");
    match all.len() {
        n if n > 5 => format!("{shown} and {} more", n - 5),
        _ => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, enabled: bool) -> EventRule {
        EventRule {
            name: name.into(),
            enabled,
            pattern: Some(r#"{"source":["aws.ecr"]}"#.into()),
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_queue_no_rule_sends_to_is_a_warning_that_names_the_stack() {
        let f = event_rules("q", &[], 3, &[]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].level, Level::Warning);
        assert!(f[0].fact.contains("no EventBridge rule"), "{}", f[0].fact);
        assert!(f[0].fix.contains("events.cfn.yaml"), "{}", f[0].fix);
    }

    #[test]
    fn only_disabled_rules_are_named_in_the_warning() {
        let f = event_rules("q", &[rule("tugboat-push", false)], 3, &[]);
        assert_eq!(f[0].level, Level::Warning);
        assert!(f[0].fact.contains("tugboat-push"), "{}", f[0].fact);
    }

    #[test]
    fn repositories_a_rule_misses_are_named_and_the_rest_is_ok() {
        let coverage = [
            Coverage {
                kind: EventKind::Push,
                unmatched: set(&["orders"]),
            },
            Coverage {
                kind: EventKind::BasicScan,
                unmatched: set(&[]),
            },
        ];
        let f = event_rules("q", &[rule("push", true)], 3, &coverage);
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].level, f[1].level),
            (Level::Warning, Level::Ok),
            "{f:?}"
        );
        assert!(
            f[0].fact.contains("pushes of 1 of 3") && f[0].fact.contains("orders"),
            "{}",
            f[0].fact
        );
        assert!(
            f[1].fact.contains("finished scans of all 3"),
            "{}",
            f[1].fact
        );
    }

    #[test]
    fn a_scan_is_covered_when_either_scan_event_matches_under_an_unknown_scanning_type() {
        let coverage = [
            Coverage {
                kind: EventKind::BasicScan,
                unmatched: set(&["a", "b"]),
            },
            Coverage {
                kind: EventKind::EnhancedScan,
                unmatched: set(&["b"]),
            },
        ];
        let f = event_rules("q", &[rule("r", true)], 2, &coverage);
        assert_eq!(f.len(), 1);
        assert!(
            f[0].fact.contains("1 of 2 watched repositories (b)"),
            "{}",
            f[0].fact
        );
    }

    #[test]
    fn a_long_list_of_repositories_is_cut_to_five_and_a_count() {
        let many: Vec<String> = (0..12).map(|i| format!("svc-{i:02}")).collect();
        assert_eq!(
            names(many.iter().map(String::as_str)),
            "svc-00, svc-01, svc-02, svc-03, svc-04 and 7 more"
        );
    }

    #[test]
    fn only_a_pattern_that_names_a_repository_field_is_asked_per_repository() {
        assert!(!names_repositories(
            r#"{"source":["aws.ecr"],"detail":{"result":["SUCCESS"]}}"#
        ));
        assert!(names_repositories(
            r#"{"detail":{"repository-name":[{"prefix":"salon/"}]}}"#
        ));
        assert!(names_repositories(r#"{"$or":[{"resources":["x"]}]}"#));
        assert!(names_repositories("not json"));
    }

    #[test]
    fn the_queue_arn_gives_the_region_and_account_of_its_events() {
        assert_eq!(
            queue_home("arn:aws:sqs:eu-north-1:123456789012:tugboat-events"),
            Some(("eu-north-1".into(), "123456789012".into()))
        );
        assert_eq!(queue_home("https://sqs.eu-north-1.amazonaws.com/1/q"), None);
    }

    #[test]
    fn the_samples_carry_every_field_test_event_pattern_requires() {
        for kind in [
            EventKind::Push,
            EventKind::BasicScan,
            EventKind::EnhancedScan,
        ] {
            let e: Value =
                serde_json::from_str(&sample_event(kind, "user_service", "1", "r")).unwrap();
            for field in [
                "id",
                "account",
                "source",
                "time",
                "region",
                "resources",
                "detail-type",
            ] {
                assert!(e.get(field).is_some(), "{kind:?} lacks {field}");
            }
        }
        let inspector: Value = serde_json::from_str(&sample_event(
            EventKind::EnhancedScan,
            "user_service",
            "1",
            "r",
        ))
        .unwrap();
        assert_eq!(
            inspector["detail"]["repository-name"],
            "arn:aws:ecr:r:1:repository/user_service"
        );
    }
}
