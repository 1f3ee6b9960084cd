//! The fleet's multicast rate: one schedule shared by every sender, in one DynamoDB item.
//!
//! Each request claims the schedule's next free slot (`next`, microseconds) and moves it on by one
//! interval in the same conditional update, then waits for its slot: the generic cell rate
//! algorithm with no burst allowance. However many senders run at once, their requests leave at
//! least one interval apart, so no 100 ms window holds more than its share of `sendRate`. An idle
//! schedule (its `next` in the past) starts again at now.
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

/// The millisecond a slot (µs) starts in, rounded up.
fn ms_after(us: i64) -> i64 {
    (us + 999).div_euclid(1000)
}

/// How long every sender stays quiet after a rate-limit 429 (LINE sends no Retry-After).
pub fn pause_after_429_ms() -> i64 {
    500 + fastrand::i64(0..=500)
}

#[async_trait]
pub trait Pacer: Send + Sync {
    /// Claims the fleet's next slot at `rate` requests a second, `earliest_ms` or later: the
    /// time (ms) to send at. None: the schedule is full up to `earliest_ms + MAX_WAIT_MS`, and
    /// nothing was claimed (a claim that is given up would push every later sender back).
    async fn claim(&self, rate: u32, earliest_ms: i64) -> Result<Option<i64>, BackendError>;
    /// LINE answered a rate-limit 429: the whole fleet slows down.
    async fn rate_limited(&self, rate: u32, now_ms: i64) -> Result<(), BackendError>;
}

/// The schedule in memory (one process): the same algorithm, for the logic's tests.
#[derive(Default)]
pub struct MemoryPacer {
    state: std::sync::Mutex<PaceState>,
}

impl MemoryPacer {
    pub fn state(&self) -> PaceState {
        self.state.lock().map(|s| *s).unwrap_or_default()
    }
}

#[async_trait]
impl Pacer for MemoryPacer {
    async fn claim(&self, rate: u32, now_ms: i64) -> Result<Option<i64>, BackendError> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| BackendError::Store { operation: "pace", message: "memory pacer poisoned".into() })?;
        let slot = s.next_us.max(now_ms * 1000);
        if slot > (now_ms + MAX_WAIT_MS) * 1000 {
            return Ok(None);
        }
        s.next_us = slot + s.interval_us(rate, now_ms);
        Ok(Some(ms_after(slot)))
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
}

/// The schedule in the campaigns table (item `pace#multicast`), shared by every sender.
#[derive(Clone)]
pub struct DynamoPacer {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The schedule as this process last saw it (its cut, for the interval of the next claim).
    seen: std::sync::Arc<std::sync::Mutex<PaceState>>,
}

impl DynamoPacer {
    pub fn new(client: aws_sdk_dynamodb::Client, campaigns_table: impl Into<String>) -> Self {
        DynamoPacer { client, table: campaigns_table.into(), seen: Default::default() }
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
    async fn claim(&self, rate: u32, now_ms: i64) -> Result<Option<i64>, BackendError> {
        let now_us = now_ms * 1000;
        let horizon_us = (now_ms + MAX_WAIT_MS) * 1000;
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
                return Ok(Some(ms_after(int(&old, "next").unwrap_or(now_us))));
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
                return Ok(Some(now_ms));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_one_interval_apart_whoever_claims_them() {
        let pacer = MemoryPacer::default();
        let mut slots = vec![];
        for _ in 0..40 {
            slots.push(pacer.claim(20, 1_000).await.unwrap().unwrap());
        }
        // 20 a second at 96%: 52.1 ms apart, so 3 slots never fit in 100 ms.
        assert!(slots.windows(2).all(|w| w[1] - w[0] >= 52), "{slots:?}");
        assert!(slots.windows(3).all(|w| w[2] - w[0] > 100));
        // An idle schedule starts again at now, not in the past.
        assert_eq!(pacer.claim(20, 1_000_000).await.unwrap(), Some(1_000_000));
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
