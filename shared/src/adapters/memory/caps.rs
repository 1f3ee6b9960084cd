//! The friends' caps and opt-outs in memory, on [`MemoryCampaigns`]' store, in the same steps and
//! under the same conditions as the DynamoDB adapter ([`crate::adapters::dynamodb::caps`]): a
//! reservation is a first conditional update, then (a retry of the same member) a second one, then
//! a read for the reason of a refusal.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::campaigns::{take_fault, MemoryCampaigns, Store};
use crate::campaign::caps::{Demand, FriendCaps, Reservation};
use crate::campaign::model::Skip;
use crate::campaign::ports::{CapStore, OptOuts};
use crate::ports::BackendError;

/// Whether every period of the demand has room for its member (or holds it already).
fn periods_have_room(f: &FriendCaps, demand: &Demand) -> bool {
    demand.slots.iter().all(|(attr, max)| {
        let set = f.sets.get(attr).map(Vec::as_slice).unwrap_or_default();
        set.iter().any(|m| m == &demand.member) || set.len() < *max as usize
    })
}

fn add_to_periods(f: &mut FriendCaps, demand: &Demand) {
    for attr in demand.slots.keys() {
        let set = f.sets.entry(attr.clone()).or_default();
        if !set.iter().any(|m| m == &demand.member) {
            set.push(demand.member.clone());
        }
    }
}

/// Whether no earlier run of the demand's campaign was sent to the friend (or it may resend).
fn not_sent_before(f: &FriendCaps, demand: &Demand) -> bool {
    demand.resend || demand.campaign.as_ref().and_then(|id| f.sent.get(id)).is_none_or(|r| demand.is_this_run(r))
}

/// Marks the friend as reached by the demand's run (a run that resends leaves an earlier run's
/// mark: it is not this run's to give back).
fn mark_sent(f: &mut FriendCaps, demand: &Demand) {
    if let Some(id) = &demand.campaign {
        if demand.resend {
            f.sent.entry(id.clone()).or_insert_with(|| demand.member.clone());
        } else {
            f.sent.insert(id.clone(), demand.member.clone());
        }
    }
}

/// The first update: a fresh push under every condition.
fn reserve_fresh(s: &mut Store, user: &str, demand: &Demand, now_ms: i64) -> bool {
    let Some(f) = s.friends.get_mut(user) else { return false };
    if !f.following || f.suppressed || !not_sent_before(f, demand) {
        return false;
    }
    if demand.transactional {
        mark_sent(f, demand);
        return true;
    }
    let own_last = f.last_push.as_ref().is_some_and(|(_, by)| by == &demand.member);
    let gap_ok = demand.min_gap_ms <= 0 || f.last_push.as_ref().is_none_or(|(at, _)| *at <= demand.gap_since(now_ms));
    if own_last || !gap_ok || !periods_have_room(f, demand) {
        return false;
    }
    add_to_periods(f, demand);
    mark_sent(f, demand);
    f.sets.retain(|a, _| !demand.is_past(a));
    let before = f.last_push.replace((now_ms, demand.member.clone()));
    s.prev_push.insert(user.to_string(), before);
    true
}

/// The second update: a retry of the same member, reserved in the periods begun since.
fn reserve_retry(s: &mut Store, user: &str, demand: &Demand) -> bool {
    let Some(f) = s.friends.get_mut(user) else { return false };
    let own_last = f.last_push.as_ref().is_some_and(|(_, by)| by == &demand.member);
    if !f.following || f.suppressed || !own_last || !not_sent_before(f, demand) || !periods_have_room(f, demand) {
        return false;
    }
    add_to_periods(f, demand);
    true
}

#[async_trait]
impl CapStore for MemoryCampaigns {
    async fn friend_caps(
        &self,
        users: &[String],
        demand: &Demand,
    ) -> Result<HashMap<String, FriendCaps>, BackendError> {
        self.with(|s| {
            users
                .iter()
                .filter_map(|u| {
                    let f = s.friends.get(u)?;
                    let sets =
                        demand.slots.keys().map(|a| (a.clone(), f.sets.get(a).cloned().unwrap_or_default())).collect();
                    let sent = f.sent.iter().filter(|(id, _)| demand.campaign.as_ref() == Some(*id));
                    let sent = sent.map(|(id, r)| (id.clone(), r.clone())).collect();
                    Some((u.clone(), FriendCaps { sets, sent, ..f.clone() }))
                })
                .collect()
        })
    }

    async fn reserve(&self, user: &str, demand: &Demand, now_ms: i64) -> Result<Reservation, BackendError> {
        if self.fail_reservation_at.load(Ordering::SeqCst) > 0
            && self.fail_reservation_at.fetch_sub(1, Ordering::SeqCst) == 1
        {
            return Err(BackendError::Store { operation: "UpdateItem", message: "injected".into() });
        }
        if self.with(|s| reserve_fresh(s, user, demand, now_ms))? {
            return Ok(Reservation::Reserved);
        }
        if !demand.transactional && self.with(|s| reserve_retry(s, user, demand))? {
            return Ok(Reservation::Reserved);
        }
        let friends = self.friend_caps(&[user.to_string()], demand).await?;
        let Some(friend) = friends.get(user) else { return Ok(Reservation::Refused(Skip::Blocked)) };
        Ok(Reservation::Refused(friend.refusal(demand, now_ms).unwrap_or(Skip::Cap)))
    }

    async fn release(&self, user: &str, demand: &Demand, attributes: &[String]) -> Result<(), BackendError> {
        if take_fault(&self.fail_releases) {
            return Err(BackendError::Store { operation: "UpdateItem", message: "injected".into() });
        }
        let member = &demand.member;
        self.with(|s| {
            if let Some(f) = s.friends.get_mut(user) {
                if let Some(id) = &demand.campaign {
                    if f.sent.get(id) == Some(member) {
                        f.sent.remove(id);
                    }
                }
                for a in attributes {
                    if let Some(set) = f.sets.get_mut(a) {
                        set.retain(|m| m != member);
                    }
                }
                if f.last_push.as_ref().is_some_and(|(_, by)| by == member) {
                    f.last_push = s.prev_push.remove(user).flatten();
                } else if let Some(before) = s.prev_push.get_mut(user) {
                    // Given back, it must not come back as the last push.
                    if before.as_ref().is_some_and(|(_, by)| by == member) {
                        *before = None;
                    }
                }
            }
        })
    }

    async fn pushed(&self, user: &str, demand: &Demand, at_ms: i64) -> Result<(), BackendError> {
        self.with(|s| {
            if let Some((at, by)) = s.friends.get_mut(user).and_then(|f| f.last_push.as_mut()) {
                if *by == demand.member && *at < at_ms {
                    *at = at_ms;
                }
            }
        })
    }
}

#[async_trait]
impl OptOuts for MemoryCampaigns {
    async fn suppress(&self, user: &str, on: bool, by: &str, _now_ms: i64) -> Result<bool, BackendError> {
        self.with(|s| {
            if on {
                if s.opt_outs.contains_key(user) {
                    return false;
                }
                s.opt_outs.insert(user.to_string(), by.to_string());
                s.friends.entry(user.to_string()).or_default().suppressed = true;
                true
            } else {
                if s.opt_outs.get(user).map(String::as_str) != Some(by) {
                    return false;
                }
                s.opt_outs.remove(user);
                if let Some(f) = s.friends.get_mut(user) {
                    f.suppressed = false;
                }
                true
            }
        })
    }

    async fn suppressed(&self) -> Result<Vec<(String, String)>, BackendError> {
        self.with(|s| {
            let mut all: Vec<(String, String)> = s.opt_outs.iter().map(|(u, b)| (u.clone(), b.clone())).collect();
            all.sort();
            all
        })
    }
}
