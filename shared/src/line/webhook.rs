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
//! An [`Event`] keeps the exact text it was read from ([`Event::raw`]): what the queues carry.
//!
//! The model borrows from the text it was read from: the event's text and every string without
//! escapes are slices of it (`Cow::Borrowed`); only a string with escapes is decoded into its own
//! (`Cow::Owned`). Parsing a body copies none of it. [`WebhookBody::into_owned`] and
//! [`Event::into_owned`] give a model that outlives the text.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::json;
use sha2::{Digest, Sha256};

/// Why a request body is not a LINE webhook envelope.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not JSON: {0}")]
    NotJson(json::Error),
    #[error("body is not a LINE webhook envelope: {0}")]
    NotEnvelope(&'static str),
}

/// `{"destination": "...", "events": [...]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookBody<'a> {
    /// The bot's user ID; absent in some older payloads (and ignored when it is not a string).
    pub destination: Option<Cow<'a, str>>,
    pub events: Vec<Event<'a>>,
}

impl<'a> WebhookBody<'a> {
    /// Parses a raw body. Only the envelope is strict: an object with an `events` array.
    ///
    /// One pass over the body: each event is read by its type as the reader crosses it, and
    /// borrows the stretch of text it was read from. Keys repeat as JSON objects allow: the last
    /// one counts.
    pub fn parse(body: &'a [u8]) -> Result<Self, ParseError> {
        let text = std::str::from_utf8(body).map_err(|e| {
            // Placed where the valid text ends.
            let valid = body.get(..e.valid_up_to()).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default();
            let mut r = json::Reader::new(valid);
            r.rewind(valid.len());
            ParseError::NotJson(r.locate(r.error("invalid UTF-8")))
        })?;
        let mut r = json::Reader::new(text);
        Self::read(&mut r).map_err(|e| ParseError::NotJson(r.locate(e)))?
    }

    /// The same body, owning its text.
    pub fn into_owned(self) -> WebhookBody<'static> {
        WebhookBody {
            destination: self.destination.map(owned),
            events: self.events.into_iter().map(Event::into_owned).collect(),
        }
    }

    /// The envelope at the reader: the body (Err) or the reason it is not an envelope (Ok(Err)).
    fn read(r: &mut json::Reader<'a>) -> Result<Result<Self, ParseError>, json::Error> {
        if r.peek_past_ws() != Some(b'{') {
            r.skip()?;
            r.end()?;
            return Ok(Err(ParseError::NotEnvelope("the top level is not an object")));
        }
        let (mut destination, mut events) = (None, None);
        r.object(|r, key| {
            match key {
                "destination" => destination = text(r)?.ok(),
                "events" if r.peek_past_ws() == Some(b'[') => {
                    let mut list = Vec::with_capacity(4);
                    r.array(|r| {
                        list.push(Event::read(r)?);
                        Ok(())
                    })?;
                    events = Some(list);
                }
                _ => {
                    r.skip()?;
                    if key == "events" {
                        events = None;
                    }
                }
            }
            Ok(())
        })?;
        r.end()?;
        Ok(match events {
            None => Err(ParseError::NotEnvelope("`events` is missing or not an array")),
            Some(events) => Ok(Self { destination, events }),
        })
    }
}

/// A value read for its documented type; any other JSON is crossed and remembered as wrong
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

    fn map<U>(self, f: impl FnOnce(T) -> U) -> Lenient<U> {
        match self {
            Lenient::Ok(v) => Lenient::Ok(f(v)),
            Lenient::Null => Lenient::Null,
            Lenient::Wrong => Lenient::Wrong,
        }
    }

    /// An optional field: absent or null is None; another type is `Err`.
    fn optional(v: Option<Self>) -> Result<Option<T>, ()> {
        match v {
            None | Some(Lenient::Null) => Ok(None),
            Some(Lenient::Ok(v)) => Ok(Some(v)),
            Some(Lenient::Wrong) => Err(()),
        }
    }
}

type Read<T> = Result<T, json::Error>;

/// The value at `r`, read by `read` when it starts as the JSON type `T` is written (`starts`);
/// null is `Null`; any other value is crossed and is `Wrong`.
fn lenient<'a, T>(
    r: &mut json::Reader<'a>,
    starts: fn(u8) -> bool,
    read: impl FnOnce(&mut json::Reader<'a>) -> Read<Lenient<T>>,
) -> Read<Lenient<T>> {
    match r.peek_past_ws() {
        Some(b) if starts(b) => read(r),
        Some(b'n') => r.skip().map(|()| Lenient::Null),
        _ => r.skip().map(|()| Lenient::Wrong),
    }
}

/// A string's text, borrowed when it has no escapes.
fn text<'a>(r: &mut json::Reader<'a>) -> Read<Lenient<Cow<'a, str>>> {
    lenient(r, |b| b == b'"', |r| r.string_value().map(Lenient::Ok))
}

/// A text that owns its string (one that already does is moved, not copied).
fn owned(s: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(s.into_owned())
}

/// An integer that fits an `i64` (a fraction, or a number out of range, is `Wrong`).
fn integer(r: &mut json::Reader<'_>) -> Read<Lenient<i64>> {
    lenient(r, |b| b == b'-' || b.is_ascii_digit(), |r| Ok(r.integer()?.map_or(Lenient::Wrong, Lenient::Ok)))
}

fn boolean(r: &mut json::Reader<'_>) -> Read<Lenient<bool>> {
    lenient(r, |b| b == b't' || b == b'f', |r| r.boolean().map(Lenient::Ok))
}

fn object<'a, T>(
    r: &mut json::Reader<'a>,
    read: impl FnOnce(&mut json::Reader<'a>) -> Read<Lenient<T>>,
) -> Read<Lenient<T>> {
    lenient(r, |b| b == b'{', read)
}

/// One pass over an event's text: the common fields and `message` read leniently as they go
/// by; the other payload objects kept as text, and read by their own types as they go by too
/// when `type` came first.
#[derive(Default)]
struct Fields<'a> {
    /// Whether the event was an object (the rest is empty when not).
    object: bool,
    type_name: Option<Lenient<Cow<'a, str>>>,
    mode: Option<Lenient<Mode>>,
    timestamp: Option<Lenient<i64>>,
    source: Option<Lenient<Source<'a>>>,
    webhook_event_id: Option<Lenient<Cow<'a, str>>>,
    delivery_context: Option<Lenient<DeliveryContext>>,
    reply_token: Option<Lenient<Cow<'a, str>>>,
    message: Option<Lenient<Message<'a>>>,
    /// Payload fields by name (`unsend`, `postback`, ...), as text.
    payloads: [Option<&'a str>; PAYLOADS.len()],
    /// The type's payload, read by its type as it went by (when `type` came before it).
    early: Option<Result<EventKind<'a>, ()>>,
}

impl<'a> Fields<'a> {
    fn payload(&self, name: &str) -> Option<&'a str> {
        PAYLOADS.iter().position(|p| *p == name).and_then(|i| self.payloads.get(i).copied().flatten())
    }

    /// Reads an event's fields as the reader crosses it (anything but an object leaves them
    /// empty). Keys repeat as JSON objects allow: the last one counts.
    fn read(&mut self, r: &mut json::Reader<'a>) -> Read<()> {
        if r.peek_past_ws() != Some(b'{') {
            return r.skip();
        }
        self.object = true;
        r.object(|r, key| {
            match key {
                "type" => {
                    self.type_name = Some(text(r)?);
                    self.early = None;
                }
                "mode" => self.mode = Some(text(r)?.map(|m| Mode::parse(&m))),
                "timestamp" => self.timestamp = Some(integer(r)?),
                "source" => self.source = Some(object(r, Source::read)?),
                "webhookEventId" => self.webhook_event_id = Some(text(r)?),
                "deliveryContext" => self.delivery_context = Some(object(r, DeliveryContext::read)?),
                "replyToken" => self.reply_token = Some(text(r)?),
                "message" => self.message = Some(object(r, Message::read)?),
                name => match PAYLOADS.iter().position(|p| *p == name) {
                    Some(i) => {
                        r.peek_past_ws();
                        let start = r.pos();
                        match &self.type_name {
                            // The payload of the type already read: read by its type now, in
                            // the same pass (else by its text once the type is known).
                            Some(Lenient::Ok(t)) if payload_field(t) == Some(name) => {
                                self.early = Some(read_payload(t, r)?);
                            }
                            _ => r.skip()?,
                        }
                        if let Some(slot) = self.payloads.get_mut(i) {
                            *slot = Some(r.slice(start, r.pos()));
                        }
                    }
                    None => r.skip()?,
                },
            }
            Ok(())
        })
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
    // Every digit checked, without stopping at the first wrong one (which the compiler can do
    // many at a time).
    b.len() == 33
        && b.first() == Some(&kind)
        && b.iter().skip(1).fold(true, |ok, c| ok & (c.is_ascii_digit() | (b'a'..=b'f').contains(c)))
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
pub struct Event<'a> {
    pub common: EventCommon<'a>,
    pub kind: EventKind<'a>,
    /// The event's text exactly as received (unknown fields, key order and number formatting
    /// included): what is forwarded to the queues. Its stretch of the body it came in.
    raw: Cow<'a, str>,
}

/// Fields every event type shares. All optional or defaulted: older payloads lack several, and a
/// field of the wrong type is left at its default (the event is then [`EventKind::Malformed`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventCommon<'a> {
    pub type_name: Cow<'a, str>,
    pub mode: Mode,
    /// Milliseconds since the epoch when the event occurred (unchanged on redelivery); 0 if absent.
    pub timestamp: i64,
    pub source: Option<Source<'a>>,
    pub webhook_event_id: Option<Cow<'a, str>>,
    pub delivery_context: Option<DeliveryContext>,
    pub reply_token: Option<Cow<'a, str>>,
}

impl<'a> EventCommon<'a> {
    /// Takes each field that had its documented type; returns the first problem found (naming
    /// the field), if any.
    #[inline(always)]
    fn read(f: &mut Fields<'a>) -> (EventCommon<'a>, Option<String>) {
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

    fn into_owned(self) -> EventCommon<'static> {
        EventCommon {
            type_name: owned(self.type_name),
            mode: self.mode,
            timestamp: self.timestamp,
            source: self.source.map(Source::into_owned),
            webhook_event_id: self.webhook_event_id.map(owned),
            delivery_context: self.delivery_context,
            reply_token: self.reply_token.map(owned),
        }
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
pub struct Source<'a> {
    #[serde(rename = "type")]
    pub kind: SourceKind,
    pub user_id: Option<Cow<'a, str>>,
    pub group_id: Option<Cow<'a, str>>,
    pub room_id: Option<Cow<'a, str>>,
}

impl Source<'_> {
    fn into_owned(self) -> Source<'static> {
        Source {
            kind: self.kind,
            user_id: self.user_id.map(owned),
            group_id: self.group_id.map(owned),
            room_id: self.room_id.map(owned),
        }
    }

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
pub enum EventKind<'a> {
    Message {
        message: Message<'a>,
    },
    MessageEdited {
        message: Message<'a>,
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
        type_name: Cow<'a, str>,
    },
    /// An event whose shape is not LINE's: `reason` names the field (never its content).
    /// Kept and forwarded raw; consumers skip it.
    Malformed {
        type_name: Cow<'a, str>,
        reason: String,
    },
}

impl EventKind<'_> {
    fn into_owned(self) -> EventKind<'static> {
        match self {
            EventKind::Message { message } => EventKind::Message { message: message.into_owned() },
            EventKind::MessageEdited { message } => EventKind::MessageEdited { message: message.into_owned() },
            EventKind::Unsend { unsend } => EventKind::Unsend { unsend },
            EventKind::Follow { follow } => EventKind::Follow { follow },
            EventKind::Unfollow => EventKind::Unfollow,
            EventKind::Join => EventKind::Join,
            EventKind::Leave => EventKind::Leave,
            EventKind::MemberJoined { joined } => EventKind::MemberJoined { joined },
            EventKind::MemberLeft { left } => EventKind::MemberLeft { left },
            EventKind::Postback { postback } => EventKind::Postback { postback },
            EventKind::VideoPlayComplete { video_play_complete } => {
                EventKind::VideoPlayComplete { video_play_complete }
            }
            EventKind::Beacon { beacon } => EventKind::Beacon { beacon },
            EventKind::AccountLink { link } => EventKind::AccountLink { link },
            EventKind::Membership { membership } => EventKind::Membership { membership },
            EventKind::Module { module } => EventKind::Module { module },
            EventKind::Activated { chat_control } => EventKind::Activated { chat_control },
            EventKind::Deactivated => EventKind::Deactivated,
            EventKind::BotSuspended => EventKind::BotSuspended,
            EventKind::BotResumed => EventKind::BotResumed,
            EventKind::Delivery { delivery } => EventKind::Delivery { delivery },
            EventKind::Other { type_name } => EventKind::Other { type_name: owned(type_name) },
            EventKind::Malformed { type_name, reason } => EventKind::Malformed { type_name: owned(type_name), reason },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    pub id: Option<Cow<'a, str>>,
    pub content: MessageContent<'a>,
    pub quote_token: Option<Cow<'a, str>>,
}

/// Message payloads. Unknown message types become `Unknown` (the raw event still has them).
#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent<'a> {
    Text {
        text: Cow<'a, str>,
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
        text: Option<Cow<'a, str>>,
    },
    Unknown,
}

impl MessageContent<'_> {
    fn into_owned(self) -> MessageContent<'static> {
        match self {
            MessageContent::Text { text, emojis, mention, quoted_message_id } => {
                MessageContent::Text { text: owned(text), emojis, mention, quoted_message_id }
            }
            MessageContent::Image { content_provider, image_set } => {
                MessageContent::Image { content_provider, image_set }
            }
            MessageContent::Video { duration, content_provider } => {
                MessageContent::Video { duration, content_provider }
            }
            MessageContent::Audio { duration, content_provider } => {
                MessageContent::Audio { duration, content_provider }
            }
            MessageContent::File { file_name, file_size } => MessageContent::File { file_name, file_size },
            MessageContent::Location { title, address, latitude, longitude } => {
                MessageContent::Location { title, address, latitude, longitude }
            }
            MessageContent::Sticker { package_id, sticker_id, sticker_resource_type, keywords, text } => {
                MessageContent::Sticker {
                    package_id,
                    sticker_id,
                    sticker_resource_type,
                    keywords,
                    text: text.map(owned),
                }
            }
            MessageContent::Unknown => MessageContent::Unknown,
        }
    }
}

/// A `message` object in one pass: `id`, `type`, `quoteToken` and `text` read as they go by, the
/// fields of the other message types kept as text and read by their types only for the message
/// type that has them (as LINE's types do, each ignores the others' fields).
#[derive(Default)]
struct MessageFields<'a> {
    id: Option<Lenient<Cow<'a, str>>>,
    kind: Option<Lenient<Cow<'a, str>>>,
    quote_token: Option<Lenient<Cow<'a, str>>>,
    text: Option<Lenient<Cow<'a, str>>>,
    emojis: Option<&'a str>,
    mention: Option<&'a str>,
    quoted_message_id: Option<&'a str>,
    content_provider: Option<&'a str>,
    image_set: Option<&'a str>,
    duration: Option<&'a str>,
    file_name: Option<&'a str>,
    file_size: Option<&'a str>,
    title: Option<&'a str>,
    address: Option<&'a str>,
    latitude: Option<&'a str>,
    longitude: Option<&'a str>,
    package_id: Option<&'a str>,
    sticker_id: Option<&'a str>,
    sticker_resource_type: Option<&'a str>,
    keywords: Option<&'a str>,
}

impl<'a> MessageFields<'a> {
    /// The slot of a field of the other message types, by its name.
    fn other(&mut self, name: &str) -> Option<&mut Option<&'a str>> {
        Some(match name {
            "emojis" => &mut self.emojis,
            "mention" => &mut self.mention,
            "quotedMessageId" => &mut self.quoted_message_id,
            "contentProvider" => &mut self.content_provider,
            "imageSet" => &mut self.image_set,
            "duration" => &mut self.duration,
            "fileName" => &mut self.file_name,
            "fileSize" => &mut self.file_size,
            "title" => &mut self.title,
            "address" => &mut self.address,
            "latitude" => &mut self.latitude,
            "longitude" => &mut self.longitude,
            "packageId" => &mut self.package_id,
            "stickerId" => &mut self.sticker_id,
            "stickerResourceType" => &mut self.sticker_resource_type,
            "keywords" => &mut self.keywords,
            _ => return None,
        })
    }
}

/// An optional field of a message type, from its text: absent or null is None; another type is
/// `Err`.
fn opt<T: serde::de::DeserializeOwned>(raw: Option<&str>) -> Result<Option<T>, ()> {
    raw.map_or(Ok(None), |raw| json::from_str(raw).map_err(drop))
}

/// A required field of a message type.
fn required<T: serde::de::DeserializeOwned>(raw: Option<&str>) -> Result<T, ()> {
    opt(raw)?.ok_or(())
}

impl<'a> Message<'a> {
    fn read(r: &mut json::Reader<'a>) -> Read<Lenient<Message<'a>>> {
        let mut f = MessageFields::default();
        r.object(|r, key| {
            match key {
                "id" => f.id = Some(text(r)?),
                "type" => f.kind = Some(text(r)?),
                "quoteToken" => f.quote_token = Some(text(r)?),
                "text" => f.text = Some(text(r)?),
                other => match f.other(other) {
                    Some(slot) => *slot = Some(r.raw()?),
                    None => r.skip()?,
                },
            }
            Ok(())
        })?;
        Ok(Message::from_fields(f).map_or(Lenient::Wrong, Lenient::Ok))
    }

    fn from_fields(mut f: MessageFields<'a>) -> Result<Message<'a>, ()> {
        let id = Lenient::optional(f.id.take())?;
        let quote_token = Lenient::optional(f.quote_token.take())?;
        let kind = Lenient::optional(f.kind.take())?.ok_or(())?;
        let content = match kind.as_ref() {
            "text" => MessageContent::Text {
                text: Lenient::optional(f.text.take())?.ok_or(())?,
                emojis: opt(f.emojis)?,
                mention: opt(f.mention)?,
                quoted_message_id: opt(f.quoted_message_id)?,
            },
            "image" => {
                MessageContent::Image { content_provider: opt(f.content_provider)?, image_set: opt(f.image_set)? }
            }
            "video" => MessageContent::Video { duration: opt(f.duration)?, content_provider: opt(f.content_provider)? },
            "audio" => MessageContent::Audio { duration: opt(f.duration)?, content_provider: opt(f.content_provider)? },
            "file" => MessageContent::File { file_name: opt(f.file_name)?, file_size: opt(f.file_size)? },
            "location" => MessageContent::Location {
                title: opt(f.title)?,
                address: opt(f.address)?,
                latitude: required(f.latitude)?,
                longitude: required(f.longitude)?,
            },
            "sticker" => MessageContent::Sticker {
                package_id: required(f.package_id)?,
                sticker_id: required(f.sticker_id)?,
                sticker_resource_type: opt(f.sticker_resource_type)?,
                keywords: opt(f.keywords)?,
                text: Lenient::optional(f.text.take())?,
            },
            _ => MessageContent::Unknown,
        };
        Ok(Message { id, content, quote_token })
    }

    fn into_owned(self) -> Message<'static> {
        Message { id: self.id.map(owned), content: self.content.into_owned(), quote_token: self.quote_token.map(owned) }
    }
}

impl<'a> Source<'a> {
    /// Each field as last written (a key given twice counts once, its last value).
    fn read(r: &mut json::Reader<'a>) -> Read<Lenient<Source<'a>>> {
        let (mut kind, mut user_id, mut group_id, mut room_id) = (None, None, None, None);
        r.object(|r, key| {
            match key {
                "type" => kind = Some(text(r)?.map(|t| SourceKind::parse(&t))),
                "userId" => user_id = Some(text(r)?),
                "groupId" => group_id = Some(text(r)?),
                "roomId" => room_id = Some(text(r)?),
                _ => r.skip()?,
            }
            Ok(())
        })?;
        let ids = (Lenient::optional(user_id), Lenient::optional(group_id), Lenient::optional(room_id));
        Ok(match (kind, ids) {
            (Some(Lenient::Ok(kind)), (Ok(user_id), Ok(group_id), Ok(room_id))) => {
                Lenient::Ok(Source { kind, user_id, group_id, room_id })
            }
            _ => Lenient::Wrong,
        })
    }
}

impl DeliveryContext {
    /// `isRedelivery` must be a boolean when given; the last value counts.
    fn read(r: &mut json::Reader<'_>) -> Read<Lenient<DeliveryContext>> {
        let mut is_redelivery = Lenient::Ok(false);
        r.object(|r, key| {
            match key {
                "isRedelivery" => is_redelivery = boolean(r)?,
                _ => r.skip()?,
            }
            Ok(())
        })?;
        Ok(is_redelivery.ok().map_or(Lenient::Wrong, |is_redelivery| Lenient::Ok(DeliveryContext { is_redelivery })))
    }
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
    pub members: Vec<Source<'static>>,
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

/// The field that holds a known event type's payload (`None`: the type has none).
fn payload_field(type_name: &str) -> Option<&'static str> {
    Some(match type_name {
        "message" | "messageEdited" => "message",
        "unsend" => "unsend",
        "follow" => "follow",
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

/// A known type's payload (other than `message`), read by its own type from the value at the
/// reader, which is crossed either way: `Ok(Err(()))` when it is not in LINE's shape (null
/// included, but for `follow`'s optional one); `Err` only when the value is not JSON.
fn read_payload<'a>(type_name: &str, r: &mut json::Reader<'a>) -> Read<Result<EventKind<'a>, ()>> {
    fn typed<'a, T: Deserialize<'a>>(r: &mut json::Reader<'a>) -> Read<T> {
        T::deserialize(&mut *r)
    }
    r.peek_past_ws();
    let start = r.pos();
    let kind = match type_name {
        "unsend" => typed(r).map(|unsend| EventKind::Unsend { unsend }),
        "follow" => typed(r).map(|follow| EventKind::Follow { follow }),
        "memberJoined" => typed(r).map(|joined| EventKind::MemberJoined { joined }),
        "memberLeft" => typed(r).map(|left| EventKind::MemberLeft { left }),
        "postback" => typed(r).map(|postback| EventKind::Postback { postback }),
        "videoPlayComplete" => typed(r).map(|video_play_complete| EventKind::VideoPlayComplete { video_play_complete }),
        "beacon" => typed(r).map(|beacon| EventKind::Beacon { beacon }),
        "accountLink" => typed(r).map(|link| EventKind::AccountLink { link }),
        "membership" => typed(r).map(|membership| EventKind::Membership { membership }),
        "module" => typed(r).map(|module| EventKind::Module { module }),
        "activated" => typed(r).map(|chat_control| EventKind::Activated { chat_control }),
        "delivery" => typed(r).map(|delivery| EventKind::Delivery { delivery }),
        _ => Err(r.error("no payload")),
    };
    Ok(match kind {
        Ok(kind) => Ok(kind),
        Err(_) => {
            // Not its shape: crossed again as plain JSON, which it must still be.
            r.rewind(start);
            r.skip()?;
            Err(())
        }
    })
}

fn message<'a>(f: &mut Fields<'a>) -> Result<Message<'a>, ()> {
    match f.message.take() {
        Some(Lenient::Ok(message)) => Ok(message),
        other => {
            f.message = other;
            Err(())
        }
    }
}

impl<'a> EventKind<'a> {
    /// The typed payload of a known type (None: a type this model does not know); `Err` when the
    /// payload is not in LINE's shape.
    fn read(type_name: &str, f: &mut Fields<'a>) -> Option<Result<EventKind<'a>, ()>> {
        Some(match type_name {
            "message" => message(f).map(|message| EventKind::Message { message }),
            "messageEdited" => message(f).map(|message| EventKind::MessageEdited { message }),
            "unfollow" => Ok(EventKind::Unfollow),
            "join" => Ok(EventKind::Join),
            "leave" => Ok(EventKind::Leave),
            "deactivated" => Ok(EventKind::Deactivated),
            "botSuspended" => Ok(EventKind::BotSuspended),
            "botResumed" => Ok(EventKind::BotResumed),
            _ => match (f.early.take(), f.payload(payload_field(type_name)?)) {
                (Some(early), _) => early,
                (None, Some(raw)) => read_payload(type_name, &mut json::Reader::new(raw)).unwrap_or(Err(())),
                (None, None) if type_name == "follow" => Ok(EventKind::Follow { follow: None }),
                (None, None) => Err(()),
            },
        })
    }
}

/// What is wrong with a known type's payload, naming the field and never its value (serde's own
/// message quotes the value: message text, say).
fn payload_problem(type_name: &str, f: &Fields<'_>) -> String {
    match payload_field(type_name) {
        Some("message") if matches!(f.message, None | Some(Lenient::Null)) => "`message` is missing".to_string(),
        Some("message") => "`message` is not in LINE's shape".to_string(),
        Some(field) if f.payload(field).is_none_or(|raw| raw == "null") => format!("`{field}` is missing"),
        Some(field) => format!("`{field}` is not in LINE's shape"),
        None => format!("the `{type_name}` event is not in LINE's shape"),
    }
}

impl<'a> Event<'a> {
    /// Reads an event from its text, in one pass. Never fails: what is not LINE's shape is kept
    /// as [`EventKind::Malformed`], with its text. The text is JSON (a [`RawValue`] is), so
    /// whatever is read is fit to be forwarded.
    pub fn from_raw(raw: &'a RawValue) -> Self {
        Self::from_json(raw.get())
    }

    /// [`Event::from_raw`] of text known to be one JSON value.
    fn from_json(text: &'a str) -> Self {
        let mut r = json::Reader::new(text);
        Self::read(&mut r).unwrap_or_else(|e| {
            // Not JSON after all: kept whole, as malformed.
            Self::from_fields(Cow::Borrowed(text), Err(e))
        })
    }

    /// The event at the reader's position, read as it is crossed; its text is the stretch
    /// crossed. Fails only when the text is not JSON.
    fn read(r: &mut json::Reader<'a>) -> Result<Self, json::Error> {
        r.peek_past_ws();
        let start = r.pos();
        let mut fields = Fields::default();
        let read = match fields.read(r) {
            Ok(()) => Ok(&mut fields),
            Err(e) => {
                // Refused where it was read (a lone surrogate in a field it reads): crossed
                // again as plain JSON, which it must still be.
                r.rewind(start);
                r.skip()?;
                Err(e)
            }
        };
        Ok(Self::from_fields(Cow::Borrowed(r.slice(start, r.pos())), read))
    }

    #[inline(always)]
    fn from_fields(raw: Cow<'a, str>, fields: Result<&mut Fields<'a>, json::Error>) -> Self {
        let reason = match fields {
            Ok(fields) if fields.object => Ok(fields),
            Ok(_) => Err("the event is not an object".to_string()),
            // Valid JSON that this reader refuses where it reads: a lone surrogate in a string
            // it keeps (the reader's messages name no content).
            Err(e) => Err(format!("the event cannot be read: {}", e.message())),
        };
        let fields = match reason {
            Ok(fields) => fields,
            Err(reason) => {
                let kind = EventKind::Malformed { type_name: Cow::Borrowed(""), reason };
                return Self { common: EventCommon::default(), kind, raw };
            }
        };
        let (mut common, problem) = EventCommon::read(fields);
        let kind = match problem {
            Some(reason) => {
                // Nothing may be answered on an event whose common fields are not LINE's (a source
                // that is not LINE's was never read into `common`: nothing is keyed on it either).
                common.reply_token = None;
                EventKind::Malformed { type_name: common.type_name.clone(), reason }
            }
            None => match EventKind::read(&common.type_name, fields) {
                Some(Ok(kind)) => kind,
                Some(Err(())) => EventKind::Malformed {
                    type_name: common.type_name.clone(),
                    reason: payload_problem(&common.type_name, fields),
                },
                None => EventKind::Other { type_name: common.type_name.clone() },
            },
        };
        Self { common, kind, raw }
    }

    /// An event from a JSON value (its text is the value written out).
    pub fn from_value(value: Value) -> Event<'static> {
        Event::from_owned_json(value.to_string())
    }

    /// [`Event::from_json`] of text the event is to own: the text is kept, not copied again.
    fn from_owned_json(text: String) -> Event<'static> {
        let Event { common, kind, .. } = Event::from_json(&text);
        let (common, kind) = (common.into_owned(), kind.into_owned());
        Event { common, kind, raw: Cow::Owned(text) }
    }

    /// The same event, owning its text.
    pub fn into_owned(self) -> Event<'static> {
        Event { common: self.common.into_owned(), kind: self.kind.into_owned(), raw: owned(self.raw) }
    }

    /// The event's text exactly as received.
    pub fn raw(&self) -> &str {
        &self.raw
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
                match serde_json::from_str::<Value>(&self.raw) {
                    Ok(value) => write_canonical(&value, &mut canonical),
                    // JSON a tree cannot hold (nested past serde_json's limit, a number out of
                    // range): its own bytes, marked so they never equal a canonical form.
                    Err(_) => {
                        canonical.extend_from_slice(b"raw:");
                        canonical.extend_from_slice(self.raw.as_bytes());
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

/// Reads the event's text as it is (serde_json deserializers only: the text is taken verbatim),
/// into an event that owns it. [`Event::from_raw`] borrows instead.
impl<'de> Deserialize<'de> for Event<'static> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::from(Box::<str>::from(Box::<RawValue>::deserialize(d)?));
        Ok(Event::from_owned_json(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const U1: &str = "U0123456789abcdef0123456789abcdef";

    fn parse(v: Value) -> WebhookBody<'static> {
        WebhookBody::parse(v.to_string().as_bytes()).unwrap().into_owned()
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
        let follow = Event::from_value(json!({"type": "follow", "follow": {"isUnblocked": "yes"}}));
        assert_eq!(follow.malformed(), Some("`follow` is not in LINE's shape"));
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
    fn a_payload_reads_the_same_before_and_after_its_type() {
        // Read as it goes by when `type` came first, from its text once the type is known when
        // it came after: the same event either way (the text is read as written: key order and
        // repeated keys kept).
        let payloads = [
            ("postback", "postback", json!({"data": "a=1", "params": {"date": "2026-01-01"}}), false),
            ("beacon", "beacon", json!({"hwid": "d41d8cd98f", "type": "enter", "dm": "1234"}), false),
            ("unsend", "unsend", json!({"messageId": "325708"}), false),
            ("follow", "follow", json!({"isUnblocked": true}), false),
            ("follow", "follow", json!(null), false),
            ("memberJoined", "joined", json!({"members": [{"type": "user", "userId": U1}]}), false),
            ("accountLink", "link", json!({"result": "ok", "nonce": "n"}), false),
            ("postback", "postback", json!({"data": 5}), true),
            ("beacon", "beacon", json!(null), true),
            ("unsend", "unsend", json!([{"messageId": "325708"}]), true),
        ];
        for (type_name, field, payload, malformed) in payloads {
            let first = Event::from_json(&format!(r#"{{"type":"{type_name}","{field}":{payload},"timestamp":1}}"#))
                .into_owned();
            let last = Event::from_json(&format!(r#"{{"{field}":{payload},"timestamp":1,"type":"{type_name}"}}"#))
                .into_owned();
            assert_eq!(first.kind, last.kind, "{type_name}: {payload}");
            assert_eq!(first.malformed().is_some(), malformed, "{type_name}: {payload}: {:?}", first.kind);
        }
        // The last `type` counts, and its own payload is the one read.
        let e = Event::from_json(
            r#"{"type":"postback","postback":{"data":"a"},"beacon":{"hwid":"h","type":"enter"},"type":"beacon"}"#,
        );
        assert!(matches!(&e.kind, EventKind::Beacon { beacon } if beacon.hwid == "h"), "{:?}", e.kind);
        // So does the last copy of the payload, whether it was read as it went by or not.
        for text in [
            r#"{"type":"postback","postback":{"data":"a"},"postback":{"data":"b"}}"#,
            r#"{"postback":{"data":"a"},"postback":{"data":"b"},"type":"postback"}"#,
            r#"{"postback":{"data":"a"},"type":"postback","postback":{"data":"b"}}"#,
        ] {
            let e = Event::from_json(text);
            assert!(matches!(&e.kind, EventKind::Postback { postback } if postback.data == "b"), "{text}");
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
}
