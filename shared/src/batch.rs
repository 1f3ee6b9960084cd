//! SQS batches with partial failures, as both queue consumers answer them.

use std::collections::BTreeMap;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};

/// What became of one record, as the batch response and the batch log line need it.
pub trait RecordOutcome: Copy {
    /// The name counted in the batch log line.
    fn name(self) -> &'static str;
    /// Whether SQS should deliver the record again (reported in `batchItemFailures`).
    fn is_failure(self) -> bool;
}

/// Every record back to the queue: nothing could be done for any of them.
pub fn retry_all(records: &[SqsMessage]) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for r in records {
        response.add_failure(r.message_id.clone().unwrap_or_default());
    }
    response
}

/// The batch response for per-record outcomes, and how many records ended in each outcome.
pub fn respond<'r, O: RecordOutcome>(
    outcomes: impl IntoIterator<Item = (&'r SqsMessage, O)>,
) -> (SqsBatchResponse, BTreeMap<&'static str, usize>) {
    let mut response = SqsBatchResponse::default();
    let mut counts = BTreeMap::new();
    for (record, outcome) in outcomes {
        *counts.entry(outcome.name()).or_default() += 1;
        if outcome.is_failure() {
            response.add_failure(record.message_id.clone().unwrap_or_default());
        }
    }
    (response, counts)
}
