//! Typed model of a LINE webhook request body.
//!
//! Tolerant by design (LINE adds fields and types without notice, and a signed body must never be
//! refused, or answered 5xx again and again, for the content of one event):
//! - only the envelope is strict: a JSON object with an `events` array; anything else is a 400;
//! - unknown fields are ignored by the typed view and kept in [`Event::raw`];
//! - unknown event types become [`EventKind::Other`]; events whose shape is not LINE's (a field of
//!   the wrong type, an event that is not an object, a chat ID that is not a LINE ID) become
//!   [`EventKind::Malformed`] with a reason that names the field. Both are kept raw and forwarded;
//!   consumers skip malformed ones with that reason. Nothing LINE sends is lost;
//! - older shapes without `webhookEventId`, `deliveryContext`, `mode`, `timestamp` or `destination`
//!   are accepted; [`Event::dedupe_key`] then derives a key from the event itself.
//!
//! IDs are used as keys (DynamoDB items, SQS message groups) only when they are LINE IDs:
//! [`Event::user_id`] and [`Event::chat_id`] return nothing else.
//!
//! Serialising an [`Event`] writes back exactly the JSON it was parsed from.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
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
    /// The bot's user ID; absent in some older payloads (and ignored when it is not a string).
    pub destination: Option<String>,
    pub events: Vec<Event>,
}

impl WebhookBody {
    /// Parses a raw body. Only the envelope is strict: an object with an `events` array.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let value: Value = serde_json::from_slice(body).map_err(ParseError::NotJson)?;
        let Value::Object(mut envelope) = value else {
            return Err(ParseError::NotEnvelope("the top level is not an object"));
        };
        let Some(Value::Array(raw_events)) = envelope.remove("events") else {
            return Err(ParseError::NotEnvelope("`events` is missing or not an array"));
        };
        let destination = match envelope.remove("destination") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        Ok(Self { destination, events: raw_events.into_iter().map(Event::from_value).collect() })
    }
}

/// Whether `s` is a LINE ID of the given kind: the letter and 32 lower-case hex digits.
fn is_line_id(s: &str, kind: u8) -> bool {
    let b = s.as_bytes();
    b.len() == 33
        && b.first() == Some(&kind)
        && b.iter().skip(1).all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// A LINE user ID: `U` and 32 lower-case hex digits.
pub fn is_user_id(s: &str) -> bool {
    is_line_id(s, b'U')
}

/// A LINE user, group or room ID (`U`, `C`, `R` and 32 lower-case hex digits).
pub fn is_chat_id(s: &str) -> bool {
    is_line_id(s, b'U') || is_line_id(s, b'C') || is_line_id(s, b'R')
}

/// One webhook event: the common fields, the typed payload, and the JSON it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub common: EventCommon,
    pub kind: EventKind,
    /// The event exactly as received (unknown fields included).
    pub raw: Value,
}

/// Fields every event type shares. All optional or defaulted: older payloads lack several, and a
/// field of the wrong type is left at its default (the event is then [`EventKind::Malformed`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventCommon {
    pub type_name: String,
    pub mode: Mode,
    /// Milliseconds since the epoch when the event occurred (unchanged on redelivery); 0 if absent.
    pub timestamp: i64,
    pub source: Option<Source>,
    pub webhook_event_id: Option<String>,
    pub delivery_context: Option<DeliveryContext>,
    pub reply_token: Option<String>,
}

impl EventCommon {
    /// Reads each field on its own; returns the fields that had their documented type, and the
    /// first problem found (naming the field), if any.
    fn read(map: &Map<String, Value>) -> (EventCommon, Option<String>) {
        let mut problem: Option<String> = None;
        let mut note = |p: String| {
            problem.get_or_insert(p);
        };
        let mut common = EventCommon::default();
        match map.get("type") {
            Some(Value::String(t)) => common.type_name = t.clone(),
            _ => note("`type` is missing or not a string".into()),
        }
        match map.get("mode") {
            None | Some(Value::Null) => {}
            Some(Value::String(m)) => common.mode = Mode::parse(m),
            Some(_) => note("`mode` is not a string".into()),
        }
        match map.get("timestamp") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_i64() {
                Some(t) => common.timestamp = t,
                None => note("`timestamp` is not an integer (milliseconds)".into()),
            },
        }
        match map.get("source") {
            None | Some(Value::Null) => {}
            Some(v) => match Source::read(v) {
                Ok(source) => common.source = Some(source),
                Err(p) => note(p),
            },
        }
        match map.get("webhookEventId") {
            None | Some(Value::Null) => {}
            Some(Value::String(id)) => common.webhook_event_id = Some(id.clone()),
            Some(_) => note("`webhookEventId` is not a string".into()),
        }
        match map.get("deliveryContext") {
            None | Some(Value::Null) => {}
            Some(v) => match DeliveryContext::deserialize(v) {
                Ok(d) => common.delivery_context = Some(d),
                Err(_) => note("`deliveryContext` is not {\"isRedelivery\": bool}".into()),
            },
        }
        match map.get("replyToken") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) => common.reply_token = Some(t.clone()),
            Some(_) => note("`replyToken` is not a string".into()),
        }
        (common, problem)
    }
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

impl Mode {
    fn parse(s: &str) -> Mode {
        match s {
            "active" => Mode::Active,
            "standby" => Mode::Standby,
            _ => Mode::Unknown,
        }
    }
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

impl Source {
    /// A `source` object: a string `type` and, when present, LINE IDs of the right kind.
    fn read(v: &Value) -> Result<Source, String> {
        let source = Source::deserialize(v)
            .map_err(|_| "`source` is not an object with a string `type` and string IDs".to_string())?;
        let ids =
            [("userId", &source.user_id, b'U'), ("groupId", &source.group_id, b'C'), ("roomId", &source.room_id, b'R')];
        for (field, id, kind) in ids {
            if let Some(id) = id {
                if !is_line_id(id, kind) {
                    return Err(format!("`source.{field}` is not a LINE ID ({} and 32 hex digits)", kind as char));
                }
            }
        }
        Ok(source)
    }
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
    /// A type this model does not know (LINE added it); see [`Event::raw`] for what was sent.
    #[serde(skip)]
    Other {
        type_name: String,
    },
    /// An event whose shape is not LINE's: `reason` names the field (never its content).
    /// Kept and forwarded raw; consumers skip it.
    #[serde(skip)]
    Malformed {
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

/// The field that holds a known event type's payload (`None`: the type has none, or an optional one).
fn payload_field(type_name: &str) -> Option<&'static str> {
    Some(match type_name {
        "message" | "messageEdited" => "message",
        "unsend" => "unsend",
        "memberJoined" => "joined",
        "memberLeft" => "left",
        "postback" => "postback",
        "videoPlayComplete" => "videoPlayComplete",
        "beacon" => "beacon",
        "accountLink" => "link",
        "membership" => "membership",
        "module" => "module",
        "activated" => "chatControl",
        "delivery" => "delivery",
        _ => return None,
    })
}

/// What is wrong with a known type's payload, naming the field and never its value (serde's own
/// message quotes the value: message text, say).
fn payload_problem(type_name: &str, map: &Map<String, Value>) -> String {
    match payload_field(type_name) {
        Some(field) if map.get(field).is_none_or(Value::is_null) => format!("`{field}` is missing"),
        Some(field) => format!("`{field}` is not in LINE's shape"),
        None => format!("the `{type_name}` event is not in LINE's shape"),
    }
}

impl Event {
    /// Builds an event from its JSON. Never fails: what is not LINE's shape is kept as
    /// [`EventKind::Malformed`].
    pub fn from_value(raw: Value) -> Self {
        let Value::Object(map) = &raw else {
            let kind = EventKind::Malformed { type_name: String::new(), reason: "the event is not an object".into() };
            return Self { common: EventCommon::default(), kind, raw };
        };
        let (mut common, problem) = EventCommon::read(map);
        let kind = match problem {
            Some(reason) => {
                // Nothing may be answered on an event whose common fields are not LINE's (a source
                // that is not LINE's was never read into `common`: nothing is keyed on it either).
                common.reply_token = None;
                EventKind::Malformed { type_name: common.type_name.clone(), reason }
            }
            None if KNOWN_TYPES.contains(&common.type_name.as_str()) => {
                EventKind::deserialize(&raw).unwrap_or_else(|_| EventKind::Malformed {
                    type_name: common.type_name.clone(),
                    reason: payload_problem(&common.type_name, map),
                })
            }
            None => EventKind::Other { type_name: common.type_name.clone() },
        };
        Self { common, kind, raw }
    }

    /// Why the event is malformed, when it is.
    pub fn malformed(&self) -> Option<&str> {
        match &self.kind {
            EventKind::Malformed { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The friend this event is about, when there is one (a LINE user ID, never anything else).
    pub fn user_id(&self) -> Option<&str> {
        self.common.source.as_ref()?.user_id.as_deref().filter(|id| is_user_id(id))
    }

    /// The chat the event belongs to: the user, else the group or room (LINE IDs only).
    pub fn chat_id(&self) -> Option<&str> {
        let s = self.common.source.as_ref()?;
        s.user_id.as_deref().or(s.group_id.as_deref()).or(s.room_id.as_deref()).filter(|id| is_chat_id(id))
    }

    /// Whether the event comes from a 1:1 chat with a friend (`source.type` user, a LINE user ID).
    pub fn is_one_to_one(&self) -> bool {
        self.common.source.as_ref().is_some_and(|s| s.kind == SourceKind::User) && self.user_id().is_some()
    }

    pub fn is_redelivery(&self) -> bool {
        self.common.delivery_context.as_ref().is_some_and(|d| d.is_redelivery)
    }

    /// The key this event is deduplicated by: its `webhookEventId` (a ULID: 1-64 letters and
    /// digits); for older payloads without one, or with one that is not such an ID, `sha256:` +
    /// the hex SHA-256 of the event's JSON with object keys sorted (so the same event always gives
    /// the same key, whatever the key order it arrives in). Either way it is a valid DynamoDB key
    /// and SQS deduplication ID.
    pub fn dedupe_key(&self) -> String {
        match self.common.webhook_event_id.as_deref() {
            Some(id) if (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()) => id.to_string(),
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
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by_key(|(k, _)| *k);
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(v, out);
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
        Ok(Event::from_value(Value::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const U1: &str = "U0123456789abcdef0123456789abcdef";

    fn parse(v: Value) -> WebhookBody {
        WebhookBody::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn text_message_is_typed() {
        let body = parse(json!({"destination": "Ubot", "events": [{
            "type": "message", "mode": "active", "timestamp": 1700000000000_i64,
            "source": {"type": "user", "userId": U1}, "webhookEventId": "01H", "replyToken": "rt",
            "deliveryContext": {"isRedelivery": true},
            "message": {"id": "1", "type": "text", "text": "hello", "quoteToken": "q"}}]}));
        let e = &body.events[0];
        assert_eq!(e.user_id(), Some(U1));
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
            {"type": "greatNewFeature", "timestamp": 1, "source": {"type": "user", "userId": U1}, "x": 1},
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
    fn known_type_with_unexpected_shape_is_kept_as_malformed_without_quoting_it() {
        let body = parse(json!({"events": [{"type": "postback", "postback": "my secret answer"},
            {"type": "message", "message": {"type": "text", "text": ["my private words"]}}]}));
        assert!(matches!(&body.events[0].kind, EventKind::Malformed { type_name, .. } if type_name == "postback"));
        let reasons: Vec<&str> = body.events.iter().map(|e| e.malformed().unwrap()).collect();
        for reason in &reasons {
            assert!(!reason.contains("secret") && !reason.contains("private"), "reasons never quote content: {reason}");
        }
        assert_eq!(reasons, ["`postback` is not in LINE's shape", "`message` is not in LINE's shape"]);
        let missing = Event::from_value(json!({"type": "unsend"}));
        assert_eq!(missing.malformed(), Some("`unsend` is missing"));
    }

    #[test]
    fn a_malformed_common_field_keeps_the_event_raw_and_names_the_field() {
        let good = json!({"type": "message", "timestamp": 1, "webhookEventId": "01GOOD", "replyToken": "rt",
            "source": {"type": "user", "userId": U1}, "message": {"id": "1", "type": "text", "text": "hi"}});
        let cases = [
            ("timestamp", json!(1.5e12), "`timestamp`"),
            ("source", json!({"userId": U1}), "`source`"),
            ("source", json!({"type": "user", "userId": "bob"}), "`source.userId` is not a LINE ID"),
            ("source", json!({"type": "user", "userId": "x".repeat(3000)}), "`source.userId`"),
            ("replyToken", json!(7), "`replyToken`"),
            ("mode", json!(["active"]), "`mode`"),
            ("webhookEventId", json!({"id": 1}), "`webhookEventId`"),
            ("type", json!(3), "`type`"),
        ];
        for (field, value, named) in cases {
            let mut bad = good.clone();
            bad[field] = value;
            let body = parse(json!({"events": [good.clone(), bad.clone(), 17, "text", null]}));
            assert_eq!(body.events.len(), 5, "{field}: nothing is dropped");
            assert!(matches!(body.events[0].kind, EventKind::Message { .. }), "{field}: the neighbour is intact");
            let reason = body.events[1].malformed().unwrap_or_else(|| panic!("{field}: not malformed"));
            assert!(reason.contains(named), "{field}: {reason}");
            assert_eq!(body.events[1].raw, bad, "kept exactly as sent");
            assert_eq!(body.events[1].common.reply_token, None, "never answered");
            assert!(body.events[1].user_id().is_none() || field != "source");
            assert!(body.events[2..].iter().all(|e| e.malformed() == Some("the event is not an object")));
        }
    }

    #[test]
    fn ids_that_are_not_line_ids_are_never_handed_out() {
        for id in [
            "U1",
            "u0123456789abcdef0123456789abcdef",
            "U0123456789ABCDEF0123456789ABCDEF",
            "C0123456789abcdef0123456789abcdef",
        ] {
            let e = Event::from_value(json!({"type": "unfollow", "source": {"type": "user", "userId": id}}));
            assert_eq!(e.user_id(), None, "{id}");
            assert_eq!(e.chat_id(), None, "{id}");
            assert!(e.malformed().is_some(), "{id}");
        }
        let group = "C0123456789abcdef0123456789abcdef";
        let e = Event::from_value(json!({"type": "join", "source": {"type": "group", "groupId": group}}));
        assert_eq!((e.chat_id(), e.user_id(), e.is_one_to_one()), (Some(group), None, false));
    }

    #[test]
    fn dedupe_keys_are_always_usable_as_sqs_and_dynamodb_keys() {
        let ulid = Event::from_value(json!({"type": "join", "webhookEventId": "01FZ74A0TDDPYRVKNK77XKC3ZR"}));
        assert_eq!(ulid.dedupe_key(), "01FZ74A0TDDPYRVKNK77XKC3ZR");
        for id in ["x".repeat(3000), "a b".into(), "ünï".into(), String::new()] {
            let e = Event::from_value(json!({"type": "join", "webhookEventId": id}));
            let key = e.dedupe_key();
            assert!(key.starts_with("sha256:") && key.len() == 71, "{key}");
        }
    }

    #[test]
    fn follow_and_postback_details() {
        let body = parse(json!({"events": [
            {"type": "follow", "follow": {"isUnblocked": true}, "source": {"type": "user", "userId": U1}},
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
        assert!(matches!(WebhookBody::parse(br#"{"events":{}}"#), Err(ParseError::NotEnvelope(_))));
        // One bad event never sinks the body: it is kept raw.
        assert!(WebhookBody::parse(br#"{"events":[1]}"#).unwrap().events[0].malformed().is_some());
        assert!(WebhookBody::parse(br#"{"events":[{"no":"type"}]}"#).unwrap().events[0].malformed().is_some());
        assert!(WebhookBody::parse(br#"{"destination":5,"events":[]}"#).unwrap().destination.is_none());
        assert!(parse(json!({"destination": "U", "events": []})).events.is_empty());
    }

    #[test]
    fn derived_dedupe_key_ignores_key_order_and_differs_per_event() {
        let a =
            Event::from_value(json!({"type": "unfollow", "timestamp": 5, "source": {"type": "user", "userId": U1}}));
        let b = Event::from_value(
            serde_json::from_str(&format!(
                r#"{{"source":{{"userId":"{U1}","type":"user"}},"timestamp":5,"type":"unfollow"}}"#
            ))
            .unwrap(),
        );
        let c =
            Event::from_value(json!({"type": "unfollow", "timestamp": 6, "source": {"type": "user", "userId": U1}}));
        assert_eq!(a.dedupe_key(), b.dedupe_key());
        assert_ne!(a.dedupe_key(), c.dedupe_key());
        assert!(a.dedupe_key().starts_with("sha256:") && a.dedupe_key().len() <= 128);
    }

    #[test]
    fn serialising_gives_back_the_raw_event() {
        let raw = json!({"type": "join", "timestamp": 1, "newField": {"a": [1, 2]}});
        let e = Event::from_value(raw.clone());
        assert_eq!(serde_json::to_value(&e).unwrap(), raw);
        let back: Event = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(back, e);
    }
}
