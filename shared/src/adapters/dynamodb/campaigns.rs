//! Campaigns in DynamoDB: the campaign's own item ([`CampaignRepo`], [`CampaignAdmin`]), and the
//! store every campaign adapter shares ([`DynamoCampaigns`]); its batches are in [`super::batches`],
//! the caps and opt-outs in [`super::caps`].
//!
//! Campaigns table (key `pk`, `sk`):
//! - `c#<id>` / `meta`: the campaign's small state, read before every call to LINE: `run` (new at
//!   every create: ids are reused, runs are not), state and reason, the caps, time zone and policy
//!   taken at start, and the planner's checkpoint (`planPage`, `cursor`, `planDone`, `lastBatch`).
//!   `kind` = `campaign` puts it in the `byKind` index (keys only) that `oa campaign list` reads.
//!   No settle writes it: under a kilobyte, it is read for one unit.
//! - `c#<id>` / `run#<run>#file`: what a run never changes (the segment in `expression`, the
//!   messages, the file as written in `source`) and the last preview: read by the planner and at
//!   the start of a sender's invocation, never on the per-batch path.
//! - `c#<id>` / `run#<run>#n#<00..15>`: the run's counters ([`crate::campaign::model::Counters`]),
//!   sharded by batch number (`COUNTER_SHARDS`, in counters.rs); each is changed with `ADD` in the same
//!   transaction as the batch it counts (or the page, for the planner's), and a campaign's counters
//!   are their sum. Small, so a settle costs 2 write units on it wherever the campaign is.
//!   (A campaign written before the shards kept its counters and file on `meta`: they are read
//!   and added in, see `docs/campaigns.md`, "Upgrading a deployed stack".)
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
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
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

/// What run `run` never changes: its file and messages, and the last preview.
pub(super) fn file_key(id: &str, run: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".into(), s(&format!("c#{id}"))), ("sk".into(), s(&format!("run#{run}#file")))])
}

/// The counters summed over `items` (the shards, and `meta` of a campaign from before them). A
/// shard may hold a negative count (an old campaign's unknown batch resolved on a shard): only the
/// sum is a count.
pub(super) fn counters_of(items: &[&Item]) -> Counters {
    let u = |k: &str| items.iter().map(|i| int(i, k).unwrap_or(0)).sum::<i64>().max(0) as u64;
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

/// The campaign from its `meta` item, its run's `file` item and counter shards. Without a file
/// item (a campaign from before it), the file and counters are read from `meta`.
fn campaign_from_items(meta: &Item, file: Option<&Item>, shards: &[&Item]) -> Option<Campaign> {
    let body = file.unwrap_or(meta);
    let json = |item: &Item, k: &str| text(item, k).and_then(|t| serde_json::from_str::<Value>(t).ok());
    let mut counted: Vec<&Item> = shards.to_vec();
    counted.push(meta);
    let first_sent = counted.iter().filter_map(|i| int(i, "firstSentAt")).min();
    let last_sent = counted.iter().filter_map(|i| int(i, "lastSentAt")).max();
    Some(Campaign {
        id: text(meta, "id")?.to_string(),
        run: text(meta, "run")?.to_string(),
        name: text(meta, "name").unwrap_or_default().to_string(),
        segment: text(body, "expression").unwrap_or_default().to_string(),
        messages: json(body, "messages").and_then(|v| v.as_array().cloned()).unwrap_or_default(),
        holdout_bps: uint(meta, "holdoutBps") as u32,
        budget: int(meta, "budget").map(|b| b.max(0) as u64),
        transactional: flag(meta, "transactional"),
        not_before_ms: int(meta, "notBefore").unwrap_or(0),
        state: text(meta, "state").and_then(State::parse)?,
        reason: text(meta, "reason").map(str::to_string),
        source: text(body, "source").unwrap_or_default().to_string(),
        created_at_ms: int(meta, "createdAt").unwrap_or(0),
        started_at_ms: int(meta, "startedAt"),
        first_sent_at_ms: first_sent,
        last_sent_at_ms: last_sent,
        caps: json(meta, "caps").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
        timezone: text(meta, "timezone").unwrap_or("UTC").to_string(),
        plan_page: uint(meta, "planPage") as u32,
        cursor: json(meta, "cursor").and_then(|v| serde_json::from_value(v).ok()),
        plan_done: flag(meta, "planDone"),
        last_batch: int(meta, "lastBatch").map(|b| b as u32),
        counters: counters_of(&counted),
        preview: json(body, "preview").or_else(|| json(meta, "preview")),
        batch_size: int(meta, "batchSize").map_or(MAX_BATCH, |b| b.clamp(1, i64::from(MAX_BATCH)) as u32),
        aggregation_unit: text(meta, "aggregationUnit").map(str::to_string),
        resend: flag(meta, "resend"),
        policy: json(meta, "policy").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
        resume_at_ms: int(meta, "resumeAt"),
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
    /// Runs' file items read by this process, by (id, run): a run's file never changes, so every
    /// batch a sender handles after the first reads only `meta` and the counters. (Its preview
    /// may: the process that saves one updates its copy; senders do not read previews.)
    files: Arc<std::sync::Mutex<HashMap<(String, String), Item>>>,
    /// Runs this process read without a file item: written before the counter shards, they keep
    /// counting on `meta` to their end, so that the code before the shards, still running during a
    /// deploy, finishes them only when every batch settled.
    pub(super) legacy: Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>,
}

/// How many runs' files a process keeps (a few campaigns at once; a new one evicts them all).
const FILES_KEPT: usize = 64;

impl DynamoCampaigns {
    pub fn new(client: Client, campaigns_table: impl Into<String>, users_table: impl Into<String>) -> Self {
        DynamoCampaigns {
            client,
            campaigns: campaigns_table.into(),
            users: users_table.into(),
            meter: Default::default(),
            files: Default::default(),
            legacy: Default::default(),
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

    /// The campaign's `meta` item, strongly consistent.
    async fn meta(&self, id: &str) -> Result<Option<Item>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| err("GetItem", describe(&e)))?;
        Ok(out.item)
    }

    /// Run `run`'s items whose sort key begins with `run#<run>#<prefix>`, strongly consistent.
    pub(super) async fn run_items(&self, id: &str, run: &str, prefix: &str) -> Result<Vec<Item>, BackendError> {
        self.items_under(id, &format!("run#{run}#{prefix}")).await
    }

    /// Campaign `id`'s items whose sort key begins with `prefix`, strongly consistent.
    pub(super) async fn items_under(&self, id: &str, prefix: &str) -> Result<Vec<Item>, BackendError> {
        let mut items = vec![];
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.campaigns)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(&format!("c#{id}")))
                .expression_attribute_values(":prefix", s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| err("Query", describe(&e)))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
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
        let Some(meta) = self.meta(id).await? else { return Ok(None) };
        let Some(run) = text(&meta, "run") else { return Ok(None) };
        let key = (id.to_string(), run.to_string());
        let kept = self.files.lock().ok().and_then(|f| f.get(&key).cloned());
        let (file, shards) = match kept {
            Some(file) => (Some(file), self.run_items(id, run, "n#").await?),
            None => {
                let mut items = self.run_items(id, run, "").await?;
                let file_sk = format!("run#{run}#file");
                let file = items.iter().position(|i| text(i, "sk") == Some(file_sk.as_str())).map(|p| items.remove(p));
                if let (Some(file), Ok(mut files)) = (&file, self.files.lock()) {
                    if files.len() >= FILES_KEPT {
                        files.clear();
                    }
                    files.insert(key, file.clone());
                }
                (file, items)
            }
        };
        if file.is_none() {
            if let Ok(mut legacy) = self.legacy.lock() {
                legacy.insert((id.to_string(), run.to_string()));
            }
        }
        let shards: Vec<&Item> = shards.iter().collect();
        Ok(campaign_from_items(&meta, file.as_ref(), &shards))
    }

    /// Only the `meta` item's run and state: one read unit, on the path of every call to LINE.
    async fn state(&self, id: &str) -> Result<Option<(String, State)>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(id)))
            .projection_expression("#run, #state")
            .expression_attribute_names("#run", "run")
            .expression_attribute_names("#state", "state")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| err("GetItem", describe(&e)))?;
        Ok(out
            .item
            .as_ref()
            .and_then(|i| Some((text(i, "run")?.to_string(), text(i, "state").and_then(State::parse)?))))
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
        let names = HashMap::from([
            ("#state".to_string(), "state".to_string()),
            ("#run".to_string(), "run".to_string()),
            ("#cursor".to_string(), "cursor".to_string()),
        ]);
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
        let on_meta = self.counts_on_meta(c);
        let mut names = names;
        if on_meta {
            // (One update of `meta` in the transaction: the counts go in it.)
            let adds = adds(&deltas, &mut names, &mut values);
            if !adds.is_empty() {
                update_expression.push_str(&format!(" ADD {}", adds.join(", ")));
            }
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
        if !on_meta && deltas.iter().any(|(_, d)| *d != 0) {
            let count = self.count_update(c, number, &deltas, "", HashMap::new())?;
            actions.push(TransactWriteItem::builder().update(count).build());
        }
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
    ///
    /// The counters are summed before the conditional update on `meta`: once planning is done the
    /// number of batches is final and a settled batch never unsettles, so a sum that shows every
    /// batch settled stays true. (An unknown outcome resolved in between leaves the campaign
    /// needing attention with none unknown: the sweep's `done_when_resolved` finishes it.)
    async fn finish_if_done(&self, c: &Campaign) -> Result<bool, BackendError> {
        let Some(meta) = self.meta(&c.id).await? else { return Ok(false) };
        let state = text(&meta, "state").and_then(State::parse);
        if text(&meta, "run") != Some(c.run.as_str())
            || !flag(&meta, "planDone")
            || !matches!(state, Some(State::Planning | State::Sending))
        {
            return Ok(false);
        }
        let counted = self.counted(&meta, &c.id, &c.run).await?;
        if counted.settled < counted.batches {
            return Ok(false);
        }
        let to = if counted.unknown > 0 { State::NeedsAttention } else { State::Done };
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(&c.id)))
            .update_expression("SET #state = :to, doneAt = :now")
            .condition_expression("#run = :run AND planDone = :t AND #state IN (:planning, :sending)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#run", "run")
            .expression_attribute_values(":to", s(to.name()))
            .expression_attribute_values(":now", n(crate::ports::Clock::now_ms(&crate::ports::SystemClock)))
            .expression_attribute_values(":run", s(&c.run))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":planning", s(State::Planning.name()))
            .expression_attribute_values(":sending", s(State::Sending.name()))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem")
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
            ("holdoutBps", n(file.holdout)),
            ("transactional", AttributeValue::Bool(file.transactional)),
            ("resend", AttributeValue::Bool(resend)),
            ("notBefore", n(file.schedule.not_before_ms())),
            ("state", s(State::Draft.name())),
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
        let meta = Put::builder()
            .table_name(&self.campaigns)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #state IN (:draft, :cancelled, :done)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":draft", s(State::Draft.name()))
            .expression_attribute_values(":cancelled", s(State::Cancelled.name()))
            .expression_attribute_values(":done", s(State::Done.name()))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        let mut body = file_key(&file.id, &run);
        for (k, v) in [("expression", s(&file.segment)), ("messages", s(&messages)), ("source", s(source))] {
            body.insert(k.into(), v);
        }
        let body = Put::builder()
            .table_name(&self.campaigns)
            .set_item(Some(body))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        let actions =
            vec![TransactWriteItem::builder().put(meta).build(), TransactWriteItem::builder().put(body).build()];
        if self.transact(actions).await? {
            Ok(Created::Created { run })
        } else {
            let state = self.get(&file.id).await?.map_or(State::Draft, |c| c.state);
            Ok(Created::InUse { state })
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
            .send()
            .await;
        match result {
            Ok(_) => self.get(id).await,
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

    /// On the current run's file item (on `meta` for a campaign from before it).
    async fn save_preview(&self, id: &str, preview: &Value) -> Result<(), BackendError> {
        let Some((run, _)) = self.state(id).await? else {
            return Err(err("UpdateItem", format!("campaign {id} does not exist")));
        };
        for key in [file_key(id, &run), meta_key(id)] {
            let result = self
                .client
                .update_item()
                .table_name(&self.campaigns)
                .set_key(Some(key))
                .update_expression("SET preview = :p")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":p", s(&preview.to_string()))
                .send()
                .await;
            if conditional(result.map(|_| ()), "UpdateItem")? {
                if let Ok(mut files) = self.files.lock() {
                    files.remove(&(id.to_string(), run.clone()));
                }
                return Ok(());
            }
        }
        Err(err("UpdateItem", format!("campaign {id} does not exist")))
    }

    /// Needs attention → done once no outcome is unknown any more.
    async fn done_when_resolved(&self, c: &Campaign) -> Result<bool, BackendError> {
        let Some(meta) = self.meta(&c.id).await? else { return Ok(false) };
        if text(&meta, "run") != Some(c.run.as_str()) || self.counted(&meta, &c.id, &c.run).await?.unknown > 0 {
            return Ok(false);
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(&c.id)))
            .update_expression("SET #state = :done REMOVE reason")
            .condition_expression("#run = :run AND #state = :needs")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#run", "run")
            .expression_attribute_values(":done", s(State::Done.name()))
            .expression_attribute_values(":needs", s(State::NeedsAttention.name()))
            .expression_attribute_values(":run", s(&c.run))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem")
    }
}
