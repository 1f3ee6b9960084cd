//! The message put on the reply and tag queues: the event plus what ingestion learned about it.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::line::webhook::Event;
use crate::shop::ShopEvent;

/// Written by [`QueuedEvent::to_json`] as one object: `kind` (`line` or `shop`), `dedupeKey`,
/// `destination` (LINE only, when known), `receivedAt` and `event`.
///
/// A LINE event borrows from the text it was read from (see [`Event`]): read one from the
/// queue message's text (`serde_json::from_str`).
#[derive(Debug, Clone, PartialEq)]
pub enum QueuedEvent<'a> {
    /// A LINE webhook event, exactly as LINE sent it (unknown fields included).
    Line {
        dedupe_key: String,
        /// The bot user ID the webhook was addressed to, when the payload said.
        destination: Option<String>,
        /// When the webhook function received it (ms since the epoch).
        received_at: i64,
        event: Box<Event<'a>>,
    },
    /// A first-party shop event from `POST /events`.
    Shop { dedupe_key: String, received_at: i64, event: ShopEvent },
}

impl QueuedEvent<'_> {
    /// The same message, owning its text.
    pub fn into_owned(self) -> QueuedEvent<'static> {
        match self {
            QueuedEvent::Line { dedupe_key, destination, received_at, event } => {
                QueuedEvent::Line { dedupe_key, destination, received_at, event: Box::new(event.into_owned()) }
            }
            QueuedEvent::Shop { dedupe_key, received_at, event } => {
                QueuedEvent::Shop { dedupe_key, received_at, event }
            }
        }
    }

    pub fn dedupe_key(&self) -> &str {
        match self {
            QueuedEvent::Line { dedupe_key, .. } | QueuedEvent::Shop { dedupe_key, .. } => dedupe_key,
        }
    }

    /// The message as written to a queue: compact JSON, with a LINE event's text spliced in
    /// byte for byte (never re-read or re-written).
    pub fn to_json(&self) -> String {
        let (kind, dedupe_key, destination, received_at, event) = match self {
            QueuedEvent::Line { dedupe_key, destination, received_at, event } => {
                ("line", dedupe_key, destination.as_deref(), received_at, Cow::Borrowed(event.raw()))
            }
            // A shop event is plain data (string keys, JSON values): writing it cannot fail.
            QueuedEvent::Shop { dedupe_key, received_at, event } => {
                let event = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
                ("shop", dedupe_key, None, received_at, Cow::Owned(event))
            }
        };
        let string = |s: &str| serde_json::Value::from(s).to_string();
        let mut out = String::with_capacity(event.len() + 160);
        out.push_str("{\"kind\":\"");
        out.push_str(kind);
        out.push_str("\",\"dedupeKey\":");
        out.push_str(&string(dedupe_key));
        if let Some(destination) = destination {
            out.push_str(",\"destination\":");
            out.push_str(&string(destination));
        }
        out.push_str(",\"receivedAt\":");
        out.push_str(&received_at.to_string());
        out.push_str(",\"event\":");
        out.push_str(&event);
        out.push('}');
        out
    }
}

/// The message as written: `kind` and the fields of either variant. Read by hand rather than as
/// an internally tagged enum, which would buffer the event into a tree and lose its text.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    kind: String,
    dedupe_key: String,
    #[serde(default)]
    destination: Option<String>,
    received_at: i64,
    #[serde(borrow)]
    event: &'a RawValue,
}

impl<'de> Deserialize<'de> for QueuedEvent<'de> {
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn the_queue_message_carries_the_raw_event() {
        let raw = json!({"type": "join", "timestamp": 1, "newField": {"a": [1, 2]}});
        let e = Event::from_value(raw.clone());
        let queued = QueuedEvent::Line {
            dedupe_key: "k\"1".into(),
            destination: None,
            received_at: 5,
            event: Box::new(e.clone()),
        };
        let written: Value = serde_json::from_str(&queued.to_json()).unwrap();
        assert_eq!(written, json!({"kind": "line", "dedupeKey": "k\"1", "receivedAt": 5, "event": raw}));
        let back: Event<'static> = serde_json::from_str(&raw.to_string()).unwrap();
        assert_eq!(back, e);
    }
}
