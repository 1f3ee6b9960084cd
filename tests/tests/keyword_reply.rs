//! The reply pipeline end to end: line-sim's webhook sender → webhook → reply-queue → poller →
//! keyword-reply → line-sim, over DynamoDB Local and the SQS emulator.

use std::sync::atomic::Ordering;
use std::time::Duration;

use integration_tests::pipeline::{texts, user, Pipeline};
use integration_tests::soon;
use serde_json::{json, Value};
use shared::envelope::QueuedEvent;
use shared::ports::{Clock, MessageQueue, SystemClock};

const RULES: &str = r#"
replies:
  - id: vip
    match: { exact: vip }
    messages: ["Welcome, VIP!", { type: sticker, packageId: "446", stickerId: "1988" }]
  - id: hours
    match: { contains: hours }
    messages: ["Open 8 to 8"]
  - id: group-hello
    match: { exact: "hello bakery" }
    sources: [group]
    messages: ["Hello, group!"]
postbacks:
  - id: survey
    match: { prefix: "q=dessert" }
    messages: ["Thanks for answering!"]
follow:
  newFriend: ["Nice to meet you"]
  unblocked: ["Welcome back"]
fallback:
  cooldown: 1h
  messages: ["We will answer soon"]
"#;

const SOON: Duration = Duration::from_secs(5);

fn text_event(user: &str, text: &str) -> Value {
    json!({ "userId": user, "text": text })
}

#[tokio::test]
async fn a_keyword_gets_exactly_its_reply_and_full_width_text_matches() {
    let p = Pipeline::new(RULES).await;
    let (a, b) = (user(), user());
    p.send(vec![text_event(&a, "vip"), text_event(&b, "ＶＩＰ")]).await;
    for u in [&a, &b] {
        let got = p.wait_for(u, 1, SOON).await;
        assert_eq!(got.len(), 1, "{u}: {got:?}");
        assert_eq!(got[0]["api"], "reply");
        assert_eq!(
            got[0]["messages"],
            json!([{ "type": "text", "text": "Welcome, VIP!" }, { "type": "sticker", "packageId": "446", "stickerId": "1988" }])
        );
    }
    assert_eq!(p.wait_until_drained(SOON).await, 0);
    assert_eq!(p.deliveries(&a).await.len(), 1, "nothing more arrives later");
}

#[tokio::test]
async fn a_redelivered_event_gets_one_reply() {
    let p = Pipeline::new(RULES).await;
    let u = user();
    let sent = p.send(vec![text_event(&u, "opening hours?")]).await;
    assert_eq!(p.wait_for(&u, 1, SOON).await.len(), 1);
    let id = sent.events[0]["webhookEventId"].as_str().unwrap();
    let again = p.sim().redeliver(Some(&p.webhook_url), &[id]).await.unwrap();
    assert_eq!(again.status, 200);

    // The same event reaching reply-queue twice (the webhook's claim released after a partial
    // failure, later than SQS's 5-minute deduplication) still gets one reply.
    enqueue(&p, &u, &sent.events[0], "a-different-dedupe-id").await;

    assert_eq!(p.wait_until_drained(SOON).await, 0);
    assert_eq!(p.deliveries(&u).await.len(), 1, "one reply however often the event arrives");
    assert_eq!(p.sim().requests("reply").await.unwrap().len(), 1, "the duplicate never reached LINE");
}

#[tokio::test]
async fn standby_gets_no_reply_and_groups_only_where_a_rule_allows() {
    let p = Pipeline::new(RULES).await;
    let u = user();
    let group = format!("C{}", &user()[1..]);
    let mut standby = text_event(&u, "vip");
    standby["mode"] = "standby".into();
    // Same friend, same FIFO group: when the last one is answered, the ones before were handled.
    p.send(vec![standby]).await;
    p.send(vec![json!({ "groupId": group, "userId": u, "text": "vip" })]).await;
    p.send(vec![json!({ "groupId": group, "userId": u, "text": "Hello Bakery" })]).await;
    let got = p.wait_for(&group, 1, SOON).await;
    assert_eq!(got.iter().map(texts).collect::<Vec<_>>(), [vec!["Hello, group!"]]);
    assert_eq!(p.wait_until_drained(SOON).await, 0);
    assert!(p.deliveries(&u).await.is_empty(), "standby and a 1:1-only rule in a group: no reply");
    assert_eq!(p.deliveries(&group).await.len(), 1, "no fallback in groups");
}

#[tokio::test]
async fn follow_greetings_postbacks_and_a_fallback_with_cooldown() {
    let p = Pipeline::new(RULES).await;
    let (new, back) = (user(), user());
    p.send(vec![
        json!({ "type": "follow", "userId": new }),
        json!({ "type": "follow", "userId": back, "isUnblocked": true }),
    ])
    .await;
    p.send(vec![json!({ "userId": new, "data": "q=dessert&a=yes" })]).await;
    p.send(vec![text_event(&new, "something else"), text_event(&new, "and again")]).await;
    p.send(vec![text_event(&new, "vip")]).await;
    let got = p.wait_for(&new, 4, SOON).await;
    assert_eq!(
        got.iter().map(texts).collect::<Vec<_>>(),
        [vec!["Nice to meet you"], vec!["Thanks for answering!"], vec!["We will answer soon"], vec!["Welcome, VIP!"]]
    );
    assert_eq!(texts(&p.wait_for(&back, 1, SOON).await[0]), ["Welcome back"]);
}

#[tokio::test]
async fn a_token_too_old_to_work_is_skipped_without_calling_line() {
    let p = Pipeline::new(RULES).await;
    p.clock.0.store(55_000, Ordering::SeqCst); // the function sees every event as 55 s old
    let u = user();
    p.send(vec![text_event(&u, "vip")]).await;
    assert_eq!(p.wait_until_drained(SOON).await, 0, "skipped records are deleted, not retried");
    assert!(p.sim().requests("reply").await.unwrap().is_empty(), "LINE was not called");
    assert!(p.deliveries(&u).await.is_empty());
}

#[tokio::test]
async fn a_token_line_refuses_is_dropped_after_one_400() {
    let p = Pipeline::new(RULES).await;
    let u = user();
    // A token LINE never issued (or one already used): LINE answers 400 "Invalid reply token".
    let event = json!({
        "type": "message", "mode": "active", "timestamp": SystemClock.now_ms(), "webhookEventId": ulid::Ulid::new().to_string(),
        "source": { "type": "user", "userId": u }, "replyToken": "0f3779fba3b349968c5d07db31eab56f",
        "deliveryContext": { "isRedelivery": false }, "message": { "id": "1", "type": "text", "text": "vip" },
    });
    enqueue(&p, &u, &event, "refused").await;
    assert_eq!(p.wait_until_drained(SOON).await, 0, "dropped, not left for a retry");
    let statuses = p.reply_log("status").await;
    assert_eq!(statuses, [json!(400)], "one try, no retry");
    assert!(p.deliveries(&u).await.is_empty());
}

/// Puts a LINE event on reply-queue directly, as the webhook would.
async fn enqueue(p: &Pipeline, user: &str, event: &Value, dedupe_id: &str) {
    let key = event["webhookEventId"].as_str().unwrap();
    let body = serde_json::to_string(&json!({
        "kind": "line", "dedupeKey": key, "destination": null, "receivedAt": SystemClock.now_ms(), "event": event,
    }))
    .unwrap();
    let parsed: QueuedEvent = serde_json::from_str(&body).expect("a queued event");
    assert_eq!(parsed.dedupe_key(), key);
    let queue = shared::adapters::sqs::SqsQueue::new(p.stack.sqs.clone(), p.stack.queue_url("ReplyQueue"));
    let message = shared::ports::OutgoingMessage { group_id: user, dedupe_id, body: &body };
    assert!(queue.send_all(&[message], soon()).await.failed.is_empty());
}

#[tokio::test]
async fn a_500_from_reply_is_retried_and_the_friend_gets_one_reply() {
    let p = Pipeline::new(RULES).await;
    p.sim().set_faults("reply", json!({ "error500": 1.0, "times": 1 })).await.unwrap();
    let u = user();
    p.send(vec![text_event(&u, "vip")]).await;
    // The failed record comes back after reply-queue's visibility timeout (10 s).
    let got = p.wait_for(&u, 1, Duration::from_secs(25)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(texts(&got[0]), ["Welcome, VIP!"]);
    let statuses = p.reply_log("status").await;
    assert_eq!(statuses, [json!(500), json!(200)]);
    assert_eq!(p.wait_until_drained(SOON).await, 0);
}

#[tokio::test]
async fn a_fallback_that_failed_is_retried_not_swallowed_by_its_cooldown() {
    let p = Pipeline::new(RULES).await;
    p.sim().set_faults("reply", json!({ "error500": 1.0, "times": 1 })).await.unwrap();
    let u = user();
    p.send(vec![text_event(&u, "anything at all")]).await;
    let got = p.wait_for(&u, 1, Duration::from_secs(25)).await;
    assert_eq!(got.iter().map(texts).collect::<Vec<_>>(), [vec!["We will answer soon"]]);
    assert_eq!(p.reply_log("status").await, [json!(500), json!(200)]);
}

#[tokio::test]
async fn a_timeout_is_retried_but_a_reply_line_delivered_late_is_not_sent_twice() {
    let p = Pipeline::new(RULES).await;
    // LINE does nothing and never answers: the 1 s client timeout makes it a retry.
    p.sim().set_faults("reply", json!({ "hang": 1.0, "times": 1 })).await.unwrap();
    let a = user();
    p.send(vec![text_event(&a, "vip")]).await;
    assert_eq!(p.wait_for(&a, 1, Duration::from_secs(25)).await.len(), 1);
    let faults = p.reply_log("fault").await;
    assert_eq!(faults, [json!("hang"), Value::Null]);

    // LINE delivers, then never answers: the retry finds the token used (400) and stops there.
    p.sim().set_faults("reply", json!({ "hangAfterDelivery": 1.0, "times": 1 })).await.unwrap();
    let b = user();
    p.send(vec![text_event(&b, "vip")]).await;
    assert_eq!(p.wait_for(&b, 1, SOON).await.len(), 1);
    assert_eq!(p.wait_until_drained(Duration::from_secs(25)).await, 0);
    assert_eq!(p.deliveries(&b).await.len(), 1, "one reply, not two");
    let statuses = p.reply_log("status").await[2..].to_vec();
    assert_eq!(statuses, [json!(200), json!(400)], "delivered (answered late), then the retry's refused token");
}

#[tokio::test]
async fn unreadable_messages_end_in_the_dead_letter_queue_after_max_receives() {
    let p = Pipeline::new(RULES).await;
    let queue = shared::adapters::sqs::SqsQueue::new(p.stack.sqs.clone(), p.stack.queue_url("ReplyQueue"));
    let message = shared::ports::OutgoingMessage { group_id: "g", dedupe_id: "poison", body: "not json" };
    assert!(queue.send_all(&[message], soon()).await.failed.is_empty());
    // maxReceiveCount 3, visibility 10 s: the DLQ has it after the third failed receive.
    let start = std::time::Instant::now();
    while integration_tests::pipeline::queue_depth(&p.stack, "ReplyDeadLetterQueue").await == 0 {
        assert!(start.elapsed() < Duration::from_secs(45), "not in the DLQ after 45 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let dead = p.stack.drain("ReplyDeadLetterQueue").await;
    assert_eq!(dead, ["not json"]);
    assert_eq!(p.reply_queue_depth().await, 0);
}

#[tokio::test]
async fn a_new_rules_version_is_picked_up_by_the_next_batch() {
    let p = Pipeline::new(RULES).await;
    let u = user();
    p.send(vec![text_event(&u, "vip")]).await;
    assert_eq!(p.wait_for(&u, 1, SOON).await.len(), 1);
    let v2 = RULES.replace("Welcome, VIP!", "VIP, version two");
    assert!(matches!(
        p.rules.publish(&v2, Some(1), 0).await.unwrap(),
        shared::adapters::dynamodb::rules::Publish::Published { version: 2 }
    ));
    p.send(vec![text_event(&u, "vip")]).await;
    let got = p.wait_for(&u, 2, SOON).await;
    assert_eq!(texts(&got[1]), ["VIP, version two"]);
    // A stale writer loses: nothing is written.
    assert_eq!(p.rules.publish(RULES, Some(1), 0).await.unwrap(), shared::adapters::dynamodb::rules::Publish::Conflict);
    assert_eq!(p.rules.current_version().await.unwrap(), Some(2));
}

#[tokio::test]
async fn a_bad_rules_file_is_rejected_with_its_line_and_nothing_live_changes() {
    let p = Pipeline::new(RULES).await;
    let dir = std::env::temp_dir().join(format!("rules-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "replies:\n  - id: x\n    match: { exact: x }\n    messages: []\n").unwrap();
    let err = oa::rules::apply(&p.rules, &bad, false, 0).await.unwrap_err();
    assert!(err.contains("bad.yaml:4:"), "{err}");
    assert!(err.contains("1-5 messages"), "{err}");
    assert_eq!(p.rules.current_version().await.unwrap(), Some(1));
    assert_eq!(p.rules.live().await.unwrap().unwrap().source, RULES);
}

#[tokio::test]
async fn a_dead_access_token_fails_the_batch_loudly_and_a_rotated_secret_answers_once() {
    let p = Pipeline::new(RULES).await;
    // The channel access token is reissued in the console: the one in the secret is dead.
    p.sim().set_access_token("reissued-token").await.unwrap();
    let u = user();
    p.send(vec![text_event(&u, "vip")]).await;
    // keyword-reply reads the secret again after the 401, gets the same dead token and fails the
    // invocation: nothing is deleted, and Lambda's Errors metric (the alarm) sees it.
    let start = std::time::Instant::now();
    while !p.invoke_errors.lock().unwrap().iter().any(|(f, e)| f == "keyword-reply" && e.contains("access token")) {
        assert!(start.elapsed() < Duration::from_secs(10), "no failed invocation: {:?}", p.invoke_errors);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(p.reply_log("status").await.contains(&json!(401)));
    assert!(p.reply_queue_depth().await >= 1, "the message is kept for the retry, not dropped");
    assert!(p.deliveries(&u).await.is_empty());

    // Ops put the new token in the secret; the retry (after the visibility timeout) reads it.
    p.stack.rotate_secret(&p.secret_arn, json!({ "channelAccessToken": "reissued-token" })).await;
    let got = p.wait_for(&u, 1, Duration::from_secs(30)).await;
    assert_eq!(got.iter().map(texts).collect::<Vec<_>>(), [vec!["Welcome, VIP!"]]);
    assert_eq!(p.wait_until_drained(SOON).await, 0);
    assert_eq!(p.deliveries(&u).await.len(), 1, "one reply");
}

#[tokio::test]
async fn a_forbidden_reply_fails_the_batch_instead_of_dropping_it() {
    let p = Pipeline::new(RULES).await;
    p.sim().set_faults("reply", json!({ "forbidden403": 1.0, "times": 1 })).await.unwrap();
    let u = user();
    p.send(vec![text_event(&u, "vip")]).await;
    let got = p.wait_for(&u, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "retried after the failed invocation, not dropped");
    assert_eq!(p.reply_log("status").await, [json!(403), json!(200)]);
    assert!(p.invoke_errors.lock().unwrap().iter().any(|(f, _)| f == "keyword-reply"));
}

#[tokio::test]
async fn a_chat_s_messages_are_answered_in_order_when_the_first_must_be_retried() {
    let p = Pipeline::new(RULES).await;
    let u = user();
    // Two events with reply tokens line-sim honours, put on reply-queue in one call, so the
    // consumer gets them in one batch.
    let nowhere = format!("{}/__sim/counters", p.sim.base_url());
    let sent =
        p.sim().send(Some(&nowhere), vec![text_event(&u, "vip"), text_event(&u, "opening hours?")]).await.unwrap();
    // The first message's reply, and only it, gets a 500 (whichever reaches LINE first).
    p.sim().set_faults("reply", json!({ "error500": 1.0, "times": 1, "bodyContains": "Welcome, VIP" })).await.unwrap();
    let entries: Vec<_> = sent
        .events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let key = event["webhookEventId"].as_str().unwrap();
            let body = json!({ "kind": "line", "dedupeKey": key, "receivedAt": SystemClock.now_ms(), "event": event });
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body.to_string())
                .message_group_id(&u)
                .message_deduplication_id(key)
                .build()
                .unwrap()
        })
        .collect();
    let out = p
        .stack
        .sqs
        .send_message_batch()
        .queue_url(p.stack.queue_url("ReplyQueue"))
        .set_entries(Some(entries))
        .send()
        .await
        .unwrap();
    assert!(out.failed.is_empty());
    // The first reply fails (500); the second must wait for it, not go first.
    let got = p.wait_for(&u, 2, Duration::from_secs(30)).await;
    assert_eq!(got.iter().map(texts).collect::<Vec<_>>(), [vec!["Welcome, VIP!"], vec!["Open 8 to 8"]]);
    assert_eq!(p.reply_log("status").await, [json!(500), json!(200), json!(200)]);
}
