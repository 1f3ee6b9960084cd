//! A batch: at most 500 recipients of one campaign run, and where it is on its way to LINE
//! (planned, frozen with its send list and retry key, settled, or held), and how it ended.

use super::model::Skips;

/// The state of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    Planned,
    Frozen,
    Sent,
    Failed,
    Unknown,
    /// Every recipient was skipped at send time: nothing to send.
    Skipped,
    Held,
}

impl BatchState {
    pub fn name(self) -> &'static str {
        match self {
            BatchState::Planned => "planned",
            BatchState::Frozen => "frozen",
            BatchState::Sent => "sent",
            BatchState::Failed => "failed",
            BatchState::Unknown => "unknown",
            BatchState::Skipped => "skipped",
            BatchState::Held => "held",
        }
    }

    pub fn parse(s: &str) -> Option<BatchState> {
        use BatchState::*;
        [Planned, Frozen, Sent, Failed, Unknown, Skipped, Held].into_iter().find(|b| b.name() == s)
    }

    pub fn is_settled(self) -> bool {
        matches!(self, BatchState::Sent | BatchState::Failed | BatchState::Unknown | BatchState::Skipped)
    }
}

/// One batch: its recipients and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub number: u32,
    pub state: BatchState,
    /// The state a held batch goes back to on resume.
    pub held_from: Option<BatchState>,
    pub to: Vec<String>,
    pub lease_until_ms: i64,
    pub lease_owner: Option<String>,
    /// Which of `to` the frozen send list holds.
    pub frozen: Option<Vec<bool>>,
    pub retry_key: Option<String>,
    pub skips: Skips,
    /// The cap attributes of the reservation (given back from these).
    pub cap_attrs: Vec<String>,
    /// The reservation round: its recipients are reserved under member `<id>~<run>~<generation>`
    /// and its budget take carries it, so a stale give-back of an earlier round touches nothing
    /// of a later one.
    pub generation: u32,
    /// Reservations of `generation` may be on the friends' items (and a budget take on the
    /// account's) and were not given back: written before the first reservation is made, so every
    /// path can give back what a reservation cut short left.
    pub reserved: bool,
    /// When that round began reserving.
    pub reserved_at_ms: Option<i64>,
    /// When the first call to LINE with the frozen body started (written before the call): from
    /// then on LINE may have taken the batch, so only its retry key may send it again.
    pub first_called_at_ms: Option<i64>,
    /// A call started and no definite answer came back yet (set before every call, cleared
    /// after a clear refusal when no earlier call was open): LINE may have taken the batch.
    pub call_open: bool,
    pub attempts: u64,
    pub request_id: Option<String>,
    /// The account budget month and messages this batch took (`monthlyBudget`), and the
    /// reservation round that took them (a take is given back only by its own round).
    pub budget: Option<(String, u64)>,
    pub budget_round: u32,
}

impl Batch {
    /// A batch as the planner writes it: its recipients, nothing decided yet.
    pub fn planned(number: u32, to: Vec<String>) -> Batch {
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
            generation: 0,
            reserved: false,
            reserved_at_ms: None,
            first_called_at_ms: None,
            call_open: false,
            attempts: 0,
            request_id: None,
            budget: None,
            budget_round: 0,
        }
    }

    /// Whether a settled or held batch's reservation is still to be given back: it failed (and
    /// surely did not go out) or was held unfrozen, and it was not given back yet. (A planned or
    /// frozen one is given back by the sender that leases it, before it decides again.)
    pub fn slots_to_give_back(&self) -> bool {
        self.reserved
            && (self.state == BatchState::Failed
                || (self.state == BatchState::Held && self.held_from == Some(BatchState::Planned)))
    }

    /// The recipients a reservation may have reached: every one (a reservation answered as
    /// refused may have been applied by a retried request; a release is fenced by its round, so
    /// one of a friend it never reached changes nothing).
    pub fn reserved_users(&self) -> Vec<&str> {
        self.to.iter().map(String::as_str).collect()
    }

    /// The frozen send list.
    pub fn send_list(&self) -> Vec<&str> {
        match &self.frozen {
            Some(mask) => self.to.iter().zip(mask).filter(|(_, on)| **on).map(|(u, _)| u.as_str()).collect(),
            None => vec![],
        }
    }
}

/// How a batch ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub state: BatchState,
    pub sent: u64,
    pub failed: u64,
    pub unknown: u64,
    pub request_id: Option<String>,
    pub error: Option<String>,
    /// The batch's reservation is to be given back (it surely did not go out): it stays recorded
    /// until [`super::ports::BatchRepo::gave_back`], so a release cut short is finished by the next
    /// delivery.
    pub release_slots: bool,
}

/// A random UUID v4 for `X-Line-Retry-Key`.
pub fn retry_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_keys_are_version_4_uuids() {
        let key = retry_key();
        assert_eq!(uuid::Uuid::parse_str(&key).unwrap().get_version_num(), 4);
        assert_ne!(retry_key(), key);
    }
}
