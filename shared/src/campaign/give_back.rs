//! Giving a batch's reservation back (it surely did not go out): the friends' slots, last push
//! and campaign mark of its generation, then its budget take, then the batch's record of it. Every
//! step is fenced by the generation, so a give-back that runs late (a duplicate delivery, the
//! planner's requeue) never touches a later round's reservations, and one cut short is finished
//! by whoever finds the record still there.

use futures::stream::{self, StreamExt};

use super::batch::Batch;
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
