//! The seams of the campaign path, in the domain's words only: the planner, the sender and the
//! people's commands ([`super::admin`]) are written against these traits; DynamoDB, LINE and SQS
//! sit behind them in production ([`crate::adapters::dynamodb`], [`crate::adapters::line`]), and
//! in-memory twins in tests ([`crate::adapters::memory`]). One contract suite runs against both
//! kinds, so they cannot drift.
//!
//! Every change is conditional: `false` means the condition did not hold (someone else moved
//! first), never an error.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::Value;

use super::batch::{Batch, BatchState, Settlement};
use super::caps::{Demand, FriendCaps, Reservation};
use super::file::{AccountSettings, CampaignFile};
use super::model::{Campaign, Created, PlannedPage, Skips, State};
use super::pace::{AnswerTimes, ABSORBED_US, ANSWER_USEFUL_US, LATE_RECORD_US, MAX_RECORDED_US};
use super::price::Month;
use crate::line::answer::{Accepted, LineError};
use crate::ports::BackendError;
use crate::segment::resolve::Cursor;

/// A campaign's own item: its state, the planner's checkpoint and the counters.
#[async_trait]
pub trait CampaignRepo: Send + Sync {
    async fn get(&self, id: &str) -> Result<Option<Campaign>, BackendError>;
    /// Only the campaign's current run and state (read before every call to LINE, so a store
    /// keeps it small and off the counters' and the file's items).
    async fn state(&self, id: &str) -> Result<Option<(String, State)>, BackendError> {
        Ok(self.get(id).await?.map(|c| (c.run, c.state)))
    }
    /// Moves the campaign's `run` from one of `from` to `to` (with `reason`, or none).
    async fn transition(
        &self,
        id: &str,
        run: &str,
        from: &[State],
        to: State,
        reason: Option<&str>,
    ) -> Result<bool, BackendError>;
    /// Pauses a sending (or planning, or scheduled) run until `until_ms`, when the planner resumes
    /// it by itself (quiet hours). False: it was not sending.
    async fn pause_until(&self, id: &str, run: &str, reason: &str, until_ms: i64) -> Result<bool, BackendError>;
    /// Back from quiet hours: paused until exactly `until_ms` (not since paused by a person) to
    /// `to`.
    async fn resume_from_quiet(&self, id: &str, run: &str, until_ms: i64, to: State) -> Result<bool, BackendError>;
    /// Commits page `c.plan_page`: its batch, the checkpoint and the counters, at once; only if the
    /// stored page is still `c.plan_page` and the campaign is planning or sending.
    async fn commit_page(
        &self,
        c: &Campaign,
        page: &PlannedPage,
        next: Option<&Cursor>,
        now_ms: i64,
    ) -> Result<bool, BackendError>;
    /// Done (or needs attention) once planning finished and every batch settled.
    async fn finish_if_done(&self, c: &Campaign) -> Result<bool, BackendError>;
}

/// A campaign run's batches, and the account's monthly budget they take from.
#[async_trait]
pub trait BatchRepo: Send + Sync {
    async fn batch(&self, c: &Campaign, number: u32) -> Result<Option<Batch>, BackendError>;
    /// The run's batches in one of `states`, by number.
    async fn batches_in(&self, c: &Campaign, states: &[BatchState]) -> Result<Vec<(u32, BatchState)>, BackendError>;
    /// The run's batches that are not settled (planned, frozen or held), by number.
    async fn open_batches(&self, c: &Campaign) -> Result<Vec<(u32, BatchState)>, BackendError> {
        self.batches_in(c, &[BatchState::Planned, BatchState::Frozen, BatchState::Held]).await
    }
    /// Takes the batch's lease for `owner` until `until_ms`, unless another owner holds an
    /// unexpired one or the batch is settled or held.
    async fn lease(
        &self,
        c: &Campaign,
        number: u32,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, BackendError>;
    /// Lets go of the lease at `now_ms` (it ends then: the next sender takes the batch at once,
    /// and the sweep sees when it was last worked on).
    async fn release_lease(&self, c: &Campaign, number: u32, owner: &str, now_ms: i64) -> Result<(), BackendError>;
    /// The run's open batches with when their lease ends (0: never leased), by number.
    async fn open_leases(&self, c: &Campaign) -> Result<Vec<(u32, BatchState, i64)>, BackendError> {
        let mut out = vec![];
        for (number, state) in self.open_batches(c).await? {
            let until = self.batch(c, number).await?.map_or(0, |b| b.lease_until_ms);
            out.push((number, state, until));
        }
        Ok(out)
    }
    /// Begins reservation round `batch.generation + 1` of a planned batch: records it (and the
    /// cap attributes it reserves) before the first reservation is made. False: the lease was
    /// lost, the batch moved on, or an earlier round was not given back.
    async fn begin_reserve(
        &self,
        c: &Campaign,
        batch: &Batch,
        owner: &str,
        cap_attrs: &[String],
        now_ms: i64,
    ) -> Result<bool, BackendError>;
    /// Freezes the send list (`mask` over the recipients), the skips and the retry key, before
    /// the first call to LINE.
    #[allow(clippy::too_many_arguments)]
    async fn freeze(
        &self,
        c: &Campaign,
        number: u32,
        owner: &str,
        mask: &[bool],
        skips: &Skips,
        retry_key: &str,
        now_ms: i64,
    ) -> Result<bool, BackendError>;
    /// A frozen batch that LINE surely never took (no call open) and whose reservation was given
    /// back goes back to planned, to be decided again: its send list, key and skips go.
    async fn unfreeze(&self, c: &Campaign, number: u32, owner: &str) -> Result<bool, BackendError>;
    /// Records that a call is about to start: `firstCalledAt` (the first kept) and `callOpen`.
    async fn mark_called(&self, c: &Campaign, number: u32, owner: &str, now_ms: i64) -> Result<bool, BackendError>;
    /// After a clear refusal while no earlier call was open: the batch is surely not taken.
    async fn close_call(&self, c: &Campaign, number: u32, owner: &str) -> Result<bool, BackendError>;
    /// Takes the batch's `n` billable messages from the account's budget of `month` (most
    /// `limit`), once per batch: true if taken now or before, false if they do not fit.
    async fn take_budget(
        &self,
        c: &Campaign,
        batch: &Batch,
        month: &str,
        n: u64,
        limit: u64,
    ) -> Result<bool, BackendError>;
    /// Gives back what the batch's stored record says it took from the budget (it surely did not
    /// go out), only if that take is `batch.generation`'s; nothing if it took none.
    async fn return_budget(&self, c: &Campaign, batch: &Batch) -> Result<(), BackendError>;
    /// Messages the account's campaigns took from `month`'s budget (`m2026-11`).
    async fn budget_used(&self, month: &str) -> Result<u64, BackendError>;
    /// Reservation round `generation` was given back: the batch no longer records it. False: the
    /// batch records another round, or none.
    async fn gave_back(&self, c: &Campaign, number: u32, generation: u32) -> Result<bool, BackendError>;
    /// Settles a frozen batch (or a planned one whose recipients were all skipped) and adds its
    /// counts to the campaign's at once. An `unknown` outcome keeps its cap attributes until a
    /// person resolves it; so does one whose slots are to be given back.
    async fn settle(
        &self,
        c: &Campaign,
        batch: &Batch,
        owner: &str,
        outcome: &Settlement,
        now_ms: i64,
    ) -> Result<bool, BackendError>;
    /// Holds the batch (only while the campaign is not sending).
    async fn hold(&self, c: &Campaign, batch: &Batch, owner: &str, unfreeze: bool) -> Result<bool, BackendError>;
    /// Takes a held batch back to where it was held from (once its slots were given back).
    async fn unhold(&self, c: &Campaign, batch: &Batch) -> Result<bool, BackendError>;
    /// A person's decision on a batch whose outcome is unknown: `delivered` counts its recipients
    /// sent; otherwise they count failed and its slots are to be given back.
    async fn resolve_unknown(
        &self,
        c: &Campaign,
        batch: &Batch,
        delivered: bool,
        now_ms: i64,
    ) -> Result<bool, BackendError>;
}

/// Campaigns and their batches: what the planner and the sender keep.
pub trait CampaignStore: CampaignRepo + BatchRepo {}

impl<T: CampaignRepo + BatchRepo + ?Sized> CampaignStore for T {}

/// Friends as the caps see them: follow state, opt-out, and the campaign runs per period.
#[async_trait]
pub trait CapStore: Send + Sync {
    /// Follow state, opt-out, the demand's cap sets and what the friend remembers of the demand's
    /// campaign, of each friend (absent friends: not following).
    async fn friend_caps(&self, users: &[String], demand: &Demand)
        -> Result<HashMap<String, FriendCaps>, BackendError>;
    /// Every cap period of the demand, the minimum gap, follow state and opt-out, checked and
    /// reserved at once. A retry of the same member finds its own push and passes, and is reserved
    /// in the periods that began since, under their caps.
    async fn reserve(&self, user: &str, demand: &Demand, now_ms: i64) -> Result<Reservation, BackendError>;
    /// Gives the demand's slots in `attributes` back, the friend's last push before it, and the
    /// campaign's mark (all only where they are the demand's member's).
    async fn release(&self, user: &str, demand: &Demand, attributes: &[String]) -> Result<(), BackendError>;
    /// LINE accepted the member's push at `at_ms`: the friend's last push is then (while it is
    /// still the member's), so the minimum gap runs from when it went out.
    async fn pushed(&self, user: &str, demand: &Demand, at_ms: i64) -> Result<(), BackendError>;
}

/// Friends opted out of campaigns (`by`: `cli` or `settings`).
#[async_trait]
pub trait OptOuts: Send + Sync {
    /// Opts a friend out or back in. Opting back in removes only an opt-out made `by` the same
    /// means, so settings never undo an `oa suppress add`. False: nothing changed.
    async fn suppress(&self, user: &str, on: bool, by: &str, now_ms: i64) -> Result<bool, BackendError>;
    /// Every opted-out friend, with who opted them out, sorted.
    async fn suppressed(&self) -> Result<Vec<(String, String)>, BackendError>;
}

/// What people do to campaigns (`oa campaign ...`), beyond what the planner and the sender do.
#[async_trait]
pub trait CampaignAdmin: CampaignStore + CapStore + OptOuts {
    /// Creates the campaign as a draft (a new run), or replaces a draft, cancelled or done one of
    /// the same id.
    async fn create(
        &self,
        file: &CampaignFile,
        source: &str,
        resend: bool,
        now_ms: i64,
    ) -> Result<Created, BackendError>;
    /// Starts a draft: takes the account's caps, time zone and policy, and goes to `to`
    /// (planning, or scheduled). None: the campaign is not a draft (or does not exist).
    async fn start(
        &self,
        id: &str,
        settings: &AccountSettings,
        to: State,
        now_ms: i64,
    ) -> Result<Option<Campaign>, BackendError>;
    /// Every campaign, newest first.
    async fn list(&self) -> Result<Vec<Campaign>, BackendError>;
    /// Keeps the last preview on the campaign, to compare with what is planned and sent.
    async fn save_preview(&self, id: &str, preview: &Value) -> Result<(), BackendError>;
    /// Needs attention → done once no outcome is unknown any more.
    async fn done_when_resolved(&self, c: &Campaign) -> Result<bool, BackendError>;
}

/// LINE's multicast: one request, with its retry key (and the campaign's aggregation unit), and
/// the month's quota that tells a monthly-limit 429 from a rate-limit one.
#[async_trait]
pub trait Multicaster: Send + Sync {
    async fn multicast(
        &self,
        to: &[&str],
        messages: &[Value],
        retry_key: &str,
        unit: Option<&str>,
    ) -> Result<Accepted, LineError>;
    async fn month(&self) -> Result<Month, LineError>;
}

#[async_trait]
pub trait Pacer: Send + Sync {
    /// Claims the fleet's next slot at `rate` requests a second, `earliest_us` or later: the
    /// time to send at, µs since the epoch. None: the schedule is full up to `earliest_us +
    /// MAX_WAIT_MS`, and nothing was claimed (a claim that is given up would push every later
    /// sender back).
    async fn claim(&self, rate: u32, earliest_us: i64) -> Result<Option<i64>, BackendError>;
    /// The account's `sendRate` of settings `version` (`oa settings apply`; an older version's
    /// never overwrites it): no sender claims faster from then on, whatever rate its campaign
    /// started with.
    async fn set_rate(&self, rate: u32, version: u64) -> Result<(), BackendError>;
    /// LINE answered a rate-limit 429: the whole fleet slows down.
    async fn rate_limited(&self, rate: u32, now_ms: i64) -> Result<(), BackendError>;
    /// The earliest time (µs) the request of `slot` may leave: see [`super::pace::floor_after`].
    async fn floor(&self, slot: i64) -> Result<i64, BackendError>;
    /// The request of `slot` may have reached LINE as late as `at` (µs): the ones after it keep
    /// their distance.
    async fn sent_late(&self, slot: i64, at: i64) -> Result<(), BackendError>;
    /// This process's recent answer times.
    fn answer_times(&self) -> &AnswerTimes;

    /// The request of `slot`, due at `due` (its slot or floor), left at `sent`: recorded if late
    /// beyond what the spacing absorbs. Called as it leaves (the record is there for the requests
    /// after it in time even when LINE is far away).
    async fn left(&self, slot: i64, due: i64, sent: i64) -> Result<(), BackendError> {
        self.record_if_late(slot, due, sent - due).await
    }

    /// LINE took that request (2xx) and answered at `answered` (µs). An answer slower than the
    /// process's usual may mean the request reached LINE that much later (an answer bounds when it
    /// arrived): if that makes it late beyond what the spacing absorbs, it is recorded that late.
    /// Only 2xx answers count: a refusal is answered faster than work is done.
    async fn answered(&self, slot: i64, due: i64, sent: i64, answered: i64) -> Result<(), BackendError> {
        let excess = self.answer_times().excess(answered - sent);
        let late = sent - due + excess;
        // (Late by the sending alone: recorded as it left.)
        if excess > 250 && answered - sent <= ANSWER_USEFUL_US {
            self.record_if_late(slot, due, late).await?;
        }
        Ok(())
    }

    /// The request of `slot`, due at `due`, may have reached LINE `late` µs after it: recorded
    /// when that is more than the spacing absorbs, as that much less late, at most
    /// [`MAX_RECORDED_US`].
    async fn record_if_late(&self, slot: i64, due: i64, late: i64) -> Result<(), BackendError> {
        if late > LATE_RECORD_US {
            self.sent_late(slot, due + (late - ABSORBED_US).min(MAX_RECORDED_US)).await?;
        }
        Ok(())
    }
}
