//! The frequency caps as one friend meets them: what a campaign asks of every friend (its
//! member in the cap sets, the slots in force, the minimum gap), the friend as the check sees
//! them, and why a friend may not get a campaign.

use std::collections::BTreeMap;

use super::file::Cap;
use super::model::{cap_slots, is_past_period, past_periods, Skip};
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
    /// Campaign id → the reservation of a run of it that was (or may have been) sent to them.
    /// Read for the demand's campaign only.
    pub sent: BTreeMap<String, String>,
}

/// What one campaign asks of every friend: its member in the cap sets, the cap slots in force
/// (attribute → max), and the account's minimum gap since their last push (transactional
/// campaigns are outside both); and, for a campaign with an id, no earlier run of it sent.
///
/// The member is the run's (`<id>~<run>`) when classifying; a batch reserves under its own
/// generation (`<id>~<run>~<g>`, [`Demand::generation`]), so a stale give-back of an earlier
/// generation never touches a later one's slots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demand {
    pub member: String,
    pub slots: BTreeMap<String, u32>,
    pub transactional: bool,
    pub min_gap_ms: i64,
    /// The campaign id whose earlier runs a friend must not have been sent (`sent#<id>` on the
    /// friend), with the run's member; None: not checked nor marked.
    pub campaign: Option<String>,
    pub run_member: String,
    /// Created with `--resend`: marked, not checked.
    pub resend: bool,
    /// Cap periods that ended days ago: removed in the same update that reserves a friend, so
    /// the item (billed on its whole size at every update) does not grow period by period.
    pub past: Vec<String>,
    /// When the demand was made (which periods are past is measured from it).
    pub at_ms: i64,
    /// Its time zone's name.
    pub zone: String,
}

impl Demand {
    pub fn new(member: String, caps: &[Cap], zone: &Zone, transactional: bool, min_gap_ms: i64, now_ms: i64) -> Self {
        let at = jiff::Timestamp::from_millisecond(now_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let slots = if transactional { BTreeMap::new() } else { cap_slots(caps, at, zone) };
        let min_gap_ms = if transactional { 0 } else { min_gap_ms };
        Demand {
            run_member: member.clone(),
            member,
            slots,
            transactional,
            min_gap_ms,
            campaign: None,
            resend: false,
            past: past_periods(now_ms, zone),
            at_ms: now_ms,
            zone: zone.name().to_string(),
        }
    }

    /// Whether the friend's attribute `attribute` is a cap period that ended days before the
    /// demand (one to remove).
    pub fn is_past(&self, attribute: &str) -> bool {
        self.at_ms > 0 && is_past_period(attribute, self.at_ms, &Zone::parse(&self.zone).unwrap_or_default())
    }

    /// Checked and marked against earlier runs of campaign `id` (unless `resend`).
    pub fn once_per_campaign(self, id: &str, resend: bool) -> Self {
        Demand { campaign: Some(id.to_string()), resend, ..self }
    }

    /// The demand as batch generation `g` reserves and gives back.
    pub fn generation(&self, g: u32) -> Self {
        Demand { member: format!("{}~{g}", self.run_member), ..self.clone() }
    }

    /// The friend's attribute that remembers which run of the campaign was sent to them.
    pub fn sent_attribute(&self) -> Option<String> {
        self.campaign.as_ref().map(|id| format!("sent#{id}"))
    }

    /// Whether a reservation remembered under `sent#<id>` is this run's (any generation).
    pub fn is_this_run(&self, reservation: &str) -> bool {
        reservation == self.member
            || reservation == self.run_member
            || reservation.strip_prefix(self.run_member.as_str()).is_some_and(|r| r.starts_with('~'))
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
        let own = |m: &str| demand.is_this_run(m);
        let sent_before = || {
            !demand.resend
                && demand.campaign.as_ref().and_then(|id| self.sent.get(id)).is_some_and(|r| !demand.is_this_run(r))
        };
        if self.suppressed {
            Some(Skip::Suppressed)
        } else if !self.following {
            Some(Skip::Blocked)
        } else if sent_before() {
            Some(Skip::AlreadySent)
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
