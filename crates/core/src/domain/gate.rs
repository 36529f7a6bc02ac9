//! The scan gate: a registry's scan findings against the policy's thresholds and ignores.

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::index::Platform;

/// Finding severities as ECR reports them (basic and enhanced scanning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Informational,
    Undefined,
    Untriaged,
}

impl Severity {
    pub const ALL: [Severity; 7] = [
        Self::Critical,
        Self::High,
        Self::Medium,
        Self::Low,
        Self::Informational,
        Self::Undefined,
        Self::Untriaged,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "CRITICAL",
            Self::High => "HIGH",
            Self::Medium => "MEDIUM",
            Self::Low => "LOW",
            Self::Informational => "INFORMATIONAL",
            Self::Undefined => "UNDEFINED",
            Self::Untriaged => "UNTRIAGED",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a scan stands, as ECR's `imageScanStatus.status` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStatus {
    Complete,
    Pending,
    InProgress,
    Failed(String),
    UnsupportedImage(String),
    /// ECR has no scan for this digest (`ScanNotFoundException`).
    NotFound,
    /// No scan yet, and tugboat starts one when it runs (a repository without scan on push
    /// scans only on request: ECR user guide, "Manual scanning"); a plan says so.
    NotStarted,
    /// Any other status ECR reports (`SCAN_ELIGIBILITY_EXPIRED`, `FINDINGS_UNAVAILABLE`, …).
    Other(String),
}

/// One vulnerability finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub id: String,
    pub severity: Severity,
    pub package: Option<String>,
    /// The package version that fixes it, when the scanner knows (enhanced scanning).
    pub fixed_in: Option<String>,
    /// Where to read about it.
    pub url: Option<String>,
    /// The platforms of an index whose images have it (empty for a plain image).
    pub platforms: Vec<String>,
}

/// A scan result for one digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub status: ScanStatus,
    /// Counts as the registry summarised them (may be present without the list).
    pub counts: BTreeMap<Severity, u32>,
    pub findings: Vec<Finding>,
    /// Findings the scanner reports but does not count: Inspector's `SUPPRESSED` (a
    /// suppression rule) and `CLOSED` (remediated) findings, by id with their status.
    pub not_counted: Vec<String>,
}

impl ScanReport {
    pub fn not_found() -> Self {
        Self {
            status: ScanStatus::NotFound,
            counts: BTreeMap::new(),
            findings: Vec::new(),
            not_counted: Vec::new(),
        }
    }
}

/// A CVE the team has accepted, until an expiry date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ignore {
    pub id: String,
    pub reason: String,
    pub expires: NaiveDate,
}

/// The scan part of an environment's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPolicy {
    /// Most findings allowed per severity; a severity not listed is unlimited.
    pub thresholds: BTreeMap<Severity, u32>,
    pub ignore: Vec<Ignore>,
    /// Let images with no scan (none, eligibility expired, findings unavailable) through.
    pub allow_unscanned: bool,
    /// Let images whose scan `FAILED` through.
    pub allow_failed: bool,
    /// Let images the scanner does not support (`UNSUPPORTED_IMAGE`) through.
    pub allow_unsupported: bool,
    /// Platforms an image index must have an image for (`linux/arm64` for a Graviton
    /// cluster); empty: none required, every platform present is gated.
    pub platforms: Vec<Platform>,
}

impl Default for ScanPolicy {
    fn default() -> Self {
        Self {
            thresholds: BTreeMap::from([(Severity::Critical, 0), (Severity::High, 0)]),
            ignore: Vec::new(),
            allow_unscanned: false,
            allow_failed: false,
            allow_unsupported: false,
            platforms: Vec::new(),
        }
    }
}

/// What the gate says about one digest, with its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDecision {
    Pass {
        counts: BTreeMap<Severity, u32>,
        ignored: Vec<String>,
        note: Option<String>,
    },
    Block {
        counts: BTreeMap<Severity, u32>,
        reasons: Vec<String>,
    },
    Wait {
        reason: String,
    },
}

impl GateDecision {
    pub fn counts(&self) -> Option<&BTreeMap<Severity, u32>> {
        match self {
            Self::Pass { counts, .. } | Self::Block { counts, .. } => Some(counts),
            Self::Wait { .. } => None,
        }
    }
}

/// Decide whether a scanned image may be promoted on `today`.
/// The decision on an image whose scan is not complete (`None` when it is): wait, or pass
/// or block as the policy's `allow_*` says.
fn incomplete(status: &ScanStatus, policy: &ScanPolicy) -> Option<GateDecision> {
    Some(match status {
        ScanStatus::Complete => return None,
        ScanStatus::Pending | ScanStatus::InProgress => {
            if policy.allow_unscanned {
                unscanned("scan not finished".into(), true, "allow_unscanned")
            } else {
                GateDecision::Wait {
                    reason: "waiting for scan to complete".into(),
                }
            }
        }
        ScanStatus::Failed(m) => unscanned(
            format!("scan failed: {m}"),
            policy.allow_failed,
            "allow_failed",
        ),
        ScanStatus::UnsupportedImage(m) => unscanned(
            format!("image not supported by the scanner: {m}"),
            policy.allow_unsupported,
            "allow_unsupported",
        ),
        ScanStatus::NotStarted => {
            if policy.allow_unscanned {
                unscanned("no scan yet".into(), true, "allow_unscanned")
            } else {
                GateDecision::Wait {
                    reason: "no scan yet: the repository does not scan on push, and tugboat starts a scan when it runs (StartImageScan, once per image a day)".into(),
                }
            }
        }
        ScanStatus::NotFound => unscanned(
            "image has no scan".into(),
            policy.allow_unscanned,
            "allow_unscanned",
        ),
        ScanStatus::Other(s) => unscanned(
            format!("scan status {s}"),
            policy.allow_unscanned,
            "allow_unscanned",
        ),
    })
}

/// An image without a usable scan (`why`): passed with a note when the policy's `field`
/// allows it, else blocked saying which field would.
fn unscanned(why: String, allowed: bool, field: &str) -> GateDecision {
    if allowed {
        GateDecision::Pass {
            counts: BTreeMap::new(),
            ignored: Vec::new(),
            note: Some(format!("{why}; allowed by policy {field}")),
        }
    } else {
        GateDecision::Block {
            counts: BTreeMap::new(),
            reasons: vec![format!(
                "{why}; the policy does not allow it ({field}: false)"
            )],
        }
    }
}

/// The thresholds `counts` exceed, each with up to five of its findings (not `ignored`).
fn over_thresholds(
    report: &ScanReport,
    policy: &ScanPolicy,
    counts: &BTreeMap<Severity, u32>,
    ignored: &[String],
) -> Vec<String> {
    let mut over = Vec::new();
    for (sev, max) in &policy.thresholds {
        let n = counts.get(sev).copied().unwrap_or(0);
        if n > *max {
            let ids: Vec<&str> = report
                .findings
                .iter()
                .filter(|f| f.severity == *sev && !ignored.contains(&f.id))
                .map(|f| f.id.as_str())
                .take(5)
                .collect();
            let list = if ids.is_empty() {
                String::new()
            } else {
                format!(" ({})", ids.join(", "))
            };
            over.push(format!(
                "{n} {sev} finding(s) exceed the threshold of {max}{list}"
            ));
        }
    }
    over
}

pub fn gate(report: &ScanReport, policy: &ScanPolicy, today: NaiveDate) -> GateDecision {
    if let Some(decision) = incomplete(&report.status, policy) {
        return decision;
    }
    let active_ignores: Vec<&Ignore> = policy
        .ignore
        .iter()
        .filter(|i| i.expires >= today)
        .collect();
    let mut ignored = Vec::new();
    let mut reasons = Vec::new();
    let counts = if report.findings.is_empty() {
        report.counts.clone()
    } else {
        let mut counts = BTreeMap::new();
        for f in &report.findings {
            if active_ignores.iter().any(|i| i.id == f.id) {
                ignored.push(f.id.clone());
                continue;
            }
            *counts.entry(f.severity).or_insert(0) += 1;
        }
        counts
    };
    for expired in policy.ignore.iter().filter(|i| i.expires < today) {
        if report.findings.iter().any(|f| f.id == expired.id) {
            reasons.push(format!(
                "ignore for {} expired on {}; it counts again",
                expired.id, expired.expires
            ));
        }
    }
    let over = over_thresholds(report, policy, &counts, &ignored);
    ignored.sort();
    ignored.dedup();
    if !report.not_counted.is_empty() {
        reasons.push(format!(
            "not counted, as Inspector reports them: {}",
            report.not_counted.join(", ")
        ));
    }
    if over.is_empty() {
        GateDecision::Pass {
            counts,
            ignored,
            note: (!reasons.is_empty()).then(|| reasons.join("; ")),
        }
    } else {
        reasons.splice(0..0, over);
        GateDecision::Block { counts, reasons }
    }
}

/// A tag-only promotion from a repository whose tags can move (ECR's
/// `imageTagMutability`, e.g. `MUTABLE`): the gate scanned a digest, but the nodes pull
/// whatever the tag names when they pull. `refuse` blocks; else a passing decision carries
/// the warning in its note.
pub fn tag_only_from_mutable(
    decision: GateDecision,
    mutability: &str,
    refuse: bool,
) -> GateDecision {
    let risk = format!(
        "the repository's tags are {mutability} and this promotion writes the tag only, so a later push of the same tag would change what runs without passing the gate"
    );
    match decision {
        GateDecision::Pass { counts, .. } if refuse => GateDecision::Block {
            counts,
            reasons: vec![format!(
                "{risk}; the policy refuses it (mutable_tags: refuse): set pin_digest: true, or make the repository's tags IMMUTABLE"
            )],
        },
        GateDecision::Pass {
            counts,
            ignored,
            note,
        } => {
            let warning = format!("warning: {risk} (pin_digest: true writes the digest too)");
            GateDecision::Pass {
                counts,
                ignored,
                note: Some(match note {
                    Some(n) => format!("{n}; {warning}"),
                    None => warning,
                }),
            }
        }
        other => other,
    }
}

/// The scan of one platform image of an index, or of a plain image (`platform: None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformScan {
    pub platform: Option<Platform>,
    pub report: ScanReport,
}

/// Decide on a whole image: a plain image as [`gate`] does; an index platform by platform,
/// the worst deciding (any block blocks, then any wait waits), each reason naming its
/// platform. A platform the policy requires and the index lacks blocks; a plain image cannot
/// show its platform in the registry's listing, so it is refused when platforms are required.
pub fn gate_image(scans: &[PlatformScan], policy: &ScanPolicy, today: NaiveDate) -> GateDecision {
    let names: Vec<String> = scans
        .iter()
        .filter_map(|s| s.platform.as_ref().map(Platform::to_string))
        .collect();
    let missing = missing_platforms(scans, &names, &policy.platforms);
    if let [one] = scans
        && one.platform.is_none()
        && missing.is_empty()
    {
        return gate(&one.report, policy, today);
    }
    let mut counts: BTreeMap<Severity, u32> = BTreeMap::new();
    let (mut ignored, mut blocks, mut waits, mut notes) = (vec![], vec![], vec![], vec![]);
    for s in scans {
        let prefix = s
            .platform
            .as_ref()
            .map_or(String::new(), |p| format!("{p}: "));
        let decision = gate(&s.report, policy, today);
        for (sev, n) in decision.counts().into_iter().flatten() {
            let worst = counts.entry(*sev).or_insert(0);
            *worst = (*worst).max(*n);
        }
        match decision {
            GateDecision::Pass {
                ignored: i, note, ..
            } => {
                ignored.extend(i);
                notes.extend(note.map(|n| format!("{prefix}{n}")));
            }
            GateDecision::Block { reasons, .. } => {
                blocks.extend(reasons.into_iter().map(|r| format!("{prefix}{r}")));
            }
            GateDecision::Wait { reason } => waits.push(format!("{prefix}{reason}")),
        }
    }
    blocks.extend(missing);
    if !blocks.is_empty() {
        return GateDecision::Block {
            counts,
            reasons: blocks,
        };
    }
    if !waits.is_empty() {
        return GateDecision::Wait {
            reason: waits.join("; "),
        };
    }
    ignored.sort();
    ignored.dedup();
    if !names.is_empty() {
        notes.insert(
            0,
            format!(
                "an image index: each platform image's own scan gated ({})",
                names.join(", ")
            ),
        );
    }
    GateDecision::Pass {
        counts,
        ignored,
        note: Some(notes.join("; ")),
    }
}

/// A reason for each platform in `wanted` that no scanned image satisfies (`names`: the
/// scanned images' platforms, as text).
fn missing_platforms(scans: &[PlatformScan], names: &[String], wanted: &[Platform]) -> Vec<String> {
    let has = if names.is_empty() {
        "a single image manifest, whose platform the registry does not list".to_owned()
    } else {
        names.join(", ")
    };
    wanted
        .iter()
        .filter(|w| {
            !scans
                .iter()
                .any(|s| s.platform.as_ref().is_some_and(|p| p.satisfies(w)))
        })
        .map(|w| {
            format!(
                "the image has no {w} image (it has {has}), which the policy's platforms require"
            )
        })
        .collect()
}

/// One report for a whole image, for the evidence and the rescan: a plain image's report
/// as it is; an index's platforms' findings, each once with the platforms that have it,
/// counts the worst of any platform, and the status of the first platform not complete.
pub fn merged(scans: &[PlatformScan]) -> ScanReport {
    if let [one] = scans
        && one.platform.is_none()
    {
        return one.report.clone();
    }
    let mut out = ScanReport {
        status: ScanStatus::Complete,
        counts: BTreeMap::new(),
        findings: Vec::new(),
        not_counted: Vec::new(),
    };
    for s in scans {
        let name = s.platform.as_ref().map(Platform::to_string);
        if out.status == ScanStatus::Complete {
            out.status = s.report.status.clone();
        }
        for (sev, n) in &s.report.counts {
            let worst = out.counts.entry(*sev).or_insert(0);
            *worst = (*worst).max(*n);
        }
        for f in &s.report.findings {
            match out.findings.iter_mut().find(|o| o.id == f.id) {
                Some(o) => o.platforms.extend(name.clone()),
                None => {
                    let mut f = f.clone();
                    f.platforms = name.clone().into_iter().collect();
                    out.findings.push(f);
                }
            }
        }
        for n in &s.report.not_counted {
            if !out.not_counted.contains(n) {
                out.not_counted.push(n.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn report(findings: &[(&str, Severity)]) -> ScanReport {
        ScanReport {
            status: ScanStatus::Complete,
            counts: BTreeMap::new(),
            findings: findings
                .iter()
                .map(|(id, s)| Finding {
                    id: (*id).into(),
                    severity: *s,
                    package: None,
                    fixed_in: None,
                    url: None,
                    platforms: Vec::new(),
                })
                .collect(),
            not_counted: Vec::new(),
        }
    }

    fn part(platform: &str, findings: &[(&str, Severity)]) -> PlatformScan {
        PlatformScan {
            platform: Some(Platform::parse(platform).unwrap()),
            report: report(findings),
        }
    }

    #[test]
    fn an_index_is_blocked_by_its_worst_platform_and_the_reason_names_it() {
        let scans = [
            part("linux/amd64", &[]),
            part("linux/arm64", &[("CVE-9", Severity::Critical)]),
        ];
        let d = gate_image(&scans, &ScanPolicy::default(), day("2026-01-01"));
        let GateDecision::Block { reasons, counts } = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            reasons,
            ["linux/arm64: 1 CRITICAL finding(s) exceed the threshold of 0 (CVE-9)"]
        );
        assert_eq!(counts.get(&Severity::Critical), Some(&1));
    }

    #[test]
    fn an_index_whose_platforms_are_all_clean_passes_and_one_still_scanning_waits() {
        let clean = [part("linux/amd64", &[]), part("linux/arm64", &[])];
        assert!(matches!(
            gate_image(&clean, &ScanPolicy::default(), day("2026-01-01")),
            GateDecision::Pass { .. }
        ));
        let mut scanning = clean.clone();
        scanning[1].report.status = ScanStatus::InProgress;
        assert_eq!(
            gate_image(&scanning, &ScanPolicy::default(), day("2026-01-01")),
            GateDecision::Wait {
                reason: "linux/arm64: waiting for scan to complete".into()
            }
        );
    }

    #[test]
    fn an_index_without_a_required_platform_is_refused_naming_it() {
        let policy = ScanPolicy {
            platforms: vec![Platform::parse("linux/arm64").unwrap()],
            ..ScanPolicy::default()
        };
        let d = gate_image(&[part("linux/amd64", &[])], &policy, day("2026-01-01"));
        let GateDecision::Block { reasons, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            reasons,
            [
                "the image has no linux/arm64 image (it has linux/amd64), which the policy's platforms require"
            ]
        );
    }

    #[test]
    fn a_plain_image_cannot_show_a_required_platform_and_is_refused() {
        let policy = ScanPolicy {
            platforms: vec![Platform::parse("linux/arm64").unwrap()],
            ..ScanPolicy::default()
        };
        let plain = [PlatformScan {
            platform: None,
            report: report(&[]),
        }];
        let d = gate_image(&plain, &policy, day("2026-01-01"));
        assert!(matches!(d, GateDecision::Block { .. }), "{d:?}");
    }

    #[test]
    fn a_tag_only_promotion_from_mutable_tags_warns_or_is_refused_and_a_block_stays_a_block() {
        let pass = gate(&report(&[]), &ScanPolicy::default(), day("2026-01-01"));
        let GateDecision::Pass { note, .. } = tag_only_from_mutable(pass.clone(), "MUTABLE", false)
        else {
            panic!()
        };
        assert!(
            note.unwrap()
                .starts_with("warning: the repository's tags are MUTABLE")
        );
        let GateDecision::Block { reasons, .. } = tag_only_from_mutable(pass, "MUTABLE", true)
        else {
            panic!()
        };
        assert!(reasons[0].contains("mutable_tags: refuse"), "{reasons:?}");
        let blocked = gate(
            &report(&[("CVE-1", Severity::Critical)]),
            &ScanPolicy::default(),
            day("2026-01-01"),
        );
        assert_eq!(
            tag_only_from_mutable(blocked.clone(), "MUTABLE", true),
            blocked
        );
    }

    #[test]
    fn a_finding_on_two_platforms_is_merged_once_naming_both() {
        let scans = [
            part("linux/amd64", &[("CVE-1", Severity::High)]),
            part(
                "linux/arm64",
                &[("CVE-1", Severity::High), ("CVE-2", Severity::Low)],
            ),
        ];
        let m = merged(&scans);
        assert_eq!(m.findings.len(), 2);
        assert_eq!(m.findings[0].platforms, ["linux/amd64", "linux/arm64"]);
        assert_eq!(m.findings[1].platforms, ["linux/arm64"]);
        assert_eq!(m.status, ScanStatus::Complete);
    }

    #[test]
    fn a_clean_scan_passes() {
        let d = gate(
            &report(&[("CVE-1", Severity::Low)]),
            &ScanPolicy::default(),
            day("2026-11-23"),
        );
        assert!(matches!(d, GateDecision::Pass { .. }), "{d:?}");
    }

    #[test]
    fn a_critical_finding_blocks_with_its_cve_named() {
        let d = gate(
            &report(&[("CVE-2026-0001", Severity::Critical)]),
            &ScanPolicy::default(),
            day("2026-11-23"),
        );
        let GateDecision::Block { reasons, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            reasons,
            ["1 CRITICAL finding(s) exceed the threshold of 0 (CVE-2026-0001)"]
        );
    }

    #[test]
    fn an_ignored_cve_does_not_count_until_its_ignore_expires() {
        let policy = ScanPolicy {
            ignore: vec![Ignore {
                id: "CVE-9".into(),
                reason: "not reachable".into(),
                expires: day("2026-12-01"),
            }],
            ..ScanPolicy::default()
        };
        let r = report(&[("CVE-9", Severity::High)]);
        assert!(matches!(
            gate(&r, &policy, day("2026-12-01")),
            GateDecision::Pass { .. }
        ));
        let GateDecision::Block { reasons, .. } = gate(&r, &policy, day("2026-12-02")) else {
            panic!()
        };
        assert_eq!(
            reasons[1],
            "ignore for CVE-9 expired on 2026-12-01; it counts again"
        );
    }

    #[test]
    fn a_pending_scan_waits_and_a_missing_scan_blocks_unless_policy_allows() {
        let mut r = report(&[]);
        r.status = ScanStatus::InProgress;
        assert!(matches!(
            gate(&r, &ScanPolicy::default(), day("2026-11-23")),
            GateDecision::Wait { .. }
        ));
        let missing = ScanReport::not_found();
        assert!(matches!(
            gate(&missing, &ScanPolicy::default(), day("2026-11-23")),
            GateDecision::Block { .. }
        ));
        let lenient = ScanPolicy {
            allow_unscanned: true,
            ..ScanPolicy::default()
        };
        assert!(matches!(
            gate(&missing, &lenient, day("2026-11-23")),
            GateDecision::Pass { .. }
        ));
    }

    #[test]
    fn summary_counts_are_used_when_the_registry_gives_no_list() {
        let r = ScanReport {
            status: ScanStatus::Complete,
            counts: BTreeMap::from([(Severity::High, 2)]),
            findings: vec![],
            not_counted: vec![],
        };
        assert!(matches!(
            gate(&r, &ScanPolicy::default(), day("2026-11-23")),
            GateDecision::Block { .. }
        ));
    }
}
