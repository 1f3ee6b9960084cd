//! One SQS batch from campaign-queue: each record asks to plan (or go on planning) one campaign
//! run. Planning is idempotent (each page is committed with the planner's checkpoint in one
//! transaction), so a redelivered or duplicated message goes on from the checkpoint. Near the
//! invocation's deadline the planner queues a continuation and returns.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::dynamodb::campaigns::DynamoCampaigns;
use shared::adapters::dynamodb::tags::DynamoTags;
use shared::adapters::sqs::SqsWorkQueue;
use shared::campaign::model::PlanMessage;
use shared::campaign::plan::{Planned, Planner};
use shared::ports::{Clock, SystemClock, WorkQueue};
use tracing::{info, warn};

use crate::config::Config;

pub struct Deps {
    pub store: DynamoCampaigns,
    pub index: DynamoTags,
    pub batches: Arc<dyn WorkQueue>,
    pub plans: Arc<dyn WorkQueue>,
    pub clock: Arc<dyn Clock>,
}

impl Deps {
    pub fn new(config: &Config, sdk: &aws_config::SdkConfig) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        Deps {
            store: DynamoCampaigns::new(dynamodb.clone(), &config.campaigns_table, &config.users_table),
            index: DynamoTags::reader(dynamodb, &config.tags_table, &config.users_table),
            batches: Arc::new(SqsWorkQueue::new(sqs.clone(), &config.multicast_queue_url)),
            plans: Arc::new(SqsWorkQueue::new(sqs, &config.campaign_queue_url)),
            clock: Arc::new(SystemClock),
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

pub async fn function_handler(deps: &Deps, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    // Leave time to queue a continuation before Lambda's own timeout.
    let left = Duration::from_millis(event.context.deadline.saturating_sub(deps.clock.now_ms().max(0) as u64));
    let deadline = tokio::time::Instant::now() + left.min(Duration::from_secs(900));
    Ok(handle_batch(deps, &event.payload.records, deadline).await)
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
            Outcome::Planned(p) => info!(message_id = ?record.message_id, outcome = ?p, "planned"),
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
