//! What every DynamoDB adapter of the campaign path shares: conditional calls read as
//! `true`/`false`, transactions retried while contended, and the capacity they consumed.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use crate::adapters::sdk::describe;
use crate::ports::BackendError;

pub(crate) fn err(operation: &'static str, message: String) -> BackendError {
    BackendError::Store { operation, message }
}

/// A conditional call: `Ok(true)` applied, `Ok(false)` its condition did not hold.
pub(crate) fn conditional<E>(
    result: Result<(), SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>,
    operation: &'static str,
) -> Result<bool, BackendError>
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(()) => Ok(true),
        Err(SdkError::ServiceError(se)) if se.err().code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(e) => Err(err(operation, describe(&e))),
    }
}

/// Read and write units consumed, as DynamoDB reports them (`ReturnConsumedCapacity`), in
/// thousandths: the page reads of friends (BatchGetItem), the reservations (UpdateItem on users)
/// and the transactions (page commits, settlements).
#[derive(Debug, Default)]
pub struct Meter {
    reads: AtomicU64,
    writes: AtomicU64,
}

/// Capacity units consumed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    pub reads: f64,
    pub writes: f64,
}

impl Meter {
    fn add(counter: &AtomicU64, units: f64) {
        counter.fetch_add((units * 1000.0).round() as u64, Ordering::Relaxed);
    }

    pub(crate) fn read(&self, units: f64) {
        Self::add(&self.reads, units);
    }

    pub(crate) fn write(&self, units: f64) {
        Self::add(&self.writes, units);
    }
}

pub(crate) fn consumed(list: &[aws_sdk_dynamodb::types::ConsumedCapacity]) -> f64 {
    list.iter().filter_map(|c| c.capacity_units).sum()
}

/// A transaction that lost to another one on the same item, or was throttled: worth a retry.
struct Contended(String);

impl Meter {
    /// Capacity units consumed so far.
    pub fn units(&self) -> Units {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / 1000.0;
        Units { reads: load(&self.reads), writes: load(&self.writes) }
    }
}

/// Runs a transaction: true if it was applied, false if a condition did not hold. Conflicts
/// with another transaction on the same item (every batch settles on its campaign's item) and
/// throttling are retried with backoff.
pub(crate) async fn transact(
    client: &Client,
    meter: &Meter,
    actions: Vec<TransactWriteItem>,
) -> Result<bool, BackendError> {
    let mut attempt = 0u32;
    loop {
        match transact_once(client, meter, actions.clone()).await {
            Err(Contended(reasons)) if attempt < 8 => {
                attempt += 1;
                let base = 10u64 << attempt.min(6);
                tokio::time::sleep(std::time::Duration::from_millis(base + fastrand::u64(0..=base))).await;
                tracing::debug!(attempt, reasons, "transaction contended: trying again");
            }
            Err(Contended(reasons)) => return Err(err("TransactWriteItems", format!("still contended: {reasons}"))),
            Ok(result) => return result,
        }
    }
}

async fn transact_once(
    client: &Client,
    meter: &Meter,
    actions: Vec<TransactWriteItem>,
) -> Result<Result<bool, BackendError>, Contended> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    let request = client
        .transact_write_items()
        .set_transact_items(Some(actions))
        .return_consumed_capacity(ReturnConsumedCapacity::Total);
    let answer = match request.send().await {
        Ok(out) => {
            meter.write(consumed(out.consumed_capacity()));
            Ok(true)
        }
        Err(SdkError::ServiceError(se)) => match se.err() {
            E::TransactionCanceledException(t) => {
                let codes: Vec<&str> =
                    t.cancellation_reasons().iter().filter_map(|r| r.code()).filter(|c| *c != "None").collect();
                if codes
                    .iter()
                    .any(|c| matches!(*c, "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"))
                {
                    return Err(Contended(codes.join(",")));
                }
                if codes.iter().all(|c| *c == "ConditionalCheckFailed") {
                    Ok(false)
                } else {
                    Err(err("TransactWriteItems", format!("cancelled: {}", codes.join(","))))
                }
            }
            E::TransactionInProgressException(_) | E::ProvisionedThroughputExceededException(_) => {
                return Err(Contended(se.err().to_string()));
            }
            other if other.code() == Some("ThrottlingException") => return Err(Contended(other.to_string())),
            other => Err(err("TransactWriteItems", format!("{}: {}", other.code().unwrap_or("error"), other))),
        },
        Err(e) => Err(err("TransactWriteItems", describe(&e))),
    };
    Ok(answer)
}
