//! Campaigns in DynamoDB: the campaign's own item ([`CampaignRepo`], [`CampaignAdmin`]), and the
//! store every campaign adapter shares ([`DynamoCampaigns`]); its batches are in [`super::batches`],
//! the caps and opt-outs in [`super::caps`].
//!
//! Campaigns table (key `pk`, `sk`):
//! - `c#<id>` / `meta`: the campaign: its file (the segment in `expression`), `run` (new at every create: ids are reused, runs are
//!   not), state and reason, the caps and time zone taken at start, the planner's checkpoint
//!   (`planPage`, `cursor`, `planDone`, `lastBatch`) and the counters ([`crate::campaign::model::Counters`]), each an
//!   attribute changed with `ADD` in the same transaction as the batch it counts. `kind` =
//!   `campaign` puts it in the `byKind` index (keys only) that `oa campaign list` reads.
//! - `c#<id>` / `r#<run>#<n>`: batch n's recipients (at most 500) and the friends drawn into the
//!   holdout on its page, written once by the planner and never changed.
//! - `c#<id>` / `b#<run>#<n>`: batch n's state: `planned` → `frozen` (with the send list as a bitmap
//!   of the recipients, the skips and a random retry key) → `sent` | `failed` | `unknown` |
//!   `skipped`; or `held` while its campaign is paused or cancelled. A lease (`leaseUntil`,
//!   `leaseOwner`) keeps two senders off one batch. Small, so its updates cost one write unit.
//!
//! Caps live on the friend's own item of the users table: one string set per period
//! (`cap#m2026-11`: the campaign runs pushed to them that month), reserved by one conditional
//! update for every period at once, with the friend's follow state and opt-out in the same
//! condition. `suppressed` (`cli` or `settings`) marks an opt-out and puts the friend in the
//! users table's sparse `suppressed` index.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use serde_json::Value;

use super::attr::{flag, int, n, s, text, uint, Item};
use super::call::{self, conditional, err, Meter, Units};
use crate::adapters::sdk::describe;
use crate::campaign::batch::BatchState;
use crate::campaign::file::{AccountSettings, CampaignFile, MAX_BATCH};
use crate::campaign::model::{uuid_simple, Campaign, Counters, Created, PlannedPage, Policy, Skip, Skips, State};
use crate::campaign::ports::{CampaignAdmin, CampaignRepo};
use crate::ports::BackendError;
use crate::segment::resolve::Cursor;

pub const KIND_INDEX: &str = "byKind";

pub(super) fn meta_key(id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".into(), s(&format!("c#{id}"))), ("sk".into(), s("meta"))])
}

/// The account's billable messages in one month (`monthlyBudget`), across campaigns.
pub(super) fn budget_key(month: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".into(), s("budget#account")), ("sk".into(), s(month))])
}

pub(super) fn batch_key(id: &str, run: &str, number: u32) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".into(), s(&format!("c#{id}"))), ("sk".into(), s(&format!("b#{run}#{number:06}")))])
}

pub(super) fn recipients_key(id: &str, run: &str, number: u32) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".into(), s(&format!("c#{id}"))), ("sk".into(), s(&format!("r#{run}#{number:06}")))])
}

/// Attribute names of the counters.
const COUNTERS: [&str; 19] = [
    "segment",
    "holdout",
    "planSkipCap",
    "planSkipBudget",
    "planSkipSuppressed",
    "planSkipBlocked",
    "planSkipAlreadySent",
    "planned",
    "sent",
    "skipCap",
    "skipBudget",
    "skipSuppressed",
    "skipBlocked",
    "skipAlreadySent",
    "failed",
    "held",
    "unknown",
    "batches",
    "settled",
];

fn counters_of(item: &Item) -> Counters {
    let u = |k: &str| uint(item, k);
    Counters {
        segment: u("segment"),
        holdout: u("holdout"),
        plan_skipped: Skips {
            cap: u("planSkipCap"),
            budget: u("planSkipBudget"),
            suppressed: u("planSkipSuppressed"),
            blocked: u("planSkipBlocked"),
            already_sent: u("planSkipAlreadySent"),
        },
        planned: u("planned"),
        sent: u("sent"),
        skipped: Skips {
            cap: u("skipCap"),
            budget: u("skipBudget"),
            suppressed: u("skipSuppressed"),
            blocked: u("skipBlocked"),
            already_sent: u("skipAlreadySent"),
        },
        failed: u("failed"),
        held: u("held"),
        unknown: u("unknown"),
        batches: u("batches"),
        settled: u("settled"),
    }
}

/// `ADD` clauses for the non-zero `deltas` (name, amount), with their names and values (some
/// counter names are reserved words: `segment`, `unknown`).
pub(super) fn adds(
    deltas: &[(&str, i64)],
    names: &mut HashMap<String, String>,
    values: &mut HashMap<String, AttributeValue>,
) -> Vec<String> {
    deltas
        .iter()
        .filter(|(_, d)| *d != 0)
        .map(|(name, d)| {
            values.insert(format!(":d_{name}"), n(d));
            names.insert(format!("#d_{name}"), name.to_string());
            format!("#d_{name} :d_{name}")
        })
        .collect()
}

pub(super) fn skip_deltas(prefix: &'static str, skips: &Skips) -> Vec<(&'static str, i64)> {
    let name = |why: Skip| -> &'static str {
        match (prefix, why) {
            ("plan", Skip::Cap) => "planSkipCap",
            ("plan", Skip::Budget) => "planSkipBudget",
            ("plan", Skip::Suppressed) => "planSkipSuppressed",
            ("plan", Skip::Blocked) => "planSkipBlocked",
            ("plan", Skip::AlreadySent) => "planSkipAlreadySent",
            (_, Skip::Cap) => "skipCap",
            (_, Skip::Budget) => "skipBudget",
            (_, Skip::Suppressed) => "skipSuppressed",
            (_, Skip::Blocked) => "skipBlocked",
            (_, Skip::AlreadySent) => "skipAlreadySent",
        }
    };
    Skip::ALL.iter().map(|w| (name(*w), skips.get(*w) as i64)).collect()
}

fn campaign_from_item(item: &Item) -> Option<Campaign> {
    let json = |k: &str| text(item, k).and_then(|t| serde_json::from_str::<Value>(t).ok());
    Some(Campaign {
        id: text(item, "id")?.to_string(),
        run: text(item, "run")?.to_string(),
        name: text(item, "name").unwrap_or_default().to_string(),
        segment: text(item, "expression").unwrap_or_default().to_string(),
        messages: json("messages").and_then(|v| v.as_array().cloned()).unwrap_or_default(),
        holdout_bps: uint(item, "holdoutBps") as u32,
        budget: int(item, "budget").map(|b| b.max(0) as u64),
        transactional: flag(item, "transactional"),
        not_before_ms: int(item, "notBefore").unwrap_or(0),
        state: text(item, "state").and_then(State::parse)?,
        reason: text(item, "reason").map(str::to_string),
        source: text(item, "source").unwrap_or_default().to_string(),
        created_at_ms: int(item, "createdAt").unwrap_or(0),
        started_at_ms: int(item, "startedAt"),
        first_sent_at_ms: int(item, "firstSentAt"),
        last_sent_at_ms: int(item, "lastSentAt"),
        caps: json("caps").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
        timezone: text(item, "timezone").unwrap_or("UTC").to_string(),
        plan_page: uint(item, "planPage") as u32,
        cursor: json("cursor").and_then(|v| serde_json::from_value(v).ok()),
        plan_done: flag(item, "planDone"),
        last_batch: int(item, "lastBatch").map(|b| b as u32),
        counters: counters_of(item),
        preview: json("preview"),
        batch_size: int(item, "batchSize").map_or(MAX_BATCH, |b| b.clamp(1, i64::from(MAX_BATCH)) as u32),
        aggregation_unit: text(item, "aggregationUnit").map(str::to_string),
        resend: flag(item, "resend"),
        policy: json("policy").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
        resume_at_ms: int(item, "resumeAt"),
    })
}

/// Campaigns, their batches and the friends' caps in DynamoDB (the campaigns and users tables).
#[derive(Clone)]
pub struct DynamoCampaigns {
    pub(super) client: Client,
    pub(super) campaigns: String,
    pub(super) users: String,
    /// Capacity the planner's and the sender's main calls consumed (for benchmarks and logs).
    pub(super) meter: Arc<Meter>,
}

impl DynamoCampaigns {
    pub fn new(client: Client, campaigns_table: impl Into<String>, users_table: impl Into<String>) -> Self {
        DynamoCampaigns {
            client,
            campaigns: campaigns_table.into(),
            users: users_table.into(),
            meter: Default::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Capacity units this store's planning and sending calls consumed so far.
    pub fn units(&self) -> Units {
        self.meter.units()
    }

    /// Runs a transaction (see [`call::transact`]).
    pub(super) async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<bool, BackendError> {
        call::transact(&self.client, &self.meter, actions).await
    }

    /// A transaction of updates only (an item and the counters or budget it moves).
    pub(super) async fn transact_updates(
        &self,
        updates: impl IntoIterator<Item = Update>,
    ) -> Result<bool, BackendError> {
        self.transact(updates.into_iter().map(|u| TransactWriteItem::builder().update(u).build()).collect()).await
    }
}

#[async_trait]
impl CampaignRepo for DynamoCampaigns {
    async fn get(&self, id: &str) -> Result<Option<Campaign>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| err("GetItem", describe(&e)))?;
        Ok(out.item.as_ref().and_then(campaign_from_item))
    }

    /// Moves the campaign's `run` from one of `from` to `to` (with `reason`, or none). False: it
    /// was in another state (or another run).
    async fn transition(
        &self,
        id: &str,
        run: &str,
        from: &[State],
        to: State,
        reason: Option<&str>,
    ) -> Result<bool, BackendError> {
        let mut values: HashMap<String, AttributeValue> =
            from.iter().enumerate().map(|(i, st)| (format!(":f{i}"), s(st.name()))).collect();
        values.insert(":to".into(), s(to.name()));
        values.insert(":run".into(), s(run));
        let list: Vec<String> = (0..from.len()).map(|i| format!(":f{i}")).collect();
        let update = match reason {
            Some(r) => {
                values.insert(":reason".into(), s(r));
                "SET #state = :to, reason = :reason REMOVE resumeAt"
            }
            None => "SET #state = :to REMOVE reason, resumeAt",
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(id)))
            .update_expression(update)
            .condition_expression(format!("#run = :run AND #state IN ({})", list.join(", ")))
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#run", "run")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem")
    }

    async fn resume_from_quiet(&self, id: &str, run: &str, until_ms: i64, to: State) -> Result<bool, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(id)))
            .update_expression("SET #state = :to REMOVE reason, resumeAt")
            .condition_expression("#run = :run AND #state = :paused AND resumeAt = :until")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#run", "run")
            .expression_attribute_values(":to", s(to.name()))
            .expression_attribute_values(":paused", s(State::Paused.name()))
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":run", s(run))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem")
    }

    async fn pause_until(&self, id: &str, run: &str, reason: &str, until_ms: i64) -> Result<bool, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(id)))
            .update_expression("SET #state = :paused, reason = :reason, resumeAt = :until")
            .condition_expression("#run = :run AND #state IN (:scheduled, :planning, :sending)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#run", "run")
            .expression_attribute_values(":paused", s(State::Paused.name()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":run", s(run))
            .expression_attribute_values(":scheduled", s(State::Scheduled.name()))
            .expression_attribute_values(":planning", s(State::Planning.name()))
            .expression_attribute_values(":sending", s(State::Sending.name()))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem")
    }

    /// Commits page `c.plan_page` of the plan in one transaction: its batch (when it has
    /// recipients), the planner's checkpoint and the counters. False: the page was committed by
    /// someone else, or the campaign stopped sending (read it again).
    async fn commit_page(
        &self,
        c: &Campaign,
        page: &PlannedPage,
        next: Option<&Cursor>,
        now_ms: i64,
    ) -> Result<bool, BackendError> {
        let number = c.plan_page;
        let has_batch = !page.to.is_empty();
        let mut values = HashMap::from([
            (":run".to_string(), s(&c.run)),
            (":page".to_string(), n(number)),
            (":next".to_string(), n(number + 1)),
            (":done".to_string(), AttributeValue::Bool(next.is_none())),
            (":planning".to_string(), s(State::Planning.name())),
            (":sending".to_string(), s(State::Sending.name())),
        ]);
        let mut deltas = vec![
            ("segment", page.segment as i64),
            ("holdout", page.holdout.len() as i64),
            ("planned", page.to.len() as i64),
            ("batches", i64::from(has_batch)),
        ];
        deltas.extend(skip_deltas("plan", &page.skipped));
        let mut names = HashMap::from([
            ("#state".to_string(), "state".to_string()),
            ("#run".to_string(), "run".to_string()),
            ("#cursor".to_string(), "cursor".to_string()),
        ]);
        let adds = adds(&deltas, &mut names, &mut values);
        let mut set = vec!["planPage = :next", "planDone = :done"];
        if let Some(cursor) = next {
            {
                values.insert(
                    ":cursor".into(),
                    s(&serde_json::to_string(cursor).map_err(|e| err("TransactWriteItems", e.to_string()))?),
                );
                set.push("#cursor = :cursor");
            }
        }
        if has_batch {
            values.insert(":batch".into(), n(number));
            set.push("lastBatch = :batch");
            set.push("#state = :sending");
        }
        let mut update_expression = format!("SET {}", set.join(", "));
        if !adds.is_empty() {
            update_expression.push_str(&format!(" ADD {}", adds.join(", ")));
        }
        if next.is_none() {
            update_expression.push_str(" REMOVE #cursor");
        }
        let meta = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(&c.id)))
            .update_expression(update_expression)
            .condition_expression("#run = :run AND planPage = :page AND #state IN (:planning, :sending)")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        let mut actions = vec![TransactWriteItem::builder().update(meta).build()];
        if has_batch {
            let mut recipients = recipients_key(&c.id, &c.run, number);
            recipients.insert("to".into(), s(&page.to.join(",")));
            recipients.insert("holdout".into(), s(&page.holdout.join(",")));
            recipients.insert("plannedAt".into(), n(now_ms));
            let mut state = batch_key(&c.id, &c.run, number);
            state.insert("state".into(), s(BatchState::Planned.name()));
            state.insert("size".into(), n(page.to.len()));
            for item in [recipients, state] {
                let put = Put::builder()
                    .table_name(&self.campaigns)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(|e| err("TransactWriteItems", e.to_string()))?;
                actions.push(TransactWriteItem::builder().put(put).build());
            }
        } else if !page.holdout.is_empty() {
            // A page with only held-out friends: record them all the same.
            let mut recipients = recipients_key(&c.id, &c.run, number);
            recipients.insert("to".into(), s(""));
            recipients.insert("holdout".into(), s(&page.holdout.join(",")));
            recipients.insert("plannedAt".into(), n(now_ms));
            let put = Put::builder()
                .table_name(&self.campaigns)
                .set_item(Some(recipients))
                .build()
                .map_err(|e| err("TransactWriteItems", e.to_string()))?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        self.transact(actions).await
    }

    /// Marks the campaign done (or needing attention, when some outcomes are unknown) once
    /// planning finished and every batch settled. True: this call changed it.
    async fn finish_if_done(&self, c: &Campaign) -> Result<bool, BackendError> {
        for (to, unknown) in [(State::Done, "#unknown = :zero"), (State::NeedsAttention, "#unknown > :zero")] {
            let result = self
                .client
                .update_item()
                .table_name(&self.campaigns)
                .set_key(Some(meta_key(&c.id)))
                .update_expression("SET #state = :to, doneAt = :now")
                .condition_expression(format!(
                    "#run = :run AND planDone = :t AND settled = batches AND #state IN (:planning, :sending) AND {unknown}"
                ))
                .expression_attribute_names("#state", "state")
                .expression_attribute_names("#run", "run")
                .expression_attribute_names("#unknown", "unknown")
                .expression_attribute_values(":to", s(to.name()))
                .expression_attribute_values(":now", n(crate::ports::Clock::now_ms(&crate::ports::SystemClock)))
                .expression_attribute_values(":run", s(&c.run))
                .expression_attribute_values(":t", AttributeValue::Bool(true))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":planning", s(State::Planning.name()))
                .expression_attribute_values(":sending", s(State::Sending.name()))
                .send()
                .await;
            if conditional(result.map(|_| ()), "UpdateItem")? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl CampaignAdmin for DynamoCampaigns {
    /// Creates the campaign as a draft, or replaces a draft, cancelled or done one of the same id
    /// with a new run.
    async fn create(
        &self,
        file: &CampaignFile,
        source: &str,
        resend: bool,
        now_ms: i64,
    ) -> Result<Created, BackendError> {
        let run = uuid_simple();
        let mut item = meta_key(&file.id);
        let messages = serde_json::to_string(&file.messages.0).map_err(|e| err("PutItem", e.to_string()))?;
        for (k, v) in [
            ("kind", s("campaign")),
            ("id", s(&file.id)),
            ("run", s(&run)),
            ("name", s(&file.name)),
            ("expression", s(&file.segment)),
            ("messages", s(&messages)),
            ("holdoutBps", n(file.holdout)),
            ("transactional", AttributeValue::Bool(file.transactional)),
            ("resend", AttributeValue::Bool(resend)),
            ("notBefore", n(file.schedule.not_before_ms())),
            ("state", s(State::Draft.name())),
            ("source", s(source)),
            ("createdAt", n(now_ms)),
            ("planPage", n(0)),
            ("batchSize", n(file.batch_size)),
        ] {
            item.insert(k.into(), v);
        }
        if let Some(b) = file.budget {
            item.insert("budget".into(), n(b.messages));
        }
        if let Some(unit) = &file.aggregation_unit {
            item.insert("aggregationUnit".into(), s(unit));
        }
        for c in COUNTERS {
            item.insert(c.into(), n(0));
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.campaigns)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #state IN (:draft, :cancelled, :done)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":draft", s(State::Draft.name()))
            .expression_attribute_values(":cancelled", s(State::Cancelled.name()))
            .expression_attribute_values(":done", s(State::Done.name()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Created::Created { run }),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
                let state = self.get(&file.id).await?.map_or(State::Draft, |c| c.state);
                Ok(Created::InUse { state })
            }
            Err(e) => Err(err("PutItem", describe(&e))),
        }
    }

    /// Starts a draft: takes the account's caps, time zone and policy (rate, quiet hours, gap,
    /// monthly budget), and goes to `to` (planning, or scheduled). None: the campaign is not a
    /// draft (or does not exist).
    async fn start(
        &self,
        id: &str,
        settings: &AccountSettings,
        to: State,
        now_ms: i64,
    ) -> Result<Option<Campaign>, BackendError> {
        let caps = serde_json::to_string(&settings.caps).map_err(|e| err("UpdateItem", e.to_string()))?;
        let policy = serde_json::to_string(&Policy::of(settings)).map_err(|e| err("UpdateItem", e.to_string()))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(id)))
            .update_expression(
                "SET #state = :to, startedAt = :now, caps = :caps, #tz = :tz, policy = :policy REMOVE reason",
            )
            .condition_expression("#state = :draft")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#tz", "timezone")
            .expression_attribute_values(":to", s(to.name()))
            .expression_attribute_values(":draft", s(State::Draft.name()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":caps", s(&caps))
            .expression_attribute_values(":tz", s(settings.timezone.name()))
            .expression_attribute_values(":policy", s(&policy))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.attributes.as_ref().and_then(campaign_from_item)),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => Ok(None),
            Err(e) => Err(err("UpdateItem", describe(&e))),
        }
    }

    /// Every campaign, newest first.
    async fn list(&self) -> Result<Vec<Campaign>, BackendError> {
        let mut ids = vec![];
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.campaigns)
                .index_name(KIND_INDEX)
                .key_condition_expression("kind = :k")
                .expression_attribute_values(":k", s("campaign"))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| err("Query", describe(&e)))?;
            for item in out.items() {
                if let Some(pk) = text(item, "pk").and_then(|p| p.strip_prefix("c#")) {
                    ids.push(pk.to_string());
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        let mut out = vec![];
        for id in ids {
            if let Some(c) = self.get(&id).await? {
                out.push(c);
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.created_at_ms));
        Ok(out)
    }

    async fn save_preview(&self, id: &str, preview: &Value) -> Result<(), BackendError> {
        self.client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(id)))
            .update_expression("SET preview = :p")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":p", s(&preview.to_string()))
            .send()
            .await
            .map_err(|e| err("UpdateItem", describe(&e)))?;
        Ok(())
    }

    /// Needs attention → done once no outcome is unknown any more.
    async fn done_when_resolved(&self, c: &Campaign) -> Result<bool, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(&c.id)))
            .update_expression("SET #state = :done REMOVE reason")
            .condition_expression("#run = :run AND #state = :needs AND #unknown = :zero")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#run", "run")
            .expression_attribute_names("#unknown", "unknown")
            .expression_attribute_values(":done", s(State::Done.name()))
            .expression_attribute_values(":needs", s(State::NeedsAttention.name()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":run", s(&c.run))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem")
    }
}
