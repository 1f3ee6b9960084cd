//! The sweep: a scheduled look over every campaign (every 5 minutes on AWS, an EventBridge
//! schedule on the campaign function; `oa local poll` runs it locally), for what no message will
//! do by itself and for what a person must be paged about.
//!
//! It finishes campaigns whose batches all settled (a settle whose finish was lost), takes a
//! campaign that needed attention to done once its unknown outcomes were resolved (finishing the
//! give-backs a resolve left cut short first), and queues again the open batches nobody worked on
//! for [`IDLE_AFTER_MS`]: a sender takes the batch's lease at every receive of its message and
//! lets it end when it gives the message back, so a batch idle that long has lost its message (to
//! the dead-letter queue after LINE kept failing, or with a sender that died). What it counts
//! becomes the metrics the alarms watch: campaigns needing attention, paused (by reason), and
//! stalled (sending, and no batch settled for 15 minutes).

use std::collections::BTreeMap;

use serde::Serialize;

use super::batch::BatchState;
use super::give_back::give_back;
use super::model::{BatchMessage, Campaign, State};
use super::ports::CampaignAdmin;
use crate::ports::{BackendError, Clock, WorkQueue};

/// A sending campaign with no batch settled for this long is stalled.
pub const STALLED_AFTER_MS: i64 = 15 * 60_000;
/// A batch whose lease ended this long ago has lost its message: a live message comes back every
/// 120 s (the queue's visibility timeout), and each receive takes the lease (90 s).
pub const IDLE_AFTER_MS: i64 = 10 * 60_000;
/// At most this many batches are queued again by one sweep (the next sweep goes on), so that a
/// LINE outage over many campaigns cannot take the sweep past its timeout.
pub const MAX_REQUEUED_PER_SWEEP: u32 = 2_000;

/// Why a campaign is paused, as the `Reason` dimension of `CampaignsPaused`: the first three
/// need a person (and are alarmed on), the last two do not.
pub const PAUSE_REASONS: [&str; 5] = ["quota", "budget", "line", "quietHours", "person"];

/// The pause reason's kind (see [`PAUSE_REASONS`]).
pub fn pause_kind(reason: Option<&str>) -> &'static str {
    match reason.unwrap_or_default() {
        r if r.starts_with("quota") => "quota",
        r if r.starts_with("budget") => "budget",
        r if r.starts_with("LINE refused") => "line",
        r if r.starts_with("quiet hours") => "quietHours",
        _ => "person",
    }
}

/// What one sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Swept {
    /// Campaigns it finished (done, or needing attention).
    pub finished: Vec<String>,
    /// Batches it queued again.
    pub requeued: u32,
    pub needing_attention: u32,
    /// Paused campaigns by [`pause_kind`] (every kind, zeros included).
    pub paused: BTreeMap<String, u32>,
    /// Sending campaigns with no batch settled for [`STALLED_AFTER_MS`].
    pub stalled: Vec<String>,
}

impl Swept {
    /// The EMF log lines (CloudWatch embedded metric format) of what it counted, in `namespace`:
    /// one without dimensions (`CampaignsNeedingAttention`, `CampaignsStalled`, and the
    /// `CampaignsPaused` that need a person) and one per pause reason.
    pub fn metrics(&self, namespace: &str, now_ms: i64) -> Vec<String> {
        let paused = |k: &str| self.paused.get(k).copied().unwrap_or(0);
        let needing_person: u32 = PAUSE_REASONS[..3].iter().map(|k| paused(k)).sum();
        let line = |dimensions: serde_json::Value, metrics: &[&str], values: serde_json::Value| {
            let mut doc = serde_json::json!({
                "_aws": {
                    "Timestamp": now_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": namespace,
                        "Dimensions": dimensions,
                        "Metrics": metrics.iter().map(|m| serde_json::json!({ "Name": m, "Unit": "Count" })).collect::<Vec<_>>(),
                    }],
                },
            });
            if let (Some(doc), Some(values)) = (doc.as_object_mut(), values.as_object()) {
                doc.extend(values.clone());
            }
            doc.to_string()
        };
        let mut out = vec![line(
            serde_json::json!([[]]),
            &["CampaignsNeedingAttention", "CampaignsStalled", "CampaignsPausedNeedingAction"],
            serde_json::json!({
                "CampaignsNeedingAttention": self.needing_attention,
                "CampaignsStalled": self.stalled.len(),
                "CampaignsPausedNeedingAction": needing_person,
                "stalled": self.stalled,
                "finished": self.finished,
                "requeued": self.requeued,
            }),
        )];
        for kind in PAUSE_REASONS {
            out.push(line(
                serde_json::json!([["Reason"]]),
                &["CampaignsPaused"],
                serde_json::json!({ "Reason": kind, "CampaignsPaused": paused(kind) }),
            ));
        }
        out
    }
}

pub struct Sweeper<'a> {
    pub store: &'a dyn CampaignAdmin,
    pub batches: &'a dyn WorkQueue,
    pub clock: &'a dyn Clock,
    /// When to stop looking at more campaigns (what was counted is still reported).
    pub until: tokio::time::Instant,
}

impl Sweeper<'_> {
    /// One sweep over every campaign, in a new order each time (a sweep cut short by its deadline
    /// leaves different ones for the next). A campaign that cannot be read or moved is left for
    /// the next sweep (and logged); only listing them can fail the sweep.
    pub async fn run(&self) -> Result<Swept, BackendError> {
        let mut swept =
            Swept { paused: PAUSE_REASONS.iter().map(|k| (k.to_string(), 0)).collect(), ..Swept::default() };
        let mut campaigns = self.store.list().await?;
        fastrand::shuffle(&mut campaigns);
        for c in &campaigns {
            if tokio::time::Instant::now() >= self.until {
                tracing::warn!(left = campaigns.len(), "sweep: out of time, the next sweep goes on");
                break;
            }
            if let Err(e) = self.one(c, &mut swept).await {
                tracing::warn!(campaign = %c.id, error = %e, "sweep: campaign left for the next sweep");
            }
        }
        Ok(swept)
    }

    async fn one(&self, c: &Campaign, swept: &mut Swept) -> Result<(), BackendError> {
        let now = self.clock.now_ms();
        match c.state {
            State::NeedsAttention => {
                // Counted first: a give-back that fails must not hide it from the alarm.
                swept.needing_attention += 1;
                if c.counters.unknown > 0 {
                    return Ok(());
                }
                // A resolve cut short may have left failed batches' slots and budget taken.
                for (number, _) in self.store.batches_in(c, &[BatchState::Failed]).await? {
                    let Some(batch) = self.store.batch(c, number).await? else { continue };
                    if batch.slots_to_give_back() {
                        give_back(self.store, self.store, c, &batch, now).await?;
                    }
                }
                if self.store.done_when_resolved(c).await? {
                    swept.needing_attention -= 1;
                    swept.finished.push(c.id.clone());
                }
            }
            State::Paused => *swept.paused.entry(pause_kind(c.reason.as_deref()).to_string()).or_default() += 1,
            // A cancelled run too: a batch of it whose message was lost still holds its friends'
            // slots and the budget until a sender, finding the campaign cancelled, holds it and
            // gives them back.
            State::Planning | State::Sending | State::Cancelled => {
                if c.state != State::Cancelled && self.store.finish_if_done(c).await? {
                    // Done, or needing attention (its unknown outcomes are for a person).
                    let now_state = self.store.state(&c.id).await?.map(|(_, s)| s);
                    swept.finished.push(c.id.clone());
                    if now_state == Some(State::NeedsAttention) {
                        swept.needing_attention += 1;
                    }
                    return Ok(());
                }
                let open = self.store.open_leases(c).await?;
                let moved = c.last_sent_at_ms.or(c.started_at_ms).unwrap_or(c.created_at_ms);
                let stalled = c.state == State::Sending && !open.is_empty() && now - moved > STALLED_AFTER_MS;
                if stalled {
                    swept.stalled.push(c.id.clone());
                }
                for (number, state, until) in open {
                    if swept.requeued >= MAX_REQUEUED_PER_SWEEP {
                        break;
                    }
                    // Never leased: its message is on its way, unless the campaign stalled (a
                    // planner that committed a page and died before queueing its batch, while
                    // another planner went on past it).
                    let idle = if until == 0 { stalled } else { until < now - IDLE_AFTER_MS };
                    if state != BatchState::Held && idle {
                        // A duplicate is harmless: a batch is leased and settles once.
                        self.batches.send(&BatchMessage::body(c, number)?, 0).await?;
                        swept.requeued += 1;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
