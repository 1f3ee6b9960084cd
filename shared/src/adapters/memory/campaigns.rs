//! Campaigns, their batches and the account budget in memory, under the same conditions as the
//! DynamoDB adapter ([`crate::adapters::dynamodb::campaigns`]); the friends' caps and opt-outs on
//! the same store are in [`super::caps`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use crate::campaign::batch::{Batch, BatchState, Settlement};
use crate::campaign::caps::FriendCaps;
use crate::campaign::file::{AccountSettings, CampaignFile, Cap, MAX_BATCH};
use crate::campaign::model::{uuid_simple, Campaign, Counters, Created, PlannedPage, Policy, Skip, Skips, State};
use crate::campaign::ports::{BatchRepo, CampaignAdmin, CampaignRepo};
use crate::ports::BackendError;
use crate::segment::resolve::Cursor;

type BatchKey = (String, String, u32);

#[derive(Default)]
pub(super) struct Store {
    pub(super) campaigns: HashMap<String, Campaign>,
    pub(super) batches: HashMap<BatchKey, Batch>,
    pub(super) friends: HashMap<String, FriendCaps>,
    /// Who opted each opted-out friend out (`cli` or `settings`).
    pub(super) opt_outs: BTreeMap<String, String>,
    /// The account budget's messages taken, by month.
    pub(super) budget_used: HashMap<String, u64>,
    /// A friend's last push before the one recorded (restored on release).
    pub(super) prev_push: HashMap<String, Option<(i64, String)>>,
}

/// Campaigns, batches and friends' caps in memory.
#[derive(Default)]
pub struct MemoryCampaigns {
    inner: Mutex<Store>,
    /// The next this many slot releases fail (a storage error).
    pub fail_releases: std::sync::atomic::AtomicUsize,
    /// Counts reservations down: the one that brings it to 0 fails (a storage error); 0: none.
    pub fail_reservation_at: std::sync::atomic::AtomicUsize,
    /// The next this many settles are committed but answer with an error (a timeout).
    pub lose_settle_answers: std::sync::atomic::AtomicUsize,
}

/// Takes one of the faults counted in `counter`: true if one was left.
pub(super) fn take_fault(counter: &std::sync::atomic::AtomicUsize) -> bool {
    use std::sync::atomic::Ordering;
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

fn key(c: &Campaign, number: u32) -> BatchKey {
    (c.id.clone(), c.run.clone(), number)
}

fn poisoned() -> BackendError {
    BackendError::Store { operation: "memory", message: "lock poisoned".into() }
}

/// A campaign that is planning, for tests.
pub fn campaign(id: &str, caps: &[Cap], transactional: bool) -> Campaign {
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
        batch_size: MAX_BATCH,
        aggregation_unit: None,
        policy: Policy::default(),
        resume_at_ms: None,
        resend: false,
    }
}

impl MemoryCampaigns {
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut Store) -> T) -> Result<T, BackendError> {
        self.inner.lock().map(|mut s| f(&mut s)).map_err(|_| poisoned())
    }

    pub fn insert(&self, c: Campaign) {
        let _ = self.with(|s| s.campaigns.insert(c.id.clone(), c));
    }

    /// A following friend (or not), opted out with `oa suppress add` (or not).
    pub fn add_friend(&self, user: &str, following: bool, suppressed: bool) {
        let _ = self.with(|s| {
            s.friends.insert(user.into(), FriendCaps { following, suppressed, ..FriendCaps::default() });
            if suppressed {
                s.opt_outs.insert(user.into(), "cli".into());
            } else {
                s.opt_outs.remove(user);
            }
        });
    }

    /// The friend follows the account (again), or no longer does; caps and opt-out are kept.
    pub fn set_following(&self, user: &str, following: bool) {
        let _ = self.with(|s| s.friends.entry(user.into()).or_default().following = following);
    }

    /// The campaign runs in one of the friend's cap sets.
    pub fn cap_set(&self, user: &str, attribute: &str) -> Vec<String> {
        self.with(|s| s.friends.get(user).and_then(|f| f.sets.get(attribute).cloned()).unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn campaign(&self, id: &str) -> Option<Campaign> {
        self.with(|s| s.campaigns.get(id).cloned()).ok().flatten()
    }

    /// What `oa campaign resume` does to a held batch whose slots were given back, and to its
    /// campaign.
    pub fn unhold(&self, c: &Campaign, number: u32) -> bool {
        self.with(|s| {
            let Some(b) = s.batches.get_mut(&key(c, number)) else { return false };
            if b.state != BatchState::Held || (b.held_from == Some(BatchState::Planned) && b.reserved) {
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
                s.batches.insert(batch_key, Batch::planned(c.plan_page, page.to.clone()));
            }
            true
        })
    }

    async fn finish_if_done(&self, c: &Campaign) -> Result<bool, BackendError> {
        self.with(|s| match s.campaigns.get_mut(&c.id) {
            Some(stored)
                if stored.run == c.run
                    && stored.plan_done
                    && stored.counters.settled >= stored.counters.batches
                    && stored.state.sends() =>
            {
                stored.state = if stored.counters.unknown > 0 { State::NeedsAttention } else { State::Done };
                true
            }
            _ => false,
        })
    }
}

#[async_trait]
impl BatchRepo for MemoryCampaigns {
    async fn batch(&self, c: &Campaign, number: u32) -> Result<Option<Batch>, BackendError> {
        self.with(|s| s.batches.get(&key(c, number)).cloned())
    }

    async fn batches_in(&self, c: &Campaign, states: &[BatchState]) -> Result<Vec<(u32, BatchState)>, BackendError> {
        self.with(|s| {
            let mut found: Vec<(u32, BatchState)> = s
                .batches
                .iter()
                .filter(|((id, run, _), b)| id == &c.id && run == &c.run && states.contains(&b.state))
                .map(|((_, _, n), b)| (*n, b.state))
                .collect();
            found.sort_by_key(|(n, _)| *n);
            found
        })
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

    async fn release_lease(&self, c: &Campaign, number: u32, owner: &str, now_ms: i64) -> Result<(), BackendError> {
        self.with(|s| {
            if let Some(b) = s.batches.get_mut(&key(c, number)).filter(|b| b.lease_owner.as_deref() == Some(owner)) {
                b.lease_owner = None;
                b.lease_until_ms = now_ms;
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
        retry_key: &str,
        _now_ms: i64,
    ) -> Result<bool, BackendError> {
        self.with(|s| match s.batches.get_mut(&key(c, number)) {
            Some(b) if b.state == BatchState::Planned && b.lease_owner.as_deref() == Some(owner) => {
                b.state = BatchState::Frozen;
                b.frozen = Some(mask.to_vec());
                b.skips = *skips;
                b.retry_key = Some(retry_key.into());
                true
            }
            _ => false,
        })
    }

    async fn begin_reserve(
        &self,
        c: &Campaign,
        batch: &Batch,
        owner: &str,
        cap_attrs: &[String],
        now_ms: i64,
    ) -> Result<bool, BackendError> {
        self.with(|s| match s.batches.get_mut(&key(c, batch.number)) {
            Some(b)
                if b.state == BatchState::Planned
                    && b.lease_owner.as_deref() == Some(owner)
                    && !b.reserved
                    && b.generation == batch.generation =>
            {
                b.generation += 1;
                b.reserved = true;
                b.reserved_at_ms = Some(now_ms);
                b.cap_attrs = cap_attrs.to_vec();
                true
            }
            _ => false,
        })
    }

    async fn unfreeze(&self, c: &Campaign, number: u32, owner: &str) -> Result<bool, BackendError> {
        self.with(|s| match s.batches.get_mut(&key(c, number)) {
            Some(b)
                if b.state == BatchState::Frozen
                    && b.lease_owner.as_deref() == Some(owner)
                    && !b.reserved
                    && !b.call_open =>
            {
                b.state = BatchState::Planned;
                b.frozen = None;
                b.retry_key = None;
                b.skips = Skips::default();
                b.first_called_at_ms = None;
                b.attempts = 0;
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
        if batch.budget.is_some() {
            return Ok(true);
        }
        self.with(|s| {
            let Some(b) = s.batches.get_mut(&key(c, batch.number)) else { return false };
            if let Some(taken) = &b.budget {
                return *taken == (month.to_string(), n) && b.budget_round == batch.generation;
            }
            if b.generation != batch.generation {
                return false;
            }
            let used = s.budget_used.entry(month.to_string()).or_default();
            if *used + n > limit {
                return false;
            }
            *used += n;
            b.budget = Some((month.to_string(), n));
            b.budget_round = batch.generation;
            true
        })
    }

    async fn return_budget(&self, c: &Campaign, batch: &Batch) -> Result<(), BackendError> {
        // What the stored batch took, whatever the caller's copy says, unless a later round took
        // it (a stale give-back never returns a later round's take; an earlier one's left over is).
        self.with(|s| {
            let Some(b) = s.batches.get_mut(&key(c, batch.number)).filter(|b| b.budget_round <= batch.generation)
            else {
                return;
            };
            if let Some((month, n)) = b.budget.take() {
                let used = s.budget_used.entry(month).or_default();
                *used = used.saturating_sub(n);
            }
        })
    }

    async fn budget_used(&self, month: &str) -> Result<u64, BackendError> {
        self.with(|s| s.budget_used.get(month).copied().unwrap_or(0))
    }

    async fn gave_back(&self, c: &Campaign, number: u32, generation: u32) -> Result<bool, BackendError> {
        self.with(|s| match s.batches.get_mut(&key(c, number)) {
            Some(b) if b.reserved && b.generation == generation => {
                b.reserved = false;
                b.cap_attrs.clear();
                true
            }
            _ => false,
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
        let lost = take_fault(&self.lose_settle_answers);
        let settled = self.with(|s| {
            let Some(b) = s.batches.get_mut(&key(c, batch.number)) else { return false };
            if b.state != batch.state || b.lease_owner.as_deref() != Some(owner) {
                return false;
            }
            // An earlier run's batch still settles; its counts go to that run, which nobody reads any
            // more (its own counter shards in DynamoDB).
            let mut earlier_run = c.clone();
            let stored = match s.campaigns.get_mut(&c.id).filter(|st| st.run == c.run) {
                Some(stored) => stored,
                None => &mut earlier_run,
            };
            b.state = outcome.state;
            if outcome.request_id.is_some() {
                b.request_id = outcome.request_id.clone();
            }
            b.lease_owner = None;
            b.lease_until_ms = 0;
            // An unknown outcome keeps its reservation until a person resolves it.
            if !outcome.release_slots && outcome.state != BatchState::Unknown {
                b.reserved = false;
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
        })?;
        if lost {
            return Err(BackendError::Store {
                operation: "TransactWriteItems",
                message: "injected: answer lost".into(),
            });
        }
        Ok(settled)
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
            b.lease_until_ms = 0;
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

    async fn unhold(&self, c: &Campaign, batch: &Batch) -> Result<bool, BackendError> {
        self.with(|s| {
            let Some(b) = s.batches.get_mut(&key(c, batch.number)) else { return false };
            if b.state != BatchState::Held || (b.held_from == Some(BatchState::Planned) && b.reserved) {
                return false;
            }
            // An earlier run's batch still settles; its counts go to that run, which nobody reads any
            // more (its own counter shards in DynamoDB).
            let mut earlier_run = c.clone();
            let stored = match s.campaigns.get_mut(&c.id).filter(|st| st.run == c.run) {
                Some(stored) => stored,
                None => &mut earlier_run,
            };
            b.state = b.held_from.take().unwrap_or(BatchState::Planned);
            stored.counters.held = stored.counters.held.saturating_sub(b.to.len() as u64);
            true
        })
    }

    async fn resolve_unknown(
        &self,
        c: &Campaign,
        batch: &Batch,
        delivered: bool,
        _now_ms: i64,
    ) -> Result<bool, BackendError> {
        let n_to = batch.send_list().len() as u64;
        self.with(|s| {
            let Some(b) = s.batches.get_mut(&key(c, batch.number)).filter(|b| b.state == BatchState::Unknown) else {
                return false;
            };
            // An earlier run's batch still settles; its counts go to that run, which nobody reads any
            // more (its own counter shards in DynamoDB).
            let mut earlier_run = c.clone();
            let stored = match s.campaigns.get_mut(&c.id).filter(|st| st.run == c.run) {
                Some(stored) => stored,
                None => &mut earlier_run,
            };
            b.state = if delivered { BatchState::Sent } else { BatchState::Failed };
            if delivered {
                b.reserved = false;
                b.cap_attrs.clear();
            }
            let k = &mut stored.counters;
            k.unknown = k.unknown.saturating_sub(n_to);
            if delivered {
                k.sent += n_to;
            } else {
                k.failed += n_to;
            }
            true
        })
    }
}

#[async_trait]
impl CampaignAdmin for MemoryCampaigns {
    async fn create(
        &self,
        file: &CampaignFile,
        source: &str,
        resend: bool,
        now_ms: i64,
    ) -> Result<Created, BackendError> {
        self.with(|s| {
            if let Some(c) = s.campaigns.get(&file.id) {
                if !matches!(c.state, State::Draft | State::Cancelled | State::Done) {
                    return Created::InUse { state: c.state };
                }
            }
            let run = uuid_simple();
            let c = Campaign {
                id: file.id.clone(),
                run: run.clone(),
                name: file.name.clone(),
                segment: file.segment.clone(),
                messages: file.messages.0.clone(),
                holdout_bps: file.holdout,
                budget: file.budget.map(|b| b.messages),
                transactional: file.transactional,
                not_before_ms: file.schedule.not_before_ms(),
                state: State::Draft,
                source: source.to_string(),
                created_at_ms: now_ms,
                started_at_ms: None,
                batch_size: file.batch_size,
                aggregation_unit: file.aggregation_unit.clone(),
                resend,
                ..campaign(&file.id, &[], false)
            };
            s.campaigns.insert(file.id.clone(), c);
            Created::Created { run }
        })
    }

    async fn start(
        &self,
        id: &str,
        settings: &AccountSettings,
        to: State,
        now_ms: i64,
    ) -> Result<Option<Campaign>, BackendError> {
        self.with(|s| match s.campaigns.get_mut(id) {
            Some(c) if c.state == State::Draft => {
                c.state = to;
                c.started_at_ms = Some(now_ms);
                c.caps = settings.caps.clone();
                c.timezone = settings.timezone.name().to_string();
                c.policy = Policy::of(settings);
                c.reason = None;
                Some(c.clone())
            }
            _ => None,
        })
    }

    async fn list(&self) -> Result<Vec<Campaign>, BackendError> {
        self.with(|s| {
            let mut all: Vec<Campaign> = s.campaigns.values().cloned().collect();
            all.sort_by_key(|c| std::cmp::Reverse(c.created_at_ms));
            all
        })
    }

    async fn save_preview(&self, id: &str, preview: &Value) -> Result<(), BackendError> {
        self.with(|s| match s.campaigns.get_mut(id) {
            Some(c) => {
                c.preview = Some(preview.clone());
                Ok(())
            }
            None => Err(BackendError::Store {
                operation: "UpdateItem",
                message: "ConditionalCheckFailedException: no such campaign".into(),
            }),
        })?
    }

    async fn done_when_resolved(&self, c: &Campaign) -> Result<bool, BackendError> {
        self.with(|s| match s.campaigns.get_mut(&c.id) {
            Some(stored)
                if stored.run == c.run && stored.state == State::NeedsAttention && stored.counters.unknown == 0 =>
            {
                stored.state = State::Done;
                stored.reason = None;
                true
            }
            _ => false,
        })
    }
}
