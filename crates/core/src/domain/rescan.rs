//! The rescan's decisions, without I/O: which findings of each deployed image count under the
//! policy, which are new or gone since the last rescan, and whether the service's security
//! issue must be opened, updated or closed.
//!
//! The last rescan's results live in the issue itself (a machine-readable block), so a restart
//! or a second replica compares against the same record.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::gate::{self, Finding, GateDecision, ScanPolicy, ScanReport, Severity};
use super::image::Digest;

/// Opens the machine-readable block in a security issue's body.
pub const STATE_MARKER: &str = "<!-- tugboat:rescan ";

/// The marker that identifies one service's issue (its state block names the service).
pub fn issue_marker(service: &str) -> String {
    format!("{STATE_MARKER}{{\"v\":1,\"service\":{}", json_str(service))
}

fn json_str(s: &str) -> String {
    super::block::json(&s)
}

/// Labels every security issue carries (one list call finds them all).
pub fn security_labels() -> Vec<String> {
    vec!["tugboat".to_owned(), "security".to_owned()]
}

/// Labels of a service's security issue.
pub fn issue_labels(service: &str) -> Vec<String> {
    let mut l = security_labels();
    l.push(format!("service:{service}"));
    l
}

/// One image a service's environment deploys now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub environment: String,
    /// As deployed (`repo:tag`, `repo@digest` or both).
    pub reference: String,
    pub digest: Digest,
}

/// What rescanning one deployed image gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A complete scan, judged by the environment's policy.
    Scanned {
        /// Findings of a severity the policy limits, minus those it ignores today.
        findings: Vec<Finding>,
        /// The gate now refuses the digest.
        blocked: bool,
        /// The gate's reasons when blocked.
        reasons: Vec<String>,
    },
    /// No usable result this time (scan still running at the end of the budget, failed,
    /// eligibility expired, an API error): the last known findings stand.
    Unknown { reason: String },
    /// Recorded by an earlier rescan in an environment this rescan does not cover (`--env`):
    /// carried over unchanged.
    OutOfScope,
}

/// Judge a complete scan of a deployed image by its environment's policy on `today`.
pub fn judge(report: &ScanReport, policy: &ScanPolicy, today: NaiveDate) -> Outcome {
    if report.status != gate::ScanStatus::Complete {
        return Outcome::Unknown {
            reason: match &report.status {
                gate::ScanStatus::Pending | gate::ScanStatus::InProgress => {
                    "the scan did not complete within the rescan's wait".to_owned()
                }
                gate::ScanStatus::Failed(m) => format!("the scan failed: {m}"),
                gate::ScanStatus::UnsupportedImage(m) => {
                    format!("the scanner does not support this image: {m}")
                }
                gate::ScanStatus::NotFound | gate::ScanStatus::NotStarted => {
                    "the image has no scan".to_owned()
                }
                gate::ScanStatus::Other(s) if s == "SCAN_ELIGIBILITY_EXPIRED" => {
                    "its scan eligibility expired: Inspector no longer rescans it (push it again or extend the registry's re-scan duration)".to_owned()
                }
                gate::ScanStatus::Other(s) => format!("scan status {s}"),
                gate::ScanStatus::Complete => String::new(),
            },
        };
    }
    let active: BTreeSet<&str> = policy
        .ignore
        .iter()
        .filter(|i| i.expires >= today)
        .map(|i| i.id.as_str())
        .collect();
    let mut findings: Vec<Finding> = report
        .findings
        .iter()
        .filter(|f| policy.thresholds.contains_key(&f.severity) && !active.contains(f.id.as_str()))
        .cloned()
        .collect();
    findings.sort_by(|a, b| a.severity.cmp(&b.severity).then_with(|| a.id.cmp(&b.id)));
    findings.dedup_by(|a, b| a.id == b.id);
    let (blocked, reasons) = match gate::gate(report, policy, today) {
        GateDecision::Block { reasons, .. } => (true, reasons),
        _ => (false, Vec::new()),
    };
    Outcome::Scanned {
        findings,
        blocked,
        reasons,
    }
}

/// The record of the last rescan, kept in the issue body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub v: u32,
    pub service: String,
    pub images: Vec<StateImage>,
}

/// One deployed image as the last rescan left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateImage {
    pub env: String,
    pub digest: String,
    pub reference: String,
    /// The findings that counted (at most [`RECORDED`]), most severe first.
    pub findings: Vec<Seen>,
    pub blocked: bool,
}

/// How many findings per image the issue's block records (GitHub caps a body at 65,536
/// characters); findings beyond it are listed again as new by a later rescan.
pub const RECORDED: usize = 50;

/// A finding as recorded, with the day a rescan first reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub id: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_in: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The platforms of an index whose images have it (absent for a plain image).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    pub since: NaiveDate,
}

impl Seen {
    fn new(f: &Finding, since: NaiveDate) -> Self {
        Self {
            id: f.id.clone(),
            severity: f.severity,
            package: f.package.clone(),
            fixed_in: f.fixed_in.clone(),
            url: f.url.clone(),
            platforms: f.platforms.clone(),
            since,
        }
    }

    fn finding(&self) -> Finding {
        Finding {
            id: self.id.clone(),
            severity: self.severity,
            package: self.package.clone(),
            fixed_in: self.fixed_in.clone(),
            url: self.url.clone(),
            platforms: self.platforms.clone(),
        }
    }
}

impl State {
    /// The block as it appears in the issue body.
    pub fn render(&self) -> String {
        format!("<!-- tugboat:rescan {} -->", super::block::json(self))
    }

    /// The block in `body`, if it has one that parses.
    pub fn parse(body: &str) -> Option<Self> {
        super::block::read(body, STATE_MARKER)
    }

    fn find(&self, env: &str, digest: &Digest) -> Option<&StateImage> {
        self.images
            .iter()
            .find(|i| i.env == env && i.digest == digest.as_str())
    }
}

/// One deployed image in the comparison of this rescan with the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub deployed: Deployed,
    /// The findings that count now, or the last known ones when there is no fresh result.
    pub findings: Vec<Finding>,
    /// Ids counted now and not at the last rescan.
    pub new: Vec<String>,
    /// Ids counted at the last rescan and not now.
    pub gone: Vec<String>,
    /// When each finding in `findings` was first reported.
    pub since: BTreeMap<String, NaiveDate>,
    pub blocked: bool,
    pub reasons: Vec<String>,
    /// Why there is no fresh result (the findings are the last known ones).
    pub unknown: Option<String>,
    /// False for images carried over from environments this rescan does not cover.
    pub in_scope: bool,
    /// Why its signature no longer verifies, when the environment requires one (a key
    /// revoked, a signature deleted): the row is then blocked.
    pub signature: Option<String>,
}

impl Row {
    /// Whether the image has findings that count (now, or last known).
    pub fn has_findings(&self) -> bool {
        !self.findings.is_empty()
    }
}

/// The images the last rescan recorded that this one did not find, and what to make of them:
/// out of scope (another environment than `--env`) or unknown (the deployments could not all
/// be read, so absence proves nothing). When everything was read, an image not found is no
/// longer deployed and is dropped, with its findings.
pub fn carried(
    previous: &State,
    found: &[(Deployed, Outcome)],
    in_scope: impl Fn(&str) -> bool,
    complete: bool,
) -> Vec<(Deployed, Outcome)> {
    previous
        .images
        .iter()
        .filter(|p| {
            !found
                .iter()
                .any(|(d, _)| d.environment == p.env && d.digest.as_str() == p.digest)
        })
        .filter_map(|p| {
            let outcome = if !in_scope(&p.env) {
                Outcome::OutOfScope
            } else if !complete {
                Outcome::Unknown {
                    reason: "the deployment could not be read this time".to_owned(),
                }
            } else {
                return None;
            };
            let digest = Digest::parse(&p.digest).ok()?;
            Some((
                Deployed {
                    environment: p.env.clone(),
                    reference: p.reference.clone(),
                    digest,
                },
                outcome,
            ))
        })
        .collect()
}

/// Compare this rescan's results (of `today`) with the previous state; returns the rows and
/// the new state.
pub fn compare(
    service: &str,
    results: Vec<(Deployed, Outcome)>,
    previous: &State,
    today: NaiveDate,
) -> (Vec<Row>, State) {
    let mut rows = Vec::new();
    let mut state = State {
        v: 1,
        service: service.to_owned(),
        images: Vec::new(),
    };
    for (deployed, outcome) in results {
        let before = previous.find(&deployed.environment, &deployed.digest);
        let before_ids: BTreeSet<&str> = before
            .map(|b| b.findings.iter().map(|f| f.id.as_str()).collect())
            .unwrap_or_default();
        let first_seen = |id: &str| {
            before
                .and_then(|b| b.findings.iter().find(|f| f.id == id))
                .map_or(today, |f| f.since)
        };
        let row = match outcome {
            Outcome::Scanned {
                findings,
                blocked,
                reasons,
            } => {
                let now: BTreeSet<&str> = findings.iter().map(|f| f.id.as_str()).collect();
                Row {
                    new: now
                        .difference(&before_ids)
                        .map(|s| (*s).to_owned())
                        .collect(),
                    gone: before_ids
                        .difference(&now)
                        .map(|s| (*s).to_owned())
                        .collect(),
                    since: now
                        .iter()
                        .map(|id| ((*id).to_owned(), first_seen(id)))
                        .collect(),
                    findings,
                    blocked,
                    reasons,
                    unknown: None,
                    in_scope: true,
                    signature: None,
                    deployed,
                }
            }
            other @ (Outcome::Unknown { .. } | Outcome::OutOfScope) => {
                let last = before.map(|b| b.findings.as_slice()).unwrap_or_default();
                Row {
                    in_scope: !matches!(other, Outcome::OutOfScope),
                    new: Vec::new(),
                    gone: Vec::new(),
                    since: last.iter().map(|f| (f.id.clone(), f.since)).collect(),
                    findings: last.iter().map(Seen::finding).collect(),
                    blocked: before.is_some_and(|b| b.blocked),
                    reasons: Vec::new(),
                    signature: None,
                    unknown: match other {
                        Outcome::Unknown { reason } => Some(reason),
                        _ => Some("not in this rescan's scope".to_owned()),
                    },
                    deployed,
                }
            }
        };
        state.images.push(recorded(&row, today));
        rows.push(row);
    }
    (rows, state)
}

/// What the state block keeps of `row`: its image and its first findings, each with the day
/// it was first seen.
fn recorded(row: &Row, today: NaiveDate) -> StateImage {
    StateImage {
        env: row.deployed.environment.clone(),
        digest: row.deployed.digest.to_string(),
        reference: row.deployed.reference.clone(),
        findings: row
            .findings
            .iter()
            .take(RECORDED)
            .map(|f| Seen::new(f, row.since.get(&f.id).copied().unwrap_or(today)))
            .collect(),
        blocked: row.blocked,
    }
}

/// What to do with the service's security issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueStep {
    /// No findings and no open issue.
    Nothing,
    /// The open issue already says exactly this.
    Unchanged {
        number: u64,
    },
    Open,
    Update {
        number: u64,
        notify: bool,
    },
    Close {
        number: u64,
    },
}

/// Decide the issue step from the rows, the open issue (number and body) and the new body.
/// `notify` asks for a comment: an edited body alone notifies nobody.
pub fn issue_step(rows: &[Row], open: Option<(u64, &str)>, body: &str) -> IssueStep {
    let needed = rows
        .iter()
        .any(|r| r.has_findings() || r.signature.is_some());
    match (needed, open) {
        (false, None) => IssueStep::Nothing,
        (false, Some((number, _))) => IssueStep::Close { number },
        (true, None) => IssueStep::Open,
        (true, Some((number, old))) if old == body => IssueStep::Unchanged { number },
        (true, Some((number, _))) => IssueStep::Update {
            number,
            notify: rows
                .iter()
                .any(|r| !r.new.is_empty() || r.signature.is_some()),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::gate::{Ignore, ScanStatus, Severity};

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn seen(id: &str, since: &str) -> Seen {
        Seen::new(&finding(id, Severity::Critical), day(since))
    }

    fn finding(id: &str, severity: Severity) -> Finding {
        Finding {
            id: id.into(),
            severity,
            package: Some("openssl".into()),
            fixed_in: None,
            url: None,
            platforms: Vec::new(),
        }
    }

    fn report(findings: Vec<Finding>) -> ScanReport {
        ScanReport {
            status: ScanStatus::Complete,
            counts: BTreeMap::new(),
            findings,
            not_counted: Vec::new(),
        }
    }

    fn deployed(env: &str, n: u8) -> Deployed {
        Deployed {
            environment: env.into(),
            reference: format!("repo/app:1.{n}.0"),
            digest: Digest::parse(&format!("sha256:{}", format!("{n:x}").repeat(64))).unwrap(),
        }
    }

    #[test]
    fn only_limited_severities_count_and_active_ignores_are_left_out() {
        let mut policy = ScanPolicy::default(); // CRITICAL 0, HIGH 0
        policy.ignore.push(Ignore {
            id: "CVE-IGN".into(),
            reason: "not reachable".into(),
            expires: day("2026-12-31"),
        });
        let r = report(vec![
            finding("CVE-LOW", Severity::Low),
            finding("CVE-HIGH", Severity::High),
            finding("CVE-IGN", Severity::Critical),
            finding("CVE-CRIT", Severity::Critical),
        ]);
        let Outcome::Scanned {
            findings, blocked, ..
        } = judge(&r, &policy, day("2026-11-23"))
        else {
            panic!()
        };
        let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["CVE-CRIT", "CVE-HIGH"], "most severe first");
        assert!(blocked);
        // After the ignore expires, the ignored finding counts again.
        let Outcome::Scanned { findings, .. } = judge(&r, &policy, day("2027-01-01")) else {
            panic!()
        };
        assert_eq!(findings.len(), 3);
    }

    #[test]
    fn an_unfinished_or_expired_scan_is_unknown_with_the_reason() {
        let mut r = report(vec![]);
        r.status = ScanStatus::InProgress;
        let o = judge(&r, &ScanPolicy::default(), day("2026-11-23"));
        assert!(
            matches!(o, Outcome::Unknown { ref reason } if reason.contains("did not complete")),
            "{o:?}"
        );
        r.status = ScanStatus::Other("SCAN_ELIGIBILITY_EXPIRED".into());
        let o = judge(&r, &ScanPolicy::default(), day("2026-11-23"));
        assert!(
            matches!(o, Outcome::Unknown { ref reason } if reason.contains("eligibility expired")),
            "{o:?}"
        );
    }

    #[test]
    fn new_and_gone_findings_are_found_against_the_last_state_and_unknown_keeps_it() {
        let prev = State {
            v: 1,
            service: "app".into(),
            images: vec![
                StateImage {
                    env: "dev".into(),
                    digest: deployed("dev", 1).digest.to_string(),
                    reference: "repo/app:1.1.0".into(),
                    findings: vec![seen("CVE-A", "2026-11-02"), seen("CVE-B", "2026-11-09")],
                    blocked: true,
                },
                StateImage {
                    env: "prod".into(),
                    digest: deployed("prod", 2).digest.to_string(),
                    reference: "repo/app:1.2.0".into(),
                    findings: vec![seen("CVE-A", "2026-11-02")],
                    blocked: true,
                },
            ],
        };
        let results = vec![
            (
                deployed("dev", 1),
                Outcome::Scanned {
                    findings: vec![
                        finding("CVE-B", Severity::High),
                        finding("CVE-C", Severity::Critical),
                    ],
                    blocked: true,
                    reasons: vec![],
                },
            ),
            (
                deployed("prod", 2),
                Outcome::Unknown {
                    reason: "the scan failed".into(),
                },
            ),
        ];
        let (rows, state) = compare("app", results, &prev, day("2026-11-16"));
        assert_eq!(rows[0].new, ["CVE-C"]);
        assert_eq!(rows[0].gone, ["CVE-A"]);
        assert!(rows[1].blocked, "an unknown result keeps the last verdict");
        assert_eq!(rows[1].unknown.as_deref(), Some("the scan failed"));
        assert_eq!(
            rows[1].findings,
            [finding("CVE-A", Severity::Critical)],
            "last known"
        );
        let since: Vec<(&str, NaiveDate)> = state.images[0]
            .findings
            .iter()
            .map(|f| (f.id.as_str(), f.since))
            .collect();
        assert_eq!(
            since,
            [("CVE-B", day("2026-11-09")), ("CVE-C", day("2026-11-16"))],
            "first reported: kept from the last rescan, today for new ones"
        );
        assert_eq!(state.images[1].findings, prev.images[1].findings);
        let parsed = State::parse(&format!("text\n{}\n", state.render())).unwrap();
        assert_eq!(parsed, state);
        assert!(state.render().starts_with(&issue_marker("app")));
    }

    #[test]
    fn images_not_found_are_carried_when_out_of_scope_or_unreadable_and_dropped_otherwise() {
        let state = |env: &str, n: u8| StateImage {
            env: env.into(),
            digest: deployed(env, n).digest.to_string(),
            reference: deployed(env, n).reference,
            findings: vec![seen("CVE-A", "2026-11-02")],
            blocked: true,
        };
        let prev = State {
            v: 1,
            service: "app".into(),
            images: vec![state("dev", 1), state("prod", 2)],
        };
        let found = vec![(
            deployed("dev", 3),
            Outcome::Scanned {
                findings: vec![],
                blocked: false,
                reasons: vec![],
            },
        )];
        // `--env dev`: prod is carried unchanged, dev's old digest (replaced) is dropped.
        let c = carried(&prev, &found, |e| e == "dev", true);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].0.environment.as_str(), &c[0].1),
            ("prod", &Outcome::OutOfScope)
        );
        // Everything read, both in scope: neither is deployed any more.
        assert!(carried(&prev, &found, |_| true, true).is_empty());
        // Something could not be read: absence proves nothing.
        let c = carried(&prev, &found, |_| true, false);
        assert_eq!(c.len(), 2);
        let mut all = found.clone();
        all.extend(c);
        let (rows, _) = compare("app", all, &prev, day("2026-11-16"));
        assert!(
            rows.iter()
                .filter(|r| r.unknown.is_some())
                .all(|r| r.blocked && r.has_findings())
        );
        let out = carried(&prev, &found, |e| e == "dev", true);
        let (rows, _) = compare("app", out, &prev, day("2026-11-16"));
        assert!(
            !rows[0].in_scope && rows[0].has_findings(),
            "kept open, not failed"
        );
    }

    #[test]
    fn the_issue_opens_with_findings_updates_when_the_text_changes_and_closes_when_clean() {
        let dirty = |new: &[&str]| Row {
            deployed: deployed("dev", 1),
            findings: vec![finding("CVE-A", Severity::Critical)],
            new: new.iter().map(|s| (*s).to_owned()).collect(),
            gone: vec![],
            since: BTreeMap::new(),
            blocked: true,
            reasons: vec![],
            unknown: None,
            in_scope: true,
            signature: None,
        };
        let clean = Row {
            findings: vec![],
            blocked: false,
            ..dirty(&[])
        };
        assert_eq!(
            issue_step(std::slice::from_ref(&clean), None, "b"),
            IssueStep::Nothing
        );
        assert_eq!(issue_step(&[dirty(&["CVE-A"])], None, "b"), IssueStep::Open);
        assert_eq!(
            issue_step(&[dirty(&[])], Some((7, "b")), "b"),
            IssueStep::Unchanged { number: 7 }
        );
        assert_eq!(
            issue_step(&[dirty(&["CVE-A"])], Some((7, "a")), "b"),
            IssueStep::Update {
                number: 7,
                notify: true
            }
        );
        assert_eq!(
            issue_step(&[dirty(&[])], Some((7, "a")), "b"),
            IssueStep::Update {
                number: 7,
                notify: false
            }
        );
        assert_eq!(
            issue_step(std::slice::from_ref(&clean), Some((7, "a")), "b"),
            IssueStep::Close { number: 7 }
        );
        let revoked = Row {
            signature: Some("no valid signature: signed by an unknown key".into()),
            blocked: true,
            ..clean
        };
        assert_eq!(
            issue_step(std::slice::from_ref(&revoked), None, "b"),
            IssueStep::Open,
            "an image whose signature no longer verifies opens the issue without findings"
        );
        assert_eq!(
            issue_step(&[revoked], Some((7, "a")), "b"),
            IssueStep::Update {
                number: 7,
                notify: true
            }
        );
    }

    #[test]
    fn a_service_name_cannot_forge_another_services_marker() {
        assert_ne!(issue_marker("a"), issue_marker("a\",\"x"));
        assert!(issue_marker("a\"b").contains("a\\\"b"));
        // A body that quotes `-->` inside a finding id still parses back.
        let s = State {
            v: 1,
            service: "x".into(),
            images: vec![StateImage {
                env: "dev".into(),
                digest: "sha256:1".into(),
                reference: "r".into(),
                findings: vec![seen("evil -->", "2026-11-23")],
                blocked: false,
            }],
        };
        assert_eq!(State::parse(&s.render()), Some(s));
    }
}
