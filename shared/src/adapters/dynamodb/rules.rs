//! Rules in DynamoDB, versioned. Items of the rules table (key `id`):
//!
//! - `current`: `{version, sha256, appliedAt}`, the pointer every reader checks;
//! - `v#<n>`: `{version, source, sha256, appliedAt}`, the rules file text of version n, never changed.
//!
//! Account settings (`oa settings apply`) are versioned the same way in the same table, under
//! `settings#current` and `settings#v#<n>` ([`RulesStore::settings`]).
//!
//! Publishing writes `v#<n+1>` and moves `current` from n to n+1 in one transaction, so readers see
//! the old version or the new one, and two people applying at once cannot both win.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use sha2::{Digest, Sha256};

use crate::adapters::dynamodb::attr::int;
use crate::adapters::sdk::describe;
use crate::ports::BackendError;
use crate::rules::RuleBook;

const CURRENT: &str = "current";

/// One published version of the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub version: u64,
    pub sha256: String,
    pub source: String,
    pub applied_at_ms: i64,
}

/// The outcome of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    Published {
        version: u64,
    },
    /// Someone else published since `expected` was read: nothing was written.
    Conflict,
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[derive(Clone)]
pub struct RulesStore {
    client: Client,
    table: String,
    /// Prefix of the item ids: empty for rules, `settings#` for account settings.
    prefix: &'static str,
}

fn store_err(operation: &'static str, message: String) -> BackendError {
    BackendError::Store { operation, message }
}

impl RulesStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        RulesStore { client, table: table.into(), prefix: "" }
    }

    /// The account settings' versions, in the rules table.
    pub fn settings(client: Client, table: impl Into<String>) -> Self {
        RulesStore { client, table: table.into(), prefix: "settings#" }
    }

    /// The live version number: one small, strongly consistent read.
    pub async fn current_version(&self) -> Result<Option<u64>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(format!("{}{CURRENT}", self.prefix)))
            .projection_expression("version")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_err("GetItem", describe(&e)))?;
        Ok(out.item.as_ref().and_then(|i| int(i, "version")).map(|v| v.max(0) as u64))
    }

    pub async fn load(&self, version: u64) -> Result<Published, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(format!("{}v#{version}", self.prefix)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_err("GetItem", describe(&e)))?;
        let item = out.item.ok_or_else(|| store_err("GetItem", format!("rules version {version} is missing")))?;
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        Ok(Published {
            version,
            sha256: text("sha256"),
            source: text("source"),
            applied_at_ms: int(&item, "appliedAt").unwrap_or_default(),
        })
    }

    /// The live rules, if any were ever published.
    pub async fn live(&self) -> Result<Option<Published>, BackendError> {
        match self.current_version().await? {
            Some(v) => Ok(Some(self.load(v).await?)),
            None => Ok(None),
        }
    }

    /// Publishes `source` as the version after `expected` (None: the first version).
    pub async fn publish(&self, source: &str, expected: Option<u64>, now_ms: i64) -> Result<Publish, BackendError> {
        let version = expected.unwrap_or(0) + 1;
        let sha = sha256_hex(source);
        let n = |x: i64| AttributeValue::N(x.to_string());
        let s = |x: &str| AttributeValue::S(x.to_string());
        let put = |item: Put| TransactWriteItem::builder().put(item).build();
        let version_item = Put::builder()
            .table_name(&self.table)
            .item("id", s(&format!("{}v#{version}", self.prefix)))
            .item("version", n(version as i64))
            .item("source", s(source))
            .item("sha256", s(&sha))
            .item("appliedAt", n(now_ms))
            .condition_expression("attribute_not_exists(id)")
            .build()
            .map_err(|e| store_err("TransactWriteItems", e.to_string()))?;
        let mut pointer = Put::builder()
            .table_name(&self.table)
            .item("id", s(&format!("{}{CURRENT}", self.prefix)))
            .item("version", n(version as i64))
            .item("sha256", s(&sha))
            .item("appliedAt", n(now_ms));
        pointer = match expected {
            None => pointer.condition_expression("attribute_not_exists(id)"),
            Some(v) => pointer
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(v as i64)),
        };
        let pointer = pointer.build().map_err(|e| store_err("TransactWriteItems", e.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(put(version_item))
            .transact_items(put(pointer))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Publish::Published { version }),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_transaction_canceled_exception()) => {
                Ok(Publish::Conflict)
            }
            Err(e) => Err(store_err("TransactWriteItems", describe(&e))),
        }
    }
}

/// The compiled rules of the live version, re-read only when the version changes.
pub struct RulesCache {
    store: RulesStore,
    cached: Mutex<Option<(u64, Arc<RuleBook>)>>,
}

/// What the cache served.
pub struct Served {
    pub version: Option<u64>,
    pub book: Option<Arc<RuleBook>>,
    /// Whether this call had to load and compile a new version.
    pub reloaded: bool,
}

impl RulesCache {
    pub fn new(store: RulesStore) -> Self {
        RulesCache { store, cached: Mutex::new(None) }
    }

    /// The live rules. Costs one version read; loads and compiles only on a new version. A version
    /// that does not compile (it was validated when applied, so only by hand) keeps the previous one.
    pub async fn get(&self) -> Result<Served, BackendError> {
        let Some(version) = self.store.current_version().await? else {
            return Ok(Served { version: None, book: None, reloaded: false });
        };
        if let Some((v, book)) = self.cached.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if *v == version {
                return Ok(Served { version: Some(version), book: Some(book.clone()), reloaded: false });
            }
        }
        let published = self.store.load(version).await?;
        match RuleBook::parse(&published.source) {
            Ok(book) => {
                let book = Arc::new(book);
                *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some((version, book.clone()));
                Ok(Served { version: Some(version), book: Some(book), reloaded: true })
            }
            Err(e) => {
                tracing::error!(version, error = %e, "live rules do not compile; keeping the previous version");
                let previous = self.cached.lock().unwrap_or_else(|p| p.into_inner()).clone();
                Ok(Served { version: previous.as_ref().map(|p| p.0), book: previous.map(|p| p.1), reloaded: false })
            }
        }
    }
}
