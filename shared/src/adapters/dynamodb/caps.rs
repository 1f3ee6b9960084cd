//! The frequency caps and opt-outs, on the friend's own item of the users table.
//!
//! One string set per period (`cap#m2026-11`: the campaign runs pushed to them that month),
//! reserved by one conditional update for every period at once, with the friend's follow state,
//! opt-out and minimum gap in the same condition; the last push (`lastPushAt`, `lastPushBy`) and
//! the one before it (`prevPushAt`, `prevPushBy`, restored when a push is given back).
//! `suppressed` (`cli` or `settings`) marks an opt-out and puts the friend in the users table's
//! sparse `suppressed` index.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnConsumedCapacity, ReturnValue};

use super::attr::{int, n, s, string_set, text, Item};
use super::call::{conditional, consumed, err};
use super::campaigns::DynamoCampaigns;
use crate::adapters::sdk::describe;
use crate::campaign::caps::{Demand, FriendCaps, Reservation};
use crate::campaign::model::Skip;
use crate::campaign::ports::{CapStore, OptOuts};
use crate::ports::BackendError;

pub const SUPPRESSED_INDEX: &str = "suppressed";

/// `prevPushBy` when there was no push before: a friend's first push given back leaves no last
/// push behind.
const NOBODY: &str = "-";

/// The demand's cap periods in an update on a friend's item (the member's value is `:m`): a
/// condition each (room left, or the member is in already), and the `ADD` clauses that put the
/// member in.
fn slot_clauses(
    demand: &Demand,
    names: &mut HashMap<String, String>,
    values: &mut HashMap<String, AttributeValue>,
    condition: &mut Vec<String>,
) -> Vec<String> {
    if !demand.slots.is_empty() {
        values.insert(":ms".into(), AttributeValue::Ss(vec![demand.member.clone()]));
    }
    let mut adds = vec![];
    for (i, (attr, max)) in demand.slots.iter().enumerate() {
        names.insert(format!("#p{i}"), attr.clone());
        values.insert(format!(":max{i}"), n(max));
        condition.push(format!("(attribute_not_exists(#p{i}) OR contains(#p{i}, :m) OR size(#p{i}) < :max{i})"));
        adds.push(format!("#p{i} :ms"));
    }
    adds
}

#[async_trait]
impl CapStore for DynamoCampaigns {
    /// Follow state, opt-out and the given cap sets of each friend (absent friends: not following).
    async fn friend_caps(
        &self,
        users: &[String],
        demand: &Demand,
    ) -> Result<HashMap<String, FriendCaps>, BackendError> {
        let attributes = demand.attributes();
        let mut names =
            HashMap::from([("#u".to_string(), "userId".to_string()), ("#st".to_string(), "state".to_string())]);
        let mut projection = ["#u", "#st", "suppressed", "lastPushAt", "lastPushBy"].map(String::from).to_vec();
        for (i, a) in attributes.iter().enumerate() {
            names.insert(format!("#c{i}"), a.clone());
            projection.push(format!("#c{i}"));
        }
        let sent = demand.sent_attribute();
        if let Some(a) = &sent {
            names.insert("#sent".into(), a.clone());
            projection.push("#sent".into());
        }
        let mut out = HashMap::new();
        for chunk in users.chunks(100) {
            let mut keys: Vec<Item> = chunk.iter().map(|u| HashMap::from([("userId".to_string(), s(u))])).collect();
            keys.dedup();
            let mut tries = 0;
            while !keys.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .projection_expression(projection.join(", "))
                    .set_expression_attribute_names(Some(names.clone()))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| err("BatchGetItem", e.to_string()))?;
                let result = self
                    .client
                    .batch_get_item()
                    .request_items(&self.users, request)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| err("BatchGetItem", describe(&e)))?;
                self.meter.read(consumed(result.consumed_capacity()));
                for item in result.responses.and_then(|mut r| r.remove(&self.users)).unwrap_or_default() {
                    let Some(user) = text(&item, "userId") else { continue };
                    let sets = attributes.iter().map(|a| (a.clone(), string_set(&item, a))).collect();
                    out.insert(
                        user.to_string(),
                        FriendCaps {
                            following: text(&item, "state") == Some("following"),
                            suppressed: item.contains_key("suppressed"),
                            sets,
                            last_push: int(&item, "lastPushAt")
                                .zip(text(&item, "lastPushBy").filter(|by| *by != NOBODY).map(str::to_string)),
                            sent: demand
                                .campaign
                                .iter()
                                .zip(sent.as_deref().and_then(|a| text(&item, a)))
                                .map(|(id, r)| (id.clone(), r.to_string()))
                                .collect(),
                        },
                    );
                }
                if let Some(left) = result.unprocessed_keys.and_then(|mut u| u.remove(&self.users)) {
                    keys = left.keys;
                    tries += 1;
                    if tries > 8 {
                        return Err(err("BatchGetItem", "keys left unprocessed after 8 tries".into()));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20 << tries.min(5))).await;
                }
            }
        }
        Ok(out)
    }

    /// Reserves the friend's slot in every period of the demand for its member, in one
    /// conditional update that also requires the friend to follow, not be opted out, and (unless
    /// transactional) not have had a push within the minimum gap; the push is recorded
    /// (`lastPushAt`, `lastPushBy`, and `prevPushAt`/`prevPushBy` to restore on release). A retry
    /// (the last push recorded is this member's) takes a second conditional update that adds the
    /// member to the periods begun since, under their caps. A transactional demand only checks
    /// follow state and opt-out.
    async fn reserve(&self, user: &str, demand: &Demand, now_ms: i64) -> Result<Reservation, BackendError> {
        let mut names = HashMap::from([("#st".to_string(), "state".to_string())]);
        let mut values = HashMap::from([(":following".to_string(), s("following"))]);
        let mut condition = vec!["#st = :following".to_string(), "attribute_not_exists(suppressed)".to_string()];
        let mut update = String::new();
        let mark = sent_clause(demand, &mut names, &mut values, &mut condition);
        if !demand.transactional {
            values.insert(":m".into(), s(&demand.member));
            values.insert(":now".into(), n(now_ms));
            values.insert(":zero".into(), n(0));
            values.insert(":nobody".into(), s(NOBODY));
            condition.push("(attribute_not_exists(lastPushBy) OR lastPushBy <> :m)".into());
            if demand.min_gap_ms > 0 {
                values.insert(":since".into(), n(demand.gap_since(now_ms)));
                condition.push("(attribute_not_exists(lastPushAt) OR lastPushAt <= :since)".into());
            }
            update.push_str(
                "SET prevPushAt = if_not_exists(lastPushAt, :zero), prevPushBy = if_not_exists(lastPushBy, :nobody), \
                 lastPushAt = :now, lastPushBy = :m",
            );
            update.push_str(&mark);
            let adds = slot_clauses(demand, &mut names, &mut values, &mut condition);
            if !adds.is_empty() {
                update.push_str(&format!(" ADD {}", adds.join(", ")));
            }
            // Periods long over go in the same update (an absent one is no cost).
            let past: Vec<String> = demand
                .past
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    names.insert(format!("#x{i}"), a.clone());
                    format!("#x{i}")
                })
                .collect();
            if !past.is_empty() {
                update.push_str(&format!(" REMOVE {}", past.join(", ")));
            }
        } else {
            update.push_str("SET lastCheckedAt = :now");
            update.push_str(&mark);
            values.insert(":now".into(), n(now_ms));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.users)
            .key("userId", s(user))
            .update_expression(update)
            .condition_expression(condition.join(" AND "))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            // (Returned values cost no read units.)
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let mut older = vec![];
        if let Ok(out) = &result {
            self.meter.write(out.consumed_capacity().and_then(|c| c.capacity_units).unwrap_or(0.0));
            older =
                out.attributes().into_iter().flatten().map(|(k, _)| k).filter(|k| demand.is_past(k)).cloned().collect();
        }
        if conditional(result.map(|_| ()), "UpdateItem")? {
            if !older.is_empty() {
                self.prune(user, &older).await;
            }
            return Ok(Reservation::Reserved);
        }
        // Our own earlier reservation (a retry) passes: its periods may have ended since (a retry
        // across a day, week or month), so the current ones are reserved too, under their caps.
        if !demand.transactional && self.reserve_periods(user, demand).await? {
            return Ok(Reservation::Reserved);
        }
        // Refused: read why (rare; one strongly consistent read).
        let caps = self.friend_caps(&[user.to_string()], demand).await?;
        let Some(friend) = caps.get(user) else { return Ok(Reservation::Refused(Skip::Blocked)) };
        Ok(Reservation::Refused(friend.refusal(demand, now_ms).unwrap_or(Skip::Cap)))
    }

    /// Gives the friend's slots of the demand's member back (the send surely did not go out),
    /// and their last push before it while the last one recorded is this member's.
    async fn release(&self, user: &str, demand: &Demand, attributes: &[String]) -> Result<(), BackendError> {
        // The campaign's mark goes where it is this member's (a later run's or generation's stays).
        if let Some(a) = demand.sent_attribute() {
            let forgotten = self
                .client
                .update_item()
                .table_name(&self.users)
                .key("userId", s(user))
                .update_expression("REMOVE #sent")
                .condition_expression("#sent = :m")
                .expression_attribute_names("#sent", a)
                .expression_attribute_values(":m", s(&demand.member))
                .send()
                .await;
            conditional(forgotten.map(|_| ()), "UpdateItem")?;
        }
        // (A transactional member has no slots nor last push: the steps below find nothing of it.)
        let names: HashMap<String, String> =
            attributes.iter().enumerate().map(|(i, a)| (format!("#p{i}"), a.clone())).collect();
        let deletes: Vec<String> = (0..attributes.len()).map(|i| format!("#p{i} :ms")).collect();
        let members = AttributeValue::Ss(vec![demand.member.clone()]);
        let update = |expression: String, condition: &str| {
            let r = self
                .client
                .update_item()
                .table_name(&self.users)
                .key("userId", s(user))
                .update_expression(expression)
                .condition_expression(condition)
                .set_expression_attribute_names((!names.is_empty()).then(|| names.clone()));
            if deletes.is_empty() {
                r
            } else {
                r.expression_attribute_values(":ms", members.clone())
            }
        };
        let delete = if deletes.is_empty() { String::new() } else { format!(" DELETE {}", deletes.join(", ")) };
        // The usual case: the last push recorded is this one; the one before comes back (and is
        // forgotten as the one before: only one push is remembered behind the last).
        let restored = update(
            format!(
                "SET lastPushAt = if_not_exists(prevPushAt, :zero), lastPushBy = if_not_exists(prevPushBy, :nobody) \
                 REMOVE prevPushAt, prevPushBy{delete}"
            ),
            "lastPushBy = :m",
        )
        .expression_attribute_values(":m", s(&demand.member))
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":nobody", s(NOBODY))
        .send()
        .await;
        if conditional(restored.map(|_| ()), "UpdateItem")? {
            return Ok(());
        }
        // Another push was recorded since: the slots go, and this push is forgotten where it is
        // remembered as the one before the last (given back, it must not come back as the last).
        if !deletes.is_empty() {
            let result = update(format!("DELETE {}", deletes.join(", ")), "attribute_exists(userId)").send().await;
            conditional(result.map(|_| ()), "UpdateItem")?;
        }
        let forgotten = self
            .client
            .update_item()
            .table_name(&self.users)
            .key("userId", s(user))
            .update_expression("SET prevPushAt = :zero, prevPushBy = :nobody")
            .condition_expression("prevPushBy = :m")
            .expression_attribute_values(":m", s(&demand.member))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":nobody", s(NOBODY))
            .send()
            .await;
        conditional(forgotten.map(|_| ()), "UpdateItem").map(|_| ())
    }

    /// The friend's last push is when LINE took it, while it is still this member's.
    async fn pushed(&self, user: &str, demand: &Demand, at_ms: i64) -> Result<(), BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.users)
            .key("userId", s(user))
            .update_expression("SET lastPushAt = :at")
            .condition_expression("lastPushBy = :m AND lastPushAt < :at")
            .expression_attribute_values(":m", s(&demand.member))
            .expression_attribute_values(":at", n(at_ms))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem").map(|_| ())
    }
}

/// The campaign's mark on a friend (`sent#<id>`: the member that reserved them), checked unless
/// the demand resends: absent, or this run's. The `SET` clause that writes it (or nothing).
fn sent_clause(
    demand: &Demand,
    names: &mut HashMap<String, String>,
    values: &mut HashMap<String, AttributeValue>,
    condition: &mut Vec<String>,
) -> String {
    let Some(a) = demand.sent_attribute() else { return String::new() };
    names.insert("#sent".into(), a);
    values.insert(":mark".into(), s(&demand.member));
    if demand.resend {
        // An earlier run's mark stays: it is not this run's to give back.
        return ", #sent = if_not_exists(#sent, :mark)".into();
    }
    values.insert(":thisrun".into(), s(&format!("{}~", demand.run_member)));
    condition.push("(attribute_not_exists(#sent) OR begins_with(#sent, :thisrun))".into());
    ", #sent = :mark".into()
}

impl DynamoCampaigns {
    /// Removes periods older than a reservation's own removal reaches (a friend pushed again after
    /// a long pause): once per such friend, best effort (a failure leaves them for the next one).
    async fn prune(&self, user: &str, attributes: &[String]) {
        // In updates of 100 (an expression is at most 4 KB; years of daily caps are hundreds).
        for chunk in attributes.chunks(100) {
            let names: HashMap<String, String> =
                chunk.iter().enumerate().map(|(i, a)| (format!("#x{i}"), a.clone())).collect();
            let remove: Vec<String> = (0..chunk.len()).map(|i| format!("#x{i}")).collect();
            let result = self
                .client
                .update_item()
                .table_name(&self.users)
                .key("userId", s(user))
                .update_expression(format!("REMOVE {}", remove.join(", ")))
                .condition_expression("attribute_exists(userId)")
                .set_expression_attribute_names(Some(names))
                .send()
                .await;
            if let Err(e) = conditional(result.map(|_| ()), "UpdateItem") {
                tracing::warn!(error = %e, periods = chunk.len(), "past cap periods not removed: the next reservation tries again");
                return;
            }
        }
    }

    /// The second step of a retried reservation: while the friend follows, is not opted out and
    /// their last push recorded is this member's, adds the member to the demand's current periods
    /// (those begun since the first reservation) under the same cap conditions. True: reserved.
    async fn reserve_periods(&self, user: &str, demand: &Demand) -> Result<bool, BackendError> {
        let mut names = HashMap::from([("#st".to_string(), "state".to_string())]);
        let mut values =
            HashMap::from([(":m".to_string(), s(&demand.member)), (":following".to_string(), s("following"))]);
        let mut condition = vec![
            "#st = :following".to_string(),
            "attribute_not_exists(suppressed)".to_string(),
            "lastPushBy = :m".into(),
        ];
        let adds = slot_clauses(demand, &mut names, &mut values, &mut condition);
        if let Some(a) = demand.sent_attribute().filter(|_| !demand.resend) {
            names.insert("#sent".into(), a);
            values.insert(":thisrun".into(), s(&format!("{}~", demand.run_member)));
            condition.push("(attribute_not_exists(#sent) OR begins_with(#sent, :thisrun))".into());
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.users)
            .key("userId", s(user))
            // (With no cap in force, a write of what is there: the condition is the check.)
            .update_expression(if adds.is_empty() {
                "SET lastPushBy = :m".to_string()
            } else {
                format!("ADD {}", adds.join(", "))
            })
            .condition_expression(condition.join(" AND "))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem")
    }
}

#[async_trait]
impl OptOuts for DynamoCampaigns {
    /// Opts a friend out (`by`: `cli` or `settings`) or back in. Opting back in removes only an
    /// opt-out made `by` the same means, so settings never undo an `oa suppress add`.
    async fn suppress(&self, user: &str, on: bool, by: &str, now_ms: i64) -> Result<bool, BackendError> {
        let request = self.client.update_item().table_name(&self.users).key("userId", s(user));
        let result = if on {
            request
                .update_expression("SET suppressed = :by, suppressedAt = :now")
                .condition_expression("attribute_not_exists(suppressed)")
                .expression_attribute_values(":by", s(by))
                .expression_attribute_values(":now", n(now_ms))
                .send()
                .await
        } else {
            request
                .update_expression("REMOVE suppressed, suppressedAt")
                .condition_expression("suppressed = :by")
                .expression_attribute_values(":by", s(by))
                .send()
                .await
        };
        conditional(result.map(|_| ()), "UpdateItem")
    }

    /// Every opted-out friend, with who opted them out.
    async fn suppressed(&self) -> Result<Vec<(String, String)>, BackendError> {
        let mut out = vec![];
        for by in ["cli", "settings"] {
            let mut start = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.users)
                    .index_name(SUPPRESSED_INDEX)
                    .key_condition_expression("suppressed = :by")
                    .expression_attribute_values(":by", s(by))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| err("Query", describe(&e)))?;
                out.extend(
                    page.items().iter().filter_map(|i| text(i, "userId")).map(|u| (u.to_string(), by.to_string())),
                );
                start = page.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
        }
        out.sort();
        Ok(out)
    }
}
