//! One SQS batch from tag-queue in, tag changes out. Records of one friend (one FIFO message
//! group) run one after the other, in queue order; different friends run concurrently. When a
//! record must be retried, the friend's later records in the batch are not run and are retried
//! too, so nothing overtakes it.
//!
//! Per record: parse → follow/unfollow recorded on the friend → the tag rules name the changes →
//! read the friend and their tags → plan ([`shared::tagging::plan`]) → one transaction with the tag
//! items (each guarded by the version read), the per-tag counters and the idempotency record
//! `tag:<event key>`. A concurrent change makes the transaction fail; the record is read and
//! planned again (three tries, then SQS retries it).

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::dynamodb::capacity::Tally;
use shared::adapters::dynamodb::ingest::DynamoFriends;
use shared::adapters::dynamodb::rules::{RulesCache, RulesStore};
use shared::adapters::dynamodb::tags::{Changed, DynamoTags};
use shared::adapters::sqs_requests::SqsTally;
use shared::batch::{in_group_order, respond, retry_all, RecordOutcome};
use shared::costs::meter::{BatchRead, Meter};
use shared::envelope::QueuedEvent;
use shared::ingest::friend_change;
use shared::line::webhook::{is_user_id, EventKind, MessageContent, SourceKind};
use shared::ports::{Clock, FriendChange, FriendStore, SystemClock};
use shared::rules::tags::TagTrigger;
use shared::rules::RuleBook;
use tracing::{info, warn};

use crate::config::Config;

pub struct Deps {
    pub rules: RulesCache,
    /// The tag rules used while no rules file has been published: the default follow and shop tags.
    pub default_rules: RuleBook,
    pub tags: DynamoTags,
    pub friends: DynamoFriends,
    pub clock: Arc<dyn Clock>,
    /// What each invocation used, written as its metrics (`main` counts the DynamoDB client's units).
    pub meter: Meter,
}

impl Deps {
    pub fn new(config: &Config, dynamodb: aws_sdk_dynamodb::Client) -> Result<Self, Error> {
        Ok(Deps {
            rules: RulesCache::new(RulesStore::new(dynamodb.clone(), &config.rules_table)),
            default_rules: RuleBook::parse("{}")?,
            tags: DynamoTags::new(
                dynamodb.clone(),
                &config.tags_table,
                &config.users_table,
                &config.events_table,
                config.idempotency_ttl.as_secs() as i64,
            ),
            friends: DynamoFriends::new(dynamodb, &config.users_table),
            clock: Arc::new(SystemClock),
            meter: Meter::new("tagger", Tally::default(), SqsTally::default(), None),
        })
    }
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Tags (or the friend's index entries) were written.
    Tagged,
    /// The rules asked for changes that were already in place (or overtaken by newer events).
    Unchanged,
    /// The event was applied before.
    Duplicate,
    /// No tag rule for this event.
    NoTags,
    /// The event names no user (a channel-level event, a group event without one).
    NoUser,
    /// A group or room event: group chatter tags nobody and makes nobody a friend.
    GroupChat,
    /// The event is not in LINE's shape (a bad user ID, a field of the wrong type): skipped.
    Malformed,
    /// Storage failed or kept changing under us: retried.
    Retry,
    /// Not run because an earlier record of the same friend is retried.
    Held,
    /// The body is not a queued event: reported so it ends in the dead-letter queue.
    Unreadable,
}

impl RecordOutcome for Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Tagged => "tagged",
            Outcome::Unchanged => "unchanged",
            Outcome::Duplicate => "duplicates",
            Outcome::NoTags => "noTags",
            Outcome::NoUser => "noUser",
            Outcome::GroupChat => "groupChat",
            Outcome::Malformed => "malformed",
            Outcome::Retry => "retried",
            Outcome::Held => "held",
            Outcome::Unreadable => "unreadable",
        }
    }

    fn is_failure(self) -> bool {
        matches!(self, Outcome::Retry | Outcome::Held | Outcome::Unreadable)
    }

    fn held() -> Self {
        Outcome::Held
    }

    fn is_poison(self) -> bool {
        self == Outcome::Unreadable
    }
}

pub async fn function_handler(deps: &Deps, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let started = std::time::Instant::now();
    let records = &event.payload.records;
    let response = handle_batch(deps, records).await;
    deps.meter.take(started, records.len() as u64, BatchRead::of(records)).emit(&[]);
    Ok(response)
}

pub async fn handle_batch(deps: &Deps, records: &[SqsMessage]) -> SqsBatchResponse {
    let served = match deps.rules.get().await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot read the rules version; the whole batch will be retried");
            return retry_all(records);
        }
    };
    let book = served.book.as_deref().unwrap_or(&deps.default_rules);
    let outcomes = in_group_order(records, |r| handle_record(deps, book, r)).await;
    let (response, counts) = respond(outcomes);
    info!(records = records.len(), rules_version = served.version, outcomes = ?counts, "batch");
    response
}

/// What a queued event means for tagging.
struct Tagging<'a> {
    user_id: &'a str,
    event_ms: i64,
    trigger: Option<TagTrigger<'a>>,
    follow: Option<FriendChange>,
    /// A LINE event from the friend themself, 1:1 (they talk to the account, so they are a friend).
    from_line: bool,
}

/// What a queued event means for tagging, or why it means nothing (the outcome to report).
///
/// Only 1:1 events tag and make friends: a group or room member may not be a friend of the
/// account at all (LINE does not bill pushes to non-friends, so counting them would make every
/// segment and campaign preview wrong), and what they say in a group is not said to the brand.
fn tagging<'a>(queued: &'a QueuedEvent<'_>) -> Result<Tagging<'a>, Outcome> {
    match queued {
        QueuedEvent::Line { event, .. } => {
            if let Some(reason) = event.malformed() {
                info!(event = %queued.dedupe_key(), reason, "malformed event; skipped");
                return Err(Outcome::Malformed);
            }
            let source = event.common.source.as_ref().map(|s| s.kind);
            if matches!(source, Some(SourceKind::Group | SourceKind::Room)) {
                return Err(Outcome::GroupChat);
            }
            if !event.is_one_to_one() {
                return Err(Outcome::NoUser);
            }
            let user_id = event.user_id().ok_or(Outcome::NoUser)?;
            let follow = friend_change(event).map(|(_, change, _)| change);
            let trigger = match (&event.kind, follow) {
                (_, Some(FriendChange::Followed { is_unblocked })) => {
                    Some(TagTrigger::Follow { unblocked: is_unblocked })
                }
                (EventKind::Message { message }, _) => match &message.content {
                    MessageContent::Text { text, .. } => Some(TagTrigger::Text(text)),
                    _ => None,
                },
                (EventKind::Postback { postback }, _) => Some(TagTrigger::Postback(&postback.data)),
                _ => None,
            };
            Ok(Tagging { user_id, event_ms: event.common.timestamp, trigger, follow, from_line: true })
        }
        QueuedEvent::Shop { event, .. } if !is_user_id(&event.user_id) => {
            info!(event = %queued.dedupe_key(), "shop event without a LINE user ID; skipped");
            Err(Outcome::Malformed)
        }
        QueuedEvent::Shop { event, .. } => Ok(Tagging {
            user_id: &event.user_id,
            event_ms: event.occurred_at,
            trigger: Some(TagTrigger::Shop { kind: &event.kind, properties: &event.properties }),
            follow: None,
            from_line: false,
        }),
    }
}

async fn handle_record(deps: &Deps, book: &RuleBook, record: &SqsMessage) -> Outcome {
    let message_id = record.message_id.as_deref().unwrap_or_default();
    let queued: QueuedEvent = match serde_json::from_str(record.body.as_deref().unwrap_or_default()) {
        Ok(q) => q,
        Err(e) => {
            warn!(message_id, error = %e, "unreadable tag-queue message");
            return Outcome::Unreadable;
        }
    };
    let t = match tagging(&queued) {
        Ok(t) => t,
        Err(skipped) => return skipped,
    };
    let now = deps.clock.now_ms();
    if let Some(change) = t.follow {
        // The webhook recorded it already; recording again is harmless (older changes are
        // ignored) and keeps the tagger right on its own.
        if let Err(e) = deps.friends.record(t.user_id, change, t.event_ms, now).await {
            warn!(error = %e, "cannot record the follow state");
            return Outcome::Retry;
        }
    }
    let ops = t.trigger.map(|tr| book.tags().ops(tr)).unwrap_or_default();
    if ops.is_empty() && t.follow.is_none() {
        if t.from_line {
            // Still a friend worth knowing, for segments over all friends.
            if let Err(e) = deps.friends.ensure_known(t.user_id, now).await {
                warn!(error = %e, "cannot record the friend");
                return Outcome::Retry;
            }
        }
        return Outcome::NoTags;
    }
    let key = format!("tag:{}", queued.dedupe_key());
    match deps.tags.change(t.user_id, &ops, t.event_ms, now, t.from_line, &key).await {
        Ok(Changed::Written) => Outcome::Tagged,
        Ok(Changed::Unchanged) => Outcome::Unchanged,
        Ok(Changed::Duplicate) => Outcome::Duplicate,
        Ok(Changed::Contended) => {
            warn!(event = %queued.dedupe_key(), "the friend's tags kept changing; retried later");
            Outcome::Retry
        }
        Err(e) => {
            warn!(event = %queued.dedupe_key(), error = %e, "cannot change tags");
            Outcome::Retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_event(source: serde_json::Value) -> QueuedEvent<'static> {
        let event = serde_json::json!({"type": "message", "webhookEventId": "01GROUP", "timestamp": 1, "source": source,
            "message": {"id": "1", "type": "text", "text": "I love pudding"}});
        let text = serde_json::json!({"kind": "line", "dedupeKey": "01GROUP", "receivedAt": 1, "event": event});
        serde_json::from_str::<QueuedEvent>(&text.to_string()).unwrap().into_owned()
    }

    #[test]
    fn only_one_to_one_chats_tag_and_make_friends() {
        let u = "U0123456789abcdef0123456789abcdef";
        let in_group = line_event(
            serde_json::json!({"type": "group", "groupId": "C0123456789abcdef0123456789abcdef", "userId": u}),
        );
        assert_eq!(tagging(&in_group).err(), Some(Outcome::GroupChat));
        let in_room =
            line_event(serde_json::json!({"type": "room", "roomId": "R0123456789abcdef0123456789abcdef", "userId": u}));
        assert_eq!(tagging(&in_room).err(), Some(Outcome::GroupChat));
        let bad_id = line_event(serde_json::json!({"type": "user", "userId": "U".repeat(3000)}));
        assert_eq!(tagging(&bad_id).err(), Some(Outcome::Malformed));
        let one_to_one = line_event(serde_json::json!({"type": "user", "userId": u}));
        let t = tagging(&one_to_one).ok().unwrap();
        assert!(t.from_line && t.user_id == u);
    }

    #[test]
    fn the_bundled_events_are_tagging_events() {
        let text = include_str!("../events/sqs-purchase.json");
        let event: SqsEvent = serde_json::from_str(text).unwrap();
        let body = event.records[0].body.as_deref().unwrap();
        let queued: QueuedEvent = serde_json::from_str(body).unwrap();
        let t = tagging(&queued).ok().unwrap();
        assert_eq!(t.user_id, "U0123456789abcdef0123456789abcdef");
        let book = RuleBook::parse("{}").unwrap();
        let ops = book.tags().ops(t.trigger.unwrap());
        let tags: Vec<&str> = ops.iter().map(|o| o.tag.as_str()).collect();
        assert_eq!(tags, ["cart:open", "bought:cakes", "buyer"]);
    }
}
