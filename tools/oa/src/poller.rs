//! The local event-source poller: what Lambda's SQS event source mapping does on AWS, for the
//! functions under `cargo lambda watch`.
//!
//! For every function of the template with an `SQS` event: receive up to `BatchSize` messages
//! (all system attributes), invoke the function with a real SQS event payload, delete the
//! messages it did not list in `batchItemFailures`, and leave the rest to come back after the
//! queue's visibility timeout. The queue's redrive policy moves a message to its dead-letter
//! queue after `maxReceiveCount` receives, as on AWS. A function error deletes nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use serde_yaml::Value as Yaml;
use shared::adapters::sdk::describe;

use crate::stack::{StackError, Template};

/// One SQS event source of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Logical id of the function, e.g. `KeywordReplyFunction`.
    pub function: String,
    /// Its binary (last part of `CodeUri`), the name `cargo lambda watch` serves it under.
    pub binary: String,
    /// Logical id of the queue.
    pub queue: String,
    pub batch_size: i32,
    pub batching_window_secs: i32,
    pub report_batch_item_failures: bool,
    /// `ScalingConfig.MaximumConcurrency` (its parameter's default): this many invocations at
    /// once, as Lambda's event source mapping runs (1 when not set).
    pub max_concurrency: usize,
}

/// A schedule of the template (`Type: Schedule`): the function is invoked with EventBridge's
/// "Scheduled Event".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub function: String,
    pub binary: String,
    /// `rate(N minutes)` as written.
    pub expression: String,
}

fn binary_of(f: &crate::stack::Resource) -> Result<String, StackError> {
    f.properties
        .get("CodeUri")
        .and_then(Yaml::as_str)
        .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
        .map(str::to_string)
        .ok_or_else(|| StackError::Template(format!("{}: CodeUri missing", f.logical_id)))
}

/// Every schedule of the template.
pub fn schedules(template: &Template) -> Result<Vec<Schedule>, StackError> {
    let mut out = vec![];
    for f in template.of_kind("AWS::Serverless::Function") {
        let Some(Yaml::Mapping(events)) = f.properties.get("Events") else { continue };
        for (_, event) in events {
            if event.get("Type").and_then(Yaml::as_str) != Some("Schedule") {
                continue;
            }
            let expression =
                event.get("Properties").and_then(|p| p.get("Schedule")).and_then(Yaml::as_str).ok_or_else(|| {
                    StackError::Template(format!("{}: Schedule event without a Schedule", f.logical_id))
                })?;
            out.push(Schedule { function: f.logical_id.clone(), binary: binary_of(f)?, expression: expression.into() });
        }
    }
    Ok(out)
}

/// The event EventBridge invokes a scheduled function with.
pub fn scheduled_event(region: &str, now: &str) -> Value {
    json!({
        "version": "0",
        "id": format!("local-{now}"),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": now,
        "region": region,
        "resources": [],
        "detail": {},
    })
}

/// Every SQS event source mapping in the template.
pub fn mappings(template: &Template) -> Result<Vec<Mapping>, StackError> {
    let mut out = vec![];
    for f in template.of_kind("AWS::Serverless::Function") {
        let Some(Yaml::Mapping(events)) = f.properties.get("Events") else { continue };
        for (_, event) in events {
            if event.get("Type").and_then(Yaml::as_str) != Some("SQS") {
                continue;
            }
            let props = event.get("Properties").cloned().unwrap_or(Yaml::Null);
            let queue = props.get("Queue").and_then(get_att_arn).ok_or_else(|| {
                StackError::Template(format!("{}: SQS event Queue must be !GetAtt X.Arn", f.logical_id))
            })?;
            let binary = binary_of(f)?;
            let int = |k: &str, d: i32| props.get(k).and_then(Yaml::as_i64).map(|v| v as i32).unwrap_or(d);
            let report = props
                .get("FunctionResponseTypes")
                .and_then(Yaml::as_sequence)
                .is_some_and(|s| s.iter().any(|t| t.as_str() == Some("ReportBatchItemFailures")));
            out.push(Mapping {
                function: f.logical_id.clone(),
                binary,
                queue,
                batch_size: int("BatchSize", 10),
                batching_window_secs: int("MaximumBatchingWindowInSeconds", 0),
                report_batch_item_failures: report,
                max_concurrency: props
                    .get("ScalingConfig")
                    .and_then(|s| s.get("MaximumConcurrency"))
                    .and_then(|v| template.number(v))
                    .map_or(1, |n| n.clamp(1, 1000) as usize),
            });
        }
    }
    Ok(out)
}

fn get_att_arn(v: &Yaml) -> Option<String> {
    let target = match v {
        Yaml::Tagged(t) if t.tag == "GetAtt" => t.value.as_str()?.to_string(),
        _ => v.get("Fn::GetAtt").and_then(Yaml::as_sequence)?.first()?.as_str()?.to_string() + ".Arn",
    };
    target.strip_suffix(".Arn").map(str::to_string)
}

/// Runs a function with an event payload and returns its response.
#[async_trait]
pub trait Invoker: Send + Sync {
    async fn invoke(&self, function: &str, payload: Value) -> Result<Value, String>;
}

/// Invokes through `cargo lambda watch`'s Lambda Invoke API.
pub struct HttpInvoker {
    base: String,
    http: reqwest::Client,
}

impl HttpInvoker {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("http client");
        HttpInvoker { base: base.trim_end_matches('/').to_string(), http }
    }
}

#[async_trait]
impl Invoker for HttpInvoker {
    async fn invoke(&self, function: &str, payload: Value) -> Result<Value, String> {
        let url = format!("{}/2015-03-31/functions/{function}/invocations", self.base);
        let response = self.http.post(&url).json(&payload).send().await.map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        let unhandled = response.headers().contains_key("x-amz-function-error");
        let text = response.text().await.map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() || unhandled || value.get("errorType").is_some() {
            return Err(format!("{function} failed ({status}): {value}"));
        }
        Ok(value)
    }
}

/// What one poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    pub received: usize,
    pub deleted: usize,
    /// Left for the visibility timeout (reported failures, or all of a failed invocation).
    pub returned: usize,
    pub invoke_error: Option<String>,
}

/// Polls one queue for one function.
pub struct Poller {
    pub mapping: Mapping,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
    region: String,
    invoker: Arc<dyn Invoker>,
}

/// How long one receive long-polls for messages when the template sets no batching window.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);

/// `arn:aws:sqs:<region>:<account>:<name>` from `http(s)://host/<account>/<name>`.
fn arn_of(url: &str, region: &str) -> String {
    let mut parts = url.trim_end_matches('/').rsplit('/');
    let name = parts.next().unwrap_or_default();
    let account = parts.next().unwrap_or_default();
    format!("arn:aws:sqs:{region}:{account}:{name}")
}

impl Poller {
    pub fn new(
        mapping: Mapping,
        sqs: aws_sdk_sqs::Client,
        queue_url: &str,
        region: &str,
        invoker: Arc<dyn Invoker>,
    ) -> Self {
        Poller {
            mapping,
            sqs,
            queue_url: queue_url.to_string(),
            queue_arn: arn_of(queue_url, region),
            region: region.to_string(),
            invoker,
        }
    }

    /// One receive → invoke → delete round.
    pub async fn poll_once(&self) -> Result<PollReport, String> {
        let messages = self.receive().await?;
        if messages.is_empty() {
            return Ok(PollReport::default());
        }
        self.process(&messages).await
    }

    /// Up to `BatchSize` messages (all system attributes), waiting for the batching window (at
    /// least a second) when there are none.
    async fn receive(&self) -> Result<Vec<aws_sdk_sqs::types::Message>, String> {
        // Standard queues may gather a batch for up to the window; FIFO ones take what is there.
        let wait = RECEIVE_WAIT.max(Duration::from_secs(self.mapping.batching_window_secs.clamp(0, 20) as u64));
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.mapping.batch_size.clamp(1, 10))
            .wait_time_seconds(wait.as_secs().max(1) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| format!("ReceiveMessage {}: {}", self.queue_url, describe(&e)))?;
        Ok(received.messages.unwrap_or_default())
    }

    /// Invokes the function with `messages` as one SQS event and deletes those it did not report
    /// failed.
    async fn process(&self, messages: &[aws_sdk_sqs::types::Message]) -> Result<PollReport, String> {
        let records: Vec<Value> = messages.iter().map(|m| self.record(m)).collect();
        let mut report = PollReport { received: messages.len(), ..PollReport::default() };
        let failed: HashSet<String> =
            match self.invoker.invoke(&self.mapping.binary, json!({ "Records": records })).await {
                Ok(response) if self.mapping.report_batch_item_failures => response
                    .get("batchItemFailures")
                    .and_then(Value::as_array)
                    .map(|f| f.iter().filter_map(|i| i.get("itemIdentifier")?.as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
                Ok(_) => HashSet::new(),
                Err(e) => {
                    report.invoke_error = Some(e);
                    messages.iter().filter_map(|m| m.message_id.clone()).collect()
                }
            };
        let done: Vec<_> =
            messages.iter().filter(|m| !failed.contains(m.message_id.as_deref().unwrap_or_default())).collect();
        report.returned = messages.len() - done.len();
        for (n, chunk) in done.chunks(10).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(format!("{n}-{i}"))
                        .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                        .build()
                        .expect("id and receipt handle set")
                })
                .collect();
            let out = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| format!("DeleteMessageBatch: {}", describe(&e)))?;
            report.deleted += out.successful.len();
        }
        Ok(report)
    }

    /// One record of the SQS event, as Lambda builds it.
    fn record(&self, m: &aws_sdk_sqs::types::Message) -> Value {
        let attributes: Map<String, Value> =
            m.attributes.iter().flatten().map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone()))).collect();
        json!({
            "messageId": m.message_id,
            "receiptHandle": m.receipt_handle,
            "body": m.body,
            "attributes": attributes,
            "messageAttributes": {},
            "md5OfBody": m.md5_of_body,
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        })
    }

    /// Polls until `stop` turns true (then lets the invocations under way finish), as Lambda's
    /// event source mapping does: one receive at a time, and each batch received invoked at once
    /// while fewer than `MaximumConcurrency` invocations run (an idle queue costs one long poll,
    /// a busy one up to that many invocations at once). Each batch's round is reported to `log`.
    pub async fn run(&self, stop: tokio::sync::watch::Receiver<bool>, log: impl Fn(&Mapping, &PollReport)) {
        type Running<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
        let max = self.mapping.max_concurrency.max(1);
        let mut running: futures::stream::FuturesUnordered<Running<'_, PollReport>> = Default::default();
        // A receive is never dropped half-way (its messages would stay invisible until the
        // visibility timeout): it runs to its end while invocations finish beside it.
        let mut receiving: Option<Running<'_, Result<Vec<aws_sdk_sqs::types::Message>, String>>> = None;
        loop {
            if receiving.is_none() && running.len() < max && !*stop.borrow() {
                receiving = Some(Box::pin(self.receive()));
            }
            if receiving.is_none() && running.is_empty() {
                return;
            }
            tokio::select! {
                received = async { receiving.as_mut().expect("checked").await }, if receiving.is_some() => {
                    receiving = None;
                    match received {
                        Ok(messages) if messages.is_empty() => {}
                        Ok(messages) => running.push(Box::pin(async move {
                            self.process(&messages).await.unwrap_or_else(|e| PollReport {
                                received: messages.len(),
                                invoke_error: Some(e),
                                ..PollReport::default()
                            })
                        })),
                        Err(e) => {
                            log(&self.mapping, &PollReport { invoke_error: Some(e), ..PollReport::default() });
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
                Some(report) = running.next(), if !running.is_empty() => log(&self.mapping, &report),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_declares_the_reply_queue_mapping() {
        let template =
            Template::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml"))
                .unwrap();
        let m = mappings(&template).unwrap();
        let reply = m.iter().find(|m| m.function == "KeywordReplyFunction").expect("keyword-reply mapping");
        assert_eq!(reply.binary, "keyword-reply");
        assert_eq!(reply.queue, "ReplyQueue");
        assert_eq!(reply.batch_size, 10);
        assert!(reply.report_batch_item_failures);
        assert_eq!(reply.max_concurrency, 20, "the parameter's default");
        let multicast = m.iter().find(|m| m.function == "MulticastFunction").expect("multicast mapping");
        assert_eq!(multicast.max_concurrency, 5);
    }

    #[test]
    fn the_template_schedules_the_sweep_on_the_campaign_function() {
        let template =
            Template::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml"))
                .unwrap();
        let s = schedules(&template).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].binary.as_str(), s[0].expression.as_str()), ("campaign", "rate(5 minutes)"));
        assert_eq!(scheduled_event("ap-northeast-1", "2026-12-07T00:00:00Z")["source"], "aws.events");
    }

    #[test]
    fn queue_arns_follow_the_url() {
        assert_eq!(
            arn_of("http://127.0.0.1:9324/123456789012/oa-local-reply.fifo", "ap-northeast-1"),
            "arn:aws:sqs:ap-northeast-1:123456789012:oa-local-reply.fifo"
        );
    }
}
