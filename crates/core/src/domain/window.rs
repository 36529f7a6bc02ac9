//! Promotion windows: the days and hours (in a time zone) when a promotion may merge.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// One window: on `days`, from `start` until `end` local time in `zone`. When `end` is not
/// after `start` the window runs past midnight into the next day (`22:00-02:00`); the day
/// named is the day it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub days: Vec<Weekday>,
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub zone: Tz,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<String> = self.days.iter().map(ToString::to_string).collect();
        write!(
            f,
            "{} {}-{} {}",
            days.join(","),
            self.start.format("%H:%M"),
            self.end.format("%H:%M"),
            self.zone
        )
    }
}

/// Parse `MON`, `mon`, `Monday`, or a range `MON-FRI` into days.
pub fn parse_days(items: &[String]) -> Result<Vec<Weekday>, String> {
    let one = |s: &str| {
        s.trim().parse::<Weekday>().map_err(|_| {
            format!(
                "'{s}' is not a day; use MON, TUE, WED, THU, FRI, SAT, SUN or a range like MON-FRI"
            )
        })
    };
    let mut out = Vec::new();
    for item in items {
        match item.split_once('-') {
            Some((a, b)) => {
                let (mut d, last) = (one(a)?, one(b)?);
                loop {
                    out.push(d);
                    if d == last {
                        break;
                    }
                    d = d.succ();
                }
            }
            None => out.push(one(item)?),
        }
    }
    if out.is_empty() {
        return Err("name at least one day".into());
    }
    out.sort_by_key(Weekday::num_days_from_monday);
    out.dedup();
    Ok(out)
}

/// Parse `HH:MM-HH:MM`.
pub fn parse_hours(s: &str) -> Result<(NaiveTime, NaiveTime), String> {
    let bad = || format!("'{s}' is not a span of hours; use HH:MM-HH:MM, e.g. 09:00-16:00");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let t = |x: &str| NaiveTime::parse_from_str(x.trim(), "%H:%M").map_err(|_| bad());
    let (start, end) = (t(a)?, t(b)?);
    if start == end {
        return Err(format!(
            "'{s}' is empty; a window needs an end different from its start"
        ));
    }
    Ok((start, end))
}

/// Parse an IANA time zone name (`Europe/Stockholm`, `UTC`).
pub fn parse_zone(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>()
        .map_err(|_| format!("'{s}' is not an IANA time zone; use e.g. UTC or Europe/Stockholm"))
}

impl Window {
    /// Whether `now` falls inside this window.
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.zone);
        let (day, time) = (local.weekday(), local.time());
        if self.start < self.end {
            self.days.contains(&day) && time >= self.start && time < self.end
        } else {
            (self.days.contains(&day) && time >= self.start)
                || (self.days.contains(&day.pred()) && time < self.end)
        }
    }

    /// The next instant at or after `now` when this window opens (within two weeks).
    pub fn next_open(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local_date = now.with_timezone(&self.zone).date_naive();
        (0..15)
            .filter_map(|i| {
                let date = local_date + Duration::days(i);
                if !self.days.contains(&date.weekday()) {
                    return None;
                }
                // A start that falls in a daylight-saving gap opens at the first valid
                // instant after it.
                let naive = date.and_time(self.start);
                self.zone
                    .from_local_datetime(&naive)
                    .earliest()
                    .or_else(|| {
                        self.zone
                            .from_local_datetime(&(naive + Duration::hours(1)))
                            .earliest()
                    })
                    .map(|t| t.with_timezone(&Utc))
            })
            .find(|t| *t >= now)
    }
}

/// Whether `now` is inside any of `windows` (no windows: always open), and if not, when the
/// next one opens.
pub fn open_at(windows: &[Window], now: DateTime<Utc>) -> Result<(), Option<DateTime<Utc>>> {
    if windows.is_empty() || windows.iter().any(|w| w.contains(now)) {
        return Ok(());
    }
    Err(windows.iter().filter_map(|w| w.next_open(now)).min())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window(days: &[&str], hours: &str, zone: &str) -> Window {
        let (start, end) = parse_hours(hours).unwrap();
        Window {
            days: parse_days(&days.iter().map(|d| (*d).to_owned()).collect::<Vec<_>>()).unwrap(),
            start,
            end,
            zone: parse_zone(zone).unwrap(),
        }
    }

    #[test]
    fn a_window_is_read_in_its_own_time_zone() {
        let w = window(&["MON-THU"], "09:00-16:00", "Europe/Stockholm");
        // 2026-11-23 is a Monday; Stockholm is UTC+1 in November.
        assert!(w.contains(at("2026-11-23T08:00:00Z")));
        assert!(!w.contains(at("2026-11-23T07:59:59Z")));
        assert!(!w.contains(at("2026-11-23T15:00:00Z")));
        assert!(!w.contains(at("2026-11-27T10:00:00Z")), "Friday");
        assert_eq!(
            w.next_open(at("2026-11-26T16:00:00Z")),
            Some(at("2026-11-30T08:00:00Z"))
        );
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_opens() {
        let w = window(&["FRI"], "22:00-02:00", "UTC");
        assert!(w.contains(at("2026-11-27T23:00:00Z")));
        assert!(w.contains(at("2026-11-28T01:59:00Z")), "Saturday morning");
        assert!(!w.contains(at("2026-11-29T01:00:00Z")), "Sunday morning");
    }

    #[test]
    fn a_start_in_a_daylight_saving_gap_opens_after_the_gap() {
        // Europe/Stockholm skips 02:00-03:00 on 2027-03-28 (a Sunday).
        let w = window(&["SUN"], "02:30-05:00", "Europe/Stockholm");
        assert_eq!(
            w.next_open(at("2027-03-28T00:00:00Z")),
            Some(at("2027-03-28T01:30:00Z"))
        );
    }

    #[test]
    fn no_windows_means_always_open_and_otherwise_the_next_opening_is_named() {
        assert_eq!(open_at(&[], at("2026-11-23T03:00:00Z")), Ok(()));
        let ws = [
            window(&["TUE"], "10:00-11:00", "UTC"),
            window(&["MON"], "12:00-13:00", "UTC"),
        ];
        assert_eq!(
            open_at(&ws, at("2026-11-23T03:00:00Z")),
            Err(Some(at("2026-11-23T12:00:00Z")))
        );
    }

    #[test]
    fn bad_days_hours_and_zones_say_what_is_expected() {
        assert!(
            parse_days(&["MOON".into()])
                .unwrap_err()
                .contains("use MON")
        );
        assert!(parse_hours("9-5").unwrap_err().contains("HH:MM-HH:MM"));
        assert!(parse_hours("09:00-09:00").unwrap_err().contains("empty"));
        assert!(parse_zone("Mars/Olympus").unwrap_err().contains("IANA"));
    }
}
