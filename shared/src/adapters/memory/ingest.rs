//! Ingestion's ports in memory (idempotency records, follow state, the FIFO queues): the same
//! semantics as the DynamoDB and SQS adapters, minus the network.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::adapters::sqs::{is_valid_sqs_body, is_valid_sqs_id};
use crate::ports::{
    BackendError, BatchOutcome, Claim, FriendChange, FriendStore, FriendUpdate, IdempotencyStore, MessageQueue,
    OutgoingMessage, Queues,
};

#[derive(Debug, Clone, PartialEq)]
enum Record {
    InProgress { until_ms: i64 },
    Partial { sent: Queues },
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
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let sent = match records.get(key) {
            Some(Record::Completed) => return Ok(Claim::AlreadyCompleted),
            Some(Record::InProgress { until_ms }) if *until_ms >= now_ms => return Ok(Claim::InProgress),
            // Only a partial record says what was sent; a crashed claim's delivery is sent in full.
            Some(Record::Partial { sent }) => *sent,
            Some(Record::InProgress { .. }) | None => Queues::NONE,
        };
        records.insert(key.into(), Record::InProgress { until_ms: now_ms + self.in_progress_ms });
        Ok(Claim::Claimed { sent })
    }
    async fn complete(&self, key: &str, _now_ms: i64) -> Result<(), BackendError> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).insert(key.into(), Record::Completed);
        Ok(())
    }
    async fn partial(&self, key: &str, sent: Queues, _now_ms: i64) -> Result<(), BackendError> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).insert(key.into(), Record::Partial { sent });
        Ok(())
    }
    async fn release(&self, key: &str) -> Result<(), BackendError> {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
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
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
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

/// A friend store in front of another that takes `delay_ms` for every record: a slow users table.
pub struct SlowFriends {
    pub inner: std::sync::Arc<dyn FriendStore>,
    pub delay_ms: std::sync::atomic::AtomicU64,
}

impl SlowFriends {
    pub fn new(inner: std::sync::Arc<dyn FriendStore>, delay: Duration) -> Self {
        SlowFriends { inner, delay_ms: std::sync::atomic::AtomicU64::new(delay.as_millis() as u64) }
    }
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

#[async_trait]
impl FriendStore for SlowFriends {
    async fn record(&self, user: &str, c: FriendChange, at: i64, now: i64) -> Result<FriendUpdate, BackendError> {
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
        self.inner.record(user, c, at, now).await
    }
}

/// A message as the in-memory queue keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub group_id: String,
    pub dedupe_id: String,
    pub body: String,
}

/// A queue that keeps every message it is sent, in order. It refuses what SQS refuses (IDs and
/// bodies outside SQS's rules), keeps per-group order like [`crate::adapters::sqs::SqsQueue`], and can be
/// switched off, made to refuse one group, or slowed down. It does not deduplicate: SQS only does
/// for five minutes, and nothing here may rely on that.
#[derive(Default)]
pub struct MemoryQueue {
    pub messages: Mutex<Vec<StoredMessage>>,
    pub unavailable: AtomicBool,
    /// Messages of these groups are refused (as SQS refuses single entries of a batch).
    pub refuse_groups: Mutex<HashSet<String>>,
    /// Each message takes this long to send (ms).
    pub delay_ms: AtomicUsize,
}

impl MemoryQueue {
    pub fn set_unavailable(&self, down: bool) {
        self.unavailable.store(down, Ordering::SeqCst);
    }
    pub fn refuse_group(&self, group: &str, refuse: bool) {
        let mut groups = self.refuse_groups.lock().unwrap_or_else(|p| p.into_inner());
        if refuse {
            groups.insert(group.to_string());
        } else {
            groups.remove(group);
        }
    }
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as usize, Ordering::SeqCst);
    }
    pub fn len(&self) -> usize {
        self.messages.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The dedupe ids sent, in order.
    pub fn dedupe_ids(&self) -> Vec<String> {
        self.messages.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|m| m.dedupe_id.clone()).collect()
    }
}

#[async_trait]
impl MessageQueue for MemoryQueue {
    async fn send_all(&self, messages: &[OutgoingMessage<'_>], deadline: Instant) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        let mut stopped: HashSet<&str> = HashSet::new();
        for (i, m) in messages.iter().enumerate() {
            let delay = Duration::from_millis(self.delay_ms.load(Ordering::SeqCst) as u64);
            if !delay.is_zero() && tokio::time::timeout_at(deadline, tokio::time::sleep(delay)).await.is_err() {
                outcome.failed.extend(i..messages.len());
                outcome.error.get_or_insert_with(|| "the request's deadline passed".into());
                outcome.deadline_passed = true;
                break;
            }
            let refused = if stopped.contains(m.group_id) {
                None
            } else if self.unavailable.load(Ordering::SeqCst) {
                Some("queue unavailable".to_string())
            } else if !is_valid_sqs_id(m.group_id) || !is_valid_sqs_id(m.dedupe_id) {
                Some(format!("InvalidParameterValue: bad MessageGroupId {:?} or MessageDeduplicationId", m.group_id))
            } else if !is_valid_sqs_body(m.body) {
                Some("InvalidMessageContents: the body has characters SQS refuses, or is too large".into())
            } else if self.refuse_groups.lock().unwrap_or_else(|p| p.into_inner()).contains(m.group_id) {
                Some("InternalError: refused".into())
            } else {
                self.messages.lock().unwrap_or_else(|p| p.into_inner()).push(StoredMessage {
                    group_id: m.group_id.to_string(),
                    dedupe_id: m.dedupe_id.to_string(),
                    body: m.body.to_string(),
                });
                continue;
            };
            stopped.insert(m.group_id);
            outcome.failed.push(i);
            if let Some(e) = refused {
                outcome.error.get_or_insert(e);
            }
        }
        outcome
    }
}
