//! Upgrading a deployed stack with a campaign mid-send: the campaign as the code before the counter
//! shards wrote it (its counters, file and messages on `c#<id>/meta`) is read, sent on, counted and
//! finished by the code of today, on DynamoDB Local, and keeps counting where the code before can
//! see it. No drain is needed before a deploy.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::TestStack;
use shared::adapters::dynamodb::campaigns::DynamoCampaigns;
use shared::adapters::memory::queue::MemoryWorkQueue;
use shared::campaign::batch::{BatchState, Settlement};
use shared::campaign::model::{Skips, State};
use shared::campaign::ports::{BatchRepo, CampaignAdmin, CampaignRepo};
use shared::campaign::sweep::Sweeper;
use shared::ports::SystemClock;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

async fn put(stack: &TestStack, item: Vec<(&str, AttributeValue)>) {
    let item: HashMap<String, AttributeValue> = item.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    stack.dynamodb.put_item().table_name(stack.table("CampaignsTable")).set_item(Some(item)).send().await.unwrap();
}

#[tokio::test]
async fn a_campaign_written_before_the_counter_shards_is_sent_on_counted_and_finished() {
    let stack = TestStack::new().await;
    let store = DynamoCampaigns::new(stack.dynamodb.clone(), stack.table("CampaignsTable"), stack.table("UsersTable"));
    let (friend_a, friend_b) = (format!("U{:032x}", 1), format!("U{:032x}", 2));
    // As the earlier code left it: two batches planned, the first sent (counted on meta).
    let mut meta = vec![
        ("pk", s("c#old")),
        ("sk", s("meta")),
        ("kind", s("campaign")),
        ("id", s("old")),
        ("run", s("r1")),
        ("name", s("Before the upgrade")),
        ("expression", s("dessert")),
        ("messages", s(r#"[{"type":"text","text":"Cake today"}]"#)),
        ("source", s("id: old\n")),
        ("preview", s(r#"{"billable":2}"#)),
        ("holdoutBps", n(0)),
        ("transactional", AttributeValue::Bool(false)),
        ("resend", AttributeValue::Bool(false)),
        ("notBefore", n(0)),
        ("state", s("sending")),
        ("createdAt", n(1)),
        ("startedAt", n(2)),
        ("firstSentAt", n(3)),
        ("lastSentAt", n(3)),
        ("planPage", n(2)),
        ("planDone", AttributeValue::Bool(true)),
        ("lastBatch", n(1)),
        ("batchSize", n(1)),
        ("caps", s("[]")),
        ("timezone", s("UTC")),
        ("policy", s("{}")),
    ];
    for (k, v) in [("segment", 2), ("planned", 2), ("batches", 2), ("settled", 1), ("sent", 1)] {
        meta.push((k, n(v)));
    }
    for k in ["holdout", "failed", "held", "unknown", "skipCap", "planSkipCap"] {
        meta.push((k, n(0)));
    }
    put(&stack, meta).await;
    for (number, friend, state) in [(0, &friend_a, "sent"), (1, &friend_b, "planned")] {
        let sk = format!("{number:06}");
        put(&stack, vec![("pk", s("c#old")), ("sk", s(&format!("r#r1#{sk}"))), ("to", s(friend)), ("holdout", s(""))])
            .await;
        put(&stack, vec![("pk", s("c#old")), ("sk", s(&format!("b#r1#{sk}"))), ("state", s(state)), ("size", n(1))])
            .await;
    }

    // Read by today's code: the file and the counters come from meta.
    let c = store.get("old").await.unwrap().expect("the old campaign reads");
    assert_eq!((c.state, c.segment.as_str(), c.messages.len()), (State::Sending, "dessert", 1));
    assert_eq!((c.counters.batches, c.counters.settled, c.counters.sent), (2, 1, 1));
    assert_eq!(c.preview.as_ref().map(|p| p["billable"].clone()), Some(serde_json::json!(2)));
    assert_eq!(store.state("old").await.unwrap(), Some(("r1".to_string(), State::Sending)));
    // The second batch sent by today's sender steps: its counts land on a shard and add up.
    let now = shared::ports::Clock::now_ms(&SystemClock);
    assert!(store.lease(&c, 1, "s", now, now + 60_000).await.unwrap());
    assert!(store.freeze(&c, 1, "s", &[true], &Skips::default(), "key", now).await.unwrap());
    let batch = store.batch(&c, 1).await.unwrap().unwrap();
    let outcome = Settlement {
        state: BatchState::Sent,
        sent: 1,
        failed: 0,
        unknown: 0,
        request_id: None,
        error: None,
        release_slots: false,
    };
    assert!(store.settle(&c, &batch, "s", &outcome, now).await.unwrap());
    let c = store.get("old").await.unwrap().unwrap();
    assert_eq!((c.counters.batches, c.counters.settled, c.counters.sent), (2, 2, 2));
    // Still counted on meta, to its end: the code before the shards, if it still runs during the
    // deploy, finishes the campaign only once meta says every batch settled, and that is true.
    let meta = integration_tests::get_item_by(&stack.dynamodb, stack.table("CampaignsTable"), "c#old", "meta").await;
    let count = |k: &str| meta.get(k).and_then(|v| v.as_n().ok()).cloned();
    assert_eq!((count("settled"), count("batches")), (Some("2".into()), Some("2".into())));
    assert_eq!(c.last_sent_at_ms, Some(now), "the latest settle, wherever it was counted");
    // A preview saved now goes where the campaign keeps it.
    store.save_preview("old", &serde_json::json!({ "billable": 1 })).await.unwrap();
    assert_eq!(store.get("old").await.unwrap().unwrap().preview.unwrap()["billable"], 1);
    // The sweep finishes it (a settle's own finish would too).
    let queue = MemoryWorkQueue::default();
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let swept = Sweeper { store: &store, batches: &queue, clock: &SystemClock, until }.run().await.unwrap();
    assert!(swept.finished.contains(&"old".to_string()), "{swept:?}");
    assert_eq!(store.get("old").await.unwrap().unwrap().state, State::Done);
    assert!(store.list().await.unwrap().iter().any(|c| c.id == "old"));
}
