//! Active windows: "weekdays 09:00-18:00 in Asia/Taipei". A window whose end is before its start
//! runs past midnight (`22:00-02:00`); the day it names is the day it starts.

use std::collections::BTreeSet;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// A time zone as written in the file (kept for writing back and comparing).
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Default for Zone {
    fn default() -> Self {
        Zone { name: "UTC".into(), tz: TimeZone::UTC }
    }
}

impl Zone {
    pub fn parse(name: &str) -> Result<Self, String> {
        let tz = TimeZone::get(name)
            .ok()
            .or_else(|| fixed_offset(name).map(TimeZone::fixed))
            .ok_or_else(|| format!("unknown time zone {name:?} (use an IANA name like Asia/Taipei, or +08:00)"))?;
        Ok(Zone { name: name.to_string(), tz })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }
}

/// `+HH:MM` or `-HH:MM`.
fn fixed_offset(s: &str) -> Option<jiff::tz::Offset> {
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = s[1..].split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if !(0..=14).contains(&h) || !(0..=59).contains(&m) {
        return None;
    }
    jiff::tz::Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Zone::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    fn of(w: Weekday) -> Day {
        match w {
            Weekday::Monday => Day::Mon,
            Weekday::Tuesday => Day::Tue,
            Weekday::Wednesday => Day::Wed,
            Weekday::Thursday => Day::Thu,
            Weekday::Friday => Day::Fri,
            Weekday::Saturday => Day::Sat,
            Weekday::Sunday => Day::Sun,
        }
    }
}

/// `HH:MM-HH:MM`, start inclusive, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    pub start: Time,
    pub end: Time,
}

impl Hours {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("hours {s:?} must look like 09:00-18:00");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let t = |x: &str| Time::strptime("%H:%M", x.trim()).map_err(|_| bad());
        let h = Hours { start: t(a)?, end: t(b)? };
        if h.start == h.end {
            return Err(format!("hours {s:?} are empty (start equals end)"));
        }
        Ok(h)
    }
}

impl Serialize for Hours {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}-{}", self.start.strftime("%H:%M"), self.end.strftime("%H:%M")))
    }
}

impl<'de> Deserialize<'de> for Hours {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Hours::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// One active window. Absent days mean every day; absent hours mean all day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Window {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub days: BTreeSet<Day>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<Hours>,
    /// Overrides the file's time zone for this window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<Zone>,
}

impl Window {
    /// Whether `at` falls inside this window, read in the window's zone (or `default_zone`).
    pub fn contains(&self, at: Timestamp, default_zone: &Zone) -> bool {
        let zone = self.timezone.as_ref().unwrap_or(default_zone);
        let local = at.to_zoned(zone.tz.clone());
        let (day, time) = (Day::of(local.weekday()), local.time());
        let day_ok = |d: Day| self.days.is_empty() || self.days.contains(&d);
        match self.hours {
            None => day_ok(day),
            Some(h) if h.start < h.end => day_ok(day) && h.start <= time && time < h.end,
            // Past midnight: the late part belongs to the day it started on.
            Some(h) => {
                let yesterday = Day::of(local.weekday().previous());
                (day_ok(day) && time >= h.start) || (day_ok(yesterday) && time < h.end)
            }
        }
    }
}

/// Whether a rule with these windows is active at `at` (no windows: always).
pub fn active(windows: &[Window], at: Timestamp, default_zone: &Zone) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.contains(at, default_zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(yaml: &str) -> Window {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn weekday_office_hours_in_taipei() {
        let w = window("{ days: [mon, tue, wed, thu, fri], hours: \"09:00-18:00\" }");
        let taipei = Zone::parse("Asia/Taipei").unwrap();
        // 2026-11-23 is a Monday. 01:30Z = 09:30 in Taipei.
        assert!(w.contains(at("2026-11-23T01:30:00Z"), &taipei));
        assert!(!w.contains(at("2026-11-23T10:00:00Z"), &taipei), "18:00 local is outside");
        assert!(!w.contains(at("2026-11-22T01:30:00Z"), &taipei), "Sunday");
        assert!(!w.contains(at("2026-11-23T01:30:00Z"), &Zone::default()), "01:30 UTC is before 09:00");
    }

    #[test]
    fn windows_past_midnight_belong_to_the_starting_day() {
        let w = window("{ days: [fri], hours: \"22:00-02:00\", timezone: \"+09:00\" }");
        let utc = Zone::default();
        // Friday 2026-11-27 23:00 JST = 14:00Z; Saturday 01:00 JST = Friday 16:00Z.
        assert!(w.contains(at("2026-11-27T14:00:00Z"), &utc));
        assert!(w.contains(at("2026-11-27T16:00:00Z"), &utc));
        assert!(!w.contains(at("2026-11-28T14:00:00Z"), &utc), "Saturday 23:00");
        assert!(!w.contains(at("2026-11-27T12:00:00Z"), &utc), "Friday 21:00");
    }

    #[test]
    fn bad_hours_are_rejected() {
        assert!(Hours::parse("9-18").is_err());
        assert!(Hours::parse("09:00-09:00").is_err());
        assert!(Zone::parse("Nowhere/City").is_err());
        assert!(Zone::parse("+08:00").is_ok());
        for bad in ["+-2000000000:00", "+00:-999999999", "-08:60"] {
            assert!(Zone::parse(bad).is_err(), "{bad}");
        }
    }
}
