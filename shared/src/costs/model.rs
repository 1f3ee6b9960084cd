//! From measured usage to money.
//!
//! - **A function's AWS cost** ([`Usage::cost`]), in USD: Lambda is billed duration x memory x the
//!   GB-second price, plus the request price (for `provided.al2023` the init phase is already inside
//!   the billed duration: it is never added again); DynamoDB is the read and write units the calls
//!   reported consuming; SQS is requests, each 64 KB of payload one request; logs are the bytes
//!   ingested.
//! - **The stack's fixed monthly cost** ([`Fixed::cost`]): custom metrics, alarms, the secret and
//!   stored logs, paid whether anything happens or not.
//! - **A campaign's LINE bill** ([`line_cost`]), in the plan's currency: **allocated**, what a
//!   message really costs the brand (the monthly fee spread over the plan's included messages, and
//!   the extra-message price beyond them), and **marginal**, what the campaign adds to the month's
//!   bill (nothing inside the included messages).
//! - **USD into the account's currency** ([`ExchangeRate`]), applied once, at the end.

use serde::{Deserialize, Serialize};

use super::prices::RegionPrices;
use crate::campaign::price::Plan;

/// The architecture a function runs on: the GB-second price differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Arm64,
    X86_64,
}

/// What one function used over a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Usage {
    pub invocations: f64,
    /// The sum of each invocation's billed duration, in milliseconds.
    pub billed_ms: f64,
    pub read_units: f64,
    pub write_units: f64,
    /// Requests to standard queues and to FIFO queues (each 64 KB of payload is one request).
    pub sqs_requests: f64,
    pub sqs_fifo_requests: f64,
    /// Log bytes ingested.
    pub log_bytes: f64,
}

/// A cost in USD, by service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsCost {
    pub lambda: f64,
    pub dynamodb: f64,
    pub sqs: f64,
    pub logs: f64,
    pub total: f64,
}

impl std::ops::Add for AwsCost {
    type Output = AwsCost;
    fn add(self, o: AwsCost) -> AwsCost {
        AwsCost {
            lambda: self.lambda + o.lambda,
            dynamodb: self.dynamodb + o.dynamodb,
            sqs: self.sqs + o.sqs,
            logs: self.logs + o.logs,
            total: self.total + o.total,
        }
    }
}

/// Log ingestion is priced per GB of 2^30 bytes.
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

impl Usage {
    /// GB-seconds at `memory_mb`: what Lambda bills by.
    pub fn gb_seconds(&self, memory_mb: u32) -> f64 {
        self.billed_ms / 1000.0 * memory_mb as f64 / 1024.0
    }

    /// What this usage costs in USD at `prices`, for a function of `memory_mb` on `arch`.
    pub fn cost(&self, prices: &RegionPrices, memory_mb: u32, arch: Arch) -> AwsCost {
        let gb_second = match arch {
            Arch::Arm64 => prices.lambda_gb_second_arm64.usd,
            Arch::X86_64 => prices.lambda_gb_second_x86.usd,
        };
        let lambda = self.gb_seconds(memory_mb) * gb_second + self.invocations * prices.lambda_request.usd;
        let dynamodb =
            self.read_units * prices.dynamodb_read_unit.usd + self.write_units * prices.dynamodb_write_unit.usd;
        let sqs = self.sqs_requests * prices.sqs_request.usd + self.sqs_fifo_requests * prices.sqs_fifo_request.usd;
        let logs = self.log_bytes / GIB * prices.logs_ingested_gb.usd;
        AwsCost { lambda, dynamodb, sqs, logs, total: lambda + dynamodb + sqs + logs }
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.invocations += o.invocations;
        self.billed_ms += o.billed_ms;
        self.read_units += o.read_units;
        self.write_units += o.write_units;
        self.sqs_requests += o.sqs_requests;
        self.sqs_fifo_requests += o.sqs_fifo_requests;
        self.log_bytes += o.log_bytes;
    }
}

/// SQS bills each 64 KB of a request's payload as one request.
pub fn sqs_requests_for(payload_bytes: u64) -> u64 {
    payload_bytes.div_ceil(64 * 1024).max(1)
}

/// What a stack pays each month whatever it handles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fixed {
    /// Custom metrics: one per metric name and dimension set.
    pub custom_metrics: u32,
    pub alarms: u32,
    pub secrets: u32,
    /// Logs kept, in GB of 2^30 bytes.
    pub stored_log_gb: f64,
}

impl Fixed {
    /// USD a month.
    pub fn cost(&self, prices: &RegionPrices) -> f64 {
        self.custom_metrics as f64 * prices.custom_metric_month.usd
            + self.alarms as f64 * prices.alarm_month.usd
            + self.secrets as f64 * prices.secret_month.usd
            + self.stored_log_gb * prices.logs_stored_gb_month.usd
    }
}

/// A campaign's LINE messages in money, in the plan's currency.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineCost {
    pub currency: String,
    /// The fee spread over the included messages, plus the extra-message price beyond them.
    pub allocated: f64,
    /// What these messages add to the month's bill: extra messages only.
    pub marginal: f64,
}

/// What `messages` billable messages cost under `plan` when the month had already used
/// `used_before` when they were sent. Not rounded (a report rounds for display, so campaigns still
/// add up to the fee). A plan with no included messages has no fee to spread: its messages cost
/// their extra price only. Messages beyond the included ones on a plan without extras (LINE
/// stops them unless the quota was raised) cost nothing here.
pub fn line_cost(plan: &Plan, used_before: u64, messages: u64) -> LineCost {
    let inside = plan.included.saturating_sub(used_before).min(messages);
    let per_included = if plan.included == 0 { 0.0 } else { plan.fee / plan.included as f64 };
    let marginal = plan.extra_cost(used_before.max(plan.included) + 1, messages - inside);
    let allocated = inside as f64 * per_included + marginal;
    LineCost { currency: plan.currency.clone(), allocated, marginal }
}

/// The month's LINE bill so far, in the plan's currency, once `used` billable messages went out:
/// the fee, plus the messages beyond the included ones at the extra price (tiered).
pub fn month_bill(plan: &Plan, used: u64) -> f64 {
    plan.fee + plan.extra_cost(plan.included + 1, used.saturating_sub(plan.included))
}

/// 1 USD in the account's currency, and the date it was set (`exchangeRate: { USD: 32.5, date:
/// 2026-12-01 }` in the account settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRate {
    #[serde(rename = "USD", deserialize_with = "positive")]
    pub usd: f64,
    #[serde(deserialize_with = "iso_date")]
    pub date: String,
}

impl ExchangeRate {
    /// `usd` in the account's currency.
    pub fn from_usd(&self, usd: f64) -> f64 {
        usd * self.usd
    }
}

fn positive<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let x = f64::deserialize(d)?;
    if x > 0.0 && x.is_finite() {
        Ok(x)
    } else {
        Err(serde::de::Error::custom(format!(
            "exchangeRate USD {x}: the price of 1 USD in the account's currency, above 0"
        )))
    }
}

fn iso_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<jiff::civil::Date>()
        .map(|_| s.clone())
        .map_err(|_| serde::de::Error::custom(format!("exchangeRate date {s:?}: the day it was set, YYYY-MM-DD")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::price::PlanSpec;
    use crate::costs::prices::PriceTable;

    fn tokyo() -> RegionPrices {
        PriceTable::checked_in().unwrap().region("ap-northeast-1").unwrap().clone()
    }

    #[test]
    fn a_functions_cost_is_billed_duration_times_memory_plus_requests_units_and_logs() {
        // 1,000 invocations of 40 ms billed at 256 MB on arm64: 10 GB-s.
        let usage = Usage {
            invocations: 1_000.0,
            billed_ms: 40_000.0,
            read_units: 2_000.0,
            write_units: 4_000.0,
            sqs_requests: 3_000.0,
            sqs_fifo_requests: 1_000.0,
            log_bytes: 512.0 * 1024.0 * 1024.0,
        };
        assert_eq!(usage.gb_seconds(256), 10.0);
        let c = usage.cost(&tokyo(), 256, Arch::Arm64);
        // By hand: 10 x 0.0000133334 + 1,000 x 0.0000002 = 0.000133334 + 0.0002.
        assert!((c.lambda - 0.000333334).abs() < 1e-12, "{c:?}");
        // 2,000 x 0.1425e-6 + 4,000 x 0.715e-6 = 0.000285 + 0.00286.
        assert!((c.dynamodb - 0.003145).abs() < 1e-12, "{c:?}");
        // 3,000 x 0.4e-6 + 1,000 x 0.5e-6.
        assert!((c.sqs - 0.0017).abs() < 1e-12, "{c:?}");
        // Half a GB at 0.76.
        assert!((c.logs - 0.38).abs() < 1e-12, "{c:?}");
        assert!((c.total - (c.lambda + c.dynamodb + c.sqs + c.logs)).abs() < 1e-15);
        let x86 = usage.cost(&tokyo(), 256, Arch::X86_64);
        assert!((x86.lambda - (10.0 * 0.0000166667 + 0.0002)).abs() < 1e-12);
    }

    #[test]
    fn each_64_kb_of_a_request_is_one_sqs_request() {
        assert_eq!(sqs_requests_for(0), 1);
        assert_eq!(sqs_requests_for(64 * 1024), 1);
        assert_eq!(sqs_requests_for(64 * 1024 + 1), 2);
        assert_eq!(sqs_requests_for(256 * 1024), 4);
    }

    #[test]
    fn the_fixed_monthly_cost_counts_metrics_alarms_the_secret_and_stored_logs() {
        let fixed = Fixed { custom_metrics: 20, alarms: 16, secrets: 1, stored_log_gb: 2.0 };
        // 20 x 0.30 + 16 x 0.10 + 0.40 + 2 x 0.03.
        assert!((fixed.cost(&tokyo()) - 8.06).abs() < 1e-9);
    }

    #[test]
    fn the_months_bill_is_the_fee_plus_the_messages_beyond_the_included_ones() {
        // Taiwan high: NT$1,200 for 6,000, then NT$0.2 each.
        let high = PlanSpec::Preset("tw-2023-high".into()).resolve().unwrap();
        assert!((month_bill(&high, 100) - 1_200.0).abs() < 1e-9);
        assert!((month_bill(&high, 6_500) - (1_200.0 + 500.0 * 0.2)).abs() < 1e-9);
        let medium = PlanSpec::Preset("tw-2023-medium".into()).resolve().unwrap();
        assert!((month_bill(&medium, 5_000) - 800.0).abs() < 1e-9, "no extras on medium");
    }

    #[test]
    fn allocated_spreads_the_fee_over_included_messages_and_marginal_counts_only_extras() {
        // Taiwan medium since 2023: NT$800 for 3,000 messages, none beyond them.
        let medium = PlanSpec::Preset("tw-2023-medium".into()).resolve().unwrap();
        let c = line_cost(&medium, 0, 500);
        assert_eq!((c.currency.as_str(), c.marginal), ("TWD", 0.0));
        assert!((c.allocated - 500.0 * 800.0 / 3_000.0).abs() < 1e-9, "{c:?}");
        // Three such campaigns in a month add up to the fee, not a cent more.
        let three: f64 = (0..3).map(|i| line_cost(&medium, i * 1_000, 1_000).allocated).sum();
        assert!((three - 800.0).abs() < 1e-9, "{three}");
        // Taiwan high since 2023: NT$1,200 for 6,000, then NT$0.2 each.
        let high = PlanSpec::Preset("tw-2023-high".into()).resolve().unwrap();
        // 5,800 used: 200 inside (200 x 0.2 = 40 allocated), 300 beyond (300 x 0.2 = 60, marginal).
        let c = line_cost(&high, 5_800, 500);
        assert!((c.allocated - 100.0).abs() < 1e-9 && (c.marginal - 60.0).abs() < 1e-9, "{c:?}");
        // All beyond the included messages: allocated and marginal are the same.
        let c = line_cost(&high, 7_000, 500);
        assert!((c.allocated - 100.0).abs() < 1e-9 && (c.marginal - 100.0).abs() < 1e-9, "{c:?}");
        // A free plan: nothing either way.
        let light = PlanSpec::Preset("tw-2023-light".into()).resolve().unwrap();
        assert_eq!(line_cost(&light, 0, 100).allocated, 0.0);
    }

    #[test]
    fn an_exchange_rate_is_one_usd_in_the_accounts_currency_with_its_date() {
        let rate: ExchangeRate = serde_yaml::from_str("{ USD: 32.5, date: 2026-12-01 }").unwrap();
        assert_eq!(rate.from_usd(2.0), 65.0);
        let e = serde_yaml::from_str::<ExchangeRate>("{ USD: 0, date: 2026-12-01 }").unwrap_err().to_string();
        assert!(e.contains("above 0"), "{e}");
        let e = serde_yaml::from_str::<ExchangeRate>("{ USD: 32.5, date: December }").unwrap_err().to_string();
        assert!(e.contains("YYYY-MM-DD"), "{e}");
        assert!(serde_yaml::from_str::<ExchangeRate>("{ TWD: 32.5, date: 2026-12-01 }").is_err());
    }
}
