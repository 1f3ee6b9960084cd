//! The fleet's multicast rate: one schedule shared by every sender, in one DynamoDB item.
//!
//! Each request claims the schedule's next free slot (`next`, microseconds) and moves it on by one
//! interval in the same conditional update, then waits for its slot: the generic cell rate
//! algorithm with no burst allowance. However many senders run at once, their requests leave at
//! least one interval apart, so no 100 ms window holds more than its share of `sendRate`. An idle
//! schedule (its `next` in the past) starts again at now.
//!
//! A slot is a time to send at, and a sender can wake a few milliseconds late for it (its machine
//! was busy). A late request would leave less than the schedule's spacing to the ones after it;
//! so a request that may have reached LINE later than the spacing absorbs (it left late, or its
//! answer was slow) is recorded, and every sender reads the record shortly before its own slot: no
//! request leaves earlier than [`FLOOR`] of the schedule's spacing after a recorded one
//! ([`floor_after`]). A late request then costs the requests after it a little delay instead of
//! costing the schedule a slot. Every record holds the slots after it back the same way, so the
//! item keeps one number for all of them (`lateAnchor`, see [`anchor`]), not a list.
//!
//! A rate-limit 429 (another tool on the channel, or LINE's limit below `sendRate`) cuts the
//! shared rate in half and pushes every sender's next slot back by a jittered pause; the rate then
//! climbs back by [`RAISE_PER_SEC`] of `sendRate` a second (additive increase, multiplicative
//! decrease). One cut a second at most: a storm of 429s answering one burst halves the rate once.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use crate::adapters::attr::{int, n, s, Item};
use crate::adapters::describe;
use crate::ports::BackendError;

/// The share of `sendRate` the schedule aims at: the few milliseconds of jitter between a slot
/// and the request's arrival at LINE then never put one request too many in a 100 ms window.
pub const MARGIN: f64 = 0.96;
/// After a cut, the rate climbs back by this share of `sendRate` each second.
pub const RAISE_PER_SEC: f64 = 0.02;
/// A request leaves no earlier than this share of the schedule's spacing after one that left
/// late (and recorded it): at 0.96 of 20 a second, two slots are at least 103.6 ms apart.
pub const FLOOR: f64 = 0.995;
/// The lateness the spacing absorbs by itself: two slots at [`FLOOR`] are 103.6 ms apart at 0.96
/// of 20 a second, so a request up to 2.5 ms late still reaches LINE over 100 ms before the second
/// after it. A request later than that is recorded as leaving this much less late than it did.
pub const ABSORBED_US: i64 = 2_500;
/// A request that may have reached LINE this much after its slot (or floor) is recorded.
pub const LATE_RECORD_US: i64 = 3_000;
/// A slow answer holds the requests after it back by at most this much.
pub const MAX_EXCESS_US: i64 = 50_000;
/// ... and the first answer of a process (nothing says yet what is usual) by at most this much.
pub const FIRST_EXCESS_US: i64 = 20_000;
/// A record holds the requests after it back by at most this much past the time its request was
/// due.
pub const MAX_RECORDED_US: i64 = 60_000;
/// The usual answer time is the fastest of this many recent ones.
const RTT_WINDOW: usize = 64;
/// An answer later than this after its request left is not recorded: the requests it could
/// protect have read the record before it would land (LINE is far away; the record made as the
/// request left is what holds them).
pub const ANSWER_USEFUL_US: i64 = 50_000;
/// A slot further ahead than this is given up: the batch comes back later instead of holding
/// its lease while it waits.
pub const MAX_WAIT_MS: i64 = 20_000;

/// The shared schedule as last seen.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PaceState {
    /// The next free slot, µs since the epoch.
    pub next_us: i64,
    /// The rate after the last cut, and when it was cut.
    pub cut: Option<(f64, i64)>,
}

impl PaceState {
    /// Requests a second now: `rate`, or less while climbing back from a cut.
    pub fn effective_rate(&self, rate: u32, now_ms: i64) -> f64 {
        let rate = f64::from(rate.max(1));
        match self.cut {
            Some((cut, at)) => (cut + rate * RAISE_PER_SEC * ((now_ms - at).max(0) as f64 / 1000.0)).min(rate),
            None => rate,
        }
    }

    /// Microseconds between two requests.
    pub fn interval_us(&self, rate: u32, now_ms: i64) -> i64 {
        (1_000_000.0 / (self.effective_rate(rate, now_ms) * MARGIN)).ceil() as i64
    }

    /// The rate a 429 cuts to.
    pub fn cut_to(&self, rate: u32, now_ms: i64) -> f64 {
        (self.effective_rate(rate, now_ms) / 2.0).max(0.5)
    }
}

/// A request of `slot` that may have reached LINE at `at` (µs) holds every slot `x` after it to
/// `at + FLOOR × (x − slot)`, which is `anchor + FLOOR × x`: one number per record, and the
/// largest one binds. (A slot before the record would be held too, but its request reads the
/// schedule before the record's own slot, so before the record exists.)
pub fn anchor(slot: i64, at: i64) -> i64 {
    at.saturating_sub((slot as f64 * FLOOR) as i64)
}

/// The earliest time the request of `slot` may leave, given the largest recorded anchor: its
/// slot, or later where a request before it was late.
pub fn floor_after(slot: i64, anchor: Option<i64>) -> i64 {
    anchor.map_or(slot, |a| slot.max(a.saturating_add((slot as f64 * FLOOR) as i64)))
}

/// How long every sender stays quiet after a rate-limit 429 (LINE sends no Retry-After).
pub fn pause_after_429_ms() -> i64 {
    500 + fastrand::i64(0..=500)
}

/// The answer times (µs) of a process's recent requests: how much slower than usual one was.
#[derive(Default)]
pub struct AnswerTimes(std::sync::Mutex<std::collections::VecDeque<i64>>);

impl AnswerTimes {
    /// Notes `rtt` and returns how much slower it was than the fastest recent one, at most
    /// [`MAX_EXCESS_US`]; all of it for the first (nothing says yet what is usual), at most
    /// [`FIRST_EXCESS_US`].
    pub fn excess(&self, rtt: i64) -> i64 {
        let Ok(mut recent) = self.0.lock() else { return 0 };
        let excess = match recent.iter().copied().min() {
            Some(fastest) => (rtt - fastest).clamp(0, MAX_EXCESS_US),
            None => rtt.clamp(0, FIRST_EXCESS_US),
        };
        if recent.len() == RTT_WINDOW {
            recent.pop_front();
        }
        recent.push_back(rtt);
        excess
    }
}

#[async_trait]
pub trait Pacer: Send + Sync {
    /// Claims the fleet's next slot at `rate` requests a second, `earliest_us` or later: the
    /// time to send at, µs since the epoch. None: the schedule is full up to `earliest_us +
    /// MAX_WAIT_MS`, and nothing was claimed (a claim that is given up would push every later
    /// sender back).
    async fn claim(&self, rate: u32, earliest_us: i64) -> Result<Option<i64>, BackendError>;
    /// LINE answered a rate-limit 429: the whole fleet slows down.
    async fn rate_limited(&self, rate: u32, now_ms: i64) -> Result<(), BackendError>;
    /// The earliest time (µs) the request of `slot` may leave: see [`floor_after`].
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

/// The schedule in memory (one process): the same algorithm, for the logic's tests.
#[derive(Default)]
pub struct MemoryPacer {
    state: std::sync::Mutex<PaceState>,
    anchor: std::sync::Mutex<Option<i64>>,
    answers: AnswerTimes,
}

impl MemoryPacer {
    pub fn state(&self) -> PaceState {
        self.state.lock().map(|s| *s).unwrap_or_default()
    }
}

#[async_trait]
impl Pacer for MemoryPacer {
    async fn claim(&self, rate: u32, now_us: i64) -> Result<Option<i64>, BackendError> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| BackendError::Store { operation: "pace", message: "memory pacer poisoned".into() })?;
        let slot = s.next_us.max(now_us);
        if slot > now_us + MAX_WAIT_MS * 1000 {
            return Ok(None);
        }
        s.next_us = slot + s.interval_us(rate, now_us.div_euclid(1000));
        Ok(Some(slot))
    }

    async fn rate_limited(&self, rate: u32, now_ms: i64) -> Result<(), BackendError> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| BackendError::Store { operation: "pace", message: "memory pacer poisoned".into() })?;
        if s.cut.is_some_and(|(_, at)| at > now_ms - 1000) {
            return Ok(());
        }
        s.cut = Some((s.cut_to(rate, now_ms), now_ms));
        s.next_us = s.next_us.max((now_ms + pause_after_429_ms()) * 1000);
        Ok(())
    }

    async fn floor(&self, slot: i64) -> Result<i64, BackendError> {
        Ok(floor_after(slot, self.anchor.lock().ok().and_then(|a| *a)))
    }

    async fn sent_late(&self, slot: i64, at: i64) -> Result<(), BackendError> {
        if let Ok(mut a) = self.anchor.lock() {
            *a = Some(a.map_or(anchor(slot, at), |a| a.max(anchor(slot, at))));
        }
        Ok(())
    }

    fn answer_times(&self) -> &AnswerTimes {
        &self.answers
    }
}

/// The schedule in the campaigns table (item `pace#multicast`), shared by every sender.
#[derive(Clone)]
pub struct DynamoPacer {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The schedule as this process last saw it (its cut, for the interval of the next claim).
    seen: std::sync::Arc<std::sync::Mutex<PaceState>>,
    answers: std::sync::Arc<AnswerTimes>,
}

impl DynamoPacer {
    pub fn new(client: aws_sdk_dynamodb::Client, campaigns_table: impl Into<String>) -> Self {
        DynamoPacer { client, table: campaigns_table.into(), seen: Default::default(), answers: Default::default() }
    }

    fn key() -> Item {
        Item::from([("pk".to_string(), s("pace#multicast")), ("sk".to_string(), s("pace"))])
    }

    fn seen(&self) -> PaceState {
        self.seen.lock().map(|s| *s).unwrap_or_default()
    }

    fn remember(&self, item: Option<&Item>) {
        let Some(item) = item else { return };
        let cut = match (item.get("cutRate").and_then(|v| v.as_n().ok()), int(item, "cutAt")) {
            (Some(r), Some(at)) => r.parse::<f64>().ok().map(|r| (r, at)),
            _ => None,
        };
        if let Ok(mut s) = self.seen.lock() {
            *s = PaceState { next_us: int(item, "next").unwrap_or(0), cut };
        }
    }

    /// One conditional update; `Ok(None)`: its condition did not hold.
    async fn update(
        &self,
        expression: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Option<Item>, BackendError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key()))
            .update_expression(expression)
            .condition_expression(condition)
            .return_values(ReturnValue::AllOld);
        if expression.contains("#next") || condition.contains("#next") {
            request = request.expression_attribute_names("#next", "next");
        }
        for (k, v) in values {
            request = request.expression_attribute_values(k, v);
        }
        match request.send().await {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => Ok(None),
            Err(e) => Err(BackendError::Store { operation: "UpdateItem", message: describe(&e) }),
        }
    }
}

#[async_trait]
impl Pacer for DynamoPacer {
    async fn claim(&self, rate: u32, now_us: i64) -> Result<Option<i64>, BackendError> {
        let now_ms = now_us.div_euclid(1000);
        let horizon_us = now_us + MAX_WAIT_MS * 1000;
        for _ in 0..8 {
            let interval = self.seen().interval_us(rate, now_ms);
            // A busy schedule: take its next slot, unless it is beyond the horizon.
            let busy = self
                .update(
                    "SET #next = #next + :i",
                    "#next BETWEEN :now AND :horizon",
                    vec![(":i", n(interval)), (":now", n(now_us)), (":horizon", n(horizon_us))],
                )
                .await?;
            if let Some(old) = busy {
                self.remember(Some(&old));
                return Ok(Some(int(&old, "next").unwrap_or(now_us)));
            }
            // An idle one: start it again at now.
            let idle = self
                .update(
                    "SET #next = :after",
                    "attribute_not_exists(#next) OR #next < :now",
                    vec![(":after", n(now_us + interval)), (":now", n(now_us))],
                )
                .await?;
            if let Some(old) = idle {
                self.remember(Some(&old));
                return Ok(Some(now_us));
            }
            // Neither busy within the horizon nor idle: full beyond it (or just moved; look again).
            let item = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(Self::key()))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| BackendError::Store { operation: "GetItem", message: describe(&e) })?
                .item;
            if item.as_ref().and_then(|i| int(i, "next")).is_some_and(|next| next > horizon_us) {
                self.remember(item.as_ref());
                return Ok(None);
            }
        }
        Err(BackendError::Store { operation: "UpdateItem", message: "the send schedule is contended".into() })
    }

    async fn rate_limited(&self, rate: u32, now_ms: i64) -> Result<(), BackendError> {
        let seen = self.seen();
        let cut = seen.cut_to(rate, now_ms);
        let resume_us = (now_ms + pause_after_429_ms()) * 1000;
        let once = "(attribute_not_exists(cutAt) OR cutAt < :recent)";
        let values = || vec![(":r", n(cut)), (":now", n(now_ms)), (":recent", n(now_ms - 1000))];
        // The schedule only ever moves forward: a slot already given out is never given again.
        let mut pushed = values();
        pushed.push((":resume", n(resume_us)));
        let done = self
            .update(
                "SET cutRate = :r, cutAt = :now, #next = :resume",
                &format!("{once} AND (attribute_not_exists(#next) OR #next < :resume)"),
                pushed,
            )
            .await?;
        if done.is_none() {
            self.update("SET cutRate = :r, cutAt = :now", once, values()).await?;
        }
        if let Ok(mut s) = self.seen.lock() {
            s.cut = Some((cut, now_ms));
        }
        tracing::warn!(rate = cut, "LINE rate-limited a multicast: the fleet slows down");
        Ok(())
    }

    async fn floor(&self, slot: i64) -> Result<i64, BackendError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key()))
            .projection_expression("lateAnchor")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| BackendError::Store { operation: "GetItem", message: describe(&e) })?
            .item;
        Ok(floor_after(slot, item.as_ref().and_then(|i| int(i, "lateAnchor"))))
    }

    async fn sent_late(&self, slot: i64, at: i64) -> Result<(), BackendError> {
        // Only ever raised: a smaller anchor binds nothing the larger one does not.
        let raised = self
            .update(
                "SET lateAnchor = :a",
                "attribute_not_exists(lateAnchor) OR lateAnchor < :a",
                vec![(":a", n(anchor(slot, at)))],
            )
            .await?;
        if raised.is_some() {
            tracing::debug!(slot, at, "a late request holds the next ones back");
        }
        Ok(())
    }

    fn answer_times(&self) -> &AnswerTimes {
        &self.answers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_one_interval_apart_whoever_claims_them() {
        let pacer = MemoryPacer::default();
        let mut slots = vec![];
        for _ in 0..40 {
            slots.push(pacer.claim(20, 1_000_000).await.unwrap().unwrap());
        }
        // 20 a second at 96%: 52.1 ms apart, so 3 slots never fit in 100 ms.
        assert!(slots.windows(2).all(|w| w[1] - w[0] >= 52_083), "{slots:?}");
        assert!(slots.windows(3).all(|w| w[2] - w[0] > 100_000));
        // An idle schedule starts again at now, not in the past.
        assert_eq!(pacer.claim(20, 1_000_000_000).await.unwrap(), Some(1_000_000_000));
    }

    #[tokio::test]
    async fn a_full_schedule_gives_no_slot_and_moves_nobody_back() {
        let pacer = MemoryPacer::default();
        // One a second: 20 s of slots, then none.
        let claimed: Vec<Option<i64>> = futures::future::join_all((0..25).map(|_| pacer.claim(1, 0)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(claimed.iter().filter(|s| s.is_some()).count(), 20);
        let next = pacer.state().next_us;
        assert_eq!(pacer.claim(1, 0).await.unwrap(), None);
        assert_eq!(pacer.state().next_us, next, "a refused claim takes nothing");
    }

    #[tokio::test]
    async fn a_late_request_holds_back_the_ones_after_it_until_the_slack_absorbs_it() {
        let pacer = MemoryPacer::default();
        let interval = PaceState::default().interval_us(20, 0);
        let slots: Vec<i64> = (0..4).map(|i| 1_794_700_800_000_000 + i * interval).collect();
        assert_eq!(pacer.floor(slots[2]).await.unwrap(), slots[2], "nobody late: the slot itself");
        // The first may have reached LINE 8 ms late: two slots later is held to 99.5% of two
        // intervals after that.
        pacer.sent_late(slots[0], slots[0] + 8_000).await.unwrap();
        let held = pacer.floor(slots[2]).await.unwrap();
        assert!((held - (slots[0] + 8_000 + (2.0 * interval as f64 * FLOOR) as i64)).abs() <= 1, "{held}");
        assert!(held - (slots[0] + 8_000) > 103_000, "three requests stay over 100 ms apart");
        // The slack absorbs it: 8 ms take 1,600 ms of slots (0.5% each).
        let far = slots[0] + 1_700_000;
        assert_eq!(pacer.floor(far).await.unwrap(), far);
        // A record that binds less changes nothing; one that binds more wins.
        pacer.sent_late(slots[1], slots[1] + 1_000).await.unwrap();
        assert_eq!(pacer.floor(slots[2]).await.unwrap(), held);
        pacer.sent_late(slots[1], slots[1] + 20_000).await.unwrap();
        assert!(pacer.floor(slots[2]).await.unwrap() > slots[1] + 20_000 + 51_000);
    }

    #[tokio::test]
    async fn only_lateness_the_spacing_cannot_absorb_is_recorded() {
        let slot = 1_794_700_800_000_000;
        let pacer = MemoryPacer::default();
        // Sent 1 ms after its slot: the spacing absorbs it.
        pacer.left(slot, slot, slot + 1_000).await.unwrap();
        assert_eq!(*pacer.anchor.lock().unwrap(), None);
        // Sent 10 ms after its floor: recorded as 7.5 ms late.
        pacer.left(slot, slot + 4_000, slot + 14_000).await.unwrap();
        assert_eq!(*pacer.anchor.lock().unwrap(), Some(anchor(slot, slot + 11_500)));
        // Never more than MAX_RECORDED_US past the time it was due.
        let pacer = MemoryPacer::default();
        pacer.left(slot, slot + 5_000, slot + 500_000).await.unwrap();
        assert_eq!(*pacer.anchor.lock().unwrap(), Some(anchor(slot, slot + 5_000 + MAX_RECORDED_US)));
    }

    #[tokio::test]
    async fn an_answer_slower_than_usual_is_recorded_as_a_late_arrival() {
        let pacer = MemoryPacer::default();
        // The first answer, 1 ms: nothing to compare with, all of it counts; absorbed.
        pacer.answered(1_000_000, 1_000_000, 1_000_000, 1_001_000).await.unwrap();
        // Usual answers: nothing recorded.
        for i in 1..5 {
            let t = 1_000_000 + i * 52_000;
            pacer.answered(t, t, t, t + 1_200).await.unwrap();
        }
        assert_eq!(*pacer.anchor.lock().unwrap(), None);
        // 9 ms slower than the fastest: it may have reached LINE 9 ms late; 6.5 ms recorded.
        pacer.answered(2_000_000, 2_000_000, 2_000_000, 2_010_000).await.unwrap();
        assert_eq!(*pacer.anchor.lock().unwrap(), Some(anchor(2_000_000, 2_006_500)));
        // An answer over ANSWER_USEFUL_US after its request left lands too late to protect anyone.
        let pacer = MemoryPacer::default();
        pacer.answered(1_000_000, 1_000_000, 1_000_000, 1_001_000).await.unwrap();
        pacer.answered(2_000_000, 2_000_000, 2_000_000, 2_000_000 + ANSWER_USEFUL_US + 1).await.unwrap();
        assert_eq!(*pacer.anchor.lock().unwrap(), None);
        // A first answer of 5 s counts as at most FIRST_EXCESS_US, a later one as MAX_EXCESS_US.
        assert_eq!(AnswerTimes::default().excess(5_000_000), FIRST_EXCESS_US);
        assert_eq!(pacer.answer_times().excess(5_000_000), MAX_EXCESS_US);
    }

    #[test]
    fn floors_never_overflow_on_any_anchor() {
        assert_eq!(floor_after(5, Some(i64::MAX)), i64::MAX);
        assert_eq!(floor_after(5, Some(i64::MIN)), 5);
        assert_eq!(anchor(i64::MAX, i64::MIN), i64::MIN);
    }

    #[tokio::test]
    async fn a_429_halves_the_rate_once_a_second_and_it_climbs_back() {
        let pacer = MemoryPacer::default();
        pacer.rate_limited(200, 10_000).await.unwrap();
        pacer.rate_limited(200, 10_100).await.unwrap();
        let s = pacer.state();
        assert_eq!(s.cut, Some((100.0, 10_000)), "the second 429 in the same second cuts nothing more");
        assert!(s.next_us >= 10_500_000, "every sender waits");
        assert_eq!(s.effective_rate(200, 15_000), 120.0);
        assert_eq!(s.effective_rate(200, 40_000), 200.0);
    }
}
