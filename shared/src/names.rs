//! Names and spans written the same way in rules files, segment expressions, campaign files and
//! account settings: tag names (`dessert`, `cart:open`) and durations (`30m`, `24h`, `7d`). A leaf
//! module: it uses nothing else of the crate, so `rules` and `segment` both build on it without
//! depending on each other.

use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serializer};

/// Longest tag name, in bytes (it is part of DynamoDB keys).
pub const MAX_TAG_LEN: usize = 100;

/// Whether `w` is a tag name: letters of any script (lower case where the script has case), digits,
/// `_`, and after the first character also `:` `.` `-`; at most [`MAX_TAG_LEN`] bytes.
pub fn is_tag(w: &str) -> bool {
    let letter = |c: char| (c.is_alphanumeric() && !c.is_uppercase()) || c == '_';
    let mut chars = w.chars();
    w.len() <= MAX_TAG_LEN
        && chars.next().is_some_and(letter)
        && chars.all(|c| letter(c) || matches!(c, ':' | '.' | '-'))
}

/// Longest duration accepted: 100 years. More than any cooldown, expiry or segment needs, and short
/// enough that adding it to a time in milliseconds cannot overflow.
pub const MAX_SPAN: Duration = Duration::from_secs(36_500 * 86_400);

/// Durations written as `<number><unit>` with unit s, m, h or d (`90s`, `30m`, `24h`, `7d`), at
/// most [`MAX_SPAN`].
pub fn parse_span(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a duration like 30m, 24h or 7d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("{s:?} is not a duration like 30m, 24h or 7d (units: s, m, h, d)")),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .filter(|d| *d <= MAX_SPAN)
        .ok_or_else(|| format!("{s:?} is longer than 100 years"))
}

/// Writes a duration back in the largest unit that divides it.
pub fn format_span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `30m`, `24h`, `7d` in YAML, a [`Duration`] in code (`#[serde(with = "span")]`).
pub mod span {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_span(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse_span(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// An optional span (`#[serde(default, with = "span_opt")]`).
pub mod span_opt {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => span::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        span::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_and_write_back() {
        assert_eq!(parse_span("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_span("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(parse_span("7w").is_err());
        assert_eq!(parse_span("36500d").unwrap(), MAX_SPAN);
        for too_long in ["36501d", "213503982334602d", "18446744073709551615d"] {
            assert!(parse_span(too_long).unwrap_err().contains("longer than 100 years"), "{too_long}");
        }
        assert_eq!(format_span(Duration::from_secs(7200)), "2h");
        assert_eq!(format_span(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn tag_names() {
        assert!(is_tag("dessert") && is_tag("cart:open") && is_tag("甜點") && is_tag("_x.y-z"));
        assert!(!is_tag("Dessert") && !is_tag(":x") && !is_tag("") && !is_tag("a b"));
        assert!(is_tag(&"a".repeat(MAX_TAG_LEN)) && !is_tag(&"a".repeat(MAX_TAG_LEN + 1)));
    }
}
