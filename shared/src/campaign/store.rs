//! Campaigns, batches and caps in DynamoDB.
//!
//! Campaigns table (key `pk`, `sk`):
//! - `c#<id>` / `meta`: the campaign: its file (the segment in `expression`), `run` (new at every create: ids are reused, runs are
//!   not), state and reason, the caps and time zone taken at start, the planner's checkpoint
//!   (`planPage`, `cursor`, `planDone`, `lastBatch`) and the counters ([`Counters`]), each an
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

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnConsumedCapacity, ReturnValue, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use serde_json::Value;

use super::file::{AccountSettings, CampaignFile, Cap, MAX_BATCH};
use super::model::{cap_slots, Counters, Policy, Skip, Skips, State};
use super::ports::{CampaignRepo, CapStore};
use crate::adapters::attr::{flag, int, n, s, string_set, text, uint, Item};
use crate::adapters::describe;
use crate::ports::BackendError;
use crate::rules::window::Zone;
use crate::segment::resolve::Cursor;

pub const KIND_INDEX: &str = "byKind";
pub const SUPPRESSED_INDEX: &str = "suppressed";

fn err(operation: &'static str, message: String) -> BackendError {
    BackendError::Store { operation, message }
}

fn meta_key(id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".into(), s(&format!("c#{id}"))), ("sk".into(), s("meta"))])
}

/// The account's billable messages in one month (`monthlyBudget`), across campaigns.
fn budget_key(month: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".into(), s("budget#account")), ("sk".into(), s(month))])
}

/// Messages the account's campaigns took from `month`'s budget (`m2026-11`).
impl CampaignStore {
    pub async fn budget_used(&self, month: &str) -> Result<u64, BackendError> {
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
}

fn batch_key(id: &str, run: &str, number: u32) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".into(), s(&format!("c#{id}"))), ("sk".into(), s(&format!("b#{run}#{number:06}")))])
}

fn recipients_key(id: &str, run: &str, number: u32) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".into(), s(&format!("c#{id}"))), ("sk".into(), s(&format!("r#{run}#{number:06}")))])
}

/// Attribute names of the counters.
const COUNTERS: [&str; 17] = [
    "segment",
    "holdout",
    "planSkipCap",
    "planSkipBudget",
    "planSkipSuppressed",
    "planSkipBlocked",
    "planned",
    "sent",
    "skipCap",
    "skipBudget",
    "skipSuppressed",
    "skipBlocked",
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
        },
        planned: u("planned"),
        sent: u("sent"),
        skipped: Skips {
            cap: u("skipCap"),
            budget: u("skipBudget"),
            suppressed: u("skipSuppressed"),
            blocked: u("skipBlocked"),
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
fn adds(
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

fn skip_deltas(prefix: &'static str, skips: &Skips) -> Vec<(&'static str, i64)> {
    let name = |why: Skip| -> &'static str {
        match (prefix, why) {
            ("plan", Skip::Cap) => "planSkipCap",
            ("plan", Skip::Budget) => "planSkipBudget",
            ("plan", Skip::Suppressed) => "planSkipSuppressed",
            ("plan", Skip::Blocked) => "planSkipBlocked",
            (_, Skip::Cap) => "skipCap",
            (_, Skip::Budget) => "skipBudget",
            (_, Skip::Suppressed) => "skipSuppressed",
            (_, Skip::Blocked) => "skipBlocked",
        }
    };
    Skip::ALL.iter().map(|w| (name(*w), skips.get(*w) as i64)).collect()
}

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub id: String,
    pub run: String,
    pub name: String,
    pub segment: String,
    pub messages: Vec<Value>,
    pub holdout_bps: u32,
    pub budget: Option<u64>,
    pub transactional: bool,
    pub not_before_ms: i64,
    pub state: State,
    pub reason: Option<String>,
    pub source: String,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub first_sent_at_ms: Option<i64>,
    pub last_sent_at_ms: Option<i64>,
    /// The account's caps and time zone when the campaign started.
    pub caps: Vec<Cap>,
    pub timezone: String,
    pub plan_page: u32,
    pub cursor: Option<Cursor>,
    pub plan_done: bool,
    pub last_batch: Option<u32>,
    pub counters: Counters,
    /// The last preview's JSON, to compare with what was planned and sent.
    pub preview: Option<Value>,
    /// Recipients per multicast request (1-500).
    pub batch_size: u32,
    /// LINE's `customAggregationUnits` name, if any.
    pub aggregation_unit: Option<String>,
    /// The account's rate, quiet hours, gap and monthly budget when the campaign started.
    pub policy: Policy,
    /// A campaign paused for quiet hours resumes by itself at this time.
    pub resume_at_ms: Option<i64>,
}

impl Campaign {
    fn from_item(item: &Item) -> Option<Campaign> {
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
            policy: json("policy").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
            resume_at_ms: int(item, "resumeAt"),
        })
    }

    pub fn cap_member(&self) -> String {
        super::model::cap_member(&self.id, &self.run)
    }

    /// What committing `page` of the plan (with the cursor `next` after it) changes: the same
    /// for the stored campaign and for a planner's own copy.
    pub fn commit(&mut self, page: &PlannedPage, next: Option<&Cursor>) {
        let k = &mut self.counters;
        k.segment += page.segment;
        k.holdout += page.holdout.len() as u64;
        for why in Skip::ALL {
            k.plan_skipped.add(why, page.skipped.get(why));
        }
        k.planned += page.to.len() as u64;
        if !page.to.is_empty() {
            k.batches += 1;
            self.last_batch = Some(self.plan_page);
            self.state = State::Sending;
        }
        self.plan_page += 1;
        self.cursor = next.cloned();
        self.plan_done = next.is_none();
    }
}

/// The state of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    Planned,
    Frozen,
    Sent,
    Failed,
    Unknown,
    /// Every recipient was skipped at send time: nothing to send.
    Skipped,
    Held,
}

impl BatchState {
    pub fn name(self) -> &'static str {
        match self {
            BatchState::Planned => "planned",
            BatchState::Frozen => "frozen",
            BatchState::Sent => "sent",
            BatchState::Failed => "failed",
            BatchState::Unknown => "unknown",
            BatchState::Skipped => "skipped",
            BatchState::Held => "held",
        }
    }

    fn parse(s: &str) -> Option<BatchState> {
        use BatchState::*;
        [Planned, Frozen, Sent, Failed, Unknown, Skipped, Held].into_iter().find(|b| b.name() == s)
    }

    pub fn is_settled(self) -> bool {
        matches!(self, BatchState::Sent | BatchState::Failed | BatchState::Unknown | BatchState::Skipped)
    }
}

/// One batch: its recipients and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub number: u32,
    pub state: BatchState,
    /// The state a held batch goes back to on resume.
    pub held_from: Option<BatchState>,
    pub to: Vec<String>,
    pub lease_until_ms: i64,
    pub lease_owner: Option<String>,
    /// Which of `to` the frozen send list holds.
    pub frozen: Option<Vec<bool>>,
    pub retry_key: Option<String>,
    pub skips: Skips,
    /// The cap attributes reserved when the batch was frozen (given back from these).
    pub cap_attrs: Vec<String>,
    /// When the first call to LINE with the frozen body started (written before the call): from
    /// then on LINE may have taken the batch, so only its retry key may send it again.
    pub first_called_at_ms: Option<i64>,
    /// A call started and no definite answer came back yet (set before every call, cleared
    /// after a clear refusal when no earlier call was open): LINE may have taken the batch.
    pub call_open: bool,
    pub attempts: u64,
    pub request_id: Option<String>,
    /// The account budget month and messages this batch took (`monthlyBudget`).
    pub budget: Option<(String, u64)>,
}

impl Batch {
    /// Whether the batch's slots are still to be given back: it failed (and surely did not go
    /// out) or was held unfrozen, and its cap attributes were not cleared yet.
    pub fn slots_to_give_back(&self) -> bool {
        !self.cap_attrs.is_empty()
            && (self.state == BatchState::Failed
                || (self.state == BatchState::Held && self.held_from == Some(BatchState::Planned)))
    }

    /// The frozen send list.
    pub fn send_list(&self) -> Vec<&str> {
        match &self.frozen {
            Some(mask) => self.to.iter().zip(mask).filter(|(_, on)| **on).map(|(u, _)| u.as_str()).collect(),
            None => vec![],
        }
    }
}

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

/// What a page of the plan adds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlannedPage {
    pub segment: u64,
    pub to: Vec<String>,
    pub holdout: Vec<String>,
    pub skipped: Skips,
}

/// How a batch ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub state: BatchState,
    pub sent: u64,
    pub failed: u64,
    pub unknown: u64,
    pub request_id: Option<String>,
    pub error: Option<String>,
    /// The batch's slots are to be given back (it surely did not go out): its cap attributes stay
    /// on the item until [`CampaignRepo::clear_cap_attrs`], so a release cut short is finished by
    /// the next delivery.
    pub release_slots: bool,
}

/// A friend as the cap check sees them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FriendCaps {
    pub following: bool,
    pub suppressed: bool,
    /// Period attribute → campaign runs in it.
    pub sets: BTreeMap<String, Vec<String>>,
    /// The last campaign push (not transactional) reserved for them: when, and by which run.
    pub last_push: Option<(i64, String)>,
}

/// What one campaign asks of every friend: its member in the cap sets (`<id>~<run>`), the cap
/// slots in force (attribute → max), and the account's minimum gap since their last push.
/// Transactional campaigns are outside both.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demand {
    pub member: String,
    pub slots: BTreeMap<String, u32>,
    pub transactional: bool,
    pub min_gap_ms: i64,
}

impl Demand {
    pub fn new(member: String, caps: &[Cap], zone: &Zone, transactional: bool, min_gap_ms: i64, now_ms: i64) -> Self {
        let at = jiff::Timestamp::from_millisecond(now_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let slots = if transactional { BTreeMap::new() } else { cap_slots(caps, at, zone) };
        Demand { member, slots, transactional, min_gap_ms: if transactional { 0 } else { min_gap_ms } }
    }

    pub fn attributes(&self) -> Vec<String> {
        self.slots.keys().cloned().collect()
    }

    /// The latest last push that still allows one at `now_ms`.
    pub fn gap_since(&self, now_ms: i64) -> i64 {
        now_ms - self.min_gap_ms
    }
}

impl FriendCaps {
    /// Why this friend may not get the campaign at `now_ms`, if so. A cap refusal also covers
    /// the minimum gap (a push too recent).
    pub fn refusal(&self, demand: &Demand, now_ms: i64) -> Option<Skip> {
        let own = |m: &str| m == demand.member;
        if self.suppressed {
            Some(Skip::Suppressed)
        } else if !self.following {
            Some(Skip::Blocked)
        } else if demand.transactional {
            None
        } else if demand.slots.iter().any(|(attr, max)| {
            let set = self.sets.get(attr).map(Vec::as_slice).unwrap_or_default();
            !set.iter().any(|m| own(m)) && set.len() >= *max as usize
        }) || self.last_push.as_ref().is_some_and(|(at, by)| !own(by) && *at > demand.gap_since(now_ms))
        {
            Some(Skip::Cap)
        } else {
            None
        }
    }
}

/// What a reservation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    Refused(Skip),
}

#[derive(Clone)]
pub struct CampaignStore {
    client: Client,
    campaigns: String,
    users: String,
    /// Capacity the planner's and the sender's main calls consumed (for benchmarks and logs).
    meter: std::sync::Arc<Meter>,
}

/// Read and write units consumed, as DynamoDB reports them (`ReturnConsumedCapacity`), in
/// thousandths: the page reads of friends (BatchGetItem), the reservations (UpdateItem on users)
/// and the transactions (page commits, settlements).
#[derive(Debug, Default)]
pub struct Meter {
    reads: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
}

/// Capacity units consumed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    pub reads: f64,
    pub writes: f64,
}

impl Meter {
    fn add(counter: &std::sync::atomic::AtomicU64, units: f64) {
        counter.fetch_add((units * 1000.0).round() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn read(&self, units: f64) {
        Self::add(&self.reads, units);
    }

    fn write(&self, units: f64) {
        Self::add(&self.writes, units);
    }
}

fn consumed(list: &[aws_sdk_dynamodb::types::ConsumedCapacity]) -> f64 {
    list.iter().filter_map(|c| c.capacity_units).sum()
}

/// A transaction that lost to another one on the same item, or was throttled: worth a retry.
struct Contended(String);

/// A create refused because the id names a campaign that is not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created { run: String },
    InUse { state: State },
}

impl CampaignStore {
    pub fn new(client: Client, campaigns_table: impl Into<String>, users_table: impl Into<String>) -> Self {
        CampaignStore {
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
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0;
        Units { reads: load(&self.meter.reads), writes: load(&self.meter.writes) }
    }

    /// Creates the campaign as a draft, or replaces a draft, cancelled or done one of the same id
    /// with a new run.
    pub async fn create(&self, file: &CampaignFile, source: &str, now_ms: i64) -> Result<Created, BackendError> {
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

    /// Every campaign, newest first.
    pub async fn list(&self) -> Result<Vec<Campaign>, BackendError> {
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

    /// Starts a draft: takes the account's caps, time zone and policy (rate, quiet hours, gap,
    /// monthly budget), and goes to `to` (planning, or scheduled). None: the campaign is not a
    /// draft (or does not exist).
    pub async fn start(
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
            Ok(out) => Ok(out.attributes.as_ref().and_then(Campaign::from_item)),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => Ok(None),
            Err(e) => Err(err("UpdateItem", describe(&e))),
        }
    }

    pub async fn save_preview(&self, id: &str, preview: &Value) -> Result<(), BackendError> {
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

    /// Runs a transaction: true if it was applied, false if a condition did not hold. Conflicts
    /// with another transaction on the same item (every batch settles on its campaign's item) and
    /// throttling are retried with backoff.
    async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<bool, BackendError> {
        let mut attempt = 0u32;
        loop {
            match self.transact_once(actions.clone()).await {
                Err(Contended(reasons)) if attempt < 8 => {
                    attempt += 1;
                    let base = 10u64 << attempt.min(6);
                    tokio::time::sleep(std::time::Duration::from_millis(base + fastrand::u64(0..=base))).await;
                    tracing::debug!(attempt, reasons, "transaction contended: trying again");
                }
                Err(Contended(reasons)) => {
                    return Err(err("TransactWriteItems", format!("still contended: {reasons}")))
                }
                Ok(result) => return result,
            }
        }
    }

    async fn transact_once(&self, actions: Vec<TransactWriteItem>) -> Result<Result<bool, BackendError>, Contended> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
        use aws_smithy_types::error::metadata::ProvideErrorMetadata;
        let request = self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        let answer = match request.send().await {
            Ok(out) => {
                self.meter.write(consumed(out.consumed_capacity()));
                Ok(true)
            }
            Err(SdkError::ServiceError(se)) => match se.err() {
                E::TransactionCanceledException(t) => {
                    let codes: Vec<&str> =
                        t.cancellation_reasons().iter().filter_map(|r| r.code()).filter(|c| *c != "None").collect();
                    if codes.iter().any(|c| {
                        matches!(*c, "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded")
                    }) {
                        return Err(Contended(codes.join(",")));
                    }
                    if codes.iter().all(|c| *c == "ConditionalCheckFailed") {
                        Ok(false)
                    } else {
                        Err(err("TransactWriteItems", format!("cancelled: {}", codes.join(","))))
                    }
                }
                E::TransactionInProgressException(_) | E::ProvisionedThroughputExceededException(_) => {
                    return Err(Contended(se.err().to_string()));
                }
                other if other.code() == Some("ThrottlingException") => return Err(Contended(other.to_string())),
                other => Err(err("TransactWriteItems", format!("{}: {}", other.code().unwrap_or("error"), other))),
            },
            Err(e) => Err(err("TransactWriteItems", describe(&e))),
        };
        Ok(answer)
    }

    /// The run's batches in one of `states`, by number, with their state.
    pub async fn batches_in(
        &self,
        c: &Campaign,
        states: &[BatchState],
    ) -> Result<Vec<(u32, BatchState)>, BackendError> {
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
                .projection_expression("sk, #state")
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| err("Query", describe(&e)))?;
            for item in page.items() {
                let number = text(item, "sk").and_then(|k| k.rsplit('#').next()).and_then(|n| n.parse().ok());
                let state = text(item, "state").and_then(BatchState::parse);
                if let (Some(n), Some(st)) = (number, state) {
                    out.push((n, st));
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        out.sort_unstable_by_key(|(n, _)| *n);
        Ok(out)
    }

    /// A person's decision on a batch whose outcome is unknown: `delivered` (LINE's statistics
    /// show it went out) counts its recipients sent; otherwise they count failed and the batch's
    /// slots are to be given back. Then a campaign with no unknown outcome left is done.
    pub async fn resolve_unknown(&self, c: &Campaign, batch: &Batch, delivered: bool) -> Result<bool, BackendError> {
        let n_to = batch.send_list().len() as i64;
        let to = if delivered { BatchState::Sent } else { BatchState::Failed };
        let mut update = "SET #state = :to, resolvedAt = :now".to_string();
        if delivered {
            update.push_str(" REMOVE capAttrs");
        }
        let batch_update = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, batch.number)))
            .update_expression(update)
            .condition_expression("#state = :unknown")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":to", s(to.name()))
            .expression_attribute_values(":unknown", s(BatchState::Unknown.name()))
            .expression_attribute_values(":now", n(crate::ports::Clock::now_ms(&crate::ports::SystemClock)))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        let meta_update = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(&c.id)))
            .update_expression(format!("ADD #unknown :minus, {} :n", if delivered { "sent" } else { "failed" }))
            .condition_expression("#run = :run")
            .expression_attribute_names("#run", "run")
            .expression_attribute_names("#unknown", "unknown")
            .expression_attribute_values(":minus", n(-n_to))
            .expression_attribute_values(":n", n(n_to))
            .expression_attribute_values(":run", s(&c.run))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        self.transact(vec![
            TransactWriteItem::builder().update(batch_update).build(),
            TransactWriteItem::builder().update(meta_update).build(),
        ])
        .await
    }

    /// Needs attention → done once no outcome is unknown any more.
    pub async fn done_when_resolved(&self, c: &Campaign) -> Result<bool, BackendError> {
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

    /// Adds the demand's member to its current periods only (a retry of a reservation made in
    /// earlier ones), under the same cap conditions.
    async fn reserve_periods(&self, user: &str, demand: &Demand) -> Result<Reservation, BackendError> {
        if demand.slots.is_empty() {
            return Ok(Reservation::Reserved);
        }
        let mut names = HashMap::new();
        let mut values = HashMap::from([
            (":m".to_string(), s(&demand.member)),
            (":ms".to_string(), AttributeValue::Ss(vec![demand.member.clone()])),
        ]);
        let (mut condition, mut adds) = (vec![], vec![]);
        for (i, (attr, max)) in demand.slots.iter().enumerate() {
            names.insert(format!("#p{i}"), attr.clone());
            values.insert(format!(":max{i}"), n(max));
            condition.push(format!("(attribute_not_exists(#p{i}) OR contains(#p{i}, :m) OR size(#p{i}) < :max{i})"));
            adds.push(format!("#p{i} :ms"));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.users)
            .key("userId", s(user))
            .update_expression(format!("ADD {}", adds.join(", ")))
            .condition_expression(condition.join(" AND "))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        Ok(if conditional(result.map(|_| ()), "UpdateItem")? {
            Reservation::Reserved
        } else {
            Reservation::Refused(Skip::Cap)
        })
    }

    // ---- caps, on the users table -------------------------------------------------------------

    /// Opts a friend out (`by`: `cli` or `settings`) or back in. Opting back in removes only an
    /// opt-out made `by` the same means, so settings never undo an `oa suppress add`.
    pub async fn suppress(&self, user: &str, on: bool, by: &str, now_ms: i64) -> Result<bool, BackendError> {
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
    pub async fn suppressed(&self) -> Result<Vec<(String, String)>, BackendError> {
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

fn conditional<E>(
    result: Result<(), SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>,
    operation: &'static str,
) -> Result<bool, BackendError>
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(()) => Ok(true),
        Err(SdkError::ServiceError(se)) if se.err().code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(e) => Err(err(operation, describe(&e))),
    }
}

/// A random id: a run, a lease owner.
pub fn uuid_simple() -> String {
    uuid::Uuid::new_v4().simple().to_string().chars().take(12).collect()
}

/// A random UUID v4 for `X-Line-Retry-Key`.
pub fn retry_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[async_trait::async_trait]
impl CampaignRepo for CampaignStore {
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
        Ok(out.item.as_ref().and_then(Campaign::from_item))
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

    /// The run's batches that are not settled (planned, frozen or held), by number.
    async fn open_batches(&self, c: &Campaign) -> Result<Vec<(u32, BatchState)>, BackendError> {
        self.batches_in(c, &[BatchState::Planned, BatchState::Frozen, BatchState::Held]).await
    }

    /// Takes a held batch back to where it was held from; its recipients stop counting as held.
    async fn unhold(&self, c: &Campaign, batch: &Batch) -> Result<bool, BackendError> {
        let back = batch.held_from.unwrap_or(BatchState::Planned);
        let batch_update = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, batch.number)))
            .update_expression("SET #state = :back REMOVE heldFrom")
            .condition_expression("#state = :held AND (heldFrom = :frozen OR attribute_not_exists(capAttrs))")
            .expression_attribute_values(":frozen", s(BatchState::Frozen.name()))
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":back", s(back.name()))
            .expression_attribute_values(":held", s(BatchState::Held.name()))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        let meta_update = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(&c.id)))
            .update_expression("ADD held :n")
            .condition_expression("#run = :run")
            .expression_attribute_names("#run", "run")
            .expression_attribute_values(":n", n(-(batch.to.len() as i64)))
            .expression_attribute_values(":run", s(&c.run))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        self.transact(vec![
            TransactWriteItem::builder().update(batch_update).build(),
            TransactWriteItem::builder().update(meta_update).build(),
        ])
        .await
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
            },
            cap_attrs: string_set(&item, "capAttrs"),
            first_called_at_ms: int(&item, "firstCalledAt"),
            call_open: flag(&item, "callOpen"),
            attempts: uint(&item, "attempts"),
            request_id: text(&item, "requestId").map(str::to_string),
            budget: text(&item, "budgetMonth").map(|m| (m.to_string(), uint(&item, "budgetTaken"))),
            to,
        }))
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
    async fn release_lease(&self, c: &Campaign, number: u32, owner: &str) -> Result<(), BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, number)))
            .update_expression("REMOVE leaseUntil, leaseOwner")
            .condition_expression("leaseOwner = :owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem").map(|_| ())
    }

    #[allow(clippy::too_many_arguments)]
    /// Freezes the send list (`mask` over the recipients), the skips and the retry key, before
    /// the first call to LINE. False: the lease was lost or the batch is frozen already.
    async fn freeze(
        &self,
        c: &Campaign,
        number: u32,
        owner: &str,
        mask: &[bool],
        skips: &Skips,
        cap_attrs: &[String],
        retry_key: &str,
        now_ms: i64,
    ) -> Result<bool, BackendError> {
        let mut request = self.client.update_item();
        let mut set = "SET #state = :frozen, mask = :mask, retryKey = :key, frozenAt = :now, skipCap = :cap, \
                       skipSuppressed = :sup, skipBlocked = :blk, skipBudget = :bud"
            .to_string();
        if !cap_attrs.is_empty() {
            set.push_str(", capAttrs = :attrs");
            request = request.expression_attribute_values(":attrs", AttributeValue::Ss(cap_attrs.to_vec()));
        }
        let result = request
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, number)))
            .update_expression(set)
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
            .expression_attribute_values(":owner", s(owner))
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

    /// Forgets the cap attributes once the batch's slots were given back.
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
            .update_expression("SET budgetMonth = :m, budgetTaken = :n")
            .condition_expression("attribute_not_exists(budgetMonth)")
            .expression_attribute_values(":m", s(month))
            .expression_attribute_values(":n", n(count))
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
        self.transact(vec![
            TransactWriteItem::builder().update(batch_update).build(),
            TransactWriteItem::builder().update(budget_update).build(),
        ])
        .await
    }

    async fn return_budget(&self, c: &Campaign, batch: &Batch) -> Result<(), BackendError> {
        let Some((month, count)) = &batch.budget else { return Ok(()) };
        let batch_update = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, batch.number)))
            .update_expression("REMOVE budgetMonth, budgetTaken")
            .condition_expression("budgetMonth = :m")
            .expression_attribute_values(":m", s(month))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        let budget_update = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(budget_key(month)))
            .update_expression("ADD used :minus")
            .expression_attribute_values(":minus", n(-(*count as i64)))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        self.transact(vec![
            TransactWriteItem::builder().update(batch_update).build(),
            TransactWriteItem::builder().update(budget_update).build(),
        ])
        .await
        .map(|_| ())
    }

    async fn clear_cap_attrs(&self, c: &Campaign, number: u32) -> Result<(), BackendError> {
        self.client
            .update_item()
            .table_name(&self.campaigns)
            .set_key(Some(batch_key(&c.id, &c.run, number)))
            .update_expression("REMOVE capAttrs")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .map(|_| ())
            .or_else(|e| match &e {
                SdkError::ServiceError(se) if se.err().is_conditional_check_failed_exception() => Ok(()),
                _ => Err(err("UpdateItem", describe(&e))),
            })
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
                // An unknown outcome keeps its cap attributes until a person resolves it.
                if outcome.release_slots || outcome.state == BatchState::Unknown { "" } else { ", capAttrs" }
            ))
            .condition_expression("#state = :from AND leaseOwner = :owner")
            .expression_attribute_names("#state", "state")
            .set_expression_attribute_values(Some(batch_values))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        let mut values = HashMap::from([(":run".to_string(), s(&c.run)), (":now".to_string(), n(now_ms))]);
        let mut deltas = vec![
            ("sent", outcome.sent as i64),
            ("failed", outcome.failed as i64),
            ("unknown", outcome.unknown as i64),
            ("settled", 1),
        ];
        deltas.extend(skip_deltas("send", &batch.skips));
        let mut names = HashMap::from([("#run".to_string(), "run".to_string())]);
        let adds = adds(&deltas, &mut names, &mut values);
        let mut update = "SET lastSentAt = :now, firstSentAt = if_not_exists(firstSentAt, :now)".to_string();
        update.push_str(&format!(" ADD {}", adds.join(", ")));
        let meta_update = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(&c.id)))
            .update_expression(update)
            .condition_expression("#run = :run")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        self.transact(vec![
            TransactWriteItem::builder().update(batch_update).build(),
            TransactWriteItem::builder().update(meta_update).build(),
        ])
        .await
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
            // The cap attributes stay until the slots are given back (clear_cap_attrs).
            update.push_str(
                ", mask, retryKey, skipCap, skipSuppressed, skipBlocked, skipBudget, firstCalledAt, callOpen, attempts",
            );
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
        let meta_update = Update::builder()
            .table_name(&self.campaigns)
            .set_key(Some(meta_key(&c.id)))
            .update_expression("ADD held :n")
            .condition_expression("#run = :run AND NOT (#state IN (:planning, :sending))")
            .expression_attribute_names("#run", "run")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":planning", s(State::Planning.name()))
            .expression_attribute_values(":sending", s(State::Sending.name()))
            .expression_attribute_values(":n", n(batch.to.len()))
            .expression_attribute_values(":run", s(&c.run))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        self.transact(vec![
            TransactWriteItem::builder().update(batch_update).build(),
            TransactWriteItem::builder().update(meta_update).build(),
        ])
        .await
    }
}

#[async_trait::async_trait]
impl CapStore for CampaignStore {
    /// Follow state, opt-out and the given cap sets of each friend (absent friends: not following).
    async fn friend_caps(
        &self,
        users: &[String],
        attributes: &[String],
    ) -> Result<HashMap<String, FriendCaps>, BackendError> {
        let mut names =
            HashMap::from([("#u".to_string(), "userId".to_string()), ("#st".to_string(), "state".to_string())]);
        let mut projection = ["#u", "#st", "suppressed", "lastPushAt", "lastPushBy"].map(String::from).to_vec();
        for (i, a) in attributes.iter().enumerate() {
            names.insert(format!("#c{i}"), a.clone());
            projection.push(format!("#c{i}"));
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
                            last_push: int(&item, "lastPushAt").zip(text(&item, "lastPushBy").map(str::to_string)),
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
    /// (`lastPushAt`, `lastPushBy`, and `prevPushAt` to restore on release). A retry finds its own
    /// push and passes. A transactional demand only checks follow state and opt-out.
    async fn reserve(&self, user: &str, demand: &Demand, now_ms: i64) -> Result<Reservation, BackendError> {
        let mut names = HashMap::from([("#st".to_string(), "state".to_string())]);
        let mut values = HashMap::from([(":following".to_string(), s("following"))]);
        let mut condition = vec!["#st = :following".to_string(), "attribute_not_exists(suppressed)".to_string()];
        let mut update = String::new();
        if !demand.transactional {
            values.insert(":m".into(), s(&demand.member));
            values.insert(":now".into(), n(now_ms));
            values.insert(":zero".into(), n(0));
            condition.push("(attribute_not_exists(lastPushBy) OR lastPushBy <> :m)".into());
            if demand.min_gap_ms > 0 {
                values.insert(":since".into(), n(demand.gap_since(now_ms)));
                condition.push("(attribute_not_exists(lastPushAt) OR lastPushAt <= :since)".into());
            }
            update.push_str("SET prevPushAt = if_not_exists(lastPushAt, :zero), lastPushAt = :now, lastPushBy = :m");
            let mut adds = vec![];
            if !demand.slots.is_empty() {
                values.insert(":ms".into(), AttributeValue::Ss(vec![demand.member.clone()]));
            }
            for (i, (attr, max)) in demand.slots.iter().enumerate() {
                names.insert(format!("#p{i}"), attr.clone());
                values.insert(format!(":max{i}"), n(max));
                condition
                    .push(format!("(attribute_not_exists(#p{i}) OR contains(#p{i}, :m) OR size(#p{i}) < :max{i})"));
                adds.push(format!("#p{i} :ms"));
            }
            if !adds.is_empty() {
                update.push_str(&format!(" ADD {}", adds.join(", ")));
            }
        } else {
            update.push_str("SET lastCheckedAt = :now");
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
            .send()
            .await;
        if let Ok(out) = &result {
            self.meter.write(out.consumed_capacity().and_then(|c| c.capacity_units).unwrap_or(0.0));
        }
        if conditional(result.map(|_| ()), "UpdateItem")? {
            return Ok(Reservation::Reserved);
        }
        // Refused: read why (rare; one strongly consistent read). Our own earlier reservation
        // (a retry) is a success: the one update did it all.
        let caps = self.friend_caps(&[user.to_string()], &demand.attributes()).await?;
        let Some(friend) = caps.get(user) else { return Ok(Reservation::Refused(Skip::Blocked)) };
        if !demand.transactional
            && friend.following
            && !friend.suppressed
            && friend.last_push.as_ref().is_some_and(|(_, by)| by == &demand.member)
        {
            // Our own earlier reservation: its periods may have ended since (a retry across a
            // day, week or month): the current ones are reserved too, under their caps.
            return self.reserve_periods(user, demand).await;
        }
        Ok(Reservation::Refused(friend.refusal(demand, now_ms).unwrap_or(Skip::Cap)))
    }

    /// Gives the friend's slots of the demand's member back (the send surely did not go out),
    /// and their last push before it while the last one recorded is this member's.
    async fn release(&self, user: &str, demand: &Demand, attributes: &[String]) -> Result<(), BackendError> {
        if demand.transactional {
            return Ok(());
        }
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
        // The usual case: the last push recorded is this one; the one before comes back.
        let restored = update(format!("SET lastPushAt = prevPushAt REMOVE lastPushBy{delete}"), "lastPushBy = :m")
            .expression_attribute_values(":m", s(&demand.member))
            .send()
            .await;
        if conditional(restored.map(|_| ()), "UpdateItem")? || deletes.is_empty() {
            return Ok(());
        }
        let result = update(format!("DELETE {}", deletes.join(", ")), "attribute_exists(userId)").send().await;
        conditional(result.map(|_| ()), "UpdateItem").map(|_| ())
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

    #[test]
    fn retry_keys_are_version_4_uuids() {
        let key = retry_key();
        assert_eq!(uuid::Uuid::parse_str(&key).unwrap().get_version_num(), 4);
        assert_ne!(retry_key(), key);
    }
}
