//! A campaign run's batches in the campaigns table, and the account's monthly budget they take
//! from (see [`super::campaigns`] for the items):
//! - `c#<id>` / `r#<run>#<n>`: batch n's recipients, written once by the planner.
//! - `c#<id>` / `b#<run>#<n>`: batch n's state, its lease, the frozen send list (a bitmap over the
//!   recipients), the retry key, the call record and the budget it took.
//! - `budget#account` / `m2026-11`: the messages the account's campaigns took that month.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem, Update};

use super::attr::{flag, int, n, s, string_set, text, uint};
use super::call::{conditional, err};
use super::campaigns::{batch_key, budget_key, meta_key, recipients_key, skip_deltas, DynamoCampaigns};
use crate::adapters::sdk::describe;
use crate::campaign::batch::{Batch, BatchState, Settlement};
use crate::campaign::model::{Campaign, Skips, State};
use crate::campaign::ports::BatchRepo;
use crate::ports::BackendError;

fn mask_to_hex(mask: &[bool]) -> String {
    mask.chunks(4)
        .map(|c| format!("{:x}", c.iter().enumerate().fold(0u8, |a, (i, b)| a | (u8::from(*b) << i))))
        .collect()
}

fn mask_from_hex(hex: &str, len: usize) -> Vec<bool> {
    let mut out: Vec<bool> = hex
        .chars()
        .flat_map(|c| {
            let v = c.to_digit(16).unwrap_or(0);
            (0..4).map(move |i| v & (1 << i) != 0)
        })
        .collect();
    out.resize(len, false);
    out
}

/// What a frozen batch holds that a batch decided again drops: its send list, key, skips and
/// call record.
const FROZEN_ATTRS: &str =
    "mask, retryKey, skipCap, skipSuppressed, skipBlocked, skipBudget, skipAlreadySent, firstCalledAt, callOpen, attempts";

/// The condition that the batch is in reservation round `g` (a batch never reserved has none).
fn of_generation(g: u32) -> &'static str {
    if g == 0 {
        "attribute_not_exists(gen)"
    } else {
        "gen = :gen"
    }
}

/// `values`, and `:gen` for [`of_generation`]'s condition.
fn with_generation<const N: usize>(g: u32, values: [(&str, AttributeValue); N]) -> HashMap<String, AttributeValue> {
    let mut out: HashMap<String, AttributeValue> = values.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    if g > 0 {
        out.insert(":gen".into(), n(g));
    }
    out
}

impl DynamoCampaigns {
    /// The run's batches in one of `states`, by number: state and when the lease ends (0: never
    /// leased).
    async fn query_batches(
        &self,
        c: &Campaign,
        states: &[BatchState],
    ) -> Result<Vec<(u32, BatchState, i64)>, BackendError> {
        let mut values: HashMap<String, AttributeValue> =
            states.iter().enumerate().map(|(i, st)| (format!(":s{i}"), s(st.name()))).collect();
        values.insert(":pk".into(), s(&format!("c#{}", c.id)));
        values.insert(":prefix".into(), s(&format!("b#{}#", c.run)));
        let list: Vec<String> = (0..states.len()).map(|i| format!(":s{i}")).collect();
        let mut out = vec![];
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.campaigns)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .filter_expression(format!("#state IN ({})", list.join(", ")))
                .expression_attribute_names("#state", "state")
                .set_expression_attribute_values(Some(values.clone()))
                .projection_expression("sk, #state, leaseUntil")
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| err("Query", describe(&e)))?;
            for item in page.items() {
                let number = text(item, "sk").and_then(|k| k.rsplit('#').next()).and_then(|n| n.parse().ok());
                let state = text(item, "state").and_then(BatchState::parse);
                if let (Some(n), Some(st)) = (number, state) {
                    out.push((n, st, int(item, "leaseUntil").unwrap_or(0)));
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        out.sort_unstable_by_key(|(n, _, _)| *n);
        Ok(out)
    }

    /// The budget month and messages the stored batch record shows taken, and the round that took
    /// them.
    async fn stored_budget(&self, c: &Campaign, number: u32) -> Result<Option<(String, u64, u32)>, BackendError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, number)))
            .projection_expression("budgetMonth, budgetTaken, budgetGen")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| err("GetItem", describe(&e)))?
            .item;
        Ok(item.and_then(|i| {
            text(&i, "budgetMonth").map(|m| (m.to_string(), uint(&i, "budgetTaken"), uint(&i, "budgetGen") as u32))
        }))
    }
}

#[async_trait]
impl BatchRepo for DynamoCampaigns {
    /// Batch `number` of the campaign's run, recipients included.
    async fn batch(&self, c: &Campaign, number: u32) -> Result<Option<Batch>, BackendError> {
        let get =
            |key| self.client.get_item().table_name(&self.campaigns).set_key(Some(key)).consistent_read(true).send();
        let (state, recipients) =
            futures::try_join!(get(batch_key(&c.id, &c.run, number)), get(recipients_key(&c.id, &c.run, number)))
                .map_err(|e| err("GetItem", describe(&e)))?;
        let (Some(item), Some(recipients)) = (state.item, recipients.item) else { return Ok(None) };
        let to: Vec<String> = text(&recipients, "to")
            .unwrap_or_default()
            .split(',')
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        let frozen = text(&item, "mask").map(|m| mask_from_hex(m, to.len()));
        Ok(Some(Batch {
            number,
            state: text(&item, "state").and_then(BatchState::parse).unwrap_or(BatchState::Planned),
            held_from: text(&item, "heldFrom").and_then(BatchState::parse),
            lease_until_ms: int(&item, "leaseUntil").unwrap_or(0),
            lease_owner: text(&item, "leaseOwner").map(str::to_string),
            frozen,
            retry_key: text(&item, "retryKey").map(str::to_string),
            skips: Skips {
                cap: uint(&item, "skipCap"),
                budget: uint(&item, "skipBudget"),
                suppressed: uint(&item, "skipSuppressed"),
                blocked: uint(&item, "skipBlocked"),
                already_sent: uint(&item, "skipAlreadySent"),
            },
            cap_attrs: string_set(&item, "capAttrs"),
            generation: uint(&item, "gen") as u32,
            reserved: flag(&item, "reserved"),
            reserved_at_ms: int(&item, "reservedAt"),
            first_called_at_ms: int(&item, "firstCalledAt"),
            call_open: flag(&item, "callOpen"),
            attempts: uint(&item, "attempts"),
            request_id: text(&item, "requestId").map(str::to_string),
            budget: text(&item, "budgetMonth").map(|m| (m.to_string(), uint(&item, "budgetTaken"))),
            budget_round: uint(&item, "budgetGen") as u32,
            to,
        }))
    }

    /// The run's batches in one of `states`, by number, with their state.
    async fn batches_in(&self, c: &Campaign, states: &[BatchState]) -> Result<Vec<(u32, BatchState)>, BackendError> {
        Ok(self.query_batches(c, states).await?.into_iter().map(|(n, st, _)| (n, st)).collect())
    }

    /// Takes the batch's lease for `owner` until `until_ms`, unless another owner holds an
    /// unexpired one or the batch is settled or held.
    async fn lease(
        &self,
        c: &Campaign,
        number: u32,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, number)))
            .update_expression("SET leaseUntil = :until, leaseOwner = :owner")
            .condition_expression(
                "#state IN (:planned, :frozen) AND (attribute_not_exists(leaseUntil) OR leaseUntil < :now OR leaseOwner = :owner)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":planned", s(BatchState::Planned.name()))
            .expression_attribute_values(":frozen", s(BatchState::Frozen.name()))
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem")
    }

    /// Lets go of the lease (the batch goes back to the queue for a retry).
    async fn release_lease(&self, c: &Campaign, number: u32, owner: &str, now_ms: i64) -> Result<(), BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, number)))
            .update_expression("SET leaseUntil = :now REMOVE leaseOwner")
            .condition_expression("leaseOwner = :owner")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem").map(|_| ())
    }

    /// One query (a Query is billed on the items it reads, whatever it projects).
    async fn open_leases(&self, c: &Campaign) -> Result<Vec<(u32, BatchState, i64)>, BackendError> {
        self.query_batches(c, &[BatchState::Planned, BatchState::Frozen, BatchState::Held]).await
    }

    /// Records reservation round `batch.generation + 1` (and its cap attributes) on a planned
    /// batch this owner leases, before its first reservation. False: the lease was lost, the batch
    /// moved on, or an earlier round was not given back.
    async fn begin_reserve(
        &self,
        c: &Campaign,
        batch: &Batch,
        owner: &str,
        cap_attrs: &[String],
        now_ms: i64,
    ) -> Result<bool, BackendError> {
        let mut request = self.client.update_item();
        let mut set = "SET gen = :next, reserved = :t, reservedAt = :now".to_string();
        if !cap_attrs.is_empty() {
            set.push_str(", capAttrs = :attrs");
            request = request.expression_attribute_values(":attrs", AttributeValue::Ss(cap_attrs.to_vec()));
        }
        let batch_update = request
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, batch.number)))
            .update_expression(set)
            .condition_expression(
                "#state = :planned AND leaseOwner = :owner AND attribute_not_exists(reserved) \
                 AND (attribute_not_exists(gen) OR gen = :gen)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":planned", s(BatchState::Planned.name()))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":gen", n(batch.generation))
            .expression_attribute_values(":next", n(batch.generation + 1))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await;
        conditional(batch_update.map(|_| ()), "UpdateItem")
    }

    /// Freezes the send list (`mask` over the recipients), the skips and the retry key, before
    /// the first call to LINE. False: the lease was lost or the batch is frozen already.
    #[allow(clippy::too_many_arguments)]
    async fn freeze(
        &self,
        c: &Campaign,
        number: u32,
        owner: &str,
        mask: &[bool],
        skips: &Skips,
        retry_key: &str,
        now_ms: i64,
    ) -> Result<bool, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, number)))
            .update_expression(
                "SET #state = :frozen, mask = :mask, retryKey = :key, frozenAt = :now, skipCap = :cap, \
                 skipSuppressed = :sup, skipBlocked = :blk, skipBudget = :bud, skipAlreadySent = :sent",
            )
            .condition_expression("#state = :planned AND leaseOwner = :owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":frozen", s(BatchState::Frozen.name()))
            .expression_attribute_values(":planned", s(BatchState::Planned.name()))
            .expression_attribute_values(":mask", s(&mask_to_hex(mask)))
            .expression_attribute_values(":key", s(retry_key))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":cap", n(skips.cap))
            .expression_attribute_values(":sup", n(skips.suppressed))
            .expression_attribute_values(":blk", n(skips.blocked))
            .expression_attribute_values(":bud", n(skips.budget))
            .expression_attribute_values(":sent", n(skips.already_sent))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem")
    }

    /// Back to planned, to be decided again: only a frozen batch this owner leases, with no call
    /// open (LINE surely never took it) and its reservation given back.
    async fn unfreeze(&self, c: &Campaign, number: u32, owner: &str) -> Result<bool, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, number)))
            .update_expression(format!("SET #state = :planned REMOVE {FROZEN_ATTRS}"))
            .condition_expression(
                "#state = :frozen AND leaseOwner = :owner AND attribute_not_exists(reserved) \
                 AND (attribute_not_exists(callOpen) OR callOpen = :f)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":frozen", s(BatchState::Frozen.name()))
            .expression_attribute_values(":planned", s(BatchState::Planned.name()))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem")
    }

    /// Records that a call to LINE is about to start (the first such time is kept): written before
    /// the call, so a sender that dies during it leaves the trace. False: the lease was lost.
    async fn mark_called(&self, c: &Campaign, number: u32, owner: &str, now_ms: i64) -> Result<bool, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, number)))
            .update_expression(
                "SET firstCalledAt = if_not_exists(firstCalledAt, :now), callOpen = :t ADD attempts :one",
            )
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .condition_expression("#state = :frozen AND leaseOwner = :owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":frozen", s(BatchState::Frozen.name()))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem")
    }

    /// After a clear refusal of a call made while no earlier call was open: LINE surely has not
    /// taken the batch, so it is no longer "maybe taken" (nor subject to the 23-hour limit).
    async fn close_call(&self, c: &Campaign, number: u32, owner: &str) -> Result<bool, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, number)))
            .update_expression("REMOVE callOpen, firstCalledAt")
            .condition_expression("leaseOwner = :owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem")
    }

    /// Takes the batch's messages from the month's budget once: a batch whose stored record shows
    /// the same take already (a retry whose copy was read before it) has taken them.
    async fn take_budget(
        &self,
        c: &Campaign,
        batch: &Batch,
        month: &str,
        count: u64,
        limit: u64,
    ) -> Result<bool, BackendError> {
        if batch.budget.is_some() {
            return Ok(true);
        }
        let batch_update = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, batch.number)))
            .update_expression("SET budgetMonth = :m, budgetTaken = :n, budgetGen = :g")
            .condition_expression(format!("attribute_not_exists(budgetMonth) AND {}", of_generation(batch.generation)))
            .set_expression_attribute_values(Some(with_generation(
                batch.generation,
                [(":m", s(month)), (":n", n(count)), (":g", n(batch.generation))],
            )))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        let budget_update = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(budget_key(month)))
            .update_expression("ADD used :n")
            .condition_expression("attribute_not_exists(used) OR used <= :room")
            .expression_attribute_values(":n", n(count))
            .expression_attribute_values(":room", n(limit as i64 - count as i64))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        if count > limit {
            return Ok(false);
        }
        if self.transact_updates([batch_update, budget_update]).await? {
            return Ok(true);
        }
        // Taken already for this month and count by this round (a retry whose copy was read
        // before the take): taken. Any other take stands, and this one is refused.
        Ok(self.stored_budget(c, batch.number).await? == Some((month.to_string(), count, batch.generation)))
    }

    /// Gives back what the stored record says the batch took (the caller's copy may be older),
    /// once, and only the caller's round's take: the record read is the transaction's condition.
    async fn return_budget(&self, c: &Campaign, batch: &Batch) -> Result<(), BackendError> {
        for _ in 0..4 {
            let Some((month, count, taken_by)) = self.stored_budget(c, batch.number).await? else { return Ok(()) };
            // A later round's take is not the caller's (an earlier round's left over is).
            if taken_by > batch.generation {
                return Ok(());
            }
            let batch_update = Update::builder()
                .table_name(&self.campaigns)
                .set_key(Some(batch_key(&c.id, &c.run, batch.number)))
                .update_expression("REMOVE budgetMonth, budgetTaken, budgetGen")
                .condition_expression("budgetMonth = :m AND budgetTaken = :n AND budgetGen = :g")
                .expression_attribute_values(":m", s(&month))
                .expression_attribute_values(":n", n(count))
                .expression_attribute_values(":g", n(taken_by))
                .build()
                .map_err(|e| err("TransactWriteItems", e.to_string()))?;
            let budget_update = Update::builder()
                .table_name(&self.campaigns)
                .set_key(Some(budget_key(&month)))
                .update_expression("ADD used :minus")
                .expression_attribute_values(":minus", n(-(count as i64)))
                .build()
                .map_err(|e| err("TransactWriteItems", e.to_string()))?;
            if self.transact_updates([batch_update, budget_update]).await? {
                return Ok(());
            }
        }
        Err(err("TransactWriteItems", format!("batch {}'s budget record kept changing", batch.number)))
    }

    async fn budget_used(&self, month: &str) -> Result<u64, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.campaigns)
            .set_key(Some(budget_key(month)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| err("GetItem", describe(&e)))?;
        Ok(out.item.as_ref().map_or(0, |i| uint(i, "used")))
    }

    async fn gave_back(&self, c: &Campaign, number: u32, generation: u32) -> Result<bool, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, number)))
            .update_expression("REMOVE reserved, capAttrs")
            .condition_expression("reserved = :t AND gen = :gen")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":gen", n(generation))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem")
    }

    /// Settles a frozen batch (or a planned one whose recipients were all skipped) and adds its
    /// counts to the campaign's in the same transaction. False: it was settled already, or the
    /// lease was lost.
    async fn settle(
        &self,
        c: &Campaign,
        batch: &Batch,
        owner: &str,
        outcome: &Settlement,
        now_ms: i64,
    ) -> Result<bool, BackendError> {
        let mut batch_values = HashMap::from([
            (":to".to_string(), s(outcome.state.name())),
            (":owner".to_string(), s(owner)),
            (":now".to_string(), n(now_ms)),
            (":from".to_string(), s(batch.state.name())),
        ]);
        let mut set = vec!["#state = :to", "settledAt = :now"];
        if let Some(r) = &outcome.request_id {
            batch_values.insert(":rid".into(), s(r));
            set.push("requestId = :rid");
        }
        if let Some(e) = &outcome.error {
            batch_values.insert(":err".into(), s(e));
            set.push("lastError = :err");
        }
        let batch_update = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, batch.number)))
            .update_expression(format!(
                "SET {} REMOVE leaseUntil, leaseOwner{}",
                set.join(", "),
                // An unknown outcome keeps its reservation until a person resolves it.
                if outcome.release_slots || outcome.state == BatchState::Unknown { "" } else { ", reserved, capAttrs" }
            ))
            .condition_expression("#state = :from AND leaseOwner = :owner")
            .expression_attribute_names("#state", "state")
            .set_expression_attribute_values(Some(batch_values))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        let mut deltas = vec![
            ("sent", outcome.sent as i64),
            ("failed", outcome.failed as i64),
            ("unknown", outcome.unknown as i64),
            ("settled", 1),
        ];
        deltas.extend(skip_deltas("send", &batch.skips));
        let count_update = self.count_update(
            c,
            batch.number,
            &deltas,
            "SET lastSentAt = :now, firstSentAt = if_not_exists(firstSentAt, :now)",
            HashMap::from([(":now".to_string(), n(now_ms))]),
        )?;
        self.transact_updates([batch_update, count_update]).await
    }

    /// Holds a batch while its campaign is paused or cancelled: its recipients count as held.
    /// `unfreeze`: LINE surely did not take it, so it goes back to `planned` (its slots are to be
    /// given back) and gets a new retry key when it goes out; else it keeps its frozen list and key.
    /// False: the batch moved on, or the campaign is sending again (a resume since it was read:
    /// holding now would leave the batch held for good).
    async fn hold(&self, c: &Campaign, batch: &Batch, owner: &str, unfreeze: bool) -> Result<bool, BackendError> {
        let back_to =
            if unfreeze || batch.state == BatchState::Planned { BatchState::Planned } else { BatchState::Frozen };
        let mut values = HashMap::from([
            (":held".to_string(), s(BatchState::Held.name())),
            (":from".to_string(), s(batch.state.name())),
            (":back".to_string(), s(back_to.name())),
        ]);
        values.insert(":owner".into(), s(owner));
        let condition = "#state = :from AND leaseOwner = :owner";
        let mut update = "SET #state = :held, heldFrom = :back REMOVE leaseUntil, leaseOwner".to_string();
        if unfreeze {
            // The reservation stays recorded until it is given back (gave_back).
            update.push_str(&format!(", {FROZEN_ATTRS}"));
        }
        let batch_update = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, batch.number)))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#state", "state")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        // Only while the campaign (this run) is not sending: a check on `meta`, which a hold,
        // rare, may read in a transaction.
        let not_sending = ConditionCheck::builder()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(&c.id)))
            .condition_expression("#run = :run AND NOT (#state IN (:planning, :sending))")
            .expression_attribute_names("#run", "run")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":planning", s(State::Planning.name()))
            .expression_attribute_values(":sending", s(State::Sending.name()))
            .expression_attribute_values(":run", s(&c.run))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        let held = [("held", batch.to.len() as i64)];
        if self.counts_on_meta(c) {
            // A run from before the counter shards: the check and the count are one update.
            let mut names = HashMap::from([("#state".to_string(), "state".to_string())]);
            let mut values = HashMap::from([
                (":planning".to_string(), s(State::Planning.name())),
                (":sending".to_string(), s(State::Sending.name())),
            ]);
            let adds = super::campaigns::adds(&held, &mut names, &mut values);
            let mut meta = self.count_update(c, batch.number, &[], &format!("ADD {}", adds.join(", ")), values)?;
            meta.condition_expression = Some("#run = :run AND NOT (#state IN (:planning, :sending))".into());
            meta.expression_attribute_names.get_or_insert_with(HashMap::new).extend(names);
            return self.transact_updates([batch_update, meta]).await;
        }
        let count_update = self.count_update(c, batch.number, &held, "", HashMap::new())?;
        self.transact(vec![
            TransactWriteItem::builder().update(batch_update).build(),
            TransactWriteItem::builder().condition_check(not_sending).build(),
            TransactWriteItem::builder().update(count_update).build(),
        ])
        .await
    }

    /// Takes a held batch back to where it was held from; its recipients stop counting as held.
    async fn unhold(&self, c: &Campaign, batch: &Batch) -> Result<bool, BackendError> {
        let back = batch.held_from.unwrap_or(BatchState::Planned);
        let batch_update = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, batch.number)))
            .update_expression("SET #state = :back REMOVE heldFrom")
            .condition_expression("#state = :held AND (heldFrom = :frozen OR attribute_not_exists(reserved))")
            .expression_attribute_values(":frozen", s(BatchState::Frozen.name()))
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":back", s(back.name()))
            .expression_attribute_values(":held", s(BatchState::Held.name()))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        let held = [("held", -(batch.to.len() as i64))];
        let count_update = self.count_update(c, batch.number, &held, "", HashMap::new())?;
        self.transact_updates([batch_update, count_update]).await
    }

    /// A person's decision on a batch whose outcome is unknown: `delivered` (LINE's statistics
    /// show it went out) counts its recipients sent; otherwise they count failed and the batch's
    /// slots are to be given back.
    async fn resolve_unknown(
        &self,
        c: &Campaign,
        batch: &Batch,
        delivered: bool,
        now_ms: i64,
    ) -> Result<bool, BackendError> {
        let n_to = batch.send_list().len() as i64;
        let to = if delivered { BatchState::Sent } else { BatchState::Failed };
        let mut update = "SET #state = :to, resolvedAt = :now".to_string();
        if delivered {
            update.push_str(" REMOVE reserved, capAttrs");
        }
        let batch_update = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, batch.number)))
            .update_expression(update)
            .condition_expression("#state = :unknown")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":to", s(to.name()))
            .expression_attribute_values(":unknown", s(BatchState::Unknown.name()))
            .expression_attribute_values(":now", n(now_ms))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        let deltas = [("unknown", -n_to), (if delivered { "sent" } else { "failed" }, n_to)];
        let count_update = self.count_update(c, batch.number, &deltas, "", HashMap::new())?;
        self.transact_updates([batch_update, count_update]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_round_trip() {
        let mask: Vec<bool> = (0..37).map(|i| i % 3 == 0 || i == 36).collect();
        assert_eq!(mask_from_hex(&mask_to_hex(&mask), 37), mask);
        assert_eq!(mask_to_hex(&vec![true; 500]).len(), 125);
    }
}
