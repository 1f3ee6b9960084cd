//! The campaign ports in memory, with the same conditions as the DynamoDB store, and a LINE that
//! remembers retry keys and answers from a script: the planner's and the sender's logic and its
//! faults, tested in milliseconds. The pipeline tests prove the real adapters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use super::model::{Counters, Skip, Skips, State};
use super::ports::{CampaignRepo, CapStore, Multicaster};
use super::store::{Batch, BatchState, Campaign, Demand, FriendCaps, PlannedPage, Reservation, Settlement};
use crate::line::client::{Accepted, LineError};
use crate::ports::BackendError;
use crate::segment::resolve::Cursor;

type BatchKey = (String, String, u32);

#[derive(Default)]
struct Store {
    campaigns: HashMap<String, Campaign>,
    batches: HashMap<BatchKey, Batch>,
    friends: HashMap<String, FriendCaps>,
    /// The account budget's messages taken, by month.
    budget_used: HashMap<String, u64>,
    /// A friend's last push before the one recorded (restored on release).
    prev_push: HashMap<String, Option<(i64, String)>>,
}

/// Campaigns, batches and friends' caps in memory.
#[derive(Default)]
pub struct MemoryCampaigns {
    inner: Mutex<Store>,
    /// The next this many slot releases fail (a storage error).
    pub fail_releases: std::sync::atomic::AtomicUsize,
}

fn key(c: &Campaign, number: u32) -> BatchKey {
    (c.id.clone(), c.run.clone(), number)
}

fn poisoned() -> BackendError {
    BackendError::Store { operation: "memory", message: "lock poisoned".into() }
}

/// A campaign that is planning, for tests.
pub fn campaign(id: &str, caps: &[super::file::Cap], transactional: bool) -> Campaign {
    Campaign {
        id: id.into(),
        run: format!("{id}-run"),
        name: id.into(),
        segment: "all".into(),
        messages: vec![serde_json::json!({ "type": "text", "text": format!("News from {id}") })],
        holdout_bps: 0,
        budget: None,
        transactional,
        not_before_ms: 0,
        state: State::Planning,
        reason: None,
        source: String::new(),
        created_at_ms: 0,
        started_at_ms: Some(0),
        first_sent_at_ms: None,
        last_sent_at_ms: None,
        caps: caps.to_vec(),
        timezone: "UTC".into(),
        plan_page: 0,
        cursor: None,
        plan_done: false,
        last_batch: None,
        counters: Counters::default(),
        preview: None,
        batch_size: super::file::MAX_BATCH,
        aggregation_unit: None,
        policy: super::model::Policy::default(),
        resume_at_ms: None,
    }
}

impl MemoryCampaigns {
    fn with<T>(&self, f: impl FnOnce(&mut Store) -> T) -> Result<T, BackendError> {
        self.inner.lock().map(|mut s| f(&mut s)).map_err(|_| poisoned())
    }

    pub fn insert(&self, c: Campaign) {
        let _ = self.with(|s| s.campaigns.insert(c.id.clone(), c));
    }

    /// A following friend (or not), opted out (or not).
    pub fn add_friend(&self, user: &str, following: bool, suppressed: bool) {
        let _ = self.with(|s| {
            s.friends.insert(user.into(), FriendCaps { following, suppressed, sets: BTreeMap::new(), last_push: None })
        });
    }

    /// The campaign runs in one of the friend's cap sets.
    pub fn cap_set(&self, user: &str, attribute: &str) -> Vec<String> {
        self.with(|s| s.friends.get(user).and_then(|f| f.sets.get(attribute).cloned()).unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn campaign(&self, id: &str) -> Option<Campaign> {
        self.with(|s| s.campaigns.get(id).cloned()).ok().flatten()
    }

    /// What `oa campaign resume` does to a held batch whose slots were given back.
    pub fn unhold(&self, c: &Campaign, number: u32) -> bool {
        self.with(|s| {
            let Some(b) = s.batches.get_mut(&key(c, number)) else { return false };
            if b.state != BatchState::Held || (b.held_from == Some(BatchState::Planned) && !b.cap_attrs.is_empty()) {
                return false;
            }
            b.state = b.held_from.take().unwrap_or(BatchState::Planned);
            if let Some(stored) = s.campaigns.get_mut(&c.id) {
                stored.counters.held -= b.to.len() as u64;
                stored.state = State::Sending;
            }
            true
        })
        .unwrap_or(false)
    }

    pub fn budget_used(&self, month: &str) -> u64 {
        self.with(|s| s.budget_used.get(month).copied().unwrap_or(0)).unwrap_or(0)
    }

    pub fn stored_batch(&self, c: &Campaign, number: u32) -> Option<Batch> {
        self.with(|s| s.batches.get(&key(c, number)).cloned()).ok().flatten()
    }
}

#[async_trait]
impl CampaignRepo for MemoryCampaigns {
    async fn get(&self, id: &str) -> Result<Option<Campaign>, BackendError> {
        self.with(|s| s.campaigns.get(id).cloned())
    }

    async fn transition(
        &self,
        id: &str,
        run: &str,
        from: &[State],
        to: State,
        reason: Option<&str>,
    ) -> Result<bool, BackendError> {
        self.with(|s| match s.campaigns.get_mut(id) {
            Some(c) if c.run == run && from.contains(&c.state) => {
                c.state = to;
                c.reason = reason.map(str::to_string);
                c.resume_at_ms = None;
                true
            }
            _ => false,
        })
    }

    async fn resume_from_quiet(&self, id: &str, run: &str, until_ms: i64, to: State) -> Result<bool, BackendError> {
        self.with(|s| match s.campaigns.get_mut(id) {
            Some(c) if c.run == run && c.state == State::Paused && c.resume_at_ms == Some(until_ms) => {
                c.state = to;
                c.reason = None;
                c.resume_at_ms = None;
                true
            }
            _ => false,
        })
    }

    async fn open_batches(&self, c: &Campaign) -> Result<Vec<(u32, BatchState)>, BackendError> {
        self.with(|s| {
            let mut open: Vec<(u32, BatchState)> = s
                .batches
                .iter()
                .filter(|((id, run, _), b)| {
                    id == &c.id
                        && run == &c.run
                        && matches!(b.state, BatchState::Planned | BatchState::Frozen | BatchState::Held)
                })
                .map(|((_, _, n), b)| (*n, b.state))
                .collect();
            open.sort_by_key(|(n, _)| *n);
            open
        })
    }

    async fn unhold(&self, c: &Campaign, batch: &Batch) -> Result<bool, BackendError> {
        self.with(|s| {
            let Some(b) = s.batches.get_mut(&key(c, batch.number)) else { return false };
            if b.state != BatchState::Held || (b.held_from == Some(BatchState::Planned) && !b.cap_attrs.is_empty()) {
                return false;
            }
            b.state = b.held_from.take().unwrap_or(BatchState::Planned);
            if let Some(stored) = s.campaigns.get_mut(&c.id) {
                stored.counters.held -= b.to.len() as u64;
            }
            true
        })
    }

    async fn pause_until(&self, id: &str, run: &str, reason: &str, until_ms: i64) -> Result<bool, BackendError> {
        self.with(|s| match s.campaigns.get_mut(id) {
            Some(c) if c.run == run && (c.state.sends() || c.state == State::Scheduled) => {
                c.state = State::Paused;
                c.reason = Some(reason.to_string());
                c.resume_at_ms = Some(until_ms);
                true
            }
            _ => false,
        })
    }

    async fn commit_page(
        &self,
        c: &Campaign,
        page: &PlannedPage,
        next: Option<&Cursor>,
        _now_ms: i64,
    ) -> Result<bool, BackendError> {
        self.with(|s| {
            let batch_key = key(c, c.plan_page);
            if !page.to.is_empty() && s.batches.contains_key(&batch_key) {
                return false;
            }
            let Some(stored) = s.campaigns.get_mut(&c.id) else { return false };
            if stored.run != c.run || stored.plan_page != c.plan_page || !stored.state.sends() {
                return false;
            }
            stored.commit(page, next);
            if !page.to.is_empty() {
                s.batches.insert(batch_key, planned_batch(c.plan_page, page.to.clone()));
            }
            true
        })
    }

    async fn finish_if_done(&self, c: &Campaign) -> Result<bool, BackendError> {
        self.with(|s| match s.campaigns.get_mut(&c.id) {
            Some(stored)
                if stored.run == c.run
                    && stored.plan_done
                    && stored.counters.settled == stored.counters.batches
                    && stored.state.sends() =>
            {
                stored.state = if stored.counters.unknown > 0 { State::NeedsAttention } else { State::Done };
                true
            }
            _ => false,
        })
    }

    async fn batch(&self, c: &Campaign, number: u32) -> Result<Option<Batch>, BackendError> {
        self.with(|s| s.batches.get(&key(c, number)).cloned())
    }

    async fn lease(
        &self,
        c: &Campaign,
        number: u32,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, BackendError> {
        self.with(|s| match s.batches.get_mut(&key(c, number)) {
            Some(b)
                if matches!(b.state, BatchState::Planned | BatchState::Frozen)
                    && (b.lease_owner.is_none()
                        || b.lease_until_ms < now_ms
                        || b.lease_owner.as_deref() == Some(owner)) =>
            {
                b.lease_owner = Some(owner.into());
                b.lease_until_ms = until_ms;
                true
            }
            _ => false,
        })
    }

    async fn release_lease(&self, c: &Campaign, number: u32, owner: &str) -> Result<(), BackendError> {
        self.with(|s| {
            if let Some(b) = s.batches.get_mut(&key(c, number)).filter(|b| b.lease_owner.as_deref() == Some(owner)) {
                b.lease_owner = None;
                b.lease_until_ms = 0;
            }
        })
    }

    async fn freeze(
        &self,
        c: &Campaign,
        number: u32,
        owner: &str,
        mask: &[bool],
        skips: &Skips,
        cap_attrs: &[String],
        retry_key: &str,
        _now_ms: i64,
    ) -> Result<bool, BackendError> {
        self.with(|s| match s.batches.get_mut(&key(c, number)) {
            Some(b) if b.state == BatchState::Planned && b.lease_owner.as_deref() == Some(owner) => {
                b.state = BatchState::Frozen;
                b.frozen = Some(mask.to_vec());
                b.skips = *skips;
                b.cap_attrs = cap_attrs.to_vec();
                b.retry_key = Some(retry_key.into());
                true
            }
            _ => false,
        })
    }

    async fn mark_called(&self, c: &Campaign, number: u32, owner: &str, now_ms: i64) -> Result<bool, BackendError> {
        self.with(|s| match s.batches.get_mut(&key(c, number)) {
            Some(b) if b.state == BatchState::Frozen && b.lease_owner.as_deref() == Some(owner) => {
                b.first_called_at_ms.get_or_insert(now_ms);
                b.call_open = true;
                b.attempts += 1;
                true
            }
            _ => false,
        })
    }

    async fn close_call(&self, c: &Campaign, number: u32, owner: &str) -> Result<bool, BackendError> {
        self.with(|s| match s.batches.get_mut(&key(c, number)) {
            Some(b) if b.lease_owner.as_deref() == Some(owner) => {
                b.call_open = false;
                b.first_called_at_ms = None;
                true
            }
            _ => false,
        })
    }

    async fn take_budget(
        &self,
        c: &Campaign,
        batch: &Batch,
        month: &str,
        n: u64,
        limit: u64,
    ) -> Result<bool, BackendError> {
        self.with(|s| {
            let Some(b) = s.batches.get_mut(&key(c, batch.number)) else { return false };
            if b.budget.is_some() {
                return true;
            }
            let used = s.budget_used.entry(month.to_string()).or_default();
            if *used + n > limit {
                return false;
            }
            *used += n;
            b.budget = Some((month.to_string(), n));
            true
        })
    }

    async fn return_budget(&self, c: &Campaign, batch: &Batch) -> Result<(), BackendError> {
        self.with(|s| {
            let Some(b) = s.batches.get_mut(&key(c, batch.number)) else { return };
            if let Some((month, n)) = b.budget.take() {
                *s.budget_used.entry(month).or_default() -= n;
            }
        })
    }

    async fn clear_cap_attrs(&self, c: &Campaign, number: u32) -> Result<(), BackendError> {
        self.with(|s| {
            if let Some(b) = s.batches.get_mut(&key(c, number)) {
                b.cap_attrs.clear();
            }
        })
    }

    async fn settle(
        &self,
        c: &Campaign,
        batch: &Batch,
        owner: &str,
        outcome: &Settlement,
        now_ms: i64,
    ) -> Result<bool, BackendError> {
        self.with(|s| {
            let Some(b) = s.batches.get_mut(&key(c, batch.number)) else { return false };
            if b.state != batch.state || b.lease_owner.as_deref() != Some(owner) {
                return false;
            }
            let Some(stored) = s.campaigns.get_mut(&c.id).filter(|st| st.run == c.run) else { return false };
            b.state = outcome.state;
            b.request_id = outcome.request_id.clone();
            b.lease_owner = None;
            if !outcome.release_slots {
                b.cap_attrs.clear();
            }
            let k = &mut stored.counters;
            k.sent += outcome.sent;
            k.failed += outcome.failed;
            k.unknown += outcome.unknown;
            k.settled += 1;
            for why in Skip::ALL {
                k.skipped.add(why, batch.skips.get(why));
            }
            stored.first_sent_at_ms.get_or_insert(now_ms);
            stored.last_sent_at_ms = Some(now_ms);
            true
        })
    }

    async fn hold(&self, c: &Campaign, batch: &Batch, owner: &str, unfreeze: bool) -> Result<bool, BackendError> {
        self.with(|s| {
            let Some(stored) = s.campaigns.get_mut(&c.id).filter(|st| st.run == c.run && !st.state.sends()) else {
                return false;
            };
            let Some(b) = s.batches.get_mut(&key(c, batch.number)) else { return false };
            if b.state != batch.state || b.lease_owner.as_deref() != Some(owner) {
                return false;
            }
            let back =
                if unfreeze || b.state == BatchState::Planned { BatchState::Planned } else { BatchState::Frozen };
            b.state = BatchState::Held;
            b.held_from = Some(back);
            b.lease_owner = None;
            if unfreeze {
                b.frozen = None;
                b.retry_key = None;
                b.skips = Skips::default();
                b.first_called_at_ms = None;
                b.call_open = false;
                b.attempts = 0;
            }
            stored.counters.held += b.to.len() as u64;
            true
        })
    }
}

fn planned_batch(number: u32, to: Vec<String>) -> Batch {
    Batch {
        number,
        state: BatchState::Planned,
        held_from: None,
        to,
        lease_until_ms: 0,
        lease_owner: None,
        frozen: None,
        retry_key: None,
        skips: Skips::default(),
        cap_attrs: vec![],
        first_called_at_ms: None,
        call_open: false,
        attempts: 0,
        request_id: None,
        budget: None,
    }
}

#[async_trait]
impl CapStore for MemoryCampaigns {
    async fn friend_caps(
        &self,
        users: &[String],
        attributes: &[String],
    ) -> Result<HashMap<String, FriendCaps>, BackendError> {
        self.with(|s| {
            users
                .iter()
                .filter_map(|u| {
                    let f = s.friends.get(u)?;
                    let sets =
                        attributes.iter().map(|a| (a.clone(), f.sets.get(a).cloned().unwrap_or_default())).collect();
                    let friend = FriendCaps { sets, ..f.clone() };
                    Some((u.clone(), friend))
                })
                .collect()
        })
    }

    async fn reserve(&self, user: &str, demand: &Demand, now_ms: i64) -> Result<Reservation, BackendError> {
        self.with(|s| {
            let Some(f) = s.friends.get_mut(user) else { return Reservation::Refused(Skip::Blocked) };
            if let Some(why) = f.refusal(demand, now_ms) {
                return Reservation::Refused(why);
            }
            if demand.transactional {
                return Reservation::Reserved;
            }
            for attr in demand.slots.keys() {
                let set = f.sets.entry(attr.clone()).or_default();
                if !set.iter().any(|m| m == &demand.member) {
                    set.push(demand.member.clone());
                }
            }
            if f.last_push.as_ref().is_some_and(|(_, by)| by == &demand.member) {
                return Reservation::Reserved;
            }
            let before = f.last_push.replace((now_ms, demand.member.clone()));
            s.prev_push.insert(user.to_string(), before);
            Reservation::Reserved
        })
    }

    async fn release(&self, user: &str, demand: &Demand, attributes: &[String]) -> Result<(), BackendError> {
        let member = &demand.member;
        use std::sync::atomic::Ordering;
        if self.fail_releases.load(Ordering::SeqCst) > 0 {
            self.fail_releases.fetch_sub(1, Ordering::SeqCst);
            return Err(BackendError::Store { operation: "UpdateItem", message: "injected".into() });
        }
        if demand.transactional {
            return Ok(());
        }
        self.with(|s| {
            if let Some(f) = s.friends.get_mut(user) {
                for a in attributes {
                    if let Some(set) = f.sets.get_mut(a) {
                        set.retain(|m| m != member);
                    }
                }
                if f.last_push.as_ref().is_some_and(|(_, by)| by == member) {
                    f.last_push = s.prev_push.remove(user).flatten();
                }
            }
        })
    }
}

/// What LINE does with the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Refuse without doing anything (500, 429, 401, 400...).
    Refuse(LineError),
    /// Deliver, bill and remember the key, then never answer (the client times out).
    DeliverThenTimeOut,
}

#[derive(Default)]
struct Line {
    keys: HashMap<String, String>,
    script: VecDeque<Answer>,
    received: HashMap<String, usize>,
    /// Every request: (retry key, what happened).
    calls: Vec<(String, String)>,
    quota: Option<u64>,
}

/// LINE's multicast in memory: retry keys remembered (409 for a key it took), deliveries per
/// friend, and a script of answers for the next requests.
#[derive(Default)]
pub struct MemoryLine {
    inner: Mutex<Line>,
}

impl MemoryLine {
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        if let Ok(mut l) = self.inner.lock() {
            l.script.extend(answers);
        }
    }

    /// The month's quota its quota endpoint reports (None: no limit).
    pub fn set_quota(&self, quota: Option<u64>) {
        if let Ok(mut l) = self.inner.lock() {
            l.quota = quota;
        }
    }

    /// How many multicasts a friend received.
    pub fn received(&self, user: &str) -> usize {
        self.inner.lock().map(|l| l.received.get(user).copied().unwrap_or(0)).unwrap_or(0)
    }

    pub fn calls(&self) -> Vec<(String, String)> {
        self.inner.lock().map(|l| l.calls.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Multicaster for MemoryLine {
    async fn month(&self) -> Result<super::price::Month, LineError> {
        let l = self.inner.lock().map_err(|_| LineError::Transport("memory line poisoned".into()))?;
        Ok(super::price::Month { quota: l.quota, used: l.received.values().sum::<usize>() as u64 })
    }

    async fn multicast(
        &self,
        to: &[&str],
        _messages: &[Value],
        retry_key: &str,
        _unit: Option<&str>,
    ) -> Result<Accepted, LineError> {
        let mut l = self.inner.lock().map_err(|_| LineError::Transport("memory line poisoned".into()))?;
        if let Some(accepted) = l.keys.get(retry_key).cloned() {
            l.calls.push((retry_key.into(), "409".into()));
            return Err(LineError::RetryKeyAccepted { accepted_request_id: Some(accepted) });
        }
        let request_id = format!("req-{}", l.calls.len());
        match l.script.pop_front() {
            Some(Answer::Refuse(e)) => {
                l.calls.push((retry_key.into(), e.kind().into()));
                Err(e)
            }
            answer => {
                for u in to {
                    *l.received.entry(u.to_string()).or_default() += 1;
                }
                l.keys.insert(retry_key.into(), request_id.clone());
                if answer == Some(Answer::DeliverThenTimeOut) {
                    l.calls.push((retry_key.into(), "deliveredThenTimedOut".into()));
                    return Err(LineError::Timeout(std::time::Duration::from_secs(10)));
                }
                l.calls.push((retry_key.into(), "200".into()));
                Ok(Accepted { request_id: Some(request_id) })
            }
        }
    }
}

/// A queue in memory: what was sent, with its delay.
#[derive(Default)]
pub struct MemoryQueue(Mutex<Vec<(String, u32)>>);

impl MemoryQueue {
    pub fn sent(&self) -> Vec<(String, u32)> {
        self.0.lock().map(|q| q.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl crate::ports::WorkQueue for MemoryQueue {
    async fn send(&self, body: &str, delay_secs: u32) -> Result<(), BackendError> {
        self.0.lock().map_err(|_| poisoned())?.push((body.to_string(), delay_secs));
        Ok(())
    }
}
