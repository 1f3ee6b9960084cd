//! DynamoDB adapters: the idempotency (events) table and the users table.
//!
//! Conditional-check failures are domain results (`Claim::InProgress`, `FriendUpdate::Stale`), not
//! errors.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use super::attr::{n, s};
use crate::ports::{BackendError, Claim, FriendChange, FriendStore, FriendUpdate, IdempotencyStore, Queues};
use crate::tagging::{friend_index_key, shard_of};

const STATUS_IN_PROGRESS: &str = "INPROGRESS";
const STATUS_PARTIAL: &str = "PARTIAL";
const STATUS_COMPLETED: &str = "COMPLETED";

fn store_err<E, R>(operation: &'static str, e: SdkError<E, R>) -> BackendError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    BackendError::Store { operation, message: crate::adapters::sdk::describe(&e) }
}

/// Idempotency records in the events table: `{id, status, expiresAt (s, TTL), inProgressUntil (ms),
/// sent?}`. `status` is `INPROGRESS` (claimed), `PARTIAL` (a delivery put the event on the queues
/// in `sent`, a string set, and failed on the others) or `COMPLETED`.
#[derive(Clone)]
pub struct DynamoIdempotency {
    client: Client,
    table: String,
    /// How long a completed key keeps later deliveries out.
    ttl_secs: i64,
    /// How long an in-progress claim blocks other deliveries; past it, the owner is presumed dead.
    in_progress_ms: i64,
}

impl DynamoIdempotency {
    pub fn new(client: Client, table: impl Into<String>, ttl_secs: i64, in_progress_ms: i64) -> Self {
        Self { client, table: table.into(), ttl_secs, in_progress_ms }
    }
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotency {
    async fn claim(&self, key: &str, now_ms: i64) -> Result<Claim, BackendError> {
        // An update, not a put: a partial record's `sent` stays on the item, and the old item
        // comes back to say what it held.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(key))
            .update_expression("SET #status = :in_progress, expiresAt = :expires, inProgressUntil = :until")
            .condition_expression(
                "attribute_not_exists(id) OR expiresAt < :now_s OR #status = :partial \
                 OR (#status = :in_progress AND inProgressUntil < :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s(STATUS_IN_PROGRESS))
            .expression_attribute_values(":partial", s(STATUS_PARTIAL))
            .expression_attribute_values(":expires", n(now_ms / 1000 + self.ttl_secs))
            .expression_attribute_values(":until", n(now_ms + self.in_progress_ms))
            .expression_attribute_values(":now_s", n(now_ms / 1000))
            .expression_attribute_values(":now_ms", n(now_ms))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                // What an earlier delivery sent holds only from a live PARTIAL record: `sent` may
                // linger on other items (an expired record taken over, a crashed claim), and those
                // are sent again in full (the consumers' own records catch the repeat).
                let old = out.attributes();
                let live = old
                    .and_then(|o| o.get("expiresAt"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|e| e >= now_ms / 1000);
                let partial = old.and_then(|o| o.get("status")).and_then(|v| v.as_s().ok()).map(String::as_str)
                    == Some(STATUS_PARTIAL);
                let sent = match old.and_then(|o| o.get("sent")).and_then(|v| v.as_ss().ok()) {
                    Some(names) if live && partial => Queues::from_names(names.iter().map(String::as_str)),
                    _ => Queues::NONE,
                };
                Ok(Claim::Claimed { sent })
            }
            Err(e) => {
                if let Some(UpdateItemError::ConditionalCheckFailedException(held)) = e.as_service_error() {
                    let status = held.item().and_then(|i| i.get("status")).and_then(|v| v.as_s().ok());
                    return Ok(if status.map(String::as_str) == Some(STATUS_COMPLETED) {
                        Claim::AlreadyCompleted
                    } else {
                        Claim::InProgress
                    });
                }
                Err(store_err("UpdateItem", e))
            }
        }
    }

    async fn complete(&self, key: &str, now_ms: i64) -> Result<(), BackendError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("id", s(key))
            .item("status", s(STATUS_COMPLETED))
            .item("expiresAt", n(now_ms / 1000 + self.ttl_secs))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| store_err("PutItem", e))
    }

    async fn partial(&self, key: &str, sent: Queues, now_ms: i64) -> Result<(), BackendError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", s(key))
            .item("status", s(STATUS_PARTIAL))
            .item("expiresAt", n(now_ms / 1000 + self.ttl_secs));
        let names = sent.names();
        if !names.is_empty() {
            put = put.item("sent", AttributeValue::Ss(names.into_iter().map(str::to_string).collect()));
        }
        put.send().await.map(|_| ()).map_err(|e| store_err("PutItem", e))
    }

    async fn release(&self, key: &str) -> Result<(), BackendError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(key))
            .condition_expression("#status = :in_progress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s(STATUS_IN_PROGRESS))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone completed it meanwhile: nothing to give back.
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(()),
            Err(e) => Err(store_err("DeleteItem", e)),
        }
    }
}

/// Friend state in the users table, keyed by `userId`:
/// `{state: following|blocked, isUnblocked, firstFollowedAt, lastChangedAt (event ms), updatedAt,
/// fshard}`; `fshard` (the friend's shard of the `following` index) only while following.
#[derive(Clone)]
pub struct DynamoFriends {
    client: Client,
    table: String,
}

impl DynamoFriends {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Starts the fallback-reply cooldown of `chat_id` (a user, or a group/room the fallback is
    /// allowed in) unless one started less than `cooldown_ms` ago. True: the fallback may go out.
    /// One conditional write, so two messages at once cannot both get the fallback.
    pub async fn start_fallback_cooldown(
        &self,
        chat_id: &str,
        now_ms: i64,
        cooldown_ms: i64,
    ) -> Result<bool, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("userId", s(chat_id))
            .update_expression("SET lastFallbackAt = :now")
            .condition_expression("attribute_not_exists(lastFallbackAt) OR lastFallbackAt <= :cutoff")
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":cutoff", n(now_ms - cooldown_ms))
            .send()
            .await;
        applied(result)
    }

    /// Records a friend we have never seen follow as following, because they talk to the account
    /// (friends from before the account used this backend). A known state is left alone.
    pub async fn ensure_known(&self, user_id: &str, now_ms: i64) -> Result<bool, BackendError> {
        let known = KnownFriend::new(user_id, now_ms);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("userId", s(user_id))
            .update_expression(KnownFriend::UPDATE)
            .condition_expression(KnownFriend::CONDITION)
            .set_expression_attribute_names(Some(known.names))
            .set_expression_attribute_values(Some(known.values))
            .send()
            .await;
        applied(result)
    }

    /// Undoes [`Self::start_fallback_cooldown`] of `started_at_ms` when the fallback could not go out
    /// (so its retry is not taken for a second fallback). A newer cooldown is left alone.
    pub async fn cancel_fallback_cooldown(&self, chat_id: &str, started_at_ms: i64) -> Result<(), BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("userId", s(chat_id))
            .update_expression("REMOVE lastFallbackAt")
            .condition_expression("lastFallbackAt = :started")
            .expression_attribute_values(":started", n(started_at_ms))
            .send()
            .await;
        applied(result).map(|_| ())
    }
}

/// Recording a friend with no known state as following: one definition for the plain update
/// ([`DynamoFriends::ensure_known`]) and the tagger's transaction.
pub(crate) struct KnownFriend {
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
}

impl KnownFriend {
    pub const UPDATE: &'static str = "SET #state = :following, fshard = :fshard, updatedAt = :now";
    pub const CONDITION: &'static str = "attribute_not_exists(#state)";

    pub fn new(user_id: &str, now_ms: i64) -> Self {
        KnownFriend {
            names: HashMap::from([("#state".to_string(), "state".to_string())]),
            values: HashMap::from([
                (":following".to_string(), s("following")),
                (":fshard".to_string(), s(&friend_index_key(shard_of(user_id)))),
                (":now".to_string(), n(now_ms)),
            ]),
        }
    }
}

type UpdateResult = Result<
    aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
    SdkError<UpdateItemError, aws_sdk_dynamodb::config::http::HttpResponse>,
>;

fn is_condition_failure(e: &SdkError<UpdateItemError, aws_sdk_dynamodb::config::http::HttpResponse>) -> bool {
    matches!(e, SdkError::ServiceError(se) if se.err().is_conditional_check_failed_exception())
}

/// A conditional update: true if it was applied, false if its condition did not hold.
fn applied(result: UpdateResult) -> Result<bool, BackendError> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failure(&e) => Ok(false),
        Err(e) => Err(store_err("UpdateItem", e)),
    }
}

#[async_trait]
impl FriendStore for DynamoFriends {
    async fn record(
        &self,
        user_id: &str,
        change: FriendChange,
        event_time_ms: i64,
        now_ms: i64,
    ) -> Result<FriendUpdate, BackendError> {
        let (state, update) = match change {
            FriendChange::Followed { is_unblocked } => (
                "following",
                self.client
                    .update_item()
                    .update_expression(
                        "SET #state = :state, isUnblocked = :unblocked, lastChangedAt = :ts, updatedAt = :now, \
                         firstFollowedAt = if_not_exists(firstFollowedAt, :ts), fshard = :fshard",
                    )
                    .expression_attribute_values(":unblocked", AttributeValue::Bool(is_unblocked))
                    .expression_attribute_values(":fshard", s(&friend_index_key(shard_of(user_id)))),
            ),
            FriendChange::Unfollowed => (
                "blocked",
                self.client.update_item().update_expression(
                    "SET #state = :state, lastChangedAt = :ts, updatedAt = :now, blockedAt = :ts REMOVE fshard",
                ),
            ),
        };
        let result = update
            .table_name(&self.table)
            .key("userId", s(user_id))
            .condition_expression("attribute_not_exists(lastChangedAt) OR lastChangedAt < :ts")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state))
            .expression_attribute_values(":ts", n(event_time_ms))
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await;
        match result {
            Ok(_) => Ok(FriendUpdate::Applied),
            Err(e) if is_condition_failure(&e) => {
                // The state is newer, but an older follow still says when the friendship began.
                if matches!(change, FriendChange::Followed { .. }) {
                    let earlier = self
                        .client
                        .update_item()
                        .table_name(&self.table)
                        .key("userId", s(user_id))
                        .update_expression("SET firstFollowedAt = :ts")
                        .condition_expression("attribute_not_exists(firstFollowedAt) OR firstFollowedAt > :ts")
                        .expression_attribute_values(":ts", n(event_time_ms))
                        .send()
                        .await;
                    applied(earlier)?;
                }
                Ok(FriendUpdate::Stale)
            }
            Err(e) => Err(store_err("UpdateItem", e)),
        }
    }
}
