//! One contract suite, two stores: every case below runs against the in-memory adapters the
//! logic's tests use (`in_memory::…`) and against the DynamoDB adapters on DynamoDB Local
//! (`on_dynamodb_local::…`), so the two cannot drift apart. LINE's twin and the send schedule are
//! held to theirs the same way in `twins.rs`.
//!
//! The cases go through the ports only ([`CampaignAdmin`] and what it extends); a fixture gives
//! each store its friends as the webhook would record them.

use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use integration_tests::TestStack;
use shared::adapters::dynamodb::campaigns::DynamoCampaigns;
use shared::adapters::dynamodb::ingest::DynamoFriends;
use shared::adapters::memory::campaigns::MemoryCampaigns;
use shared::campaign::batch::{Batch, BatchState, Settlement};
use shared::campaign::caps::{Demand, Reservation};
use shared::campaign::file::{AccountSettings, CampaignFile, Cap, Period};
use shared::campaign::model::{Campaign, Created, PlannedPage, Skip, Skips, State};
use shared::campaign::ports::CampaignAdmin;
use shared::ports::{FriendChange, FriendStore};
use shared::rules::window::Zone;

/// 2026-11-15T00:00Z.
const NOW: i64 = 1_794_700_800_000;
const DAY_MS: i64 = 24 * 3_600_000;
const SETTINGS: &str = "timezone: UTC\ncaps:\n  - { per: month, max: 1 }\nplan: tw-2023-medium\nsuppress: []\n";

/// A store under contract, with friends recorded as the webhook would.
#[async_trait]
trait Fixture: Send + Sync {
    fn store(&self) -> &dyn CampaignAdmin;
    async fn follow(&self, user: &str);
    async fn unfollow(&self, user: &str);
}

struct Memory(MemoryCampaigns);

#[async_trait]
impl Fixture for Memory {
    fn store(&self) -> &dyn CampaignAdmin {
        &self.0
    }
    async fn follow(&self, user: &str) {
        self.0.set_following(user, true);
    }
    async fn unfollow(&self, user: &str) {
        self.0.set_following(user, false);
    }
}

struct Dynamo {
    _stack: TestStack,
    store: DynamoCampaigns,
    friends: DynamoFriends,
    /// Event times of follow changes, increasing (an older change never overwrites a newer one).
    events: AtomicI64,
}

impl Dynamo {
    async fn new() -> Self {
        let stack = TestStack::new().await;
        let (campaigns, users) = (stack.table("CampaignsTable"), stack.table("UsersTable"));
        let store = DynamoCampaigns::new(stack.dynamodb.clone(), campaigns, users);
        let friends = DynamoFriends::new(stack.dynamodb.clone(), users);
        Dynamo { _stack: stack, store, friends, events: AtomicI64::new(NOW) }
    }

    async fn record(&self, user: &str, change: FriendChange) {
        let at = self.events.fetch_add(1, Ordering::SeqCst);
        self.friends.record(user, change, at, at).await.expect("the users table takes the change");
    }
}

#[async_trait]
impl Fixture for Dynamo {
    fn store(&self) -> &dyn CampaignAdmin {
        &self.store
    }
    async fn follow(&self, user: &str) {
        self.record(user, FriendChange::Followed { is_unblocked: false }).await;
    }
    async fn unfollow(&self, user: &str) {
        self.record(user, FriendChange::Unfollowed).await;
    }
}

fn user(i: usize) -> String {
    format!("U{i:032x}")
}

fn file(id: &str) -> CampaignFile {
    CampaignFile::parse(&format!("id: {id}\nname: {id}\nsegment: dessert\nmessages: [\"News for {id}\"]\n"))
        .expect("a valid campaign file")
}

fn settings() -> AccountSettings {
    AccountSettings::parse(SETTINGS).expect("valid settings")
}

/// What a campaign asks of every friend at `at`: its member, a cap of `max` a month, `gap` ms.
fn demand(member: &str, max: u32, gap: i64, at: i64) -> Demand {
    Demand::new(member.into(), &[Cap { per: Period::Month, max }], &Zone::default(), false, gap, at)
}

/// A demand that reads the cap sets `attributes` (and nothing else).
fn looking_at(attributes: &[String]) -> Demand {
    Demand { slots: attributes.iter().map(|a| (a.clone(), 1)).collect(), ..Demand::default() }
}

/// A campaign created and started (planning) through the admin port.
async fn started(f: &dyn Fixture, id: &str) -> Campaign {
    let store = f.store();
    assert!(matches!(store.create(&file(id), "source", false, NOW).await.unwrap(), Created::Created { .. }));
    store.start(id, &settings(), State::Planning, NOW).await.unwrap().expect("a draft starts")
}

/// `started`, with one planned batch of `to` (page 0) committed.
async fn with_batch(f: &dyn Fixture, id: &str, to: &[String]) -> (Campaign, Batch) {
    let c = started(f, id).await;
    let page = PlannedPage { segment: to.len() as u64, to: to.to_vec(), ..PlannedPage::default() };
    assert!(f.store().commit_page(&c, &page, None, NOW).await.unwrap());
    let c = f.store().get(id).await.unwrap().unwrap();
    let batch = f.store().batch(&c, 0).await.unwrap().expect("the batch was written");
    (c, batch)
}

/// `with_batch`, leased by `owner`, its first reservation round recorded (the month's cap
/// attribute) and frozen with every recipient on its send list.
async fn frozen(f: &dyn Fixture, id: &str, to: &[String], owner: &str) -> (Campaign, Batch) {
    let (c, _) = with_batch(f, id, to).await;
    let store = f.store();
    assert!(store.lease(&c, 0, owner, NOW, NOW + 60_000).await.unwrap());
    let attrs = demand(&c.cap_member(), 1, 0, NOW).attributes();
    let planned = store.batch(&c, 0).await.unwrap().unwrap();
    assert!(store.begin_reserve(&c, &planned, owner, &attrs, NOW).await.unwrap());
    let mask = vec![true; to.len()];
    assert!(store.freeze(&c, 0, owner, &mask, &Skips::default(), "key-1", NOW).await.unwrap());
    let batch = store.batch(&c, 0).await.unwrap().unwrap();
    (c, batch)
}

fn outcome(state: BatchState, n: u64) -> Settlement {
    let (sent, unknown) = match state {
        BatchState::Sent => (n, 0),
        BatchState::Unknown => (0, n),
        _ => (0, 0),
    };
    Settlement { state, sent, failed: 0, unknown, request_id: None, error: None, release_slots: false }
}

async fn create_replaces_only_a_draft_a_cancelled_or_a_done_campaign(f: &dyn Fixture) {
    let store = f.store();
    let Created::Created { run: first } = store.create(&file("c"), "v1", false, NOW).await.unwrap() else {
        panic!("a new id is created")
    };
    let draft = store.get("c").await.unwrap().unwrap();
    assert_eq!((draft.state, draft.run.as_str(), draft.source.as_str()), (State::Draft, first.as_str(), "v1"));
    let Created::Created { run: second } = store.create(&file("c"), "v2", false, NOW + 1).await.unwrap() else {
        panic!("a draft is replaced")
    };
    assert_ne!(first, second, "every create is a new run");
    assert!(store.start("c", &settings(), State::Planning, NOW).await.unwrap().is_some());
    assert_eq!(store.create(&file("c"), "v3", false, NOW).await.unwrap(), Created::InUse { state: State::Planning });
    let c = store.get("c").await.unwrap().unwrap();
    assert!(store.transition("c", &c.run, &[State::Planning], State::Cancelled, None).await.unwrap());
    assert!(matches!(store.create(&file("c"), "v4", false, NOW).await.unwrap(), Created::Created { .. }));
    let ids: Vec<String> = store.list().await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["c"], "one campaign, whatever its runs");
}

async fn start_takes_the_accounts_settings_once(f: &dyn Fixture) {
    let store = f.store();
    store.create(&file("c"), "", false, NOW).await.unwrap();
    let c = store.start("c", &settings(), State::Scheduled, NOW + 5).await.unwrap().expect("a draft starts");
    assert_eq!((c.state, c.started_at_ms, c.timezone.as_str()), (State::Scheduled, Some(NOW + 5), "UTC"));
    assert_eq!(c.caps, settings().caps);
    assert_eq!(c.policy, shared::campaign::model::Policy::of(&settings()));
    assert_eq!(store.get("c").await.unwrap().unwrap(), c, "what start answers is what is stored");
    assert_eq!(store.start("c", &settings(), State::Planning, NOW).await.unwrap(), None, "not a draft any more");
    assert_eq!(store.start("nothing", &settings(), State::Planning, NOW).await.unwrap(), None);
}

async fn transitions_need_the_run_and_a_state_they_name(f: &dyn Fixture) {
    let store = f.store();
    let c = started(f, "c").await;
    assert!(!store.transition("c", "another-run", &[State::Planning], State::Paused, None).await.unwrap());
    assert!(!store.transition("c", &c.run, &[State::Sending], State::Paused, None).await.unwrap());
    assert!(store.pause_until("c", &c.run, "quiet hours", NOW + 1000).await.unwrap());
    let paused = store.get("c").await.unwrap().unwrap();
    assert_eq!(
        (paused.state, paused.reason.as_deref(), paused.resume_at_ms),
        (State::Paused, Some("quiet hours"), Some(NOW + 1000))
    );
    assert!(!store.pause_until("c", &c.run, "again", NOW + 2000).await.unwrap(), "only a sending run pauses");
    assert!(!store.resume_from_quiet("c", &c.run, NOW + 999, State::Planning).await.unwrap());
    assert!(store.resume_from_quiet("c", &c.run, NOW + 1000, State::Planning).await.unwrap());
    let back = store.get("c").await.unwrap().unwrap();
    assert_eq!((back.state, back.reason, back.resume_at_ms), (State::Planning, None, None));
    assert!(store.transition("c", &c.run, &[State::Planning], State::Paused, Some("a person")).await.unwrap());
    assert!(!store.resume_from_quiet("c", &c.run, NOW + 1000, State::Planning).await.unwrap(), "paused by a person");
    assert!(store.transition("c", &c.run, &[State::Paused], State::Planning, None).await.unwrap());
    assert_eq!(store.get("c").await.unwrap().unwrap().reason, None);
}

async fn a_page_commits_once_and_only_while_the_campaign_sends(f: &dyn Fixture) {
    let store = f.store();
    let to = vec![user(1), user(2)];
    let (c, batch) = with_batch(f, "c", &to).await;
    assert_eq!((batch.state, batch.to.clone(), batch.number), (BatchState::Planned, to.clone(), 0));
    assert_eq!((c.plan_page, c.state, c.last_batch, c.plan_done), (1, State::Sending, Some(0), true));
    let k = c.counters;
    assert_eq!((k.segment, k.planned, k.batches), (2, 2, 1));
    // The same page again (a planner that read the campaign before the commit): refused.
    let stale = Campaign { plan_page: 0, ..c.clone() };
    let page = PlannedPage { segment: 2, to: to.clone(), ..PlannedPage::default() };
    assert!(!store.commit_page(&stale, &page, None, NOW).await.unwrap());
    // A page of held-out friends only: counted, no batch.
    let c = started(f, "d").await;
    let only_holdout = PlannedPage { segment: 1, holdout: vec![user(3)], ..PlannedPage::default() };
    let cursor = shared::segment::resolve::Cursor { shard: 1, after: None };
    assert!(store.commit_page(&c, &only_holdout, Some(&cursor), NOW).await.unwrap());
    let d = store.get("d").await.unwrap().unwrap();
    assert_eq!((d.counters.holdout, d.counters.batches, d.plan_page, d.plan_done), (1, 0, 1, false));
    assert!(store.batch(&d, 0).await.unwrap().is_none());
    // Paused: no page commits.
    assert!(store.transition("d", &d.run, &[State::Planning], State::Paused, None).await.unwrap());
    let next = PlannedPage { segment: 1, to: vec![user(4)], ..PlannedPage::default() };
    assert!(!store.commit_page(&d, &next, None, NOW).await.unwrap());
}

async fn a_lease_keeps_other_senders_off_until_it_expires(f: &dyn Fixture) {
    let store = f.store();
    let (c, _) = with_batch(f, "c", &[user(1)]).await;
    assert!(store.lease(&c, 0, "a", NOW, NOW + 1000).await.unwrap());
    assert!(!store.lease(&c, 0, "b", NOW + 10, NOW + 1010).await.unwrap());
    assert!(store.lease(&c, 0, "a", NOW + 10, NOW + 2000).await.unwrap(), "its owner renews it");
    store.release_lease(&c, 0, "b", NOW + 15).await.unwrap();
    assert!(!store.lease(&c, 0, "b", NOW + 20, NOW + 1020).await.unwrap(), "only its owner lets it go");
    assert!(store.lease(&c, 0, "b", NOW + 2001, NOW + 3000).await.unwrap(), "expired");
    store.release_lease(&c, 0, "b", NOW + 2002).await.unwrap();
    let leases = store.open_leases(&c).await.unwrap();
    assert_eq!(leases, vec![(0, BatchState::Planned, NOW + 2002)], "it ended when let go");
    assert!(store.lease(&c, 0, "a", NOW + 2003, NOW + 3000).await.unwrap(), "let go");
    assert!(!store.lease(&c, 1, "a", NOW, NOW + 1000).await.unwrap(), "no such batch");
}

async fn a_frozen_batch_settles_once_and_an_unknown_one_keeps_its_cap_attributes(f: &dyn Fixture) {
    let store = f.store();
    let to = vec![user(1), user(2)];
    let (c, batch) = frozen(f, "c", &to, "a").await;
    assert_eq!((batch.state, batch.retry_key.as_deref()), (BatchState::Frozen, Some("key-1")));
    assert_eq!(batch.send_list(), [user(1).as_str(), user(2).as_str()]);
    assert!(!batch.cap_attrs.is_empty());
    assert!(!store.freeze(&c, 0, "a", &[true, true], &Skips::default(), "key-2", NOW).await.unwrap());
    assert!(!store.mark_called(&c, 0, "b", NOW).await.unwrap(), "not its lease");
    assert!(store.mark_called(&c, 0, "a", NOW + 1).await.unwrap());
    assert!(store.mark_called(&c, 0, "a", NOW + 2).await.unwrap());
    let called = store.batch(&c, 0).await.unwrap().unwrap();
    assert_eq!((called.first_called_at_ms, called.call_open, called.attempts), (Some(NOW + 1), true, 2));
    assert!(store.close_call(&c, 0, "a").await.unwrap());
    let closed = store.batch(&c, 0).await.unwrap().unwrap();
    assert_eq!((closed.first_called_at_ms, closed.call_open), (None, false));
    assert!(!store.settle(&c, &closed, "b", &outcome(BatchState::Unknown, 2), NOW).await.unwrap(), "not its lease");
    assert!(store.settle(&c, &closed, "a", &outcome(BatchState::Unknown, 2), NOW).await.unwrap());
    assert!(!store.settle(&c, &closed, "a", &outcome(BatchState::Unknown, 2), NOW).await.unwrap(), "settled once");
    let settled = store.batch(&c, 0).await.unwrap().unwrap();
    assert_eq!(settled.state, BatchState::Unknown);
    assert_eq!(settled.cap_attrs, batch.cap_attrs, "kept until a person resolves it");
    assert_eq!(settled.lease_owner, None);
    let c = store.get("c").await.unwrap().unwrap();
    assert_eq!((c.counters.unknown, c.counters.settled), (2, 1));
    assert!(store.finish_if_done(&c).await.unwrap());
    let c = store.get("c").await.unwrap().unwrap();
    assert_eq!(c.state, State::NeedsAttention);
    assert!(!store.done_when_resolved(&c).await.unwrap(), "still unknown");
    assert!(store.resolve_unknown(&c, &settled, false, NOW).await.unwrap());
    assert!(!store.resolve_unknown(&c, &settled, false, NOW).await.unwrap(), "resolved once");
    let failed = store.batch(&c, 0).await.unwrap().unwrap();
    assert_eq!(failed.state, BatchState::Failed);
    assert!(failed.slots_to_give_back(), "a batch that did not go out keeps its attributes to give them back");
    assert!(!store.gave_back(&c, 0, 2).await.unwrap(), "not its round");
    assert!(store.gave_back(&c, 0, 1).await.unwrap());
    assert!(!store.gave_back(&c, 0, 1).await.unwrap(), "once");
    let given = store.batch(&c, 0).await.unwrap().unwrap();
    assert!(given.cap_attrs.is_empty() && !given.reserved && !given.slots_to_give_back());
    let c = store.get("c").await.unwrap().unwrap();
    assert_eq!((c.counters.unknown, c.counters.failed), (0, 2));
    assert!(store.done_when_resolved(&c).await.unwrap());
    assert_eq!(store.get("c").await.unwrap().unwrap().state, State::Done);
}

async fn a_sent_batch_forgets_its_cap_attributes_and_one_to_give_back_keeps_them(f: &dyn Fixture) {
    let store = f.store();
    let (c, batch) = frozen(f, "c", &[user(1)], "a").await;
    let sent = Settlement { request_id: Some("req-1".into()), ..outcome(BatchState::Sent, 1) };
    assert!(store.settle(&c, &batch, "a", &sent, NOW).await.unwrap());
    let b = store.batch(&c, 0).await.unwrap().unwrap();
    assert_eq!((b.state, b.cap_attrs.len(), b.request_id.as_deref()), (BatchState::Sent, 0, Some("req-1")));
    assert_eq!(store.get("c").await.unwrap().unwrap().counters.sent, 1);
    let (d, batch) = frozen(f, "d", &[user(1)], "a").await;
    let failed = Settlement { failed: 1, release_slots: true, ..outcome(BatchState::Failed, 0) };
    assert!(store.settle(&d, &batch, "a", &failed, NOW).await.unwrap());
    assert!(store.batch(&d, 0).await.unwrap().unwrap().slots_to_give_back());
}

async fn the_budget_is_taken_once_a_batch_and_given_back_from_what_is_stored(f: &dyn Fixture) {
    let store = f.store();
    let (c, batch) = with_batch(f, "c", &[user(1), user(2), user(3)]).await;
    assert!(store.take_budget(&c, &batch, "m2026-11", 3, 5).await.unwrap());
    assert_eq!(store.budget_used("m2026-11").await.unwrap(), 3);
    // A copy read before the take (a retry): taken already, not twice.
    assert!(store.take_budget(&c, &batch, "m2026-11", 3, 5).await.unwrap());
    assert_eq!(store.budget_used("m2026-11").await.unwrap(), 3);
    let (d, other) = with_batch(f, "d", &[user(4), user(5), user(6)]).await;
    assert!(!store.take_budget(&d, &other, "m2026-11", 3, 5).await.unwrap(), "3 more do not fit in 5");
    assert_eq!(store.budget_used("m2026-11").await.unwrap(), 3, "a refused take takes nothing");
    // Given back from the stored record, whatever the caller's copy says (here: nothing taken).
    store.return_budget(&c, &batch).await.unwrap();
    assert_eq!(store.budget_used("m2026-11").await.unwrap(), 0);
    assert_eq!(store.batch(&c, 0).await.unwrap().unwrap().budget, None);
    store.return_budget(&c, &batch).await.unwrap();
    assert_eq!(store.budget_used("m2026-11").await.unwrap(), 0, "once");
    assert!(store.take_budget(&d, &other, "m2026-11", 3, 5).await.unwrap());
    let stored = store.batch(&d, 0).await.unwrap().unwrap();
    assert_eq!(stored.budget, Some(("m2026-11".to_string(), 3)));
    // A take in another month (a late sender's, at its end) is not this month's: refused.
    assert!(!store.take_budget(&d, &other, "m2026-12", 3, 5).await.unwrap());
    assert_eq!(store.budget_used("m2026-12").await.unwrap(), 0);
}

async fn a_reservation_takes_every_period_at_once_and_a_retry_finds_its_own(f: &dyn Fixture) {
    let store = f.store();
    let friend = user(1);
    f.follow(&friend).await;
    let a = demand("a~1", 1, 0, NOW);
    assert_eq!(store.reserve(&friend, &a, NOW).await.unwrap(), Reservation::Reserved);
    assert_eq!(store.reserve(&friend, &a, NOW + 1).await.unwrap(), Reservation::Reserved, "a retry");
    let b = demand("b~1", 1, 0, NOW);
    assert_eq!(store.reserve(&friend, &b, NOW).await.unwrap(), Reservation::Refused(Skip::Cap));
    // The retry of a crosses into December: reserved in the new month too, under its cap.
    let december = NOW + 20 * DAY_MS;
    let a_later = demand("a~1", 1, 0, december);
    assert_eq!(store.reserve(&friend, &a_later, december).await.unwrap(), Reservation::Reserved);
    let attrs = vec!["cap#m2026-11".to_string(), "cap#m2026-12".to_string()];
    let caps = store.friend_caps(std::slice::from_ref(&friend), &looking_at(&attrs)).await.unwrap();
    let sets = &caps[&friend].sets;
    assert_eq!((sets[&attrs[0]].clone(), sets[&attrs[1]].clone()), (vec!["a~1".to_string()], vec!["a~1".to_string()]));
    let b_later = demand("b~1", 1, 0, december);
    assert_eq!(store.reserve(&friend, &b_later, december).await.unwrap(), Reservation::Refused(Skip::Cap));
    // A retry whose new period is full already is refused, and takes nothing.
    let other = user(2);
    f.follow(&other).await;
    assert_eq!(store.reserve(&other, &a, NOW).await.unwrap(), Reservation::Reserved);
    assert_eq!(store.reserve(&other, &b_later, december).await.unwrap(), Reservation::Reserved);
    assert_eq!(store.reserve(&other, &a_later, december).await.unwrap(), Reservation::Refused(Skip::Cap));
    let caps = store.friend_caps(std::slice::from_ref(&other), &looking_at(&attrs)).await.unwrap();
    assert_eq!(caps[&other].sets[&attrs[1]], vec!["b~1".to_string()]);
}

async fn a_refused_reservation_says_why(f: &dyn Fixture) {
    let store = f.store();
    let (gone, out, pushed, unknown) = (user(1), user(2), user(3), user(9));
    for u in [&gone, &out, &pushed] {
        f.follow(u).await;
    }
    f.unfollow(&gone).await;
    assert!(store.suppress(&out, true, "cli", NOW).await.unwrap());
    let a = demand("a~1", 5, 3 * DAY_MS, NOW);
    assert_eq!(store.reserve(&gone, &a, NOW).await.unwrap(), Reservation::Refused(Skip::Blocked));
    assert_eq!(store.reserve(&unknown, &a, NOW).await.unwrap(), Reservation::Refused(Skip::Blocked));
    assert_eq!(store.reserve(&out, &a, NOW).await.unwrap(), Reservation::Refused(Skip::Suppressed));
    assert_eq!(store.reserve(&pushed, &a, NOW).await.unwrap(), Reservation::Reserved);
    let b = demand("b~1", 5, 3 * DAY_MS, NOW + DAY_MS);
    assert_eq!(store.reserve(&pushed, &b, NOW + DAY_MS).await.unwrap(), Reservation::Refused(Skip::Cap), "the gap");
    assert_eq!(store.reserve(&pushed, &b, NOW + 4 * DAY_MS).await.unwrap(), Reservation::Reserved, "past the gap");
    // Transactional: outside caps and gaps, not outside opt-outs and follow state.
    let t = Demand::new("t~1".into(), &[Cap { per: Period::Month, max: 1 }], &Zone::default(), true, DAY_MS, NOW);
    assert_eq!(store.reserve(&pushed, &t, NOW + 4 * DAY_MS).await.unwrap(), Reservation::Reserved);
    assert_eq!(store.reserve(&out, &t, NOW).await.unwrap(), Reservation::Refused(Skip::Suppressed));
    assert_eq!(store.reserve(&gone, &t, NOW).await.unwrap(), Reservation::Refused(Skip::Blocked));
    let friends = store.friend_caps(&[gone.clone(), out.clone(), unknown.clone()], &Demand::default()).await.unwrap();
    assert_eq!((friends[&gone].following, friends[&out].suppressed), (false, true));
    assert!(!friends.contains_key(&unknown), "absent friends are not there");
}

/// The friend's last push (when, less `at`, and by which member).
async fn last_push(store: &dyn CampaignAdmin, friend: &str, at: i64) -> Option<(i64, String)> {
    let caps = store.friend_caps(&[friend.to_string()], &Demand::default()).await.unwrap();
    caps[friend].last_push.clone().map(|(t, by)| (t - at, by))
}

async fn a_push_given_back_restores_the_one_before_it(f: &dyn Fixture) {
    let store = f.store();
    let friend = user(1);
    f.follow(&friend).await;
    let last = |at| last_push(store, &friend, at);
    let a = demand("a~1", 5, DAY_MS, NOW);
    assert_eq!(store.reserve(&friend, &a, NOW).await.unwrap(), Reservation::Reserved);
    let b = demand("b~1", 5, DAY_MS, NOW + 2 * DAY_MS);
    assert_eq!(store.reserve(&friend, &b, NOW + 2 * DAY_MS).await.unwrap(), Reservation::Reserved);
    assert_eq!(last(NOW).await, Some((2 * DAY_MS, "b~1".to_string())));
    store.release(&friend, &b, &b.attributes()).await.unwrap();
    assert_eq!(last(NOW).await, Some((0, "a~1".to_string())), "b never went out: a is the last push again");
    let set = store.friend_caps(std::slice::from_ref(&friend), &b).await.unwrap()[&friend].sets.clone();
    assert_eq!(set[&b.attributes()[0]], vec!["a~1".to_string()], "b's slot is free");
    store.release(&friend, &a, &a.attributes()).await.unwrap();
    assert_eq!(last(NOW).await, None, "nothing went out");
    // A release by a member that is not the last push leaves the last push alone.
    assert_eq!(store.reserve(&friend, &a, NOW).await.unwrap(), Reservation::Reserved);
    store.release(&friend, &b, &b.attributes()).await.unwrap();
    assert_eq!(last(NOW).await, Some((0, "a~1".to_string())));
}

/// A push given back after another was recorded is forgotten as the one before that other: when
/// the other is given back too, nobody's push comes back (not the given-back one, which would
/// measure the minimum gap from a push that never went out).
async fn a_push_given_back_under_a_later_one_never_comes_back(f: &dyn Fixture) {
    let store = f.store();
    let friend = user(1);
    f.follow(&friend).await;
    let m = demand("m~1", 5, DAY_MS, NOW);
    assert_eq!(store.reserve(&friend, &m, NOW).await.unwrap(), Reservation::Reserved);
    let later = NOW + DAY_MS + 3_600_000;
    let n = demand("n~1", 5, DAY_MS, later);
    assert_eq!(store.reserve(&friend, &n, later).await.unwrap(), Reservation::Reserved);
    store.release(&friend, &m, &m.attributes()).await.unwrap();
    assert_eq!(last_push(store, &friend, NOW).await, Some((DAY_MS + 3_600_000, "n~1".to_string())));
    store.release(&friend, &n, &n.attributes()).await.unwrap();
    assert_eq!(last_push(store, &friend, NOW).await, None, "neither went out");
    // m goes out after all, an hour after n's time: a fresh push, the gap measured from now.
    let again = later + 3_600_000;
    let m = demand("m~1", 5, DAY_MS, again);
    assert_eq!(store.reserve(&friend, &m, again).await.unwrap(), Reservation::Reserved);
    assert_eq!(last_push(store, &friend, again).await, Some((0, "m~1".to_string())));
    let o = demand("o~1", 5, DAY_MS, again + 3_600_000);
    assert_eq!(store.reserve(&friend, &o, again + 3_600_000).await.unwrap(), Reservation::Refused(Skip::Cap));
}

async fn a_batch_is_held_only_while_its_campaign_does_not_send(f: &dyn Fixture) {
    let store = f.store();
    let (c, batch) = frozen(f, "c", &[user(1), user(2)], "a").await;
    assert!(!store.hold(&c, &batch, "a", true).await.unwrap(), "the campaign is sending");
    assert!(store.transition("c", &c.run, &[State::Sending], State::Paused, None).await.unwrap());
    assert!(store.hold(&c, &batch, "a", true).await.unwrap());
    let held = store.batch(&c, 0).await.unwrap().unwrap();
    assert_eq!(
        (held.state, held.held_from, held.retry_key.clone()),
        (BatchState::Held, Some(BatchState::Planned), None)
    );
    assert_eq!((held.frozen.clone(), held.lease_owner.clone()), (None, None));
    assert_eq!(store.get("c").await.unwrap().unwrap().counters.held, 2);
    assert_eq!(store.open_batches(&c).await.unwrap(), [(0, BatchState::Held)]);
    assert!(!store.unhold(&c, &held).await.unwrap(), "its slots are not given back yet");
    assert!(store.gave_back(&c, 0, 1).await.unwrap());
    assert!(store.unhold(&c, &held).await.unwrap());
    assert!(!store.unhold(&c, &held).await.unwrap(), "once");
    assert_eq!(store.batch(&c, 0).await.unwrap().unwrap().state, BatchState::Planned);
    assert_eq!(store.get("c").await.unwrap().unwrap().counters.held, 0);
    // A batch LINE may have taken is held frozen: it keeps its list and key.
    let (d, batch) = frozen(f, "d", &[user(3)], "a").await;
    assert!(store.transition("d", &d.run, &[State::Sending], State::Cancelled, None).await.unwrap());
    assert!(store.hold(&d, &batch, "a", false).await.unwrap());
    let held = store.batch(&d, 0).await.unwrap().unwrap();
    assert_eq!((held.held_from, held.retry_key.as_deref()), (Some(BatchState::Frozen), Some("key-1")));
    assert!(store.unhold(&d, &held).await.unwrap());
    assert_eq!(store.batch(&d, 0).await.unwrap().unwrap().state, BatchState::Frozen);
    assert_eq!(store.batches_in(&d, &[BatchState::Frozen, BatchState::Sent]).await.unwrap(), [(0, BatchState::Frozen)]);
}

async fn an_opt_out_is_undone_only_by_the_means_that_made_it(f: &dyn Fixture) {
    let store = f.store();
    let (a, b) = (user(1), user(2));
    f.follow(&a).await;
    assert!(store.suppress(&a, true, "cli", NOW).await.unwrap());
    assert!(!store.suppress(&a, true, "settings", NOW).await.unwrap(), "opted out already");
    assert!(store.suppress(&b, true, "settings", NOW).await.unwrap(), "a friend not seen yet can opt out");
    assert_eq!(
        store.suppressed().await.unwrap(),
        [(a.clone(), "cli".to_string()), (b.clone(), "settings".to_string())]
    );
    assert!(!store.suppress(&a, false, "settings", NOW).await.unwrap(), "settings never undo oa suppress add");
    assert!(store.suppress(&a, false, "cli", NOW).await.unwrap());
    assert!(!store.suppress(&a, false, "cli", NOW).await.unwrap());
    assert_eq!(store.suppressed().await.unwrap(), [(b.clone(), "settings".to_string())]);
    let friends = store.friend_caps(&[a.clone(), b.clone()], &Demand::default()).await.unwrap();
    assert_eq!((friends[&a].suppressed, friends[&a].following), (false, true));
    assert_eq!((friends[&b].suppressed, friends[&b].following), (true, false));
}

async fn a_preview_is_kept_on_its_campaign_only(f: &dyn Fixture) {
    let store = f.store();
    store.create(&file("c"), "", false, NOW).await.unwrap();
    let preview = serde_json::json!({ "recipients": 3 });
    store.save_preview("c", &preview).await.unwrap();
    assert_eq!(store.get("c").await.unwrap().unwrap().preview, Some(preview.clone()));
    assert!(store.save_preview("nothing", &preview).await.is_err(), "no campaign to keep it on");
    assert!(store.get("nothing").await.unwrap().is_none());
}

/// A reservation round is recorded before it reserves: a new one begins only on a planned batch
/// whose last round was given back; a frozen batch goes back to planned only when no call is open
/// and its round was given back.
async fn a_reservation_round_is_recorded_first_and_a_new_one_waits_for_the_give_back(f: &dyn Fixture) {
    let store = f.store();
    let (c, batch) = with_batch(f, "c", &[user(1), user(2)]).await;
    let attrs = vec!["cap#m2026-11".to_string()];
    assert!(store.lease(&c, 0, "a", NOW, NOW + 60_000).await.unwrap());
    assert!(!store.begin_reserve(&c, &batch, "b", &attrs, NOW).await.unwrap(), "not its lease");
    assert!(store.begin_reserve(&c, &batch, "a", &attrs, NOW).await.unwrap());
    let first = store.batch(&c, 0).await.unwrap().unwrap();
    assert_eq!((first.generation, first.reserved, first.cap_attrs.clone()), (1, true, attrs.clone()));
    assert_eq!(first.reserved_at_ms, Some(NOW));
    assert!(!store.begin_reserve(&c, &first, "a", &attrs, NOW).await.unwrap(), "round 1 was not given back");
    assert!(!store.begin_reserve(&c, &batch, "a", &attrs, NOW).await.unwrap(), "a stale copy (round 0)");
    assert!(store.freeze(&c, 0, "a", &[true, false], &Skips::default(), "key-1", NOW).await.unwrap());
    assert!(store.mark_called(&c, 0, "a", NOW).await.unwrap());
    assert!(!store.unfreeze(&c, 0, "a").await.unwrap(), "a call is open: LINE may have taken it");
    assert!(store.close_call(&c, 0, "a").await.unwrap());
    assert!(!store.unfreeze(&c, 0, "a").await.unwrap(), "its round is not given back yet");
    assert!(store.gave_back(&c, 0, 1).await.unwrap());
    assert!(!store.unfreeze(&c, 0, "b").await.unwrap(), "not its lease");
    assert!(store.unfreeze(&c, 0, "a").await.unwrap());
    let planned = store.batch(&c, 0).await.unwrap().unwrap();
    assert_eq!((planned.state, planned.frozen.clone(), planned.retry_key.clone()), (BatchState::Planned, None, None));
    assert_eq!((planned.generation, planned.reserved, planned.call_open), (1, false, false));
    assert!(store.begin_reserve(&c, &planned, "a", &[], NOW + 1).await.unwrap());
    let second = store.batch(&c, 0).await.unwrap().unwrap();
    assert_eq!((second.generation, second.reserved, second.cap_attrs.len()), (2, true, 0));
}

/// A give-back that runs late (a duplicate delivery, the planner's requeue, with a copy of the
/// batch read before) touches nothing of a later round: not its slots, not the friend's last
/// push, not its budget take.
async fn a_stale_give_back_touches_nothing_of_a_later_round(f: &dyn Fixture) {
    let store = f.store();
    let friend = user(1);
    f.follow(&friend).await;
    let (c, batch) = with_batch(f, "c", std::slice::from_ref(&friend)).await;
    let run = demand(&c.cap_member(), 1, DAY_MS, NOW).once_per_campaign("c", false);
    let attrs = run.attributes();
    assert!(store.lease(&c, 0, "a", NOW, NOW + 60_000).await.unwrap());
    assert!(store.begin_reserve(&c, &batch, "a", &attrs, NOW).await.unwrap());
    let round1 = store.batch(&c, 0).await.unwrap().unwrap();
    assert_eq!(store.reserve(&friend, &run.generation(1), NOW).await.unwrap(), Reservation::Reserved);
    assert!(store.take_budget(&c, &round1, "m2026-11", 1, 10).await.unwrap());
    // Round 1 is given back, and round 2 reserves and takes the budget again.
    store.release(&friend, &run.generation(1), &attrs).await.unwrap();
    store.return_budget(&c, &round1).await.unwrap();
    assert!(store.gave_back(&c, 0, 1).await.unwrap());
    let planned = store.batch(&c, 0).await.unwrap().unwrap();
    assert!(store.begin_reserve(&c, &planned, "a", &attrs, NOW + 5).await.unwrap());
    let round2 = store.batch(&c, 0).await.unwrap().unwrap();
    assert_eq!(store.reserve(&friend, &run.generation(2), NOW + 5).await.unwrap(), Reservation::Reserved);
    assert!(store.take_budget(&c, &round2, "m2026-11", 1, 10).await.unwrap());
    // The stale give-back of round 1 again.
    store.release(&friend, &run.generation(1), &attrs).await.unwrap();
    store.return_budget(&c, &round1).await.unwrap();
    assert!(!store.gave_back(&c, 0, 1).await.unwrap());
    let caps = store.friend_caps(std::slice::from_ref(&friend), &run).await.unwrap();
    let member2 = run.generation(2).member;
    assert_eq!(caps[&friend].sets[&attrs[0]], vec![member2.clone()], "round 2's slot stays");
    assert_eq!(caps[&friend].last_push, Some((NOW + 5, member2.clone())), "and its push");
    assert_eq!(caps[&friend].sent.get("c"), Some(&member2), "and its mark");
    assert_eq!(store.budget_used("m2026-11").await.unwrap(), 1, "and its budget take");
    let stored = store.batch(&c, 0).await.unwrap().unwrap();
    assert_eq!((stored.generation, stored.reserved), (2, true));
}

/// A friend reserved by a run of a campaign id is marked: a later run of the same id skips them
/// as `alreadySent` unless it resends; the mark goes when the reservation is given back.
async fn a_later_run_of_a_campaign_skips_friends_an_earlier_one_reached(f: &dyn Fixture) {
    let store = f.store();
    let (reached, given_back, fresh) = (user(1), user(2), user(3));
    for u in [&reached, &given_back, &fresh] {
        f.follow(u).await;
    }
    let first = demand("c~run1", 5, 0, NOW).once_per_campaign("c", false).generation(1);
    for u in [&reached, &given_back] {
        assert_eq!(store.reserve(u, &first, NOW).await.unwrap(), Reservation::Reserved);
    }
    store.release(&given_back, &first, &first.attributes()).await.unwrap();
    let second = demand("c~run2", 5, 0, NOW).once_per_campaign("c", false).generation(1);
    assert_eq!(store.reserve(&reached, &second, NOW).await.unwrap(), Reservation::Refused(Skip::AlreadySent));
    assert_eq!(store.reserve(&given_back, &second, NOW).await.unwrap(), Reservation::Reserved);
    assert_eq!(store.reserve(&fresh, &second, NOW).await.unwrap(), Reservation::Reserved);
    assert_eq!(store.reserve(&fresh, &second, NOW + 1).await.unwrap(), Reservation::Reserved, "its own run passes");
    let friends = store.friend_caps(&[reached.clone(), fresh.clone()], &second).await.unwrap();
    assert_eq!(friends[&reached].refusal(&second, NOW), Some(Skip::AlreadySent));
    assert_eq!(friends[&fresh].refusal(&second, NOW), None);
    // Another campaign id, and a transactional run, are not this campaign.
    let other = demand("d~run1", 5, 0, NOW).once_per_campaign("d", false).generation(1);
    assert_eq!(store.reserve(&reached, &other, NOW).await.unwrap(), Reservation::Reserved);
    let t = Demand::new("c~run3".into(), &[], &Zone::default(), true, 0, NOW).once_per_campaign("c", false);
    assert_eq!(store.reserve(&reached, &t.generation(1), NOW).await.unwrap(), Reservation::Refused(Skip::AlreadySent));
    // --resend: sent again; the mark stays the earlier run's, so giving the resend back does not
    // make a later run forget that the earlier one reached them.
    let resend = demand("c~run4", 5, 0, NOW).once_per_campaign("c", true).generation(1);
    assert_eq!(store.reserve(&reached, &resend, NOW).await.unwrap(), Reservation::Reserved);
    store.release(&reached, &resend, &resend.attributes()).await.unwrap();
    let friends = store.friend_caps(std::slice::from_ref(&reached), &resend).await.unwrap();
    assert_eq!(friends[&reached].sent.get("c"), Some(&first.member));
    let later = demand("c~run5", 5, 0, NOW).once_per_campaign("c", false).generation(1);
    assert_eq!(store.reserve(&reached, &later, NOW).await.unwrap(), Reservation::Refused(Skip::AlreadySent));
    // A stale give-back of another run's round leaves the mark too.
    store.release(&reached, &second, &second.attributes()).await.unwrap();
    let friends = store.friend_caps(std::slice::from_ref(&reached), &later).await.unwrap();
    assert_eq!(friends[&reached].sent.get("c"), Some(&first.member));
}

/// LINE took a push long after it was reserved: the friend's last push moves to then (while it
/// is still that push), so the minimum gap runs from when it went out.
async fn a_push_that_went_out_late_moves_the_last_push_to_then(f: &dyn Fixture) {
    let store = f.store();
    let friend = user(1);
    f.follow(&friend).await;
    let a = demand("a~1", 5, DAY_MS, NOW);
    assert_eq!(store.reserve(&friend, &a, NOW).await.unwrap(), Reservation::Reserved);
    store.pushed(&friend, &a, NOW + 3_600_000).await.unwrap();
    assert_eq!(last_push(store, &friend, NOW).await, Some((3_600_000, "a~1".to_string())));
    let b = demand("b~1", 5, DAY_MS, NOW + DAY_MS + 60_000);
    assert_eq!(
        store.reserve(&friend, &b, NOW + DAY_MS + 60_000).await.unwrap(),
        Reservation::Refused(Skip::Cap),
        "a day after the reservation, not a day after it went out"
    );
    store.pushed(&friend, &b, NOW + 7_200_000).await.unwrap();
    assert_eq!(last_push(store, &friend, NOW).await, Some((3_600_000, "a~1".to_string())), "not b's push");
}

/// A friend's item keeps only the cap periods that may still count: each reservation removes the
/// ones that ended days before, recent ones in its own update and older ones (a long pause) after.
async fn past_periods_go_as_a_friend_is_reserved(f: &dyn Fixture) {
    let store = f.store();
    let caps = [Period::Day, Period::Week, Period::Month].map(|per| Cap { per, max: 2 });
    let at = |member: &str, ms: i64| Demand::new(member.into(), &caps, &Zone::default(), false, 0, ms);
    let (friend, paused) = (user(1), user(2));
    f.follow(&friend).await;
    f.follow(&paused).await;
    let (a, old) = (at("a~1", NOW), at("o~1", NOW - 200 * DAY_MS));
    assert_eq!(store.reserve(&friend, &a, NOW).await.unwrap(), Reservation::Reserved);
    assert_eq!(store.reserve(&paused, &old, NOW - 200 * DAY_MS).await.unwrap(), Reservation::Reserved);
    // Ten days on (the day and the week are past, the month still counts), then two months on.
    for (days, gone, kept) in [(10, 2, 1), (60, 3, 0)] {
        let later = at(&format!("b{days}~1"), NOW + days * DAY_MS);
        assert_eq!(store.reserve(&friend, &later, NOW + days * DAY_MS).await.unwrap(), Reservation::Reserved);
        let seen = store.friend_caps(std::slice::from_ref(&friend), &looking_at(&a.attributes())).await.unwrap();
        let left = |m: &str| {
            a.attributes()
                .iter()
                .filter(|p| seen[&friend].sets.get(*p).is_some_and(|s| s.iter().any(|x| x == m)))
                .count()
        };
        assert_eq!((3 - left("a~1"), left("a~1")), (gone, kept), "{days} days on");
        let now = store.friend_caps(std::slice::from_ref(&friend), &later).await.unwrap();
        assert!(
            later.attributes().iter().all(|p| now[&friend].sets[p].contains(&later.member)),
            "the current periods are kept"
        );
    }
    // A friend reserved again after 200 days loses every period of then.
    let b = at("b~1", NOW);
    assert_eq!(store.reserve(&paused, &b, NOW).await.unwrap(), Reservation::Reserved);
    let seen = store.friend_caps(std::slice::from_ref(&paused), &looking_at(&old.attributes())).await.unwrap();
    assert!(
        old.attributes().iter().all(|p| seen[&paused].sets.get(p).is_none_or(Vec::is_empty)),
        "{:?}",
        seen[&paused].sets
    );
    // Giving back a push whose periods were removed removes nothing more and brings none back.
    store.release(&paused, &old, &old.attributes()).await.unwrap();
    let seen = store.friend_caps(std::slice::from_ref(&paused), &looking_at(&old.attributes())).await.unwrap();
    assert!(old.attributes().iter().all(|p| seen[&paused].sets.get(p).is_none_or(Vec::is_empty)));
    let now = store.friend_caps(std::slice::from_ref(&paused), &b).await.unwrap();
    assert!(b.attributes().iter().all(|p| now[&paused].sets[p] == vec!["b~1".to_string()]));
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod in_memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&super::Memory(Default::default())).await
                }
            )*
        }

        mod on_dynamodb_local {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&super::Dynamo::new().await).await
                }
            )*
        }
    };
}

contract!(
    create_replaces_only_a_draft_a_cancelled_or_a_done_campaign,
    start_takes_the_accounts_settings_once,
    transitions_need_the_run_and_a_state_they_name,
    a_page_commits_once_and_only_while_the_campaign_sends,
    a_lease_keeps_other_senders_off_until_it_expires,
    a_frozen_batch_settles_once_and_an_unknown_one_keeps_its_cap_attributes,
    a_sent_batch_forgets_its_cap_attributes_and_one_to_give_back_keeps_them,
    the_budget_is_taken_once_a_batch_and_given_back_from_what_is_stored,
    a_reservation_takes_every_period_at_once_and_a_retry_finds_its_own,
    a_refused_reservation_says_why,
    a_push_given_back_restores_the_one_before_it,
    a_push_given_back_under_a_later_one_never_comes_back,
    a_batch_is_held_only_while_its_campaign_does_not_send,
    an_opt_out_is_undone_only_by_the_means_that_made_it,
    a_preview_is_kept_on_its_campaign_only,
    a_reservation_round_is_recorded_first_and_a_new_one_waits_for_the_give_back,
    a_stale_give_back_touches_nothing_of_a_later_round,
    a_later_run_of_a_campaign_skips_friends_an_earlier_one_reached,
    a_push_that_went_out_late_moves_the_last_push_to_then,
    past_periods_go_as_a_friend_is_reserved,
);
