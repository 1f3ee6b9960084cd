//! The fleet's send schedule in memory (one process): the same algorithm as in DynamoDB, for the
//! logic's tests.

use async_trait::async_trait;

use crate::campaign::pace::{anchor, floor_after, pause_after_429_ms, AnswerTimes, PaceState, MAX_WAIT_MS};
use crate::campaign::ports::Pacer;
use crate::ports::BackendError;

/// The schedule in memory (one process): the same algorithm, for the logic's tests.
#[derive(Default)]
pub struct MemoryPacer {
    state: std::sync::Mutex<PaceState>,
    anchor: std::sync::Mutex<Option<i64>>,
    answers: AnswerTimes,
    /// The settings version of the rate set.
    rate_version: std::sync::Mutex<u64>,
}

impl MemoryPacer {
    pub fn state(&self) -> PaceState {
        self.state.lock().map(|s| *s).unwrap_or_default()
    }

    /// The largest late record's anchor, if any.
    pub fn anchor(&self) -> Option<i64> {
        self.anchor.lock().ok().and_then(|a| *a)
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

    async fn set_rate(&self, rate: u32, version: u64) -> Result<(), BackendError> {
        let poisoned = || BackendError::Store { operation: "pace", message: "memory pacer poisoned".into() };
        let mut set = self.rate_version.lock().map_err(|_| poisoned())?;
        if *set < version {
            *set = version;
            self.state.lock().map(|mut s| s.rate = Some(rate)).map_err(|_| poisoned())?;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::pace::{
        AnswerTimes, ANSWER_USEFUL_US, FIRST_EXCESS_US, FLOOR, MAX_EXCESS_US, MAX_RECORDED_US,
    };

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
        assert_eq!(pacer.anchor(), None);
        // Sent 10 ms after its floor: recorded as 7.5 ms late.
        pacer.left(slot, slot + 4_000, slot + 14_000).await.unwrap();
        assert_eq!(pacer.anchor(), Some(anchor(slot, slot + 11_500)));
        // Never more than MAX_RECORDED_US past the time it was due.
        let pacer = MemoryPacer::default();
        pacer.left(slot, slot + 5_000, slot + 500_000).await.unwrap();
        assert_eq!(pacer.anchor(), Some(anchor(slot, slot + 5_000 + MAX_RECORDED_US)));
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
        assert_eq!(pacer.anchor(), None);
        // 9 ms slower than the fastest: it may have reached LINE 9 ms late; 6.5 ms recorded.
        pacer.answered(2_000_000, 2_000_000, 2_000_000, 2_010_000).await.unwrap();
        assert_eq!(pacer.anchor(), Some(anchor(2_000_000, 2_006_500)));
        // An answer over ANSWER_USEFUL_US after its request left lands too late to protect anyone.
        let pacer = MemoryPacer::default();
        pacer.answered(1_000_000, 1_000_000, 1_000_000, 1_001_000).await.unwrap();
        pacer.answered(2_000_000, 2_000_000, 2_000_000, 2_000_000 + ANSWER_USEFUL_US + 1).await.unwrap();
        assert_eq!(pacer.anchor(), None);
        // A first answer of 5 s counts as at most FIRST_EXCESS_US, a later one as MAX_EXCESS_US.
        assert_eq!(AnswerTimes::default().excess(5_000_000), FIRST_EXCESS_US);
        assert_eq!(pacer.answer_times().excess(5_000_000), MAX_EXCESS_US);
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
