//! One SQS batch from reply-queue in, free replies out. Records of one chat (one FIFO message
//! group) run one after the other, in queue order; different chats run concurrently. Each record
//! ends in exactly one [`Outcome`]; only the ones worth another try are reported as batch item
//! failures, so SQS redelivers them after the visibility timeout while the reply token can still
//! work. When one must be retried, the chat's later records are held and retried after it.
//!
//! Per record: parse → standby / no token / malformed → decide (rules, windows, chat kind) → token
//! age → claim `reply:<event key>` (one reply per event, however often it is delivered) →
//! fallback cooldown → reply → complete, or release and retry.
//!
//! A dead access token (LINE 401 even after reading the secret again) or a missing permission
//! (403) is not a problem of one message: the whole invocation fails, so no record is deleted,
//! Lambda's Errors metric and its alarm fire, and the records come back once the token is fixed.

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::dynamodb::capacity::{self, Tally};
use shared::adapters::dynamodb::ingest::{DynamoFriends, DynamoIdempotency};
use shared::adapters::dynamodb::rules::{RulesCache, RulesStore};
use shared::adapters::line::LineClient;
use shared::adapters::sqs_requests::SqsTally;
use shared::batch::{in_group_order, respond, retry_all, RecordOutcome};
use shared::costs::meter::{BatchRead, Meter};
use shared::envelope::QueuedEvent;
use shared::line::answer::LineError;
use shared::line::webhook::{self, is_chat_id, Event, EventKind, MessageContent, Mode};
use shared::ports::{Claim, Clock, IdempotencyStore, SystemClock};
use shared::rules::file::SourceKind;
use shared::rules::{Answer, RuleBook, Trigger};
use shared::secrets::Secrets;
use tracing::{info, warn};

use crate::config::Config;

pub struct Deps {
    pub rules: RulesCache,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub friends: DynamoFriends,
    pub line: LineClient,
    pub max_token_age_ms: i64,
    pub clock: Arc<dyn Clock>,
    /// What each invocation used (its DynamoDB units, LINE calls, ...), written as its metrics.
    pub meter: Meter,
}

impl Deps {
    /// The production wiring: reads the access token once (now), then builds the LINE client and
    /// the DynamoDB adapters.
    pub async fn new(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Self, Error> {
        let secrets = Secrets::load(config.secrets.store(sdk), Config::SECRETS).await?;
        let (dynamodb, units) = capacity::client(sdk);
        let mut deps = Self::from_parts(config, Arc::new(secrets), dynamodb)?;
        deps.meter.dynamodb = units;
        Ok(deps)
    }

    pub fn from_parts(
        config: &Config,
        secrets: Arc<Secrets>,
        dynamodb: aws_sdk_dynamodb::Client,
    ) -> Result<Self, Error> {
        let line = LineClient::new(&config.line_api_base, secrets, config.line_timeout)?;
        Ok(Deps {
            meter: Meter::new("keyword-reply", Tally::default(), SqsTally::default(), Some(line.calls().clone())),
            rules: RulesCache::new(RulesStore::new(dynamodb.clone(), &config.rules_table)),
            idempotency: Arc::new(DynamoIdempotency::new(
                dynamodb.clone(),
                &config.events_table,
                config.idempotency_ttl.as_secs() as i64,
                config.in_progress_timeout.as_millis() as i64,
            )),
            friends: DynamoFriends::new(dynamodb, &config.users_table),
            line,
            max_token_age_ms: config.max_token_age.as_millis() as i64,
            clock: Arc::new(SystemClock),
        })
    }
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Replied,
    /// Already replied to (a redelivery or a duplicate message).
    Duplicate,
    /// Nothing to answer: no rule, not a replyable event, or a shop event.
    NoMatch,
    /// `mode: standby`: another channel owns the chat; the bot must not send.
    Standby,
    /// The event carries no reply token.
    NoToken,
    /// The token is too old to work: skipped, not retried.
    Expired,
    /// LINE refused the token (used or expired): dropped.
    InvalidToken,
    /// The fallback was sent to this friend less than its cooldown ago.
    Cooldown,
    /// LINE rejected the request itself (e.g. a malformed message in the rules): dropped.
    Rejected,
    /// The event is not in LINE's shape (a bad chat ID, a field of the wrong type): skipped.
    Malformed,
    /// Could not finish now (LINE 429/5xx/timeout, storage error, a twin in flight): retry.
    Retry,
    /// Not run: an earlier record of the same chat is retried, and this one must come after it.
    Held,
    /// LINE refused the token itself (401 after a fresh read of the secret) or the permission (403):
    /// every reply would fail. The invocation fails; nothing is deleted.
    Systemic,
    /// The message body is not a queued event: reported so it ends in the dead-letter queue.
    Unreadable,
}

impl RecordOutcome for Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Replied => "replied",
            Outcome::Duplicate => "duplicates",
            Outcome::NoMatch => "noMatch",
            Outcome::Standby => "standby",
            Outcome::NoToken => "noToken",
            Outcome::Expired => "expiredTokens",
            Outcome::InvalidToken => "invalidTokens",
            Outcome::Cooldown => "cooldown",
            Outcome::Rejected => "rejected",
            Outcome::Malformed => "malformed",
            Outcome::Retry => "retried",
            Outcome::Held => "held",
            Outcome::Systemic => "systemic",
            Outcome::Unreadable => "unreadable",
        }
    }

    /// Whether SQS should deliver the record again.
    fn is_failure(self) -> bool {
        matches!(self, Outcome::Retry | Outcome::Held | Outcome::Systemic | Outcome::Unreadable)
    }

    fn held() -> Self {
        Outcome::Held
    }

    fn is_poison(self) -> bool {
        self == Outcome::Unreadable
    }
}

/// Every reply failed for a reason no retry of one message can fix (see [`Outcome::Systemic`]).
#[derive(Debug, thiserror::Error)]
#[error("LINE refuses every reply (dead access token or missing permission): {records} record(s) left on the queue")]
pub struct Systemic {
    pub records: usize,
}

pub async fn function_handler(deps: &Deps, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let started = Instant::now();
    let records = &event.payload.records;
    let response = handle_batch(deps, records).await;
    deps.meter.take(started, records.len() as u64, BatchRead::of(records)).emit(&[]);
    Ok(response?)
}

/// The whole batch: chats concurrently, each chat's records in queue order. Fails as a whole
/// (nothing deleted) when LINE refuses the token or the permission.
pub async fn handle_batch(deps: &Deps, records: &[SqsMessage]) -> Result<SqsBatchResponse, Systemic> {
    // One cheap version read per batch; rules are parsed only when the version changed.
    let served = match deps.rules.get().await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot read the rules version; the whole batch will be retried");
            return Ok(retry_all(records));
        }
    };
    let book = served.book.as_deref();
    let outcomes = in_group_order(records, |r| handle_record(deps, book, r)).await;
    let systemic = outcomes.iter().any(|(_, o)| *o == Outcome::Systemic);
    let (response, counts) = respond(outcomes);
    info!(records = records.len(), rules_version = served.version, rules_reloaded = served.reloaded, outcomes = ?counts, "batch");
    if systemic {
        let failure = Systemic { records: records.len() };
        tracing::error!(error = %failure, "failing the invocation");
        return Err(failure);
    }
    Ok(response)
}

/// The chat kind the rules see, and the chat (a LINE ID) the fallback cooldown is kept on.
fn source_kind<'a>(event: &'a Event<'_>) -> (SourceKind, Option<&'a str>) {
    let kind = match event.common.source.as_ref().map(|s| s.kind) {
        Some(webhook::SourceKind::Group) => SourceKind::Group,
        Some(webhook::SourceKind::Room) => SourceKind::Room,
        _ => SourceKind::User,
    };
    let source = event.common.source.as_ref();
    let chat = match kind {
        SourceKind::User => event.user_id(),
        // In a group or room the cooldown is the chat's, not the member's.
        SourceKind::Group => source.and_then(|s| s.group_id.as_deref()),
        SourceKind::Room => source.and_then(|s| s.room_id.as_deref()),
    };
    (kind, chat.filter(|id| is_chat_id(id)))
}

fn trigger<'a>(event: &'a Event<'_>) -> Option<Trigger<'a>> {
    match &event.kind {
        EventKind::Message { message } => match &message.content {
            MessageContent::Text { text, .. } => Some(Trigger::Text(text)),
            _ => None,
        },
        EventKind::Postback { postback } => Some(Trigger::Postback(&postback.data)),
        EventKind::Follow { follow } => {
            Some(Trigger::Follow { unblocked: follow.as_ref().is_some_and(|f| f.is_unblocked) })
        }
        _ => None,
    }
}

async fn handle_record(deps: &Deps, book: Option<&RuleBook>, record: &SqsMessage) -> Outcome {
    let message_id = record.message_id.as_deref().unwrap_or_default();
    let queued: QueuedEvent = match serde_json::from_str(record.body.as_deref().unwrap_or_default()) {
        Ok(q) => q,
        Err(e) => {
            warn!(message_id, error = %e, "unreadable reply-queue message");
            return Outcome::Unreadable;
        }
    };
    let QueuedEvent::Line { dedupe_key, received_at, event, .. } = &queued else {
        return Outcome::NoMatch;
    };
    if let Some(reason) = event.malformed() {
        info!(event = %dedupe_key, reason, "malformed event; skipped");
        return Outcome::Malformed;
    }
    if event.common.mode == Mode::Standby {
        return Outcome::Standby;
    }
    let Some(token) = event.common.reply_token.as_deref() else { return Outcome::NoToken };
    let (Some(book), Some(trigger)) = (book, trigger(event)) else { return Outcome::NoMatch };
    let (source, chat_id) = source_kind(event);
    let now = deps.clock.now_ms();
    let at = jiff::Timestamp::from_millisecond(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let decision = book.decide(trigger, source, at);
    let (messages, fallback_cooldown_ms, rule) = match decision.answer {
        Answer::Nothing => return Outcome::NoMatch,
        Answer::Rule { rule, messages } => (messages, None, rule),
        Answer::Greeting { unblocked, messages } => {
            (messages, None, if unblocked { "follow:unblocked".into() } else { "follow:newFriend".into() })
        }
        Answer::Fallback { cooldown_secs, messages } => {
            (messages, Some(cooldown_secs as i64 * 1000), "fallback".into())
        }
    };
    if now - received_at > deps.max_token_age_ms {
        info!(event = %dedupe_key, age_ms = now - received_at, "reply token too old; skipped");
        return Outcome::Expired;
    }
    let key = format!("reply:{dedupe_key}");
    match deps.idempotency.claim(&key, now).await {
        Ok(Claim::Claimed { .. }) => {}
        Ok(Claim::AlreadyCompleted) => return Outcome::Duplicate,
        Ok(Claim::InProgress) => return Outcome::Retry,
        Err(e) => {
            warn!(event = %dedupe_key, error = %e, "cannot claim");
            return Outcome::Retry;
        }
    }
    let outcome = send(deps, token, &messages, chat_id, fallback_cooldown_ms, *received_at).await;
    let settled = match outcome {
        Outcome::Retry | Outcome::Systemic => deps.idempotency.release(&key).await,
        _ => deps.idempotency.complete(&key, deps.clock.now_ms()).await,
    };
    if let Err(e) = settled {
        // A reply that went out stays out: a later delivery finds its token used (400, dropped).
        warn!(event = %dedupe_key, error = %e, "cannot settle the reply record");
    }
    if outcome == Outcome::Replied {
        info!(event = %dedupe_key, rule = %rule, "replied");
    }
    outcome
}

/// Cooldown (fallback only), then the reply itself.
async fn send(
    deps: &Deps,
    token: &str,
    messages: &[serde_json::Value],
    chat_id: Option<&str>,
    fallback_cooldown_ms: Option<i64>,
    received_at: i64,
) -> Outcome {
    let mut cooldown_started = None;
    if let (Some(cooldown), Some(chat)) = (fallback_cooldown_ms, chat_id) {
        let now = deps.clock.now_ms();
        match deps.friends.start_fallback_cooldown(chat, now, cooldown).await {
            Ok(true) => cooldown_started = Some((chat, now)),
            Ok(false) => return Outcome::Cooldown,
            Err(e) => {
                warn!(error = %e, "cannot check the fallback cooldown");
                return Outcome::Retry;
            }
        }
    }
    let outcome = reply(deps, token, messages, received_at).await;
    if let (Outcome::Retry | Outcome::Systemic, Some((chat, started))) = (outcome, cooldown_started) {
        // The retry must find the cooldown as it was, or the friend would get no fallback at all.
        if let Err(e) = deps.friends.cancel_fallback_cooldown(chat, started).await {
            warn!(error = %e, "cannot undo the fallback cooldown");
        }
    }
    outcome
}

async fn reply(deps: &Deps, token: &str, messages: &[serde_json::Value], received_at: i64) -> Outcome {
    match deps.line.reply(token, messages).await {
        Ok(_) => Outcome::Replied,
        Err(LineError::InvalidReplyToken) => Outcome::InvalidToken,
        Err(e) if e.is_systemic() => {
            tracing::error!(error = %e, kind = e.kind(), "LINE refuses replies");
            Outcome::Systemic
        }
        Err(e) if e.is_retryable() => {
            // Worth another go only while the token can still work.
            let age = deps.clock.now_ms() - received_at;
            warn!(error = %e, age_ms = age, "reply failed");
            if age < deps.max_token_age_ms {
                Outcome::Retry
            } else {
                Outcome::Expired
            }
        }
        Err(e) => {
            // The template's metric filter (KeywordReplyRejected) counts this line: a rule whose
            // messages LINE refuses answers nobody until it is fixed.
            warn!(error = %e, kind = e.kind(), "LINE rejected the reply; dropped");
            Outcome::Rejected
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_sqs_event_carries_a_replyable_queued_event() {
        let text = include_str!("../events/sqs-text-message.json");
        let event: SqsEvent = serde_json::from_str(text).unwrap();
        let body = event.records[0].body.as_deref().unwrap();
        let QueuedEvent::Line { event, .. } = serde_json::from_str(body).unwrap() else { panic!("a LINE event") };
        assert_eq!(trigger(&event), Some(Trigger::Text("menu")));
        assert_eq!(source_kind(&event), (SourceKind::User, Some("U0123456789abcdef0123456789abcdef")));
        assert!(event.common.reply_token.is_some());
    }
}
