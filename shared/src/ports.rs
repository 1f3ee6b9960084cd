//! The seams: small traits the pipeline is written against, with DynamoDB/SQS adapters for
//! production and in-memory ones for unit tests (see [`crate::adapters`]).

use async_trait::async_trait;

/// A storage or queue failure. Every one of them is worth a retry (LINE redelivers on 5xx).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("dynamodb {operation} failed: {message}")]
    Store { operation: &'static str, message: String },
    #[error("sqs {operation} failed: {message}")]
    Queue { operation: &'static str, message: String },
}

/// One of the two queues ingestion feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueName {
    Reply,
    Tag,
}

/// The queues an event goes to, as a set: which ones already have it, or which it still needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Queues {
    pub reply: bool,
    pub tag: bool,
}

impl Queues {
    pub const NONE: Queues = Queues { reply: false, tag: false };

    /// The names stored on a partial claim (`reply`, `tag`).
    pub fn names(self) -> Vec<&'static str> {
        [(self.reply, "reply"), (self.tag, "tag")].into_iter().filter(|(on, _)| *on).map(|(_, n)| n).collect()
    }

    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Queues {
        let mut q = Queues::NONE;
        for n in names {
            match n {
                "reply" => q.reply = true,
                "tag" => q.tag = true,
                _ => {}
            }
        }
        q
    }

    pub fn is_empty(self) -> bool {
        self == Queues::NONE
    }

    pub fn has(self, queue: QueueName) -> bool {
        match queue {
            QueueName::Reply => self.reply,
            QueueName::Tag => self.tag,
        }
    }

    pub fn add(&mut self, queue: QueueName) {
        match queue {
            QueueName::Reply => self.reply = true,
            QueueName::Tag => self.tag = true,
        }
    }

    /// Whether every queue of `wanted` is in `self`.
    pub fn covers(self, wanted: Queues) -> bool {
        (self.reply || !wanted.reply) && (self.tag || !wanted.tag)
    }
}

/// The result of trying to claim an event key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This caller owns the key now and must `complete`, `partial` or `release` it. `sent`: the
    /// queues an earlier, partly failed delivery already put the event on (see
    /// [`IdempotencyStore::partial`]); those must not get it again.
    Claimed { sent: Queues },
    /// The event was fully processed before: do nothing.
    AlreadyCompleted,
    /// Another delivery of the same event is being processed right now.
    InProgress,
}

/// Powertools-style idempotency records: one conditional write claims a key.
///
/// A claim may be taken when no record exists, the record expired, a partial record is left (see
/// [`Self::partial`]), or an in-progress record is older than the in-progress timeout (its owner
/// crashed). Expiry is checked in code, not left to TTL timing.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn claim(&self, key: &str, now_ms: i64) -> Result<Claim, BackendError>;
    /// Marks a claimed key done: later deliveries are duplicates until the record expires.
    async fn complete(&self, key: &str, now_ms: i64) -> Result<(), BackendError>;
    /// Leaves a claimed key for the redelivery, remembering the queues that already have the event
    /// (`sent`, everything sent so far), so the redelivery sends only what is missing instead of
    /// relying on the queues' own 5-minute deduplication. The next claim takes it at once.
    async fn partial(&self, key: &str, sent: Queues, now_ms: i64) -> Result<(), BackendError>;
    /// Gives a claimed key back (processing failed, nothing was sent), so the redelivery is processed.
    async fn release(&self, key: &str) -> Result<(), BackendError>;
}

/// A change in a friend's relationship with the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendChange {
    Followed { is_unblocked: bool },
    Unfollowed,
}

/// Whether a friend change took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendUpdate {
    Applied,
    /// A newer change was already recorded; this older one was ignored.
    Stale,
}

/// Follow/block state per friend. An older event never overwrites a newer state.
#[async_trait]
pub trait FriendStore: Send + Sync {
    async fn record(
        &self,
        user_id: &str,
        change: FriendChange,
        event_time_ms: i64,
        now_ms: i64,
    ) -> Result<FriendUpdate, BackendError>;
}

/// One message for a FIFO queue, borrowed from the item it carries (no copy per queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingMessage<'a> {
    /// MessageGroupId: messages of one group are delivered in order.
    pub group_id: &'a str,
    /// MessageDeduplicationId.
    pub dedupe_id: &'a str,
    pub body: &'a str,
}

/// What a batch send did: the indexes (into the slice given) that were not enqueued.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub failed: Vec<usize>,
    /// The first error seen, for the log.
    pub error: Option<String>,
    /// Sends were cut off by the deadline.
    pub deadline_passed: bool,
}

#[async_trait]
pub trait MessageQueue: Send + Sync {
    /// Enqueues `messages` and reports what was not enqueued. Order holds per message group: once
    /// one message of a group is not enqueued, none of the group's later messages is sent (they
    /// are reported failed too), so a retry can send them after it. Nothing is sent after
    /// `deadline`; a send cut off by it counts as failed.
    async fn send_all(&self, messages: &[OutgoingMessage<'_>], deadline: tokio::time::Instant) -> BatchOutcome;
}

/// A standard queue of work items: each `send` is one message, delivered at least once, after
/// `delay_secs` (at most 900, SQS's limit).
#[async_trait]
pub trait WorkQueue: Send + Sync {
    async fn send(&self, body: &str, delay_secs: u32) -> Result<(), BackendError>;
}

/// Wall-clock time, injectable for tests.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
    /// Microseconds, for what is timed finer than a millisecond (the send schedule).
    fn now_us(&self) -> i64 {
        self.now_ms() * 1000
    }
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        self.now_us().div_euclid(1000)
    }

    fn now_us(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
    }
}
