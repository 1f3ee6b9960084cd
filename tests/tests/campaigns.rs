//! Campaigns end to end over DynamoDB Local, the SQS emulator and line-sim: preview equals billed,
//! caps hold across campaigns, every LINE fault delivers exactly once, and the counters add up
//! to what line-sim delivered.

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::campaigns::{users, CampaignRig, ACCOUNT};
use serde_json::json;
use shared::campaign::caps::Demand;
use shared::campaign::model::State;
use shared::campaign::ports::{BatchRepo, CampaignRepo, CapStore};
use shared::campaign::send::Failpoint;
use shared::ports::Clock;

const WAIT: Duration = Duration::from_secs(60);

fn cap_one() -> String {
    ACCOUNT.replace("max: 2", "max: 1")
}

#[tokio::test]
async fn preview_equals_billed_with_blocked_suppressed_capped_held_out_and_budgeted_friends() {
    let rig = CampaignRig::new(&cap_one()).await;
    // 40 friends of whom 2-4 of the last 33 fall in the campaign's 10% holdout, so that the
    // holdout and the budget (28 of the 29-31 left) both take some.
    let all = loop {
        let all = users(40);
        let held = all[7..].iter().filter(|u| shared::campaign::model::in_holdout("cart", u, 1_000)).count();
        if (2..=4).contains(&held) {
            break all;
        }
    };
    for u in &all {
        rig.friend(u, &["cart:open"]).await;
    }
    // Two block the account, two opt out, three were pushed another campaign this month.
    rig.block(&all[0]).await;
    rig.block(&all[1]).await;
    rig.oa.store.suppress(&all[2], true, "cli", 0).await.unwrap();
    rig.oa.store.suppress(&all[3], true, "cli", 0).await.unwrap();
    let zone = shared::rules::window::Zone::parse("Asia/Taipei").unwrap();
    let month = [shared::campaign::file::Cap { per: shared::campaign::file::Period::Month, max: 1 }];
    let earlier = Demand::new("earlier~run".into(), &month, &zone, false, 0, rig.clock.now_ms());
    for u in &all[4..7] {
        let r = rig.store.reserve(u, &earlier, 0).await.unwrap();
        assert_eq!(r, shared::campaign::caps::Reservation::Reserved);
    }
    let file = rig.campaign_file("cart", "cart:open", "holdout: 10%\nbudget: { messages: 28 }\n");
    let created = rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    assert_eq!(created.state, State::Draft);

    let preview = rig.oa.preview("cart", rig.clock.now_ms()).await.unwrap();
    let again = rig.oa.preview(file.to_str().unwrap(), rig.clock.now_ms()).await.unwrap();
    assert_eq!(preview["skipped"], again["skipped"], "the holdout draw is stable across previews");
    let n = |k: &str| preview.pointer(k).and_then(|v| v.as_u64()).unwrap();
    assert_eq!(n("/segment"), 40);
    assert_eq!((n("/skipped/blocked"), n("/skipped/suppressed"), n("/skipped/cap")), (2, 2, 3));
    assert!((2..=4).contains(&n("/skipped/holdout")), "{preview}");
    assert_eq!(n("/recipients"), 28, "{preview}");
    assert_eq!(n("/skipped/budget"), 33 - n("/skipped/holdout") - 28);
    assert!(n("/skipped/budget") > 0);
    assert_eq!(n("/billable"), n("/recipients"));
    assert_eq!(preview["price"]["included"].as_u64(), Some(n("/recipients")), "tw-2023-medium includes 3,000");

    let billed_before = rig.billed().await;
    rig.oa.start("cart", rig.clock.now_ms()).await.unwrap();
    assert_eq!(rig.pump(WAIT).await, 0);
    let c = rig.campaign("cart").await;
    assert_eq!(c.state, State::Done, "{c:?}");
    assert_eq!(c.counters.sent, n("/recipients"));
    assert_eq!(rig.billed().await - billed_before, n("/recipients"), "billed equals the preview");
    assert_eq!(c.counters.holdout, n("/skipped/holdout"));
    for u in &all[..7] {
        assert_eq!(rig.received(u).await, 0, "{u} is blocked, opted out or at the cap");
    }
    // The holdout is the draw the preview made: the campaign id and the user ID, mod 10,000.
    let held: Vec<&String> =
        all[7..].iter().filter(|u| shared::campaign::model::in_holdout("cart", u, 1_000)).collect();
    assert_eq!(held.len() as u64, n("/skipped/holdout"));
    for u in held {
        assert_eq!(rig.received(u).await, 0, "{u} is in the holdout");
    }
    rig.assert_adds_up("cart", &all).await;
}

#[tokio::test]
async fn two_campaigns_at_once_to_the_same_friends_at_cap_one_send_each_friend_one_push() {
    let rig = CampaignRig::new(&cap_one()).await;
    let all = users(20);
    for u in &all {
        rig.friend(u, &["dessert"]).await;
    }
    for id in ["news-a", "news-b"] {
        let file = rig.campaign_file(id, "dessert", "");
        rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
        // Both previews see every friend free: the race is decided when sending.
        assert_eq!(rig.oa.preview(id, rig.clock.now_ms()).await.unwrap()["recipients"], 20);
    }
    rig.oa.start("news-a", rig.clock.now_ms()).await.unwrap();
    rig.oa.start("news-b", rig.clock.now_ms()).await.unwrap();
    assert_eq!(rig.pump(WAIT).await, 0);
    for u in &all {
        assert_eq!(rig.received(u).await, 1, "{u} got more (or less) than the cap of one push");
    }
    let (a, b) = (rig.campaign("news-a").await, rig.campaign("news-b").await);
    assert_eq!(a.counters.sent + b.counters.sent, 20);
    let capped =
        a.counters.skipped.cap + a.counters.plan_skipped.cap + b.counters.skipped.cap + b.counters.plan_skipped.cap;
    assert_eq!(capped, 20, "every friend skipped by one of the two for the cap: {a:?} {b:?}");
    assert_eq!((a.state, b.state), (State::Done, State::Done));
    assert!(a.counters.problems(true).is_empty() && b.counters.problems(true).is_empty());
}

#[tokio::test]
async fn the_minimum_gap_holds_between_two_campaigns_planned_at_once_where_the_month_cap_would_not() {
    let rig = CampaignRig::new(&format!("{ACCOUNT}minGap: 3d\n")).await;
    let all = users(12);
    for u in &all {
        rig.friend(u, &["dessert"]).await;
    }
    for id in ["gap-a", "gap-b"] {
        let file = rig.campaign_file(id, "dessert", "");
        rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
        rig.oa.start(id, rig.clock.now_ms()).await.unwrap();
    }
    // Both plan every friend (the month's cap of 2 allows both); the gap is decided when sending.
    rig.plan_only().await;
    assert_eq!(rig.campaign("gap-a").await.counters.planned + rig.campaign("gap-b").await.counters.planned, 24);
    assert_eq!(rig.pump(WAIT).await, 0);
    for u in &all {
        assert_eq!(rig.received(u).await, 1, "{u}: two pushes within 3 days");
        assert_eq!(rig.cap_set(u).await.len(), 1, "{u}: the refused push took no cap slot");
    }
    let (a, b) = (rig.campaign("gap-a").await, rig.campaign("gap-b").await);
    assert_eq!((a.counters.sent + b.counters.sent, a.counters.skipped.cap + b.counters.skipped.cap), (12, 12));
    assert!(a.counters.problems(true).is_empty() && b.counters.problems(true).is_empty());
    assert_eq!((a.state, b.state), (State::Done, State::Done));
}

#[tokio::test]
async fn line_delivers_but_never_answers_then_the_retry_gets_409_and_friends_get_one_push() {
    let rig = CampaignRig::new(ACCOUNT).await;
    let all = users(5);
    for u in &all {
        rig.friend(u, &["vip"]).await;
    }
    rig.sim.client().configure(json!({ "hangMs": 2500 })).await.unwrap();
    rig.sim.client().set_faults("multicast", json!({ "hangAfterDelivery": 1.0, "times": 1 })).await.unwrap();
    let file = rig.campaign_file("vip-news", "vip", "");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    rig.oa.start("vip-news", rig.clock.now_ms()).await.unwrap();
    let before = rig.billed().await;
    rig.pump(WAIT).await;
    let log = rig.multicast_log().await;
    assert_eq!(log.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![200, 409], "{log:?}");
    assert_eq!(log[0].1, log[1].1, "the retry used the same key");
    assert_eq!(rig.billed().await - before, 5, "billed once");
    let c = rig.campaign("vip-news").await;
    assert_eq!((c.state, c.counters.sent), (State::Done, 5));
    rig.assert_adds_up("vip-news", &all).await;
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_key_and_a_sender_dying_after_200_is_not_resent() {
    let rig = CampaignRig::new(ACCOUNT).await;
    let all = users(6);
    for u in &all {
        rig.friend(u, &["buyer"]).await;
    }
    rig.sim.client().set_faults("multicast", json!({ "error500": 1.0, "times": 2 })).await.unwrap();
    let file = rig.campaign_file("thanks", "buyer", "");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    rig.oa.start("thanks", rig.clock.now_ms()).await.unwrap();
    rig.pump(WAIT).await;
    let log = rig.multicast_log().await;
    assert_eq!(log.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![500, 500, 200], "{log:?}");
    assert!(log.iter().all(|(_, k)| *k == log[0].1), "one key for every try");
    assert_eq!(rig.campaign("thanks").await.counters.sent, 6);
    rig.assert_adds_up("thanks", &all).await;

    // A second campaign; the sender dies between LINE's 200 and recording it.
    let file = rig.campaign_file("thanks-2", "buyer", "");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    rig.oa.start("thanks-2", rig.clock.now_ms()).await.unwrap();
    *rig.sender.failpoint.lock().unwrap() = Some(Failpoint::DieAfterLineAccepted);
    assert_eq!(rig.pump_once().await, 1, "planned, sent, and the dead sender's record comes back");
    assert_eq!(rig.pump_once().await, 1, "its lease still holds the batch");
    assert_eq!(rig.campaign("thanks-2").await.counters.sent, 0, "nothing recorded yet");
    // Its lease runs out; the redelivery sends the frozen body with its key and gets 409.
    rig.clock.advance(Duration::from_secs(120));
    assert_eq!(rig.pump(WAIT).await, 0);
    let log = rig.multicast_log().await;
    assert_eq!(log.iter().rev().take(2).map(|(s, _)| *s).collect::<Vec<_>>(), vec![409, 200], "{log:?}");
    let c = rig.campaign("thanks-2").await;
    assert_eq!((c.state, c.counters.sent), (State::Done, 6));
    // LineMessagesBilled: LINE billed each campaign's 6 once; the 200 the dead sender never
    // recorded and the 409 after it are one batch, counted when it settled.
    assert_eq!(rig.billed.load(std::sync::atomic::Ordering::SeqCst), 12, "billed metric: 6 + 6");
    for u in &all {
        assert_eq!(rig.received(u).await, 2, "one push of each campaign");
    }
}

/// What the sender measures after its sends (LINE's month-to-date count) cannot make it run out
/// of time: LINE's quota endpoint hanging costs the invocation at most 3 s, whatever the LINE
/// client's own timeout, and the batch is sent and settled all the same.
#[tokio::test]
async fn a_hanging_quota_endpoint_does_not_hold_the_sender_past_its_budget() {
    let rig = CampaignRig::new(ACCOUNT).await;
    let all = users(3);
    for u in &all {
        rig.friend(u, &["buyer"]).await;
    }
    let file = rig.campaign_file("quota-hang", "buyer", "");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    rig.oa.start("quota-hang", rig.clock.now_ms()).await.unwrap();
    rig.sim.client().set_faults("quota", json!({ "hang": 1.0 })).await.unwrap();
    // LINE calls may take 20 s here: only the budget bounds the measuring.
    let sender = rig.sender_with_line_timeout(Duration::from_secs(20));
    let took = rig.invoke_sender(&sender, Duration::from_secs(60)).await;
    assert!(took < Duration::from_secs(5), "the invocation took {took:?}");
    assert_eq!(rig.campaign("quota-hang").await.counters.sent, 3, "sent and settled");
}

#[tokio::test]
async fn a_message_lines_validator_refuses_is_refused_at_create_and_a_401_pauses_the_campaign() {
    let rig = CampaignRig::new(ACCOUNT).await;
    let bad = rig.write(
        "bad.campaign.yaml",
        "id: flex\nname: Flex\nsegment: all\nmessages:\n  - { type: flex, contents: { type: bubble } }\n",
    );
    let e = rig.oa.create(&bad, false, rig.clock.now_ms()).await.unwrap_err().to_string();
    assert!(e.contains("validator") && e.contains("altText"), "{e}");
    assert!(rig.store.get("flex").await.unwrap().is_none(), "nothing was created");

    let all = users(4);
    for u in &all {
        rig.friend(u, &["dessert"]).await;
    }
    let file = rig.campaign_file("desserts", "dessert", "");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    rig.sim.client().set_access_token("a-reissued-token").await.unwrap();
    rig.oa.start("desserts", rig.clock.now_ms()).await.unwrap();
    rig.pump(WAIT).await;
    let c = rig.campaign("desserts").await;
    assert_eq!(c.state, State::Paused);
    assert!(c.reason.as_deref().unwrap_or_default().contains("401"), "{:?}", c.reason);
    assert_eq!((c.counters.held, c.counters.sent), (4, 0));
    rig.assert_adds_up("desserts", &all).await;

    // The token is fixed: resume sends the held batch, once.
    rig.sim.client().set_access_token(integration_tests::pipeline::ACCESS_TOKEN).await.unwrap();
    rig.oa.resume("desserts", rig.clock.now_ms()).await.unwrap();
    assert_eq!(rig.pump(WAIT).await, 0);
    let c = rig.campaign("desserts").await;
    assert_eq!((c.state, c.counters.sent, c.counters.held), (State::Done, 4, 0));
    rig.assert_adds_up("desserts", &all).await;
}

#[tokio::test]
async fn a_campaign_recreated_under_the_same_id_skips_whom_it_reached_unless_resent_with_new_retry_keys() {
    let rig = CampaignRig::new(ACCOUNT).await;
    let all = users(3);
    for u in &all {
        rig.friend(u, &["dessert"]).await;
    }
    let file = rig.campaign_file("weekly", "dessert", "");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    rig.oa.start("weekly", rig.clock.now_ms()).await.unwrap();
    assert_eq!(rig.pump(WAIT).await, 0);
    let first = rig.campaign("weekly").await;
    assert_eq!(first.counters.sent, 3);
    assert!(rig.oa.create(&file, false, rig.clock.now_ms()).await.is_ok(), "a done campaign's id is free again");
    // Cancelled before it is planned: nothing goes out, and the id is free again.
    rig.oa.start("weekly", rig.clock.now_ms()).await.unwrap();
    rig.oa.cancel("weekly").await.unwrap();
    rig.pump(WAIT).await;
    assert_eq!(rig.campaign("weekly").await.counters.sent, 0);
    // Created again, it skips the friends the first run reached...
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    rig.oa.start("weekly", rig.clock.now_ms()).await.unwrap();
    assert_eq!(rig.pump(WAIT).await, 0);
    let k = rig.campaign("weekly").await.counters;
    assert_eq!((k.segment, k.sent, k.plan_skipped.already_sent, k.planned), (3, 0, 3, 0));
    assert!(rig.campaign("weekly").await.counters.problems(true).is_empty());
    // ... unless created with --resend: a new run, sent with new retry keys.
    let again = rig.oa.create(&file, true, rig.clock.now_ms()).await.unwrap();
    assert_ne!(again.run, first.run);
    rig.oa.start("weekly", rig.clock.now_ms()).await.unwrap();
    assert_eq!(rig.pump(WAIT).await, 0);
    assert_eq!(rig.campaign("weekly").await.counters.sent, 3);
    let log = rig.multicast_log().await;
    assert_eq!(log.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![200, 200], "{log:?}");
    assert_ne!(log[0].1, log[1].1, "a new run sends with a new retry key");
    for u in &all {
        assert_eq!(rig.received(u).await, 2);
    }
    // A test push to one named friend: delivered, outside caps and counters.
    let before = rig.campaign("weekly").await.counters;
    let out = rig.oa.test("weekly", &[all[0].clone()]).await.unwrap();
    assert!(out.contains("test push of weekly to 1 friends"), "{out}");
    assert_eq!(rig.received(&all[0]).await, 3);
    assert_eq!(rig.cap_set(&all[0]).await.len(), 2, "no cap slot taken by a test push");
    assert_eq!(rig.campaign("weekly").await.counters, before);
    assert!(rig.oa.test("weekly", &["nobody".into()]).await.is_err());
    let log = rig.multicast_log().await;
    let by_key: BTreeMap<&str, usize> = log.iter().fold(BTreeMap::new(), |mut m, (_, k)| {
        *m.entry(k.as_str()).or_default() += 1;
        m
    });
    assert_eq!(by_key.len(), 3);
}

#[tokio::test]
async fn a_pause_holds_the_queued_batches_and_resume_sends_each_once() {
    let rig = CampaignRig::new(ACCOUNT).await;
    let all = users(6);
    for u in &all {
        rig.friend(u, &["dessert"]).await;
    }
    let file = rig.campaign_file("held", "dessert", "");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    rig.oa.start("held", rig.clock.now_ms()).await.unwrap();
    rig.plan_only().await;
    assert_eq!(rig.campaign("held").await.counters.planned, 6);
    rig.oa.pause("held").await.unwrap();
    assert_eq!(rig.pump(WAIT).await, 0);
    let c = rig.campaign("held").await;
    assert_eq!((c.state, c.counters.held, c.counters.sent), (State::Paused, 6, 0), "held, not sent, not lost");
    assert!(rig.multicast_log().await.is_empty(), "nothing reached LINE");
    rig.assert_adds_up("held", &all).await;
    rig.oa.resume("held", rig.clock.now_ms()).await.unwrap();
    assert_eq!(rig.pump(WAIT).await, 0);
    let c = rig.campaign("held").await;
    assert_eq!((c.state, c.counters.held, c.counters.sent), (State::Done, 0, 6));
    rig.assert_adds_up("held", &all).await;
}

#[tokio::test]
async fn the_monthly_limit_pauses_the_campaign_gives_the_slots_back_and_resume_sends_the_rest_once() {
    let rig = CampaignRig::new(ACCOUNT).await;
    let all = users(4);
    for u in &all {
        rig.friend(u, &["dessert"]).await;
    }
    // LINE's quota has room for 2 messages; the batch has 4 recipients (all or nothing).
    rig.sim.client().configure(json!({ "monthlyQuota": 2 })).await.unwrap();
    let file = rig.campaign_file("quota", "dessert", "");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    let preview = rig.oa.preview("quota", rig.clock.now_ms()).await.unwrap();
    assert_eq!(preview["price"]["stopsAfter"], 2, "the preview says where the limit stops it: {preview}");
    rig.oa.start("quota", rig.clock.now_ms()).await.unwrap();
    assert_eq!(rig.pump(WAIT).await, 0);
    let c = rig.campaign("quota").await;
    assert_eq!(c.state, State::Paused);
    assert!(c.reason.as_deref().unwrap_or_default().starts_with("quota"), "{:?}", c.reason);
    assert_eq!((c.counters.held, c.counters.sent), (4, 0));
    assert_eq!(rig.multicast_log().await.len(), 1, "a monthly-limit 429 is not retried");
    for u in &all {
        assert!(rig.cap_set(u).await.is_empty(), "{u}: the slot of a send LINE refused was given back");
    }
    rig.assert_adds_up("quota", &all).await;
    rig.sim.client().configure(json!({ "monthlyQuota": 100 })).await.unwrap();
    rig.oa.resume("quota", rig.clock.now_ms()).await.unwrap();
    assert_eq!(rig.pump(WAIT).await, 0);
    let c = rig.campaign("quota").await;
    assert_eq!((c.state, c.counters.sent, c.counters.held), (State::Done, 4, 0));
    for u in &all {
        assert_eq!(rig.cap_set(u).await.len(), 1, "{u}: the slot is taken once it was sent");
    }
    rig.assert_adds_up("quota", &all).await;
}

#[tokio::test]
async fn a_batch_whose_sender_died_during_the_call_is_held_frozen_and_resumed_with_its_own_key() {
    let rig = CampaignRig::new(ACCOUNT).await;
    let all = users(4);
    for u in &all {
        rig.friend(u, &["dessert"]).await;
    }
    let file = rig.campaign_file("died", "dessert", "");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    rig.oa.start("died", rig.clock.now_ms()).await.unwrap();
    *rig.sender.failpoint.lock().unwrap() = Some(Failpoint::DieAfterLineAccepted);
    assert_eq!(rig.pump_once().await, 1, "LINE took the batch; the sender died before recording it");
    // A person pauses; the dead sender's lease runs out; the batch comes back and is held. LINE
    // may have taken it, so it keeps its send list, its slots and its retry key.
    rig.oa.pause("died").await.unwrap();
    rig.clock.advance(Duration::from_secs(120));
    assert_eq!(rig.pump(WAIT).await, 0);
    let c = rig.campaign("died").await;
    assert_eq!((c.state, c.counters.held), (State::Paused, 4));
    for u in &all {
        assert_eq!(rig.cap_set(u).await.len(), 1, "{u}: the slot of a batch LINE may have taken stays");
    }
    rig.oa.resume("died", rig.clock.now_ms()).await.unwrap();
    assert_eq!(rig.pump(WAIT).await, 0);
    let log = rig.multicast_log().await;
    assert_eq!(log.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![200, 409], "{log:?}");
    assert_eq!(log[0].1, log[1].1, "resumed with the key it was frozen with");
    let c = rig.campaign("died").await;
    assert_eq!((c.state, c.counters.sent, c.counters.held), (State::Done, 4, 0));
    rig.assert_adds_up("died", &all).await;
    // The dead sender's late settle (what it saw: frozen, its lease) is refused: counted once.
    let mut stale = rig.store.batch(&c, 0).await.unwrap().unwrap();
    stale.state = shared::campaign::batch::BatchState::Frozen;
    let late = shared::campaign::batch::Settlement {
        state: shared::campaign::batch::BatchState::Sent,
        sent: 4,
        failed: 0,
        unknown: 0,
        request_id: None,
        error: None,
        release_slots: false,
    };
    assert!(!rig.store.settle(&c, &stale, "the-dead-sender", &late, 0).await.unwrap());
    assert_eq!(rig.campaign("died").await.counters.sent, 4);
}

#[tokio::test]
async fn two_planners_on_one_campaign_at_once_plan_every_friend_exactly_once() {
    let rig = CampaignRig::new(ACCOUNT).await;
    let all = users(1_100);
    for chunk in all.chunks(50) {
        futures::future::join_all(chunk.iter().map(|u| rig.friend(u, &["dessert"]))).await;
    }
    let file = rig.campaign_file("twice", "dessert", "");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    let c = rig.oa.start("twice", rig.clock.now_ms()).await.unwrap();
    // The plan message delivered twice at once (standard queues may): two planners race.
    let body = shared::campaign::model::PlanMessage::body(&c).unwrap();
    let record = |id: &str| {
        let mut r = aws_lambda_events::event::sqs::SqsMessage::default();
        r.message_id = Some(id.into());
        r.body = Some(body.clone());
        r
    };
    let (a, b) = (vec![record("a")], vec![record("b")]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (ra, rb) = tokio::join!(
        campaign::handler::handle_batch(&rig.planner, &a, deadline),
        campaign::handler::handle_batch(&rig.planner, &b, deadline)
    );
    assert!(ra.batch_item_failures.is_empty() && rb.batch_item_failures.is_empty());
    let c = rig.campaign("twice").await;
    assert!(c.plan_done);
    assert_eq!((c.counters.segment, c.counters.planned, c.counters.batches), (1_100, 1_100, 3), "{:?}", c.counters);
    assert_eq!(rig.pump(WAIT).await, 0);
    let c = rig.campaign("twice").await;
    assert_eq!((c.state, c.counters.sent), (State::Done, 1_100));
    rig.assert_adds_up("twice", &all).await;
}

#[tokio::test]
async fn unreadable_queue_messages_go_to_the_dead_letter_queue_not_away() {
    let rig = CampaignRig::new(ACCOUNT).await;
    let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
    record.message_id = Some("m1".into());
    record.body = Some("{\"campaign\": 42}".into());
    let records = vec![record];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let plan = campaign::handler::handle_batch(&rig.planner, &records, deadline).await;
    let send = multicast::handler::handle_batch(&rig.sender, &records).await;
    for response in [plan, send] {
        let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, ["m1"], "reported failed: after maxReceiveCount it reaches the DLQ and its alarm");
    }
}

/// Settings with the fleet's rate (and more) added.
fn account_with(extra: &str) -> String {
    format!("{ACCOUNT}{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_storm_slows_the_whole_fleet_and_every_friend_still_gets_one_push() {
    // The account believes in 40 requests a second; the channel allows 4 (another tool uses
    // the rest): a fleet slowed by a busy machine still goes past it.
    let rig = CampaignRig::new(&account_with("sendRate: 40\n")).await;
    rig.sim.client().configure(json!({ "rateLimits": { "multicast": 4 } })).await.unwrap();
    let all = users(40);
    for u in &all {
        rig.friend(u, &["storm"]).await;
    }
    let file = rig.campaign_file("storm", "storm", "batchSize: 1\n");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    rig.oa.start("storm", rig.clock.now_ms()).await.unwrap();
    rig.plan_only().await;
    rig.send_with_fleet(3, WAIT).await;
    let log = rig.sim.client().requests("multicast").await.unwrap();
    let refused = log.iter().filter(|r| r["status"] == 429).count();
    assert!(refused > 0, "the storm happened");
    assert!(refused < 40, "{refused} 429s for 40 requests: the fleet slowed down instead of hammering");
    let c = rig.campaign("storm").await;
    assert_eq!((c.state, c.counters.sent), (State::Done, 40), "{:?}", c.counters);
    assert_eq!(rig.billed().await, 40);
    for u in &all {
        assert_eq!(rig.cap_set(u).await.len(), 1);
    }
    // Two 429s within a second: the second cuts nothing more, and is no error either.
    use shared::campaign::ports::Pacer;
    let pacer = shared::adapters::dynamodb::schedule::DynamoPacer::new(
        rig.stack.dynamodb.clone(),
        rig.stack.table("CampaignsTable"),
    );
    let now = rig.clock.now_ms() + 60_000;
    pacer.rate_limited(40, now).await.unwrap();
    pacer.rate_limited(40, now + 10).await.unwrap();
    rig.assert_adds_up("storm", &all).await;
}

#[tokio::test]
async fn a_scheduled_campaign_waits_and_one_running_into_quiet_hours_pauses_and_resumes_after_them() {
    use shared::campaign::model::PlanMessage;
    // Quiet from the last hour to the one after next, UTC: now is inside them, and so is two
    // minutes from now (at 19:58, quiet hours ending at 20:00 would be over by then).
    let hour = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).hour();
    let quiet = format!("{:02}:00-{:02}:00", (hour + 23) % 24, (hour + 2) % 24);
    let rig =
        CampaignRig::new(&account_with(&format!("quietHours: \"{quiet}\"\n")).replace("Asia/Taipei", "UTC")).await;
    let all = users(3);
    for u in &all {
        rig.friend(u, &["late"]).await;
    }
    let at = jiff::Timestamp::from_millisecond(rig.clock.now_ms() + 120_000).unwrap();
    let file = rig.campaign_file("late", "late", &format!("schedule: {at}\n"));
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    assert_eq!(rig.oa.start("late", rig.clock.now_ms()).await.unwrap().state, State::Scheduled);
    rig.pump(WAIT).await;
    assert_eq!(rig.campaign("late").await.state, State::Scheduled, "it waits (a delayed message to itself)");
    // Two minutes on, the delayed message arrives: it plans, and the sender finds quiet hours.
    rig.clock.advance(Duration::from_secs(121));
    let c = rig.campaign("late").await;
    rig.oa.plans.send(&PlanMessage::body(&c).unwrap(), 0).await.unwrap();
    rig.pump(WAIT).await;
    let c = rig.campaign("late").await;
    assert_eq!(c.state, State::Paused, "{:?}", c.reason);
    assert!(c.reason.as_deref().unwrap_or_default().starts_with("quiet hours"), "{:?}", c.reason);
    let end = c.resume_at_ms.expect("it resumes by itself");
    assert_eq!(end % 3_600_000, 0, "at the top of the hour the quiet hours end");
    for u in &all {
        assert_eq!(rig.received(u).await, 0, "nothing in quiet hours");
        assert!(rig.cap_set(u).await.is_empty(), "no slot kept by a held batch");
    }
    // Still quiet: the planner looks again later and changes nothing.
    rig.oa.plans.send(&PlanMessage::body(&c).unwrap(), 0).await.unwrap();
    rig.pump(WAIT).await;
    assert_eq!(rig.campaign("late").await.state, State::Paused);
    // A person pauses it for good meanwhile: the end of the quiet hours does not undo that.
    rig.oa.pause("late").await.unwrap();
    rig.clock.advance(Duration::from_millis((end - rig.clock.now_ms() + 1_000) as u64));
    rig.oa.plans.send(&PlanMessage::body(&c).unwrap(), 0).await.unwrap();
    rig.pump(WAIT).await;
    assert_eq!(rig.campaign("late").await.state, State::Paused, "paused by a person stays paused");
    // Resumed by the person after the quiet hours: it sends once.
    rig.oa.resume("late", rig.clock.now_ms()).await.unwrap();
    rig.pump(WAIT).await;
    let c = rig.campaign("late").await;
    assert_eq!((c.state, c.counters.sent), (State::Done, 3), "{:?}", c.counters);
    rig.assert_adds_up("late", &all).await;
}

#[tokio::test]
async fn an_unknown_outcome_waits_for_a_person_and_not_delivered_gives_the_slots_back() {
    let rig = CampaignRig::new(ACCOUNT).await;
    let all = users(3);
    for u in &all {
        rig.friend(u, &["maybe"]).await;
    }
    let file = rig.campaign_file("maybe", "maybe", "");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    rig.oa.start("maybe", rig.clock.now_ms()).await.unwrap();
    // LINE answers 500 to every try of this invocation: it may have taken the batch.
    rig.sim.client().set_faults("multicast", json!({ "error500": 1.0 })).await.unwrap();
    let frozen_at = rig.clock.now_ms();
    rig.pump_once().await;
    rig.pump_once().await;
    rig.sim.client().clear_faults().await.unwrap();
    // A day later its retry key is forgotten: the batch is never sent again automatically.
    rig.clock.advance(Duration::from_secs(24 * 3600));
    rig.pump(WAIT).await;
    let c = rig.campaign("maybe").await;
    assert_eq!((c.state, c.counters.unknown), (State::NeedsAttention, 3));
    for u in &all {
        assert_eq!(rig.received(u).await, 0);
        assert_eq!(rig.cap_set_at(u, frozen_at).await.len(), 1, "the slot stays while the outcome is unknown");
    }
    // A first resolve dies right after recording its decision: the slots are still taken, and
    // the next resolve gives them back.
    let batch = rig.store.batch(&c, 0).await.unwrap().unwrap();
    assert!(rig.store.resolve_unknown(&c, &batch, false, rig.clock.now_ms()).await.unwrap());
    assert_eq!(rig.cap_set_at(&all[0], frozen_at).await.len(), 1);
    let (batches, friends, after) = rig.oa.resolve("maybe", false, rig.clock.now_ms()).await.unwrap();
    assert_eq!((batches, friends, after.state), (0, 0, State::Done));
    assert_eq!((after.counters.unknown, after.counters.failed), (0, 3));
    for u in &all {
        assert!(rig.cap_set_at(u, frozen_at).await.is_empty(), "not delivered: the slot is given back");
    }
    rig.assert_adds_up("maybe", &all).await;
}

#[tokio::test]
async fn friends_import_pages_lines_followers_resumes_where_it_stopped_and_keeps_what_events_recorded() {
    use shared::adapters::dynamodb::ingest::DynamoFriends;
    use shared::ports::{FriendChange, FriendStore};
    let rig = CampaignRig::new(ACCOUNT).await;
    let followers = users(2_300);
    let sim = rig.sim.client();
    let list: Vec<serde_json::Value> = followers.iter().map(|u| json!({ "userId": u, "displayName": "f" })).collect();
    sim.add_friends(json!(list)).await.unwrap();
    // One friend blocked the account (LINE leaves them out); one blocked it by our own records.
    let gone = users(1).remove(0);
    sim.add_friends(json!([{ "userId": gone, "displayName": "g", "blocked": true }])).await.unwrap();
    let friends = DynamoFriends::new(rig.stack.dynamodb.clone(), rig.stack.table("UsersTable"));
    friends.record(&followers[7], FriendChange::Unfollowed, 1, 1).await.unwrap();
    let dynamodb = rig.stack.dynamodb.clone();
    let import = oa::friends::Import {
        line: &rig.oa.line,
        friends: &friends,
        dynamodb: &dynamodb,
        campaigns_table: rig.stack.table("CampaignsTable"),
    };
    // LINE fails the second page.
    sim.set_faults("followers", json!({ "error500": 1.0, "after": 1, "times": 1 })).await.unwrap();
    let e = import.run(false, rig.clock.now_ms(), |_| {}).await.unwrap_err();
    assert!(e.to_string().contains("500"), "{e}");
    let done = import.run(false, rig.clock.now_ms(), |_| {}).await.unwrap();
    assert!(done.resumed);
    assert_eq!((done.pages, done.listed, done.added), (3, 2_300, 2_299));
    let requests = sim.requests("followers").await.unwrap();
    assert_eq!(requests.iter().filter(|r| r["status"] == 200).count(), 3, "page 1 was not read twice");
    assert_eq!(requests.len(), 4);
    let state = |u: &str| {
        let (d, t, u) = (rig.stack.dynamodb.clone(), rig.stack.table("UsersTable"), u.to_string());
        async move {
            let item = integration_tests::get_item(&d, t, "userId", &u).await;
            item.and_then(|i| i.get("state").and_then(|v| v.as_s().ok()).cloned())
        }
    };
    assert_eq!(state(&followers[0]).await.as_deref(), Some("following"));
    assert_eq!(state(&followers[2_299]).await.as_deref(), Some("following"));
    assert_eq!(state(&followers[7]).await.as_deref(), Some("blocked"), "what events recorded stands");
    assert_eq!(state(&gone).await, None, "LINE does not list friends who blocked the account");
    // An account LINE does not let list followers gets told so in words.
    sim.configure(json!({ "followersApi": false })).await.unwrap();
    let e = import.run(true, rig.clock.now_ms(), |_| {}).await.unwrap_err();
    assert!(e.to_string().contains("only verified and premium accounts"), "{e}");
}

#[tokio::test]
async fn the_account_monthly_budget_pauses_a_campaign_at_the_exact_count() {
    let rig = CampaignRig::new(&account_with("monthlyBudget: { messages: 5 }\n")).await;
    let all = users(8);
    for u in &all {
        rig.friend(u, &["budget"]).await;
    }
    let first = rig.campaign_file("first", "budget", "batchSize: 1\n");
    rig.oa.create(&first, false, rig.clock.now_ms()).await.unwrap();
    rig.oa.start("first", rig.clock.now_ms()).await.unwrap();
    assert_eq!(rig.pump(WAIT).await, 0);
    let c = rig.campaign("first").await;
    assert_eq!(c.state, State::Paused, "{:?}", c.counters);
    assert!(c.reason.as_deref().unwrap_or_default().starts_with("budget"), "{:?}", c.reason);
    // Batches in flight when it paused are held too (and give their share back): never past it.
    let month = shared::campaign::model::period_attribute(
        shared::campaign::file::Period::Month,
        jiff::Timestamp::from_millisecond(rig.clock.now_ms()).unwrap(),
        &shared::rules::window::Zone::parse("Asia/Taipei").unwrap(),
    );
    let used = rig.store.budget_used(month.trim_start_matches("cap#")).await.unwrap();
    assert!(c.counters.sent <= 5 && c.counters.sent >= 1, "{:?}", c.counters);
    assert_eq!((used, c.counters.held), (c.counters.sent, 8 - c.counters.sent), "the budget holds what was sent");
    assert_eq!(rig.billed().await, c.counters.sent);
    rig.assert_adds_up("first", &all).await;
}
