//! Typed model of a LINE webhook request body.
//!
//! Tolerant by design (LINE adds fields and types without notice):
//! - unknown fields are ignored by the typed view and kept in [`Event::raw`];
//! - unknown event types, and known types whose payload does not match the documented shape, become
//!   [`EventKind::Other`] (never an error), so nothing LINE sends is lost;
//! - older shapes without `webhookEventId`, `deliveryContext`, `mode`, `timestamp` or `destination`
//!   are accepted; [`Event::dedupe_key`] then derives a key from the event itself.
//!
//! Serialising an [`Event`] writes back exactly the JSON it was parsed from.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Why a request body is not a LINE webhook envelope.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("body is not a LINE webhook envelope: {0}")]
    NotEnvelope(&'static str),
}

/// `{"destination": "...", "events": [...]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookBody {
    /// The bot's user ID; absent in some older payloads.
    pub destination: Option<String>,
    pub events: Vec<Event>,
}

impl WebhookBody {
    /// Parses a raw body. Only the envelope is strict: an object with an `events` array of objects.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let value: Value = serde_json::from_slice(body).map_err(ParseError::NotJson)?;
        let Value::Object(mut envelope) = value else {
            return Err(ParseError::NotEnvelope("top level is not an object"));
        };
        let destination = match envelope.remove("destination") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(ParseError::NotEnvelope("destination is not a string")),
        };
        let Some(Value::Array(raw_events)) = envelope.remove("events") else {
            return Err(ParseError::NotEnvelope("events is missing or not an array"));
        };
        let events = raw_events.into_iter().map(Event::from_value).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { destination, events })
    }
}

/// One webhook event: the common fields, the typed payload, and the JSON it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub common: EventCommon,
    pub kind: EventKind,
    /// The event exactly as received (unknown fields included).
    pub raw: Value,
}

/// Fields every event type shares. All optional or defaulted: older payloads lack several.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct EventCommon {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default)]
    pub mode: Mode,
    /// Milliseconds since the epoch when the event occurred (unchanged on redelivery); 0 if absent.
    #[serde(default)]
    pub timestamp: i64,
    pub source: Option<Source>,
    pub webhook_event_id: Option<String>,
    pub delivery_context: Option<DeliveryContext>,
    pub reply_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Also assumed when absent: payloads older than the `mode` field predate standby.
    #[default]
    Active,
    /// Another channel owns the chat: no reply token, and the bot must not send.
    Standby,
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryContext {
    #[serde(default)]
    pub is_redelivery: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(rename = "type")]
    pub kind: SourceKind,
    pub user_id: Option<String>,
    pub group_id: Option<String>,
    pub room_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SourceKind {
    User,
    Group,
    Room,
    #[serde(other)]
    Unknown,
}

/// The typed payload of each documented event type.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum EventKind {
    Message {
        message: Message,
    },
    MessageEdited {
        message: Message,
    },
    Unsend {
        unsend: Unsend,
    },
    Follow {
        follow: Option<Follow>,
    },
    Unfollow,
    Join,
    Leave,
    MemberJoined {
        joined: Members,
    },
    MemberLeft {
        left: Members,
    },
    Postback {
        postback: Postback,
    },
    #[serde(rename_all = "camelCase")]
    VideoPlayComplete {
        video_play_complete: VideoPlayComplete,
    },
    Beacon {
        beacon: Beacon,
    },
    AccountLink {
        link: AccountLink,
    },
    Membership {
        membership: Membership,
    },
    Module {
        module: Module,
    },
    #[serde(rename_all = "camelCase")]
    Activated {
        chat_control: ChatControl,
    },
    Deactivated,
    BotSuspended,
    BotResumed,
    Delivery {
        delivery: Delivery,
    },
    /// A type this model does not know, or a known type whose payload did not match; see
    /// [`Event::raw`] for everything that was sent.
    #[serde(skip)]
    Other {
        type_name: String,
        reason: String,
    },
}

const KNOWN_TYPES: &[&str] = &[
    "message",
    "messageEdited",
    "unsend",
    "follow",
    "unfollow",
    "join",
    "leave",
    "memberJoined",
    "memberLeft",
    "postback",
    "videoPlayComplete",
    "beacon",
    "accountLink",
    "membership",
    "module",
    "activated",
    "deactivated",
    "botSuspended",
    "botResumed",
    "delivery",
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: Option<String>,
    #[serde(flatten)]
    pub content: MessageContent,
    pub quote_token: Option<String>,
}

/// Message payloads. Unknown message types become `Unknown` (the raw event still has them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum MessageContent {
    #[serde(rename_all = "camelCase")]
    Text { text: String, emojis: Option<Vec<Value>>, mention: Option<Value>, quoted_message_id: Option<String> },
    #[serde(rename_all = "camelCase")]
    Image { content_provider: Option<ContentProvider>, image_set: Option<Value> },
    #[serde(rename_all = "camelCase")]
    Video { duration: Option<u64>, content_provider: Option<ContentProvider> },
    #[serde(rename_all = "camelCase")]
    Audio { duration: Option<u64>, content_provider: Option<ContentProvider> },
    #[serde(rename_all = "camelCase")]
    File { file_name: Option<String>, file_size: Option<u64> },
    #[serde(rename_all = "camelCase")]
    Location { title: Option<String>, address: Option<String>, latitude: f64, longitude: f64 },
    #[serde(rename_all = "camelCase")]
    Sticker {
        package_id: String,
        sticker_id: String,
        sticker_resource_type: Option<String>,
        keywords: Option<Vec<String>>,
        text: Option<String>,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentProvider {
    #[serde(rename = "type")]
    pub kind: String,
    pub original_content_url: Option<String>,
    pub preview_image_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unsend {
    pub message_id: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Follow {
    /// True when a friend who had blocked the account unblocked it.
    #[serde(default)]
    pub is_unblocked: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Members {
    pub members: Vec<Source>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Postback {
    pub data: String,
    pub params: Option<PostbackParams>,
}

/// Datetime-picker values or rich-menu switch results; all optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostbackParams {
    pub date: Option<String>,
    pub time: Option<String>,
    pub datetime: Option<String>,
    pub new_rich_menu_alias_id: Option<String>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoPlayComplete {
    pub tracking_id: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Beacon {
    pub hwid: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub dm: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AccountLink {
    pub result: String,
    pub nonce: Option<String>,
}

/// A friend joined, left or renewed a membership (`membershipId` is numeric).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    /// `joined`, `left` or `renewed`.
    #[serde(rename = "type")]
    pub kind: String,
    pub membership_id: i64,
}

/// A module channel attached (`botId`, `scopes`) or detached (`botId`, `reason`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Module {
    /// `attached` or `detached`.
    #[serde(rename = "type")]
    pub kind: String,
    pub bot_id: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub reason: Option<String>,
}

/// Chat control was handed to a module channel until `expireAt` (ms).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatControl {
    pub expire_at: i64,
}

/// A LINE notification message was delivered (`data` is the hashed phone number).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Delivery {
    pub data: String,
}

impl Event {
    /// Builds an event from its JSON. Errors only if it is not an object with a string `type`.
    pub fn from_value(raw: Value) -> Result<Self, ParseError> {
        if !raw.is_object() {
            return Err(ParseError::NotEnvelope("an event is not an object"));
        }
        let common =
            EventCommon::deserialize(&raw).map_err(|_| ParseError::NotEnvelope("an event has no string `type`"))?;
        let kind = if KNOWN_TYPES.contains(&common.type_name.as_str()) {
            EventKind::deserialize(&raw)
                .unwrap_or_else(|e| EventKind::Other { type_name: common.type_name.clone(), reason: e.to_string() })
        } else {
            EventKind::Other { type_name: common.type_name.clone(), reason: "unknown event type".into() }
        };
        Ok(Self { common, kind, raw })
    }

    /// The friend this event is about, when there is one.
    pub fn user_id(&self) -> Option<&str> {
        self.common.source.as_ref()?.user_id.as_deref()
    }

    /// The chat the event belongs to: the user, else the group or room.
    pub fn chat_id(&self) -> Option<&str> {
        let s = self.common.source.as_ref()?;
        s.user_id.as_deref().or(s.group_id.as_deref()).or(s.room_id.as_deref())
    }

    pub fn is_redelivery(&self) -> bool {
        self.common.delivery_context.as_ref().is_some_and(|d| d.is_redelivery)
    }

    /// The key this event is deduplicated by: its `webhookEventId`; for older payloads without one,
    /// `sha256:` + the hex SHA-256 of the event's JSON with object keys sorted (so the same event
    /// always gives the same key, whatever the key order it arrives in).
    pub fn dedupe_key(&self) -> String {
        match self.common.webhook_event_id.as_deref() {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => {
                let mut canonical = Vec::with_capacity(256);
                write_canonical(&self.raw, &mut canonical);
                format!("sha256:{}", hex::encode(Sha256::digest(&canonical)))
            }
        }
    }
}

/// JSON with object keys in sorted order, independent of serde_json's map feature flags.
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        Event::from_value(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> WebhookBody {
        WebhookBody::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn text_message_is_typed() {
        let body = parse(json!({"destination": "Ubot", "events": [{
            "type": "message", "mode": "active", "timestamp": 1700000000000_i64,
            "source": {"type": "user", "userId": "U1"}, "webhookEventId": "01H", "replyToken": "rt",
            "deliveryContext": {"isRedelivery": true},
            "message": {"id": "1", "type": "text", "text": "hello", "quoteToken": "q"}}]}));
        let e = &body.events[0];
        assert_eq!(e.user_id(), Some("U1"));
        assert!(e.is_redelivery());
        assert_eq!(e.dedupe_key(), "01H");
        match &e.kind {
            EventKind::Message { message } => {
                assert!(matches!(&message.content, MessageContent::Text { text, .. } if text == "hello"))
            }
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn unknown_types_are_kept_not_rejected() {
        let body = parse(json!({"events": [
            {"type": "greatNewFeature", "timestamp": 1, "source": {"type": "user", "userId": "U1"}, "x": 1},
            {"type": "message", "source": {"type": "weird"}, "message": {"id": "1", "type": "hologram"}},
            {"type": "UNKNOWN", "great": "new-field"}]}));
        assert!(matches!(&body.events[0].kind, EventKind::Other { type_name, .. } if type_name == "greatNewFeature"));
        assert_eq!(body.events[0].raw["x"], 1);
        assert!(matches!(&body.events[1].kind,
            EventKind::Message { message } if message.content == MessageContent::Unknown));
        assert_eq!(body.events[1].common.source.as_ref().unwrap().kind, SourceKind::Unknown);
        assert_eq!(body.events[2].common.mode, Mode::Active);
    }

    #[test]
    fn known_type_with_unexpected_shape_is_kept_as_other() {
        let body = parse(json!({"events": [{"type": "postback", "postback": "not an object"}]}));
        assert!(matches!(&body.events[0].kind, EventKind::Other { type_name, .. } if type_name == "postback"));
    }

    #[test]
    fn follow_and_postback_details() {
        let body = parse(json!({"events": [
            {"type": "follow", "follow": {"isUnblocked": true}, "source": {"type": "user", "userId": "U1"}},
            {"type": "postback", "postback": {"data": "q=dessert&a=yes", "params": {"date": "2026-01-01"}}}]}));
        assert!(matches!(&body.events[0].kind, EventKind::Follow { follow: Some(Follow { is_unblocked: true }) }));
        match &body.events[1].kind {
            EventKind::Postback { postback } => {
                assert_eq!(postback.data, "q=dessert&a=yes");
                assert_eq!(postback.params.as_ref().unwrap().date.as_deref(), Some("2026-01-01"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn channel_level_event_types_are_typed() {
        let body = parse(json!({"events": [
            {"type": "membership", "membership": {"type": "joined", "membershipId": 3189}},
            {"type": "module", "module": {"type": "attached", "botId": "Ub", "scopes": ["message:send"]}},
            {"type": "activated", "chatControl": {"expireAt": 1462629479859_i64}},
            {"type": "delivery", "delivery": {"data": "hashed"}},
            {"type": "botSuspended"}, {"type": "botResumed"}, {"type": "deactivated"}]}));
        assert!(
            matches!(&body.events[0].kind, EventKind::Membership { membership } if membership.membership_id == 3189)
        );
        assert!(
            matches!(&body.events[1].kind, EventKind::Module { module } if module.scopes.as_ref().unwrap().len() == 1)
        );
        assert!(matches!(&body.events[2].kind, EventKind::Activated { chat_control } if chat_control.expire_at > 0));
        assert!(matches!(&body.events[3].kind, EventKind::Delivery { delivery } if delivery.data == "hashed"));
        assert!(matches!(body.events[4].kind, EventKind::BotSuspended));
        assert!(body.events.iter().all(|e| !matches!(e.kind, EventKind::Other { .. })));
    }

    #[test]
    fn envelope_errors() {
        assert!(matches!(WebhookBody::parse(b"not json"), Err(ParseError::NotJson(_))));
        assert!(matches!(WebhookBody::parse(b"[]"), Err(ParseError::NotEnvelope(_))));
        assert!(matches!(WebhookBody::parse(br#"{"destination":"U"}"#), Err(ParseError::NotEnvelope(_))));
        assert!(matches!(WebhookBody::parse(br#"{"events":[1]}"#), Err(ParseError::NotEnvelope(_))));
        assert!(matches!(WebhookBody::parse(br#"{"events":[{"no":"type"}]}"#), Err(ParseError::NotEnvelope(_))));
        assert!(parse(json!({"destination": "U", "events": []})).events.is_empty());
    }

    #[test]
    fn derived_dedupe_key_ignores_key_order_and_differs_per_event() {
        let a =
            Event::from_value(json!({"type": "unfollow", "timestamp": 5, "source": {"type": "user", "userId": "U1"}}))
                .unwrap();
        let b = Event::from_value(
            serde_json::from_str(r#"{"source":{"userId":"U1","type":"user"},"timestamp":5,"type":"unfollow"}"#)
                .unwrap(),
        )
        .unwrap();
        let c =
            Event::from_value(json!({"type": "unfollow", "timestamp": 6, "source": {"type": "user", "userId": "U1"}}))
                .unwrap();
        assert_eq!(a.dedupe_key(), b.dedupe_key());
        assert_ne!(a.dedupe_key(), c.dedupe_key());
        assert!(a.dedupe_key().starts_with("sha256:") && a.dedupe_key().len() <= 128);
    }

    #[test]
    fn serialising_gives_back_the_raw_event() {
        let raw = json!({"type": "join", "timestamp": 1, "newField": {"a": [1, 2]}});
        let e = Event::from_value(raw.clone()).unwrap();
        assert_eq!(serde_json::to_value(&e).unwrap(), raw);
        let back: Event = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(back, e);
    }
}
