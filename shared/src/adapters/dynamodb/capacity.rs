//! The DynamoDB units a process actually consumes, per table, as DynamoDB reports them.
//!
//! One SDK interceptor ([`Capacity`], installed by [`client`]) does it for every call of every
//! adapter: before signing, it asks for `ReturnConsumedCapacity: TOTAL` on each operation that
//! takes it (unless the call asked for more already); after the answer, it adds the
//! `ConsumedCapacity` DynamoDB returned (one object, or one per table for batches and
//! transactions) to the process's tally, as read units or write units by the operation. A
//! function takes the tally after each invocation ([`take`]); in on-demand mode these units are
//! what DynamoDB bills.

use std::collections::BTreeMap;
use std::sync::Mutex;

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

static TALLY: Mutex<BTreeMap<String, Units>> = Mutex::new(BTreeMap::new());

/// The units consumed since the last call, per table, and a fresh tally.
pub fn take() -> BTreeMap<String, Units> {
    std::mem::take(&mut *TALLY.lock().unwrap_or_else(|p| p.into_inner()))
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

/// The request body with `ReturnConsumedCapacity: TOTAL` added, when it has none.
pub fn with_capacity(body: &[u8]) -> Option<Vec<u8>> {
    let mut request: serde_json::Map<String, Value> = serde_json::from_slice(body).ok()?;
    if request.contains_key("ReturnConsumedCapacity") {
        return None;
    }
    request.insert("ReturnConsumedCapacity".into(), Value::String("TOTAL".into()));
    serde_json::to_vec(&request).ok()
}

/// The units an answer reports, per table.
pub fn consumed(body: &[u8]) -> Vec<(String, f64)> {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else { return vec![] };
    let one = |c: &Value| Some((c.get("TableName")?.as_str()?.to_string(), c.get("CapacityUnits")?.as_f64()?));
    match answer.get("ConsumedCapacity") {
        Some(Value::Array(list)) => list.iter().filter_map(one).collect(),
        Some(c) => one(c).into_iter().collect(),
        None => vec![],
    }
}

/// Whether the operation under way writes (kept in its config bag from the request to the answer:
/// the request itself is gone once sent).
#[derive(Debug, Clone, Copy)]
struct Writes(bool);

impl Storable for Writes {
    type Storer = StoreReplace<Self>;
}

/// The interceptor; [`client`] installs it.
#[derive(Debug)]
pub struct Capacity;

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
        cfg.interceptor_state().store_put(Writes(write));
        if let Some(body) = request.body().bytes().and_then(with_capacity) {
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
        let Some(&Writes(write)) = cfg.load::<Writes>() else { return Ok(()) };
        let Some(body) = context.response().body().bytes() else { return Ok(()) };
        let used = consumed(body);
        if !used.is_empty() {
            let mut tally = TALLY.lock().unwrap_or_else(|p| p.into_inner());
            for (table, units) in used {
                let t = tally.entry(table).or_default();
                if write {
                    t.write += units;
                } else {
                    t.read += units;
                }
            }
        }
        Ok(())
    }
}

/// A DynamoDB client whose every call is counted ([`take`]).
pub fn client(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(Capacity).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_asks_for_its_capacity_unless_it_asked_already() {
        let body = with_capacity(br#"{"TableName":"t","Key":{}}"#).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["ReturnConsumedCapacity"], "TOTAL");
        assert_eq!(v["TableName"], "t");
        assert!(with_capacity(br#"{"ReturnConsumedCapacity":"INDEXES"}"#).is_none());
        assert!(with_capacity(b"not json").is_none());
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
