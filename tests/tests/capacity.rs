//! The DynamoDB units a function consumes, as DynamoDB Local reports them: every call through a
//! counted client asks for its consumed capacity (the adapters never do), and the tally per table
//! equals what the answers carried, as read or write units by the operation.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use integration_tests::*;
use shared::adapters::dynamodb::capacity;

#[tokio::test]
async fn every_call_through_the_counted_client_adds_its_units_to_its_tables_tally() {
    let stack = TestStack::new().await;
    let (db, tally) = capacity::client(&stack.sdk);
    let (rules, users) = (stack.table("RulesTable").to_string(), stack.table("UsersTable").to_string());
    let mut reported = std::collections::BTreeMap::<(String, bool), f64>::new();
    let mut note = |c: Option<&aws_sdk_dynamodb::types::ConsumedCapacity>, write: bool| {
        let c = c.expect("the counted client asks every call for its consumed capacity");
        *reported.entry((c.table_name().unwrap().to_string(), write)).or_default() += c.capacity_units().unwrap();
    };

    // 1.5 KB: 2 write units to put; half a unit to read eventually consistent, 1 strongly.
    let text = AttributeValue::S("x".repeat(1_500));
    let out = db
        .put_item()
        .table_name(&rules)
        .item("id", AttributeValue::S("a".into()))
        .item("text", text.clone())
        .send()
        .await
        .unwrap();
    note(out.consumed_capacity(), true);
    let key = AttributeValue::S("a".into());
    let out = db.get_item().table_name(&rules).key("id", key.clone()).send().await.unwrap();
    note(out.consumed_capacity(), false);
    let out = db.get_item().table_name(&rules).key("id", key).consistent_read(true).send().await.unwrap();
    note(out.consumed_capacity(), false);
    // A transaction over two tables: one entry per table.
    let put = |table: &str, key: &str, id: &str| {
        TransactWriteItem::builder()
            .put(Put::builder().table_name(table).item(key, AttributeValue::S(id.into())).build().unwrap())
            .build()
    };
    let out = db
        .transact_write_items()
        .transact_items(put(&rules, "id", "b"))
        .transact_items(put(&users, "userId", "U1"))
        .send()
        .await
        .unwrap();
    for c in out.consumed_capacity() {
        note(Some(c), true);
    }
    // A call that asked for more is left as it asked, and counted the same.
    let out = db
        .get_item()
        .table_name(&rules)
        .key("id", AttributeValue::S("b".into()))
        .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Indexes)
        .send()
        .await
        .unwrap();
    note(out.consumed_capacity(), false);
    // Calls that do not take it are left alone.
    db.describe_table().table_name(&rules).send().await.unwrap();
    // A write its condition refuses reports nothing but is billed: counted as one write unit.
    let refused = db
        .put_item()
        .table_name(&rules)
        .item("id", AttributeValue::S("a".into()))
        .condition_expression("attribute_not_exists(id)")
        .send()
        .await;
    assert!(refused.unwrap_err().into_service_error().is_conditional_check_failed_exception());
    *reported.entry((rules.clone(), true)).or_default() += 1.0;

    let tally = tally.take();
    let units = |table: &str| tally.get(table).copied().unwrap_or_default();
    assert_eq!(units(&rules).write, reported[&(rules.clone(), true)]);
    assert_eq!(units(&rules).read, reported[&(rules.clone(), false)]);
    assert_eq!(units(&users).write, reported[&(users.clone(), true)]);
    assert_eq!(units(&users).read, 0.0);
    assert!(units(&rules).write >= 2.0 + 2.0, "a 1.5 KB put and a transactional put: {tally:?}");
    assert!(units(&rules).read >= 1.5, "an eventually and a strongly consistent read: {tally:?}");
    let (_, other) = capacity::client(&stack.sdk);
    assert!(other.take().is_empty(), "each client its own tally");
}
