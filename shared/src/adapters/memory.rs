//! In-memory adapters for unit tests and benchmarks of pure logic. Same semantics as the
//! DynamoDB/SQS ones, minus the network.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{
    BackendError, BatchOutcome, Claim, FriendChange, FriendStore, FriendUpdate, IdempotencyStore, MessageQueue,
    OutgoingMessage,
};

#[derive(Debug, Clone, PartialEq)]
enum Record {
    InProgress { until_ms: i64 },
    Completed,
}

#[derive(Default)]
pub struct MemoryIdempotency {
    records: Mutex<HashMap<String, Record>>,
    pub in_progress_ms: i64,
}

impl MemoryIdempotency {
    pub fn new(in_progress_ms: i64) -> Self {
        Self { records: Mutex::default(), in_progress_ms }
    }
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotency {
    async fn claim(&self, key: &str, now_ms: i64) -> Result<Claim, BackendError> {
        let mut records = self.records.lock().unwrap();
        match records.get(key) {
            Some(Record::Completed) => Ok(Claim::AlreadyCompleted),
            Some(Record::InProgress { until_ms }) if *until_ms >= now_ms => Ok(Claim::InProgress),
            _ => {
                records.insert(key.into(), Record::InProgress { until_ms: now_ms + self.in_progress_ms });
                Ok(Claim::Claimed)
            }
        }
    }
    async fn complete(&self, key: &str, _now_ms: i64) -> Result<(), BackendError> {
        self.records.lock().unwrap().insert(key.into(), Record::Completed);
        Ok(())
    }
    async fn release(&self, key: &str) -> Result<(), BackendError> {
        let mut records = self.records.lock().unwrap();
        if matches!(records.get(key), Some(Record::InProgress { .. })) {
            records.remove(key);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FriendRow {
    pub following: bool,
    pub last_changed_at: i64,
    pub first_followed_at: Option<i64>,
}

#[derive(Default)]
pub struct MemoryFriends {
    pub rows: Mutex<HashMap<String, FriendRow>>,
}

#[async_trait]
impl FriendStore for MemoryFriends {
    async fn record(&self, user: &str, change: FriendChange, at: i64, _now: i64) -> Result<FriendUpdate, BackendError> {
        let mut rows = self.rows.lock().unwrap();
        let row = rows.entry(user.into()).or_insert(FriendRow {
            following: false,
            last_changed_at: i64::MIN,
            first_followed_at: None,
        });
        if let FriendChange::Followed { .. } = change {
            row.first_followed_at = Some(row.first_followed_at.map_or(at, |f| f.min(at)));
        }
        if row.last_changed_at >= at {
            return Ok(FriendUpdate::Stale);
        }
        row.following = matches!(change, FriendChange::Followed { .. });
        row.last_changed_at = at;
        Ok(FriendUpdate::Applied)
    }
}

/// A message as the in-memory queue keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub group_id: String,
    pub dedupe_id: String,
    pub body: String,
}

/// A queue that keeps what it was sent (deduplicating like FIFO) and can be switched off.
#[derive(Default)]
pub struct MemoryQueue {
    pub messages: Mutex<Vec<StoredMessage>>,
    pub unavailable: AtomicBool,
}

impl MemoryQueue {
    pub fn set_unavailable(&self, down: bool) {
        self.unavailable.store(down, Ordering::SeqCst);
    }
    pub fn len(&self) -> usize {
        self.messages.lock().unwrap().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl MessageQueue for MemoryQueue {
    async fn send_all(&self, messages: &[OutgoingMessage<'_>]) -> BatchOutcome {
        if self.unavailable.load(Ordering::SeqCst) {
            return BatchOutcome { failed: (0..messages.len()).collect(), error: Some("queue unavailable".into()) };
        }
        let mut stored = self.messages.lock().unwrap();
        for m in messages {
            if !stored.iter().any(|s| s.dedupe_id == m.dedupe_id) {
                stored.push(StoredMessage {
                    group_id: m.group_id.to_string(),
                    dedupe_id: m.dedupe_id.to_string(),
                    body: m.body.to_string(),
                });
            }
        }
        BatchOutcome::default()
    }
}
