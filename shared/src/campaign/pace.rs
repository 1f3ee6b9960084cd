//! The fleet's multicast rate: one schedule shared by every sender (the [`super::ports::Pacer`]
//! port; in DynamoDB, one item).
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
    /// The account's `sendRate` as `oa settings apply` last set it on the schedule: no campaign
    /// sends faster, those already running included (None: never set; a campaign's own rate).
    pub rate: Option<u32>,
}

impl PaceState {
    /// Requests a second now: `rate`, or less while climbing back from a cut.
    pub fn effective_rate(&self, rate: u32, now_ms: i64) -> f64 {
        let rate = f64::from(self.rate_for(rate).max(1));
        match self.cut {
            Some((cut, at)) => (cut + rate * RAISE_PER_SEC * ((now_ms - at).max(0) as f64 / 1000.0)).min(rate),
            None => rate,
        }
    }

    /// A campaign's rate under the account's: the lower (a race or a crash can only slow it).
    pub fn rate_for(&self, campaign_rate: u32) -> u32 {
        self.rate.map_or(campaign_rate, |r| r.min(campaign_rate))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_never_overflow_on_any_anchor() {
        assert_eq!(floor_after(5, Some(i64::MAX)), i64::MAX);
        assert_eq!(floor_after(5, Some(i64::MIN)), 5);
        assert_eq!(anchor(i64::MAX, i64::MIN), i64::MIN);
    }
}
