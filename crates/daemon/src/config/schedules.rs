//! The `[rescan]` and `[[schedules]]` sections: the weekly rescan and the jobs on cron.

use super::*;

/// `rescan.scan_type`: ask the registry (`auto`), or say which.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ScanTypeSetting {
    #[default]
    Auto,
    Basic,
    Enhanced,
}

/// `argocd.refresh`: the kind of refresh asked of Argo CD before each look.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Refresh {
    #[default]
    Normal,
    Hard,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRescan {
    #[serde(default)]
    pub(super) scan_type: ScanTypeSetting,
    #[serde(default, with = "humantime_serde")]
    pub(super) spread: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) wait: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) poll: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedules {
    pub(super) promotion: Option<RawSchedule>,
    pub(super) policy_refresh: Option<RawSchedule>,
    pub(super) rescan: Option<RawSchedule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    pub(super) cron: String,
    pub(super) zone: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub(super) grace: Option<Duration>,
}

/// How the rescan of deployed images gets fresh findings.
#[derive(Debug, Clone)]
pub struct RescanConfig {
    /// `None`: ask the registry (GetRegistryScanningConfiguration).
    pub scan_type: Option<crate::ports::ScanType>,
    /// Pause between two StartImageScan calls, so that many images don't burst the API.
    pub spread: Duration,
    /// How long to wait for started scans to complete.
    pub wait: Duration,
    /// How often to look at a running scan.
    pub poll: Duration,
}

/// A cron-scheduled job: `promotion` (an extra reconcile cycle), `policy_refresh` (re-read
/// the policy, then a cycle) or `rescan` (rescan every deployed image).
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    pub name: String,
    pub schedule: Schedule,
    /// How late a slot missed while tugboat was down may still run at start-up.
    pub grace: Duration,
}

pub(super) fn rescan(raw: RawRescan, f: &Fields<'_>) -> Result<RescanConfig, ConfigError> {
    let poll = raw.poll.unwrap_or(Duration::from_secs(15));
    if poll.is_zero() {
        return Err(f.err("rescan.poll", "must be more than 0s"));
    }
    Ok(RescanConfig {
        scan_type: match raw.scan_type {
            ScanTypeSetting::Auto => None,
            ScanTypeSetting::Basic => Some(crate::ports::ScanType::Basic),
            ScanTypeSetting::Enhanced => Some(crate::ports::ScanType::Enhanced),
        },
        spread: raw.spread.unwrap_or(Duration::from_secs(1)),
        wait: raw.wait.unwrap_or(Duration::from_secs(1800)),
        poll,
    })
}

pub(super) fn schedules(
    raw: RawSchedules,
    f: &Fields<'_>,
) -> Result<Vec<ScheduleConfig>, ConfigError> {
    let mut out = Vec::new();
    for (name, r) in [
        ("promotion", raw.promotion),
        ("policy_refresh", raw.policy_refresh),
        ("rescan", raw.rescan),
    ] {
        let Some(r) = r else { continue };
        let field = format!("schedules.{name}");
        let schedule = Schedule::parse(&r.cron, r.zone.as_deref().unwrap_or("UTC"))
            .map_err(|message| f.err(&field, message))?;
        out.push(ScheduleConfig {
            name: name.to_owned(),
            schedule,
            grace: r.grace.unwrap_or(Duration::from_secs(3600)),
        });
    }
    Ok(out)
}
