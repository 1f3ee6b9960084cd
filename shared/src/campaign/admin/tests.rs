//! The people's commands against the in-memory ports.

use std::collections::HashMap;

use super::*;
use crate::adapters::memory::campaigns::{campaign, MemoryCampaigns};
use crate::adapters::memory::line::{Answer, MemoryLine};
use crate::adapters::memory::queue::MemoryWorkQueue;
use crate::adapters::memory::segment::MemoryIndex;
use crate::campaign::batch::Settlement;
use crate::campaign::caps::Reservation;
use crate::campaign::file::{Cap, Period};
use crate::campaign::model::{BatchMessage, Counters, PlannedPage, Policy, Skips};
use crate::campaign::ports::{BatchRepo, CampaignRepo, CapStore, OptOuts};
use crate::segment::{FriendFacts, TagFacts};

/// 2026-11-15T00:00Z
const NOW: i64 = 1_794_700_800_000;

const SETTINGS: &str = "timezone: Asia/Taipei\ncaps:\n  - { per: month, max: 2 }\nplan: tw-2023-medium\n";

fn settings() -> AccountSettings {
    AccountSettings::parse(SETTINGS).unwrap()
}

/// A campaign file over `dessert`, with `extra` lines.
fn source(id: &str, extra: &str) -> String {
    format!("id: {id}\nname: Sweets for {id}\nsegment: dessert\nmessages: [\"Cake today\"]\n{extra}")
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("U{i:032x}")).collect()
}

#[derive(Default)]
struct World {
    store: MemoryCampaigns,
    plans: MemoryWorkQueue,
    batches: MemoryWorkQueue,
}

impl World {
    fn admin(&self) -> Admin<'_> {
        Admin { store: &self.store, plans: &self.plans, batches: &self.batches }
    }

    async fn create(&self, id: &str, extra: &str, now_ms: i64) -> Result<Campaign, AdminError> {
        let text = source(id, extra);
        let file = CampaignFile::parse(&text).unwrap();
        let admin = self.admin();
        admin.create(&file, &text, false, now_ms).await
    }

    fn plan_messages(&self) -> Vec<PlanMessage> {
        self.plans.sent().iter().map(|(body, _)| serde_json::from_str(body).unwrap()).collect()
    }

    fn batch_messages(&self) -> Vec<BatchMessage> {
        self.batches.sent().iter().map(|(body, _)| serde_json::from_str(body).unwrap()).collect()
    }

    fn insert_done(&self, id: &str) {
        let mut done = campaign(id, &[], false);
        done.state = State::Done;
        self.store.insert(done);
    }
}

#[tokio::test]
async fn create_makes_a_draft_a_draft_created_again_gets_a_new_run_and_a_started_one_is_in_use() {
    let w = World::default();
    let first = w.create("sweets", "", NOW).await.unwrap();
    assert_eq!((first.state, first.counters), (State::Draft, Counters::default()));
    assert_eq!(first.source, source("sweets", ""), "the file's text is kept");
    let again = w.create("sweets", "", NOW + 1).await.unwrap();
    assert_eq!(again.state, State::Draft);
    assert_ne!(again.run, first.run, "a new run");
    w.admin().start("sweets", &settings(), NOW).await.unwrap();
    let err = w.create("sweets", "", NOW + 2).await.unwrap_err();
    assert!(matches!(err, AdminError::InUse { state: State::Planning, .. }), "{err:?}");
    assert_eq!(err.to_string(), "campaign sweets exists and is planning: cancel it first, or use another id");
    let stored = w.store.campaign("sweets").unwrap();
    assert_eq!((stored.run, stored.state), (again.run, State::Planning), "the started run is untouched");
}

#[tokio::test]
async fn the_list_is_newest_first_and_an_unknown_id_is_named() {
    let w = World::default();
    w.create("older", "", NOW).await.unwrap();
    w.create("newer", "", NOW + 1_000).await.unwrap();
    let ids: Vec<String> = w.admin().list().await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["newer", "older"]);
    let err = w.admin().get("nope").await.unwrap_err();
    assert!(matches!(err, AdminError::NoSuchCampaign(_)), "{err:?}");
    assert_eq!(err.to_string(), "no campaign nope");
    assert!(matches!(w.admin().pause("nope").await, Err(AdminError::NoSuchCampaign(_))));
}

#[tokio::test]
async fn start_takes_the_accounts_settings_queues_planning_and_can_be_repeated_when_its_message_is_lost() {
    let w = World::default();
    let draft = w.create("sweets", "", NOW).await.unwrap();
    let started = w.admin().start("sweets", &settings(), NOW).await.unwrap();
    assert_eq!((started.state, started.started_at_ms), (State::Planning, Some(NOW)));
    assert_eq!(started.caps, vec![Cap { per: Period::Month, max: 2 }]);
    assert_eq!(started.timezone, "Asia/Taipei");
    assert_eq!(started.policy, Policy::of(&settings()));
    assert_eq!(w.store.campaign("sweets").unwrap(), started, "what start answers is what is stored");
    let message = PlanMessage { campaign: "sweets".into(), run: draft.run.clone(), requeue_from: None };
    assert_eq!(w.plan_messages(), vec![message.clone()]);
    assert_eq!(w.plans.sent()[0].1, 0, "planning starts now");
    // The plan message was lost: starting again queues it again and changes nothing else.
    let again = w.admin().start("sweets", &settings(), NOW + 60_000).await.unwrap();
    assert_eq!((again.state, again.started_at_ms), (State::Planning, Some(NOW)));
    assert_eq!(w.plan_messages(), vec![message.clone(), message]);
    assert!(w.batches.sent().is_empty(), "starting sends no batch");
}

#[tokio::test]
async fn a_campaign_scheduled_ahead_starts_as_scheduled_and_one_scheduled_in_the_past_plans_now() {
    let w = World::default();
    w.create("later", "schedule: \"2030-01-01T00:00:00Z\"\n", NOW).await.unwrap();
    let later = w.admin().start("later", &settings(), NOW).await.unwrap();
    assert_eq!((later.state, later.not_before_ms), (State::Scheduled, 1_893_456_000_000));
    w.create("past", "schedule: \"2020-01-01T00:00:00Z\"\n", NOW).await.unwrap();
    assert_eq!(w.admin().start("past", &settings(), NOW).await.unwrap().state, State::Planning);
    let planned: Vec<String> = w.plan_messages().into_iter().map(|m| m.campaign).collect();
    assert_eq!(planned, ["later", "past"], "the planner waits for the schedule itself");
}

#[tokio::test]
async fn a_cancelled_campaign_does_not_start() {
    let w = World::default();
    w.create("sweets", "", NOW).await.unwrap();
    let cancelled = w.admin().cancel("sweets").await.unwrap();
    assert_eq!((cancelled.state, cancelled.reason.as_deref()), (State::Cancelled, Some("cancelled by a person")));
    let err = w.admin().start("sweets", &settings(), NOW).await.unwrap_err();
    assert!(matches!(err, AdminError::NotADraft { state: State::Cancelled, .. }), "{err:?}");
    assert_eq!(err.to_string(), "campaign sweets is cancelled, not a draft");
    assert_eq!(w.store.campaign("sweets").unwrap().state, State::Cancelled);
    assert!(w.plans.sent().is_empty(), "nothing to plan");
}

#[tokio::test]
async fn a_person_pauses_then_cancels_a_planning_campaign_but_a_done_one_cannot_be_cancelled() {
    let w = World::default();
    w.create("sweets", "", NOW).await.unwrap();
    w.admin().start("sweets", &settings(), NOW).await.unwrap();
    let paused = w.admin().pause("sweets").await.unwrap();
    assert_eq!((paused.state, paused.reason.as_deref()), (State::Paused, Some("paused by a person")));
    let cancelled = w.admin().cancel("sweets").await.unwrap();
    assert_eq!((cancelled.state, cancelled.reason.as_deref()), (State::Cancelled, Some("cancelled by a person")));
    w.insert_done("old");
    let err = w.admin().cancel("old").await.unwrap_err();
    assert!(matches!(err, AdminError::CannotGo { state: State::Done, to: State::Cancelled, .. }), "{err:?}");
    assert_eq!(err.to_string(), "campaign old is done: cannot go to cancelled");
    assert_eq!(w.store.campaign("old").unwrap().state, State::Done);
}

#[tokio::test]
async fn resume_of_a_paused_campaign_takes_its_held_batch_back_and_queues_it_with_the_plan_message() {
    let w = World::default();
    let friends = users(3);
    friends.iter().for_each(|u| w.store.add_friend(u, true, false));
    let c = campaign("r", &[], false);
    w.store.insert(c.clone());
    let page = PlannedPage { segment: 3, to: friends.clone(), ..PlannedPage::default() };
    assert!(w.store.commit_page(&c, &page, None, NOW).await.unwrap());
    // LINE's quota paused it and the sender held its batch.
    assert!(w.store.transition("r", &c.run, &[State::Sending], State::Paused, Some("quota")).await.unwrap());
    assert!(w.store.lease(&c, 0, "s1", NOW, NOW + 90_000).await.unwrap());
    let batch = w.store.batch(&c, 0).await.unwrap().unwrap();
    assert!(w.store.hold(&c, &batch, "s1", false).await.unwrap());
    assert_eq!(w.store.campaign("r").unwrap().counters.held, 3);

    let resumed = w.admin().resume("r", NOW).await.unwrap();
    assert_eq!((resumed.state, resumed.plan_done, resumed.reason), (State::Sending, true, None));
    let stored = w.store.campaign("r").unwrap();
    assert_eq!((stored.state, stored.counters.held), (State::Sending, 0));
    assert_eq!(w.store.stored_batch(&c, 0).unwrap().state, BatchState::Planned);
    assert_eq!(w.batch_messages(), vec![BatchMessage { campaign: "r".into(), run: c.run.clone(), batch: 0 }]);
    // The plan message was sent first (delayed past the command), asking the planner to queue
    // the open batches too; and one at once, for planning to go on.
    let requeue = PlanMessage { campaign: "r".into(), run: c.run.clone(), requeue_from: Some(0) };
    assert_eq!(w.plan_messages(), vec![requeue.clone(), requeue]);
    assert_eq!(w.plans.sent().iter().map(|(_, delay)| *delay).collect::<Vec<_>>(), [90, 0]);
}

#[tokio::test]
async fn a_done_campaign_does_not_resume() {
    let w = World::default();
    w.insert_done("old");
    let err = w.admin().resume("old", NOW).await.unwrap_err();
    assert!(matches!(err, AdminError::CannotResume { state: State::Done, .. }), "{err:?}");
    assert_eq!(err.to_string(), "campaign old is done: only a paused or sending one resumes");
    assert!(w.plans.sent().is_empty() && w.batches.sent().is_empty(), "nothing queued");
    assert_eq!(w.store.campaign("old").unwrap().state, State::Done);
}

/// Campaign `u` (2 a month) whose one batch of `n` friends, their slots reserved, settled unknown:
/// it needs attention. The campaign, the friends and the month's cap attribute.
async fn unknown_batch(w: &World, n: usize) -> (Campaign, Vec<String>, String) {
    let friends = users(n);
    friends.iter().for_each(|u| w.store.add_friend(u, true, false));
    let c = campaign("u", &[Cap { per: Period::Month, max: 2 }], false);
    w.store.insert(c.clone());
    let page = PlannedPage { segment: n as u64, to: friends.clone(), ..PlannedPage::default() };
    assert!(w.store.commit_page(&c, &page, None, NOW).await.unwrap());
    assert!(w.store.lease(&c, 0, "s1", NOW, NOW + 90_000).await.unwrap());
    let demand = Classifier::of(&c, NOW).demand;
    let attrs = demand.attributes();
    let planned = w.store.batch(&c, 0).await.unwrap().unwrap();
    assert!(w.store.begin_reserve(&c, &planned, "s1", &attrs, NOW).await.unwrap());
    let demand = demand.generation(1);
    for u in &friends {
        assert_eq!(w.store.reserve(u, &demand, NOW).await.unwrap(), Reservation::Reserved);
    }
    let mask = vec![true; n];
    assert!(w.store.freeze(&c, 0, "s1", &mask, &Skips::default(), "key", NOW).await.unwrap());
    let batch = w.store.batch(&c, 0).await.unwrap().unwrap();
    let outcome = Settlement {
        state: BatchState::Unknown,
        sent: 0,
        failed: 0,
        unknown: n as u64,
        request_id: None,
        error: Some("timed out".into()),
        release_slots: false,
    };
    assert!(w.store.settle(&c, &batch, "s1", &outcome, NOW).await.unwrap());
    assert!(w.store.finish_if_done(&c).await.unwrap());
    assert_eq!(w.store.campaign("u").unwrap().state, State::NeedsAttention);
    let month = attrs[0].clone();
    assert!(friends.iter().all(|u| w.store.cap_set(u, &month) == vec![demand.member.clone()]), "slots taken");
    (c, friends, month)
}

#[tokio::test]
async fn an_unknown_batch_resolved_as_not_delivered_fails_and_gives_its_cap_slots_back() {
    let w = World::default();
    let (c, friends, month) = unknown_batch(&w, 3).await;
    let r = w.admin().resolve("u", false, NOW).await.unwrap();
    assert_eq!((r.batches, r.recipients, r.campaign.state), (1, 3, State::Done));
    let k = r.campaign.counters;
    assert_eq!((k.failed, k.unknown, k.sent), (3, 0, 0));
    assert!(k.problems(true).is_empty(), "{k:?}");
    assert!(friends.iter().all(|u| w.store.cap_set(u, &month).is_empty()), "slots given back");
    assert_eq!(w.store.stored_batch(&c, 0).unwrap().state, BatchState::Failed);
    let again = w.admin().resolve("u", false, NOW).await.unwrap();
    assert_eq!((again.batches, again.recipients), (0, 0), "nothing left to resolve");
}

#[tokio::test]
async fn an_unknown_batch_resolved_as_delivered_counts_sent_and_keeps_its_cap_slots() {
    let w = World::default();
    let (c, friends, month) = unknown_batch(&w, 3).await;
    let r = w.admin().resolve("u", true, NOW).await.unwrap();
    assert_eq!((r.batches, r.recipients, r.campaign.state), (1, 3, State::Done));
    let k = r.campaign.counters;
    assert_eq!((k.sent, k.unknown, k.failed), (3, 0, 0));
    let member = format!("{}~1", c.cap_member());
    assert!(friends.iter().all(|u| w.store.cap_set(u, &month) == vec![member.clone()]), "slots stay taken");
    assert_eq!(w.store.stored_batch(&c, 0).unwrap().state, BatchState::Sent);
}

#[tokio::test]
async fn settings_opt_outs_are_synced_without_undoing_an_opt_out_made_with_the_cli() {
    let w = World::default();
    let [a, b, c]: [String; 3] = users(3).try_into().unwrap();
    assert_eq!(w.admin().suppress(std::slice::from_ref(&a), true, "cli", NOW).await.unwrap(), vec![a.clone()]);
    let all = [a.clone(), b.clone(), c.clone()];
    let added = w.admin().sync_settings_opt_outs(&[], &all, NOW).await.unwrap();
    assert_eq!(added, vec![format!("+ suppress {b}"), format!("+ suppress {c}")], "a was opted out already");
    let dropped = w.admin().sync_settings_opt_outs(&all, std::slice::from_ref(&c), NOW).await.unwrap();
    assert_eq!(dropped, vec![format!("- suppress {b}")], "a was opted out with the cli: it stays out");
    let left = w.store.suppressed().await.unwrap();
    assert_eq!(left, vec![(a.clone(), "cli".to_string()), (c.clone(), "settings".to_string())]);
    // The cli takes back its own.
    assert_eq!(w.admin().suppress(std::slice::from_ref(&a), false, "cli", NOW).await.unwrap(), vec![a]);
    assert_eq!(w.store.suppressed().await.unwrap(), vec![(c, "settings".to_string())]);
}

#[tokio::test]
async fn a_test_push_goes_once_to_a_few_named_friends_outside_the_counters() {
    let w = World::default();
    w.store.insert(campaign("t", &[], false));
    let line = MemoryLine::default();
    let err = w.admin().test_push(&line, "t", &["nobody".to_string()]).await.unwrap_err();
    assert!(err.to_string().contains("is not a LINE user ID"), "{err}");
    for to in [vec![], users(21)] {
        let err = w.admin().test_push(&line, "t", &to).await.unwrap_err();
        assert_eq!(err.to_string(), "give 1-20 friends with --to", "{} friends", to.len());
    }
    assert!(line.calls().is_empty(), "nothing refused reached LINE");
    let two = users(2);
    assert_eq!(w.admin().test_push(&line, "t", &two).await.unwrap(), "req-0");
    assert!(two.iter().all(|u| line.received(u) == 1));
    assert_eq!(line.calls().len(), 1);
    let stored = w.store.campaign("t").unwrap();
    assert_eq!((stored.state, stored.counters), (State::Planning, Counters::default()));
    // LINE's refusal is what the person sees.
    line.script([Answer::Refuse(LineError::Unauthorized)]);
    let err = w.admin().test_push(&line, "t", &two).await.unwrap_err();
    assert!(matches!(err, AdminError::Line(LineError::Unauthorized)), "{err:?}");
}

/// `n` following friends tagged `dessert`, in the index and the store.
fn dessert_friends(w: &World, n: usize) -> (Vec<String>, MemoryIndex) {
    let friends = users(n);
    let facts = FriendFacts {
        blocked: false,
        followed_at_ms: Some(0),
        tags: HashMap::from([("dessert".to_string(), TagFacts { tagged_at_ms: 0, expires_at_ms: None })]),
    };
    let index = MemoryIndex::new(friends.iter().map(|u| (u.as_str(), &facts)));
    friends.iter().for_each(|u| w.store.add_friend(u, true, false));
    (friends, index)
}

#[tokio::test]
async fn a_preview_counts_who_gets_it_and_why_not_and_a_stored_campaign_keeps_its_preview() {
    let w = World::default();
    let (friends, index) = dessert_friends(&w, 5);
    w.store.add_friend(&friends[0], true, true);
    let line = MemoryLine::default();
    let text = source("sweets", "");
    let file = CampaignFile::parse(&text).unwrap();
    let p = w.admin().preview(Previewed::File(&file), &settings(), &index, &line, NOW).await.unwrap();
    let counts = (p["segment"].as_u64(), p["recipients"].as_u64(), p["skipped"]["suppressed"].as_u64());
    assert_eq!(counts, (Some(5), Some(4), Some(1)), "{p}");
    assert_eq!(p["holdout"], 0);
    assert_eq!(p["plan"], "tw-2023-medium");
    assert!(p["price"].is_object(), "{p}");
    assert_eq!(p["price"]["included"], 4, "within the plan's 3,000 included messages: {p}");
    assert!(w.store.campaign("sweets").is_none(), "a file's preview writes nothing");

    w.admin().create(&file, &text, false, NOW).await.unwrap();
    let stored = w.admin().preview(Previewed::Stored("sweets"), &settings(), &index, &line, NOW).await.unwrap();
    assert_eq!(stored["recipients"], 4);
    assert_eq!(w.store.campaign("sweets").unwrap().preview, Some(stored));
}

/// Campaign `r`, fully planned in three batches of one friend each, paused, its first `held`
/// batches held.
async fn three_batches(w: &World, held: u32) -> Campaign {
    let friends = users(3);
    friends.iter().for_each(|u| w.store.add_friend(u, true, false));
    let mut c = campaign("r", &[], false);
    w.store.insert(c.clone());
    for (i, u) in friends.iter().enumerate() {
        let page = PlannedPage { segment: 1, to: vec![u.clone()], ..PlannedPage::default() };
        let last = i == friends.len() - 1;
        let cursor = crate::segment::resolve::Cursor { shard: 0, after: Some(u.clone()) };
        assert!(w.store.commit_page(&c, &page, (!last).then_some(&cursor), NOW).await.unwrap());
        c.plan_page += 1;
    }
    assert!(w.store.transition("r", &c.run, &[State::Sending], State::Paused, Some("quota")).await.unwrap());
    for n in 0..held {
        assert!(w.store.lease(&c, n, "s1", NOW, NOW + 90_000).await.unwrap());
        let batch = w.store.batch(&c, n).await.unwrap().unwrap();
        assert!(w.store.hold(&c, &batch, "s1", false).await.unwrap());
    }
    assert_eq!(w.store.campaign("r").unwrap().counters.held, u64::from(held));
    w.store.campaign("r").unwrap()
}

#[tokio::test]
async fn a_resume_cut_short_is_finished_by_the_planner_from_the_plan_message_it_sent_first() {
    // The batch queue throttles the resume after one message.
    let w = World { batches: MemoryWorkQueue::refusing_after(1), ..World::default() };
    let c = three_batches(&w, 2).await;
    assert!(w.admin().resume("r", NOW).await.is_err(), "cut short");
    let requeue = PlanMessage { campaign: "r".into(), run: c.run.clone(), requeue_from: Some(0) };
    assert_eq!(w.plan_messages(), vec![requeue.clone(), requeue]);
    let stored = w.store.campaign("r").unwrap();
    // Batch 0 was queued, batch 1 taken back but not queued: nothing is held any more, and
    // nothing else would queue it (it is not the last batch either).
    assert_eq!((stored.state, stored.counters.held), (State::Sending, 0));
    // The planner takes the plan message and queues the rest.
    let batches = MemoryWorkQueue::default();
    let index = MemoryIndex::new(std::iter::empty());
    let planner = crate::campaign::plan::Planner {
        store: &w.store,
        caps: &w.store,
        index: &index,
        batches: &batches,
        plans: &w.plans,
        clock: &crate::ports::SystemClock,
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    assert!(matches!(
        planner.run(&w.plan_messages()[0], deadline).await.unwrap(),
        crate::campaign::plan::Planned::Finished { .. }
    ));
    assert_eq!(w.store.campaign("r").unwrap().counters.held, 0);
    let mut queued: Vec<u32> =
        batches.sent().iter().map(|(b, _)| serde_json::from_str::<BatchMessage>(b).unwrap().batch).collect();
    queued.dedup();
    assert!(queued.contains(&1), "the batch left unqueued is queued: {queued:?} (duplicates are harmless)");
    assert!((0..3).all(|n| w.store.stored_batch(&c, n).unwrap().state == BatchState::Planned));
}

#[tokio::test]
async fn a_requeue_stops_at_its_deadline_and_continues_from_where_it_stopped() {
    let w = World::default();
    let c = three_batches(&w, 3).await;
    assert!(w.store.transition("r", &c.run, &[State::Paused], State::Sending, None).await.unwrap());
    let past = tokio::time::Instant::now();
    let r = requeue(&w.store, &w.store, &w.batches, &c, 1, past, NOW).await.unwrap();
    assert_eq!(r, Requeued::Stopped { queued: 0, next: 1 });
    let later = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let r = requeue(&w.store, &w.store, &w.batches, &c, 1, later, NOW).await.unwrap();
    assert_eq!(r, Requeued::All { queued: 2 });
    assert_eq!(w.batch_messages().iter().map(|m| m.batch).collect::<Vec<_>>(), [1, 2], "from batch 1 on");
    assert_eq!(w.store.stored_batch(&c, 0).unwrap().state, BatchState::Held, "before it: untouched");
}

#[tokio::test]
async fn a_campaign_created_again_first_gives_back_what_its_cancelled_run_reserved_and_never_sent() {
    let w = World::default();
    let friends = users(3);
    friends.iter().for_each(|u| w.store.add_friend(u, true, false));
    let c = Campaign { caps: vec![Cap { per: Period::Month, max: 2 }], ..campaign("c", &[], false) };
    w.store.insert(c.clone());
    let page = PlannedPage { segment: 3, to: friends.clone(), ..PlannedPage::default() };
    assert!(w.store.commit_page(&c, &page, None, NOW).await.unwrap());
    // A sender reserved and froze the batch; LINE refused it (no call open); then it was cancelled.
    assert!(w.store.lease(&c, 0, "s1", NOW, NOW + 1).await.unwrap());
    let demand = Classifier::of(&c, NOW).demand;
    let planned = w.store.batch(&c, 0).await.unwrap().unwrap();
    assert!(w.store.begin_reserve(&c, &planned, "s1", &demand.attributes(), NOW).await.unwrap());
    for u in &friends {
        assert_eq!(w.store.reserve(u, &demand.generation(1), NOW).await.unwrap(), Reservation::Reserved);
    }
    assert!(w.store.freeze(&c, 0, "s1", &[true; 3], &Skips::default(), "key", NOW).await.unwrap());
    assert!(w.store.transition("c", &c.run, &[State::Sending], State::Cancelled, None).await.unwrap());
    // A sender at the batch right now (it may be about to reserve): the create waits for it.
    assert!(w.store.lease(&c, 0, "s2", NOW + 5, NOW + 1_000).await.unwrap());
    let busy = w.create("c", "", NOW + 10).await.unwrap_err();
    assert!(matches!(busy, AdminError::Busy { batch: 0, .. }), "{busy:?}");
    assert_eq!(w.store.campaign("c").unwrap().run, c.run, "nothing replaced");
    let again = w.create("c", "", NOW + 2_000).await.unwrap();
    assert_ne!(again.run, c.run);
    let caps = w.store.friend_caps(&friends, &Classifier::of(&again, NOW).demand).await.unwrap();
    assert!(caps.values().all(|f| f.sent.is_empty() && f.last_push.is_none()), "nobody counts as reached");
    assert!(friends.iter().all(|u| w.store.cap_set(u, &demand.attributes()[0]).is_empty()), "nor holds a slot");
}

#[tokio::test]
async fn a_campaign_created_again_gives_back_what_a_resolve_cut_short_left_reserved() {
    let w = World::default();
    let friend = users(1).remove(0);
    w.store.add_friend(&friend, true, false);
    let mut c = campaign("cut", &[], false);
    c.run = "old-run".into();
    w.store.insert(c.clone());
    let page = PlannedPage { segment: 1, to: vec![friend.clone()], holdout: vec![], skipped: Skips::default() };
    assert!(w.store.commit_page(&c, &page, None, NOW).await.unwrap());
    let c = w.store.campaign("cut").unwrap();
    assert!(w.store.lease(&c, 0, "s", NOW, NOW + 60_000).await.unwrap());
    let batch = w.store.batch(&c, 0).await.unwrap().unwrap();
    let classifier = Classifier::of(&c, NOW);
    assert!(w.store.begin_reserve(&c, &batch, "s", &classifier.demand.attributes(), NOW).await.unwrap());
    let demand = classifier.demand.generation(1);
    assert_eq!(w.store.reserve(&friend, &demand, NOW).await.unwrap(), Reservation::Reserved);
    assert!(w.store.freeze(&c, 0, "s", &[true], &Skips::default(), "key", NOW).await.unwrap());
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
    // Resolved as not delivered; the command stopped before giving the slot back; then cancelled.
    let batch = w.store.batch(&c, 0).await.unwrap().unwrap();
    assert!(w.store.resolve_unknown(&c, &batch, false, NOW).await.unwrap());
    let any = [State::Planning, State::Sending, State::NeedsAttention];
    assert!(w.store.transition("cut", &c.run, &any, State::Cancelled, None).await.unwrap());
    assert!(w.store.batch(&c, 0).await.unwrap().unwrap().slots_to_give_back());
    w.create("cut", "", NOW + 1_000).await.unwrap();
    assert!(!w.store.batch(&c, 0).await.unwrap().unwrap().slots_to_give_back(), "given back");
    let caps = w.store.friend_caps(std::slice::from_ref(&friend), &demand).await.unwrap();
    assert!(caps[&friend].last_push.is_none() && caps[&friend].sent.is_empty(), "{:?}", caps[&friend]);
}
