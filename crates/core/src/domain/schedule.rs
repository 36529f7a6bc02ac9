//! Cron schedules: standard 5-field expressions (`0 6 * * MON`) in an IANA time zone, parsed
//! with croner, and the rule for catching up a missed run.
//!
//! Daylight-saving time follows croner (and Vixie cron): a fixed-time slot that falls into a
//! spring-forward gap runs at the first valid minute after the gap, on the same day; a
//! fixed-time slot inside a fall-back overlap runs once, at its first occurrence. Slots are
//! instants (UTC), so "once per slot" never depends on the wall clock.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::window::parse_zone;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
    zone: Tz,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.zone == other.zone
    }
}

impl Schedule {
    /// Parse `expr` (minute hour day-of-month month day-of-week) in `zone`.
    pub fn parse(expr: &str, zone: &str) -> Result<Self, String> {
        let zone = parse_zone(zone)?;
        let fields = expr.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "'{expr}' has {fields} field(s); use the 5-field form minute hour day-of-month month day-of-week, e.g. '0 6 * * MON'"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| format!("'{expr}' is not a valid cron expression: {e}"))?;
        Ok(Self {
            expr: expr.to_owned(),
            cron,
            zone,
        })
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.zone), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest slot at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.zone), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The slot a process starting at `now` should still run: the latest slot at or before
    /// `now`, when no run is recorded for it (`last_run` is before it) and it is at most
    /// `grace` late. Older missed slots are skipped: running them now would be noise.
    pub fn missed(
        &self,
        last_run: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        grace: chrono::Duration,
    ) -> Option<DateTime<Utc>> {
        let slot = self.latest_at_or_before(now)?;
        let recorded = last_run.is_some_and(|l| l >= slot);
        (!recorded && now - slot <= grace).then_some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_monday_rescan_expression_is_accepted_and_fires_at_six_utc() {
        let s = Schedule::parse("0 6 * * MON", "UTC").unwrap();
        // 2026-11-23 is a Monday.
        assert_eq!(
            s.next_after(utc("2026-11-20T12:00:00Z")),
            Some(utc("2026-11-23T06:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-11-23T06:00:00Z")),
            Some(utc("2026-11-30T06:00:00Z")),
            "strictly after: a slot does not repeat itself"
        );
        assert_eq!(
            s.latest_at_or_before(utc("2026-11-23T06:00:00Z")),
            Some(utc("2026-11-23T06:00:00Z"))
        );
    }

    #[test]
    fn a_schedule_with_a_time_zone_fires_at_the_local_hour() {
        let s = Schedule::parse("0 6 * * MON", "Europe/Stockholm").unwrap();
        // Stockholm is UTC+1 in November: 06:00 local is 05:00 UTC.
        assert_eq!(
            s.next_after(utc("2026-11-20T12:00:00Z")),
            Some(utc("2026-11-23T05:00:00Z"))
        );
        // And UTC+2 in summer.
        assert_eq!(
            s.next_after(utc("2026-06-10T12:00:00Z")),
            Some(utc("2026-06-15T04:00:00Z"))
        );
    }

    #[test]
    fn a_slot_in_a_spring_forward_gap_runs_right_after_the_gap_and_an_overlap_runs_once() {
        // Europe/Stockholm skips 02:00-03:00 on 2026-03-29 and repeats 02:00-03:00 on 2026-10-25.
        let s = Schedule::parse("30 2 * * *", "Europe/Stockholm").unwrap();
        let gap = s.next_after(utc("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(
            gap,
            utc("2026-03-29T01:00:00Z"),
            "03:00 CEST, first minute after the gap"
        );
        let first = s.next_after(utc("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(
            first,
            utc("2026-10-25T00:30:00Z"),
            "02:30 CEST, the first pass"
        );
        let next = s.next_after(first).unwrap();
        assert_eq!(next, utc("2026-10-26T01:30:00Z"), "not again at 02:30 CET");
    }

    #[test]
    fn a_missed_slot_is_caught_up_once_within_the_grace_period() {
        let s = Schedule::parse("0 6 * * MON", "UTC").unwrap();
        let grace = chrono::Duration::hours(6);
        let slot = utc("2026-11-23T06:00:00Z");
        // Down at 06:00, back at 09:00: run the 06:00 slot.
        assert_eq!(
            s.missed(
                Some(utc("2026-11-16T06:00:00Z")),
                utc("2026-11-23T09:00:00Z"),
                grace
            ),
            Some(slot)
        );
        assert_eq!(
            s.missed(None, utc("2026-11-23T09:00:00Z"), grace),
            Some(slot)
        );
        // Already recorded: not twice.
        assert_eq!(
            s.missed(Some(slot), utc("2026-11-23T09:00:00Z"), grace),
            None
        );
        // Too late: skipped.
        assert_eq!(
            s.missed(
                Some(utc("2026-11-16T06:00:00Z")),
                utc("2026-11-23T13:00:00Z"),
                grace
            ),
            None
        );
    }

    #[test]
    fn invalid_expressions_and_zones_are_refused_with_the_reason() {
        let e = Schedule::parse("0 6 * *", "UTC").unwrap_err();
        assert_eq!(
            e,
            "'0 6 * *' has 4 field(s); use the 5-field form minute hour day-of-month month day-of-week, e.g. '0 6 * * MON'"
        );
        let e = Schedule::parse("0 25 * * MON", "UTC").unwrap_err();
        assert!(
            e.starts_with("'0 25 * * MON' is not a valid cron expression: "),
            "{e}"
        );
        let e = Schedule::parse("0 6 * * MON", "Mars/Olympus").unwrap_err();
        assert_eq!(
            e,
            "'Mars/Olympus' is not an IANA time zone; use e.g. UTC or Europe/Stockholm"
        );
        let e = Schedule::parse("0 0 6 * * MON", "UTC").unwrap_err();
        assert!(e.contains("6 field(s)"), "{e}");
    }
}
