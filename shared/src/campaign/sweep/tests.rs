//! The sweep against the in-memory ports.

use super::*;
use crate::adapters::memory::campaigns::{campaign, MemoryCampaigns};
use crate::adapters::memory::queue::MemoryWorkQueue;
use crate::campaign::batch::Settlement;
use crate::campaign::model::PlannedPage;
use crate::campaign::ports::{BatchRepo, CampaignRepo, CapStore};

/// 2026-11-15T00:00Z
const NOW: i64 = 1_794_700_800_000;
const MINUTE_MS: i64 = 60_000;

struct At(i64);
impl Clock for At {
    fn now_ms(&self) -> i64 {
        self.0
    }
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("U{i:032x}")).collect()
}

#[derive(Default)]
struct World {
    store: MemoryCampaigns,
    batches: MemoryWorkQueue,
}

impl World {
    async fn sweep(&self, now_ms: i64) -> Swept {
        let clock = At(now_ms);
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        Sweeper { store: &self.store, batches: &self.batches, clock: &clock, until }.run().await.unwrap()
    }

    /// A campaign sending `pages` batches of one friend each, planned in full.
    async fn sending(&self, id: &str, pages: usize) -> Campaign {
        let mut c = campaign(id, &[], false);
        c.started_at_ms = Some(NOW);
        self.store.insert(c.clone());
        for (i, friend) in users(pages).into_iter().enumerate() {
            let page = PlannedPage { segment: 1, to: vec![friend], holdout: vec![], skipped: Default::default() };
            let c = self.store.get(id).await.unwrap().unwrap();
            let next = (i + 1 < pages).then_some(crate::segment::resolve::Cursor { shard: 0, after: None });
            assert!(self.store.commit_page(&c, &page, next.as_ref(), NOW).await.unwrap());
        }
        self.store.get(id).await.unwrap().unwrap()
    }

    async fn settle(&self, c: &Campaign, number: u32, state: BatchState, at: i64) {
        assert!(self.store.lease(c, number, "s", at, at + MINUTE_MS).await.unwrap());
        let skips = Default::default();
        assert!(self.store.freeze(c, number, "s", &[true], &skips, "key", at).await.unwrap());
        let batch = self.store.batch(c, number).await.unwrap().unwrap();
        let (sent, unknown) = if state == BatchState::Unknown { (0, 1) } else { (1, 0) };
        let outcome =
            Settlement { state, sent, failed: 0, unknown, request_id: None, error: None, release_slots: false };
        assert!(self.store.settle(c, &batch, "s", &outcome, at).await.unwrap());
    }
}

#[tokio::test]
async fn a_campaign_whose_batches_all_settled_is_finished_and_one_still_sending_is_left() {
    let w = World::default();
    let done = w.sending("done", 2).await;
    w.settle(&done, 0, BatchState::Sent, NOW).await;
    w.settle(&done, 1, BatchState::Sent, NOW).await;
    let going = w.sending("going", 2).await;
    w.settle(&going, 0, BatchState::Sent, NOW).await;
    // (The settle's own finish was lost: still sending.)
    assert_eq!(w.store.campaign("done").unwrap().state, State::Sending);
    let swept = w.sweep(NOW + MINUTE_MS).await;
    assert_eq!(swept.finished, vec!["done".to_string()]);
    assert_eq!(w.store.campaign("done").unwrap().state, State::Done);
    assert_eq!(w.store.campaign("going").unwrap().state, State::Sending);
    assert!(swept.stalled.is_empty() && swept.requeued == 0, "{swept:?}");
}

#[tokio::test]
async fn a_batch_nobody_worked_on_for_ten_minutes_is_queued_again_and_no_other() {
    let w = World::default();
    let c = w.sending("c", 5).await;
    let now = NOW + 20 * MINUTE_MS;
    // Batch 0: its sender died 19 minutes ago (its message is in the dead-letter queue).
    assert!(w.store.lease(&c, 0, "dead", NOW, NOW + MINUTE_MS).await.unwrap());
    // Batch 1: a sender holds it now. Batch 2: never leased (its message is on its way).
    assert!(w.store.lease(&c, 1, "alive", now - MINUTE_MS, now + MINUTE_MS).await.unwrap());
    // Batch 3: LINE keeps failing; its message comes back every 2 minutes, each time leased and
    // let go: last let go 2 minutes ago.
    assert!(w.store.lease(&c, 3, "retrying", now - 3 * MINUTE_MS, now).await.unwrap());
    w.store.release_lease(&c, 3, "retrying", now - 2 * MINUTE_MS).await.unwrap();
    // Batch 4 settled at the start: nothing since, so the campaign is stalled (and paged about);
    // then a batch never leased has lost its message too (a planner died between its commit and
    // its queueing while another went on).
    w.settle(&c, 4, BatchState::Sent, NOW).await;
    let swept = w.sweep(now).await;
    assert_eq!((swept.stalled.clone(), swept.requeued), (vec!["c".to_string()], 2));
    let sent: Vec<BatchMessage> = w.batches.sent().iter().map(|(b, _)| serde_json::from_str(b).unwrap()).collect();
    let again = |batch| BatchMessage { campaign: "c".into(), run: c.run.clone(), batch };
    assert_eq!(sent, vec![again(0), again(2)]);
    // Once the outage outlasts the queue's receives, batch 3 goes idle too, and comes back.
    let swept = w.sweep(now + 9 * MINUTE_MS).await;
    assert_eq!(swept.requeued, 3, "batches 0 and 2 (again: their copies were not taken yet) and 3");
    // A campaign that moves leaves a never-leased batch to its message on the way.
    let moving = w.sending("moving", 2).await;
    w.settle(&moving, 1, BatchState::Sent, now - MINUTE_MS).await;
    let before = w.batches.sent().len();
    w.sweep(now).await;
    assert!(w.batches.sent()[before..].iter().all(|(b, _)| !b.contains("\"moving\"")));
}

#[tokio::test]
async fn a_cancelled_campaigns_batch_that_lost_its_message_is_queued_again_to_be_given_back() {
    let w = World::default();
    let c = w.sending("c", 1).await;
    assert!(w.store.lease(&c, 0, "dead", NOW, NOW + MINUTE_MS).await.unwrap());
    assert!(w.store.transition("c", &c.run, &[State::Sending], State::Cancelled, None).await.unwrap());
    let swept = w.sweep(NOW + 20 * MINUTE_MS).await;
    assert_eq!((swept.requeued, swept.stalled.len()), (1, 0), "queued again, not counted stalled");
}

#[tokio::test]
async fn a_resolve_cut_short_is_finished_before_the_sweep_calls_the_campaign_done() {
    let w = World::default();
    let c = w.sending("c", 1).await;
    let friend = users(1).remove(0);
    w.store.add_friend(&friend, true, false);
    // The batch reserved its friend, then its outcome was unknown.
    assert!(w.store.lease(&c, 0, "s", NOW, NOW + MINUTE_MS).await.unwrap());
    let batch = w.store.batch(&c, 0).await.unwrap().unwrap();
    let attrs = crate::campaign::classify::Classifier::of(&c, NOW).demand.attributes();
    assert!(w.store.begin_reserve(&c, &batch, "s", &attrs, NOW).await.unwrap());
    let demand = crate::campaign::classify::Classifier::of(&c, NOW).demand.generation(1);
    assert_eq!(w.store.reserve(&friend, &demand, NOW).await.unwrap(), crate::campaign::caps::Reservation::Reserved);
    let skips = Default::default();
    assert!(w.store.freeze(&c, 0, "s", &[true], &skips, "key", NOW).await.unwrap());
    let batch = w.store.batch(&c, 0).await.unwrap().unwrap();
    let unknown = Settlement {
        state: BatchState::Unknown,
        sent: 0,
        failed: 0,
        unknown: 1,
        request_id: None,
        error: None,
        release_slots: false,
    };
    assert!(w.store.settle(&c, &batch, "s", &unknown, NOW).await.unwrap());
    assert!(w.store.finish_if_done(&c).await.unwrap());
    // A person resolved it as not delivered, and the command stopped before giving the slot back.
    let c = w.store.campaign("c").unwrap();
    let batch = w.store.batch(&c, 0).await.unwrap().unwrap();
    assert!(w.store.resolve_unknown(&c, &batch, false, NOW).await.unwrap());
    assert!(w.store.batch(&c, 0).await.unwrap().unwrap().slots_to_give_back());
    let swept = w.sweep(NOW + MINUTE_MS).await;
    assert_eq!(swept.finished, vec!["c".to_string()]);
    assert!(!w.store.batch(&c, 0).await.unwrap().unwrap().slots_to_give_back(), "the slot went back first");
    let caps = w.store.friend_caps(std::slice::from_ref(&friend), &demand).await.unwrap();
    assert!(caps[&friend].last_push.is_none(), "the friend's push is given back");
}

#[tokio::test]
async fn stalled_needing_attention_and_paused_campaigns_are_counted_for_the_alarms() {
    let w = World::default();
    // Sending, nothing settled for 20 minutes: stalled. Another settled 5 minutes ago: not.
    let stuck = w.sending("stuck", 2).await;
    w.settle(&stuck, 0, BatchState::Sent, NOW).await;
    let moving = w.sending("moving", 2).await;
    w.settle(&moving, 0, BatchState::Sent, NOW + 15 * MINUTE_MS).await;
    // All settled, one unknown: the sweep finishes it as needing attention.
    let unsure = w.sending("unsure", 1).await;
    w.settle(&unsure, 0, BatchState::Unknown, NOW).await;
    for (id, reason) in [
        ("q", "quota: LINE's monthly message limit is reached"),
        ("b", "budget: the account's monthly budget of 5 messages is used up (m2026-11)"),
        ("t", "LINE refused the campaign: LINE refused the access token (401)"),
        ("h", "quiet hours: resumes by itself at 2026-11-15T13:00:00Z"),
        ("p", "paused by a person"),
    ] {
        let mut c = campaign(id, &[], false);
        c.state = State::Paused;
        c.reason = Some(reason.into());
        w.store.insert(c);
    }
    let now = NOW + 20 * MINUTE_MS;
    let swept = w.sweep(now).await;
    assert_eq!(swept.stalled, vec!["stuck".to_string()]);
    assert_eq!((swept.finished.clone(), swept.needing_attention), (vec!["unsure".to_string()], 1));
    assert_eq!(w.store.campaign("unsure").unwrap().state, State::NeedsAttention);
    let paused: Vec<(String, u32)> = swept.paused.clone().into_iter().collect();
    assert_eq!(
        paused,
        [("budget", 1), ("line", 1), ("person", 1), ("quietHours", 1), ("quota", 1)].map(|(k, n)| (k.to_string(), n))
    );
    // The metrics as CloudWatch reads them: one line without dimensions, one per reason.
    let lines: Vec<serde_json::Value> =
        swept.metrics("oa-test", now).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["CampaignsStalled"], 1);
    assert_eq!(lines[0]["CampaignsNeedingAttention"], 1);
    assert_eq!(lines[0]["CampaignsPausedNeedingAction"], 3, "quota, budget and LINE's refusal");
    assert_eq!(lines[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"], "oa-test");
    assert_eq!(lines[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([[]]));
    let quota = lines.iter().find(|l| l["Reason"] == "quota").unwrap();
    assert_eq!(
        (quota["CampaignsPaused"].clone(), quota["_aws"]["CloudWatchMetrics"][0]["Dimensions"].clone()),
        (serde_json::json!(1), serde_json::json!([["Reason"]]))
    );
    // The unknown outcome resolved by a person: the next sweep takes it to done.
    let unsure = w.store.campaign("unsure").unwrap();
    let batch = w.store.batch(&unsure, 0).await.unwrap().unwrap();
    assert!(w.store.resolve_unknown(&unsure, &batch, true, now).await.unwrap());
    let swept = w.sweep(now + MINUTE_MS).await;
    assert_eq!((swept.finished, swept.needing_attention), (vec!["unsure".to_string()], 0));
    assert_eq!(w.store.campaign("unsure").unwrap().state, State::Done);
}
