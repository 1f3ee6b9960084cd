//! The fleet's send rate on line-sim's request log: several senders at once, and no 100 ms window
//! with more requests than the channel's rate allows. A binary of its own, so that no other test
//! shares the machine's two cores while arrival times are measured.

use std::time::Duration;

use integration_tests::campaigns::{users, windows, CampaignRig, ACCOUNT};
use serde_json::json;
use shared::campaign::model::State;
use shared::ports::Clock;

const WAIT: Duration = Duration::from_secs(60);

// Several threads, as separate invocations have: on one thread, the senders and line-sim (in
// this process) would wait for each other and the arrival times would measure that.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_senders_at_once_keep_every_100_ms_window_within_the_channel_rate() {
    let rig = CampaignRig::new(&format!("{ACCOUNT}sendRate: 20\n")).await;
    rig.sim.client().configure(json!({ "rateLimits": { "multicast": 20 } })).await.unwrap();
    let all = users(48);
    for u in &all {
        rig.friend(u, &["fleet"]).await;
    }
    // One friend a request: 48 requests from 48 friends.
    let file = rig.campaign_file("fleet", "fleet", "batchSize: 1\ntransactional: true\naggregationUnit: fleet_nov\n");
    rig.oa.create(&file, rig.clock.now_ms()).await.unwrap();
    rig.oa.start("fleet", rig.clock.now_ms()).await.unwrap();
    rig.plan_only().await;
    assert_eq!(rig.campaign("fleet").await.counters.batches, 48);
    assert_eq!(rig.send_with_fleet(3, WAIT).await, 0);
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
