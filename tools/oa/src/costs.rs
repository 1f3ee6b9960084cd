//! `oa costs`: what each function and each campaign cost, from the same records wherever the
//! stack runs. The functions' per-invocation metrics ([`shared::costs::meter`]) are read from the
//! local log (`.local/logs/functions.log`, [`from_log_lines`]) or from CloudWatch
//! ([`from_cloudwatch`], `GetMetricData`); on AWS the billed durations come from Lambda's
//! `platform.report` records (Logs Insights, [`billed_durations`]). Campaigns come from the
//! campaigns table ([`campaign_usage`]); the arithmetic is [`shared::costs::report`].

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use serde_json::Value;
use shared::campaign::model::Campaign;
use shared::costs::meter::{names, FUNCTIONS};
use shared::costs::model::Usage;
use shared::costs::report::{CampaignUsage, FunctionUsage};

/// What the functions' metrics add up to over the period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collected {
    pub functions: BTreeMap<String, FunctionUsage>,
    /// The custom metrics seen (name and dimension values): each is billed by the month.
    pub metrics_seen: BTreeSet<String>,
}

/// The metrics read per function, and where each goes in [`Usage`].
const METRICS: [&str; 8] = [
    names::INVOCATIONS,
    names::DURATION_MS,
    names::RECORDS,
    names::READ_UNITS,
    names::WRITE_UNITS,
    names::SQS_REQUESTS,
    names::SQS_FIFO_REQUESTS,
    names::LOG_BYTES,
];

fn add(used: &mut FunctionUsage, metric: &str, value: f64) {
    let u = &mut used.usage;
    match metric {
        names::INVOCATIONS => u.invocations += value,
        names::DURATION_MS => u.billed_ms += value,
        names::RECORDS => used.records += value,
        names::READ_UNITS => u.read_units += value,
        names::WRITE_UNITS => u.write_units += value,
        names::SQS_REQUESTS => u.sqs_requests += value,
        names::SQS_FIFO_REQUESTS => u.sqs_fifo_requests += value,
        names::LOG_BYTES => u.log_bytes += value,
        _ => {}
    }
}

/// An EMF value: a number, or an array of them (summed).
fn value_of(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::Array(a) => a.iter().map(value_of).fold(0.0, |sum, x| sum + x),
        _ => 0.0,
    }
}

/// Every EMF line of `text` stamped from `since_ms` to `until_ms`: the per-invocation metrics
/// summed per function, and every metric seen (with its dimension values). Other lines are skipped.
pub fn from_log_lines(log: impl std::io::BufRead, since_ms: i64, until_ms: i64) -> Collected {
    let mut out = Collected::default();
    // Line by line (the log can be large); a line that is not UTF-8 is no metrics line.
    for line in log.split(b'\n').map_while(Result::ok) {
        let Ok(line) = std::str::from_utf8(&line) else { continue };
        let Some(start) = line.find('{') else { continue };
        if !line.contains("\"_aws\"") {
            continue;
        }
        let Some(doc) = line.get(start..).and_then(|l| serde_json::from_str::<Value>(l).ok()) else { continue };
        let Some(aws) = doc.get("_aws") else { continue };
        let at = aws.get("Timestamp").and_then(Value::as_i64).unwrap_or(0);
        if at < since_ms || at > until_ms {
            continue;
        }
        for directive in aws.get("CloudWatchMetrics").and_then(Value::as_array).into_iter().flatten() {
            let dimension_values: Vec<String> = directive
                .get("Dimensions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_array)
                .flatten()
                .filter_map(Value::as_str)
                .map(|d| format!("{d}={}", doc.get(d).and_then(Value::as_str).unwrap_or("")))
                .collect();
            for metric in directive.get("Metrics").and_then(Value::as_array).into_iter().flatten() {
                let Some(name) = metric.get("Name").and_then(Value::as_str) else { continue };
                out.metrics_seen.insert(format!("{name} {}", dimension_values.join(",")));
                if let Some(function) = doc.get(names::FUNCTION).and_then(Value::as_str) {
                    let used = out.functions.entry(function.to_string()).or_default();
                    add(used, name, doc.get(name).map(value_of).unwrap_or(0.0));
                }
            }
        }
    }
    out
}

/// The same sums from CloudWatch: one `GetMetricData` call (Sum over the whole period) for the
/// five functions' metrics, and `ListMetrics` for the metrics the namespace holds.
pub async fn from_cloudwatch(
    cw: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    start_ms: i64,
    end_ms: i64,
) -> Result<Collected, String> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    let period = period_secs(start_ms, end_ms, now_ms());
    let mut queries = vec![];
    let mut ids = BTreeMap::new();
    for (i, function) in FUNCTIONS.iter().enumerate() {
        for (j, metric) in METRICS.iter().enumerate() {
            let id = format!("m{i}x{j}");
            let stat = MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(namespace)
                        .metric_name(*metric)
                        .dimensions(Dimension::builder().name(names::FUNCTION).value(*function).build())
                        .build(),
                )
                .period(period)
                .stat("Sum")
                .build();
            queries.push(MetricDataQuery::builder().id(&id).metric_stat(stat).return_data(true).build());
            ids.insert(id, (*function, *metric));
        }
    }
    let mut out = Collected::default();
    for f in FUNCTIONS {
        out.functions.insert(f.to_string(), FunctionUsage::default());
    }
    let mut next = None;
    loop {
        let answer = cw
            .get_metric_data()
            .set_metric_data_queries(Some(queries.clone()))
            .start_time(DateTime::from_millis(start_ms))
            .end_time(DateTime::from_millis(end_ms))
            .set_next_token(next)
            .send()
            .await
            .map_err(|e| format!("GetMetricData: {}", shared::adapters::sdk::describe(&e)))?;
        for result in answer.metric_data_results() {
            let Some((function, metric)) = result.id().and_then(|id| ids.get(id)) else { continue };
            let sum = result.values().iter().fold(0.0, |sum, x| sum + x);
            add(out.functions.entry(function.to_string()).or_default(), metric, sum);
        }
        next = answer.next_token().map(str::to_string);
        if next.is_none() {
            break;
        }
    }
    let mut next = None;
    loop {
        let answer = cw
            .list_metrics()
            .namespace(namespace)
            .set_next_token(next)
            .send()
            .await
            .map_err(|e| format!("ListMetrics: {}", shared::adapters::sdk::describe(&e)))?;
        for m in answer.metrics() {
            let dims: Vec<String> = m
                .dimensions()
                .iter()
                .map(|d| format!("{}={}", d.name().unwrap_or(""), d.value().unwrap_or("")))
                .collect();
            out.metrics_seen.insert(format!("{} {}", m.metric_name().unwrap_or(""), dims.join(",")));
        }
        next = answer.next_token().map(str::to_string);
        if next.is_none() {
            break;
        }
    }
    Ok(out)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One period covering `start..end`, as CloudWatch takes it: a multiple of 60 s, of 300 s once the
/// start is over 15 days back, of 3,600 s over 63 days back (any other gives no datapoints).
pub fn period_secs(start_ms: i64, end_ms: i64, now_ms: i64) -> i32 {
    const DAY: i64 = 86_400_000;
    let age = now_ms - start_ms;
    let unit = if age > 63 * DAY {
        3_600
    } else if age > 15 * DAY {
        300
    } else {
        60
    };
    let span = ((end_ms - start_ms) / 1000).max(1);
    (((span + unit - 1) / unit) * unit).min(i32::MAX as i64) as i32
}

/// A function's log group on a deployed stack (the template names them so).
pub fn log_group(stack: &str, function: &str) -> String {
    format!("/aws/lambda/{stack}-{function}")
}

/// Billed milliseconds and invocations per function over the period, from Lambda's
/// `platform.report` records (Logs Insights). Err when the query cannot run or gives no usable
/// rows: the caller keeps the functions' own measurements then, and says so.
pub async fn billed_durations(
    logs: &aws_sdk_cloudwatchlogs::Client,
    stack: &str,
    start_ms: i64,
    end_ms: i64,
) -> Result<BTreeMap<String, (f64, f64)>, String> {
    let groups: Vec<String> = FUNCTIONS.iter().map(|f| log_group(stack, f)).collect();
    let query = "filter type = \"platform.report\" \
                 | stats sum(record.metrics.billedDurationMs) as billedMs, count(*) as invocations by @log";
    let started = logs
        .start_query()
        .set_log_group_names(Some(groups.clone()))
        .start_time(start_ms / 1000)
        .end_time(end_ms / 1000 + 1)
        .query_string(query)
        .send()
        .await
        .map_err(|e| format!("StartQuery: {}", shared::adapters::sdk::describe(&e)))?;
    let id = started.query_id().ok_or("StartQuery gave no query id")?.to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let answer = logs
            .get_query_results()
            .query_id(&id)
            .send()
            .await
            .map_err(|e| format!("GetQueryResults: {}", shared::adapters::sdk::describe(&e)))?;
        use aws_sdk_cloudwatchlogs::types::QueryStatus;
        match answer.status() {
            Some(QueryStatus::Complete) => {
                let mut out = BTreeMap::new();
                for row in answer.results() {
                    let field = |name: &str| row.iter().find(|f| f.field() == Some(name)).and_then(|f| f.value());
                    let (Some(log), Some(billed), Some(n)) = (field("@log"), field("billedMs"), field("invocations"))
                    else {
                        continue;
                    };
                    // `@log` is `ACCOUNT:GROUP`.
                    let group = log.rsplit(':').next().unwrap_or(log);
                    let Some(function) = FUNCTIONS.iter().find(|f| log_group(stack, f) == group) else { continue };
                    let (Ok(billed), Ok(n)) = (billed.parse::<f64>(), n.parse::<f64>()) else { continue };
                    out.insert(function.to_string(), (billed, n));
                }
                if out.is_empty() && !answer.results().is_empty() {
                    return Err("Logs Insights answered without the report fields".into());
                }
                return Ok(out);
            }
            Some(QueryStatus::Failed | QueryStatus::Cancelled | QueryStatus::Timeout) => {
                return Err(format!("the Logs Insights query ended {:?}", answer.status()));
            }
            _ if std::time::Instant::now() > deadline => return Err("the Logs Insights query took over 60 s".into()),
            _ => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
}

/// The campaigns created or sent since `since_ms`, each with the billable messages its month had
/// used before it: the recipients of the campaigns first sent earlier in the same calendar month
/// (in `timezone`). Sends made outside this stack (OA Manager) are not known to it.
pub fn campaign_rows(
    all: &[Campaign],
    usage: &BTreeMap<String, BTreeMap<String, Usage>>,
    since_ms: i64,
    timezone: &jiff::tz::TimeZone,
) -> Vec<CampaignUsage> {
    let month = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms).map(|t| t.to_zoned(timezone.clone())).map(|z| (z.year(), z.month())).ok()
    };
    let mut rows: Vec<CampaignUsage> = all
        .iter()
        .filter(|c| c.created_at_ms >= since_ms || c.last_sent_at_ms.is_some_and(|t| t >= since_ms))
        .map(|c| {
            let used_before = c.first_sent_at_ms.map_or(0, |first| {
                all.iter()
                    .filter(|o| o.id != c.id)
                    .filter(|o| o.first_sent_at_ms.is_some_and(|t| t < first && month(t) == month(first)))
                    .map(|o| o.counters.sent)
                    .sum()
            });
            CampaignUsage {
                id: c.id.clone(),
                name: c.name.clone(),
                recipients: c.counters.sent,
                used_before,
                usage: usage.get(&c.id).cloned().unwrap_or_default(),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_a_multiple_cloudwatch_takes_for_how_far_back_it_starts() {
        let day = 86_400_000;
        let now = 100 * day;
        assert_eq!(period_secs(now - 7 * day, now, now), 7 * 86_400);
        assert_eq!(period_secs(now - 90_500_000, now, now), 90_540, "a multiple of 60");
        assert_eq!(period_secs(now - 20 * day - 1_000, now - 20 * day + 3_000, now), 300);
        assert_eq!(period_secs(now - 70 * day, now - 70 * day + 61_000, now), 3_600);
        assert_eq!(period_secs(now - 15 * day - 60_000, now - 15 * day, now), 300, "15 days and a minute back");
    }

    #[test]
    fn emf_lines_are_summed_per_function_and_old_or_other_lines_skipped() {
        let line = |t: i64, f: &str, extra: &str| {
            format!(
                r#"{{"_aws":{{"Timestamp":{t},"CloudWatchMetrics":[{{"Namespace":"n","Dimensions":[["function"]],"Metrics":[{{"Name":"Invocations"}},{{"Name":"DurationMs"}},{{"Name":"ReadUnits"}}]}}]}},"function":"{f}","Invocations":1,"DurationMs":7,"ReadUnits":[1.5]{extra}}}"#
            )
        };
        let text = [
            line(1_000, "tagger", ""),
            line(2_000, "tagger", ""),
            line(500, "tagger", ""),
            line(2_000, "webhook", ""),
            r#"{"level":"INFO","fields":{"message":"batch"}}"#.to_string(),
            "not json".to_string(),
            r#"{"_aws":{"Timestamp":3000,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["Reason"]],"Metrics":[{"Name":"CampaignsPaused"}]}]},"Reason":"budget","CampaignsPaused":0}"#.to_string(),
        ]
        .join("\n");
        let c = from_log_lines(text.as_bytes(), 1_000, 3_000);
        assert_eq!(from_log_lines(text.as_bytes(), 1_000, 1_500).functions["tagger"].usage.invocations, 1.0);
        let tagger = &c.functions["tagger"];
        assert_eq!((tagger.usage.invocations, tagger.usage.billed_ms, tagger.usage.read_units), (2.0, 14.0, 3.0));
        assert_eq!(c.functions["webhook"].usage.invocations, 1.0);
        assert_eq!(c.functions.len(), 2, "the sweep's line is no function's");
        assert_eq!(c.metrics_seen.len(), 7, "{:?}", c.metrics_seen);
    }
}
