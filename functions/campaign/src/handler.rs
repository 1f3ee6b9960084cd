//! One SQS batch from campaign-queue: each record asks to plan (or go on planning) one campaign
//! run. Planning is idempotent (each page is committed with the planner's checkpoint in one
//! transaction), so a redelivered or duplicated message goes on from the checkpoint. Near the
//! invocation's deadline the planner queues a continuation and returns.
//!
//! The same function runs the sweep ([`shared::campaign::sweep`]) when its EventBridge schedule
//! invokes it (`"source": "aws.events"`, every 5 minutes): the sweep's counts go to CloudWatch as
//! embedded-metric log lines, which the stack's alarms watch.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::dynamodb::campaigns::DynamoCampaigns;
use shared::adapters::dynamodb::capacity;
use shared::adapters::dynamodb::tags::DynamoTags;
use shared::adapters::sqs::SqsWorkQueue;
use shared::adapters::sqs_requests;
use shared::campaign::model::PlanMessage;
use shared::campaign::plan::{Planned, Planner};
use shared::campaign::sweep::{Sweeper, Swept};
use shared::costs::meter::{after_work_budget, campaigns_of, charge_campaigns, BatchRead, Meter};
use shared::ports::{Clock, SystemClock, WorkQueue};
use tracing::{info, warn};

use crate::config::Config;

pub struct Deps {
    pub store: DynamoCampaigns,
    pub index: DynamoTags,
    pub batches: Arc<dyn WorkQueue>,
    pub plans: Arc<dyn WorkQueue>,
    pub clock: Arc<dyn Clock>,
    /// Where the sweep's metrics go.
    pub metrics_namespace: String,
    /// What each invocation used, written as its metrics and added to the campaigns it planned.
    pub meter: Meter,
}

impl Deps {
    pub fn new(config: &Config, sdk: &aws_config::SdkConfig) -> Self {
        let (dynamodb, units) = capacity::client(sdk);
        let (sqs, requests) = sqs_requests::client(sdk);
        Deps {
            meter: Meter::new("campaign", units, requests, None),
            store: DynamoCampaigns::new(dynamodb.clone(), &config.campaigns_table, &config.users_table),
            index: DynamoTags::reader(dynamodb, &config.tags_table, &config.users_table),
            batches: Arc::new(SqsWorkQueue::new(sqs.clone(), &config.multicast_queue_url)),
            plans: Arc::new(SqsWorkQueue::new(sqs, &config.campaign_queue_url)),
            clock: Arc::new(SystemClock),
            metrics_namespace: config.metrics_namespace.clone(),
        }
    }
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Planned(Planned),
    /// Not a plan message: reported failed, so it ends in the DLQ (alarmed) rather than gone.
    Unreadable(String),
    /// Storage or queue trouble: the message comes back.
    Retry(String),
}

/// How long an invocation plans when the runtime gives no deadline (locally).
const NO_DEADLINE: Duration = Duration::from_secs(60);

/// A schedule's event (EventBridge), or an SQS batch.
/// [`handle`], measured: a sweep is one record; each planned record's campaign is charged its
/// share of the invocation.
pub async fn function_handler(deps: &Deps, event: LambdaEvent<serde_json::Value>) -> Result<serde_json::Value, Error> {
    let started = std::time::Instant::now();
    let records: Vec<SqsMessage> = match event.payload.get("Records") {
        Some(r) => serde_json::from_value(r.clone()).unwrap_or_default(),
        None => vec![],
    };
    let deadline_ms = event.context.deadline;
    let answer = handle(deps, event).await;
    let campaigns = campaigns_of(&records);
    let measured = deps.meter.take(started, records.len().max(1) as u64, BatchRead::of(&records));
    measured.emit(&campaigns.iter().map(|c| c.campaign.clone()).collect::<Vec<_>>());
    let budget = after_work_budget(deadline_ms, deps.clock.now_ms());
    charge_campaigns(&deps.store, "campaign", &measured, &campaigns, budget).await;
    answer
}

pub async fn handle(deps: &Deps, event: LambdaEvent<serde_json::Value>) -> Result<serde_json::Value, Error> {
    // A deadline already past is none at all (`cargo lambda watch` gives 0): then a minute, as a
    // 60 s function would have.
    let left = Duration::from_millis(event.context.deadline.saturating_sub(deps.clock.now_ms().max(0) as u64));
    let left = if left.is_zero() { NO_DEADLINE } else { left.min(Duration::from_secs(900)) };
    let deadline = tokio::time::Instant::now() + left;
    if is_schedule(&event.payload) {
        // Time left to print the metrics of what was swept.
        let swept = sweep(deps, deadline - Duration::from_secs(10).min(left / 2)).await?;
        return Ok(serde_json::to_value(swept)?);
    }
    let sqs: SqsEvent = serde_json::from_value(event.payload)
        .map_err(|e| format!("neither an SQS batch nor a schedule's event: {e}"))?;
    // Planning leaves time to queue a continuation before Lambda's own timeout.
    Ok(serde_json::to_value(handle_batch(deps, &sqs.records, deadline).await)?)
}

/// An EventBridge scheduled event (`"source": "aws.events"`).
pub fn is_schedule(payload: &serde_json::Value) -> bool {
    payload.get("source").and_then(serde_json::Value::as_str) == Some("aws.events")
}

/// One sweep over every campaign; its counts are printed as CloudWatch embedded-metric lines.
pub async fn sweep(deps: &Deps, until: tokio::time::Instant) -> Result<Swept, Error> {
    let sweeper = Sweeper { store: &deps.store, batches: deps.batches.as_ref(), clock: deps.clock.as_ref(), until };
    // Stamped with the sweep's start, which the schedule keeps 5 minutes apart.
    let started = deps.clock.now_ms();
    let swept = sweeper.run().await?;
    for line in swept.metrics(&deps.metrics_namespace, started) {
        // Embedded metric format: a JSON line of its own on stdout, which CloudWatch Logs reads.
        println!("{line}");
    }
    info!(
        finished = swept.finished.len(),
        requeued = swept.requeued,
        needing_attention = swept.needing_attention,
        stalled = swept.stalled.len(),
        "swept"
    );
    Ok(swept)
}

pub async fn handle_batch(deps: &Deps, records: &[SqsMessage], deadline: tokio::time::Instant) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in records {
        let outcome = plan_one(deps, record, deadline).await;
        match &outcome {
            Outcome::Retry(e) => warn!(message_id = ?record.message_id, error = %e, "planning will be retried"),
            // Reported failed, as the other consumers do: after maxReceiveCount it is in the DLQ,
            // whose alarm fires, instead of gone.
            Outcome::Unreadable(e) => warn!(message_id = ?record.message_id, error = %e, "not a plan message"),
            Outcome::Planned(p) => info!(
                message_id = ?record.message_id,
                outcome = ?p,
                left_ms = deadline.saturating_duration_since(tokio::time::Instant::now()).as_millis() as u64,
                "planned"
            ),
        }
        if matches!(outcome, Outcome::Retry(_) | Outcome::Unreadable(_)) {
            response.add_failure(record.message_id.clone().unwrap_or_default());
        }
    }
    response
}

async fn plan_one(deps: &Deps, record: &SqsMessage, deadline: tokio::time::Instant) -> Outcome {
    let message: PlanMessage = match record.body.as_deref().map(serde_json::from_str) {
        Some(Ok(m)) => m,
        Some(Err(e)) => return Outcome::Unreadable(e.to_string()),
        None => return Outcome::Unreadable("no body".into()),
    };
    let planner = Planner {
        store: &deps.store,
        caps: &deps.store,
        index: &deps.index,
        batches: deps.batches.as_ref(),
        plans: deps.plans.as_ref(),
        clock: deps.clock.as_ref(),
    };
    match planner.run(&message, deadline).await {
        Ok(p) => Outcome::Planned(p),
        Err(e) => Outcome::Retry(e.to_string()),
    }
}
