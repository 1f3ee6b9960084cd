//! Ingestion: turn verified webhook or shop events into queue messages, each exactly once, within
//! one deadline for the whole request.
//!
//! For every event: claim its dedupe key (a duplicate or an in-progress twin is not processed
//! again), record follow/unfollow state, send it to the queues whose consumers can use it, then
//! settle the claim: **completed** when every queue it needs has it; **partial** when some do (the
//! claim remembers which, so LINE's redelivery sends only what is missing and nothing relies on
//! SQS's 5-minute deduplication); **released** when none does.
//!
//! Order: each queue is FIFO per friend (message group). Once one of a friend's events could not
//! go on a queue (its claim failed or is still held by a twin, its follow record failed, SQS
//! refused it, the deadline passed), none of the friend's later events in the request goes on
//! that queue either: the redelivery sends them, in order, after it.
//!
//! Deadline: LINE waits 2 s. The work before settling has until [`SETTLE_RESERVE`] before the
//! request's deadline: claims may take the first 40 % of it, follow records until 60 %, sends the
//! rest (each normally takes milliseconds; the shares only matter when a store is slow, and then
//! the other friends' events still go out). Settling the claims gets the reserve. What is cut off
//! counts as not sent.
//!
//! Routing: the reply queue gets only events that carry a `replyToken` (nothing else can ever be
//! answered: no token in standby, none on unfollow/leave/unsend/...); the tag queue gets every event,
//! since tags may come from anything a friend does, including event types added later.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::time::{timeout_at, Instant};

use crate::adapters::sqs::sqs_safe_json;
use crate::envelope::QueuedEvent;
use crate::line::webhook::{is_user_id, Event, EventKind, Follow, WebhookBody};
use crate::ports::{
    Claim, Clock, FriendChange, FriendStore, FriendUpdate, IdempotencyStore, MessageQueue, OutgoingMessage, QueueName,
    Queues,
};
use crate::shop::ShopEvent;

/// The part of a request's time kept for settling claims after the last send.
pub const SETTLE_RESERVE: Duration = Duration::from_millis(300);

/// The message group of events that belong to no LINE chat (channel-level events, malformed ones).
pub const NO_CHAT_GROUP: &str = "nochat";

/// The largest queue message: an event whose message would be larger cannot be queued at all (no
/// LINE event comes near it: a text is at most 5,000 characters). It is dropped, not retried.
pub const MAX_QUEUE_BODY: usize = 256 * 1024;

/// One event, ready to ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Dedupe key: the idempotency record's id and the SQS MessageDeduplicationId.
    pub key: String,
    /// SQS MessageGroupId: the friend, else the group or room, so each chat stays in order.
    pub group_id: String,
    /// The serialised [`QueuedEvent`].
    pub body: String,
    /// The queues it goes to.
    pub queues: Queues,
    /// `(user id, change, event time)` for follow and unfollow events.
    pub friend_change: Option<(String, FriendChange, i64)>,
    /// Why the event is not in LINE's shape, when it is not (kept raw and forwarded all the same).
    pub malformed: Option<String>,
}

/// Serialised for a queue: JSON that SQS takes.
fn queue_body(queued: &QueuedEvent) -> String {
    sqs_safe_json(queued.to_json())
}

/// Items for a parsed LINE webhook body, in the order LINE sent them.
pub fn line_items(body: WebhookBody, received_at: i64) -> Vec<Item> {
    let destination = body.destination;
    body.events.into_iter().map(|event| line_item(event, destination.as_deref(), received_at)).collect()
}

/// The follow state an event changes: (user, change, event time). 1:1 chats only: groups and
/// rooms have join/leave instead.
pub fn friend_change(event: &Event) -> Option<(String, FriendChange, i64)> {
    if !event.is_one_to_one() {
        return None;
    }
    match (&event.kind, event.user_id()) {
        (EventKind::Follow { follow }, Some(user)) => Some((
            user.to_string(),
            FriendChange::Followed { is_unblocked: matches!(follow, Some(Follow { is_unblocked: true })) },
            event.common.timestamp,
        )),
        (EventKind::Unfollow, Some(user)) => Some((user.to_string(), FriendChange::Unfollowed, event.common.timestamp)),
        _ => None,
    }
}

fn line_item(event: Event, destination: Option<&str>, received_at: i64) -> Item {
    let key = event.dedupe_key();
    // A LINE chat ID, else the bot (the destination), else one group for events of no chat.
    let group_id = event.chat_id().or(destination.filter(|d| is_user_id(d))).unwrap_or(NO_CHAT_GROUP).to_string();
    let friend_change = friend_change(&event);
    let mut malformed = event.malformed().map(str::to_string);
    let reply = malformed.is_none() && event.common.reply_token.as_deref().is_some_and(|t| !t.is_empty());
    let queued = QueuedEvent::Line {
        dedupe_key: key.clone(),
        destination: destination.map(str::to_string),
        received_at,
        event: Box::new(event),
    };
    let body = queue_body(&queued);
    let mut queues = Queues { reply, tag: true };
    if body.len() > MAX_QUEUE_BODY {
        malformed = Some(format!("the event is larger than a queue message ({} KiB): dropped", MAX_QUEUE_BODY / 1024));
        queues = Queues::NONE;
    }
    Item { key, group_id, body, queues, friend_change: friend_change.filter(|_| !queues.is_empty()), malformed }
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
                body: queue_body(&queued),
                queues: Queues { reply: false, tag: true },
                friend_change: None,
                malformed: None,
            }
        })
        .collect()
}

/// What one ingestion did, for the response status and the request's log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub received: usize,
    /// On every queue it needs now (newly, or completing an earlier partial delivery).
    pub enqueued: usize,
    /// Seen before (completed), or repeated inside this request.
    pub duplicates: usize,
    /// Another delivery of the same event is being processed now.
    pub in_progress: usize,
    /// Not on every queue it needs: left partial or released for the redelivery.
    pub failed: usize,
    /// Of `failed`: on some of its queues already (the claim remembers which).
    pub partial: usize,
    /// Follow/unfollow events older than the friend's recorded state.
    pub stale_friend_updates: usize,
    /// Kept raw: not in LINE's shape (consumers skip them).
    pub malformed: usize,
    /// Of `malformed`: too large for a queue message, so on no queue (logged, never retried).
    pub dropped: usize,
    /// Whether the request's deadline cut something off.
    pub deadline_hit: bool,
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

/// Holds back, on each queue `item` goes to, the later events of its friend.
fn stop(item: &Item, reply: &mut HashSet<String>, tag: &mut HashSet<String>) {
    for (name, stopped) in [(QueueName::Reply, reply), (QueueName::Tag, tag)] {
        if item.queues.has(name) {
            stopped.insert(item.group_id.clone());
        }
    }
}

/// Where one claimed event stands.
struct Claimed {
    item: Item,
    /// Queues that have it (from an earlier delivery, then from this one).
    sent: Queues,
    /// Something before the sends failed (its follow record): it may go on no queue now.
    blocked: bool,
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
    /// Ingests `items` by `deadline` (the request's: its arrival plus the time LINE allows, less a
    /// margin). Never later: what is not done by then is left for the redelivery.
    pub async fn ingest(&self, items: Vec<Item>, deadline: Instant) -> Report {
        let now = self.clock.now_ms();
        let start = Instant::now();
        let work_until = deadline.checked_sub(SETTLE_RESERVE).unwrap_or(deadline).max(start);
        let share = |percent: u32| start + work_until.saturating_duration_since(start) * percent / 100;
        let (claims_until, records_until) = (share(40), share(60));
        let mut report = Report { received: items.len(), ..Report::default() };

        // 1. Claim each distinct key once. A claim that failed or ran out of time holds back the
        //    later events of its friend: their order matters.
        let mut seen = HashSet::new();
        let items: Vec<Item> = items.into_iter().filter(|i| seen.insert(i.key.clone())).collect();
        report.malformed = items.iter().filter(|i| i.malformed.is_some()).count();
        report.duplicates += report.received - items.len();
        let claims =
            join_all(items.iter().map(|i| timeout_at(claims_until, self.idempotency.claim(&i.key, now)))).await;
        let mut claimed: Vec<Claimed> = Vec::with_capacity(items.len());
        // Per queue, the friends whose later events must wait.
        let mut stopped_reply: HashSet<String> = HashSet::new();
        let mut stopped_tag: HashSet<String> = HashSet::new();
        for (item, claim) in items.into_iter().zip(claims) {
            let unsure = match claim {
                Ok(Ok(Claim::Claimed { sent })) => {
                    claimed.push(Claimed { item, sent, blocked: false });
                    continue;
                }
                Ok(Ok(Claim::AlreadyCompleted)) => {
                    report.duplicates += 1;
                    continue;
                }
                Ok(Ok(Claim::InProgress)) => {
                    // Its twin may still send it: the friend's later events must not overtake it.
                    report.in_progress += 1;
                    stop(&item, &mut stopped_reply, &mut stopped_tag);
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => {
                    report.deadline_hit = true;
                    "claim: the request's deadline passed".to_string()
                }
            };
            report.failed += 1;
            report.error(unsure);
            stop(&item, &mut stopped_reply, &mut stopped_tag);
        }

        // 2. Follow/block state (conditional on event time, so order and repeats do not matter).
        //    An event an earlier delivery already put on a queue had its state recorded then.
        let updates = join_all(claimed.iter().map(|c| async move {
            match &c.item.friend_change {
                Some((user, change, at)) if c.sent.is_empty() => {
                    Some(timeout_at(records_until, self.friends.record(user, *change, *at, now)).await)
                }
                _ => None,
            }
        }))
        .await;
        for (c, update) in claimed.iter_mut().zip(updates) {
            match update {
                Some(Ok(Ok(FriendUpdate::Stale))) => report.stale_friend_updates += 1,
                Some(Ok(Ok(FriendUpdate::Applied))) | None => {}
                Some(Ok(Err(e))) => {
                    c.blocked = true;
                    report.error(e);
                }
                Some(Err(_)) => {
                    c.blocked = true;
                    report.deadline_hit = true;
                    report.error("follow state: the request's deadline passed");
                }
            }
        }

        // 3. The queues, each in order per friend.
        for (queue, name, stopped) in [
            (&self.reply_queue, QueueName::Reply, &mut stopped_reply),
            (&self.tag_queue, QueueName::Tag, &mut stopped_tag),
        ] {
            let mut picked: Vec<usize> = Vec::new();
            for (i, c) in claimed.iter().enumerate() {
                if !c.item.queues.has(name) || c.sent.has(name) {
                    continue;
                }
                if c.blocked || stopped.contains(&c.item.group_id) {
                    stopped.insert(c.item.group_id.clone());
                } else {
                    picked.push(i);
                }
            }
            if picked.is_empty() {
                continue;
            }
            let messages: Vec<OutgoingMessage> = picked
                .iter()
                .filter_map(|&i| claimed.get(i))
                .map(|c| OutgoingMessage { group_id: &c.item.group_id, dedupe_id: &c.item.key, body: &c.item.body })
                .collect();
            let outcome = queue.send_all(&messages, work_until).await;
            let failed: HashSet<usize> = outcome.failed.iter().filter_map(|&f| picked.get(f).copied()).collect();
            for &i in picked.iter().filter(|i| !failed.contains(i)) {
                if let Some(c) = claimed.get_mut(i) {
                    c.sent.add(name);
                }
            }
            report.deadline_hit |= outcome.deadline_passed;
            if let Some(e) = outcome.error {
                report.error(e);
            }
        }

        // 4. Settle each claim, by the request's deadline.
        let settled = join_all(claimed.iter().map(|c| async move {
            let settle = async {
                if c.sent.covers(c.item.queues) {
                    self.idempotency.complete(&c.item.key, now).await
                } else if !c.sent.is_empty() {
                    self.idempotency.partial(&c.item.key, c.sent, now).await
                } else {
                    self.idempotency.release(&c.item.key).await
                }
            };
            timeout_at(deadline, settle).await
        }))
        .await;
        for (c, result) in claimed.iter().zip(settled) {
            if c.item.queues.is_empty() {
                // Dropped: on no queue, and its claim completed.
                report.dropped += 1;
            } else if c.sent.covers(c.item.queues) {
                // Enqueued even if marking it completed failed: the in-progress record then expires,
                // and a redelivery's copy is caught by the consumers' own idempotency records.
                report.enqueued += 1;
            } else {
                report.failed += 1;
                if !c.sent.is_empty() {
                    report.partial += 1;
                }
            }
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => report.error(e),
                Err(_) => {
                    report.deadline_hit = true;
                    report.error("settling a claim: the request's deadline passed");
                }
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::ingest::{MemoryFriends, MemoryIdempotency, MemoryQueue, SlowFriends};
    use serde_json::json;
    use std::sync::atomic::{AtomicI64, Ordering};

    const U1: &str = "U0123456789abcdef0123456789abcdef";
    const U2: &str = "U00000000000000000000000000000002";

    struct FixedClock(AtomicI64);
    impl Clock for FixedClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    struct World {
        ingestor: Ingestor,
        idempotency: Arc<MemoryIdempotency>,
        friends: Arc<SlowFriends>,
        rows: Arc<MemoryFriends>,
        reply: Arc<MemoryQueue>,
        tag: Arc<MemoryQueue>,
    }

    fn world() -> World {
        let idempotency = Arc::new(MemoryIdempotency::new(30_000));
        let rows = Arc::new(MemoryFriends::default());
        let friends = Arc::new(SlowFriends::new(rows.clone(), Duration::ZERO));
        let reply = Arc::new(MemoryQueue::default());
        let tag = Arc::new(MemoryQueue::default());
        let ingestor = Ingestor {
            idempotency: idempotency.clone(),
            friends: friends.clone(),
            reply_queue: reply.clone(),
            tag_queue: tag.clone(),
            clock: Arc::new(FixedClock(AtomicI64::new(1_000_000))),
        };
        World { ingestor, idempotency, friends, rows, reply, tag }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(1500)
    }

    fn body(events: serde_json::Value) -> WebhookBody<'static> {
        WebhookBody::parse(json!({"destination": "Ubot", "events": events}).to_string().as_bytes())
            .unwrap()
            .into_owned()
    }

    fn text(id: &str, user: &str) -> serde_json::Value {
        json!({"type": "message", "webhookEventId": id, "timestamp": 1, "replyToken": "rt", "mode": "active",
               "source": {"type": "user", "userId": user}, "message": {"id": "m", "type": "text", "text": "hi"}})
    }

    fn follow_change(id: &str, kind: &str, ts: i64) -> serde_json::Value {
        json!({"type": kind, "webhookEventId": id, "timestamp": ts, "source": {"type": "user", "userId": U1}})
    }

    #[tokio::test]
    async fn routes_reply_token_events_to_both_queues_and_the_rest_to_tags() {
        let w = world();
        let items = line_items(body(json!([text("e1", U1), follow_change("e2", "unfollow", 5)])), 7);
        assert_eq!(items[0].group_id, U1);
        let report = w.ingestor.ingest(items, soon()).await;
        assert_eq!((report.enqueued, report.failed), (2, 0));
        assert_eq!(w.reply.len(), 1, "unfollow has no reply token: not on the reply queue");
        assert_eq!(w.tag.len(), 2);
        let text = w.reply.messages.lock().unwrap()[0].body.clone();
        let queued: QueuedEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(queued.dedupe_key(), "e1");
    }

    #[tokio::test]
    async fn repeats_are_duplicates_inside_and_across_requests() {
        let w = world();
        let r = w.ingestor.ingest(line_items(body(json!([text("e1", U1), text("e1", U1)])), 0), soon()).await;
        assert_eq!((r.enqueued, r.duplicates), (1, 1));
        let r = w.ingestor.ingest(line_items(body(json!([text("e1", U1)])), 0), soon()).await;
        assert_eq!((r.enqueued, r.duplicates, r.needs_redelivery()), (0, 1, false));
        assert_eq!((w.reply.len(), w.tag.len()), (1, 1));
    }

    #[tokio::test]
    async fn a_half_sent_event_is_left_partial_and_the_redelivery_sends_only_what_is_missing() {
        let w = world();
        w.tag.set_unavailable(true);
        let r = w.ingestor.ingest(line_items(body(json!([text("e1", U1)])), 0), soon()).await;
        assert!(r.needs_redelivery());
        assert_eq!((r.failed, r.partial), (1, 1));
        assert_eq!((w.reply.len(), w.tag.len()), (1, 0), "the reply queue has it");
        w.tag.set_unavailable(false);
        let r = w.ingestor.ingest(line_items(body(json!([text("e1", U1)])), 0), soon()).await;
        assert_eq!((r.enqueued, r.failed), (1, 0));
        // The in-memory queue keeps every message it is sent: a second send would show here.
        assert_eq!((w.reply.len(), w.tag.len()), (1, 1), "the redelivery sent only the tag-queue message");
        let r = w.ingestor.ingest(line_items(body(json!([text("e1", U1)])), 0), soon()).await;
        assert_eq!((r.duplicates, r.enqueued), (1, 0));
    }

    #[tokio::test]
    async fn nothing_sent_releases_the_claim_for_the_redelivery() {
        let w = world();
        w.reply.set_unavailable(true);
        w.tag.set_unavailable(true);
        let r = w.ingestor.ingest(line_items(body(json!([text("e1", U1)])), 0), soon()).await;
        assert_eq!((r.failed, r.partial), (1, 0));
        w.reply.set_unavailable(false);
        w.tag.set_unavailable(false);
        let r = w.ingestor.ingest(line_items(body(json!([text("e1", U1)])), 0), soon()).await;
        assert_eq!(r.enqueued, 1);
        assert_eq!((w.reply.len(), w.tag.len()), (1, 1));
    }

    #[tokio::test]
    async fn a_friend_s_later_events_wait_behind_one_that_failed() {
        let w = world();
        // SQS refuses U1's first message on the tag queue; U1's second must not overtake it.
        let events = json!([text("a1", U1), text("b1", U2), text("a2", U1)]);
        w.tag.refuse_group(U1, true);
        let r = w.ingestor.ingest(line_items(body(events.clone()), 0), soon()).await;
        assert_eq!((r.enqueued, r.partial), (1, 2), "{r:?}");
        assert_eq!(w.tag.dedupe_ids(), ["b1"]);
        assert_eq!(w.reply.dedupe_ids(), ["a1", "b1", "a2"]);
        w.tag.refuse_group(U1, false);
        let r = w.ingestor.ingest(line_items(body(events), 0), soon()).await;
        assert_eq!((r.enqueued, r.duplicates), (2, 1));
        assert_eq!(w.tag.dedupe_ids(), ["b1", "a1", "a2"], "in order, each once");
        assert_eq!(w.reply.dedupe_ids(), ["a1", "b1", "a2"], "nothing sent twice");
    }

    #[tokio::test]
    async fn a_slow_store_gets_an_answer_by_the_deadline_and_the_redelivery_completes_the_rest() {
        let w = world();
        w.friends.set_delay(Duration::from_secs(5));
        let events = json!([follow_change("f1", "follow", 10), text("b1", U2)]);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(1500);
        let r = w.ingestor.ingest(line_items(body(events.clone()), 0), deadline).await;
        // (Real time: the runtime's timer and a busy machine may add a few milliseconds.)
        let late = Instant::now().saturating_duration_since(deadline);
        assert!(late <= Duration::from_millis(100), "answered {:?} after the start", started.elapsed());
        assert!(r.deadline_hit && r.needs_redelivery(), "{r:?}");
        assert_eq!((r.enqueued, r.failed), (1, 1), "the other friend's event went through");
        assert!(w.tag.dedupe_ids() == ["b1"]);
        w.friends.set_delay(Duration::ZERO);
        let r = w.ingestor.ingest(line_items(body(events), 0), Instant::now() + Duration::from_millis(1500)).await;
        assert_eq!((r.enqueued, r.duplicates, r.failed), (1, 1, 0));
        assert_eq!(w.tag.dedupe_ids(), ["b1", "f1"]);
        assert!(w.rows.rows.lock().unwrap()[U1].following);
    }

    #[tokio::test]
    async fn a_friend_s_later_events_wait_behind_one_still_in_progress() {
        let w = world();
        // a1's claim is held (a twin delivery, or one cut off by a deadline after it committed).
        assert_eq!(w.idempotency.claim("a1", 1_000_000).await.unwrap(), Claim::Claimed { sent: Queues::NONE });
        let events = json!([text("a1", U1), text("a2", U1), text("b1", U2)]);
        let r = w.ingestor.ingest(line_items(body(events), 0), soon()).await;
        assert_eq!((r.in_progress, r.enqueued, r.failed), (1, 1, 1), "{r:?}");
        assert_eq!(w.tag.dedupe_ids(), ["b1"], "a2 must not overtake a1");
        assert_eq!(w.reply.dedupe_ids(), ["b1"]);
    }

    #[tokio::test]
    async fn an_in_progress_twin_asks_for_redelivery() {
        let w = world();
        assert_eq!(w.idempotency.claim("e1", 1_000_000).await.unwrap(), Claim::Claimed { sent: Queues::NONE });
        let r = w.ingestor.ingest(line_items(body(json!([text("e1", U1)])), 0), soon()).await;
        assert_eq!(r.in_progress, 1);
        assert!(r.needs_redelivery());
        assert!(w.tag.is_empty());
    }

    #[tokio::test]
    async fn older_unfollow_does_not_undo_a_newer_follow() {
        let w = world();
        w.ingestor.ingest(line_items(body(json!([follow_change("f", "follow", 200)])), 0), soon()).await;
        let r = w.ingestor.ingest(line_items(body(json!([follow_change("u", "unfollow", 100)])), 0), soon()).await;
        assert_eq!(r.stale_friend_updates, 1);
        let row = w.rows.rows.lock().unwrap()[U1].clone();
        assert!(row.following);
        assert_eq!(row.last_changed_at, 200);
    }

    #[tokio::test]
    async fn events_without_a_usable_chat_get_a_stable_group_and_bad_ids_are_never_keys() {
        let w = world();
        let no_source = json!({"type": "message", "webhookEventId": "n1", "timestamp": 1,
            "message": {"id": "m", "type": "text", "text": "hi"}});
        let long_user = json!({"type": "follow", "webhookEventId": "n2", "timestamp": 1,
            "source": {"type": "user", "userId": "U".repeat(3000)}});
        let text = json!({"events": [no_source, long_user]}).to_string();
        let body = WebhookBody::parse(text.as_bytes()).unwrap();
        let items = line_items(body, 0);
        assert!(
            items.iter().all(|i| i.group_id == NO_CHAT_GROUP),
            "{:?}",
            items.iter().map(|i| &i.group_id).collect::<Vec<_>>()
        );
        assert!(items[1].friend_change.is_none() && items[1].malformed.is_some());
        let r = w.ingestor.ingest(items, soon()).await;
        assert_eq!((r.enqueued, r.failed, r.malformed), (2, 0, 1));
        assert!(w.rows.rows.lock().unwrap().is_empty(), "no friend keyed by a bad ID");
    }

    #[tokio::test]
    async fn an_event_too_large_for_a_queue_is_dropped_once_not_retried_for_ever() {
        let w = world();
        let mut huge = text("big", U1);
        huge["message"]["text"] = json!("x".repeat(300 * 1024));
        let body = body(json!([huge, text("small", U2)]));
        let items = line_items(body.clone(), 0);
        assert!(items[0].queues.is_empty() && items[0].malformed.as_deref().is_some_and(|m| m.contains("larger")));
        let r = w.ingestor.ingest(items, soon()).await;
        assert_eq!((r.enqueued, r.dropped, r.failed, r.needs_redelivery()), (1, 1, 0, false), "{r:?}");
        assert_eq!(w.tag.dedupe_ids(), ["small"]);
        let r = w.ingestor.ingest(line_items(body, 0), soon()).await;
        assert_eq!(r.duplicates, 2, "the redelivery is a duplicate, not a new try");
    }

    #[tokio::test]
    async fn shop_events_go_to_the_tag_queue_only() {
        let w = world();
        let events = ShopEvent::parse_body(
            br#"{"eventId":"o1","type":"purchase","userId":"U0123456789abcdef0123456789abcdef","occurredAt":1000000}"#,
            1_000_000,
        )
        .unwrap();
        let r = w.ingestor.ingest(shop_items(events, 0), soon()).await;
        assert_eq!(r.enqueued, 1);
        assert_eq!((w.reply.len(), w.tag.len()), (0, 1));
        assert_eq!(w.tag.messages.lock().unwrap()[0].dedupe_id, "shop:o1");
    }
}
