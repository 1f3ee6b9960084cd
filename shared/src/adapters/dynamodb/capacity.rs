//! The DynamoDB units a process actually consumes, per table, as DynamoDB reports them.
//!
//! One SDK interceptor ([`Capacity`], installed by [`client`]) does it for every call of every
//! adapter through that client: before signing, it asks for `ReturnConsumedCapacity: TOTAL` on each
//! item and batch operation (GetItem, Query, Scan, BatchGetItem, TransactGetItems, PutItem,
//! UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems; an explicit `INDEXES` is kept, an
//! explicit `NONE` replaced); after the answer, it adds the `ConsumedCapacity` DynamoDB returned
//! (one object, or one per table for batches and transactions) to the client's [`Tally`], as read
//! units or write units by the operation. A write refused by its condition
//! (`ConditionalCheckFailedException`) carries no consumed capacity but is billed all the same: it
//! is counted as 1 write unit (DynamoDB bills the size of the item already there, at least 1, which
//! the answer does not tell). A function takes the tally after each invocation ([`Tally::take`]).
//! The statement operations (PartiQL) are not counted: the product does not use them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde_json::Value;

/// Units one table consumed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    pub read: f64,
    pub write: f64,
}

/// The units one client's calls consumed, per table (each client its own, so tests and
/// invocations do not mix).
#[derive(Debug, Clone, Default)]
pub struct Tally(Arc<Mutex<BTreeMap<String, Units>>>);

impl Tally {
    /// The units consumed since the last take, per table; the tally starts again at zero.
    pub fn take(&self) -> BTreeMap<String, Units> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn add(&self, table: String, units: f64, write: bool) {
        let mut tally = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let t = tally.entry(table).or_default();
        if write {
            t.write += units;
        } else {
            t.read += units;
        }
    }
}

/// The operations that take `ReturnConsumedCapacity`, and whether they read or write.
fn kind(operation: &str) -> Option<bool> {
    match operation {
        "GetItem" | "Query" | "Scan" | "BatchGetItem" | "TransactGetItems" => Some(false),
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems" => Some(true),
        _ => None,
    }
}

/// The operation of a DynamoDB request: `x-amz-target: DynamoDB_20120810.PutItem`.
fn operation(target: Option<&str>) -> Option<&str> {
    target?.rsplit('.').next()
}

/// The request body with `ReturnConsumedCapacity: TOTAL`, when it has none (or `NONE`), and the
/// table it names (single-item operations).
pub fn with_capacity(body: &[u8]) -> (Option<Vec<u8>>, Option<String>) {
    let Ok(mut request) = serde_json::from_slice::<serde_json::Map<String, Value>>(body) else { return (None, None) };
    let table = request.get("TableName").and_then(Value::as_str).map(str::to_string);
    if request.get("ReturnConsumedCapacity").is_some_and(|v| v != "NONE") {
        return (None, table);
    }
    request.insert("ReturnConsumedCapacity".into(), Value::String("TOTAL".into()));
    (serde_json::to_vec(&request).ok(), table)
}

/// Only what the tally needs from an answer: the rest of the body is skipped, not built.
#[derive(serde::Deserialize)]
struct Answer {
    #[serde(rename = "ConsumedCapacity")]
    consumed: Option<OneOrMany>,
    #[serde(rename = "__type")]
    error: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(Consumed),
    Many(Vec<Consumed>),
}

#[derive(serde::Deserialize)]
struct Consumed {
    #[serde(rename = "TableName")]
    table: String,
    #[serde(rename = "CapacityUnits")]
    units: f64,
}

/// The units an answer reports, per table.
pub fn consumed(body: &[u8]) -> Vec<(String, f64)> {
    match serde_json::from_slice::<Answer>(body).ok().and_then(|a| a.consumed) {
        Some(OneOrMany::One(c)) => vec![(c.table, c.units)],
        Some(OneOrMany::Many(list)) => list.into_iter().map(|c| (c.table, c.units)).collect(),
        None => vec![],
    }
}

/// Whether an answer is a write refused by its condition.
fn condition_failed(body: &[u8]) -> bool {
    serde_json::from_slice::<Answer>(body)
        .ok()
        .and_then(|a| a.error)
        .is_some_and(|e| e.ends_with("ConditionalCheckFailedException"))
}

/// The operation under way: whether it writes, and its table when it names one (kept in its config
/// bag from the request to the answer: the request itself is gone once sent).
#[derive(Debug, Clone)]
struct Call {
    write: bool,
    table: Option<String>,
}

impl Storable for Call {
    type Storer = StoreReplace<Self>;
}

/// The interceptor; [`client`] installs it.
#[derive(Debug)]
pub struct Capacity(Tally);

impl Intercept for Capacity {
    fn name(&self) -> &'static str {
        "ConsumedCapacity"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        let Some(write) = operation(request.headers().get("x-amz-target")).and_then(kind) else { return Ok(()) };
        let (body, table) = request.body().bytes().map(with_capacity).unwrap_or_default();
        cfg.interceptor_state().store_put(Call { write, table });
        if let Some(body) = body {
            request.headers_mut().insert("content-length", body.len().to_string());
            *request.body_mut() = SdkBody::from(body);
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(call) = cfg.load::<Call>() else { return Ok(()) };
        let Some(body) = context.response().body().bytes() else { return Ok(()) };
        for (table, units) in consumed(body) {
            self.0.add(table, units, call.write);
        }
        if call.write && !context.response().status().is_success() && condition_failed(body) {
            if let Some(table) = &call.table {
                self.0.add(table.clone(), 1.0, true);
            }
        }
        Ok(())
    }
}

/// A DynamoDB client whose every call is counted, and its tally.
pub fn client(sdk: &aws_config::SdkConfig) -> (aws_sdk_dynamodb::Client, Tally) {
    let tally = Tally::default();
    let config = aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(Capacity(tally.clone())).build();
    (aws_sdk_dynamodb::Client::from_conf(config), tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_asks_for_its_capacity_unless_it_asked_already() {
        let (body, table) = with_capacity(br#"{"TableName":"t","Key":{}}"#);
        let v: Value = serde_json::from_slice(&body.unwrap()).unwrap();
        assert_eq!((v["ReturnConsumedCapacity"].as_str(), v["TableName"].as_str()), (Some("TOTAL"), Some("t")));
        assert_eq!(table.as_deref(), Some("t"));
        assert!(with_capacity(br#"{"ReturnConsumedCapacity":"INDEXES"}"#).0.is_none());
        assert!(with_capacity(br#"{"ReturnConsumedCapacity":"NONE"}"#).0.is_some(), "NONE would hide the units");
        assert_eq!(with_capacity(b"not json"), (None, None));
    }

    #[test]
    fn a_write_refused_by_its_condition_is_told_apart() {
        let refused = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#;
        assert!(condition_failed(refused));
        assert!(!condition_failed(
            br#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}"#
        ));
    }

    #[test]
    fn an_answer_reports_one_table_or_one_per_table() {
        assert_eq!(
            consumed(br#"{"ConsumedCapacity":{"TableName":"a","CapacityUnits":1.5}}"#),
            [("a".to_string(), 1.5)]
        );
        let both =
            br#"{"ConsumedCapacity":[{"TableName":"a","CapacityUnits":4.0},{"TableName":"b","CapacityUnits":2.0}]}"#;
        assert_eq!(consumed(both), [("a".to_string(), 4.0), ("b".to_string(), 2.0)]);
        assert!(consumed(br#"{"Item":{}}"#).is_empty());
    }

    #[test]
    fn reads_and_writes_are_told_by_the_operation() {
        assert_eq!(operation(Some("DynamoDB_20120810.TransactWriteItems")).and_then(kind), Some(true));
        assert_eq!(operation(Some("DynamoDB_20120810.Query")).and_then(kind), Some(false));
        assert_eq!(operation(Some("DynamoDB_20120810.DescribeTable")).and_then(kind), None);
    }
}
