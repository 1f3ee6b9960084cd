//! Sending one batch, exactly once: state first, lease, cap reservation, freeze (send list and a
//! random retry key), then multicast with the same body and key on every try.

use std::sync::Mutex;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use jiff::Timestamp;

use super::batch::{retry_key, Batch, BatchState, Settlement};
use super::caps::{Demand, Reservation};
use super::classify::Classifier;
use super::file::Period;
use super::give_back::{give_back, give_back_unsent, release_all};
use super::model::{period_attribute, BatchMessage, Campaign, PlanMessage, Skip, Skips, State};
use super::pace::{LATE_RECORD_US, MAX_WAIT_MS};
use super::ports::{CampaignStore, CapStore, Multicaster, Pacer};
use crate::line::answer::{Accepted, LineError};
use crate::ports::{BackendError, Clock, WorkQueue};
use crate::rules::window::Zone;

/// LINE forgets retry keys after 24 hours: a batch whose first ambiguous try is older than this
/// is never sent again automatically (it could go out twice).
pub const AMBIGUOUS_LIMIT_MS: i64 = 23 * 3600 * 1000;

/// A push LINE accepts this long after its reservation moves the recipients' last push to when it
/// went out (sooner, the reservation's time stands: the minimum gap is hours).
pub const PUSHED_LATE_MS: i64 = 60_000;

/// A fault a test injects into the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// The process dies after LINE answered 2xx, before anything is recorded.
    DieAfterLineAccepted,
    /// The machine is busy: the sender wakes this many ms late for its next slot.
    WakeLate(u64),
}

/// How a batch message was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// LINE took it (200, or 409: an earlier try with the key was taken).
    Sent { recipients: u64 },
    /// Every recipient was skipped at send time.
    AllSkipped,
    /// Settled before (a duplicate delivery) or from a replaced run: nothing to do.
    Duplicate,
    /// Kept back: the campaign is paused or cancelled (or was just paused by LINE's answer).
    Held(String),
    /// LINE refused this batch alone.
    Failed(String),
    /// Its outcome cannot be known any more; a person decides.
    Unknown,
}

/// Why the message must come back later (a failed batch item for SQS).
#[derive(Debug, thiserror::Error)]
pub enum Retry {
    #[error("another sender holds the batch's lease")]
    Leased,
    #[error("LINE did not take the batch yet: {0}")]
    Line(LineError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("batch {0} does not exist (yet)")]
    Missing(u32),
    #[error("failpoint: the sender died after LINE accepted the batch")]
    Died,
    #[error("the campaign is sending again: the batch goes out instead of being held")]
    Resumed,
    #[error("the fleet's next send slot is {0} ms away (or slots kept being missed): the batch comes back later")]
    Paced(i64),
}

pub struct Sender<'a> {
    pub store: &'a dyn CampaignStore,
    pub caps: &'a dyn CapStore,
    pub line: &'a dyn Multicaster,
    pub clock: &'a dyn Clock,
    /// This invocation's lease owner id.
    pub owner: String,
    pub lease: Duration,
    /// Tries within one invocation before the message goes back to the queue.
    pub attempts: u32,
    pub backoff: Duration,
    pub failpoint: &'a Mutex<Option<Failpoint>>,
    /// The fleet's shared send schedule.
    pub pacer: &'a dyn Pacer,
    /// campaign-queue: the plan message that resumes a campaign after its quiet hours.
    pub plans: &'a dyn WorkQueue,
    /// Recipients of the batches this sender settled as sent: LINE billed each once, and only
    /// the sender whose settlement was written counts it (the `LineMessagesBilled` metric).
    pub billed: &'a std::sync::atomic::AtomicU64,
}

/// The pause and quiet-hours checks run this long before the slot, so the call leaves on time.
const CHECK_LEAD_US: i64 = 100_000;
/// The late requests before a slot are read this long before it (late records are written
/// while their request is on its way: this leaves them time to land).
const FLOOR_READ_US: i64 = 60_000;
/// A call this late for its slot (or floor) waits for another one instead (its late record could
/// land after the ones it holds back have read theirs)...
const LATE_US: i64 = 20_000;
/// The read of the late requests before a slot waits this long at most (the slot is given up).
const FLOOR_READ_TIMEOUT: Duration = Duration::from_millis(50);
/// A late record is written within this much or not at all (it would land too late to hold anyone
/// back, and the batch's own record waits for it).
const RECORD_TIMEOUT: Duration = Duration::from_millis(50);
/// A late record is written this long after its call has left.
const RECORD_AFTER: Duration = Duration::from_millis(2);
/// A floor further than this past the slot is not believed.
const MAX_HELD_US: i64 = 1_000_000;
/// The runtime's timer ticks in milliseconds and wakes up to one late: it wakes a sender this
/// long before its slot, and a high-resolution sleep does the rest.
const FINE_US: i64 = 2_000;
/// ... at most this many times (storage too slow to keep the schedule): then the batch comes back.
const MAX_MISSED_SLOTS: u32 = 50;

/// `write` within [`RECORD_TIMEOUT`].
async fn bounded(write: impl std::future::Future<Output = Result<(), BackendError>>) -> Result<(), BackendError> {
    tokio::time::timeout(RECORD_TIMEOUT, write).await.unwrap_or_else(|_| {
        Err(BackendError::Store { operation: "UpdateItem", message: "late record not written in 50 ms".into() })
    })
}

impl Sender<'_> {
    pub async fn send(&self, message: &BatchMessage) -> Result<Sent, Retry> {
        let Some(c) = self.store.get(&message.campaign).await? else { return Ok(Sent::Duplicate) };
        if c.run != message.run {
            self.replaced(Campaign { run: message.run.clone(), ..c }, message.batch).await?;
            return Ok(Sent::Duplicate);
        }
        let Some(batch) = self.store.batch(&c, message.batch).await? else {
            return Err(Retry::Missing(message.batch));
        };
        if batch.state.is_settled() || batch.state == BatchState::Held {
            // A give-back cut short (by a crash or a storage error) is finished here.
            if batch.slots_to_give_back() {
                give_back(self.store, self.caps, &c, &batch, self.clock.now_ms()).await?;
            }
            // A settle whose answer was lost (a timeout, a crash) finishes the campaign here.
            if batch.state.is_settled() {
                self.store.finish_if_done(&c).await?;
            }
            return Ok(Sent::Duplicate);
        }
        let now = self.clock.now_ms();
        if !self.store.lease(&c, batch.number, &self.owner, now, now + self.lease.as_millis() as i64).await? {
            return Err(Retry::Leased);
        }
        // Read again under the lease: what was read before it may be stale (another sender may
        // have called LINE in between).
        let Some(mut batch) = self.store.batch(&c, message.batch).await? else {
            return Err(Retry::Missing(message.batch));
        };
        let result = if matches!(batch.state, BatchState::Planned | BatchState::Frozen) {
            self.leased(&c, &mut batch).await
        } else {
            if batch.state.is_settled() {
                self.store.finish_if_done(&c).await?;
            }
            Ok(Sent::Duplicate)
        };
        if matches!(result, Err(Retry::Line(_) | Retry::Backend(_) | Retry::Resumed | Retry::Paced(_))) {
            // Let the next delivery have it at once (a dead sender's lease expires instead).
            let _ = self.store.release_lease(&c, batch.number, &self.owner, self.clock.now_ms()).await;
        }
        result
    }

    async fn leased(&self, c: &Campaign, batch: &mut Batch) -> Result<Sent, Retry> {
        if !c.state.sends() {
            let unfreeze = !batch.call_open;
            return self.hold(c, batch, unfreeze, format!("campaign is {}", c.state.name())).await;
        }
        // LINE may have taken the batch while a call is open: one made before this invocation
        // that never got a clear answer (its sender may have died during it), or an ambiguous
        // one now (a timeout, a 5xx). Then only its body and retry key may send it again, and the
        // 23-hour limit applies. Otherwise it is decided (again) before each call.
        let mut maybe_taken = batch.call_open;
        let mut first_called = if maybe_taken { batch.first_called_at_ms } else { None };
        let mut decided = false;
        let mut last_error = None;
        for attempt in 0..self.attempts.max(1) {
            if attempt > 0 {
                let base = self.backoff.as_millis() as u64 * (1 << attempt.min(6));
                tokio::time::sleep(Duration::from_millis(base + fastrand::u64(0..=base))).await;
            }
            if maybe_taken && first_called.is_some_and(|t| self.clock.now_ms() - t > AMBIGUOUS_LIMIT_MS) {
                let outcome = settlement(BatchState::Unknown, 0, None, Some("first call is over 23 h old".into()));
                let unknown = batch.send_list().len() as u64;
                self.settle(c, batch, &Settlement { unknown, ..outcome }).await?;
                return Ok(Sent::Unknown);
            }
            if !maybe_taken && !decided {
                // (The campaign and the lease are fresh on the first try; a later one reads and
                // renews them.)
                if let Some(done) = self.decide(c, batch, attempt > 0).await? {
                    return Ok(done);
                }
                decided = true;
            }
            let to = batch.send_list();
            let key = batch.retry_key.clone().unwrap_or_default();
            // The fleet's next slot at the channel's rate. The checks run just before it; a slot
            // missed by far (slow storage) is given up for the next one. A request that leaves a
            // little late records it, and the ones after it keep their distance (`pace`).
            // (slot, due at, sent at)
            let mut sent = (0, 0, 0);
            for missed in 0.. {
                // No earlier than the checks below can be done by.
                let earliest = self.clock.now_us() + CHECK_LEAD_US;
                let Some(slot) = self.pacer.claim(c.policy.send_rate, earliest).await? else {
                    return Err(Retry::Paced(MAX_WAIT_MS));
                };
                if missed == MAX_MISSED_SLOTS {
                    return Err(Retry::Paced((slot - self.clock.now_us()).div_euclid(1000)));
                }
                self.sleep_until(slot - CHECK_LEAD_US).await;
                // Right before the call: a pause or cancel since the batch was picked up holds it.
                let now_state = self.store.state(&c.id).await?.filter(|(run, _)| *run == c.run).map(|(_, s)| s);
                if now_state.is_none_or(|s| !s.sends()) {
                    let why = format!("campaign is {}", now_state.map_or("gone", |s| s.name()));
                    return self.hold(c, batch, !maybe_taken, why).await;
                }
                let zone = Zone::parse(&c.timezone).unwrap_or_default();
                if let Some(until) = c.policy.quiet_until(self.clock.now_ms(), &zone) {
                    let why = self.pause_for_quiet_hours(c, until).await?;
                    return self.hold(c, batch, !maybe_taken, why).await;
                }
                let now = self.clock.now_ms();
                if !self.store.mark_called(c, batch.number, &self.owner, now).await? {
                    return Err(Retry::Leased);
                }
                first_called.get_or_insert(now);
                // How far late requests before it hold this one back; read again closer to a long
                // hold (a late request's record lands after it left). Unknown, or implausibly
                // long: the slot is given up, not guessed at.
                self.sleep_until(slot - FLOOR_READ_US).await;
                let mut due = self.floor(slot).await;
                if let Some(held) = due.filter(|d| d - slot > FLOOR_READ_US / 2 && d - slot <= MAX_HELD_US) {
                    self.sleep_until(held - FLOOR_READ_US).await;
                    due = self.floor(slot).await.map(|d| d.max(held));
                }
                if due.is_some_and(|d| d - slot > MAX_HELD_US) {
                    tracing::warn!(slot, ?due, "late requests hold this slot back over 1 s: it is given up");
                }
                if let Some(due) = due.filter(|d| d - slot <= MAX_HELD_US) {
                    self.wake_at(due).await;
                    if let Some(Failpoint::WakeLate(ms)) = self.fail(|f| matches!(f, Failpoint::WakeLate(_))) {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    let now = self.clock.now_us();
                    if now <= due + LATE_US {
                        sent = (slot, due, now);
                        break;
                    }
                }
                // No call was made: while no earlier one is open, LINE surely has nothing.
                if !maybe_taken {
                    if !self.store.close_call(c, batch.number, &self.owner).await? {
                        return Err(Retry::Leased);
                    }
                    first_called = None;
                }
                tracing::debug!(campaign = %c.id, batch = batch.number, "send slot missed: taking the next");
            }
            // Once the call is on its way: signing and sending the record first would delay it.
            let (slot, due, sent_at) = sent;
            let record = async {
                if sent_at - due > LATE_RECORD_US {
                    tokio::time::sleep(RECORD_AFTER).await;
                }
                bounded(self.pacer.left(slot, due, sent_at)).await
            };
            let call = async {
                let answer = self.line.multicast(&to, &c.messages, &key, c.aggregation_unit.as_deref()).await;
                (answer, self.clock.now_us())
            };
            let ((answer, answered_at), recorded) = tokio::join!(call, record);
            // An answer bounds when the request reached LINE; only a 2xx is timed (a refusal is
            // answered before any work, a timeout bounds nothing).
            let answered = match &answer {
                Ok(_) => bounded(self.pacer.answered(slot, due, sent_at, answered_at)).await,
                Err(_) => Ok(()),
            };
            for e in [recorded, answered].into_iter().filter_map(Result::err) {
                tracing::warn!(error = %e, "could not record a late request: the next ones may follow it closely");
            }
            if answer.is_ok() && self.fail(|f| *f == Failpoint::DieAfterLineAccepted).is_some() {
                return Err(Retry::Died);
            }
            // LINE's "monthly limit" decides; another 429 asks its quota endpoints.
            let answer = match answer {
                Err(e @ (LineError::MonthlyLimit | LineError::RateLimited)) => Err(self.which_429(e, to.len()).await),
                other => other,
            };
            match &answer {
                Err(e) if e.is_ambiguous() => maybe_taken = true,
                Err(LineError::RetryKeyAccepted { .. }) | Ok(_) => {}
                // A clear refusal of this call; if no call was open before it, nothing was taken:
                // the batch is decided again before its next call.
                Err(_) if !maybe_taken => {
                    if !self.store.close_call(c, batch.number, &self.owner).await? {
                        return Err(Retry::Leased);
                    }
                    first_called = None;
                    decided = false;
                }
                Err(_) => {}
            }
            match answer {
                Ok(Accepted { request_id }) | Err(LineError::RetryKeyAccepted { accepted_request_id: request_id }) => {
                    let outcome = settlement(BatchState::Sent, to.len() as u64, request_id, None);
                    self.settle(c, batch, &outcome).await?;
                    // Best effort: a push that stays at its reservation's time errs on the safe side.
                    if let Err(e) = self.went_out(c, batch, &to).await {
                        tracing::warn!(campaign = %c.id, batch = batch.number, error = %e, "could not move the last push to when it went out");
                    }
                    return Ok(Sent::Sent { recipients: to.len() as u64 });
                }
                Err(LineError::MonthlyLimit) => {
                    let reason = "quota: LINE's monthly message limit is reached";
                    self.pause(c, reason).await?;
                    return self.hold(c, batch, !maybe_taken, reason.into()).await;
                }
                Err(e) if e.is_campaign_wide() => {
                    let reason = format!("LINE refused the campaign: {e}");
                    self.pause(c, &reason).await?;
                    return self.hold(c, batch, !maybe_taken, reason).await;
                }
                Err(e) if e.is_retryable() => {
                    if matches!(e, LineError::RateLimited) {
                        // The whole fleet slows down; best effort (the refusal is recorded above).
                        if let Err(slow) = self.pacer.rate_limited(c.policy.send_rate, self.clock.now_ms()).await {
                            tracing::warn!(error = %slow, "could not slow the fleet down");
                        }
                    }
                    tracing::warn!(campaign = %c.id, batch = batch.number, attempt, error = %e, "multicast not taken yet");
                    last_error = Some(e);
                }
                Err(e) => {
                    // This batch alone is wrong. Its slots go back only if LINE surely never took
                    // it (while an earlier call is open, they stay).
                    let outcome = Settlement {
                        failed: to.len() as u64,
                        release_slots: !maybe_taken,
                        ..settlement(BatchState::Failed, 0, None, Some(e.to_string()))
                    };
                    self.settle(c, batch, &outcome).await?;
                    if !maybe_taken {
                        give_back(self.store, self.caps, c, batch, self.clock.now_ms()).await?;
                    }
                    return Ok(Sent::Failed(e.to_string()));
                }
            }
        }
        Err(Retry::Line(last_error.unwrap_or(LineError::Transport("no attempt made".into()))))
    }

    /// When the request of `slot` may leave (see `pace::floor_after`); None: not known in time.
    async fn floor(&self, slot: i64) -> Option<i64> {
        match tokio::time::timeout(FLOOR_READ_TIMEOUT, self.pacer.floor(slot)).await {
            Ok(Ok(due)) => Some(due),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not read the late requests before a slot: it is given up");
                None
            }
            Err(_) => {
                tracing::warn!("the late requests before a slot were not read in time: it is given up");
                None
            }
        }
    }

    /// The injected fault, taken, if it is one `which` picks.
    fn fail(&self, which: impl Fn(&Failpoint) -> bool) -> Option<Failpoint> {
        self.failpoint.lock().ok()?.take_if(|f| which(f))
    }

    /// Waits until the clock reads `at_us`, give or take the runtime timer's millisecond.
    async fn sleep_until(&self, at_us: i64) {
        let wait = at_us - self.clock.now_us();
        if wait > 0 {
            tokio::time::sleep(Duration::from_micros(wait as u64)).await;
        }
    }

    /// Waits until the clock reads `at_us`, precisely (the call's own time): the runtime's timer
    /// to within [`FINE_US`], then a high-resolution sleep on a blocking thread (microseconds
    /// late, where the timer's millisecond ticks would cost the schedule's slack).
    async fn wake_at(&self, at_us: i64) {
        self.sleep_until(at_us - FINE_US).await;
        // (At most the timer's step: a clock that jumped back does not hold a thread.)
        let fine = (at_us - self.clock.now_us()).min(FINE_US + 1_000);
        if fine > 0 {
            let wait = Duration::from_micros(fine as u64);
            if tokio::task::spawn_blocking(move || std::thread::sleep(wait)).await.is_err() {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// A 429 is the monthly limit when LINE says so ("You have reached your monthly limit."): its
    /// usage figures lag behind its own refusal, so they cannot overrule it. Any other 429 is the
    /// monthly limit only when LINE's quota endpoints say the month is used up (this batch would
    /// not fit), and the rate limit otherwise, or when they cannot be read.
    async fn which_429(&self, said: LineError, recipients: usize) -> LineError {
        if said == LineError::MonthlyLimit {
            return said;
        }
        match self.line.month().await {
            Ok(month) if month.quota.is_some_and(|q| month.used + recipients as u64 > q) => LineError::MonthlyLimit,
            Ok(_) => LineError::RateLimited,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the month's quota: taking the 429 for the rate limit");
                said
            }
        }
    }

    /// Pauses the campaign until its quiet hours end, and queues the plan message that resumes it
    /// then (the planner waits in steps of at most 15 minutes).
    async fn pause_for_quiet_hours(&self, c: &Campaign, until_ms: i64) -> Result<String, Retry> {
        let at = Timestamp::from_millisecond(until_ms).unwrap_or(Timestamp::UNIX_EPOCH);
        let why = format!("quiet hours: resumes by itself at {at}");
        // The wake-up first: a campaign paused without one would stay paused. A wake-up that
        // finds the campaign sending (another sender paused it first, or nobody did) does nothing.
        let wait = ((until_ms - self.clock.now_ms()) / 1000 + 1).clamp(1, 900) as u32;
        self.plans.send(&PlanMessage::body(c)?, wait).await?;
        self.store.pause_until(&c.id, &c.run, &why, until_ms).await?;
        Ok(why)
    }

    async fn pause(&self, c: &Campaign, reason: &str) -> Result<(), BackendError> {
        let sending = [State::Scheduled, State::Planning, State::Sending];
        self.store.transition(&c.id, &c.run, &sending, State::Paused, Some(reason)).await.map(|_| ())
    }

    /// A batch of a run replaced since (the campaign was cancelled and created again) that LINE
    /// surely never took: what it reserved goes back, under its lease (a sender of the old run
    /// may still hold it). One LINE may have taken keeps its reservation, and its friends stay
    /// marked as reached.
    async fn replaced(&self, old: Campaign, number: u32) -> Result<(), Retry> {
        let (now, lease) = (self.clock.now_ms(), self.lease.as_millis() as i64);
        if !give_back_unsent(self.store, self.caps, &old, number, &self.owner, now, lease).await? {
            return Err(Retry::Leased);
        }
        Ok(())
    }

    /// Decides the batch (again) before a call that LINE surely has not taken: what an earlier
    /// decision reserved goes back, then the period's caps, the opt-outs and follow state are
    /// checked and reserved under a new generation, the send list frozen with a new retry key,
    /// and the budget taken. Some: the batch ended here (every recipient skipped, or held for the
    /// budget).
    async fn decide(&self, c: &Campaign, batch: &mut Batch, again: bool) -> Result<Option<Sent>, Retry> {
        give_back(self.store, self.caps, c, batch, self.clock.now_ms()).await?;
        // (A take of an earlier round left over: a sender whose lease ran out.)
        if batch.budget.is_some() {
            self.store.return_budget(c, batch).await?;
        }
        batch.reserved = false;
        batch.budget = None;
        if batch.state == BatchState::Frozen {
            if !self.store.unfreeze(c, batch.number, &self.owner).await? {
                return Err(Retry::Leased);
            }
            batch.state = BatchState::Planned;
            batch.frozen = None;
            batch.retry_key = None;
            batch.skips = Skips::default();
        }
        let now = self.clock.now_ms();
        // Read under the lease: a pause, a cancel or a re-create since the campaign was read
        // holds the batch before anything is reserved (a re-create waits while the lease is held).
        let now_state = self.store.state(&c.id).await?.filter(|(run, _)| *run == c.run).map(|(_, s)| s);
        if now_state.is_none_or(|s| !s.sends()) {
            let why = format!("campaign is {}", now_state.map_or("gone", |s| s.name()));
            return self.hold(c, batch, true, why).await.map(Some);
        }
        // A full lease for the round on a later try (another sender takes the batch only once it
        // expires); the first try's was just taken.
        if again && !self.store.lease(c, batch.number, &self.owner, now, now + self.lease.as_millis() as i64).await? {
            return Err(Retry::Leased);
        }
        let demand = Classifier::of(c, now).demand;
        let attrs = demand.attributes();
        // The round recorded before its first reservation, so every path can give it back.
        if !self.store.begin_reserve(c, batch, &self.owner, &attrs, now).await? {
            return Err(Retry::Leased);
        }
        batch.generation += 1;
        batch.reserved = true;
        batch.reserved_at_ms = Some(now);
        batch.cap_attrs = attrs;
        let demand = demand.generation(batch.generation);
        let decided = self.reserve_and_freeze(c, batch, &demand).await;
        if decided.is_err() {
            // What this round reserved goes back now (the next sender would, but a sender that
            // lost its lease may have reserved after that one's give-back).
            let to = batch.reserved_users();
            if let Err(e) = release_all(self.caps, &to, &demand, &batch.cap_attrs).await {
                tracing::warn!(campaign = %c.id, batch = batch.number, error = %e, "could not give a cut-short round back");
            }
        }
        decided
    }

    /// Reserves every recipient under `demand`, freezes the send list with a new retry key and
    /// takes the budget. Some: the batch ended here (every recipient skipped, or held for the
    /// budget).
    async fn reserve_and_freeze(
        &self,
        c: &Campaign,
        batch: &mut Batch,
        demand: &Demand,
    ) -> Result<Option<Sent>, Retry> {
        let (mask, skips) = self.reserve(batch, demand).await?;
        let key = retry_key();
        if !self.store.freeze(c, batch.number, &self.owner, &mask, &skips, &key, self.clock.now_ms()).await? {
            return Err(Retry::Leased);
        }
        batch.state = BatchState::Frozen;
        batch.frozen = Some(mask);
        batch.retry_key = Some(key);
        batch.skips = skips;
        let count = batch.send_list().len() as u64;
        if count == 0 {
            let outcome = settlement(BatchState::Skipped, 0, None, None);
            self.settle(c, batch, &outcome).await?;
            return Ok(Some(Sent::AllSkipped));
        }
        if let Some(limit) = c.policy.monthly_budget {
            // The month the batch is taken from is the month LINE may first take it in.
            let zone = Zone::parse(&c.timezone).unwrap_or_default();
            let at = Timestamp::from_millisecond(self.clock.now_ms()).unwrap_or(Timestamp::UNIX_EPOCH);
            let month = period_attribute(Period::Month, at, &zone).replacen("cap#", "", 1);
            if !self.store.take_budget(c, batch, &month, count, limit).await? {
                let reason = format!("budget: the account's monthly budget of {limit} messages is used up ({month})");
                self.pause(c, &reason).await?;
                return self.hold(c, batch, true, reason).await.map(Some);
            }
            batch.budget = Some((month, count));
            batch.budget_round = batch.generation;
        }
        Ok(None)
    }

    /// LINE took the batch: a push that left over a minute after its reservation (a retried
    /// batch) moves its recipients' last push to now, so the minimum gap runs from when it went
    /// out.
    async fn went_out(&self, c: &Campaign, batch: &Batch, to: &[&str]) -> Result<(), BackendError> {
        let now = self.clock.now_ms();
        if c.transactional || c.policy.min_gap_ms <= 0 || batch.reserved_at_ms.is_none_or(|t| now - t <= PUSHED_LATE_MS)
        {
            return Ok(());
        }
        let demand = Classifier::of(c, now).demand.generation(batch.generation);
        let results: Vec<Result<(), BackendError>> = stream::iter(to.iter())
            .map(|user| self.caps.pushed(user, &demand, now))
            .buffer_unordered(16)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Reserves every recipient's cap slots (one conditional update each, a few at once).
    async fn reserve(&self, batch: &Batch, demand: &Demand) -> Result<(Vec<bool>, Skips), BackendError> {
        let now = self.clock.now_ms();
        let results: Vec<Result<Reservation, BackendError>> =
            stream::iter(batch.to.iter()).map(|user| self.caps.reserve(user, demand, now)).buffered(16).collect().await;
        let mut mask = Vec::with_capacity(results.len());
        let mut skips = Skips::default();
        for r in results {
            match r? {
                Reservation::Reserved => mask.push(true),
                Reservation::Refused(why) => {
                    skips.add(why, 1);
                    mask.push(false);
                }
            }
        }
        Ok((mask, skips))
    }

    async fn settle(&self, c: &Campaign, batch: &Batch, outcome: &Settlement) -> Result<(), Retry> {
        if self.store.settle(c, batch, &self.owner, outcome, self.clock.now_ms()).await? {
            if outcome.state == BatchState::Sent {
                self.billed.fetch_add(outcome.sent, std::sync::atomic::Ordering::Relaxed);
            }
        } else {
            // Settled by someone else (our lease expired): their record stands, and their count.
            tracing::warn!(campaign = %c.id, batch = batch.number, "batch settled by another sender");
        }
        self.store.finish_if_done(c).await?;
        Ok(())
    }

    /// Holds a leased batch. `unfreeze` (LINE surely never took it): its send list, key and call
    /// record are dropped and its reservation given back (a give-back cut short is finished by the
    /// next delivery, and resume waits for it); it is decided again when resumed.
    async fn hold(&self, c: &Campaign, batch: &Batch, unfreeze: bool, why: String) -> Result<Sent, Retry> {
        let unfreeze = unfreeze && batch.state == BatchState::Frozen;
        if !self.store.hold(c, batch, &self.owner, unfreeze).await? {
            // The campaign is sending again (resumed since it was read), or the lease was lost.
            return Err(Retry::Resumed);
        }
        if unfreeze || batch.state == BatchState::Planned {
            give_back(self.store, self.caps, c, batch, self.clock.now_ms()).await?;
        }
        Ok(Sent::Held(why))
    }
}

fn settlement(state: BatchState, sent: u64, request_id: Option<String>, error: Option<String>) -> Settlement {
    Settlement { state, sent, failed: 0, unknown: 0, request_id, error, release_slots: false }
}

/// Why a friend was skipped, for logs.
pub fn describe_skips(skips: &Skips) -> String {
    Skip::ALL
        .iter()
        .filter(|w| skips.get(**w) > 0)
        .map(|w| format!("{} {}", skips.get(*w), w.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
