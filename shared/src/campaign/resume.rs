//! Resuming a paused campaign: by a person (`oa campaign resume`), or by the planner when its
//! quiet hours end. Held batches are taken back once their slots were given back, and every batch
//! not settled is queued again with the plan message: duplicates are harmless (a batch is leased
//! and settles once), and batches whose messages went to the dead-letter queue come back too.

use super::batch::BatchState;
use super::classify::Classifier;
use super::model::{BatchMessage, Campaign, PlanMessage, State};
use super::ports::{CampaignStore, CapStore};
use crate::ports::{BackendError, WorkQueue};

/// Where a paused campaign goes back to: waiting for its schedule only if nothing was planned
/// yet, sending once the whole segment is planned, else planning.
pub fn resumes_to(c: &Campaign, now_ms: i64) -> State {
    if c.not_before_ms > now_ms && c.plan_page == 0 {
        State::Scheduled
    } else if c.plan_done {
        State::Sending
    } else {
        State::Planning
    }
}

/// Re-queues every open batch of a campaign that sends again (taking held ones back first) and,
/// if `plan` is given, its plan message.
pub async fn requeue(
    store: &dyn CampaignStore,
    caps: &dyn CapStore,
    batches: &dyn WorkQueue,
    plans: Option<&dyn WorkQueue>,
    c: &Campaign,
) -> Result<usize, BackendError> {
    let mut queued = 0;
    for (number, state) in store.open_batches(c).await? {
        if state == BatchState::Held {
            let Some(batch) = store.batch(c, number).await? else { continue };
            // Slots of a batch held unfrozen go back before it can be reserved again.
            if batch.slots_to_give_back() {
                let demand = Classifier::of(c, 0).demand;
                for user in &batch.to {
                    caps.release(user, &demand, &batch.cap_attrs).await?;
                }
                store.return_budget(c, &batch).await?;
                store.clear_cap_attrs(c, number).await?;
            }
            if !store.unhold(c, &batch).await? {
                continue;
            }
        }
        batches.send(&BatchMessage::body(c, number)?, 0).await?;
        queued += 1;
    }
    if let Some(plans) = plans {
        plans.send(&PlanMessage::body(c)?, 0).await?;
    }
    Ok(queued)
}
