//! `oa segment` and `oa tags`: who a segment selects, and what the tags say.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use shared::names::format_span;
use shared::segment::resolve::ReadStats;
use shared::segment::Expr;
use shared::tagging::TagItem;

/// Parses an expression, or explains where it is wrong with a caret under the spot.
pub fn parse(text: &str) -> Result<Expr, String> {
    Expr::parse(text).map_err(|e| format!("bad segment expression at position {}\n{}", e.position, e.render(text)))
}

/// A span of milliseconds, rounded down to its largest unit: `3d`, `5h`, `12m`, `40s`.
pub fn age(ms: i64) -> String {
    let secs = (ms.max(0) / 1000) as u64;
    let unit = [86_400, 3_600, 60, 1].into_iter().find(|u| secs >= *u).unwrap_or(1);
    format_span(Duration::from_secs(secs / unit * unit))
}

/// What a resolution read, for the line under a count.
pub fn cost(read: &ReadStats, elapsed: Duration) -> String {
    format!(
        "read {} index items in {} queries ({:.1} read units) in {} ms",
        read.items,
        read.requests,
        read.capacity_units,
        elapsed.as_millis()
    )
}

/// `oa tags list`: one line per tag with friends, most friends first.
pub fn format_counts(counts: &BTreeMap<String, i64>) -> String {
    let mut rows: Vec<(&String, &i64)> = counts.iter().filter(|(_, n)| **n > 0).collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    if rows.is_empty() {
        return "no tagged friends yet\n".into();
    }
    let width = rows.iter().map(|(t, _)| t.chars().count()).max().unwrap_or(3).max(3);
    let mut out = format!("{:<width$}  friends\n", "tag");
    for (tag, n) in rows {
        let _ = writeln!(out, "{tag:<width$}  {n}");
    }
    out
}

/// `oa tags of USERID`: the friend's live tags with source and age, then the expired and removed
/// ones (which no segment counts).
pub fn format_tags_of(items: &[TagItem], now_ms: i64) -> String {
    let mut items: Vec<&TagItem> = items.iter().collect();
    items.sort_by(|a, b| (!a.is_live(now_ms)).cmp(&!b.is_live(now_ms)).then(a.tag.cmp(&b.tag)));
    if items.is_empty() {
        return "no tags\n".into();
    }
    let width = items.iter().map(|t| t.tag.chars().count()).max().unwrap_or(3).max(3);
    let mut out = format!("{:<width$}  {:<10}  {:<24}  state\n", "tag", "age", "source");
    for t in items {
        let state = match (t.active, t.expires_at_ms) {
            (false, _) => format!("removed {} ago", age(now_ms - t.changed_at_ms)),
            (true, Some(e)) if e <= now_ms => format!("expired {} ago", age(now_ms - e)),
            (true, Some(e)) => format!("expires in {}", age(e - now_ms)),
            (true, None) => "live".into(),
        };
        let state = if t.is_live(now_ms) && !t.indexed { format!("{state} (friend blocked)") } else { state };
        let _ = writeln!(out, "{:<width$}  {:<10}  {:<24}  {state}", t.tag, age(now_ms - t.tagged_at_ms), t.source);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_expression_shows_where() {
        let e = parse("dessert AND (vip").unwrap_err();
        assert_eq!(e, "bad segment expression at position 16\ndessert AND (vip\n                ^ expected ')'");
    }

    #[test]
    fn ages_and_tag_listings_read_well() {
        assert_eq!(age(3 * 86_400_000 + 5_000), "3d");
        assert_eq!(age(90_000), "1m");
        assert_eq!(age(-5), "0s");
        let now = 10 * 86_400_000;
        let item = |tag: &str, active, expires: Option<i64>| TagItem {
            tag: tag.into(),
            active,
            tagged_at_ms: now - 2 * 86_400_000,
            expires_at_ms: expires,
            source: "shop:add_to_cart".into(),
            changed_at_ms: now - 3_600_000,
            indexed: active,
            followed_at_ms: None,
            version: 1,
        };
        let text = format_tags_of(
            &[
                item("cart:open", true, Some(now + 5 * 86_400_000)),
                item("vip", false, None),
                item("old", true, Some(now - 1)),
            ],
            now,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("cart:open") && lines[1].ends_with("expires in 5d"), "{text}");
        assert!(lines[2].starts_with("old") && lines[2].contains("expired 0s ago"), "{text}");
        assert!(lines[3].starts_with("vip") && lines[3].ends_with("removed 1h ago"), "{text}");
        let counts = BTreeMap::from([("dessert".to_string(), 3), ("vip".to_string(), 7), ("gone".to_string(), 0)]);
        assert_eq!(format_counts(&counts), "tag      friends\nvip      7\ndessert  3\n");
    }
}
