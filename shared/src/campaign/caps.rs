//! The frequency caps as one friend meets them: what a campaign asks of every friend (its
//! member in the cap sets, the slots in force, the minimum gap), the friend as the check sees
//! them, and why a friend may not get a campaign.

use std::collections::BTreeMap;

use super::file::Cap;
use super::model::{cap_slots, Skip};
use crate::rules::window::Zone;

/// A friend as the cap check sees them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FriendCaps {
    pub following: bool,
    pub suppressed: bool,
    /// Period attribute → campaign runs in it.
    pub sets: BTreeMap<String, Vec<String>>,
    /// The last campaign push (not transactional) reserved for them: when, and by which run.
    pub last_push: Option<(i64, String)>,
}

/// What one campaign asks of every friend: its member in the cap sets (`<id>~<run>`), the cap
/// slots in force (attribute → max), and the account's minimum gap since their last push.
/// Transactional campaigns are outside both.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demand {
    pub member: String,
    pub slots: BTreeMap<String, u32>,
    pub transactional: bool,
    pub min_gap_ms: i64,
}

impl Demand {
    pub fn new(member: String, caps: &[Cap], zone: &Zone, transactional: bool, min_gap_ms: i64, now_ms: i64) -> Self {
        let at = jiff::Timestamp::from_millisecond(now_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let slots = if transactional { BTreeMap::new() } else { cap_slots(caps, at, zone) };
        Demand { member, slots, transactional, min_gap_ms: if transactional { 0 } else { min_gap_ms } }
    }

    pub fn attributes(&self) -> Vec<String> {
        self.slots.keys().cloned().collect()
    }

    /// The latest last push that still allows one at `now_ms`.
    pub fn gap_since(&self, now_ms: i64) -> i64 {
        now_ms - self.min_gap_ms
    }
}

impl FriendCaps {
    /// Why this friend may not get the campaign at `now_ms`, if so. A cap refusal also covers
    /// the minimum gap (a push too recent).
    pub fn refusal(&self, demand: &Demand, now_ms: i64) -> Option<Skip> {
        let own = |m: &str| m == demand.member;
        if self.suppressed {
            Some(Skip::Suppressed)
        } else if !self.following {
            Some(Skip::Blocked)
        } else if demand.transactional {
            None
        } else if demand.slots.iter().any(|(attr, max)| {
            let set = self.sets.get(attr).map(Vec::as_slice).unwrap_or_default();
            !set.iter().any(|m| own(m)) && set.len() >= *max as usize
        }) || self.last_push.as_ref().is_some_and(|(at, by)| !own(by) && *at > demand.gap_since(now_ms))
        {
            Some(Skip::Cap)
        } else {
            None
        }
    }
}

/// What a reservation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    Refused(Skip),
}
