//! Giving a batch's reservation back (it surely did not go out): the friends' slots, last push
//! and campaign mark of its generation, then its budget take, then the batch's record of it. Every
//! step is fenced by the generation, so a give-back that runs late (a duplicate delivery, the
//! planner's requeue) never touches a later round's reservations, and one cut short is finished
//! by whoever finds the record still there.

use futures::stream::{self, StreamExt};

use super::batch::{Batch, BatchState};
use super::caps::Demand;
use super::classify::Classifier;
use super::model::Campaign;
use super::ports::{CampaignStore, CapStore};
use crate::ports::BackendError;

/// Gives back what `batch`'s recorded reservation round may have reserved; nothing if it
/// records none.
pub async fn give_back(
    store: &dyn CampaignStore,
    caps: &dyn CapStore,
    c: &Campaign,
    batch: &Batch,
    now_ms: i64,
) -> Result<(), BackendError> {
    if !batch.reserved {
        return Ok(());
    }
    let demand = Classifier::of(c, now_ms).demand.generation(batch.generation);
    release_all(caps, &batch.reserved_users(), &demand, &batch.cap_attrs).await?;
    store.return_budget(c, batch).await?;
    store.gave_back(c, batch.number, batch.generation).await?;
    Ok(())
}

/// Gives back what batch `number` of `c`'s run reserved, if LINE surely never took it (no call
/// open), under the batch's lease (a sender may still be at it): for a run that is being
/// replaced. A batch LINE may have taken keeps its reservation, and its friends stay marked as
/// reached. False: another sender holds the lease.
pub async fn give_back_unsent(
    store: &dyn CampaignStore,
    caps: &dyn CapStore,
    c: &Campaign,
    number: u32,
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Result<bool, BackendError> {
    let Some(batch) = store.batch(c, number).await? else { return Ok(true) };
    if batch.slots_to_give_back() {
        give_back(store, caps, c, &batch, now_ms).await?;
        return Ok(true);
    }
    if !matches!(batch.state, BatchState::Planned | BatchState::Frozen) {
        return Ok(true);
    }
    // A sender at it now may be about to reserve (or be reserving): busy.
    if batch.lease_owner.as_deref().is_some_and(|o| o != owner) && batch.lease_until_ms >= now_ms {
        return Ok(false);
    }
    if !batch.reserved || batch.call_open {
        return Ok(true);
    }
    if !store.lease(c, number, owner, now_ms, now_ms + lease_ms).await? {
        return Ok(false);
    }
    let result = match store.batch(c, number).await? {
        Some(b) if b.reserved && !b.call_open => give_back(store, caps, c, &b, now_ms).await,
        _ => Ok(()),
    };
    let _ = store.release_lease(c, number, owner, now_ms).await;
    result.map(|()| true)
}

/// Gives `demand`'s slots in `attributes` back for every one of `to` (a few at once).
pub async fn release_all(
    caps: &dyn CapStore,
    to: &[&str],
    demand: &Demand,
    attributes: &[String],
) -> Result<(), BackendError> {
    let results: Vec<Result<(), BackendError>> =
        stream::iter(to.iter()).map(|user| caps.release(user, demand, attributes)).buffer_unordered(16).collect().await;
    results.into_iter().collect()
}
