//! SQS adapter: ordered SendMessageBatch calls (10 entries and 256 KiB per call at most).

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;

use crate::ports::{BatchOutcome, MessageQueue, OutgoingMessage};

const MAX_ENTRIES: usize = 10;
const MAX_BATCH_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }
}

/// Splits `messages` into consecutive index ranges that each fit one SendMessageBatch call.
pub fn batch_ranges(messages: &[OutgoingMessage<'_>]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, m) in messages.iter().enumerate() {
        let size = m.body.len();
        if i > start && (i - start == MAX_ENTRIES || bytes + size > MAX_BATCH_BYTES) {
            ranges.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < messages.len() {
        ranges.push(start..messages.len());
    }
    ranges
}

#[async_trait]
impl MessageQueue for SqsQueue {
    async fn send_all(&self, messages: &[OutgoingMessage<'_>]) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        let ranges = batch_ranges(messages);
        for (n, range) in ranges.iter().enumerate() {
            let entries: Result<Vec<_>, _> = range
                .clone()
                .map(|i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(messages[i].body)
                        .message_group_id(messages[i].group_id)
                        .message_deduplication_id(messages[i].dedupe_id)
                        .build()
                })
                .collect();
            let sent = match entries {
                Ok(entries) => self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| super::describe(&e)),
                Err(e) => Err(e.to_string()),
            };
            match sent {
                Ok(out) => {
                    for f in out.failed() {
                        if let Ok(i) = f.id().parse::<usize>() {
                            outcome.failed.push(i);
                        }
                        outcome.error.get_or_insert_with(|| format!("{}: {}", f.code(), f.message().unwrap_or("")));
                    }
                }
                Err(e) => {
                    // Stop here: later batches may hold later events of the same friends, and FIFO
                    // order is per send. Everything from this batch on is reported failed.
                    outcome.failed.extend(ranges[n..].iter().flat_map(|r| r.clone()));
                    outcome.error.get_or_insert(e);
                    break;
                }
            }
        }
        outcome.failed.sort_unstable();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(bodies: &[String]) -> Vec<OutgoingMessage<'_>> {
        bodies.iter().map(|body| OutgoingMessage { group_id: "g", dedupe_id: "d", body }).collect()
    }

    #[test]
    fn batches_hold_at_most_ten_entries() {
        let bodies = vec!["x".repeat(10); 23];
        assert_eq!(batch_ranges(&msgs(&bodies)), vec![0..10, 10..20, 20..23]);
        assert!(batch_ranges(&[]).is_empty());
    }

    #[test]
    fn batches_stay_under_the_byte_limit() {
        let bodies = vec!["x".repeat(100 * 1024); 5];
        assert_eq!(batch_ranges(&msgs(&bodies)), vec![0..2, 2..4, 4..5]);
    }
}
