//! The webhook function against DynamoDB Local and the SQS emulator: every request goes through the
//! real handler, decoded from a Function URL event the way Lambda delivers it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use integration_tests::*;
use serde_json::json;
use shared::adapters::memory::ingest::SlowFriends;
use shared::envelope::QueuedEvent;

const BOT: &str = "Ubot00000000000000000000000000000";

#[tokio::test]
async fn one_tampered_byte_is_rejected_and_changes_nothing() {
    let stack = TestStack::new().await;
    let deps = stack.webhook().await;
    let user = sample::user_id();
    let body = sample::body(BOT, &[sample::follow(&sample::event_id(), &user, sample::now_ms(), false)]);
    let signature = shared::line::signature::sign(CHANNEL_SECRET, &body);
    let mut tampered = body.clone();
    let at = tampered.iter().position(|&b| b == b'f').unwrap();
    tampered[at] = b'F';
    let request = function_url_request("POST", "/webhook", &[("x-line-signature", &signature)], &tampered, false);
    assert_eq!(call(&deps, request).await.0, 401);
    // Also: no header at all, and a signature made with another secret.
    let unsigned = function_url_request("POST", "/webhook", &[], &body, false);
    assert_eq!(call(&deps, unsigned).await.0, 401);
    let other = shared::line::signature::sign("another-secret", &body);
    let wrong = function_url_request("POST", "/webhook", &[("x-line-signature", &other)], &body, false);
    assert_eq!(call(&deps, wrong).await.0, 401);
    stack.assert_untouched().await;
}

#[tokio::test]
async fn signature_header_name_is_case_insensitive_and_base64_bodies_are_verified_decoded() {
    let stack = TestStack::new().await;
    let deps = stack.webhook().await;
    let body = one_text_body("hello");
    let signature = shared::line::signature::sign(CHANNEL_SECRET, &body);
    let request = function_url_request("POST", "/webhook", &[("X-Line-Signature", &signature)], &body, true);
    assert_eq!(call(&deps, request).await.0, 200);
    assert_eq!(stack.drain("TagQueue").await.len(), 1);
}

#[tokio::test]
async fn oversized_malformed_and_misrouted_requests_get_clear_errors_and_store_nothing() {
    let stack = TestStack::new().await;
    let deps = stack.webhook().await;

    let mut big = sample::body(BOT, &[]);
    big.truncate(big.len() - 1);
    big.extend(std::iter::repeat_n(b' ', webhook::MAX_BODY_BYTES));
    big.push(b'}');
    let (status, _) = call(&deps, line_post(&big)).await;
    assert_eq!(status, 413);

    let (status, text) = call(&deps, line_post(b"{not json")).await;
    assert_eq!(status, 400);
    assert!(text.contains("not JSON"), "{text}");
    let (status, text) = call(&deps, line_post(br#"{"destination":"U1","events":"nope"}"#)).await;
    assert_eq!(status, 400);
    assert!(text.contains("events"), "{text}");

    let get = function_url_request("GET", "/webhook", &[], b"", false);
    assert_eq!(call(&deps, get).await.0, 405);
    assert_eq!(call(&deps, function_url_request("POST", "/elsewhere", &[], b"{}", false)).await.0, 404);

    let (status, text) =
        call(&deps, shop_post(br#"{"eventId":"x","type":"purchase","userId":"bob","occurredAt":1}"#)).await;
    assert_eq!(status, 400);
    assert!(text.contains("userId"), "{text}");
    stack.assert_untouched().await;
}

#[tokio::test]
async fn empty_events_is_ok() {
    let stack = TestStack::new().await;
    let (status, _) = call(&stack.webhook().await, line_post(&sample::body(BOT, &[]))).await;
    assert_eq!(status, 200);
    stack.assert_untouched().await;
}

#[tokio::test]
async fn events_reach_the_queues_they_belong_to_in_order_and_intact() {
    let stack = TestStack::new().await;
    let (alice, bob) = (sample::user_id(), sample::user_id());
    let now = sample::now_ms();
    let ids: Vec<String> = (0..5).map(|_| sample::event_id()).collect();
    let unknown = json!({"type": "brandNewThing", "timestamp": now, "mode": "active", "webhookEventId": ids[4],
        "source": {"type": "user", "userId": bob}, "deliveryContext": {"isRedelivery": false}, "surprise": {"x": [1, 2]}});
    let events = [
        sample::text(&ids[0], &alice, "first", now),
        sample::postback(&ids[1], &bob, "q=dessert&a=yes", now + 1),
        sample::text(&ids[2], &alice, "second", now + 2),
        sample::unfollow(&ids[3], &bob, now + 3),
        unknown.clone(),
    ];
    let (status, _) = call(&stack.webhook().await, line_post(&sample::body(BOT, &events))).await;
    assert_eq!(status, 200);

    let replies = stack.drain_events("ReplyQueue").await;
    let tags = stack.drain_events("TagQueue").await;
    // Only events with a reply token can be answered.
    let mut reply_keys = keys(&replies);
    reply_keys.sort();
    let mut expected = vec![ids[0].clone(), ids[1].clone(), ids[2].clone()];
    expected.sort();
    assert_eq!(reply_keys, expected);
    let mut tag_keys = keys(&tags);
    tag_keys.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(tag_keys, all);
    // Per friend, order is kept.
    let alice_keys: Vec<String> = tags
        .iter()
        .filter_map(|e| match e {
            QueuedEvent::Line { event, dedupe_key, .. } if event.user_id() == Some(alice.as_str()) => {
                Some(dedupe_key.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(alice_keys, vec![ids[0].clone(), ids[2].clone()]);
    // The unknown event travels exactly as LINE sent it.
    let carried = tags.iter().find(|e| e.dedupe_key() == ids[4]).unwrap();
    match carried {
        QueuedEvent::Line { event, destination, .. } => {
            assert_eq!(serde_json::from_str::<serde_json::Value>(event.raw()).unwrap(), unknown);
            assert_eq!(destination.as_deref(), Some(BOT));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_same_event_five_times_in_a_row_is_one_message_per_queue() {
    let stack = TestStack::new().await;
    let deps = stack.webhook().await;
    let event = sample::text(&sample::event_id(), &sample::user_id(), "hi", sample::now_ms());
    let (mut enqueued, mut tag_messages) = (0, 0);
    for attempt in 0..5 {
        let e = if attempt == 0 { event.clone() } else { sample::redelivered(event.clone()) };
        let (status, body) = call(&deps, line_post(&sample::body(BOT, &[e]))).await;
        assert_eq!(status, 200, "attempt {attempt}");
        let (new, duplicates) = counts(&body);
        assert_eq!(duplicates, u64::from(attempt > 0), "attempt {attempt}: {body}");
        enqueued += new;
        // What the queues saw so far is consumed, as the consumers would: the queues' own 5-minute
        // deduplication must not be what keeps the repeats out (LINE may redeliver much later).
        tag_messages += stack.drain("TagQueue").await.len();
    }
    assert_eq!(enqueued, 1, "the event was enqueued by exactly one delivery");
    assert_eq!(tag_messages, 1);
    assert_eq!(stack.drain("ReplyQueue").await.len(), 1);
}

#[tokio::test]
async fn the_same_event_twenty_times_concurrently_is_one_message_per_queue() {
    let stack = TestStack::new().await;
    let deps = stack.webhook().await;
    let body = one_text_body("hi");
    let answers = join_all((0..20).map(|_| call(&deps, line_post(&body)))).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.0).collect();
    // The winner gets 200; twins caught mid-flight get 500 (LINE redelivers them), later ones 200.
    assert!(statuses.iter().all(|s| *s == 200 || *s == 500), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    let enqueued: u64 = answers.iter().map(|(_, b)| counts(b).0).sum();
    assert_eq!(enqueued, 1, "exactly one delivery enqueued the event: {answers:?}");
    // And once the dust settles, a redelivery is a plain duplicate.
    let (status, body) = call(&deps, line_post(&body)).await;
    assert_eq!((status, counts(&body)), (200, (0, 1)));
    assert_eq!(stack.drain("ReplyQueue").await.len(), 1);
    assert_eq!(stack.drain("TagQueue").await.len(), 1);
}

#[tokio::test]
async fn an_older_unfollow_never_overwrites_a_newer_follow() {
    let stack = TestStack::new().await;
    let deps = stack.webhook().await;
    let user = sample::user_id();
    let t = sample::now_ms();
    let follow = sample::follow(&sample::event_id(), &user, t, false);
    let older_unfollow = sample::unfollow(&sample::event_id(), &user, t - 60_000);
    assert_eq!(call(&deps, line_post(&sample::body(BOT, &[follow]))).await.0, 200);
    assert_eq!(call(&deps, line_post(&sample::body(BOT, &[older_unfollow]))).await.0, 200);
    let friend = stack.friend(&user).await.expect("the friend is recorded");
    assert_eq!(friend["state"].as_s().unwrap(), "following");
    assert_eq!(friend["lastChangedAt"].as_n().unwrap(), &t.to_string());
    assert_eq!(friend["firstFollowedAt"].as_n().unwrap(), &t.to_string());

    // A newer unfollow blocks; a newer follow after it is an unblock.
    let unfollow = sample::unfollow(&sample::event_id(), &user, t + 1_000);
    assert_eq!(call(&deps, line_post(&sample::body(BOT, &[unfollow]))).await.0, 200);
    assert_eq!(stack.friend(&user).await.unwrap()["state"].as_s().unwrap(), "blocked");
    let refollow = sample::follow(&sample::event_id(), &user, t + 2_000, true);
    assert_eq!(call(&deps, line_post(&sample::body(BOT, &[refollow]))).await.0, 200);
    let friend = stack.friend(&user).await.unwrap();
    assert_eq!(friend["state"].as_s().unwrap(), "following");
    assert_eq!(friend["isUnblocked"].as_bool().unwrap(), &true);
    assert_eq!(friend["firstFollowedAt"].as_n().unwrap(), &t.to_string(), "first follow time is kept");
}

#[tokio::test]
async fn an_older_follow_arriving_late_still_sets_when_the_friendship_began() {
    let stack = TestStack::new().await;
    let deps = stack.webhook().await;
    let user = sample::user_id();
    let t = sample::now_ms();
    let unfollow = sample::unfollow(&sample::event_id(), &user, t);
    let earlier_follow = sample::follow(&sample::event_id(), &user, t - 5_000, false);
    call(&deps, line_post(&sample::body(BOT, &[unfollow]))).await;
    call(&deps, line_post(&sample::body(BOT, &[earlier_follow]))).await;
    let friend = stack.friend(&user).await.unwrap();
    assert_eq!(friend["state"].as_s().unwrap(), "blocked");
    assert_eq!(friend["firstFollowedAt"].as_n().unwrap(), &(t - 5_000).to_string());
}

#[tokio::test]
async fn sqs_unreachable_is_a_500_and_the_redelivery_is_enqueued_once() {
    let stack = TestStack::new().await;
    let dead_sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&stack.sdk).endpoint_url("http://127.0.0.1:9").build(),
    );
    let broken = stack.webhook_with(stack.webhook_config(), dead_sqs).await;
    let event = sample::text(&sample::event_id(), &sample::user_id(), "hi", sample::now_ms());
    let (status, _) = call(&broken, line_post(&sample::body(BOT, std::slice::from_ref(&event)))).await;
    assert_eq!(status, 500);
    assert_eq!(stack.item_count("EventsTable").await, 0, "the claim is released, not left blocking");

    // SQS is back; LINE redelivers the same event.
    let deps = stack.webhook().await;
    let redelivery = sample::body(BOT, &[sample::redelivered(event)]);
    let (status, body) = call(&deps, line_post(&redelivery)).await;
    assert_eq!((status, counts(&body)), (200, (1, 0)));
    let (status, body) = call(&deps, line_post(&redelivery)).await;
    assert_eq!((status, counts(&body)), (200, (0, 1)));
    assert_eq!(stack.drain("ReplyQueue").await.len(), 1);
    assert_eq!(stack.drain("TagQueue").await.len(), 1);
}

#[tokio::test]
async fn shop_events_are_signed_deduplicated_and_go_to_the_tag_queue_only() {
    let stack = TestStack::new().await;
    let deps = stack.webhook().await;
    let user = sample::user_id();
    let event = sample::shop_event("order-1-cart", "add_to_cart", &user, sample::now_ms(), json!({"sku": "cake-1"}));
    let body = serde_json::to_vec(&event).unwrap();

    // Signed with the LINE secret instead of the shop's: refused.
    let line_signed = shared::line::signature::sign(CHANNEL_SECRET, &body);
    let wrong = function_url_request("POST", "/events", &[("x-shop-signature", &line_signed)], &body, false);
    assert_eq!(call(&deps, wrong).await.0, 401);
    stack.assert_untouched().await;

    let (status, first) = call(&deps, shop_post(&body)).await;
    assert_eq!((status, counts(&first)), (200, (1, 0)));
    let (status, again) = call(&deps, shop_post(&body)).await;
    assert_eq!((status, counts(&again)), (200, (0, 1)));
    let tags = stack.drain_events("TagQueue").await;
    assert_eq!(tags.len(), 1);
    match &tags[0] {
        QueuedEvent::Shop { event, dedupe_key, .. } => {
            assert_eq!(dedupe_key, "shop:order-1-cart");
            assert_eq!(event.user_id, user);
            assert_eq!(event.properties["sku"], "cake-1");
        }
        other => panic!("{other:?}"),
    }
    assert!(stack.drain("ReplyQueue").await.is_empty());
}

#[tokio::test]
async fn a_claim_left_by_a_crash_does_not_swallow_the_redelivery() {
    use shared::ports::IdempotencyStore;
    let stack = TestStack::new().await;
    let mut config = stack.webhook_config();
    config.in_progress_timeout = std::time::Duration::from_secs(1);
    let mut deps = webhook::Deps::new(config, &stack.sdk).await.unwrap();
    let clock = Arc::new(ShiftedClock::default());
    deps.ingestor.clock = clock.clone();
    let event_id = sample::event_id();
    // An invocation claimed the event and died before enqueueing it.
    let crashed = shared::adapters::dynamodb::ingest::DynamoIdempotency::new(
        stack.dynamodb.clone(),
        stack.table("EventsTable"),
        3600,
        1000,
    );
    assert_eq!(
        crashed.claim(&event_id, sample::now_ms()).await.unwrap(),
        shared::ports::Claim::Claimed { sent: shared::ports::Queues::NONE }
    );

    let body =
        sample::body(BOT, &[sample::redelivered(sample::text(&event_id, &sample::user_id(), "hi", sample::now_ms()))]);
    let (status, _) = call(&deps, line_post(&body)).await;
    assert_eq!(status, 500, "while the claim may still be alive, LINE is asked to come back");
    clock.advance(Duration::from_millis(1_200)); // past the crashed claim's in-progress timeout
    let (status, answer) = call(&deps, line_post(&body)).await;
    assert_eq!((status, counts(&answer)), (200, (1, 0)), "the expired claim is taken over");
    assert_eq!(stack.drain("TagQueue").await.len(), 1);
}

/// The webhook's dependencies over this stack, with its queues watched and its clock movable.
async fn watched(stack: &TestStack) -> (webhook::Deps, Arc<WatchedQueue>, Arc<WatchedQueue>, Arc<ShiftedClock>) {
    let mut deps = stack.webhook().await;
    let reply = WatchedQueue::new(deps.ingestor.reply_queue.clone());
    let tag = WatchedQueue::new(deps.ingestor.tag_queue.clone());
    let clock = Arc::new(ShiftedClock::default());
    deps.ingestor.reply_queue = reply.clone();
    deps.ingestor.tag_queue = tag.clone();
    deps.ingestor.clock = clock.clone();
    (deps, reply, tag, clock)
}

#[tokio::test]
async fn a_half_sent_event_is_completed_by_the_redelivery_without_sending_it_twice() {
    let stack = TestStack::new().await;
    let (deps, reply, tag, _) = watched(&stack).await;
    let event = sample::text(&sample::event_id(), &sample::user_id(), "hi", sample::now_ms());
    let id = event["webhookEventId"].as_str().unwrap().to_string();
    tag.fail_next.store(1, Ordering::SeqCst);
    let (status, answer) = call(&deps, line_post(&sample::body(BOT, std::slice::from_ref(&event)))).await;
    assert_eq!(status, 500, "{answer}");
    assert!(answer.contains(r#""partial":1"#), "{answer}");
    // The claim says which queue has it.
    let record = stack.event_record(&id).await.expect("the claim is kept, not released");
    assert_eq!(record["status"].as_s().unwrap(), "PARTIAL");
    assert_eq!(record["sent"].as_ss().unwrap(), &["reply".to_string()]);

    let (status, answer) = call(&deps, line_post(&sample::body(BOT, &[sample::redelivered(event)]))).await;
    assert_eq!((status, counts(&answer)), (200, (1, 0)), "{answer}");
    // Counted at the sender: SQS's 5-minute deduplication would hide a second send here.
    assert_eq!(reply.sent(), std::slice::from_ref(&id), "the reply queue got the event once");
    assert_eq!(tag.sent(), [id], "the tag queue got it from the redelivery");
    assert_eq!((stack.drain("ReplyQueue").await.len(), stack.drain("TagQueue").await.len()), (1, 1));
}

#[tokio::test]
async fn a_slow_store_still_gets_an_answer_within_line_s_deadline_and_the_redelivery_completes_it() {
    let stack = TestStack::new().await;
    let (mut deps, reply, tag, _) = watched(&stack).await;
    let slow = Arc::new(SlowFriends::new(deps.ingestor.friends.clone(), Duration::from_secs(5)));
    deps.ingestor.friends = slow.clone();
    let (alice, bob) = (sample::user_id(), sample::user_id());
    let now = sample::now_ms();
    let follow = sample::follow(&sample::event_id(), &alice, now, false);
    let after = sample::text(&sample::event_id(), &alice, "after the follow", now + 1);
    let other = sample::text(&sample::event_id(), &bob, "hello", now + 2);
    let body = sample::body(BOT, &[follow.clone(), after.clone(), other.clone()]);
    let started = std::time::Instant::now();
    let (status, answer) = call(&deps, line_post(&body)).await;
    let took = started.elapsed();
    assert_eq!(status, 500, "{answer}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}: LINE gives up at 2 s");
    let ids = |e: &serde_json::Value| e["webhookEventId"].as_str().unwrap().to_string();
    assert_eq!(tag.sent(), [ids(&other)], "Bob's event went through; Alice's wait behind her follow");

    slow.set_delay(Duration::ZERO);
    let redelivery = sample::body(BOT, &[follow.clone(), after.clone(), other.clone()].map(sample::redelivered));
    let (status, answer) = call(&deps, line_post(&redelivery)).await;
    assert_eq!((status, counts(&answer)), (200, (2, 1)), "{answer}");
    assert_eq!(tag.sent(), [ids(&other), ids(&follow), ids(&after)], "each once, Alice's in order");
    assert_eq!(reply.sent(), [ids(&other), ids(&follow), ids(&after)], "the follow too (its greeting)");
    assert_eq!(stack.friend(&alice).await.unwrap()["state"].as_s().unwrap(), "following");
}

#[tokio::test]
async fn a_queue_that_hangs_past_the_deadline_leaves_a_partial_claim_and_a_timely_500() {
    let stack = TestStack::new().await;
    let (deps, reply, tag, _) = watched(&stack).await;
    let event = sample::text(&sample::event_id(), &sample::user_id(), "hi", sample::now_ms());
    tag.stall_next_ms.store(10_000, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let (status, answer) = call(&deps, line_post(&sample::body(BOT, std::slice::from_ref(&event)))).await;
    assert!(started.elapsed() < Duration::from_secs(2), "answered after {:?}", started.elapsed());
    assert_eq!(status, 500, "{answer}");
    let (status, answer) = call(&deps, line_post(&sample::body(BOT, &[sample::redelivered(event)]))).await;
    assert_eq!((status, counts(&answer)), (200, (1, 0)), "{answer}");
    assert_eq!((reply.sent().len(), tag.sent().len()), (1, 1), "each queue got it once");
}

#[tokio::test]
async fn one_malformed_event_never_sinks_its_neighbours() {
    let stack = TestStack::new().await;
    let deps = stack.webhook().await;
    let user = sample::user_id();
    let now = sample::now_ms();
    let good = sample::text(&sample::event_id(), &user, "hi", now);
    let mut float_time = sample::text(&sample::event_id(), &user, "float", now);
    float_time["timestamp"] = json!(1.7e12);
    let mut no_source = sample::text(&sample::event_id(), &user, "no source", now);
    no_source.as_object_mut().unwrap().remove("source");
    let mut long_id = sample::follow(&sample::event_id(), &user, now, false);
    long_id["source"]["userId"] = json!("U".repeat(3000));
    let mut no_type = sample::text(&sample::event_id(), &user, "typeless", now);
    no_type["source"] = json!({ "userId": user });
    let events = [good.clone(), float_time, no_source.clone(), long_id, no_type, json!(42)];
    let (status, answer) = call(&deps, line_post(&sample::body(BOT, &events))).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(r#""malformed":4"#) && answer.contains(r#""enqueued":6"#), "{answer}");
    let mut replies = keys(&stack.drain_events("ReplyQueue").await);
    replies.sort();
    let mut answerable: Vec<String> =
        [&good, &no_source].iter().map(|e| e["webhookEventId"].as_str().unwrap().to_string()).collect();
    answerable.sort();
    assert_eq!(replies, answerable, "only events in LINE's shape can be answered (a source is optional)");
    let tags = stack.drain_events("TagQueue").await;
    assert_eq!(tags.len(), 6, "everything else is kept and forwarded raw");
    assert_eq!(stack.item_count("UsersTable").await, 0, "a bad ID is never a key (the follow was not recorded)");
}

#[tokio::test]
async fn shop_events_outside_the_time_window_are_refused_naming_the_field() {
    let stack = TestStack::new().await;
    let deps = stack.webhook().await;
    let user = sample::user_id();
    for (at, hint) in [(sample::now_ms() * 1000, "microseconds"), (sample::now_ms() / 1000, "seconds")] {
        let event = sample::shop_event(&sample::event_id(), "add_to_cart", &user, at, json!({}));
        let (status, text) = call(&deps, shop_post(&serde_json::to_vec(&event).unwrap())).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("occurredAt") && text.contains(hint), "{text}");
    }
    stack.assert_untouched().await;
}

#[tokio::test]
async fn a_rotated_channel_secret_is_read_again_and_forged_floods_cost_one_read_a_minute() {
    let stack = TestStack::new().await;
    let arn = stack.secret(json!({ "channelSecret": "secret-one", "shopEventsSecret": "shop" })).await;
    let mut config = stack.webhook_config();
    config.secrets = shared::secrets::SecretSource::SecretsManager { arn: arn.clone() };
    let clock = Arc::new(ShiftedClock::default());
    let store = config.secrets.store(&stack.sdk);
    let secrets = shared::secrets::Secrets::load_with_clock(store, webhook::config::Config::SECRETS, clock.clone())
        .await
        .unwrap();
    let deps = webhook::Deps::from_parts(config, Arc::new(secrets), stack.dynamodb.clone(), stack.sqs.clone());
    let signed = |secret: &str| signed_post("/webhook", "x-line-signature", secret, &one_text_body("hi"));
    assert_eq!(call(&deps, signed("secret-one")).await.0, 200);
    assert_eq!(deps.secrets.reads(), 1, "read once, at cold start");

    // The channel secret is reissued in the console, and the secret updated.
    stack.rotate_secret(&arn, json!({ "channelSecret": "secret-two", "shopEventsSecret": "shop" })).await;
    clock.advance(Duration::from_secs(61));
    assert_eq!(call(&deps, signed("secret-two")).await.0, 200, "the new secret is read on the first mismatch");
    assert_eq!(deps.secrets.reads(), 2);

    // Forged requests: every one a mismatch, but at most one read a minute.
    for _ in 0..30 {
        assert_eq!(call(&deps, signed("forged")).await.0, 401);
    }
    assert_eq!(deps.secrets.reads(), 2, "no read within a minute of the last");
    clock.advance(Duration::from_secs(61));
    let forged = futures::future::join_all((0..30).map(|_| call(&deps, signed("forged")))).await;
    assert!(forged.iter().all(|(s, _)| *s == 401));
    assert_eq!(deps.secrets.reads(), 3, "thirty at once past the minute: one read");
}
