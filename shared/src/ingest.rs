//! Ingestion: turn verified webhook or shop events into queue messages, each exactly once.
//!
//! For every event: claim its dedupe key (a duplicate or an in-progress twin is not processed
//! again), record follow/unfollow state, send it to the queues whose consumers can use it, then mark
//! the key completed, or release it if anything failed so that LINE's redelivery goes through.
//!
//! Routing: the reply queue gets only events that carry a `replyToken` (nothing else can ever be
//! answered: no token in standby, none on unfollow/leave/unsend/...); the tag queue gets every event,
//! since tags may come from anything a friend does, including event types added later.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::join_all;

use crate::envelope::QueuedEvent;
use crate::line::webhook::{Event, EventKind, Follow, SourceKind, WebhookBody};
use crate::ports::{
    BackendError, Claim, Clock, FriendChange, FriendStore, FriendUpdate, IdempotencyStore, MessageQueue,
    OutgoingMessage,
};
use crate::shop::ShopEvent;

/// One event, ready to ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Dedupe key: the idempotency record's id and the SQS MessageDeduplicationId.
    pub key: String,
    /// SQS MessageGroupId: the friend, else the group or room, so each chat stays in order.
    pub group_id: String,
    /// The serialised [`QueuedEvent`].
    pub body: String,
    pub to_reply_queue: bool,
    pub to_tag_queue: bool,
    /// `(user id, change, event time)` for follow and unfollow events.
    pub friend_change: Option<(String, FriendChange, i64)>,
}

/// Items for a parsed LINE webhook body, in the order LINE sent them.
pub fn line_items(body: WebhookBody, received_at: i64) -> Vec<Item> {
    let destination = body.destination;
    body.events.into_iter().map(|event| line_item(event, destination.as_deref(), received_at)).collect()
}

/// The follow state an event changes: (user, change, event time). 1:1 chats only: groups and
/// rooms have join/leave instead.
pub fn friend_change(event: &Event) -> Option<(String, FriendChange, i64)> {
    let is_user = event.common.source.as_ref().is_some_and(|s| s.kind == SourceKind::User);
    match (&event.kind, event.user_id(), is_user) {
        (EventKind::Follow { follow }, Some(user), true) => Some((
            user.to_string(),
            FriendChange::Followed { is_unblocked: matches!(follow, Some(Follow { is_unblocked: true })) },
            event.common.timestamp,
        )),
        (EventKind::Unfollow, Some(user), true) => {
            Some((user.to_string(), FriendChange::Unfollowed, event.common.timestamp))
        }
        _ => None,
    }
}

fn line_item(event: Event, destination: Option<&str>, received_at: i64) -> Item {
    let key = event.dedupe_key();
    let group_id = event.chat_id().or(destination).unwrap_or("channel").to_string();
    let friend_change = friend_change(&event);
    let to_reply_queue = event.common.reply_token.as_deref().is_some_and(|t| !t.is_empty());
    let queued = QueuedEvent::Line {
        dedupe_key: key.clone(),
        destination: destination.map(str::to_string),
        received_at,
        event: Box::new(event),
    };
    Item {
        key,
        group_id,
        body: serde_json::to_string(&queued).expect("a parsed event serialises"),
        to_reply_queue,
        to_tag_queue: true,
        friend_change,
    }
}

/// Items for validated shop events: tag queue only.
pub fn shop_items(events: Vec<ShopEvent>, received_at: i64) -> Vec<Item> {
    events
        .into_iter()
        .map(|event| {
            let key = event.dedupe_key();
            let group_id = event.user_id.clone();
            let queued = QueuedEvent::Shop { dedupe_key: key.clone(), received_at, event };
            Item {
                key,
                group_id,
                body: serde_json::to_string(&queued).expect("a shop event serialises"),
                to_reply_queue: false,
                to_tag_queue: true,
                friend_change: None,
            }
        })
        .collect()
}

/// What one ingestion did, for the response status and the request's log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub received: usize,
    /// Newly processed and enqueued.
    pub enqueued: usize,
    /// Seen before (completed), or repeated inside this request.
    pub duplicates: usize,
    /// Another delivery of the same event is being processed now.
    pub in_progress: usize,
    /// Could not be recorded or enqueued; the claim was released.
    pub failed: usize,
    /// Follow/unfollow events older than the friend's recorded state.
    pub stale_friend_updates: usize,
    /// The first few errors, for the log.
    pub errors: Vec<String>,
}

impl Report {
    /// True when LINE must redeliver: something was not enqueued, or is still being processed by a
    /// concurrent delivery that may yet fail.
    pub fn needs_redelivery(&self) -> bool {
        self.failed > 0 || self.in_progress > 0
    }

    fn error(&mut self, e: impl ToString) {
        if self.errors.len() < 3 {
            self.errors.push(e.to_string());
        }
    }
}

/// The ingestion pipeline over its ports.
#[derive(Clone)]
pub struct Ingestor {
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub friends: Arc<dyn FriendStore>,
    pub reply_queue: Arc<dyn MessageQueue>,
    pub tag_queue: Arc<dyn MessageQueue>,
    pub clock: Arc<dyn Clock>,
}

impl Ingestor {
    pub async fn ingest(&self, items: Vec<Item>) -> Report {
        let now = self.clock.now_ms();
        let mut report = Report { received: items.len(), ..Report::default() };

        // 1. Claim each distinct key once.
        let mut seen = HashSet::new();
        let items: Vec<Item> = items.into_iter().filter(|i| seen.insert(i.key.clone())).collect();
        report.duplicates += report.received - items.len();
        let claims = join_all(items.iter().map(|i| self.idempotency.claim(&i.key, now))).await;
        let mut claimed = Vec::with_capacity(items.len());
        for (item, claim) in items.into_iter().zip(claims) {
            match claim {
                Ok(Claim::Claimed) => claimed.push(item),
                Ok(Claim::AlreadyCompleted) => report.duplicates += 1,
                Ok(Claim::InProgress) => report.in_progress += 1,
                Err(e) => {
                    report.failed += 1;
                    report.error(e);
                }
            }
        }
        let mut ok = vec![true; claimed.len()];

        // 2. Follow/block state (conditional on event time, so order and repeats do not matter).
        let updates = join_all(claimed.iter().map(|item| async move {
            match &item.friend_change {
                Some((user, change, at)) => Some(self.friends.record(user, *change, *at, now).await),
                None => None,
            }
        }))
        .await;
        for (i, update) in updates.into_iter().enumerate() {
            match update {
                Some(Err(e)) => {
                    ok[i] = false;
                    report.error(e);
                }
                Some(Ok(FriendUpdate::Stale)) => report.stale_friend_updates += 1,
                _ => {}
            }
        }

        // 3. Queues, reply first: an event that failed there is not sent on to the tag queue, so its
        //    redelivery enqueues it to both without a double on either.
        for (queue, wanted) in [
            (&self.reply_queue, (|i: &Item| i.to_reply_queue) as fn(&Item) -> bool),
            (&self.tag_queue, |i: &Item| i.to_tag_queue),
        ] {
            let picked: Vec<usize> = (0..claimed.len()).filter(|&i| ok[i] && wanted(&claimed[i])).collect();
            if picked.is_empty() {
                continue;
            }
            let messages: Vec<OutgoingMessage> = picked
                .iter()
                .map(|&i| OutgoingMessage {
                    group_id: &claimed[i].group_id,
                    dedupe_id: &claimed[i].key,
                    body: &claimed[i].body,
                })
                .collect();
            let outcome = queue.send_all(&messages).await;
            for f in outcome.failed {
                ok[picked[f]] = false;
            }
            if let Some(e) = outcome.error {
                report.error(e);
            }
        }

        // 4. Settle each claim.
        let settled = join_all(claimed.iter().zip(&ok).map(|(item, &ok)| async move {
            if ok {
                self.idempotency.complete(&item.key, now).await
            } else {
                self.idempotency.release(&item.key).await
            }
        }))
        .await;
        for (&ok, result) in ok.iter().zip(settled) {
            if ok {
                // Enqueued even if marking it completed failed: the in-progress record then expires,
                // and the queue's own deduplication covers a redelivery within its window.
                report.enqueued += 1;
            } else {
                report.failed += 1;
            }
            if let Err(e) = result {
                report.error(BackendError::to_string(&e));
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryFriends, MemoryIdempotency, MemoryQueue};
    use serde_json::json;
    use std::sync::atomic::{AtomicI64, Ordering};

    struct FixedClock(AtomicI64);
    impl Clock for FixedClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    struct World {
        ingestor: Ingestor,
        idempotency: Arc<MemoryIdempotency>,
        friends: Arc<MemoryFriends>,
        reply: Arc<MemoryQueue>,
        tag: Arc<MemoryQueue>,
    }

    fn world() -> World {
        let idempotency = Arc::new(MemoryIdempotency::new(30_000));
        let friends = Arc::new(MemoryFriends::default());
        let reply = Arc::new(MemoryQueue::default());
        let tag = Arc::new(MemoryQueue::default());
        let ingestor = Ingestor {
            idempotency: idempotency.clone(),
            friends: friends.clone(),
            reply_queue: reply.clone(),
            tag_queue: tag.clone(),
            clock: Arc::new(FixedClock(AtomicI64::new(1_000_000))),
        };
        World { ingestor, idempotency, friends, reply, tag }
    }

    fn body(events: serde_json::Value) -> WebhookBody {
        WebhookBody::parse(json!({"destination": "Ubot", "events": events}).to_string().as_bytes()).unwrap()
    }

    fn text(id: &str, user: &str) -> serde_json::Value {
        json!({"type": "message", "webhookEventId": id, "timestamp": 1, "replyToken": "rt", "mode": "active",
               "source": {"type": "user", "userId": user}, "message": {"id": "m", "type": "text", "text": "hi"}})
    }

    fn follow_change(id: &str, kind: &str, ts: i64) -> serde_json::Value {
        json!({"type": kind, "webhookEventId": id, "timestamp": ts, "source": {"type": "user", "userId": "U1"}})
    }

    #[tokio::test]
    async fn routes_reply_token_events_to_both_queues_and_the_rest_to_tags() {
        let w = world();
        let items = line_items(body(json!([text("e1", "U1"), follow_change("e2", "unfollow", 5)])), 7);
        assert_eq!(items[0].group_id, "U1");
        let report = w.ingestor.ingest(items).await;
        assert_eq!((report.enqueued, report.failed), (2, 0));
        assert_eq!(w.reply.len(), 1, "unfollow has no reply token: not on the reply queue");
        assert_eq!(w.tag.len(), 2);
        let queued: QueuedEvent = serde_json::from_str(&w.reply.messages.lock().unwrap()[0].body).unwrap();
        assert_eq!(queued.dedupe_key(), "e1");
    }

    #[tokio::test]
    async fn repeats_are_duplicates_inside_and_across_requests() {
        let w = world();
        let r = w.ingestor.ingest(line_items(body(json!([text("e1", "U1"), text("e1", "U1")])), 0)).await;
        assert_eq!((r.enqueued, r.duplicates), (1, 1));
        let r = w.ingestor.ingest(line_items(body(json!([text("e1", "U1")])), 0)).await;
        assert_eq!((r.enqueued, r.duplicates, r.needs_redelivery()), (0, 1, false));
        assert_eq!((w.reply.len(), w.tag.len()), (1, 1));
    }

    #[tokio::test]
    async fn queue_failure_releases_the_claim_for_the_redelivery() {
        let w = world();
        w.tag.set_unavailable(true);
        let r = w.ingestor.ingest(line_items(body(json!([text("e1", "U1")])), 0)).await;
        assert!(r.needs_redelivery());
        assert_eq!(r.failed, 1);
        w.tag.set_unavailable(false);
        let r = w.ingestor.ingest(line_items(body(json!([text("e1", "U1")])), 0)).await;
        assert_eq!((r.enqueued, r.failed), (1, 0));
        assert_eq!((w.reply.len(), w.tag.len()), (1, 1), "reply queue deduplicates the second send");
    }

    #[tokio::test]
    async fn an_in_progress_twin_asks_for_redelivery() {
        let w = world();
        assert_eq!(w.idempotency.claim("e1", 1_000_000).await.unwrap(), Claim::Claimed);
        let r = w.ingestor.ingest(line_items(body(json!([text("e1", "U1")])), 0)).await;
        assert_eq!(r.in_progress, 1);
        assert!(r.needs_redelivery());
        assert!(w.tag.is_empty());
    }

    #[tokio::test]
    async fn older_unfollow_does_not_undo_a_newer_follow() {
        let w = world();
        w.ingestor.ingest(line_items(body(json!([follow_change("f", "follow", 200)])), 0)).await;
        let r = w.ingestor.ingest(line_items(body(json!([follow_change("u", "unfollow", 100)])), 0)).await;
        assert_eq!(r.stale_friend_updates, 1);
        let row = w.friends.rows.lock().unwrap()["U1"].clone();
        assert!(row.following);
        assert_eq!(row.last_changed_at, 200);
    }

    #[tokio::test]
    async fn shop_events_go_to_the_tag_queue_only() {
        let w = world();
        let events = ShopEvent::parse_body(
            br#"{"eventId":"o1","type":"purchase","userId":"U0123456789abcdef0123456789abcdef","occurredAt":1}"#,
        )
        .unwrap();
        let r = w.ingestor.ingest(shop_items(events, 0)).await;
        assert_eq!(r.enqueued, 1);
        assert_eq!((w.reply.len(), w.tag.len()), (0, 1));
        assert_eq!(w.tag.messages.lock().unwrap()[0].dedupe_id, "shop:o1");
    }
}
