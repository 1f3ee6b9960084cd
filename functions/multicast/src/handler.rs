//! One SQS batch from multicast-queue: each record names one planned batch of a campaign. The
//! sender ([`shared::campaign::send`]) holds it if the campaign is paused or cancelled, else
//! leases it, reserves the recipients' cap slots, freezes the send list with a random retry key
//! and multicasts it, with the same body and key on every try. Records that must come back (a
//! lease held elsewhere, LINE not answering yet, storage trouble) are reported as batch item
//! failures; SQS delivers them again after the visibility timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::dynamodb::campaigns::DynamoCampaigns;
use shared::adapters::dynamodb::capacity::{self, Tally};
use shared::adapters::dynamodb::rules::RulesStore;
use shared::adapters::dynamodb::schedule::DynamoPacer;
use shared::adapters::line::LineClient;
use shared::adapters::sqs::SqsWorkQueue;
use shared::adapters::sqs_requests::{self, SqsTally};
use shared::campaign::model::uuid_simple;
use shared::campaign::model::BatchMessage;
use shared::campaign::send::{Failpoint, Retry, Sender, Sent};
use shared::costs::meter::{after_work_budget, campaigns_of, charge_campaigns, BatchRead, Meter};
use shared::ports::{Clock, SystemClock, WorkQueue};
use shared::secrets::Secrets;
use tracing::{info, warn};

use crate::config::Config;

pub struct Deps {
    pub store: DynamoCampaigns,
    /// The fleet's send schedule (one item in the campaigns table).
    pub pacer: DynamoPacer,
    /// campaign-queue.
    pub plans: Arc<dyn WorkQueue>,
    pub line: LineClient,
    pub clock: Arc<dyn Clock>,
    pub lease: Duration,
    pub attempts: u32,
    pub backoff: Duration,
    /// Faults tests inject (never set in production).
    pub failpoint: Mutex<Option<Failpoint>>,
    /// What each invocation used, written as its metrics and added to the campaigns it sent.
    pub meter: Meter,
    /// The account settings (their plan prices the month's messages), when RULES_TABLE is set.
    pub settings: Option<RulesStore>,
    /// When this instance last read the month's usage (epoch ms): at most once a minute.
    pub month_read_at: std::sync::atomic::AtomicI64,
}

impl Deps {
    pub async fn new(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Self, Error> {
        let secrets = Secrets::load(config.secrets.store(sdk), Config::SECRETS).await?;
        let (dynamodb, units) = capacity::client(sdk);
        let (sqs, requests) = sqs_requests::client(sdk);
        let mut deps = Self::from_parts(config, Arc::new(secrets), dynamodb, sqs)?;
        deps.meter.dynamodb = units;
        deps.meter.sqs = requests;
        Ok(deps)
    }

    pub fn from_parts(
        config: &Config,
        secrets: Arc<Secrets>,
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
    ) -> Result<Self, Error> {
        let line = LineClient::new(&config.line_api_base, secrets, config.line_timeout)?;
        let dynamodb_for_settings = dynamodb.clone();
        Ok(Deps {
            meter: Meter::new("multicast", Tally::default(), SqsTally::default(), Some(line.calls().clone())),
            store: DynamoCampaigns::new(dynamodb.clone(), &config.campaigns_table, &config.users_table),
            pacer: DynamoPacer::new(dynamodb, &config.campaigns_table),
            plans: Arc::new(SqsWorkQueue::new(sqs, &config.campaign_queue_url)),
            line,
            clock: Arc::new(SystemClock),
            lease: config.lease,
            attempts: config.attempts,
            backoff: config.backoff,
            failpoint: Mutex::new(None),
            settings: config.rules_table.as_ref().map(|t| RulesStore::settings(dynamodb_for_settings, t)),
            month_read_at: std::sync::atomic::AtomicI64::new(0),
        })
    }
}

/// What became of one record.
#[derive(Debug)]
pub enum Outcome {
    Done(Sent),
    Unreadable(String),
    Retry(Retry),
}

pub async fn function_handler(deps: &Deps, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let started = std::time::Instant::now();
    let records = &event.payload.records;
    let (response, billed) = handle_records(deps, records).await;
    let campaigns = campaigns_of(records);
    let mut measured = deps.meter.take(started, records.len() as u64, BatchRead::of(records));
    measured.line_billed = billed;
    // One budget for everything after the handler.
    let until = after_work_budget(event.context.deadline, deps.clock.now_ms()).map(|b| tokio::time::Instant::now() + b);
    if let (true, Some(until)) = (billed > 0, until) {
        if tokio::time::timeout_at(until, month_to_date(deps)).await.is_err() {
            warn!("reading the month's LINE usage for its metric ran out of time");
        }
    }
    measured.emit(&campaigns.iter().map(|c| c.campaign.clone()).collect::<Vec<_>>());
    let left = until
        .map(|u| u.saturating_duration_since(tokio::time::Instant::now()))
        .filter(|d| *d >= std::time::Duration::from_millis(200));
    charge_campaigns(&deps.store, "multicast", &measured, &campaigns, left).await;
    Ok(response)
}

/// After an invocation that sent, the month so far (at most once a minute per instance):
/// `LineMonthToDateMessages`, LINE's own count (`quota/consumption`: OA Manager's sends too), and
/// `LineMonthToDateSpend`, the month's bill so far in the plan's currency (the fee, plus what the
/// messages beyond the included ones cost). Recorded as values of this invocation only (not
/// gauges, which the collector would write again on every later invocation, into the next month
/// too); the alarm takes their maximum. A failure is logged: the sends are done.
async fn month_to_date(deps: &Deps) {
    let now = deps.clock.now_ms();
    let last = deps.month_read_at.load(std::sync::atomic::Ordering::Relaxed);
    if now - last < 60_000 {
        return;
    }
    deps.month_read_at.store(now, std::sync::atomic::Ordering::Relaxed);
    let used = match deps.line.consumption().await {
        Ok(used) => used,
        Err(e) => {
            warn!(error = %e, "cannot read the month's LINE usage for its metric");
            return;
        }
    };
    metrics::histogram!(MONTH_TO_DATE_MESSAGES).record(used as f64);
    let Some(store) = &deps.settings else { return };
    let plan = match store.live().await {
        Ok(Some(published)) => shared::campaign::file::AccountSettings::parse(&published.source)
            .map_err(|e| e.to_string())
            .and_then(|s| s.plan.resolve()),
        Ok(None) => return,
        Err(e) => Err(e.to_string()),
    };
    match plan {
        Ok(plan) => metrics::histogram!(MONTH_TO_DATE_SPEND).record(shared::costs::model::month_bill(&plan, used)),
        Err(e) => warn!(error = %e, "cannot read the plan for the month-to-date spend"),
    }
}

/// The month-to-date metrics' names (the template's alarm and dashboard read them).
pub const MONTH_TO_DATE_MESSAGES: &str = "LineMonthToDateMessages";
pub const MONTH_TO_DATE_SPEND: &str = "LineMonthToDateSpend";

/// [`handle_records`] without the count.
pub async fn handle_batch(deps: &Deps, records: &[SqsMessage]) -> SqsBatchResponse {
    handle_records(deps, records).await.0
}

/// Batches of one invocation go out a few at a time (each is one request to LINE). Also returns
/// the recipients of the batches whose settlement as sent it wrote: LINE billed each once, and
/// each settlement is written once (a settlement written whose answer was lost is not counted).
pub async fn handle_records(deps: &Deps, records: &[SqsMessage]) -> (SqsBatchResponse, u64) {
    // One lease owner per record: two copies of one batch in the same receive must not both
    // pass the lease.
    let billed = AtomicU64::new(0);
    let outcomes: Vec<Outcome> = stream::iter(records.iter())
        .map(|record| send_one(deps, record, uuid_simple(), &billed))
        .buffered(4)
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for (record, outcome) in records.iter().zip(outcomes) {
        match &outcome {
            Outcome::Done(sent) => info!(message_id = ?record.message_id, outcome = ?sent, "batch handled"),
            // Reported failed, as the other consumers do: after maxReceiveCount it is in the DLQ,
            // whose alarm fires, instead of gone.
            Outcome::Unreadable(e) => {
                warn!(message_id = ?record.message_id, error = %e, "not a batch message");
                response.add_failure(record.message_id.clone().unwrap_or_default());
            }
            Outcome::Retry(e) => {
                warn!(message_id = ?record.message_id, error = %e, "batch will be retried");
                response.add_failure(record.message_id.clone().unwrap_or_default());
            }
        }
    }
    (response, billed.load(Ordering::Relaxed))
}

async fn send_one(deps: &Deps, record: &SqsMessage, owner: String, billed: &AtomicU64) -> Outcome {
    let message: BatchMessage = match record.body.as_deref().map(serde_json::from_str) {
        Some(Ok(m)) => m,
        Some(Err(e)) => return Outcome::Unreadable(e.to_string()),
        None => return Outcome::Unreadable("no body".into()),
    };
    let sender = Sender {
        store: &deps.store,
        caps: &deps.store,
        line: &deps.line,
        clock: deps.clock.as_ref(),
        owner,
        lease: deps.lease,
        attempts: deps.attempts,
        backoff: deps.backoff,
        failpoint: &deps.failpoint,
        pacer: &deps.pacer,
        plans: deps.plans.as_ref(),
        billed,
    };
    match sender.send(&message).await {
        Ok(sent) => Outcome::Done(sent),
        Err(e) => Outcome::Retry(e),
    }
}
