//! The message put on the reply and tag queues: the event plus what ingestion learned about it.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::line::webhook::Event;
use crate::shop::ShopEvent;

#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// The message as written: `kind` and the fields of either variant. Read by hand rather than as
/// an internally tagged enum, which would buffer the event into a tree and lose its text.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    kind: String,
    dedupe_key: String,
    #[serde(default)]
    destination: Option<String>,
    received_at: i64,
    event: Box<RawValue>,
}

impl<'de> Deserialize<'de> for QueuedEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let w = Wire::deserialize(d)?;
        match w.kind.as_str() {
            "line" => Ok(QueuedEvent::Line {
                dedupe_key: w.dedupe_key,
                destination: w.destination,
                received_at: w.received_at,
                event: Box::new(Event::from_raw(w.event)),
            }),
            "shop" => Ok(QueuedEvent::Shop {
                dedupe_key: w.dedupe_key,
                received_at: w.received_at,
                event: serde_json::from_str(w.event.get()).map_err(|e| D::Error::custom(format!("event: {e}")))?,
            }),
            other => Err(D::Error::unknown_variant(other, &["line", "shop"])),
        }
    }
}
