//! Campaign files and account settings: YAML written by people, validated while read, errors with
//! the line and column they come from (as the rules file). Formats: `examples/README.md`.

use std::collections::BTreeSet;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::price::PlanSpec;
use crate::rules::file::{Messages, RulesError};
use crate::rules::window::{Hours, Zone};
use crate::segment::Expr;

/// A whole campaign file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CampaignFile {
    /// Lowercase letters, digits and `-`, at most 64: the key of the campaign. Reusable once the
    /// campaign it named is cancelled or done.
    #[serde(deserialize_with = "campaign_id")]
    pub id: String,
    pub name: String,
    /// A segment expression (README "Segments").
    pub segment: String,
    /// 1-5 LINE message objects (a string is a text message); one recipient is one billable
    /// message whatever their number.
    pub messages: Messages,
    #[serde(default)]
    pub schedule: Schedule,
    /// Share of the friends left after suppressions and caps who are held out (never sent),
    /// `10%`; 0 when absent.
    #[serde(default, deserialize_with = "percent")]
    pub holdout: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Order updates and the like: outside the frequency caps and the minimum gap (suppressions
    /// still apply).
    #[serde(default)]
    pub transactional: bool,
    /// Recipients per multicast request, 1-500: smaller batches send gradually.
    #[serde(default = "full_batch", deserialize_with = "batch_size")]
    pub batch_size: u32,
    /// Sent as `customAggregationUnits`, so LINE's own statistics count the campaign by this name
    /// (`^[a-zA-Z0-9_]{1,30}$`; LINE allows 1,000 names a month).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "aggregation_unit")]
    pub aggregation_unit: Option<String>,
}

/// LINE's most recipients of one multicast request.
pub const MAX_BATCH: u32 = 500;

fn full_batch() -> u32 {
    MAX_BATCH
}

fn batch_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if (1..=MAX_BATCH).contains(&n) {
        Ok(n)
    } else {
        Err(de::Error::custom(format!("batchSize {n}: from 1 to {MAX_BATCH} recipients a request")))
    }
}

/// LINE's pattern for a unit name: `^[a-zA-Z0-9_]{1,30}$`.
pub fn is_aggregation_unit(s: &str) -> bool {
    (1..=30).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn aggregation_unit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let unit = String::deserialize(d)?;
    if is_aggregation_unit(&unit) {
        Ok(Some(unit))
    } else {
        Err(de::Error::custom(format!(
            "aggregationUnit {unit:?}: 1-30 letters, digits and '_' (LINE's pattern ^[a-zA-Z0-9_]{{1,30}}$)"
        )))
    }
}

/// The holdout in basis points (1/100 of a percent): `holdout: 10%` is 1,000.
pub const BASIS: u32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Budget {
    /// Most billable messages (recipients) the campaign may plan.
    pub messages: u64,
}

/// When the campaign may start sending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Schedule {
    #[default]
    Now,
    At(jiff::Timestamp),
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Schedule::Now => s.serialize_str("now"),
            Schedule::At(t) => s.serialize_str(&t.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "now" {
            return Ok(Schedule::Now);
        }
        text.parse::<jiff::Timestamp>().map(Schedule::At).map_err(|_| {
            de::Error::custom(format!("schedule {text:?}: use `now` or a time like 2026-12-01T10:00:00+08:00"))
        })
    }
}

impl Schedule {
    pub fn not_before_ms(self) -> i64 {
        match self {
            Schedule::Now => 0,
            Schedule::At(t) => t.as_millisecond(),
        }
    }
}

pub fn is_campaign_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

fn campaign_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let id = String::deserialize(d)?;
    if is_campaign_id(&id) {
        Ok(id)
    } else {
        Err(de::Error::custom(format!("campaign id {id:?}: 1-64 lowercase letters, digits and '-'")))
    }
}

/// `10%`, `2.5%` (or a bare number of percent) as basis points, at most 90%. A visitor, not a
/// buffered value, so an error keeps its line and column.
fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    struct Percent;
    impl Percent {
        fn check<E: de::Error>(p: f64, shown: &str) -> Result<u32, E> {
            if (0.0..=90.0).contains(&p) {
                Ok((p * 100.0).round() as u32)
            } else {
                Err(E::custom(format!("holdout {shown}: a percentage from 0% to 90%")))
            }
        }
    }
    impl de::Visitor<'_> for Percent {
        type Value = u32;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a percentage like 10%")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
            let number = v.trim().trim_end_matches('%').trim();
            match number.parse::<f64>() {
                Ok(p) => Self::check(p, v),
                Err(_) => Err(E::custom(format!("holdout {v:?}: a percentage like 10%"))),
            }
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            Self::check(v as f64, &v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
            Self::check(v as f64, &v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u32, E> {
            Self::check(v, &v.to_string())
        }
    }
    d.deserialize_any(Percent)
}

impl CampaignFile {
    /// Parses and validates a campaign file (the segment expression included).
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let file: CampaignFile = serde_yaml::from_str(text).map_err(yaml_error)?;
        if let Err(e) = Expr::parse(&file.segment) {
            let location = value_location(text, "segment").map(|(l, c)| (l, c + e.position));
            return Err(RulesError { location, message: format!("bad segment expression: {}", e.message) });
        }
        if file.name.trim().is_empty() {
            return Err(RulesError { location: value_location(text, "name"), message: "name is empty".into() });
        }
        if file.budget.is_some_and(|b| b.messages == 0) {
            return Err(RulesError {
                location: value_location(text, "budget"),
                message: "budget.messages must be at least 1 (leave budget out for no budget)".into(),
            });
        }
        Ok(file)
    }

    pub fn expr(&self) -> Expr {
        // Checked in parse.
        Expr::parse(&self.segment).unwrap_or(Expr::All)
    }
}

/// Account settings (`oa settings apply`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccountSettings {
    /// The account's one time zone: cap periods are calendar periods in it.
    pub timezone: Zone,
    /// Frequency caps on pushes per friend; transactional campaigns are outside them.
    #[serde(default)]
    pub caps: Vec<Cap>,
    /// The LINE plan: a preset name or `{fee, currency, included, extra, tiers}`.
    pub plan: PlanSpec,
    /// User IDs never pushed (opt-outs).
    #[serde(default, deserialize_with = "user_ids")]
    pub suppress: Vec<String>,
    /// Multicast requests a second for the whole fleet of senders: LINE's limit per channel is
    /// 200; lower it for a channel shared with other tools.
    #[serde(default = "line_rate", deserialize_with = "send_rate")]
    pub send_rate: u32,
    /// No campaign sends in these hours of the account's time zone (`21:00-09:00`): a campaign
    /// running into them pauses and resumes when they end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<Hours>,
    /// Least time between two campaign pushes to one friend (`3d`), across period boundaries.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::names::span_opt")]
    pub min_gap: Option<std::time::Duration>,
    /// Most billable messages a calendar month across every campaign: the sender pauses a
    /// campaign that would go past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_budget: Option<Budget>,
    /// 1 USD in the plan's currency, and the day it was set: AWS costs are reported beside LINE's
    /// in the account's currency (`exchangeRate: { USD: 32.5, date: 2026-12-01 }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_rate: Option<crate::costs::model::ExchangeRate>,
}

/// LINE's multicast rate limit per channel, requests a second.
pub const LINE_MULTICAST_RATE: u32 = 200;

fn line_rate() -> u32 {
    LINE_MULTICAST_RATE
}

fn send_rate<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if (1..=2_000).contains(&n) {
        Ok(n)
    } else {
        Err(de::Error::custom(format!("sendRate {n}: from 1 to 2000 requests a second (LINE's default limit: 200)")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cap {
    pub per: Period,
    #[serde(deserialize_with = "cap_max")]
    pub max: u32,
}

/// A calendar period in the account's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
}

fn cap_max<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let max = u32::deserialize(d)?;
    if (1..=100).contains(&max) {
        Ok(max)
    } else {
        Err(de::Error::custom(format!("max {max}: from 1 to 100 pushes a period")))
    }
}

fn user_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let ids = Vec::<String>::deserialize(d)?;
    if let Some(bad) = ids.iter().find(|u| !crate::shop::is_line_user_id(u)) {
        return Err(de::Error::custom(format!("{bad:?} is not a LINE user ID (U + 32 hex digits)")));
    }
    Ok(ids)
}

impl AccountSettings {
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let settings: AccountSettings = serde_yaml::from_str(text).map_err(yaml_error)?;
        let mut periods = BTreeSet::new();
        if let Some(cap) = settings.caps.iter().find(|c| !periods.insert(c.per)) {
            return Err(RulesError {
                location: value_location(text, "caps"),
                message: format!("two caps per {:?}: give one per period", cap.per),
            });
        }
        settings.plan.resolve().map_err(|message| RulesError { location: value_location(text, "plan"), message })?;
        Ok(settings)
    }
}

fn yaml_error(e: serde_yaml::Error) -> RulesError {
    RulesError {
        location: e.location().map(|l| (l.line(), l.column())),
        message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
    }
}

/// Line and column of the value of a top-level `key:`.
fn value_location(text: &str, key: &str) -> Option<(usize, usize)> {
    let prefix = format!("{key}:");
    text.lines().enumerate().find_map(|(i, line)| {
        let rest = line.strip_prefix(&prefix)?;
        let skipped = rest.len() - rest.trim_start().len();
        let quote = usize::from(rest.trim_start().starts_with(['"', '\'']));
        Some((i + 1, prefix.len() + skipped + quote + 1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAMPAIGN: &str = r#"id: cart-2026-11
name: Cart reminder
segment: tagged(cart:open, within 3d) AND NOT buyer
messages: ["Your cart misses you"]
schedule: now
holdout: 10%
budget: { messages: 5000 }
transactional: false
"#;

    #[test]
    fn the_example_campaign_reads() {
        let c = CampaignFile::parse(CAMPAIGN).unwrap();
        assert_eq!((c.id.as_str(), c.holdout, c.budget.unwrap().messages), ("cart-2026-11", 1000, 5000));
        assert_eq!(c.messages.0[0]["type"], "text");
    }

    #[test]
    fn errors_name_line_and_column() {
        let bad = CAMPAIGN.replace("AND NOT buyer", "AND (buyer");
        let e = CampaignFile::parse(&bad).unwrap_err();
        assert_eq!(e.location, Some((3, 10 + "tagged(cart:open, within 3d) AND (buyer".len())));
        let e = CampaignFile::parse(&CAMPAIGN.replace("10%", "95%")).unwrap_err();
        assert_eq!(e.location.map(|l| l.0), Some(6), "{e}");
        let e = CampaignFile::parse(&CAMPAIGN.replace("cart-2026-11", "Cart 11")).unwrap_err();
        assert!(e.message.contains("lowercase"), "{e}");
        let e = CampaignFile::parse(&format!("{CAMPAIGN}colour: red\n")).unwrap_err();
        assert!(e.message.contains("unknown field `colour`"), "{e}");
        let e = CampaignFile::parse(&CAMPAIGN.replace("[\"Your cart misses you\"]", "[]")).unwrap_err();
        assert_eq!(e.location.map(|l| l.0), Some(4), "{e}");
    }

    #[test]
    fn settings_read_and_refuse_what_cannot_be_used() {
        let good = "timezone: Asia/Taipei\ncaps:\n  - { per: month, max: 2 }\nplan: tw-2023-medium\nsuppress: []\n";
        let s = AccountSettings::parse(good).unwrap();
        assert_eq!(s.caps, vec![Cap { per: Period::Month, max: 2 }]);
        let e = AccountSettings::parse(&good.replace("tw-2023-medium", "tw-2099")).unwrap_err();
        assert_eq!(e.location, Some((4, 7)), "{e}");
        let e = AccountSettings::parse(&good.replace("max: 2", "max: 0")).unwrap_err();
        assert!(e.message.contains("from 1 to 100"), "{e}");
        let e = AccountSettings::parse(&good.replace("[]", "[nobody]")).unwrap_err();
        assert!(e.message.contains("not a LINE user ID"), "{e}");
        let e = AccountSettings::parse(&good.replace("Asia/Taipei", "Mars/Olympus")).unwrap_err();
        assert_eq!(e.location.map(|l| l.0), Some(1), "{e}");
    }
}
