//! What pushes cost under a LINE plan: the month's included messages, then extra messages at a
//! price (tiered by how many the month has used), or none at all on plans without extras.
//!
//! LINE publishes the fee and the included messages; the exact tier tables of the larger plans
//! are not public in our sources, so the presets carry the starting price only and a brand with
//! its contract's tiers writes `{fee, currency, included, extra, tiers}` instead.

use serde::{Deserialize, Serialize};

/// Messages above `above` (counted over the whole month) cost `price` each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tier {
    pub above: u64,
    pub price: f64,
}

/// A plan: monthly fee, included messages, and the price of messages beyond them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Plan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub fee: f64,
    pub currency: String,
    /// Messages included in the fee each month.
    pub included: u64,
    /// Price of one message beyond `included`; absent: the plan sends none beyond them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<f64>,
    /// Lower prices further up the month, by the month's total count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<Tier>,
}

/// A plan as the settings give it: a preset's name or the plan itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PlanSpec {
    Preset(String),
    Custom(Plan),
}

/// (name, fee, currency, included, extra). Taiwan since 2023-09 and 2019-04 to 2023-08, Japan since
/// 2023-06; prices exclude tax.
const PRESETS: [(&str, f64, &str, u64, Option<f64>); 9] = [
    ("tw-2023-light", 0.0, "TWD", 200, None),
    ("tw-2023-medium", 800.0, "TWD", 3_000, None),
    ("tw-2023-high", 1_200.0, "TWD", 6_000, Some(0.2)),
    ("tw-2019-light", 0.0, "TWD", 500, None),
    ("tw-2019-medium", 800.0, "TWD", 4_000, Some(0.2)),
    ("tw-2019-high", 4_000.0, "TWD", 25_000, Some(0.15)),
    ("jp-2023-communication", 0.0, "JPY", 200, None),
    ("jp-2023-light", 5_000.0, "JPY", 5_000, None),
    ("jp-2023-standard", 15_000.0, "JPY", 30_000, Some(3.0)),
];

pub fn preset_names() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|p| p.0)
}

impl PlanSpec {
    pub fn resolve(&self) -> Result<Plan, String> {
        match self {
            PlanSpec::Preset(name) => PRESETS
                .iter()
                .find(|p| p.0 == name)
                .map(|&(name, fee, currency, included, extra)| Plan {
                    name: Some(name.into()),
                    fee,
                    currency: currency.into(),
                    included,
                    extra,
                    tiers: vec![],
                })
                .ok_or_else(|| {
                    format!(
                        "unknown plan {name:?}: use one of {}, or {{fee, currency, included, extra, tiers}}",
                        preset_names().collect::<Vec<_>>().join(", ")
                    )
                }),
            PlanSpec::Custom(plan) => {
                if plan.fee < 0.0 || plan.extra.is_some_and(|e| e < 0.0) || plan.tiers.iter().any(|t| t.price < 0.0) {
                    return Err("plan prices cannot be negative".into());
                }
                if plan.tiers.windows(2).any(|w| matches!(w, [a, b] if a.above >= b.above)) {
                    return Err("plan tiers must be in increasing order of `above`".into());
                }
                if !plan.tiers.is_empty() && plan.extra.is_none() {
                    return Err(
                        "plan tiers need an `extra` price (the plan sends no extra messages without one)".into()
                    );
                }
                Ok(plan.clone())
            }
        }
    }
}

/// The month as LINE reports it: the limit (`GET /v2/bot/message/quota`) and what was sent so far
/// (`.../quota/consumption`: push, multicast, narrowcast and broadcast, OA Manager's included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Month {
    /// None: LINE sets no limit (`{"type": "none"}`).
    pub quota: Option<u64>,
    pub used: u64,
}

/// What `messages` more messages this month cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    pub currency: String,
    /// Of these messages, how many the plan's included messages still cover.
    pub included: u64,
    pub extra: u64,
    /// The price of the extra messages.
    pub cost: f64,
    /// How many of these messages the month can still take before LINE's monthly limit (None: no
    /// limit in the way); when lower than the messages, the campaign would pause there.
    pub stops_after: Option<u64>,
}

impl Plan {
    /// Prices `messages` more messages on top of `month.used`.
    pub fn quote(&self, month: Month, messages: u64) -> Quote {
        // LINE's quota is the authority on the limit; a plan without extras stops at its included.
        let limit = month.quota.or(if self.extra.is_none() { Some(self.included) } else { None });
        let room = limit.map(|l| l.saturating_sub(month.used));
        let sendable = room.map_or(messages, |r| r.min(messages));
        let included = self.included.saturating_sub(month.used).min(sendable);
        let extra = sendable - included;
        let first_extra = month.used.max(self.included) + 1;
        let cost = self.extra_cost(first_extra, extra);
        Quote { currency: self.currency.clone(), included, extra, cost, stops_after: room.filter(|r| *r < messages) }
    }

    /// The price of `count` extra messages, the first being the month's `first`-th message.
    pub(crate) fn extra_cost(&self, first: u64, count: u64) -> f64 {
        let Some(base) = self.extra else { return 0.0 };
        let mut cost = 0.0;
        let mut at = first;
        let end = first + count; // exclusive
        while at < end {
            // The price at `at`, and where it next changes.
            let price = self.tiers.iter().rev().find(|t| at > t.above).map_or(base, |t| t.price);
            let next_change = self.tiers.iter().map(|t| t.above + 1).find(|b| *b > at).unwrap_or(end).min(end);
            cost += price * (next_change - at) as f64;
            at = next_change;
        }
        (cost * 100.0).round() / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preset(name: &str) -> Plan {
        PlanSpec::Preset(name.into()).resolve().unwrap()
    }

    #[test]
    fn a_plan_without_extras_stops_at_its_included_messages() {
        let q = preset("tw-2023-medium").quote(Month { quota: None, used: 2_900 }, 250);
        assert_eq!((q.included, q.extra, q.cost, q.stops_after), (100, 0, 0.0, Some(100)));
        // LINE's own quota wins (a purchased top-up, say).
        let q = preset("tw-2023-medium").quote(Month { quota: Some(3_500), used: 2_900 }, 250);
        assert_eq!((q.included, q.extra, q.stops_after), (100, 150, None));
    }

    #[test]
    fn extras_are_priced_by_tier_over_the_month() {
        let plan = Plan {
            name: None,
            fee: 1_200.0,
            currency: "TWD".into(),
            included: 6_000,
            extra: Some(0.2),
            tiers: vec![Tier { above: 10_000, price: 0.15 }],
        };
        // 3,000 included left, then 4,000 at 0.2 (to 10,000), then 1,000 at 0.15.
        let q = plan.quote(Month { quota: None, used: 3_000 }, 8_000);
        assert_eq!((q.included, q.extra), (3_000, 5_000));
        assert_eq!(q.cost, 4_000.0 * 0.2 + 1_000.0 * 0.15);
        assert!(PlanSpec::Preset("jp-2023-standard".into()).resolve().is_ok());
        assert!(PlanSpec::Preset("tw-2024".into()).resolve().unwrap_err().contains("tw-2023-medium"));
    }
}
