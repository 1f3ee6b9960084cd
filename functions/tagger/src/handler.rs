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

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::dynamodb::DynamoFriends;
use shared::adapters::tags::{Changed, DynamoTags};
use shared::batch::{respond, retry_all, RecordOutcome};
use shared::envelope::QueuedEvent;
use shared::ingest::friend_change;
use shared::line::webhook::{EventKind, MessageContent};
use shared::ports::{Clock, FriendChange, FriendStore, SystemClock};
use shared::rules::store::{RulesCache, RulesStore};
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
}

impl Deps {
    pub fn new(config: &Config, dynamodb: aws_sdk_dynamodb::Client) -> Self {
        Deps {
            rules: RulesCache::new(RulesStore::new(dynamodb.clone(), &config.rules_table)),
            default_rules: RuleBook::parse("{}").expect("an empty rules file is valid"),
            tags: DynamoTags::new(
                dynamodb.clone(),
                &config.tags_table,
                &config.users_table,
                &config.events_table,
                config.idempotency_ttl.as_secs() as i64,
            ),
            friends: DynamoFriends::new(dynamodb, &config.users_table),
            clock: Arc::new(SystemClock),
        }
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
    /// The event names no user (a group or room event without one).
    NoUser,
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
            Outcome::Retry => "retried",
            Outcome::Held => "held",
            Outcome::Unreadable => "unreadable",
        }
    }

    fn is_failure(self) -> bool {
        matches!(self, Outcome::Retry | Outcome::Held | Outcome::Unreadable)
    }
}

pub async fn function_handler(deps: &Deps, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    Ok(handle_batch(deps, &event.payload.records).await)
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

/// Runs `handle` on every record: message groups (friends) concurrently, each group's records one
/// after the other in queue order. After a failure, the group's later records are [`Outcome::Held`].
async fn in_group_order<'r, F, Fut>(records: &'r [SqsMessage], handle: F) -> Vec<(&'r SqsMessage, Outcome)>
where
    F: Fn(&'r SqsMessage) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let mut groups: BTreeMap<&str, Vec<&SqsMessage>> = BTreeMap::new();
    for r in records {
        let group = r.attributes.get("MessageGroupId").map(String::as_str).unwrap_or_default();
        groups.entry(group).or_default().push(r);
    }
    let handle = &handle;
    let runs = groups.into_values().map(|group| async move {
        let mut out = Vec::with_capacity(group.len());
        let mut held = false;
        for r in group {
            let outcome = if held { Outcome::Held } else { handle(r).await };
            held |= outcome.is_failure();
            out.push((r, outcome));
        }
        out
    });
    join_all(runs).await.into_iter().flatten().collect()
}

/// What a queued event means for tagging.
struct Tagging<'a> {
    user_id: &'a str,
    event_ms: i64,
    trigger: Option<TagTrigger<'a>>,
    follow: Option<FriendChange>,
    /// A LINE event from the friend themself (they talk to the account, so they are a friend).
    from_line: bool,
}

fn tagging(queued: &QueuedEvent) -> Option<Tagging<'_>> {
    match queued {
        QueuedEvent::Line { event, .. } => {
            let user_id = event.user_id()?;
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
            Some(Tagging { user_id, event_ms: event.common.timestamp, trigger, follow, from_line: true })
        }
        QueuedEvent::Shop { event, .. } => Some(Tagging {
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
    let Some(t) = tagging(&queued) else { return Outcome::NoUser };
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
    use std::sync::Mutex;

    use super::*;

    fn record(id: &str, group: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.attributes.insert("MessageGroupId".into(), group.into());
        m
    }

    #[tokio::test]
    async fn a_friend_s_records_run_in_order_and_stop_at_the_first_failure() {
        let records = [record("a1", "A"), record("b1", "B"), record("a2", "A"), record("a3", "A"), record("b2", "B")];
        let ran = Mutex::new(vec![]);
        let outcomes = in_group_order(&records, |r| {
            let id = r.message_id.clone().unwrap();
            ran.lock().unwrap().push(id.clone());
            async move {
                tokio::task::yield_now().await;
                if id == "a2" {
                    Outcome::Retry
                } else {
                    Outcome::Tagged
                }
            }
        })
        .await;
        let by_id: BTreeMap<String, Outcome> =
            outcomes.iter().map(|(r, o)| (r.message_id.clone().unwrap(), *o)).collect();
        assert_eq!(by_id["a1"], Outcome::Tagged);
        assert_eq!(by_id["a2"], Outcome::Retry);
        assert_eq!(by_id["a3"], Outcome::Held, "not run: it must not overtake a2");
        assert_eq!((by_id["b1"], by_id["b2"]), (Outcome::Tagged, Outcome::Tagged), "other friends go on");
        let ran = ran.into_inner().unwrap();
        let a: Vec<&String> = ran.iter().filter(|id| id.starts_with('a')).collect();
        assert_eq!(a, ["a1", "a2"], "queue order within the friend");
    }

    #[test]
    fn the_bundled_events_are_tagging_events() {
        let text = include_str!("../events/sqs-purchase.json");
        let event: SqsEvent = serde_json::from_str(text).unwrap();
        let body = event.records[0].body.as_deref().unwrap();
        let queued: QueuedEvent = serde_json::from_str(body).unwrap();
        let t = tagging(&queued).unwrap();
        assert_eq!(t.user_id, "U0123456789abcdef0123456789abcdef");
        let book = RuleBook::parse("{}").unwrap();
        let ops = book.tags().ops(t.trigger.unwrap());
        let tags: Vec<&str> = ops.iter().map(|o| o.tag.as_str()).collect();
        assert_eq!(tags, ["cart:open", "bought:cakes", "buyer"]);
    }
}
