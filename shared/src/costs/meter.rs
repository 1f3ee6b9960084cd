//! Each invocation measures itself and says so on its log, as CloudWatch Embedded Metric Format
//! (EMF) through the `metrics` API and `metrics_cloudwatch_embedded`, whose Lambda layer writes the
//! metrics line after each invocation. One dimension only, the function (`webhook`,
//! `keyword-reply`, `tagger`, `campaign`, `multicast`): every dimension set is a billed custom
//! metric, so campaign ids and table names go in the line's properties, never in dimensions.
//!
//! The metrics of one invocation ([`names`]): `Invocations` (1), `DurationMs` (its own measured
//! time, rounded up to the millisecond: what stands in for Lambda's billed duration where no
//! `REPORT` line is written), `Records` (events, messages or batches handled), `ReadUnits` and
//! `WriteUnits` (what DynamoDB reported consuming, all tables; per table in the `tables`
//! property), `SqsRequests` and `SqsFifoRequests` (billed requests: the function's own, each 64 KB
//! of payload one request, plus, for a queue consumer, the event source's receive and delete of
//! its batch), `LogBytes` (its log lines, plus [`PLATFORM_LOG_BYTES`]), `LineCalls.<api>` (requests
//! to LINE per API) and `LineMessagesBilled` (recipients of the batches this invocation settled as
//! sent: once per batch, as the settlement is).
//!
//! What runs after the handler (the metering's own writes, the sender's month-to-date read) is
//! bounded by [`after_work_budget`], so it cannot push an invocation past its timeout.

use std::collections::BTreeMap;
use std::time::Instant;

use aws_lambda_events::event::sqs::SqsMessage;
use serde::Serialize;

use super::model::{sqs_requests_for, Usage};
use crate::adapters::dynamodb::campaigns::DynamoCampaigns;
use crate::adapters::dynamodb::capacity::{Tally, Units};
use crate::adapters::line::{LineCallCount, LineCalls};
use crate::adapters::sqs_requests::SqsTally;

/// The five functions, by the short names the metrics and `oa costs` use.
pub const FUNCTIONS: [&str; 5] = ["webhook", "keyword-reply", "tagger", "campaign", "multicast"];

/// The metric names.
pub mod names {
    pub const INVOCATIONS: &str = "Invocations";
    pub const DURATION_MS: &str = "DurationMs";
    pub const RECORDS: &str = "Records";
    pub const READ_UNITS: &str = "ReadUnits";
    pub const WRITE_UNITS: &str = "WriteUnits";
    pub const SQS_REQUESTS: &str = "SqsRequests";
    pub const SQS_FIFO_REQUESTS: &str = "SqsFifoRequests";
    pub const LOG_BYTES: &str = "LogBytes";
    /// Followed by `.` and the API (`LineCalls.reply`).
    pub const LINE_CALLS: &str = "LineCalls";
    pub const LINE_MESSAGES_BILLED: &str = "LineMessagesBilled";
    /// The dimension.
    pub const FUNCTION: &str = "function";
}

/// Log bytes an invocation adds beyond its own lines: Lambda's `START`, `END` and `REPORT` lines
/// (about 300 bytes) and the metrics line (about 700). An estimate: on AWS the log group's own
/// `IncomingBytes` is exact.
pub const PLATFORM_LOG_BYTES: u64 = 1_000;

/// The tallies of one function's clients, read after each invocation.
#[derive(Debug, Clone)]
pub struct Meter {
    pub function: &'static str,
    pub dynamodb: Tally,
    pub sqs: SqsTally,
    pub line: Option<LineCalls>,
}

/// What a queue consumer's event source read for it: the batch's bodies, and whether its queue is
/// FIFO. The event source receives the batch (one request per 64 KB) and deletes it (one more).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchRead {
    pub bytes: u64,
    pub fifo: bool,
}

impl BatchRead {
    pub fn of(records: &[SqsMessage]) -> Option<BatchRead> {
        let first = records.first()?;
        let fifo = first.event_source_arn.as_deref().is_some_and(|a| a.ends_with(".fifo"));
        let bytes = records.iter().map(|r| r.body.as_deref().map_or(0, str::len) as u64).sum();
        Some(BatchRead { bytes, fifo })
    }
}

/// One invocation, measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Measured {
    pub usage: Usage,
    pub records: u64,
    #[serde(skip)]
    pub tables: BTreeMap<String, Units>,
    #[serde(skip)]
    pub line: LineCallCount,
    /// Billable messages this invocation settled as sent (the sender sets it).
    pub line_billed: u64,
}

impl Meter {
    pub fn new(function: &'static str, dynamodb: Tally, sqs: SqsTally, line: Option<LineCalls>) -> Self {
        Meter { function, dynamodb, sqs, line }
    }

    /// The invocation that began at `started`: takes every tally (so the next starts at zero).
    pub fn take(&self, started: Instant, records: u64, batch: Option<BatchRead>) -> Measured {
        let elapsed = started.elapsed();
        let tables = self.dynamodb.take();
        let (mut sqs, mut fifo) = self.sqs.take();
        if let Some(b) = batch {
            let read = sqs_requests_for(b.bytes) + 1;
            if b.fifo {
                fifo += read;
            } else {
                sqs += read;
            }
        }
        let line = self.line.as_ref().map(LineCalls::take).unwrap_or_default();
        let usage = Usage {
            invocations: 1.0,
            billed_ms: elapsed.as_nanos().div_ceil(1_000_000) as f64,
            read_units: tables.values().map(|u| u.read).fold(0.0, |sum, x| sum + x),
            write_units: tables.values().map(|u| u.write).fold(0.0, |sum, x| sum + x),
            sqs_requests: sqs as f64,
            sqs_fifo_requests: fifo as f64,
            log_bytes: (crate::logging::take_log_bytes() + PLATFORM_LOG_BYTES) as f64,
        };
        Measured { usage, records, tables, line, line_billed: 0 }
    }
}

impl Measured {
    /// Records the measurement through the `metrics` API (the EMF collector, when the function
    /// installed it, writes it after the invocation; elsewhere it goes nowhere), and `campaigns`
    /// and the units per table as the line's properties.
    pub fn emit(&self, campaigns: &[String]) {
        let u = &self.usage;
        metrics::counter!(names::INVOCATIONS).increment(u.invocations as u64);
        metrics::counter!(names::DURATION_MS).increment(u.billed_ms as u64);
        metrics::counter!(names::RECORDS).increment(self.records);
        // Units come in halves (eventually consistent reads): one value per invocation, summed.
        if u.read_units > 0.0 {
            metrics::histogram!(names::READ_UNITS).record(u.read_units);
        }
        if u.write_units > 0.0 {
            metrics::histogram!(names::WRITE_UNITS).record(u.write_units);
        }
        metrics::counter!(names::SQS_REQUESTS).increment(u.sqs_requests as u64);
        metrics::counter!(names::SQS_FIFO_REQUESTS).increment(u.sqs_fifo_requests as u64);
        metrics::counter!(names::LOG_BYTES).increment(u.log_bytes as u64);
        for (api, n) in &self.line.calls {
            metrics::counter!(format!("{}.{api}", names::LINE_CALLS)).increment(*n);
        }
        metrics::counter!(names::LINE_MESSAGES_BILLED).increment(self.line_billed);
        if let Some(set_property) = PROPERTIES.get() {
            let tables: serde_json::Map<String, serde_json::Value> = self
                .tables
                .iter()
                .map(|(t, u)| (t.clone(), serde_json::json!({ "read": u.read, "write": u.write })))
                .collect();
            set_property("tables", serde_json::Value::Object(tables));
            set_property("campaigns", serde_json::json!(campaigns));
        }
    }

    /// `share` (0 to 1) of this invocation's usage: what one of the campaigns it handled records
    /// cost (the invocation's usage split by its records).
    pub fn share(&self, share: f64) -> Usage {
        let u = &self.usage;
        Usage {
            invocations: u.invocations * share,
            billed_ms: u.billed_ms * share,
            read_units: u.read_units * share,
            write_units: u.write_units * share,
            sqs_requests: u.sqs_requests * share,
            sqs_fifo_requests: u.sqs_fifo_requests * share,
            log_bytes: u.log_bytes * share,
        }
    }
}

/// A campaign run a batch's records name (`{"campaign": ID, "run": RUN, ...}`: plan and batch
/// messages), with the share of the records that name it.
#[derive(Debug, Clone, PartialEq)]
pub struct Charged {
    pub campaign: String,
    pub run: String,
    pub share: f64,
}

pub fn campaigns_of(records: &[SqsMessage]) -> Vec<Charged> {
    #[derive(serde::Deserialize)]
    struct Named {
        campaign: String,
        run: String,
    }
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in records {
        if let Some(named) = r.body.as_deref().and_then(|b| serde_json::from_str::<Named>(b).ok()) {
            *counts.entry((named.campaign, named.run)).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|((campaign, run), n)| Charged { campaign, run, share: n as f64 / records.len() as f64 })
        .collect()
}

/// Time for the work after the handler: at most 3 s, and 2 s short of the invocation's deadline
/// (`deadline_ms`, epoch ms). A deadline of 0 or over a day old is none at all (`cargo lambda
/// watch` gives a fixed 600,000): then the 3 s. None: too little left to start it.
pub fn after_work_budget(deadline_ms: u64, now_ms: i64) -> Option<std::time::Duration> {
    const MOST: i64 = 3_000;
    const DAY: i64 = 86_400_000;
    let left = deadline_ms as i64 - now_ms;
    let budget = if deadline_ms == 0 || left < -DAY { MOST } else { (left - 2_000).min(MOST) };
    (budget >= 200).then(|| std::time::Duration::from_millis(budget as u64))
}

/// Adds each campaign run's share of `measured` to its usage item (see
/// [`DynamoCampaigns::add_usage`]), all at once and within `budget`. A failure or the budget running
/// out is logged, not raised: the invocation's work is done. The writes themselves are counted in
/// the function's next invocation.
pub async fn charge_campaigns(
    store: &DynamoCampaigns,
    function: &str,
    measured: &Measured,
    campaigns: &[Charged],
    budget: Option<std::time::Duration>,
) {
    if campaigns.is_empty() {
        return;
    }
    let Some(budget) = budget else {
        tracing::warn!(campaigns = campaigns.len(), "no time left to add the invocation's usage to its campaigns");
        return;
    };
    let writes = campaigns.iter().map(|c| async move {
        if let Err(e) = store.add_usage(&c.campaign, &c.run, function, &measured.share(c.share)).await {
            tracing::warn!(campaign = %c.campaign, error = %e, "cannot add the invocation's usage to the campaign");
        }
    });
    if tokio::time::timeout(budget, futures::future::join_all(writes)).await.is_err() {
        tracing::warn!(campaigns = campaigns.len(), "adding the invocation's usage to its campaigns ran out of time");
    }
}

type SetProperty = Box<dyn Fn(&'static str, serde_json::Value) + Send + Sync>;

/// The installed collector's `set_property` (its type is not public).
static PROPERTIES: std::sync::OnceLock<SetProperty> = std::sync::OnceLock::new();

/// The EMF collector for `function`, installed as the process's `metrics` recorder: namespace
/// `METRICS_NAMESPACE` (the stack's name; `line-oa` when unset), the function the only
/// dimension, the request id a property.
fn builder(function: &'static str) -> metrics_cloudwatch_embedded::Builder {
    let namespace = std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| "line-oa".into());
    metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(namespace)
        .with_dimension(names::FUNCTION, function)
        .with_lambda_request_id("requestId")
}

/// Runs a function's handler on the Lambda runtime with the EMF collector installed: after each
/// invocation its metrics line is written.
pub async fn run<T, F, Request, Response>(function: &'static str, handler: T) -> Result<(), lambda_runtime::Error>
where
    T: FnMut(lambda_runtime::LambdaEvent<Request>) -> F,
    F: std::future::Future<Output = Result<Response, lambda_runtime::Error>>,
    Request: for<'de> serde::Deserialize<'de>,
    Response: serde::Serialize,
{
    let collector = builder(function).init()?;
    let _ = PROPERTIES.set(Box::new(|name, value| {
        collector.set_property(name, value);
    }));
    metrics_cloudwatch_embedded::lambda::handler::run(collector, handler).await
}

/// [`run`] for an HTTP function (the webhook behind its Function URL).
pub async fn run_http<'a, T, F, Response>(function: &'static str, handler: T) -> Result<(), lambda_runtime::Error>
where
    T: FnMut(lambda_http::Request) -> F,
    F: std::future::Future<Output = Result<Response, lambda_runtime::Error>> + Send + 'a,
    Response: lambda_http::IntoResponse,
{
    let collector = builder(function).init()?;
    let _ = PROPERTIES.set(Box::new(|name, value| {
        collector.set_property(name, value);
    }));
    metrics_cloudwatch_embedded::lambda::handler::run_http(collector, handler).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_read_is_its_receive_by_64_kb_and_one_delete() {
        let meter = Meter::new("tagger", Tally::default(), SqsTally::default(), None);
        let record = |body: &str| {
            let mut m = SqsMessage::default();
            m.body = Some(body.into());
            m.event_source_arn = Some("arn:aws:sqs:ap-northeast-1:1:q.fifo".into());
            m
        };
        let records = vec![record(&"x".repeat(40 * 1024)), record(&"y".repeat(40 * 1024))];
        let read = BatchRead::of(&records).unwrap();
        assert_eq!(read, BatchRead { bytes: 80 * 1024, fifo: true });
        meter.sqs.add(10, false);
        let m = meter.take(Instant::now(), 2, Some(read));
        assert_eq!((m.usage.sqs_requests, m.usage.sqs_fifo_requests), (1.0, 3.0), "2 chunks received, 1 delete");
        assert_eq!((m.usage.invocations, m.records), (1.0, 2));
        assert!(BatchRead::of(&[]).is_none());
    }

    #[test]
    fn the_work_after_the_handler_keeps_clear_of_the_deadline() {
        let now = 1_000_000;
        assert_eq!(after_work_budget(0, now), Some(std::time::Duration::from_secs(3)), "no deadline given");
        assert_eq!(after_work_budget((now + 60_000) as u64, now), Some(std::time::Duration::from_secs(3)));
        assert_eq!(after_work_budget((now + 3_000) as u64, now), Some(std::time::Duration::from_secs(1)));
        assert_eq!(after_work_budget((now + 2_100) as u64, now), None, "too close to the deadline");
        assert_eq!(after_work_budget((now - 500) as u64, now), None, "past the deadline");
        let day = 86_400_000;
        assert_eq!(after_work_budget(600_000, 2 * day), Some(std::time::Duration::from_secs(3)), "cargo lambda watch");
    }

    #[test]
    fn campaigns_are_charged_per_run_by_their_share_of_the_records() {
        let record = |body: &str| {
            let mut m = SqsMessage::default();
            m.body = Some(body.into());
            m
        };
        let records = [
            record(r#"{"campaign":"a","run":"r1","batch":1}"#),
            record(r#"{"campaign":"a","run":"r1","batch":2}"#),
            record(r#"{"campaign":"b","run":"r9","batch":1}"#),
            record("not a batch"),
        ];
        let charged = campaigns_of(&records);
        assert_eq!(
            charged,
            [
                Charged { campaign: "a".into(), run: "r1".into(), share: 0.5 },
                Charged { campaign: "b".into(), run: "r9".into(), share: 0.25 },
            ]
        );
    }

    #[test]
    fn a_share_splits_an_invocation_by_its_records() {
        let m = Measured {
            usage: Usage { invocations: 1.0, billed_ms: 100.0, read_units: 3.0, write_units: 6.0, ..Usage::default() },
            ..Measured::default()
        };
        let half = m.share(0.5);
        assert_eq!((half.invocations, half.billed_ms, half.read_units, half.write_units), (0.5, 50.0, 1.5, 3.0));
    }
}
