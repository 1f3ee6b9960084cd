//! A campaign run's counters ([`crate::campaign::model::Counters`]) in DynamoDB: 16 small shard
//! items per run, each changed with `ADD` in the same transaction as the batch (or page) it
//! counts, summed when read; and, for a run written before the shards, `meta` itself to the run's
//! end (see [`super::campaigns`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Update};

use super::attr::{s, Item};
use super::call::err;
use super::campaigns::{adds, counters_of, meta_key, DynamoCampaigns};
use crate::campaign::model::{Campaign, Counters};
use crate::ports::BackendError;

/// Counter items per run. A settle adds to the shard of its batch number, so the batches sent
/// side by side (consecutive numbers) write different items: at LINE's 200 multicasts a second,
/// each shard takes about 13 settles a second, far from one item's 1,000 write units and rarely
/// in two transactions at once.
pub const COUNTER_SHARDS: u32 = 16;

/// The counter shard batch (or page) `number` of run `run` counts on.
pub(super) fn counter_key(id: &str, run: &str, number: u32) -> HashMap<String, AttributeValue> {
    let shard = number % COUNTER_SHARDS;
    HashMap::from([("pk".into(), s(&format!("c#{id}"))), ("sk".into(), s(&format!("run#{run}#n#{shard:02}")))])
}

impl DynamoCampaigns {
    /// The run's counters now (the shards', and an old campaign's on `meta`).
    pub(super) async fn counted(&self, meta: &Item, id: &str, run: &str) -> Result<Counters, BackendError> {
        let shards = self.run_items(id, run, "n#").await?;
        let mut items: Vec<&Item> = shards.iter().collect();
        items.push(meta);
        Ok(counters_of(&items))
    }

    /// Whether `c`'s run counts on `meta` (a run from before the counter shards).
    pub(super) fn counts_on_meta(&self, c: &Campaign) -> bool {
        self.legacy.lock().is_ok_and(|l| l.contains(&(c.id.clone(), c.run.clone())))
    }

    /// An update adding `deltas` to the counters batch (or page) `number` counts on, with `set`
    /// clauses (their values in `values`): its shard, with no condition (the batch or page written
    /// in the same transaction carries it); or `meta` for a run from before the shards, on the
    /// condition that the run is still `c`'s.
    pub(super) fn count_update(
        &self,
        c: &Campaign,
        number: u32,
        deltas: &[(&str, i64)],
        set: &str,
        mut values: HashMap<String, AttributeValue>,
    ) -> Result<Update, BackendError> {
        let mut names = HashMap::new();
        let adds = adds(deltas, &mut names, &mut values);
        let mut update = set.to_string();
        if !adds.is_empty() {
            update.push_str(&format!(" ADD {}", adds.join(", ")));
        }
        let on_meta = self.counts_on_meta(c);
        let builder = Update::builder().table_name(&self.campaigns).update_expression(update.trim());
        let builder = if on_meta {
            names.insert("#run".into(), "run".into());
            values.insert(":run".into(), s(&c.run));
            builder.set_key(Some(meta_key(&c.id))).condition_expression("#run = :run")
        } else {
            builder.set_key(Some(counter_key(&c.id, &c.run, number)))
        };
        builder
            .set_expression_attribute_names((!names.is_empty()).then_some(names))
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))
    }
}
