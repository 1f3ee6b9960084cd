//! SQS batches with partial failures, as the queue consumers answer them, and the order FIFO
//! queues promise: one message group's records one after the other, in queue order.

use std::collections::BTreeMap;
use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};
use futures::future::join_all;

/// What became of one record, as the batch response and the batch log line need it.
pub trait RecordOutcome: Copy {
    /// The name counted in the batch log line.
    fn name(self) -> &'static str;
    /// Whether SQS should deliver the record again (reported in `batchItemFailures`).
    fn is_failure(self) -> bool;
    /// The outcome of a record that was not run because an earlier record of its message group
    /// failed: it must be delivered again, after that one.
    fn held() -> Self;
    /// A failure no retry can fix (the body is unreadable): it goes on to the dead-letter queue
    /// and must not hold the group's later records, or they would follow it there.
    fn is_poison(self) -> bool {
        false
    }
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

/// The FIFO message group of a record (`attributes.MessageGroupId`); empty on standard queues.
pub fn message_group(record: &SqsMessage) -> &str {
    record.attributes.get("MessageGroupId").map(String::as_str).unwrap_or_default()
}

/// Runs `handle` on every record: message groups (on these queues, friends) concurrently, each
/// group's records one after the other in queue order. After a record of a group fails, the
/// group's later records are not run and come back as [`RecordOutcome::held`], so nothing
/// overtakes the failed one when SQS delivers them again; a poison record (unreadable, bound for
/// the dead-letter queue) holds nothing.
pub async fn in_group_order<'r, O, F, Fut>(records: &'r [SqsMessage], handle: F) -> Vec<(&'r SqsMessage, O)>
where
    O: RecordOutcome,
    F: Fn(&'r SqsMessage) -> Fut,
    Fut: Future<Output = O>,
{
    let mut groups: BTreeMap<&str, Vec<&SqsMessage>> = BTreeMap::new();
    for r in records {
        groups.entry(message_group(r)).or_default().push(r);
    }
    let handle = &handle;
    let runs = groups.into_values().map(|group| async move {
        let mut out = Vec::with_capacity(group.len());
        let mut held = false;
        for r in group {
            let outcome = if held { O::held() } else { handle(r).await };
            held |= outcome.is_failure() && !outcome.is_poison();
            out.push((r, outcome));
        }
        out
    });
    join_all(runs).await.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Done {
        Ok,
        Retry,
        Held,
        Poison,
    }

    impl RecordOutcome for Done {
        fn name(self) -> &'static str {
            match self {
                Done::Ok => "ok",
                Done::Retry => "retried",
                Done::Held => "held",
                Done::Poison => "unreadable",
            }
        }
        fn is_failure(self) -> bool {
            self != Done::Ok
        }
        fn held() -> Self {
            Done::Held
        }
        fn is_poison(self) -> bool {
            self == Done::Poison
        }
    }

    fn record(id: &str, group: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.attributes.insert("MessageGroupId".into(), group.into());
        m
    }

    #[tokio::test]
    async fn a_group_s_records_run_in_order_and_stop_at_the_first_failure() {
        let records = [record("a1", "A"), record("b1", "B"), record("a2", "A"), record("a3", "A"), record("b2", "B")];
        let ran = Mutex::new(vec![]);
        let outcomes = in_group_order(&records, |r| {
            let id = r.message_id.clone().unwrap_or_default();
            ran.lock().unwrap().push(id.clone());
            async move {
                tokio::task::yield_now().await;
                if id == "a2" {
                    Done::Retry
                } else {
                    Done::Ok
                }
            }
        })
        .await;
        let by_id: BTreeMap<String, Done> =
            outcomes.iter().map(|(r, o)| (r.message_id.clone().unwrap_or_default(), *o)).collect();
        assert_eq!(by_id["a1"], Done::Ok);
        assert_eq!(by_id["a2"], Done::Retry);
        assert_eq!(by_id["a3"], Done::Held, "not run: it must not overtake a2");
        assert_eq!((by_id["b1"], by_id["b2"]), (Done::Ok, Done::Ok), "other groups go on");
        let ran = ran.into_inner().unwrap();
        let a: Vec<&String> = ran.iter().filter(|id| id.starts_with('a')).collect();
        assert_eq!(a, ["a1", "a2"], "queue order within the group");
        let (response, counts) = respond(outcomes);
        let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed.len(), 2);
        assert!(failed.contains(&"a2") && failed.contains(&"a3"));
        assert_eq!(counts["held"], 1);
    }

    #[tokio::test]
    async fn an_unreadable_record_does_not_drag_its_group_to_the_dead_letter_queue() {
        let records = [record("a1", "A"), record("a2", "A")];
        let outcomes = in_group_order(&records, |r| async move {
            if r.message_id.as_deref() == Some("a1") {
                Done::Poison
            } else {
                Done::Ok
            }
        })
        .await;
        assert_eq!(outcomes.iter().map(|(_, o)| *o).collect::<Vec<_>>(), [Done::Poison, Done::Ok]);
    }
}
