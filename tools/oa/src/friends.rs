//! `oa friends import`: friends from before the backend. LINE's follower IDs, page by page, into
//! the users table as following, without touching a friend whose state events already recorded.
//! The place in LINE's list is kept after every page (item `import#followers` in the campaigns
//! table), so an import cut short goes on where it stopped.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::stream::{self, StreamExt};
use shared::adapters::dynamodb::attr::{int, s, text, uint};
use shared::adapters::dynamodb::ingest::DynamoFriends;
use shared::adapters::line::LineClient;
use shared::line::answer::LineError;
use shared::ports::BackendError;

type Error = Box<dyn std::error::Error>;

pub struct Import<'a> {
    pub line: &'a LineClient,
    pub friends: &'a DynamoFriends,
    pub dynamodb: &'a aws_sdk_dynamodb::Client,
    pub campaigns_table: &'a str,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    pub pages: u64,
    /// IDs LINE listed.
    pub listed: u64,
    /// Recorded as following now (the rest were known already).
    pub added: u64,
    /// Whether it went on from an earlier, unfinished import.
    pub resumed: bool,
}

fn key() -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s("import#followers")), ("sk".to_string(), s("checkpoint"))])
}

fn store_err(operation: &'static str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Store { operation, message: e.to_string() }
}

impl Import<'_> {
    /// Imports every follower; `restart` forgets an unfinished import's place.
    pub async fn run(
        &self,
        restart: bool,
        now_ms: i64,
        mut progress: impl FnMut(&Imported),
    ) -> Result<Imported, Error> {
        let mut done = Imported::default();
        let mut start = None;
        if restart {
            self.forget().await?;
        } else if let Some(item) = self.checkpoint().await? {
            start = text(&item, "next").map(str::to_string);
            done = Imported {
                pages: uint(&item, "pages"),
                listed: uint(&item, "listed"),
                added: uint(&item, "added"),
                resumed: true,
            };
        }
        loop {
            let (ids, next) = self.line.followers(start.as_deref()).await.map_err(|e| match e {
                LineError::Forbidden { .. } => format!(
                    "LINE refused to list followers ({e}): only verified and premium accounts may. Friends still \
                     appear as they follow, write or shop."
                ),
                other => format!("LINE's follower list: {other}"),
            })?;
            let results: Vec<Result<bool, BackendError>> = stream::iter(ids.iter())
                .map(|u| self.friends.ensure_known(u, now_ms))
                .buffer_unordered(32)
                .collect()
                .await;
            for r in results {
                done.added += u64::from(r?);
            }
            done.pages += 1;
            done.listed += ids.len() as u64;
            progress(&done);
            match next {
                Some(next) => {
                    self.save(&next, &done, now_ms).await?;
                    start = Some(next);
                }
                None => {
                    self.forget().await?;
                    return Ok(done);
                }
            }
        }
    }

    async fn checkpoint(&self) -> Result<Option<HashMap<String, AttributeValue>>, BackendError> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(self.campaigns_table)
            .set_key(Some(key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_err("GetItem", shared::adapters::sdk::describe(&e)))?;
        Ok(out.item.filter(|i| int(i, "pages").is_some()))
    }

    async fn save(&self, next: &str, done: &Imported, now_ms: i64) -> Result<(), BackendError> {
        let mut item = key();
        item.insert("next".into(), s(next));
        for (k, v) in [("pages", done.pages), ("listed", done.listed), ("added", done.added)] {
            item.insert(k.into(), AttributeValue::N(v.to_string()));
        }
        item.insert("savedAt".into(), AttributeValue::N(now_ms.to_string()));
        self.dynamodb
            .put_item()
            .table_name(self.campaigns_table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_err("PutItem", shared::adapters::sdk::describe(&e)))?;
        Ok(())
    }

    async fn forget(&self) -> Result<(), BackendError> {
        self.dynamodb
            .delete_item()
            .table_name(self.campaigns_table)
            .set_key(Some(key()))
            .send()
            .await
            .map_err(|e| store_err("DeleteItem", shared::adapters::sdk::describe(&e)))?;
        Ok(())
    }
}
