//! The message put on the reply and tag queues: the event plus what ingestion learned about it.

use serde::{Deserialize, Serialize};

use crate::line::webhook::Event;
use crate::shop::ShopEvent;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum QueuedEvent {
    /// A LINE webhook event, exactly as LINE sent it (unknown fields included).
    #[serde(rename_all = "camelCase")]
    Line {
        dedupe_key: String,
        /// The bot user ID the webhook was addressed to, when the payload said.
        destination: Option<String>,
        /// When the webhook function received it (ms since the epoch).
        received_at: i64,
        event: Box<Event>,
    },
    /// A first-party shop event from `POST /events`.
    #[serde(rename_all = "camelCase")]
    Shop { dedupe_key: String, received_at: i64, event: ShopEvent },
}

impl QueuedEvent {
    pub fn dedupe_key(&self) -> &str {
        match self {
            QueuedEvent::Line { dedupe_key, .. } | QueuedEvent::Shop { dedupe_key, .. } => dedupe_key,
        }
    }
}
