//! Resuming a paused campaign: by a person (`oa campaign resume`), or by the planner when its
//! quiet hours end. Held batches are taken back once their reservation was given back, and every
//! batch not settled is queued again: duplicates are harmless (a batch is leased and settles
//! once), and batches whose messages went to the dead-letter queue come back too. A resume sends
//! the plan message that requeues first, so one cut short (Ctrl-C, a throttled call) is finished
//! by the planner, from where it stopped.

use tokio::time::Instant;

use super::batch::BatchState;
use super::give_back::give_back;
use super::model::{BatchMessage, Campaign, State};
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

/// How far a requeue went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeued {
    /// Every open batch from the first asked for is queued.
    All { queued: usize },
    /// The deadline came first: batches from `next` on are still to be queued.
    Stopped { queued: usize, next: u32 },
}

/// Re-queues the open batches of a campaign that sends again, from batch number `from` on
/// (taking held ones back first, their reservations given back), until `deadline`.
pub async fn requeue(
    store: &dyn CampaignStore,
    caps: &dyn CapStore,
    batches: &dyn WorkQueue,
    c: &Campaign,
    from: u32,
    deadline: Instant,
    now_ms: i64,
) -> Result<Requeued, BackendError> {
    let mut queued = 0;
    for (number, state) in store.open_batches(c).await?.into_iter().filter(|(n, _)| *n >= from) {
        if Instant::now() >= deadline {
            return Ok(Requeued::Stopped { queued, next: number });
        }
        if state == BatchState::Held {
            let Some(batch) = store.batch(c, number).await? else { continue };
            // A reservation of a batch held unfrozen goes back before it can be reserved again.
            if batch.slots_to_give_back() {
                give_back(store, caps, c, &batch, now_ms).await?;
            }
            let Some(batch) = store.batch(c, number).await? else { continue };
            // Not taken back here: another requeue (the planner's, a person's) may have taken it
            // back just now, and may yet fail to queue it.
            if !store.unhold(c, &batch).await?
                && !store
                    .batch(c, number)
                    .await?
                    .is_some_and(|b| matches!(b.state, BatchState::Planned | BatchState::Frozen))
            {
                continue;
            }
        }
        batches.send(&BatchMessage::body(c, number)?, 0).await?;
        queued += 1;
    }
    Ok(Requeued::All { queued })
}
