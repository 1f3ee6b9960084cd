//! The seams of the campaign path: the planner and the sender are written against these, with
//! DynamoDB and LINE behind them in production ([`super::store::CampaignStore`],
//! [`crate::line::client::LineClient`]) and in-memory ones for the logic's tests
//! ([`super::memory`]).

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::Value;

use super::model::{Skips, State};
use super::price::Month;
use super::store::{Batch, BatchState, Campaign, Demand, FriendCaps, PlannedPage, Reservation, Settlement};
use crate::line::client::{Accepted, LineError};
use crate::ports::BackendError;
use crate::segment::resolve::Cursor;

/// Campaigns and their batches. Every change is conditional: `false` means the condition did
/// not hold (someone else moved first), never an error.
#[async_trait]
pub trait CampaignRepo: Send + Sync {
    async fn get(&self, id: &str) -> Result<Option<Campaign>, BackendError>;
    /// Moves the campaign's `run` from one of `from` to `to`.
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
    /// The run's batches that are not settled (planned, frozen or held), by number.
    async fn open_batches(&self, c: &Campaign) -> Result<Vec<(u32, BatchState)>, BackendError>;
    /// Takes a held batch back to where it was held from (once its slots were given back).
    async fn unhold(&self, c: &Campaign, batch: &Batch) -> Result<bool, BackendError>;
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
    async fn batch(&self, c: &Campaign, number: u32) -> Result<Option<Batch>, BackendError>;
    async fn lease(
        &self,
        c: &Campaign,
        number: u32,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, BackendError>;
    async fn release_lease(&self, c: &Campaign, number: u32, owner: &str) -> Result<(), BackendError>;
    #[allow(clippy::too_many_arguments)]
    async fn freeze(
        &self,
        c: &Campaign,
        number: u32,
        owner: &str,
        mask: &[bool],
        skips: &Skips,
        cap_attrs: &[String],
        retry_key: &str,
        now_ms: i64,
    ) -> Result<bool, BackendError>;
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
    /// Gives a batch's budget back (it surely did not go out); nothing if it took none.
    async fn return_budget(&self, c: &Campaign, batch: &Batch) -> Result<(), BackendError>;
    /// Forgets the batch's cap attributes once its slots were given back.
    async fn clear_cap_attrs(&self, c: &Campaign, number: u32) -> Result<(), BackendError>;
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
}

/// Friends as the caps see them: follow state, opt-out, and the campaign runs per period.
#[async_trait]
pub trait CapStore: Send + Sync {
    async fn friend_caps(
        &self,
        users: &[String],
        attributes: &[String],
    ) -> Result<HashMap<String, FriendCaps>, BackendError>;
    /// One conditional update: every cap period of the demand, the minimum gap, follow state
    /// and opt-out.
    async fn reserve(&self, user: &str, demand: &Demand, now_ms: i64) -> Result<Reservation, BackendError>;
    /// Gives the demand's slots in `attributes` back, and the friend's last push before it.
    async fn release(&self, user: &str, demand: &Demand, attributes: &[String]) -> Result<(), BackendError>;
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
impl Multicaster for crate::line::client::LineClient {
    async fn multicast(
        &self,
        to: &[&str],
        messages: &[Value],
        retry_key: &str,
        unit: Option<&str>,
    ) -> Result<Accepted, LineError> {
        crate::line::client::LineClient::multicast(self, to, messages, retry_key, unit).await
    }

    async fn month(&self) -> Result<Month, LineError> {
        crate::line::client::LineClient::month(self).await
    }
}
