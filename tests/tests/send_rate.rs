//! The fleet's send rate on line-sim's request log: several senders at once, and no 100 ms window
//! with more requests than the channel's rate allows. A binary of its own, so that no other test
//! shares the machine's two cores while arrival times are measured.

use std::time::Duration;

use integration_tests::campaigns::{arrivals_us, users, windows, CampaignRig, ACCOUNT};
use serde_json::json;
use shared::campaign::model::State;
use shared::campaign::send::Failpoint;
use shared::ports::Clock;

const WAIT: Duration = Duration::from_secs(60);

/// One test at a time: arrival times taken while another test sends would measure that test.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// Several threads, as separate invocations have: on one thread, the senders and line-sim (in
// this process) would wait for each other and the arrival times would measure that.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_senders_at_once_keep_every_100_ms_window_within_the_channel_rate() {
    let _one = ONE_AT_A_TIME.lock().await;
    let rig = CampaignRig::new(&format!("{ACCOUNT}sendRate: 20\n")).await;
    rig.sim.client().configure(json!({ "rateLimits": { "multicast": 20 } })).await.unwrap();
    let all = users(48);
    for u in &all {
        rig.friend(u, &["fleet"]).await;
    }
    // One friend a request: 48 requests from 48 friends.
    let file = rig.campaign_file("fleet", "fleet", "batchSize: 1\ntransactional: true\naggregationUnit: fleet_nov\n");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    rig.oa.start("fleet", rig.clock.now_ms()).await.unwrap();
    rig.plan_only().await;
    assert_eq!(rig.campaign("fleet").await.counters.batches, 48);
    // (A record may come back: SQS, and the emulator, can hand one message to two receivers at
    // once. The second finds the first's lease and lets it be.)
    rig.send_with_fleet(3, WAIT).await;
    let log = rig.sim.client().requests("multicast").await.unwrap();
    assert_eq!(log.len(), 48, "one request a batch, none refused");
    assert!(log.iter().all(|r| r["status"] == 200), "no 429");
    let (most, rate) = windows(&log);
    let mut at: Vec<i64> = log.iter().filter_map(|r| r["at"].as_i64()).collect();
    at.sort_unstable();
    let gaps: Vec<i64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(most <= 2, "{most} requests in one 100 ms window: 20/s allows 2; gaps {gaps:?}");
    assert!(rate <= 20.0, "{rate:.1} requests a second");
    let c = rig.campaign("fleet").await;
    assert_eq!((c.state, c.counters.sent), (State::Done, 48));
    rig.assert_adds_up("fleet", &all).await;
    let counters = rig.sim.client().counters().await.unwrap();
    assert_eq!(counters["counters"]["aggregationUnitsUsed"], 1, "sent as customAggregationUnits: {counters}");
}

/// A rig with `n` friends tagged `id` and campaign `id` planned in batches of one, line-sim's
/// multicast limit and `sendRate` both 20 a second.
async fn planned(id: &str, n: usize) -> (CampaignRig, Vec<String>) {
    let rig = CampaignRig::new(&format!("{ACCOUNT}sendRate: 20\n")).await;
    rig.sim.client().configure(json!({ "rateLimits": { "multicast": 20 } })).await.unwrap();
    let all = users(n);
    for u in &all {
        rig.friend(u, &[id]).await;
    }
    let file = rig.campaign_file(id, id, "batchSize: 1\ntransactional: true\n");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    rig.oa.start(id, rig.clock.now_ms()).await.unwrap();
    rig.plan_only().await;
    (rig, all)
}

// A sender woken 10 ms late for its slot (its machine was busy) still sends, and records it: the
// request two slots later, 104.2 ms after the slot, would otherwise arrive 94.2 ms after it. (10
// ms, not more: a sender later than 20 ms gives its slot up, and a loaded machine adds a few.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sender_woken_late_holds_back_the_requests_after_it_instead_of_crowding_them() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (rig, all) = planned("late", 36).await;
    rig.send_with_fleet_faulty(3, WAIT, Some(Failpoint::WakeLate(10))).await;
    let log = rig.sim.client().requests("multicast").await.unwrap();
    assert_eq!(log.len(), 36, "the late request was sent, not given up: {log:?}");
    assert!(log.iter().all(|r| r["status"] == 200), "no 429");
    let at = arrivals_us(&log);
    let gaps: Vec<i64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // The late one follows the first long gap: 52.1 ms and its 10 (and a few for the timer). A
    // slot given up instead would leave a gap of two intervals, 104 ms.
    let before = gaps.iter().position(|g| (59_000..75_000).contains(g));
    let late = before.unwrap_or_else(|| panic!("no request left about 10 ms late (given up?): gaps {gaps:?}")) + 1;
    assert!(late + 2 < at.len(), "two requests came after the late one: gaps {gaps:?}");
    let span = at[late + 2] - at[late];
    assert!(span > 100_000, "the late request and the second after it arrived {span} µs apart: gaps {gaps:?}");
    let c = rig.campaign("late").await;
    assert_eq!((c.state, c.counters.sent), (State::Done, 36));
    rig.assert_adds_up("late", &all).await;
}

// LINE (line-sim) answers one request 15 ms late. Its answer bounds when it arrived, so it may
// have arrived that late: the request two slots after it keeps its distance from that (held by
// the 15 ms less the 2.5 the spacing absorbs), where the schedule alone would send it 104.2 ms
// after the slow one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_answer_holds_back_the_requests_after_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (rig, all) = planned("slow", 30).await;
    rig.sim.client().configure(json!({ "hangMs": 15 })).await.unwrap();
    rig.sim
        .client()
        .set_faults("multicast", json!({ "hangAfterDelivery": 1.0, "times": 1, "after": 12 }))
        .await
        .unwrap();
    rig.send_with_fleet(3, WAIT).await;
    let mut log = rig.sim.client().requests("multicast").await.unwrap();
    log.sort_by_key(|r| r["atUs"].as_i64());
    assert_eq!(log.len(), 30);
    let slow = log.iter().position(|r| r["fault"] == "hangAfterDelivery").expect("one answer was slow");
    assert!(slow + 2 < log.len(), "two requests came after the slow one");
    let at = arrivals_us(&log);
    let span = at[slow + 2] - at[slow];
    assert!(span > 110_000, "the second request after the slow answer arrived {span} µs after it, not held back");
    let c = rig.campaign("slow").await;
    assert_eq!((c.state, c.counters.sent), (State::Done, 30));
    rig.assert_adds_up("slow", &all).await;
}
