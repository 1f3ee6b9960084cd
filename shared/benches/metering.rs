//! What measuring adds to each DynamoDB call: the interceptor's rewrite of the request body (adding
//! `ReturnConsumedCapacity`) and its read of the answer's units, on bodies the functions send.

use criterion::{criterion_group, criterion_main, Criterion};
use shared::adapters::dynamodb::capacity::{consumed, with_capacity};

/// An idempotency claim as the webhook sends it (UpdateItem with a condition).
const CLAIM: &str = r##"{"TableName":"oa-prod-events","Key":{"id":{"S":"01JEXAMPLE0000000000000000"}},"UpdateExpression":"SET #status = :in_progress, expiresAt = :expires, inProgressUntil = :until","ConditionExpression":"attribute_not_exists(id) OR expiresAt < :now_s OR #status = :partial OR (#status = :in_progress AND inProgressUntil < :now_ms)","ExpressionAttributeNames":{"#status":"status"},"ExpressionAttributeValues":{":in_progress":{"S":"IN_PROGRESS"},":partial":{"S":"PARTIAL"},":expires":{"N":"1797000000"},":until":{"N":"1796700000000"},":now_s":{"N":"1796690000"},":now_ms":{"N":"1796690000000"}},"ReturnValues":"ALL_OLD","ReturnValuesOnConditionCheckFailure":"ALL_OLD"}"##;

/// A sender's settlement: a transaction of three updates over two tables.
fn settlement() -> String {
    let update = |table: &str, n: usize| {
        format!(
            r##"{{"Update":{{"TableName":"{table}","Key":{{"pk":{{"S":"c#spring-{n}"}},"sk":{{"S":"b#0123456789ab#{n:06}"}}}},"UpdateExpression":"SET #s = :sent, sent = :n, requestId = :r REMOVE leaseOwner, leaseUntil","ConditionExpression":"leaseOwner = :owner AND #s = :frozen","ExpressionAttributeNames":{{"#s":"state"}},"ExpressionAttributeValues":{{":sent":{{"S":"sent"}},":n":{{"N":"500"}},":r":{{"S":"req-{n}"}},":owner":{{"S":"0123456789abcdef"}},":frozen":{{"S":"frozen"}}}}}}}}"##
        )
    };
    format!(
        r##"{{"TransactItems":[{},{},{}]}}"##,
        update("oa-prod-campaigns", 1),
        update("oa-prod-campaigns", 2),
        update("oa-prod-users", 3)
    )
}

const ANSWER: &str = r##"{"Attributes":{"id":{"S":"01JEXAMPLE0000000000000000"},"status":{"S":"PARTIAL"}},"ConsumedCapacity":{"TableName":"oa-prod-events","CapacityUnits":1.0}}"##;
const TRANSACTION_ANSWER: &str = r##"{"ConsumedCapacity":[{"TableName":"oa-prod-campaigns","CapacityUnits":4.0},{"TableName":"oa-prod-users","CapacityUnits":2.0}]}"##;

fn metering(c: &mut Criterion) {
    let settle = settlement();
    c.bench_function("capacity: ask an UpdateItem for its units", |b| b.iter(|| with_capacity(CLAIM.as_bytes())));
    c.bench_function("capacity: ask a 3-update transaction for its units", |b| {
        b.iter(|| with_capacity(settle.as_bytes()))
    });
    c.bench_function("capacity: read an UpdateItem answer's units", |b| b.iter(|| consumed(ANSWER.as_bytes())));
    c.bench_function("capacity: read a transaction answer's units", |b| {
        b.iter(|| consumed(TRANSACTION_ANSWER.as_bytes()))
    });
}

criterion_group!(benches, metering);
criterion_main!(benches);
