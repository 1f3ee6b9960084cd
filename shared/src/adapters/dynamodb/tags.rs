//! Tags in DynamoDB.
//!
//! Tags table, key `userId` + `tag`:
//! - a friend's tag: `{active, taggedAt, expiresAt?, source, changedAt, followedAt?, v, idx?, ttl?}`
//!   (times in ms, `ttl` in s for DynamoDB's TTL). `idx` = `<tag>#<shard>` only while the item is
//!   indexed ([`crate::tagging`]), which makes the `byTag` index (`idx`, `userId`) sparse: it holds
//!   exactly the live tags of following friends, sorted by user ID within each shard.
//! - per-tag counters: `userId` = `#counts#<shard>`, `tag` = `<tag>|<expiry hour or never>`,
//!   `{friends, ttl?}`, changed in the same transaction as the tags they count.
//!
//! Users table index `following` (`fshard`, `userId`): `fshard` is set only while the friend follows
//! (see [`super::ingest::DynamoFriends`]), so it lists every following friend, by shard.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnConsumedCapacity, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use futures::future::BoxFuture;

use super::attr::{int as num, n, s, text};
use super::ingest::KnownFriend;
use crate::adapters::sdk::describe;
use crate::ports::BackendError;
use crate::rules::tags::TagOp;
use crate::segment::resolve::{Member, MemberPage, ReadStats, SegmentIndex, Source};
use crate::tagging::{
    bucket_counts, count_deltas, friend_index_key, plan, shard_of, tag_index_key, transactions, FriendState, TagItem,
    TagWrite, SHARDS,
};

/// Name of the tag index on the tags table.
pub const TAG_INDEX: &str = "byTag";
/// Name of the following-friends index on the users table.
pub const FRIEND_INDEX: &str = "following";
/// Most actions DynamoDB takes in one transaction.
const MAX_TRANSACTION: usize = 100;
const COUNTS_PREFIX: &str = "#counts#";

fn err(operation: &'static str, message: String) -> BackendError {
    BackendError::Store { operation, message }
}

/// The friend as the users table has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FriendRow {
    /// The item has a follow state (following or blocked).
    pub known: bool,
    pub state: FriendState,
}

/// What became of an event's tag changes ([`DynamoTags::change`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Written,
    /// Nothing to write: already so, or overtaken by newer events.
    Unchanged,
    Duplicate,
    /// The friend's items kept changing under us: try later.
    Contended,
}

/// Plans tried against concurrent changes before [`Changed::Contended`].
const ATTEMPTS: usize = 3;

/// What became of a planned write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Written,
    /// The event's changes were applied before (its idempotency record exists): nothing written.
    Duplicate,
    /// Someone changed the friend's items since they were read: read, plan and try again.
    Conflict,
}

/// Called before each transaction of [`DynamoTags::apply`] with its number and writes: lets a test
/// step in between two transactions (a concurrent change, a crash). `None` in production.
pub type Failpoint = Arc<dyn Fn(usize, Vec<TagWrite>) -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Clone)]
pub struct DynamoTags {
    client: Client,
    tags_table: String,
    users_table: String,
    events_table: String,
    /// How long an idempotency record keeps a redelivered event out (s).
    idempotency_ttl_secs: i64,
    failpoint: Option<Failpoint>,
}

impl DynamoTags {
    pub fn new(
        client: Client,
        tags_table: impl Into<String>,
        users_table: impl Into<String>,
        events_table: impl Into<String>,
        idempotency_ttl_secs: i64,
    ) -> Self {
        DynamoTags {
            client,
            tags_table: tags_table.into(),
            users_table: users_table.into(),
            events_table: events_table.into(),
            idempotency_ttl_secs,
            failpoint: None,
        }
    }

    /// The same store with a [`Failpoint`] before each transaction.
    pub fn with_failpoint(mut self, failpoint: Failpoint) -> Self {
        self.failpoint = Some(failpoint);
        self
    }

    /// For reading only (segments, counts, a friend's tags): [`Self::apply`] needs the events table.
    pub fn reader(client: Client, tags_table: impl Into<String>, users_table: impl Into<String>) -> Self {
        Self::new(client, tags_table, users_table, String::new(), 0)
    }

    /// The friend's follow state and every tag item (tombstones included), strongly consistent.
    pub async fn read_friend(&self, user_id: &str) -> Result<(FriendRow, Vec<TagItem>), BackendError> {
        let row = self
            .client
            .get_item()
            .table_name(&self.users_table)
            .key("userId", s(user_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| err("GetItem", describe(&e)))?;
        let friend = match row.item() {
            Some(item) if text(item, "state").is_some() => FriendRow {
                known: true,
                state: FriendState {
                    blocked: text(item, "state") == Some("blocked"),
                    followed_at_ms: num(item, "firstFollowedAt"),
                },
            },
            _ => FriendRow::default(),
        };
        Ok((friend, self.tags_of(user_id).await?))
    }

    /// Every tag item of a friend, tombstones included.
    pub async fn tags_of(&self, user_id: &str) -> Result<Vec<TagItem>, BackendError> {
        Ok(self.partition(user_id).await?.iter().filter_map(tag_item).collect())
    }

    /// Every item under one key of the tags table (a friend, or a counter shard), strongly consistent.
    async fn partition(&self, key: &str) -> Result<Vec<HashMap<String, AttributeValue>>, BackendError> {
        let mut items = vec![];
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.tags_table)
                .key_condition_expression("userId = :u")
                .expression_attribute_values(":u", s(key))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| err("Query", describe(&e)))?;
            items.extend(page.items().iter().cloned());
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Applies `ops` of an event at `event_ms` to a friend: read, [`plan`], [`Self::apply`], and again
    /// from the read if someone changed the friend meanwhile. `ops` may be empty: then only the
    /// friend's index entries are brought in line with their follow state. The idempotency record
    /// `idempotency_key` is written with any change `ops` make.
    pub async fn change(
        &self,
        user_id: &str,
        ops: &[TagOp],
        event_ms: i64,
        now_ms: i64,
        talks_to_us: bool,
        idempotency_key: &str,
    ) -> Result<Changed, BackendError> {
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                // Another transaction held one of the items (often a hot counter): step aside for a
                // random moment so the two do not collide again.
                tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(5..=25) << attempt)).await;
            }
            let (friend, items) = self.read_friend(user_id).await?;
            let writes = plan(&items, friend.state, ops, event_ms, now_ms);
            // Someone who talks to the account is a friend, even if we never saw them follow.
            let mark_following = talks_to_us && !friend.known;
            if writes.is_empty() && !mark_following {
                return Ok(Changed::Unchanged);
            }
            let record = (!ops.is_empty()).then_some(idempotency_key);
            match self.apply(user_id, &writes, mark_following, record, now_ms).await? {
                Applied::Written => return Ok(Changed::Written),
                Applied::Duplicate => return Ok(Changed::Duplicate),
                Applied::Conflict => continue,
            }
        }
        Ok(Changed::Contended)
    }

    /// Writes `writes` for `user_id` in transactions of at most 100 actions, each item guarded by
    /// the version it was read at, each transaction with the counter updates of its own items
    /// ([`transactions`]): a transaction that commits leaves items and counters in agreement even
    /// if a later one fails. With `idempotency_key`, the last transaction also records the event,
    /// and finds it recorded when it is a duplicate. With `mark_following`, a friend the users
    /// table does not know yet is recorded as following (in the last transaction too).
    pub async fn apply(
        &self,
        user_id: &str,
        writes: &[TagWrite],
        mark_following: bool,
        idempotency_key: Option<&str>,
        now_ms: i64,
    ) -> Result<Applied, BackendError> {
        let extra = usize::from(mark_following) + usize::from(idempotency_key.is_some());
        let parts = transactions(writes, extra, MAX_TRANSACTION);
        let last = parts.len().saturating_sub(1);
        let shard = shard_of(user_id);
        for (n, part) in parts.into_iter().enumerate() {
            let mut actions: Vec<TransactWriteItem> = vec![];
            for w in &part {
                actions.push(self.put_tag(user_id, w)?);
            }
            for ((tag, bucket), delta) in count_deltas(&part) {
                actions.push(self.count(shard, &tag, &bucket, delta)?);
            }
            let mut record_at = None;
            if n == last {
                if mark_following {
                    actions.push(self.known_friend(user_id, now_ms)?);
                }
                if let Some(key) = idempotency_key {
                    record_at = Some(actions.len());
                    actions.push(self.record(key, now_ms)?);
                }
            }
            if actions.is_empty() {
                continue;
            }
            if let Some(failpoint) = &self.failpoint {
                failpoint(n, part.clone()).await;
            }
            let result = self.client.transact_write_items().set_transact_items(Some(actions)).send().await;
            if let Err(e) = result {
                let reasons: Vec<CancellationReason> = match e.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(t)) => t.cancellation_reasons().to_vec(),
                    _ => return Err(err("TransactWriteItems", describe(&e))),
                };
                let failed = |i: usize| reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
                if record_at.is_some_and(failed) {
                    return Ok(Applied::Duplicate);
                }
                // A tag or the friend changed meanwhile, or another transaction held an item. The
                // parts before this one stand, counters included; planning again finds them done.
                return Ok(Applied::Conflict);
            }
        }
        Ok(Applied::Written)
    }

    fn known_friend(&self, user_id: &str, now_ms: i64) -> Result<TransactWriteItem, BackendError> {
        let known = KnownFriend::new(user_id, now_ms);
        let update = Update::builder()
            .table_name(&self.users_table)
            .key("userId", s(user_id))
            .update_expression(KnownFriend::UPDATE)
            .condition_expression(KnownFriend::CONDITION)
            .set_expression_attribute_names(Some(known.names))
            .set_expression_attribute_values(Some(known.values))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn record(&self, key: &str, now_ms: i64) -> Result<TransactWriteItem, BackendError> {
        let put = Put::builder()
            .table_name(&self.events_table)
            .item("id", s(key))
            .item("status", s("COMPLETED"))
            .item("expiresAt", n(now_ms / 1000 + self.idempotency_ttl_secs))
            .condition_expression("attribute_not_exists(id) OR expiresAt < :now_s")
            .expression_attribute_values(":now_s", n(now_ms / 1000))
            .build()
            .map_err(|e| err("TransactWriteItems", e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn put_tag(&self, user_id: &str, w: &TagWrite) -> Result<TransactWriteItem, BackendError> {
        let mut put = Put::builder().table_name(&self.tags_table).set_item(Some(tag_attributes(user_id, &w.new)));
        put = match &w.old {
            None => put.condition_expression("attribute_not_exists(userId)"),
            Some(old) => put.condition_expression("v = :v").expression_attribute_values(":v", n(old.version as i64)),
        };
        let put = put.build().map_err(|e| err("TransactWriteItems", e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn count(&self, shard: u16, tag: &str, bucket: &str, delta: i64) -> Result<TransactWriteItem, BackendError> {
        let mut update = Update::builder()
            .table_name(&self.tags_table)
            .key("userId", s(&format!("{COUNTS_PREFIX}{shard:02}")))
            .key("tag", s(&format!("{tag}|{bucket}")))
            .expression_attribute_values(":d", n(delta));
        update = match bucket.parse::<i64>() {
            // An hour bucket is of no use a day after it ended.
            Ok(hour) => update
                .update_expression("ADD friends :d SET #ttl = :ttl")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":ttl", n(hour * 3600 + 86_400)),
            Err(_) => update.update_expression("ADD friends :d"),
        };
        let update = update.build().map_err(|e| err("TransactWriteItems", e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Friends per tag at `now_ms`, from the counters: one small query per shard.
    /// A tag that expired within the current hour still counts until the hour ends.
    pub async fn counts(&self, now_ms: i64) -> Result<BTreeMap<String, i64>, BackendError> {
        let mut out: BTreeMap<String, i64> = BTreeMap::new();
        for shard in 0..SHARDS {
            for item in self.partition(&format!("{COUNTS_PREFIX}{shard:02}")).await? {
                let (Some(key), Some(friends)) = (text(&item, "tag"), num(&item, "friends")) else { continue };
                let Some((tag, bucket)) = key.rsplit_once('|') else { continue };
                let entry = out.entry(tag.to_string()).or_default();
                if bucket_counts(bucket, now_ms) {
                    *entry += friends;
                }
            }
        }
        Ok(out)
    }
}

/// The stored form of a friend's tag (its version is the one after `t.version`).
pub fn tag_attributes(user_id: &str, t: &TagItem) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("userId".to_string(), s(user_id)),
        ("tag".to_string(), s(&t.tag)),
        ("active".to_string(), AttributeValue::Bool(t.active)),
        ("taggedAt".to_string(), n(t.tagged_at_ms)),
        ("source".to_string(), s(&t.source)),
        ("changedAt".to_string(), n(t.changed_at_ms)),
        ("v".to_string(), n(t.version as i64 + 1)),
    ]);
    let optional = [
        ("expiresAt", t.expires_at_ms.map(n)),
        ("followedAt", t.followed_at_ms.map(n)),
        ("idx", t.indexed.then(|| s(&tag_index_key(&t.tag, shard_of(user_id))))),
        ("ttl", t.delete_after_ms().map(|ms| n(ms / 1000))),
    ];
    item.extend(optional.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))));
    item
}

fn tag_item(item: &HashMap<String, AttributeValue>) -> Option<TagItem> {
    Some(TagItem {
        tag: text(item, "tag")?.to_string(),
        active: item.get("active").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        tagged_at_ms: num(item, "taggedAt")?,
        expires_at_ms: num(item, "expiresAt"),
        source: text(item, "source").unwrap_or_default().to_string(),
        changed_at_ms: num(item, "changedAt")?,
        indexed: item.contains_key("idx"),
        followed_at_ms: num(item, "followedAt"),
        version: num(item, "v")? as u64,
    })
}

#[async_trait]
impl SegmentIndex for DynamoTags {
    async fn members(
        &self,
        source: &Source,
        shard: u16,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<MemberPage, BackendError> {
        let (table, index, key_attr, key) = match source {
            Source::Tag(tag) => (&self.tags_table, TAG_INDEX, "idx", tag_index_key(tag, shard)),
            Source::Friends => (&self.users_table, FRIEND_INDEX, "fshard", friend_index_key(shard)),
        };
        let mut query = self
            .client
            .query()
            .table_name(table)
            .index_name(index)
            .expression_attribute_names("#k", key_attr)
            .expression_attribute_values(":k", s(&key))
            .set_limit(limit.map(|l| l as i32))
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        query = match after {
            Some(a) => query
                .key_condition_expression("#k = :k AND userId > :after")
                .expression_attribute_values(":after", s(a)),
            None => query.key_condition_expression("#k = :k"),
        };
        let page = query.send().await.map_err(|e| err("Query", describe(&e)))?;
        let members = page
            .items()
            .iter()
            .filter_map(|item| {
                Some(Member {
                    user_id: text(item, "userId")?.to_string(),
                    tagged_at_ms: num(item, "taggedAt").unwrap_or(0),
                    expires_at_ms: num(item, "expiresAt"),
                    followed_at_ms: num(item, "followedAt").or_else(|| num(item, "firstFollowedAt")),
                })
            })
            .collect();
        let read = ReadStats {
            items: page.scanned_count() as u64,
            requests: 1,
            capacity_units: page.consumed_capacity().and_then(|c| c.capacity_units()).unwrap_or(0.0),
        };
        Ok(MemberPage { members, more: page.last_evaluated_key().is_some(), read })
    }
}
