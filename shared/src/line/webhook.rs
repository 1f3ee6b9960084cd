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

use std::fmt;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
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
    /// The bot's user ID; absent in some older payloads (and ignored when it is not a string).
    pub destination: Option<String>,
    pub events: Vec<Event>,
}

impl WebhookBody {
    /// Parses a raw body. Only the envelope is strict: an object with an `events` array.
    ///
    /// One pass over the body finds each event's text without building anything for it; each
    /// event is then read once from its own text (see [`Event::from_raw`]) and keeps that text.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(ParseError::NotJson)?;
        match envelope {
            Envelope::NotObject => Err(ParseError::NotEnvelope("the top level is not an object")),
            Envelope::Object { events: None, .. } => {
                Err(ParseError::NotEnvelope("`events` is missing or not an array"))
            }
            Envelope::Object { destination, events: Some(events) } => Ok(Self {
                destination,
                events: events.into_iter().map(|raw| Event::from_raw(raw.to_owned())).collect(),
            }),
        }
    }
}

/// A visitor's answer to every JSON scalar (a string, number, bool or null): `$value`.
macro_rules! scalars_are {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// The envelope as one pass over the body sees it: each event's text is borrowed, not parsed.
/// Keys repeat as JSON objects allow: the last one counts.
enum Envelope<'a> {
    NotObject,
    Object { destination: Option<String>, events: Option<Vec<&'a RawValue>> },
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EnvelopeVisitor;
        impl<'de> Visitor<'de> for EnvelopeVisitor {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut destination, mut events) = (None, None);
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Known("destination") => destination = map.next_value::<Lenient<String>>()?.ok(),
                        Key::Known("events") => events = map.next_value::<Events<'de>>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Envelope::Object { destination, events })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| Envelope::NotObject)
            }
            scalars_are!(Envelope::NotObject);
        }
        d.deserialize_any(EnvelopeVisitor)
    }
}

/// `events`: each element's text, or None when it is not an array.
struct Events<'a>(Option<Vec<&'a RawValue>>);

impl<'de> Deserialize<'de> for Events<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EventsVisitor;
        impl<'de> Visitor<'de> for EventsVisitor {
            type Value = Events<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of events")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut events = Vec::with_capacity(32);
                while let Some(event) = seq.next_element::<&'de RawValue>()? {
                    events.push(event);
                }
                Ok(Events(Some(events)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|_| Events(None))
            }
            scalars_are!(Events(None));
        }
        d.deserialize_any(EventsVisitor)
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// An object key, matched against the names a reader knows without allocating.
enum Key {
    Known(&'static str),
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                // Every key the envelope and the event readers look at.
                Ok(Key::Known(match v {
                    "destination" => "destination",
                    "events" => "events",
                    "type" => "type",
                    "mode" => "mode",
                    "timestamp" => "timestamp",
                    "source" => "source",
                    "webhookEventId" => "webhookEventId",
                    "deliveryContext" => "deliveryContext",
                    "replyToken" => "replyToken",
                    "message" => "message",
                    "unsend" => "unsend",
                    "follow" => "follow",
                    "joined" => "joined",
                    "left" => "left",
                    "postback" => "postback",
                    "videoPlayComplete" => "videoPlayComplete",
                    "beacon" => "beacon",
                    "link" => "link",
                    "membership" => "membership",
                    "module" => "module",
                    "chatControl" => "chatControl",
                    "delivery" => "delivery",
                    "userId" => "userId",
                    "groupId" => "groupId",
                    "roomId" => "roomId",
                    "isRedelivery" => "isRedelivery",
                    "id" => "id",
                    "quoteToken" => "quoteToken",
                    "text" => "text",
                    "emojis" => "emojis",
                    "mention" => "mention",
                    "quotedMessageId" => "quotedMessageId",
                    "contentProvider" => "contentProvider",
                    "imageSet" => "imageSet",
                    "duration" => "duration",
                    "fileName" => "fileName",
                    "fileSize" => "fileSize",
                    "title" => "title",
                    "address" => "address",
                    "latitude" => "latitude",
                    "longitude" => "longitude",
                    "packageId" => "packageId",
                    "stickerId" => "stickerId",
                    "stickerResourceType" => "stickerResourceType",
                    "keywords" => "keywords",
                    _ => return Ok(Key::Other),
                }))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A value read for its documented type; any other JSON is consumed and remembered as wrong
/// (the event is then [`EventKind::Malformed`]), so one bad field never stops the reading.
enum Lenient<T> {
    Null,
    Ok(T),
    Wrong,
}

impl<T> Lenient<T> {
    fn ok(self) -> Option<T> {
        match self {
            Lenient::Ok(v) => Some(v),
            _ => None,
        }
    }
}

/// A JSON scalar read as a documented type: each conversion says which JSON values are that
/// type; the rest are [`Lenient::Wrong`].
trait Scalar: Sized {
    const EXPECTING: &'static str;
    fn from_str(_: &str) -> Option<Self> {
        None
    }
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
}

impl Scalar for String {
    const EXPECTING: &'static str = "a string";
    fn from_str(v: &str) -> Option<Self> {
        Some(v.to_string())
    }
}

impl Scalar for Mode {
    const EXPECTING: &'static str = "a mode";
    fn from_str(v: &str) -> Option<Self> {
        Some(Mode::parse(v))
    }
}

impl Scalar for i64 {
    const EXPECTING: &'static str = "an integer";
    fn from_i64(v: i64) -> Option<Self> {
        Some(v)
    }
    fn from_u64(v: u64) -> Option<Self> {
        i64::try_from(v).ok()
    }
}

impl Scalar for bool {
    const EXPECTING: &'static str = "a boolean";
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
}

struct ScalarVisitor<T>(std::marker::PhantomData<T>);

fn lenient<T>(v: Option<T>) -> Lenient<T> {
    v.map_or(Lenient::Wrong, Lenient::Ok)
}

impl<'de, T: Scalar> Visitor<'de> for ScalarVisitor<T> {
    type Value = Lenient<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(lenient(T::from_str(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(lenient(T::from_i64(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(lenient(T::from_u64(v)))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(lenient(T::from_bool(v)))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Lenient::Wrong)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Lenient::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Lenient::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq).map(|_| Lenient::Wrong)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map).map(|_| Lenient::Wrong)
    }
}

impl<'de, T: Scalar> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(std::marker::PhantomData))
    }
}

/// One pass over an event's text: the common fields read leniently, the payload objects
/// borrowed to be read by their own types.
#[derive(Default)]
struct Fields<'a> {
    type_name: Option<Lenient<String>>,
    mode: Option<Lenient<Mode>>,
    timestamp: Option<Lenient<i64>>,
    source: Option<Lenient<Source>>,
    webhook_event_id: Option<Lenient<String>>,
    delivery_context: Option<Lenient<DeliveryContext>>,
    reply_token: Option<Lenient<String>>,
    /// `message`, read as it goes by (it is most events' payload).
    message: Option<Lenient<Message>>,
    /// Payload fields by name (`message`, `postback`, ...).
    payloads: [Option<&'a RawValue>; PAYLOADS.len()],
    not_object: bool,
}

impl<'a> Fields<'a> {
    fn payload(&self, name: &str) -> Option<&'a RawValue> {
        PAYLOADS.iter().position(|p| *p == name).and_then(|i| self.payloads.get(i).copied().flatten())
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut f = Fields::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Known("type") => f.type_name = Some(map.next_value()?),
                        Key::Known("mode") => f.mode = Some(map.next_value()?),
                        Key::Known("timestamp") => f.timestamp = Some(map.next_value()?),
                        Key::Known("source") => f.source = Some(map.next_value()?),
                        Key::Known("webhookEventId") => f.webhook_event_id = Some(map.next_value()?),
                        Key::Known("deliveryContext") => f.delivery_context = Some(map.next_value()?),
                        Key::Known("replyToken") => f.reply_token = Some(map.next_value()?),
                        Key::Known("message") => f.message = Some(map.next_value()?),
                        Key::Known(name) => {
                            match PAYLOADS.iter().position(|p| *p == name).and_then(|i| f.payloads.get_mut(i)) {
                                Some(slot) => *slot = Some(map.next_value()?),
                                None => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(f)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| Fields { not_object: true, ..Fields::default() })
            }
            scalars_are!(Fields { not_object: true, ..Fields::default() });
        }
        d.deserialize_any(FieldsVisitor)
    }
}

/// The payload fields of the types other than `message` (which is read as it goes by).
const PAYLOADS: [&str; 12] = [
    "unsend",
    "follow",
    "joined",
    "left",
    "postback",
    "videoPlayComplete",
    "beacon",
    "link",
    "membership",
    "module",
    "chatControl",
    "delivery",
];

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
#[derive(Debug, Clone)]
pub struct Event {
    pub common: EventCommon,
    pub kind: EventKind,
    /// The event's text exactly as received (unknown fields, key order and number formatting
    /// included): what is forwarded to the queues.
    raw: Box<RawValue>,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.common == other.common && self.kind == other.kind && self.raw.get() == other.raw.get()
    }
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
    /// Takes each field that had its documented type; returns the first problem found (naming
    /// the field), if any.
    fn read(f: &mut Fields<'_>) -> (EventCommon, Option<String>) {
        let mut problem: Option<String> = None;
        let mut note = |p: String| {
            problem.get_or_insert(p);
        };
        let mut common = EventCommon::default();
        match f.type_name.take() {
            Some(Lenient::Ok(t)) => common.type_name = t,
            _ => note("`type` is missing or not a string".into()),
        }
        match f.mode.take() {
            None | Some(Lenient::Null) => {}
            Some(Lenient::Ok(m)) => common.mode = m,
            Some(Lenient::Wrong) => note("`mode` is not a string".into()),
        }
        match f.timestamp.take() {
            None | Some(Lenient::Null) => {}
            Some(Lenient::Ok(t)) => common.timestamp = t,
            Some(Lenient::Wrong) => note("`timestamp` is not an integer (milliseconds)".into()),
        }
        match f.source.take() {
            None | Some(Lenient::Null) => {}
            Some(Lenient::Ok(source)) => match source.check() {
                Ok(()) => common.source = Some(source),
                Err(p) => note(p),
            },
            Some(Lenient::Wrong) => note("`source` is not an object with a string `type` and string IDs".into()),
        }
        match f.webhook_event_id.take() {
            None | Some(Lenient::Null) => {}
            Some(Lenient::Ok(id)) => common.webhook_event_id = Some(id),
            Some(Lenient::Wrong) => note("`webhookEventId` is not a string".into()),
        }
        match f.delivery_context.take() {
            None | Some(Lenient::Null) => {}
            Some(Lenient::Ok(d)) => common.delivery_context = Some(d),
            Some(Lenient::Wrong) => note("`deliveryContext` is not {\"isRedelivery\": bool}".into()),
        }
        match f.reply_token.take() {
            None | Some(Lenient::Null) => {}
            Some(Lenient::Ok(t)) => common.reply_token = Some(t),
            Some(Lenient::Wrong) => note("`replyToken` is not a string".into()),
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
    /// Its IDs, when present, are LINE IDs of the right kind.
    fn check(&self) -> Result<(), String> {
        let ids = [("userId", &self.user_id, b'U'), ("groupId", &self.group_id, b'C'), ("roomId", &self.room_id, b'R')];
        for (field, id, kind) in ids {
            if let Some(id) = id {
                if !is_line_id(id, kind) {
                    return Err(format!("`source.{field}` is not a LINE ID ({} and 32 hex digits)", kind as char));
                }
            }
        }
        Ok(())
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

impl SourceKind {
    fn parse(s: &str) -> SourceKind {
        match s {
            "user" => SourceKind::User,
            "group" => SourceKind::Group,
            "room" => SourceKind::Room,
            _ => SourceKind::Unknown,
        }
    }
}

/// The typed payload of each documented event type.
#[derive(Debug, Clone, PartialEq)]
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
    Other {
        type_name: String,
    },
    /// An event whose shape is not LINE's: `reason` names the field (never its content).
    /// Kept and forwarded raw; consumers skip it.
    Malformed {
        type_name: String,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: Option<String>,
    pub content: MessageContent,
    pub quote_token: Option<String>,
}

/// Message payloads. Unknown message types become `Unknown` (the raw event still has them).
#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent {
    Text {
        text: String,
        emojis: Option<Vec<Value>>,
        mention: Option<Value>,
        quoted_message_id: Option<String>,
    },
    Image {
        content_provider: Option<ContentProvider>,
        image_set: Option<Value>,
    },
    Video {
        duration: Option<u64>,
        content_provider: Option<ContentProvider>,
    },
    Audio {
        duration: Option<u64>,
        content_provider: Option<ContentProvider>,
    },
    File {
        file_name: Option<String>,
        file_size: Option<u64>,
    },
    Location {
        title: Option<String>,
        address: Option<String>,
        latitude: f64,
        longitude: f64,
    },
    Sticker {
        package_id: String,
        sticker_id: String,
        sticker_resource_type: Option<String>,
        keywords: Option<Vec<String>>,
        text: Option<String>,
    },
    Unknown,
}

/// A `message` object in one pass: `id`, `type`, `quoteToken` and `text` read as they go by, the
/// fields of the other message types kept as text and read by their types only for the message
/// type that has them (as LINE's types do, each ignores the others' fields).
#[derive(Default)]
struct MessageFields<'a> {
    id: Option<Lenient<String>>,
    kind: Option<Lenient<String>>,
    quote_token: Option<Lenient<String>>,
    text: Option<Lenient<String>>,
    others: Vec<(&'static str, &'a RawValue)>,
}

/// An optional field of a message type: absent or null is None; another type is `Err`.
fn opt<T: serde::de::DeserializeOwned>(f: &MessageFields<'_>, name: &str) -> Result<Option<T>, ()> {
    match f.others.iter().rev().find(|(n, _)| *n == name) {
        None => Ok(None),
        Some((_, raw)) => serde_json::from_str(raw.get()).map_err(|_| ()),
    }
}

/// A string field: absent or null is None; another type is `Err`.
fn string(v: Option<Lenient<String>>) -> Result<Option<String>, ()> {
    match v {
        None | Some(Lenient::Null) => Ok(None),
        Some(Lenient::Ok(s)) => Ok(Some(s)),
        Some(Lenient::Wrong) => Err(()),
    }
}

fn required<T>(v: Option<T>) -> Result<T, ()> {
    v.ok_or(())
}

impl Message {
    fn from_fields(mut f: MessageFields<'_>) -> Result<Message, ()> {
        let id = string(f.id.take())?;
        let quote_token = string(f.quote_token.take())?;
        let kind = string(f.kind.take())?.ok_or(())?;
        let content = match kind.as_str() {
            "text" => MessageContent::Text {
                text: required(string(f.text.take())?)?,
                emojis: opt(&f, "emojis")?,
                mention: opt(&f, "mention")?,
                quoted_message_id: opt(&f, "quotedMessageId")?,
            },
            "image" => {
                MessageContent::Image { content_provider: opt(&f, "contentProvider")?, image_set: opt(&f, "imageSet")? }
            }
            "video" => {
                MessageContent::Video { duration: opt(&f, "duration")?, content_provider: opt(&f, "contentProvider")? }
            }
            "audio" => {
                MessageContent::Audio { duration: opt(&f, "duration")?, content_provider: opt(&f, "contentProvider")? }
            }
            "file" => MessageContent::File { file_name: opt(&f, "fileName")?, file_size: opt(&f, "fileSize")? },
            "location" => MessageContent::Location {
                title: opt(&f, "title")?,
                address: opt(&f, "address")?,
                latitude: required(opt(&f, "latitude")?)?,
                longitude: required(opt(&f, "longitude")?)?,
            },
            "sticker" => MessageContent::Sticker {
                package_id: required(opt(&f, "packageId")?)?,
                sticker_id: required(opt(&f, "stickerId")?)?,
                sticker_resource_type: opt(&f, "stickerResourceType")?,
                keywords: opt(&f, "keywords")?,
                text: string(f.text.take())?,
            },
            _ => MessageContent::Unknown,
        };
        Ok(Message { id, content, quote_token })
    }
}

/// Object readers that never fail on content: `Wrong` when the value is not the object LINE
/// documents (the event is then malformed), `Null` for null.
macro_rules! lenient_object {
    ($t:ty, $expecting:literal, |$map:ident| $body:block) => {
        impl<'de> Deserialize<'de> for Lenient<$t> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Lenient<$t>;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut $map: A) -> Result<Self::Value, A::Error> {
                        $body
                    }
                    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                        Ok(Lenient::Wrong)
                    }
                    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                        Ok(Lenient::Wrong)
                    }
                    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                        Ok(Lenient::Wrong)
                    }
                    fn visit_unit<E>(self) -> Result<Self::Value, E> {
                        Ok(Lenient::Null)
                    }
                    fn visit_none<E>(self) -> Result<Self::Value, E> {
                        Ok(Lenient::Null)
                    }
                    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                        Ok(Lenient::Wrong)
                    }
                    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                        Ok(Lenient::Wrong)
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                        drain_seq(seq).map(|_| Lenient::Wrong)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

lenient_object!(Message, "a message object", |map| {
    let mut f = MessageFields::default();
    while let Some(key) = map.next_key::<Key>()? {
        match key {
            Key::Known("id") => f.id = Some(map.next_value()?),
            Key::Known("type") => f.kind = Some(map.next_value()?),
            Key::Known("quoteToken") => f.quote_token = Some(map.next_value()?),
            Key::Known("text") => f.text = Some(map.next_value()?),
            Key::Known(
                name @ ("emojis"
                | "mention"
                | "quotedMessageId"
                | "contentProvider"
                | "imageSet"
                | "duration"
                | "fileName"
                | "fileSize"
                | "title"
                | "address"
                | "latitude"
                | "longitude"
                | "packageId"
                | "stickerId"
                | "stickerResourceType"
                | "keywords"),
            ) => f.others.push((name, map.next_value()?)),
            Key::Known(_) | Key::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(Message::from_fields(f).map_or(Lenient::Wrong, Lenient::Ok))
});

lenient_object!(Source, "a source object", |map| {
    // Each field as last written (a key given twice counts once, its last value).
    let (mut kind, mut user_id, mut group_id, mut room_id) = (None, Ok(None), Ok(None), Ok(None));
    while let Some(key) = map.next_key::<Key>()? {
        let id = match key {
            Key::Known("type") => {
                kind = Some(map.next_value::<Lenient<String>>()?.ok().map(|t| SourceKind::parse(&t)));
                continue;
            }
            Key::Known("userId") => &mut user_id,
            Key::Known("groupId") => &mut group_id,
            Key::Known("roomId") => &mut room_id,
            _ => {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
        };
        *id = string(Some(map.next_value()?));
    }
    Ok(match (kind, user_id, group_id, room_id) {
        (Some(Some(kind)), Ok(user_id), Ok(group_id), Ok(room_id)) => {
            Lenient::Ok(Source { kind, user_id, group_id, room_id })
        }
        _ => Lenient::Wrong,
    })
});

lenient_object!(DeliveryContext, "a delivery context", |map| {
    let (mut is_redelivery, mut ok) = (false, true);
    while let Some(key) = map.next_key::<Key>()? {
        match key {
            // The last value counts.
            Key::Known("isRedelivery") => match map.next_value::<Lenient<bool>>()? {
                Lenient::Ok(v) => (is_redelivery, ok) = (v, true),
                Lenient::Null | Lenient::Wrong => ok = false,
            },
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(if ok { Lenient::Ok(DeliveryContext { is_redelivery }) } else { Lenient::Wrong })
});

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

/// A payload read by its own type: `Err` when it is missing (or null) or not in LINE's shape.
fn payload<T: serde::de::DeserializeOwned>(raw: Option<&RawValue>) -> Result<T, ()> {
    serde_json::from_str(raw.ok_or(())?.get()).map_err(|_| ())
}

fn message(f: &mut Fields<'_>) -> Result<Message, ()> {
    match f.message.take() {
        Some(Lenient::Ok(message)) => Ok(message),
        other => {
            f.message = other;
            Err(())
        }
    }
}

impl EventKind {
    /// The typed payload of a known type (None: a type this model does not know); `Err` when the
    /// payload is not in LINE's shape.
    fn read(type_name: &str, f: &mut Fields<'_>) -> Option<Result<EventKind, ()>> {
        let payloads = &*f;
        let p = |name: &str| payloads.payload(name);
        let kind = match type_name {
            "message" => message(f).map(|message| EventKind::Message { message }),
            "messageEdited" => message(f).map(|message| EventKind::MessageEdited { message }),
            "unsend" => payload(p("unsend")).map(|unsend| EventKind::Unsend { unsend }),
            "follow" => match p("follow") {
                None => Ok(EventKind::Follow { follow: None }),
                some => payload(some).map(|follow| EventKind::Follow { follow }),
            },
            "unfollow" => Ok(EventKind::Unfollow),
            "join" => Ok(EventKind::Join),
            "leave" => Ok(EventKind::Leave),
            "memberJoined" => payload(p("joined")).map(|joined| EventKind::MemberJoined { joined }),
            "memberLeft" => payload(p("left")).map(|left| EventKind::MemberLeft { left }),
            "postback" => payload(p("postback")).map(|postback| EventKind::Postback { postback }),
            "videoPlayComplete" => payload(p("videoPlayComplete"))
                .map(|video_play_complete| EventKind::VideoPlayComplete { video_play_complete }),
            "beacon" => payload(p("beacon")).map(|beacon| EventKind::Beacon { beacon }),
            "accountLink" => payload(p("link")).map(|link| EventKind::AccountLink { link }),
            "membership" => payload(p("membership")).map(|membership| EventKind::Membership { membership }),
            "module" => payload(p("module")).map(|module| EventKind::Module { module }),
            "activated" => payload(p("chatControl")).map(|chat_control| EventKind::Activated { chat_control }),
            "deactivated" => Ok(EventKind::Deactivated),
            "botSuspended" => Ok(EventKind::BotSuspended),
            "botResumed" => Ok(EventKind::BotResumed),
            "delivery" => payload(p("delivery")).map(|delivery| EventKind::Delivery { delivery }),
            _ => return None,
        };
        Some(kind)
    }
}

/// What is wrong with a known type's payload, naming the field and never its value (serde's own
/// message quotes the value: message text, say).
fn payload_problem(type_name: &str, f: &Fields<'_>) -> String {
    match payload_field(type_name) {
        Some("message") if matches!(f.message, None | Some(Lenient::Null)) => "`message` is missing".to_string(),
        Some("message") => "`message` is not in LINE's shape".to_string(),
        Some(field) if f.payload(field).is_none_or(|raw| raw.get() == "null") => format!("`{field}` is missing"),
        Some(field) => format!("`{field}` is not in LINE's shape"),
        None => format!("the `{type_name}` event is not in LINE's shape"),
    }
}

impl Event {
    /// Reads an event from its text, in one pass. Never fails: what is not LINE's shape is kept
    /// as [`EventKind::Malformed`], with its text.
    pub fn from_raw(raw: Box<RawValue>) -> Self {
        let reason = match serde_json::from_str::<Fields<'_>>(raw.get()) {
            Ok(fields) if !fields.not_object => Ok(fields),
            Ok(_) => Err("the event is not an object".to_string()),
            // Valid JSON that this reader refuses where it reads: a number out of range or a lone
            // surrogate in a field it looks at (serde_json's message names neither's content).
            Err(e) => Err(format!("the event cannot be read: {e}")),
        };
        let mut fields = match reason {
            Ok(fields) => fields,
            Err(reason) => {
                let kind = EventKind::Malformed { type_name: String::new(), reason };
                return Self { common: EventCommon::default(), kind, raw };
            }
        };
        let (mut common, problem) = EventCommon::read(&mut fields);
        let kind = match problem {
            Some(reason) => {
                // Nothing may be answered on an event whose common fields are not LINE's (a source
                // that is not LINE's was never read into `common`: nothing is keyed on it either).
                common.reply_token = None;
                EventKind::Malformed { type_name: common.type_name.clone(), reason }
            }
            None => match EventKind::read(&common.type_name, &mut fields) {
                Some(Ok(kind)) => kind,
                Some(Err(())) => EventKind::Malformed {
                    type_name: common.type_name.clone(),
                    reason: payload_problem(&common.type_name, &fields),
                },
                None => EventKind::Other { type_name: common.type_name.clone() },
            },
        };
        drop(fields);
        Self { common, kind, raw }
    }

    /// An event from a JSON value (its text is the value written out).
    pub fn from_value(value: Value) -> Self {
        // Writing a Value out gives valid JSON, which is all RawValue checks.
        let raw = RawValue::from_string(value.to_string()).unwrap_or_default();
        Self::from_raw(raw)
    }

    /// The event's text exactly as received.
    pub fn raw(&self) -> &str {
        self.raw.get()
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
                match serde_json::from_str::<Value>(self.raw.get()) {
                    Ok(value) => write_canonical(&value, &mut canonical),
                    // JSON a tree cannot hold (nested past serde_json's limit, a number out of
                    // range): its own bytes, marked so they never equal a canonical form.
                    Err(_) => {
                        canonical.extend_from_slice(b"raw:");
                        canonical.extend_from_slice(self.raw.get().as_bytes());
                    }
                }
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

/// Writes the event's text as received, byte for byte.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

/// Reads the event's text as it is (serde_json deserializers only: the text is taken verbatim).
impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Event::from_raw(Box::<RawValue>::deserialize(d)?))
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
        assert_eq!(serde_json::from_str::<Value>(body.events[0].raw()).unwrap()["x"], 1);
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
            assert_eq!(body.events[1].raw(), bad.to_string(), "kept exactly as sent");
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
        let back: Event = serde_json::from_str(&raw.to_string()).unwrap();
        assert_eq!(back, e);
    }
}
