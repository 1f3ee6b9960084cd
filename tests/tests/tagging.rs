//! Tagging through the pipeline: line-sim → webhook (and signed shop events) → tag-queue → poller →
//! tagger → DynamoDB Local; segments resolved from the tag index. Plus a seeded population of a
//! few thousand friends on which segment expressions must select exactly the right ones.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use futures::stream::{self, StreamExt};
use integration_tests::pipeline::{user, Pipeline};
use integration_tests::TestStack;
use serde_json::{json, Value};
use shared::adapters::dynamodb::ingest::DynamoFriends;
use shared::adapters::dynamodb::tags::{Changed, DynamoTags};
use shared::ports::{Clock, FriendChange, FriendStore, SystemClock};
use shared::rules::tags::{Change, TagOp};
use shared::segment::resolve::Resolver;
use shared::segment::Expr;

const RULES: &str = r#"
replies:
  - id: hello
    match: { exact: hello }
    messages: ["Hello!"]
tags:
  keywords:
    - id: dessert-talk
      match: { contains: [pudding, cake] }
      add: [dessert]
  postbacks:
    - id: q-dessert-yes
      match: { exact: "q=dessert&a=yes" }
      add: [dessert]
    - id: q-dessert-no
      match: { exact: "q=dessert&a=no" }
      remove: [dessert]
"#;

const DAY: i64 = 86_400_000;

fn now() -> i64 {
    SystemClock.now_ms()
}

/// The friend's live tags (in the index, not expired), sorted.
async fn live_tags(p: &Pipeline, user: &str) -> Vec<String> {
    let items = p.tags.tags_of(user).await.unwrap();
    let mut live: Vec<String> = items.iter().filter(|t| t.indexed && t.is_live(now())).map(|t| t.tag.clone()).collect();
    live.sort();
    live
}

async fn count(tags: &DynamoTags, expr: &str, at: i64) -> u64 {
    Resolver::new(tags).count(&Expr::parse(expr).unwrap(), at).await.unwrap().friends
}

/// Every user ID of the segment, read in pages of `page` with cursors.
async fn members(tags: &DynamoTags, expr: &str, page: usize) -> BTreeSet<String> {
    let e = Expr::parse(expr).unwrap();
    let resolver = Resolver::new(tags);
    let (mut out, mut cursor) = (BTreeSet::new(), None);
    loop {
        let p = resolver.page(&e, now(), cursor.as_ref(), page).await.unwrap();
        let before = out.len();
        out.extend(p.user_ids.iter().cloned());
        assert_eq!(out.len(), before + p.user_ids.len(), "{expr}: a friend came twice");
        match p.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

fn shop_event(id: &str, kind: &str, user: &str, at: i64, properties: Value) -> Value {
    json!({ "eventId": id, "type": kind, "userId": user, "occurredAt": at, "properties": properties })
}

#[tokio::test]
async fn questionnaire_answers_tag_and_untag_a_friend() {
    let p = Pipeline::new(RULES).await;
    let u = user();
    p.send(vec![json!({ "type": "follow", "userId": u })]).await;
    p.send(vec![json!({ "type": "postback", "userId": u, "data": "q=dessert&a=yes" })]).await;
    p.wait_until_tagged().await;
    assert_eq!(live_tags(&p, &u).await, ["dessert", "friend:new"]);
    let items = p.tags.tags_of(&u).await.unwrap();
    let dessert = items.iter().find(|t| t.tag == "dessert").unwrap();
    assert_eq!(dessert.source, "postback:q-dessert-yes");
    assert!(now() - dessert.tagged_at_ms < 60_000, "tagged at the event's time");
    assert_eq!(count(&p.tags, "dessert", now()).await, 1);

    p.send(vec![json!({ "type": "postback", "userId": u, "data": "q=dessert&a=no" })]).await;
    p.wait_until_tagged().await;
    assert_eq!(live_tags(&p, &u).await, ["friend:new"]);
    assert_eq!(count(&p.tags, "dessert", now()).await, 0);
    assert_eq!(p.tags.counts(now()).await.unwrap().get("dessert"), Some(&0), "the counter follows");
}

#[tokio::test]
async fn a_keyword_tags_the_friend_who_said_it_and_the_reply_still_goes_out() {
    let p = Pipeline::new(RULES).await;
    let (u, other) = (user(), user());
    p.send(vec![
        json!({ "userId": u, "text": "Is the ＰＵＤＤＩＮＧ fresh today?" }),
        json!({ "userId": other, "text": "hello" }),
    ])
    .await;
    p.wait_until_tagged().await;
    assert_eq!(live_tags(&p, &u).await, ["dessert"]);
    assert_eq!(p.tags.tags_of(&u).await.unwrap()[0].source, "keyword:dessert-talk");
    assert!(live_tags(&p, &other).await.is_empty());
    assert_eq!(p.wait_for(&other, 1, Duration::from_secs(5)).await.len(), 1, "replies are unaffected");
    // Friends who talk to the account count as friends even without a follow event.
    assert_eq!(count(&p.tags, "all", now()).await, 2);
}

#[tokio::test]
async fn a_purchase_closes_the_cart_and_a_late_older_cart_event_cannot_reopen_it() {
    let p = Pipeline::new(RULES).await;
    let u = user();
    let t = now();
    p.shop(shop_event("c1", "add_to_cart", &u, t - 60_000, json!({ "sku": "cake-1" }))).await;
    p.wait_until_tagged().await;
    assert_eq!(live_tags(&p, &u).await, ["cart:open"]);
    let cart = p.tags.tags_of(&u).await.unwrap().remove(0);
    assert_eq!(cart.expires_at_ms, Some(t - 60_000 + 7 * DAY), "cart:open lasts 7 days by default");
    let abandoners = "tagged(cart:open, within 3d) AND NOT buyer";
    assert_eq!(count(&p.tags, abandoners, now()).await, 1);

    p.shop(shop_event("o1", "purchase", &u, t, json!({ "category": ["Cakes", "Gift Boxes"], "total": 3200 }))).await;
    p.wait_until_tagged().await;
    assert_eq!(live_tags(&p, &u).await, ["bought:cakes", "bought:gift_boxes", "buyer"]);
    assert_eq!(count(&p.tags, abandoners, now()).await, 0);

    // An add_to_cart from before the purchase that arrives after it changes nothing.
    p.shop(shop_event("c0", "add_to_cart", &u, t - 30_000, json!({}))).await;
    p.wait_until_tagged().await;
    assert_eq!(live_tags(&p, &u).await, ["bought:cakes", "bought:gift_boxes", "buyer"]);

    let counts = p.tags.counts(now()).await.unwrap();
    assert_eq!(
        (counts["buyer"], counts["bought:cakes"], counts["cart:open"]),
        (1, 1, 0),
        "oa tags list reads these counters"
    );
}

#[tokio::test]
async fn an_expired_tag_counts_for_nothing_even_before_ttl_deletes_it() {
    let p = Pipeline::new(RULES).await;
    let (soon, late) = (user(), user());
    p.send(vec![json!({ "type": "follow", "userId": soon })]).await;
    let t = now();
    // Expires 10 minutes from now; and one that had already expired when it arrived.
    p.shop(shop_event("s1", "add_to_cart", &soon, t - 7 * DAY + 600_000, json!({}))).await;
    p.shop(shop_event("s2", "add_to_cart", &late, t - 8 * DAY, json!({}))).await;
    p.wait_until_tagged().await;
    assert_eq!(count(&p.tags, "cart:open", t).await, 1);
    assert!(p.tags.tags_of(&late).await.unwrap().is_empty(), "an already expired tag is not written");

    let later = t + 20 * 60_000;
    let stored = p.tags.tags_of(&soon).await.unwrap();
    assert!(stored[0].indexed && stored[0].active, "still stored and indexed: TTL has not run");
    assert_eq!(count(&p.tags, "cart:open", later).await, 0);
    assert_eq!(count(&p.tags, "tagged(cart:open, within 30d)", later).await, 0);
    assert_eq!(count(&p.tags, "NOT cart:open", later).await, 1, "the friend is still a friend");
}

#[tokio::test]
async fn duplicate_deliveries_change_nothing() {
    let p = Pipeline::new(RULES).await;
    let u = user();
    let sent = p
        .send(vec![
            json!({ "type": "postback", "userId": u, "data": "q=dessert&a=yes" }),
            json!({ "userId": u, "text": "cake!" }),
        ])
        .await;
    let bought_at = now();
    let purchase = shop_event("o-dup", "purchase", &u, bought_at, json!({ "category": "Tarts" }));
    p.shop(purchase.clone()).await;
    p.wait_until_tagged().await;
    let before = p.tags.tags_of(&u).await.unwrap();
    let counts_before = p.tags.counts(now()).await.unwrap();
    assert_eq!(live_tags(&p, &u).await, ["bought:tarts", "buyer", "dessert"]);

    // LINE redelivers, the shop posts again, and SQS delivers a message twice (a new dedupe id,
    // as after the queue's 5-minute window).
    let ids: Vec<&str> = sent.events.iter().map(|e| e["webhookEventId"].as_str().unwrap()).collect();
    let redelivered = p.sim().redeliver(Some(&p.webhook_url), &ids).await.unwrap();
    assert_eq!(redelivered.status, 200);
    p.shop(purchase).await;
    let queued = json!({ "kind": "shop", "dedupeKey": "shop:o-dup", "receivedAt": now(),
        "event": { "eventId": "o-dup", "type": "purchase", "userId": u, "occurredAt": bought_at,
                   "properties": { "category": "Tarts" } } });
    enqueue(&p, &queued, &u, "shop:o-dup:again").await;
    p.wait_until_tagged().await;
    assert_eq!(p.tags.tags_of(&u).await.unwrap(), before, "same items, same versions");
    assert_eq!(p.tags.counts(now()).await.unwrap(), counts_before);
}

/// Puts a queued event on this test's tag-queue, as the webhook would (or as SQS redelivers).
async fn enqueue(p: &Pipeline, body: &Value, group: &str, dedupe_id: &str) {
    p.stack
        .sqs
        .send_message()
        .queue_url(p.stack.queue_url("TagQueue"))
        .message_body(body.to_string())
        .message_group_id(group)
        .message_deduplication_id(dedupe_id)
        .send()
        .await
        .unwrap();
}

/// Two answers in the same millisecond: event time cannot order them, so only the idempotency
/// record keeps a redelivered first answer from undoing the second.
#[tokio::test]
async fn a_redelivered_event_cannot_undo_a_later_one_from_the_same_millisecond() {
    let p = Pipeline::new(RULES).await;
    let u = user();
    let t = now();
    let answer = |id: &str, data: &str| {
        json!({ "kind": "line", "dedupeKey": id, "receivedAt": t, "event": {
            "type": "postback", "mode": "active", "timestamp": t, "webhookEventId": id,
            "source": { "type": "user", "userId": u }, "deliveryContext": { "isRedelivery": false },
            "postback": { "data": data } } })
    };
    let (yes, no) = (answer("01SAMEMSYES", "q=dessert&a=yes"), answer("01SAMEMSNO", "q=dessert&a=no"));
    enqueue(&p, &yes, &u, "01SAMEMSYES").await;
    enqueue(&p, &no, &u, "01SAMEMSNO").await;
    p.wait_until_tagged().await;
    assert!(live_tags(&p, &u).await.is_empty(), "yes, then no");
    enqueue(&p, &yes, &u, "01SAMEMSYES:again").await;
    p.wait_until_tagged().await;
    assert!(live_tags(&p, &u).await.is_empty(), "the redelivered yes changed nothing");
}

#[tokio::test]
async fn blocked_friends_never_appear_and_come_back_when_they_follow_again() {
    let p = Pipeline::new(RULES).await;
    let (u, stays) = (user(), user());
    for who in [&u, &stays] {
        p.send(vec![
            json!({ "type": "follow", "userId": who }),
            json!({ "type": "postback", "userId": who, "data": "q=dessert&a=yes" }),
        ])
        .await;
    }
    p.wait_until_tagged().await;
    assert_eq!(count(&p.tags, "dessert", now()).await, 2);

    p.send(vec![json!({ "type": "unfollow", "userId": u })]).await;
    p.wait_until_tagged().await;
    for expr in ["dessert", "all", "NOT vip", "friend_since(1d)", "friend:new OR dessert"] {
        let got = members(&p.tags, expr, 1).await;
        assert_eq!(got, BTreeSet::from([stays.clone()]), "{expr}");
    }
    assert_eq!(p.tags.counts(now()).await.unwrap()["dessert"], 1);
    assert_eq!(live_tags(&p, &u).await, Vec::<String>::new());
    let kept: Vec<String> = p.tags.tags_of(&u).await.unwrap().into_iter().filter(|t| t.active).map(|t| t.tag).collect();
    assert_eq!(kept, ["dessert", "friend:new"], "the tags are kept, only hidden");

    p.send(vec![json!({ "type": "follow", "userId": u, "isUnblocked": true })]).await;
    p.wait_until_tagged().await;
    assert_eq!(live_tags(&p, &u).await, ["dessert", "friend:returning"]);
    assert_eq!(count(&p.tags, "dessert", now()).await, 2);
}

/// Who friend `i` of the seeded population is: the truth the segments are checked against,
/// written as plain conditions on `i`.
struct Seed;
impl Seed {
    fn dessert(i: usize) -> bool {
        i.is_multiple_of(2)
    }
    fn vip(i: usize) -> bool {
        i.is_multiple_of(3)
    }
    fn buyer(i: usize) -> bool {
        i.is_multiple_of(7)
    }
    fn blocked(i: usize) -> bool {
        i.is_multiple_of(11)
    }
    /// Has an open cart, added this many days (plus an hour) ago.
    fn cart_days(i: usize) -> Option<i64> {
        i.is_multiple_of(4).then_some((i % 5) as i64)
    }
}

fn add(tag: &str, days: Option<u64>) -> TagOp {
    let expires_after = days.map(|d| Duration::from_secs(d * 86_400));
    TagOp { tag: tag.into(), change: Change::Add { expires_after }, source: "seed".into() }
}

#[tokio::test]
async fn segments_select_exactly_the_right_friends_of_a_seeded_population() {
    const N: usize = 3000;
    let stack = TestStack::new().await;
    let tags = DynamoTags::new(
        stack.dynamodb.clone(),
        stack.table("TagsTable"),
        stack.table("UsersTable"),
        stack.table("EventsTable"),
        3600,
    );
    let friends = DynamoFriends::new(stack.dynamodb.clone(), stack.table("UsersTable"));
    let users: Vec<String> = (0..N).map(|_| user()).collect();
    let t = now();
    // Through the tagger's own write path: follow, tags, later the open cart, blocks last.
    stream::iter(0..N)
        .for_each_concurrent(16, |i| {
            let (tags, friends, u) = (&tags, &friends, &users[i]);
            async move {
                let followed = FriendChange::Followed { is_unblocked: false };
                friends.record(u, followed, t - 30 * DAY, t).await.unwrap();
                let mut ops = vec![];
                for (on, tag) in [(Seed::dessert(i), "dessert"), (Seed::vip(i), "vip"), (Seed::buyer(i), "buyer")] {
                    if on {
                        ops.push(add(tag, None));
                    }
                }
                let key = format!("tag:seed-{i}");
                assert_ne!(tags.change(u, &ops, t - 10 * DAY, t, false, &key).await.unwrap(), Changed::Contended);
                if let Some(days) = Seed::cart_days(i) {
                    let at = t - days * DAY - 3_600_000;
                    tags.change(u, &[add("cart:open", Some(7))], at, t, false, &format!("{key}-cart")).await.unwrap();
                }
                if Seed::blocked(i) {
                    friends.record(u, FriendChange::Unfollowed, t - DAY, t).await.unwrap();
                    tags.change(u, &[], t - DAY, t, false, &format!("{key}-block")).await.unwrap();
                }
            }
        })
        .await;

    let truth = |keep: &dyn Fn(usize) -> bool| -> BTreeSet<String> {
        (0..N).filter(|&i| !Seed::blocked(i) && keep(i)).map(|i| users[i].clone()).collect()
    };
    let cases: [(&str, BTreeSet<String>); 4] = [
        ("dessert AND NOT vip", truth(&|i| Seed::dessert(i) && !Seed::vip(i))),
        (
            "tagged(cart:open, within 3d) AND NOT buyer",
            truth(&|i| Seed::cart_days(i).is_some_and(|d| d <= 2) && !Seed::buyer(i)),
        ),
        ("NOT vip", truth(&|i| !Seed::vip(i))),
        ("all", truth(&|_| true)),
    ];
    for (expr, expected) in cases {
        assert!(expected.len() > 100, "{expr}: a meaningful segment");
        assert_eq!(count(&tags, expr, now()).await, expected.len() as u64, "{expr}");
        assert_eq!(members(&tags, expr, 500).await, expected, "{expr}");
    }
    // The per-tag counters (oa tags list) agree, after 16 friends at a time wrote to them.
    let counts = tags.counts(now()).await.unwrap();
    let listed = |keep: &dyn Fn(usize) -> bool| truth(&keep).len() as i64;
    assert_eq!(counts["dessert"], listed(&Seed::dessert));
    assert_eq!(counts["vip"], listed(&Seed::vip));
    assert_eq!(counts["buyer"], listed(&Seed::buyer));
    assert_eq!(counts["cart:open"], listed(&|i| Seed::cart_days(i).is_some()));
    let blocked: BTreeSet<String> = (0..N).filter(|&i| Seed::blocked(i)).map(|i| users[i].clone()).collect();
    assert!(members(&tags, "dessert OR vip OR buyer OR cart:open", 1000).await.is_disjoint(&blocked));
}

#[tokio::test]
async fn group_chatter_tags_nobody_and_makes_nobody_a_friend() {
    let p = Pipeline::new(RULES).await;
    let (member, friend) = (user(), user());
    let group = format!("C{}", &user()[1..]);
    // A group member who never talked to the account 1:1 says a tagging keyword and answers a
    // questionnaire in the group.
    p.send(vec![
        json!({ "groupId": group, "userId": member, "text": "pudding for everyone!" }),
        json!({ "type": "postback", "groupId": group, "userId": member, "data": "q=dessert&a=yes" }),
        json!({ "userId": friend, "text": "I love cake" }),
    ])
    .await;
    p.wait_until_tagged().await;
    assert!(p.tags.tags_of(&member).await.unwrap().is_empty(), "no tags from group chatter");
    assert_eq!(live_tags(&p, &friend).await, ["dessert"], "1:1 still tags");
    assert_eq!(count(&p.tags, "all", now()).await, 1, "only the 1:1 friend counts");
    assert_eq!(count(&p.tags, "NOT dessert", now()).await, 0);
    assert!(p.stack.friend(&member).await.is_none(), "the member is not recorded as a friend");
}

#[tokio::test]
async fn a_change_split_over_transactions_keeps_the_counters_right_when_a_later_one_fails() {
    let stack = TestStack::new().await;
    let table = stack.table("TagsTable").to_string();
    let (u, t) = (user(), now());
    let friends = DynamoFriends::new(stack.dynamodb.clone(), stack.table("UsersTable"));
    friends.record(&u, FriendChange::Followed { is_unblocked: false }, t - 30 * DAY, t).await.unwrap();
    let plain =
        DynamoTags::new(stack.dynamodb.clone(), &table, stack.table("UsersTable"), stack.table("EventsTable"), 3600);
    // 150 tags (a long-time customer's bought:<category> tags, say): more than one transaction.
    let ops: Vec<TagOp> = (0..150).map(|i| add(&format!("bought:c{i:03}"), (i % 3 == 0).then_some(30))).collect();
    assert_eq!(plain.change(&u, &ops, t - DAY, t, true, "tag:seed").await.unwrap(), Changed::Written);
    let indexed = |c: &std::collections::BTreeMap<String, i64>| c.values().sum::<i64>();
    assert_eq!(indexed(&plain.counts(now()).await.unwrap()), 150);

    // The friend blocks the account: every item leaves the index, over two transactions. Before
    // the second, a concurrent writer changes one of its items, every time it is tried.
    let client = stack.dynamodb.clone();
    let (user_id, failpoint_table) = (u.clone(), table.clone());
    let failpoint: shared::adapters::dynamodb::tags::Failpoint = Arc::new(move |n, part| {
        let (client, user_id, table) = (client.clone(), user_id.clone(), failpoint_table.clone());
        Box::pin(async move {
            if n == 1 {
                let Some(w) = part.first() else { return };
                client
                    .update_item()
                    .table_name(table)
                    .key("userId", AttributeValue::S(user_id))
                    .key("tag", AttributeValue::S(w.new.tag.clone()))
                    .update_expression("SET v = v + :one")
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .send()
                    .await
                    .unwrap();
            }
        })
    });
    let interrupted =
        DynamoTags::new(stack.dynamodb.clone(), &table, stack.table("UsersTable"), stack.table("EventsTable"), 3600)
            .with_failpoint(failpoint);
    friends.record(&u, FriendChange::Unfollowed, t, t).await.unwrap();
    let (friend, current) = plain.read_friend(&u).await.unwrap();
    let writes = shared::tagging::plan(&current, friend.state, &[], t, t);
    assert_eq!(writes.len(), 150);
    let applied = interrupted.apply(&u, &writes, false, Some("tag:block"), t).await.unwrap();
    assert_eq!(applied, shared::adapters::dynamodb::tags::Applied::Conflict);
    // Whatever part committed, the counters agree with the items in the index.
    let items = plain.tags_of(&u).await.unwrap();
    let in_index = items.iter().filter(|i| i.indexed).count() as i64;
    assert!(in_index < 150, "the first transaction committed ({in_index} still indexed)");
    assert_eq!(indexed(&plain.counts(now()).await.unwrap()), in_index, "counters match the index");

    // Planned again without interference, the rest is done.
    assert_eq!(plain.change(&u, &[], t, t, false, "tag:block").await.unwrap(), Changed::Written);
    assert_eq!(indexed(&plain.counts(now()).await.unwrap()), 0);
    assert!(plain.tags_of(&u).await.unwrap().iter().all(|i| !i.indexed));
}
