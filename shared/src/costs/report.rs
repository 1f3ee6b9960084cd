//! The cost report `oa costs` prints: each function's AWS cost over a period, each campaign's LINE
//! bill (allocated and marginal) beside the AWS cost of planning and sending it, the stack's fixed
//! monthly cost and the month's LINE quota. Pure: the caller gathers the measurements (local logs
//! or CloudWatch, the campaigns table, LINE) into [`Inputs`]; [`Inputs::report`] does the arithmetic,
//! [`Report::table`] and [`Report::csv`] the layouts (`serde_json` the JSON).

use std::collections::BTreeMap;

use serde::Serialize;

use super::meter::FUNCTIONS;
use super::model::{line_cost, Arch, AwsCost, ExchangeRate, Fixed, Usage};
use super::prices::RegionPrices;
use crate::campaign::price::{Month, Plan};

/// Where the billed duration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DurationSource {
    /// Lambda's `platform.report` records (`billedDurationMs`): what AWS bills.
    Billed,
    /// The functions' own measured time, rounded up to the millisecond per invocation: where no
    /// report record is written (`cargo lambda watch`), or it could not be read.
    Measured,
}

/// What one function used over the period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunctionUsage {
    pub usage: Usage,
    /// Events, messages or batches it handled.
    pub records: f64,
}

/// One campaign, as its counters and usage items hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignUsage {
    pub id: String,
    pub name: String,
    /// Friends it was sent to (each one billable message).
    pub recipients: u64,
    /// Billable messages the month had used before it (its earlier campaigns).
    pub used_before: u64,
    /// Its planner's and senders' share of their invocations, per function.
    pub usage: BTreeMap<String, Usage>,
}

pub struct Inputs<'a> {
    pub region: String,
    pub prices: &'a RegionPrices,
    pub arch: Arch,
    /// Memory size per function (MB), from the template.
    pub memory_mb: BTreeMap<String, u32>,
    pub functions: BTreeMap<String, FunctionUsage>,
    pub duration: DurationSource,
    pub campaigns: Vec<CampaignUsage>,
    pub plan: Option<Plan>,
    pub exchange_rate: Option<ExchangeRate>,
    pub fixed: Fixed,
    pub month: Option<Month>,
    /// The period, in words (`7d`), and the price table's warning if it is old.
    pub since: String,
    pub price_warning: Option<String>,
    /// What else the caller wants said (a source it could not read, ...).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionRow {
    pub function: String,
    pub invocations: f64,
    pub records: f64,
    pub memory_mb: u32,
    pub gb_seconds: f64,
    pub cost: AwsCost,
    /// USD per 1,000 records handled (None: it handled none).
    pub cost_per_1000: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CampaignRow {
    pub id: String,
    pub name: String,
    pub recipients: u64,
    pub line_messages: u64,
    /// Billable messages the month had used before it (what the marginal cost starts from).
    pub used_before: u64,
    /// Allocated: the fee spread over the included messages, plus extras.
    pub line_cost: Option<f64>,
    pub line_marginal_cost: Option<f64>,
    pub aws_cost_usd: f64,
    /// In the account's currency (None: no exchange rate set).
    pub aws_cost: Option<f64>,
    pub total: Option<f64>,
    pub cost_per_recipient: Option<f64>,
    pub currency: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FixedRow {
    #[serde(flatten)]
    pub counts: Fixed,
    pub usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MonthRow {
    pub used: u64,
    pub quota: Option<u64>,
    pub left: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub region: String,
    pub arch: Arch,
    pub since: String,
    pub duration_source: DurationSource,
    pub currency: Option<String>,
    pub exchange_rate: Option<ExchangeRate>,
    pub functions: Vec<FunctionRow>,
    /// The five functions together, USD.
    pub total: AwsCost,
    pub campaigns: Vec<CampaignRow>,
    pub fixed_monthly: FixedRow,
    pub month: Option<MonthRow>,
    pub warnings: Vec<String>,
}

impl Inputs<'_> {
    pub fn report(&self) -> Report {
        let memory = |f: &str| self.memory_mb.get(f).copied().unwrap_or(128);
        let functions: Vec<FunctionRow> = FUNCTIONS
            .iter()
            .map(|&f| {
                let used = self.functions.get(f).cloned().unwrap_or_default();
                let cost = used.usage.cost(self.prices, memory(f), self.arch);
                FunctionRow {
                    function: f.to_string(),
                    invocations: used.usage.invocations,
                    records: used.records,
                    memory_mb: memory(f),
                    gb_seconds: used.usage.gb_seconds(memory(f)),
                    cost,
                    cost_per_1000: (used.records > 0.0).then(|| cost.total / used.records * 1000.0),
                }
            })
            .collect();
        let total = functions.iter().fold(AwsCost::default(), |sum, f| sum + f.cost);
        let campaigns = self
            .campaigns
            .iter()
            .map(|c| {
                let aws_usd: f64 = c
                    .usage
                    .iter()
                    .map(|(f, u)| u.cost(self.prices, memory(f), self.arch).total)
                    .fold(0.0, |sum, x| sum + x);
                let line = self.plan.as_ref().map(|p| line_cost(p, c.used_before, c.recipients));
                // The one conversion: the campaign's AWS total, once.
                let aws = self.exchange_rate.as_ref().map(|r| r.from_usd(aws_usd));
                let total = match (&line, aws) {
                    (Some(l), Some(a)) => Some(l.allocated + a),
                    _ => None,
                };
                CampaignRow {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    recipients: c.recipients,
                    line_messages: c.recipients,
                    used_before: c.used_before,
                    line_cost: line.as_ref().map(|l| l.allocated),
                    line_marginal_cost: line.as_ref().map(|l| l.marginal),
                    aws_cost_usd: aws_usd,
                    aws_cost: aws,
                    total,
                    cost_per_recipient: total.filter(|_| c.recipients > 0).map(|t| t / c.recipients as f64),
                    currency: line.map(|l| l.currency),
                }
            })
            .collect();
        let mut warnings: Vec<String> = self.price_warning.iter().cloned().collect();
        warnings.extend(self.notes.iter().cloned());
        if self.duration == DurationSource::Measured {
            warnings.push(
                "durations are the functions' own measurements, rounded up to the millisecond: no Lambda \
                 report records were read (locally there are none)"
                    .into(),
            );
        }
        if self.exchange_rate.is_none() && !self.campaigns.is_empty() {
            warnings.push(
                "no exchangeRate in the account settings: campaigns' AWS costs stay in USD and have no total".into(),
            );
        }
        if self.plan.is_none() && !self.campaigns.is_empty() {
            warnings.push("no account settings applied: campaigns' LINE cost is unknown (oa settings apply)".into());
        }
        Report {
            region: self.region.clone(),
            arch: self.arch,
            since: self.since.clone(),
            duration_source: self.duration,
            currency: self.plan.as_ref().map(|p| p.currency.clone()),
            exchange_rate: self.exchange_rate.clone(),
            functions,
            total,
            campaigns,
            fixed_monthly: FixedRow { counts: self.fixed, usd: self.fixed.cost(self.prices) },
            month: self.month.as_ref().map(|m| MonthRow {
                used: m.used,
                quota: m.quota,
                left: m.quota.map(|q| q.saturating_sub(m.used)),
            }),
            warnings,
        }
    }
}

/// USD with three significant figures for a small bill ($0.000333), cents from a dollar up.
fn usd(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        let places = (2 - x.abs().log10().floor() as i32).clamp(2, 12) as usize;
        format!("{x:.places$}")
    }
}

fn money(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".into(), |x| format!("{x:.2}"))
}

impl Report {
    /// The report as a person reads it: functions or campaigns (`by`), then the fixed monthly cost
    /// and the month's quota.
    pub fn table(&self, by_campaign: bool) -> String {
        let mut out = String::new();
        let line = |out: &mut String, s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(
            &mut out,
            format!(
                "Costs over the last {} in {} ({}), USD unless marked",
                self.since,
                self.region,
                arch_name(self.arch)
            ),
        );
        if by_campaign {
            let cur = self.currency.clone().unwrap_or_else(|| "?".into());
            line(
                &mut out,
                format!(
                    "{:<28} {:>10} {:>12} {:>12} {:>12} {:>12} {:>10}",
                    "campaign",
                    "recipients",
                    format!("LINE {cur}"),
                    "marginal",
                    format!("AWS {cur}"),
                    format!("total {cur}"),
                    "per friend"
                ),
            );
            for c in &self.campaigns {
                line(
                    &mut out,
                    format!(
                        "{:<28} {:>10} {:>12} {:>12} {:>12} {:>12} {:>10}",
                        c.id,
                        c.recipients,
                        money(c.line_cost),
                        money(c.line_marginal_cost),
                        c.aws_cost.map_or_else(|| format!("${}", usd(c.aws_cost_usd)), |a| format!("{a:.4}")),
                        money(c.total),
                        c.cost_per_recipient.map_or_else(|| "n/a".into(), |x| format!("{x:.4}")),
                    ),
                );
            }
            if self.campaigns.is_empty() {
                line(&mut out, "(no campaign in the period)".into());
            }
            if let Some(rate) = &self.exchange_rate {
                line(&mut out, format!("AWS costs converted at 1 USD = {} {cur} (set {})", rate.usd, rate.date));
            }
        } else {
            line(
                &mut out,
                format!(
                    "{:<14} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}",
                    "function",
                    "invocations",
                    "GB-s",
                    "Lambda",
                    "DynamoDB",
                    "SQS",
                    "logs",
                    "total",
                    "records",
                    "per 1,000"
                ),
            );
            for f in &self.functions {
                line(
                    &mut out,
                    format!(
                        "{:<14} {:>11} {:>10.3} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}",
                        f.function,
                        f.invocations,
                        f.gb_seconds,
                        usd(f.cost.lambda),
                        usd(f.cost.dynamodb),
                        usd(f.cost.sqs),
                        usd(f.cost.logs),
                        usd(f.cost.total),
                        f.records,
                        f.cost_per_1000.map_or_else(|| "-".into(), usd),
                    ),
                );
            }
            line(&mut out, format!("{:<14} {:>11} {:>10} {:>54}", "all", "", "", usd(self.total.total)));
        }
        let fixed = &self.fixed_monthly;
        line(
            &mut out,
            format!(
                "Fixed monthly: ${} ({} custom metrics, {} alarms, {} secret, {:.3} GB of logs kept)",
                usd(fixed.usd),
                fixed.counts.custom_metrics,
                fixed.counts.alarms,
                fixed.counts.secrets,
                fixed.counts.stored_log_gb
            ),
        );
        if let Some(m) = &self.month {
            let quota =
                m.quota.map_or_else(|| "(no limit)".into(), |q| format!("of {q} ({} left)", m.left.unwrap_or(0)));
            line(&mut out, format!("LINE this month: {} billable messages {quota}", m.used));
        }
        for w in &self.warnings {
            line(&mut out, format!("note: {w}"));
        }
        out
    }

    /// One row per function, then one per campaign, with a `kind` column.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "kind,name,invocations,records,gb_seconds,lambda_usd,dynamodb_usd,sqs_usd,logs_usd,total_usd,\
             recipients,line_cost,line_marginal_cost,aws_cost,total,currency\n",
        );
        for f in &self.functions {
            out.push_str(&format!(
                "function,{},{},{},{},{},{},{},{},{},,,,,,\n",
                f.function,
                f.invocations,
                f.records,
                f.gb_seconds,
                f.cost.lambda,
                f.cost.dynamodb,
                f.cost.sqs,
                f.cost.logs,
                f.cost.total
            ));
        }
        let opt = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
        for c in &self.campaigns {
            out.push_str(&format!(
                "campaign,{},,,,,,,,{},{},{},{},{},{},{}\n",
                csv_field(&c.id),
                c.aws_cost_usd,
                c.recipients,
                opt(c.line_cost),
                opt(c.line_marginal_cost),
                opt(c.aws_cost),
                opt(c.total),
                c.currency.clone().unwrap_or_default()
            ));
        }
        out
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn arch_name(a: Arch) -> &'static str {
    match a {
        Arch::Arm64 => "arm64",
        Arch::X86_64 => "x86_64",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::price::PlanSpec;
    use crate::costs::prices::PriceTable;

    fn inputs<'a>(prices: &'a RegionPrices, campaigns: Vec<CampaignUsage>, rate: Option<f64>) -> Inputs<'a> {
        let mut functions = BTreeMap::new();
        functions.insert(
            "webhook".to_string(),
            FunctionUsage {
                usage: Usage {
                    invocations: 1_000.0,
                    billed_ms: 40_000.0,
                    write_units: 4_000.0,
                    sqs_fifo_requests: 2_000.0,
                    ..Usage::default()
                },
                records: 2_000.0,
            },
        );
        Inputs {
            region: "ap-northeast-1".into(),
            prices,
            arch: Arch::Arm64,
            memory_mb: BTreeMap::from([("webhook".to_string(), 256)]),
            functions,
            duration: DurationSource::Measured,
            campaigns,
            plan: Some(PlanSpec::Preset("tw-2023-medium".into()).resolve().unwrap()),
            exchange_rate: rate.map(|usd| ExchangeRate { usd, date: "2026-12-01".into() }),
            fixed: Fixed { custom_metrics: 10, alarms: 20, secrets: 1, stored_log_gb: 0.5 },
            month: Some(Month { quota: Some(3_000), used: 1_200 }),
            since: "7d".into(),
            price_warning: None,
            notes: vec![],
        }
    }

    #[test]
    fn every_function_is_listed_with_its_cost_and_idle_ones_with_zeros() {
        let prices = PriceTable::checked_in().unwrap().region("ap-northeast-1").unwrap().clone();
        let r = inputs(&prices, vec![], None).report();
        let names: Vec<_> = r.functions.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(names, FUNCTIONS);
        let webhook = &r.functions[0];
        // 40 s at 256 MB = 10 GB-s; 10 x 0.0000133334 + 1,000 x 0.0000002.
        assert!((webhook.cost.lambda - 0.000333334).abs() < 1e-12);
        // 4,000 x 0.715e-6 and 2,000 FIFO requests x 0.5e-6.
        assert!((webhook.cost.dynamodb - 0.00286).abs() < 1e-12 && (webhook.cost.sqs - 0.001).abs() < 1e-12);
        assert!((webhook.cost_per_1000.unwrap() - webhook.cost.total / 2.0).abs() < 1e-15);
        assert_eq!(r.functions[1].cost.total, 0.0);
        assert_eq!(r.functions[1].cost_per_1000, None);
        assert_eq!(r.month.unwrap().left, Some(1_800));
        assert!(r.warnings.iter().any(|w| w.contains("own measurements")));
        let json = serde_json::to_value(inputs(&prices, vec![], None).report()).unwrap();
        assert!(json["functions"][0]["gbSeconds"].is_number() && json["functions"][0]["cost"]["total"].is_number());
        assert!(json["fixedMonthly"]["usd"].is_number());
        let table = inputs(&prices, vec![], None).report().table(false);
        assert_eq!(table.lines().filter(|l| FUNCTIONS.iter().any(|f| l.starts_with(f))).count(), 5, "{table}");
        assert!(table.contains("LINE this month: 1200 billable messages of 3000 (1800 left)"), "{table}");
    }

    #[test]
    fn a_campaigns_aws_cost_is_converted_once_and_added_to_its_line_cost() {
        let prices = PriceTable::checked_in().unwrap().region("ap-northeast-1").unwrap().clone();
        let usage = Usage { invocations: 4.0, billed_ms: 1_000.0, write_units: 1_000.0, ..Usage::default() };
        let campaign = CampaignUsage {
            id: "spring".into(),
            name: "Spring".into(),
            recipients: 500,
            used_before: 2_800,
            usage: BTreeMap::from([("multicast".to_string(), usage)]),
        };
        let r = inputs(&prices, vec![campaign.clone()], Some(32.5)).report();
        let c = &r.campaigns[0];
        let aws_usd = usage.cost(&prices, 128, Arch::Arm64).total;
        assert!((c.aws_cost_usd - aws_usd).abs() < 1e-15);
        assert!((c.aws_cost.unwrap() - aws_usd * 32.5).abs() < 1e-12);
        // 200 inside the 3,000 at 800/3,000 each; no extras on this plan.
        assert!((c.line_cost.unwrap() - 200.0 * 800.0 / 3_000.0).abs() < 1e-9);
        assert_eq!(c.line_marginal_cost, Some(0.0));
        assert!((c.total.unwrap() - (c.line_cost.unwrap() + aws_usd * 32.5)).abs() < 1e-9);
        assert_eq!(c.currency.as_deref(), Some("TWD"));
        let idle = CampaignUsage { usage: BTreeMap::new(), ..campaign.clone() };
        let r = inputs(&prices, vec![idle], Some(32.5)).report();
        assert!(r.campaigns[0].aws_cost_usd == 0.0 && r.campaigns[0].aws_cost_usd.is_sign_positive(), "0, not -0");
        let table = r.table(true);
        assert!(table.contains("spring") && table.contains("1 USD = 32.5 TWD (set 2026-12-01)"), "{table}");
        let csv = r.csv();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 1 + 5 + 1, "a header, five functions, one campaign:\n{csv}");
        assert!(rows.iter().all(|r| r.split(',').count() == 16), "{csv}");
        assert!(rows[6].starts_with("campaign,spring,") && rows[6].ends_with(",TWD"), "{csv}");
        let without = inputs(&prices, vec![campaign], None).report();
        assert_eq!((without.campaigns[0].aws_cost, without.campaigns[0].total), (None, None));
        assert!(without.warnings.iter().any(|w| w.contains("exchangeRate")));
    }
}
