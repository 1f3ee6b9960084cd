//! AWS on-demand prices per region, in USD, from the checked-in `infra/prices.yaml`: each price
//! with its unit, source and the date it took effect. The table's `asOf` is the day its sources
//! were last checked (never before any price's date); past [`STALE_AFTER_DAYS`] a report says so.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The table, as checked in.
pub const TABLE: &str = include_str!("../../../infra/prices.yaml");

/// A report warns when the table's `asOf` is older than this.
pub const STALE_AFTER_DAYS: i64 = 180;

/// One price: USD per unit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub usd: f64,
    pub unit: String,
    pub source: String,
    pub date: String,
}

/// The prices of one region.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegionPrices {
    pub lambda_gb_second_arm64: Price,
    pub lambda_gb_second_x86: Price,
    pub lambda_request: Price,
    pub dynamodb_write_unit: Price,
    pub dynamodb_read_unit: Price,
    pub sqs_request: Price,
    pub sqs_fifo_request: Price,
    pub logs_ingested_gb: Price,
    pub logs_stored_gb_month: Price,
    pub custom_metric_month: Price,
    pub alarm_month: Price,
    pub secret_month: Price,
    pub secret_call: Price,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PriceTable {
    pub as_of: String,
    pub regions: BTreeMap<String, RegionPrices>,
}

impl PriceTable {
    /// The checked-in table.
    pub fn checked_in() -> Result<PriceTable, String> {
        Self::parse(TABLE)
    }

    /// A table from YAML, every price checked: not negative, dated `YYYY-MM-DD`, with a source.
    pub fn parse(text: &str) -> Result<PriceTable, String> {
        let table: PriceTable = serde_yaml::from_str(text).map_err(|e| format!("infra/prices.yaml: {e}"))?;
        date(&table.as_of).map_err(|e| format!("infra/prices.yaml: asOf: {e}"))?;
        for (region, prices) in &table.regions {
            for (name, p) in prices.all() {
                if !(p.usd >= 0.0 && p.usd.is_finite()) {
                    return Err(format!("infra/prices.yaml: {region}.{name}: {} is not a price", p.usd));
                }
                if p.source.trim().is_empty() {
                    return Err(format!("infra/prices.yaml: {region}.{name}: no source"));
                }
                let d = date(&p.date).map_err(|e| format!("infra/prices.yaml: {region}.{name}: {e}"))?;
                if d > date(&table.as_of)? {
                    return Err(format!(
                        "infra/prices.yaml: {region}.{name} took effect on {}, after asOf {}: asOf is the day the sources were checked",
                        p.date, table.as_of
                    ));
                }
            }
        }
        Ok(table)
    }

    /// The region's prices, or an error naming the regions there are.
    pub fn region(&self, region: &str) -> Result<&RegionPrices, String> {
        self.regions.get(region).ok_or_else(|| {
            format!(
                "no prices for {region} in infra/prices.yaml (there: {}); add the region with its sources",
                self.regions.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// A warning when the table is older than [`STALE_AFTER_DAYS`] on `today` (`YYYY-MM-DD`).
    pub fn staleness(&self, today: &str) -> Option<String> {
        let (as_of, today) = (date(&self.as_of).ok()?, date(today).ok()?);
        let days = i64::from((today - as_of).get_days());
        (days > STALE_AFTER_DAYS).then(|| {
            format!(
                "the AWS prices are as of {} ({days} days ago, more than {STALE_AFTER_DAYS}): check their sources in infra/prices.yaml",
                self.as_of
            )
        })
    }
}

impl RegionPrices {
    fn all(&self) -> [(&'static str, &Price); 13] {
        [
            ("lambdaGbSecondArm64", &self.lambda_gb_second_arm64),
            ("lambdaGbSecondX86", &self.lambda_gb_second_x86),
            ("lambdaRequest", &self.lambda_request),
            ("dynamodbWriteUnit", &self.dynamodb_write_unit),
            ("dynamodbReadUnit", &self.dynamodb_read_unit),
            ("sqsRequest", &self.sqs_request),
            ("sqsFifoRequest", &self.sqs_fifo_request),
            ("logsIngestedGb", &self.logs_ingested_gb),
            ("logsStoredGbMonth", &self.logs_stored_gb_month),
            ("customMetricMonth", &self.custom_metric_month),
            ("alarmMonth", &self.alarm_month),
            ("secretMonth", &self.secret_month),
            ("secretCall", &self.secret_call),
        ]
    }
}

fn date(s: &str) -> Result<jiff::civil::Date, String> {
    s.parse::<jiff::civil::Date>().map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_table_has_the_brands_regions_each_price_with_a_source_and_date() {
        let table = PriceTable::checked_in().unwrap();
        for region in ["us-east-1", "ap-northeast-1"] {
            let p = table.region(region).unwrap();
            assert!(p.all().iter().all(|(_, p)| p.source.starts_with("https://aws.amazon.com/")));
        }
        assert_eq!(table.region("us-east-1").unwrap().dynamodb_write_unit.usd, 0.625e-6);
        assert!(table.region("eu-west-9").unwrap_err().contains("there: ap-northeast-1, us-east-1"));
    }

    #[test]
    fn a_table_older_than_180_days_is_said_to_be() {
        let table = PriceTable::checked_in().unwrap();
        assert_eq!(table.as_of, "2025-05-01");
        assert!(table.staleness("2025-10-28").is_none(), "180 days later: not yet");
        let warning = table.staleness("2025-10-29").unwrap();
        assert!(warning.contains("181 days ago"), "{warning}");
    }

    #[test]
    fn a_price_without_a_source_or_date_or_below_zero_is_refused() {
        let one = |field: &str| TABLE.replacen("usd: 0.0000133334", field, 1);
        assert!(PriceTable::parse(&one("usd: -1.0")).unwrap_err().contains("us-east-1.lambdaGbSecondArm64"));
        let undated = TABLE.replacen("date: 2025-01-01", "date: soon", 1);
        assert!(PriceTable::parse(&undated).unwrap_err().contains("\"soon\" is not a date"));
        let unsourced =
            TABLE.replacen("source: \"https://aws.amazon.com/lambda/pricing/ (first 7.5", "source: \" (first 7.5", 1);
        assert!(PriceTable::parse(&unsourced).is_ok(), "a source need not be a URL");
        let missing = TABLE.replacen("    lambdaRequest:", "    lambdaRequests:", 1);
        assert!(PriceTable::parse(&missing).is_err());
    }
}
