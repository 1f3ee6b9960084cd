//! The fleet's send schedule in the campaigns table: one item (`pace#multicast`) every sender
//! claims its slots from with conditional updates (see [`crate::campaign::pace`]).

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::attr::{int, n, s, Item};
use crate::adapters::sdk::describe;
use crate::campaign::pace::{anchor, floor_after, pause_after_429_ms, AnswerTimes, PaceState, MAX_WAIT_MS};
use crate::campaign::ports::Pacer;
use crate::ports::BackendError;

/// The schedule in the campaigns table (item `pace#multicast`), shared by every sender.
#[derive(Clone)]
pub struct DynamoPacer {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The schedule as this process last saw it (its cut and the account's rate, for the
    /// interval of the next claim); None until first read.
    seen: std::sync::Arc<std::sync::Mutex<Option<PaceState>>>,
    answers: std::sync::Arc<AnswerTimes>,
}

impl DynamoPacer {
    pub fn new(client: aws_sdk_dynamodb::Client, campaigns_table: impl Into<String>) -> Self {
        DynamoPacer { client, table: campaigns_table.into(), seen: Default::default(), answers: Default::default() }
    }

    fn key() -> Item {
        Item::from([("pk".to_string(), s("pace#multicast")), ("sk".to_string(), s("pace"))])
    }

    fn seen(&self) -> PaceState {
        self.seen.lock().ok().and_then(|s| *s).unwrap_or_default()
    }

    /// The schedule read once, so a process's first claim is at the account's rate too.
    async fn load(&self) -> Result<(), BackendError> {
        if self.seen.lock().is_ok_and(|s| s.is_some()) {
            return Ok(());
        }
        let item = self.read().await?;
        self.remember(Some(&item.unwrap_or_default()));
        Ok(())
    }

    async fn read(&self) -> Result<Option<Item>, BackendError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| BackendError::Store { operation: "GetItem", message: describe(&e) })?
            .item)
    }

    fn remember(&self, item: Option<&Item>) {
        let Some(item) = item else { return };
        let cut = match (item.get("cutRate").and_then(|v| v.as_n().ok()), int(item, "cutAt")) {
            (Some(r), Some(at)) => r.parse::<f64>().ok().map(|r| (r, at)),
            _ => None,
        };
        let rate = int(item, "sendRate").and_then(|r| u32::try_from(r).ok());
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(PaceState { next_us: int(item, "next").unwrap_or(0), cut, rate });
        }
    }

    /// One conditional update; `Ok(None)`: its condition did not hold.
    async fn update(
        &self,
        expression: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Option<Item>, BackendError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key()))
            .update_expression(expression)
            .condition_expression(condition)
            .return_values(ReturnValue::AllOld);
        if expression.contains("#next") || condition.contains("#next") {
            request = request.expression_attribute_names("#next", "next");
        }
        for (k, v) in values {
            request = request.expression_attribute_values(k, v);
        }
        match request.send().await {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => Ok(None),
            Err(e) => Err(BackendError::Store { operation: "UpdateItem", message: describe(&e) }),
        }
    }
}

#[async_trait]
impl Pacer for DynamoPacer {
    async fn claim(&self, rate: u32, now_us: i64) -> Result<Option<i64>, BackendError> {
        self.load().await?;
        let now_ms = now_us.div_euclid(1000);
        let horizon_us = now_us + MAX_WAIT_MS * 1000;
        // The interval is computed at the account's rate as last seen; the claim holds only while
        // the stored rate is no lower (a lowered rate is read again first).
        let rate_holds = "(attribute_not_exists(sendRate) OR sendRate >= :sr)";
        for _ in 0..8 {
            let seen = self.seen();
            let interval = seen.interval_us(rate, now_ms);
            let used = n(seen.rate_for(rate));
            // A busy schedule: take its next slot, unless it is beyond the horizon.
            let busy = self
                .update(
                    "SET #next = #next + :i",
                    &format!("#next BETWEEN :now AND :horizon AND {rate_holds}"),
                    vec![(":i", n(interval)), (":now", n(now_us)), (":horizon", n(horizon_us)), (":sr", used.clone())],
                )
                .await?;
            if let Some(old) = busy {
                self.remember(Some(&old));
                return Ok(Some(int(&old, "next").unwrap_or(now_us)));
            }
            // An idle one: start it again at now.
            let idle = self
                .update(
                    "SET #next = :after",
                    &format!("(attribute_not_exists(#next) OR #next < :now) AND {rate_holds}"),
                    vec![(":after", n(now_us + interval)), (":now", n(now_us)), (":sr", used)],
                )
                .await?;
            if let Some(old) = idle {
                self.remember(Some(&old));
                return Ok(Some(now_us));
            }
            // Neither busy within the horizon nor idle: full beyond it (or just moved; look again).
            let item = self.read().await?;
            self.remember(Some(&item.clone().unwrap_or_default()));
            if item.as_ref().and_then(|i| int(i, "next")).is_some_and(|next| next > horizon_us) {
                return Ok(None);
            }
        }
        Err(BackendError::Store { operation: "UpdateItem", message: "the send schedule is contended".into() })
    }

    async fn set_rate(&self, rate: u32, version: u64) -> Result<(), BackendError> {
        let set = self
            .update(
                "SET sendRate = :r, rateVersion = :v",
                "attribute_not_exists(rateVersion) OR rateVersion < :v",
                vec![(":r", n(rate)), (":v", n(version))],
            )
            .await?;
        if set.is_some() {
            if let Ok(mut s) = self.seen.lock() {
                if let Some(s) = s.as_mut() {
                    s.rate = Some(rate);
                }
            }
        }
        Ok(())
    }

    async fn rate_limited(&self, rate: u32, now_ms: i64) -> Result<(), BackendError> {
        let seen = self.seen();
        let cut = seen.cut_to(rate, now_ms);
        let resume_us = (now_ms + pause_after_429_ms()) * 1000;
        let once = "(attribute_not_exists(cutAt) OR cutAt < :recent)";
        let values = || vec![(":r", n(cut)), (":now", n(now_ms)), (":recent", n(now_ms - 1000))];
        // The schedule only ever moves forward: a slot already given out is never given again.
        let mut pushed = values();
        pushed.push((":resume", n(resume_us)));
        let done = self
            .update(
                "SET cutRate = :r, cutAt = :now, #next = :resume",
                &format!("{once} AND (attribute_not_exists(#next) OR #next < :resume)"),
                pushed,
            )
            .await?;
        if done.is_none() {
            self.update("SET cutRate = :r, cutAt = :now", once, values()).await?;
        }
        if let Ok(mut s) = self.seen.lock() {
            s.get_or_insert_with(PaceState::default).cut = Some((cut, now_ms));
        }
        tracing::warn!(rate = cut, "LINE rate-limited a multicast: the fleet slows down");
        Ok(())
    }

    async fn floor(&self, slot: i64) -> Result<i64, BackendError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key()))
            .projection_expression("lateAnchor")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| BackendError::Store { operation: "GetItem", message: describe(&e) })?
            .item;
        Ok(floor_after(slot, item.as_ref().and_then(|i| int(i, "lateAnchor"))))
    }

    async fn sent_late(&self, slot: i64, at: i64) -> Result<(), BackendError> {
        // Only ever raised: a smaller anchor binds nothing the larger one does not.
        let raised = self
            .update(
                "SET lateAnchor = :a",
                "attribute_not_exists(lateAnchor) OR lateAnchor < :a",
                vec![(":a", n(anchor(slot, at)))],
            )
            .await?;
        if raised.is_some() {
            tracing::debug!(slot, at, "a late request holds the next ones back");
        }
        Ok(())
    }

    fn answer_times(&self) -> &AnswerTimes {
        &self.answers
    }
}
