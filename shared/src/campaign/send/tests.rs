//! The sender against the in-memory ports: every fault of the money path, in milliseconds.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::*;
use crate::adapters::memory::campaigns::{campaign, MemoryCampaigns};
use crate::adapters::memory::line::{Answer, MemoryLine};
use crate::adapters::memory::queue::MemoryWorkQueue as MemoryQueue;
use crate::adapters::memory::schedule::MemoryPacer;
use crate::campaign::file::{Cap, Period};
use crate::campaign::model::PlannedPage;
use crate::campaign::ports::{BatchRepo, CampaignRepo, OptOuts};

const DAY_MS: i64 = 24 * 3600 * 1000;

struct TestClock(AtomicI64);
impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct World {
    store: MemoryCampaigns,
    line: MemoryLine,
    clock: Arc<TestClock>,
    failpoint: Mutex<Option<Failpoint>>,
    pacer: MemoryPacer,
    plans: MemoryQueue,
    billed: std::sync::atomic::AtomicU64,
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("U{i:032x}")).collect()
}

impl World {
    fn new(friends: &[String]) -> Self {
        let store = MemoryCampaigns::default();
        friends.iter().for_each(|u| store.add_friend(u, true, false));
        // 2026-11-15T00:00Z
        let clock = Arc::new(TestClock(AtomicI64::new(1_794_700_800_000)));
        World {
            store,
            line: MemoryLine::with_clock(clock.clone()),
            clock,
            failpoint: Mutex::new(None),
            pacer: MemoryPacer::default(),
            plans: MemoryQueue::default(),
            billed: Default::default(),
        }
    }

    fn sender(&self, owner: &str) -> Sender<'_> {
        Sender {
            store: &self.store,
            caps: &self.store,
            line: &self.line,
            clock: &*self.clock,
            owner: owner.into(),
            lease: Duration::from_secs(90),
            attempts: 4,
            backoff: Duration::from_millis(1),
            failpoint: &self.failpoint,
            pacer: &self.pacer,
            plans: &self.plans,
            billed: &self.billed,
        }
    }

    /// A planning campaign with one batch of `to`, fully planned.
    async fn campaign(&self, id: &str, max_per_month: Option<u32>, to: &[String]) -> Campaign {
        self.campaign_with(id, max_per_month, to, |_| {}).await
    }

    /// The same, its policy (or more) changed first.
    async fn campaign_with(
        &self,
        id: &str,
        max_per_month: Option<u32>,
        to: &[String],
        change: impl FnOnce(&mut Campaign),
    ) -> Campaign {
        let caps: Vec<Cap> = max_per_month.map(|max| Cap { per: Period::Month, max }).into_iter().collect();
        let mut c = campaign(id, &caps, false);
        change(&mut c);
        self.store.insert(c.clone());
        let page = PlannedPage { segment: to.len() as u64, to: to.to_vec(), ..PlannedPage::default() };
        assert!(self.store.commit_page(&c, &page, None, 0).await.unwrap());
        self.store.campaign(id).unwrap()
    }

    async fn send(&self, c: &Campaign, owner: &str) -> Result<Sent, Retry> {
        self.sender(owner).send(&BatchMessage { campaign: c.id.clone(), run: c.run.clone(), batch: 0 }).await
    }

    fn month(&self) -> String {
        let at = Timestamp::from_millisecond(self.clock.now_ms()).unwrap();
        period_attribute(Period::Month, at, &Zone::default())
    }

    fn counters(&self, id: &str) -> crate::campaign::model::Counters {
        let c = self.store.campaign(id).unwrap();
        assert!(c.counters.problems(c.plan_done).is_empty(), "{:?}", c.counters);
        c.counters
    }
}

fn server_error() -> Answer {
    Answer::Refuse(LineError::Server { status: 500, request_id: None })
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retried_with_one_key_and_one_body() {
    let friends = users(3);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(2), &friends).await;
    w.line.script([server_error(), Answer::Refuse(LineError::RateLimited)]);
    assert_eq!(w.send(&c, "s1").await.unwrap(), Sent::Sent { recipients: 3 });
    let calls = w.line.calls();
    assert_eq!(calls.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(), ["serverError", "rateLimited", "200"]);
    assert!(calls.iter().all(|c| c.0 == calls[0].0), "one retry key: {calls:?}");
    assert!(friends.iter().all(|u| w.line.received(u) == 1));
    assert_eq!(w.counters("a").sent, 3);
    assert_eq!(w.store.campaign("a").unwrap().state, State::Done);
}

#[tokio::test]
async fn delivered_without_an_answer_is_settled_by_the_409_of_the_retry() {
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign("a", None, &friends).await;
    w.line.script([Answer::DeliverThenTimeOut]);
    assert_eq!(w.send(&c, "s1").await.unwrap(), Sent::Sent { recipients: 2 });
    let outcomes: Vec<String> = w.line.calls().into_iter().map(|c| c.1).collect();
    assert_eq!(outcomes, ["deliveredThenTimedOut", "409"]);
    assert!(friends.iter().all(|u| w.line.received(u) == 1));
    assert_eq!(w.store.stored_batch(&c, 0).unwrap().request_id.as_deref(), Some("req-0"), "the accepted request id");
    assert_eq!(w.billed.load(std::sync::atomic::Ordering::SeqCst), 2, "billed once: the timed-out call and its 409");
    // The message again: settled already, nothing more counted.
    assert_eq!(w.send(&c, "s2").await.unwrap(), Sent::Duplicate);
    assert_eq!(w.billed.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_monthly_limit_pauses_holds_and_gives_the_slots_back() {
    let friends = users(3);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(1), &friends).await;
    w.line.set_quota(Some(0));
    w.line.script([Answer::Refuse(LineError::MonthlyLimit)]);
    assert!(matches!(w.send(&c, "s1").await.unwrap(), Sent::Held(_)));
    let stored = w.store.campaign("a").unwrap();
    assert_eq!(stored.state, State::Paused);
    assert!(stored.reason.unwrap().starts_with("quota"));
    assert_eq!(w.line.calls().len(), 1, "not retried");
    assert_eq!(w.counters("a").held, 3);
    assert!(friends.iter().all(|u| w.store.cap_set(u, &w.month()).is_empty()));
    let b = w.store.stored_batch(&c, 0).unwrap();
    assert_eq!((b.state, b.held_from, b.retry_key), (BatchState::Held, Some(BatchState::Planned), None));
}

#[tokio::test]
async fn a_dead_token_pauses_the_campaign_with_lines_words() {
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(2), &friends).await;
    w.line.script([Answer::Refuse(LineError::Unauthorized)]);
    assert!(matches!(w.send(&c, "s1").await.unwrap(), Sent::Held(_)));
    let stored = w.store.campaign("a").unwrap();
    assert_eq!(stored.state, State::Paused);
    assert!(stored.reason.unwrap().contains("401"));
}

#[tokio::test]
async fn a_batch_line_refuses_alone_fails_and_gives_its_slots_back_unless_an_earlier_try_may_have_gone() {
    let to_refused = || {
        Answer::Refuse(LineError::Rejected {
            status: 400,
            message: "Invalid user ID".into(),
            property: Some("to[1]".into()),
            request_id: None,
        })
    };
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(2), &friends).await;
    w.line.script([to_refused()]);
    assert!(matches!(w.send(&c, "s1").await.unwrap(), Sent::Failed(_)));
    assert_eq!((w.counters("a").failed, w.store.campaign("a").unwrap().state), (2, State::Done));
    assert!(friends.iter().all(|u| w.store.cap_set(u, &w.month()).is_empty()));

    let w = World::new(&friends);
    let c = w.campaign("a", Some(2), &friends).await;
    w.line.script([Answer::Refuse(LineError::Timeout(Duration::from_secs(10))), to_refused()]);
    assert!(matches!(w.send(&c, "s1").await.unwrap(), Sent::Failed(_)));
    assert!(friends.iter().all(|u| w.store.cap_set(u, &w.month()).len() == 1), "the timed-out try may have gone");
}

#[tokio::test]
async fn a_sender_dying_after_line_took_the_batch_leaves_it_to_the_lease_and_the_key() {
    let friends = users(3);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(2), &friends).await;
    *w.failpoint.lock().unwrap() = Some(Failpoint::DieAfterLineAccepted);
    assert!(matches!(w.send(&c, "s1").await, Err(Retry::Died)));
    assert!(matches!(w.send(&c, "s2").await, Err(Retry::Leased)), "the dead sender's lease holds");
    w.clock.0.fetch_add(91_000, Ordering::SeqCst);
    assert_eq!(w.send(&c, "s3").await.unwrap(), Sent::Sent { recipients: 3 });
    let outcomes: Vec<String> = w.line.calls().into_iter().map(|c| c.1).collect();
    assert_eq!(outcomes, ["200", "409"]);
    assert!(friends.iter().all(|u| w.line.received(u) == 1));
    assert_eq!(w.send(&c, "s4").await.unwrap(), Sent::Duplicate);
    assert_eq!(w.counters("a").sent, 3);
    // LINE's 200 and the 409 are one batch: billed once, by the sender that settled it.
    assert_eq!(w.billed.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_paused_campaign_holds_its_batch_and_a_batch_line_may_have_taken_stays_frozen() {
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(2), &friends).await;
    *w.failpoint.lock().unwrap() = Some(Failpoint::DieAfterLineAccepted);
    assert!(matches!(w.send(&c, "s1").await, Err(Retry::Died)));
    assert!(w.store.transition("a", &c.run, &[State::Sending], State::Paused, Some("a person")).await.unwrap());
    w.clock.0.fetch_add(91_000, Ordering::SeqCst);
    assert!(matches!(w.send(&c, "s2").await.unwrap(), Sent::Held(_)));
    let b = w.store.stored_batch(&c, 0).unwrap();
    assert_eq!((b.state, b.held_from), (BatchState::Held, Some(BatchState::Frozen)));
    assert!(b.retry_key.is_some(), "the key LINE may have taken is kept");
    assert!(friends.iter().all(|u| w.store.cap_set(u, &w.month()).len() == 1), "and the slots");
    assert_eq!(w.line.calls().len(), 1, "nothing more went to LINE");
}

#[tokio::test]
async fn two_campaigns_racing_for_the_last_slot_push_each_friend_once() {
    let friends = users(4);
    let w = World::new(&friends);
    let a = w.campaign("a", Some(1), &friends).await;
    let b = w.campaign("b", Some(1), &friends).await;
    let (ra, rb) = tokio::join!(w.send(&a, "s1"), w.send(&b, "s2"));
    let sent = |r: Sent| match r {
        Sent::Sent { recipients } => recipients,
        _ => 0,
    };
    assert_eq!(sent(ra.unwrap()) + sent(rb.unwrap()), 4);
    assert!(friends.iter().all(|u| w.line.received(u) == 1));
    assert_eq!(w.counters("a").skipped.cap + w.counters("b").skipped.cap, 4);
    // A retry of a settled batch does nothing, a retry before settling finds its own slot.
    assert_eq!(w.send(&a, "s3").await.unwrap(), Sent::Duplicate);
}

#[tokio::test]
async fn a_batch_first_called_over_23_hours_ago_is_never_sent_again_and_needs_attention() {
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(2), &friends).await;
    w.line.script((0..4).map(|_| server_error()));
    assert!(matches!(w.send(&c, "s1").await, Err(Retry::Line(_))));
    w.clock.0.fetch_add(DAY_MS, Ordering::SeqCst);
    assert_eq!(w.send(&c, "s2").await.unwrap(), Sent::Unknown);
    assert_eq!(w.line.calls().len(), 4, "no fifth call");
    assert_eq!(w.counters("a").unknown, 2);
    assert_eq!(w.store.campaign("a").unwrap().state, State::NeedsAttention);
}

#[tokio::test]
async fn a_batch_held_at_the_monthly_limit_is_sent_when_resumed_next_month_not_taken_for_unknown() {
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(2), &friends).await;
    w.line.set_quota(Some(0));
    w.line.script([Answer::Refuse(LineError::MonthlyLimit)]);
    assert!(matches!(w.send(&c, "s1").await.unwrap(), Sent::Held(_)));
    let b = w.store.stored_batch(&c, 0).unwrap();
    assert_eq!((b.first_called_at_ms, b.call_open), (None, false), "LINE refused it: no call is open");
    w.clock.0.fetch_add(20 * DAY_MS, Ordering::SeqCst);
    assert!(w.store.unhold(&c, 0));
    assert_eq!(w.send(&c, "s2").await.unwrap(), Sent::Sent { recipients: 2 });
    assert!(friends.iter().all(|u| w.line.received(u) == 1));
    assert!(friends.iter().all(|u| w.store.cap_set(u, &w.month()).len() == 1), "reserved in the new month");
}

#[tokio::test]
async fn a_batch_that_was_only_rate_limited_is_surely_not_taken_and_gives_its_slots_back_on_a_401() {
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(2), &friends).await;
    w.line.script((0..4).map(|_| Answer::Refuse(LineError::RateLimited)));
    assert!(matches!(w.send(&c, "s1").await, Err(Retry::Line(LineError::RateLimited))));
    w.line.script([Answer::Refuse(LineError::Unauthorized)]);
    assert!(matches!(w.send(&c, "s2").await.unwrap(), Sent::Held(_)));
    let b = w.store.stored_batch(&c, 0).unwrap();
    assert_eq!((b.held_from, b.retry_key), (Some(BatchState::Planned), None), "unfrozen");
    assert!(friends.iter().all(|u| w.store.cap_set(u, &w.month()).is_empty()));
}

#[tokio::test]
async fn a_release_cut_short_is_finished_by_the_next_delivery() {
    let friends = users(3);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(2), &friends).await;
    w.line.set_quota(Some(0));
    w.line.script([Answer::Refuse(LineError::MonthlyLimit)]);
    w.store.fail_releases.store(1, Ordering::SeqCst);
    assert!(matches!(w.send(&c, "s1").await, Err(Retry::Backend(_))));
    assert!(!w.store.unhold(&c, 0), "resume waits for the slots");
    assert_eq!(w.send(&c, "s2").await.unwrap(), Sent::Duplicate);
    assert!(friends.iter().all(|u| w.store.cap_set(u, &w.month()).is_empty()));
    assert!(w.store.stored_batch(&c, 0).unwrap().cap_attrs.is_empty());
    assert!(w.store.unhold(&c, 0));
}

/// Pauses the campaign during its first call (a person pressing pause while the sender backs
/// off), which LINE rate-limits.
struct PausedDuringTheCall<'a> {
    world: &'a World,
    run: String,
}
#[async_trait::async_trait]
impl Multicaster for PausedDuringTheCall<'_> {
    async fn month(&self) -> Result<crate::campaign::price::Month, LineError> {
        self.world.line.month().await
    }

    async fn multicast(
        &self,
        to: &[&str],
        messages: &[serde_json::Value],
        key: &str,
        unit: Option<&str>,
    ) -> Result<crate::line::answer::Accepted, LineError> {
        if self.world.line.calls().is_empty() {
            let paused = self.world.store.transition("a", &self.run, &[State::Sending], State::Paused, None);
            assert!(paused.await.unwrap());
            self.world.line.script([Answer::Refuse(LineError::RateLimited)]);
        }
        self.world.line.multicast(to, messages, key, unit).await
    }
}

#[tokio::test]
async fn a_pause_while_the_sender_backs_off_holds_the_batch_before_the_next_call() {
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(2), &friends).await;
    let line = PausedDuringTheCall { world: &w, run: c.run.clone() };
    let sender = Sender { line: &line, ..w.sender("s1") };
    let sent = sender.send(&BatchMessage { campaign: "a".into(), run: c.run.clone(), batch: 0 }).await.unwrap();
    assert!(matches!(sent, Sent::Held(_)), "{sent:?}");
    assert_eq!(w.line.calls().len(), 1, "no call after the pause");
    assert!(friends.iter().all(|u| w.line.received(u) == 0));
}

#[tokio::test]
async fn a_batch_settles_once_whoever_else_tries() {
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(2), &friends).await;
    assert_eq!(w.send(&c, "s1").await.unwrap(), Sent::Sent { recipients: 2 });
    // A sender that lost its lease settles late with what it saw: refused, counted once.
    let mut stale = w.store.stored_batch(&c, 0).unwrap();
    stale.state = BatchState::Frozen;
    let outcome = Settlement { sent: 2, ..settlement(BatchState::Sent, 2, None, None) };
    assert!(!w.store.settle(&c, &stale, "s1", &outcome, 0).await.unwrap());
    assert_eq!(w.counters("a").sent, 2);
}

#[tokio::test]
async fn a_429_is_the_monthly_limit_when_line_says_so_or_its_quota_endpoints_do() {
    let friends = users(2);
    let w = World::new(&friends);
    // LINE's words say "monthly limit" while its usage lags (the quota shows room): LINE's own
    // refusal decides, and the campaign pauses on the quota.
    let c = w.campaign("a", Some(2), &friends).await;
    w.line.set_quota(Some(1_000));
    w.line.script([Answer::Refuse(LineError::MonthlyLimit)]);
    assert!(matches!(w.send(&c, "s1").await.unwrap(), Sent::Held(_)));
    let stored = w.store.campaign("a").unwrap();
    assert_eq!(stored.state, State::Paused);
    assert!(stored.reason.unwrap().starts_with("quota"));
    assert_eq!(w.line.received(&friends[0]), 0);
    // Its words say "rate limit", the month is used up: the quota endpoints decide, it pauses.
    let c = w.campaign("b", None, &friends).await;
    w.line.set_quota(Some(1));
    w.line.script([Answer::Refuse(LineError::RateLimited)]);
    assert!(matches!(w.send(&c, "s2").await.unwrap(), Sent::Held(_)));
    let stored = w.store.campaign("b").unwrap();
    assert_eq!(stored.state, State::Paused);
    assert!(stored.reason.unwrap().starts_with("quota"));
    // A rate limit with room in the month: retried, and the fleet slows down.
    let c = w.campaign("c", None, &friends).await;
    w.line.set_quota(None);
    w.line.script([Answer::Refuse(LineError::RateLimited)]);
    assert_eq!(w.send(&c, "s3").await.unwrap(), Sent::Sent { recipients: 2 });
    assert!(w.pacer.state().cut.is_some(), "the fleet slowed down");
}

#[tokio::test]
async fn a_friend_pushed_within_the_minimum_gap_is_skipped_and_a_held_push_gives_the_gap_back() {
    let friends = users(2);
    let w = World::new(&friends);
    let gap = |c: &mut Campaign| c.policy.min_gap_ms = 3 * DAY_MS;
    let a = w.campaign_with("a", Some(4), &friends[..1], gap).await;
    assert_eq!(w.send(&a, "s1").await.unwrap(), Sent::Sent { recipients: 1 });
    // Two days later, across the month boundary the caps alone would allow: not again.
    w.clock.0.fetch_add(2 * DAY_MS, Ordering::SeqCst);
    let b = w.campaign_with("b", Some(4), &friends, gap).await;
    assert_eq!(w.send(&b, "s2").await.unwrap(), Sent::Sent { recipients: 1 });
    assert_eq!(w.counters("b").skipped.cap, 1, "within 3 days of the last push");
    assert_eq!(w.line.received(&friends[0]), 1);
    // A push LINE never took gives the friend's gap back.
    w.clock.0.fetch_add(4 * DAY_MS, Ordering::SeqCst);
    let c = w.campaign_with("c", Some(4), &friends, gap).await;
    w.line.script([Answer::Refuse(LineError::Unauthorized)]);
    assert!(matches!(w.send(&c, "s3").await.unwrap(), Sent::Held(_)));
    w.clock.0.fetch_add(DAY_MS, Ordering::SeqCst);
    let d = w.campaign_with("d", Some(4), &friends, gap).await;
    assert_eq!(w.send(&d, "s4").await.unwrap(), Sent::Sent { recipients: 2 }, "the held push is forgotten");
}

#[tokio::test]
async fn the_account_budget_holds_across_campaigns_and_the_campaign_that_would_pass_it_pauses() {
    let friends = users(6);
    let w = World::new(&friends);
    let budget = |c: &mut Campaign| c.policy.monthly_budget = Some(5);
    let a = w.campaign_with("a", None, &friends[..3], budget).await;
    assert_eq!(w.send(&a, "s1").await.unwrap(), Sent::Sent { recipients: 3 });
    let b = w.campaign_with("b", None, &friends[3..], budget).await;
    assert!(matches!(w.send(&b, "s2").await.unwrap(), Sent::Held(r) if r.starts_with("budget")));
    assert_eq!(w.store.campaign("b").unwrap().state, State::Paused);
    assert_eq!(w.store.budget_used("m2026-11"), 3, "the refused batch took nothing");
    assert!(friends[3..].iter().all(|u| w.line.received(u) == 0));
    assert!(friends[3..].iter().all(|u| w.store.cap_set(u, &w.month()).is_empty()));
}

#[tokio::test]
async fn quiet_hours_pause_the_campaign_and_the_planner_resumes_it_when_they_end() {
    let friends = users(2);
    let w = World::new(&friends); // 2026-11-15T00:00Z: inside 22:00-06:00 UTC
    let quiet =
        |c: &mut Campaign| c.policy.quiet_hours = Some(crate::rules::window::Hours::parse("22:00-06:00").unwrap());
    let c = w.campaign_with("a", Some(2), &friends, quiet).await;
    let sent = w.send(&c, "s1").await.unwrap();
    assert!(matches!(&sent, Sent::Held(r) if r.starts_with("quiet hours")), "{sent:?}");
    let paused = w.store.campaign("a").unwrap();
    let six = 1_794_700_800_000 + 6 * 3600 * 1000;
    assert_eq!((paused.state, paused.resume_at_ms), (State::Paused, Some(six)));
    assert_eq!(w.plans.sent().iter().map(|(_, d)| *d).collect::<Vec<_>>(), [900], "looks again in 15 min");
    assert!(friends.iter().all(|u| w.line.received(u) == 0 && w.store.cap_set(u, &w.month()).is_empty()));
    let batches = MemoryQueue::default();
    let index = crate::adapters::memory::segment::MemoryIndex::new(std::iter::empty());
    let planner = crate::campaign::plan::Planner {
        store: &w.store,
        caps: &w.store,
        index: &index,
        batches: &batches,
        plans: &w.plans,
        clock: &*w.clock,
    };
    let message = crate::campaign::model::PlanMessage { campaign: "a".into(), run: c.run.clone(), requeue_from: None };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // Still quiet: the planner looks again later.
    w.clock.0.fetch_add(5 * 3600 * 1000, Ordering::SeqCst);
    planner.run(&message, deadline).await.unwrap();
    assert_eq!(w.store.campaign("a").unwrap().state, State::Paused);
    assert!(batches.sent().is_empty());
    // Quiet hours over: resumed, the held batch queued again, and it goes out once.
    w.clock.0.fetch_add(3600 * 1000, Ordering::SeqCst);
    planner.run(&message, deadline).await.unwrap();
    let queued: std::collections::BTreeSet<String> = batches.sent().into_iter().map(|(b, _)| b).collect();
    assert_eq!(queued.len(), 1, "the held batch (duplicates are harmless)");
    assert_eq!(w.send(&c, "s2").await.unwrap(), Sent::Sent { recipients: 2 });
    assert!(friends.iter().all(|u| w.line.received(u) == 1));
    assert_eq!(w.store.campaign("a").unwrap().state, State::Done);
}

/// The time `at` (RFC 3339) in ms.
fn at(text: &str) -> i64 {
    text.parse::<Timestamp>().unwrap().as_millisecond()
}

/// Another campaign's reservation of `user`, in `zone`, at the clock's time.
async fn pushed_by_another(w: &World, member: &str, user: &str, zone: &str) {
    let zone = Zone::parse(zone).unwrap();
    let now = w.clock.now_ms();
    let other = Demand::new(member.into(), &[Cap { per: Period::Month, max: 2 }], &zone, false, 0, now);
    assert_eq!(w.store.reserve(user, &other, now).await.unwrap(), Reservation::Reserved);
}

#[tokio::test]
async fn a_frozen_batch_refused_by_429s_is_decided_again_in_the_month_it_goes_out() {
    let friends = users(3);
    let w = World::new(&friends);
    // 23:00 on 30 November in Taipei.
    w.clock.0.store(at("2026-11-30T15:00:00Z"), Ordering::SeqCst);
    let c = w.campaign_with("a", Some(2), &friends, |c| c.timezone = "Asia/Taipei".into()).await;
    w.line.script((0..4).map(|_| Answer::Refuse(LineError::RateLimited)));
    assert!(matches!(w.send(&c, "s1").await, Err(Retry::Line(LineError::RateLimited))));
    let frozen = w.store.stored_batch(&c, 0).unwrap();
    assert_eq!(
        (frozen.state, frozen.call_open, frozen.frozen.clone()),
        (BatchState::Frozen, false, Some(vec![true; 3]))
    );
    assert!(friends.iter().all(|u| w.store.cap_set(u, "cap#m2026-11").len() == 1), "reserved in November");
    let november_key = w.line.calls()[0].0.clone();
    // Since the freeze: friend 0 opted out, friend 1 got two December pushes from other campaigns.
    assert!(w.store.suppress(&friends[0], true, "cli", w.clock.now_ms()).await.unwrap());
    w.clock.0.store(at("2026-12-03T02:00:00Z"), Ordering::SeqCst);
    for other in ["x~1", "y~1"] {
        pushed_by_another(&w, other, &friends[1], "Asia/Taipei").await;
    }
    assert_eq!(w.send(&c, "s2").await.unwrap(), Sent::Sent { recipients: 1 });
    assert_eq!(friends.iter().map(|u| w.line.received(u)).collect::<Vec<_>>(), [0, 0, 1]);
    let calls = w.line.calls();
    let last = calls.last().unwrap();
    assert_eq!(last.1, "200");
    assert_ne!(last.0, november_key, "a new retry key");
    assert!(friends.iter().all(|u| w.store.cap_set(u, "cap#m2026-11").is_empty()), "November's slots given back");
    assert_eq!(w.store.cap_set(&friends[2], "cap#m2026-12").len(), 1, "a December slot");
    let k = w.counters("a");
    assert_eq!((k.sent, k.skipped.suppressed, k.skipped.cap, k.planned), (1, 1, 1, 3));
    assert_eq!(w.store.campaign("a").unwrap().state, State::Done);
}

#[tokio::test]
async fn a_push_line_takes_long_after_its_reservation_is_the_last_push_from_then() {
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign_with("a", None, &friends, |c| c.policy.min_gap_ms = DAY_MS).await;
    let reserved_at = w.clock.now_ms();
    // The first call may have been taken (a 500): the batch keeps its body and key.
    w.line.script((0..4).map(|_| server_error()));
    assert!(matches!(w.send(&c, "s1").await, Err(Retry::Line(LineError::Server { .. }))));
    w.clock.0.fetch_add(2 * 3_600_000, Ordering::SeqCst);
    assert_eq!(w.send(&c, "s2").await.unwrap(), Sent::Sent { recipients: 2 });
    let demand = Classifier::of(&c, reserved_at).demand;
    let caps = w.store.friend_caps(&friends, &demand).await.unwrap();
    for u in &friends {
        assert_eq!(caps[u].last_push.as_ref().map(|p| p.0), Some(w.clock.now_ms()), "the time LINE took it");
    }
    assert!(caps.values().all(|f| f.last_push.as_ref().is_some_and(|p| p.0 != reserved_at)));
}

#[tokio::test]
async fn a_settle_whose_answer_was_lost_finishes_the_campaign_on_the_redelivery() {
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign("a", None, &friends).await;
    w.store.lose_settle_answers.store(1, Ordering::SeqCst);
    assert!(matches!(w.send(&c, "s1").await, Err(Retry::Backend(_))));
    assert_eq!(w.store.stored_batch(&c, 0).unwrap().state, BatchState::Sent, "the settle committed");
    assert_eq!(w.store.campaign("a").unwrap().state, State::Sending, "its answer was lost");
    assert_eq!(w.send(&c, "s2").await.unwrap(), Sent::Duplicate);
    assert_eq!(w.store.campaign("a").unwrap().state, State::Done);
    assert!(friends.iter().all(|u| w.line.received(u) == 1));
}

#[tokio::test]
async fn a_reservation_cut_short_by_a_storage_error_is_given_back_by_whoever_comes_next() {
    let friends = users(4);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(1), &friends).await;
    w.store.fail_reservation_at.store(3, Ordering::SeqCst);
    // (The sender's own give-back of the cut-short round fails too.)
    w.store.fail_releases.store(4, Ordering::SeqCst);
    assert!(matches!(w.send(&c, "s1").await, Err(Retry::Backend(_))));
    let reserved = friends.iter().filter(|u| !w.store.cap_set(u, &w.month()).is_empty()).count();
    assert!(reserved >= 2, "reservations were made before the error: {reserved}");
    // A person pauses the campaign: the next delivery holds the planned batch and gives back
    // what the cut-short round reserved.
    assert!(w.store.transition("a", &c.run, &[State::Sending], State::Paused, None).await.unwrap());
    assert!(matches!(w.send(&c, "s2").await.unwrap(), Sent::Held(_)));
    assert!(friends.iter().all(|u| w.store.cap_set(u, &w.month()).is_empty()), "every slot given back");
    let demand = Classifier::of(&c, w.clock.now_ms()).demand;
    let caps = w.store.friend_caps(&friends, &demand).await.unwrap();
    assert!(caps.values().all(|f| f.last_push.is_none() && f.sent.is_empty()), "and every last push and mark");
    assert!(w.store.unhold(&c, 0), "resume finds nothing left to give back");
    // Sending again: a friend who opted out in between is not left holding a slot either.
    assert!(w.store.suppress(&friends[0], true, "cli", w.clock.now_ms()).await.unwrap());
    assert_eq!(w.send(&c, "s3").await.unwrap(), Sent::Sent { recipients: 3 });
    assert!(w.store.cap_set(&friends[0], &w.month()).is_empty());
}

#[tokio::test]
async fn a_batch_of_a_replaced_run_gives_back_what_it_reserved() {
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(1), &friends).await;
    w.line.script((0..4).map(|_| Answer::Refuse(LineError::RateLimited)));
    assert!(matches!(w.send(&c, "s1").await, Err(Retry::Line(_))));
    assert!(friends.iter().all(|u| w.store.cap_set(u, &w.month()).len() == 1));
    // Cancelled and created again (a new run) before the batch came back.
    w.store.insert(Campaign { run: "a-run-2".into(), state: State::Draft, ..c.clone() });
    assert_eq!(w.send(&c, "s2").await.unwrap(), Sent::Duplicate);
    assert!(friends.iter().all(|u| w.store.cap_set(u, &w.month()).is_empty()), "its slots are free again");
    assert!(!w.store.stored_batch(&c, 0).unwrap().reserved);
}

#[tokio::test]
async fn a_stale_give_back_after_a_resume_leaves_the_new_rounds_reservations() {
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign_with("a", Some(1), &friends, |c| c.policy.monthly_budget = Some(10)).await;
    w.line.set_quota(Some(0));
    w.line.script([Answer::Refuse(LineError::MonthlyLimit)]);
    w.store.fail_releases.store(1, Ordering::SeqCst);
    // Held at the monthly limit; its give-back was cut short by a storage error.
    assert!(matches!(w.send(&c, "s1").await, Err(Retry::Backend(_))));
    let stale = w.store.stored_batch(&c, 0).unwrap();
    assert!(stale.slots_to_give_back());
    // The resume gives it back and the batch goes out in a new round.
    w.line.set_quota(None);
    assert!(w.store.transition("a", &c.run, &[State::Paused], State::Sending, None).await.unwrap());
    let ok = MemoryQueue::default();
    let requeued = crate::campaign::resume::requeue(
        &w.store,
        &w.store,
        &ok,
        &c,
        0,
        tokio::time::Instant::now() + Duration::from_secs(10),
        w.clock.now_ms(),
    );
    assert!(matches!(requeued.await.unwrap(), crate::campaign::resume::Requeued::All { queued: 1 }));
    assert_eq!(w.send(&c, "s2").await.unwrap(), Sent::Sent { recipients: 2 });
    let month = w.month();
    let budget_month = month.replacen("cap#", "", 1);
    assert_eq!(w.store.budget_used(&budget_month), 2);
    // The duplicate delivery that read the batch before the resume finishes its give-back now.
    give_back(&w.store, &w.store, &c, &stale, w.clock.now_ms()).await.unwrap();
    let member = format!("{}~2", c.cap_member());
    assert!(friends.iter().all(|u| w.store.cap_set(u, &month) == vec![member.clone()]), "round 2's slots stay");
    assert_eq!(w.store.budget_used(&budget_month), 2, "and its budget take");
}

#[tokio::test]
async fn a_batch_line_may_have_taken_in_november_counts_in_novembers_budget_when_its_409_comes_in_december() {
    let friends = users(3);
    let w = World::new(&friends);
    w.clock.0.store(at("2026-11-30T23:59:00Z"), Ordering::SeqCst);
    let c = w.campaign_with("a", None, &friends, |c| c.policy.monthly_budget = Some(100)).await;
    // LINE took it just before midnight and the answer never came; this invocation tries once.
    w.line.script([Answer::DeliverThenTimeOut]);
    let once = Sender { attempts: 1, ..w.sender("s1") };
    let message = BatchMessage { campaign: "a".into(), run: c.run.clone(), batch: 0 };
    assert!(matches!(once.send(&message).await, Err(Retry::Line(LineError::Timeout(_)))));
    w.clock.0.store(at("2026-12-01T00:05:00Z"), Ordering::SeqCst);
    assert_eq!(w.send(&c, "s2").await.unwrap(), Sent::Sent { recipients: 3 });
    assert_eq!(w.line.calls().last().unwrap().1, "409");
    assert_eq!((w.store.budget_used("m2026-11"), w.store.budget_used("m2026-12")), (3, 0));
    assert!(friends.iter().all(|u| w.line.received(u) == 1));
}

#[tokio::test]
async fn a_round_cut_short_by_a_storage_error_is_given_back_by_its_own_sender_at_once() {
    let friends = users(4);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(1), &friends).await;
    w.store.fail_reservation_at.store(3, Ordering::SeqCst);
    assert!(matches!(w.send(&c, "s1").await, Err(Retry::Backend(_))));
    assert!(friends.iter().all(|u| w.store.cap_set(u, &w.month()).is_empty()), "nothing left reserved");
    assert_eq!(w.send(&c, "s2").await.unwrap(), Sent::Sent { recipients: 4 });
    assert!(friends.iter().all(|u| w.store.cap_set(u, &w.month()).len() == 1));
}

#[tokio::test]
async fn a_call_that_never_connected_is_surely_not_taken_and_the_batch_is_decided_again() {
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(2), &friends).await;
    w.line.script([Answer::Refuse(LineError::Unreachable("connection refused".into()))]);
    assert_eq!(w.send(&c, "s1").await.unwrap(), Sent::Sent { recipients: 2 });
    let calls = w.line.calls();
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0].0, calls[1].0, "decided again, with a new key: LINE had nothing");
    assert!(friends.iter().all(|u| w.line.received(u) == 1 && w.store.cap_set(u, &w.month()).len() == 1));
}

#[tokio::test]
async fn a_campaign_recreated_after_the_sender_read_it_gets_no_reservation_from_the_old_run() {
    let friends = users(2);
    let w = World::new(&friends);
    let c = w.campaign("a", Some(1), &friends).await;
    // The sender read the campaign; then it was cancelled and created again; then the sender
    // took the lease of the old run's batch.
    let now = w.clock.now_ms();
    assert!(w.store.lease(&c, 0, "s1", now, now + 90_000).await.unwrap());
    w.store.insert(Campaign { run: "a-run-2".into(), state: State::Draft, ..c.clone() });
    let mut batch = w.store.stored_batch(&c, 0).unwrap();
    assert!(w.sender("s1").leased(&c, &mut batch).await.is_err(), "the old run holds nothing");
    assert!(friends.iter().all(|u| w.store.cap_set(u, &w.month()).is_empty()), "nobody reserved");
    let caps = w.store.friend_caps(&friends, &Classifier::of(&c, now).demand).await.unwrap();
    assert!(caps.values().all(|f| f.sent.is_empty() && f.last_push.is_none()), "nobody marked as reached");
}
