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

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

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
pub struct WebhookBody {
    /// The bot's user ID; absent in some older payloads (and ignored when it is not a string).
    pub destination: Option<String>,
    pub events: Vec<Event>,
}

impl WebhookBody {
    /// Parses a raw body. Only the envelope is strict: an object with an `events` array.
    ///
    /// One pass over the body: each event is read by its type as the reader crosses it, and
    /// keeps the stretch of text it was read from. Keys repeat as JSON objects allow: the last
    /// one counts.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let text = std::str::from_utf8(body).map_err(|e| {
            // Placed where the valid text ends.
            let valid = body.get(..e.valid_up_to()).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default();
            let mut r = json::Reader::new(valid);
            r.rewind(valid.len());
            ParseError::NotJson(r.locate(r.error("invalid UTF-8")))
        })?;
        // One copy of the body, which the events keep their text in.
        let body: Arc<str> = Arc::from(text);
        let mut r = json::Reader::new(&body);
        Self::read(&mut r, &body).map_err(|e| ParseError::NotJson(r.locate(e)))?
    }

    /// The envelope at the reader: the body (Err) or the reason it is not an envelope (Ok(Err)).
    fn read(r: &mut json::Reader<'_>, body: &Arc<str>) -> Result<Result<Self, ParseError>, json::Error> {
        if r.peek_past_ws() != Some(b'{') {
            r.skip()?;
            r.end()?;
            return Ok(Err(ParseError::NotEnvelope("the top level is not an object")));
        }
        let (mut destination, mut events) = (None, None);
        r.object(|r, key| {
            match key {
                "destination" => destination = string(r)?.ok(),
                "events" if r.peek_past_ws() == Some(b'[') => {
                    let mut list = Vec::with_capacity(4);
                    r.array(|r| {
                        list.push(Event::read(r, body)?);
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

fn string(r: &mut json::Reader<'_>) -> Read<Lenient<String>> {
    text(r).map(|t| t.map(Cow::into_owned))
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
/// by, the other payload objects kept as text to be read by their own types.
#[derive(Default)]
struct Fields<'a> {
    /// Whether the event was an object (the rest is empty when not).
    object: bool,
    type_name: Option<Lenient<String>>,
    mode: Option<Lenient<Mode>>,
    timestamp: Option<Lenient<i64>>,
    source: Option<Lenient<Source>>,
    webhook_event_id: Option<Lenient<String>>,
    delivery_context: Option<Lenient<DeliveryContext>>,
    reply_token: Option<Lenient<String>>,
    message: Option<Lenient<Message>>,
    /// Payload fields by name (`unsend`, `postback`, ...).
    payloads: [Option<&'a str>; PAYLOADS.len()],
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
                "type" => self.type_name = Some(string(r)?),
                "mode" => self.mode = Some(text(r)?.map(|m| Mode::parse(&m))),
                "timestamp" => self.timestamp = Some(integer(r)?),
                "source" => self.source = Some(object(r, Source::read)?),
                "webhookEventId" => self.webhook_event_id = Some(string(r)?),
                "deliveryContext" => self.delivery_context = Some(object(r, DeliveryContext::read)?),
                "replyToken" => self.reply_token = Some(string(r)?),
                "message" => self.message = Some(object(r, Message::read)?),
                name => match PAYLOADS.iter().position(|p| *p == name).and_then(|i| self.payloads.get_mut(i)) {
                    Some(slot) => *slot = Some(r.raw()?),
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
    raw: Text,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.common == other.common && self.kind == other.kind && self.raw.get() == other.raw.get()
    }
}

/// An event's text: its stretch of the body it came in, which the events of one body share
/// (one copy of the body, not one per event).
#[derive(Clone)]
struct Text {
    body: Arc<str>,
    start: usize,
    end: usize,
}

impl Text {
    fn get(&self) -> &str {
        self.body.get(self.start..self.end).unwrap_or_default()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.get(), f)
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

/// The fields of the message types other than `id`, `type`, `quoteToken` and `text`.
const MESSAGE_FIELDS: [&str; 16] = [
    "emojis",
    "mention",
    "quotedMessageId",
    "contentProvider",
    "imageSet",
    "duration",
    "fileName",
    "fileSize",
    "title",
    "address",
    "latitude",
    "longitude",
    "packageId",
    "stickerId",
    "stickerResourceType",
    "keywords",
];

/// A `message` object in one pass: `id`, `type`, `quoteToken` and `text` read as they go by, the
/// fields of the other message types kept as text and read by their types only for the message
/// type that has them (as LINE's types do, each ignores the others' fields).
#[derive(Default)]
struct MessageFields<'a> {
    id: Option<Lenient<String>>,
    kind: Option<Lenient<Cow<'a, str>>>,
    quote_token: Option<Lenient<String>>,
    text: Option<Lenient<String>>,
    /// By [`MESSAGE_FIELDS`] position.
    others: [Option<&'a str>; MESSAGE_FIELDS.len()],
}

impl MessageFields<'_> {
    /// An optional field of a message type: absent or null is None; another type is `Err`.
    fn opt<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ()> {
        let i = MESSAGE_FIELDS.iter().position(|n| *n == name);
        match i.and_then(|i| self.others.get(i).copied().flatten()) {
            None => Ok(None),
            Some(raw) => json::from_str(raw).map_err(|_| ()),
        }
    }

    /// A required field of a message type.
    fn required<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, ()> {
        self.opt(name)?.ok_or(())
    }
}

impl Message {
    fn read<'a>(r: &mut json::Reader<'a>) -> Read<Lenient<Message>> {
        let mut f = MessageFields::default();
        r.object(|r, key| {
            match key {
                "id" => f.id = Some(string(r)?),
                "type" => f.kind = Some(text(r)?),
                "quoteToken" => f.quote_token = Some(string(r)?),
                "text" => f.text = Some(string(r)?),
                name => match MESSAGE_FIELDS.iter().position(|n| *n == name).and_then(|i| f.others.get_mut(i)) {
                    Some(slot) => *slot = Some(r.raw()?),
                    None => r.skip()?,
                },
            }
            Ok(())
        })?;
        Ok(Message::from_fields(f).map_or(Lenient::Wrong, Lenient::Ok))
    }

    fn from_fields(mut f: MessageFields<'_>) -> Result<Message, ()> {
        let id = Lenient::optional(f.id.take())?;
        let quote_token = Lenient::optional(f.quote_token.take())?;
        let kind = Lenient::optional(f.kind.take())?.ok_or(())?;
        let content = match kind.as_ref() {
            "text" => MessageContent::Text {
                text: Lenient::optional(f.text.take())?.ok_or(())?,
                emojis: f.opt("emojis")?,
                mention: f.opt("mention")?,
                quoted_message_id: f.opt("quotedMessageId")?,
            },
            "image" => {
                MessageContent::Image { content_provider: f.opt("contentProvider")?, image_set: f.opt("imageSet")? }
            }
            "video" => {
                MessageContent::Video { duration: f.opt("duration")?, content_provider: f.opt("contentProvider")? }
            }
            "audio" => {
                MessageContent::Audio { duration: f.opt("duration")?, content_provider: f.opt("contentProvider")? }
            }
            "file" => MessageContent::File { file_name: f.opt("fileName")?, file_size: f.opt("fileSize")? },
            "location" => MessageContent::Location {
                title: f.opt("title")?,
                address: f.opt("address")?,
                latitude: f.required("latitude")?,
                longitude: f.required("longitude")?,
            },
            "sticker" => MessageContent::Sticker {
                package_id: f.required("packageId")?,
                sticker_id: f.required("stickerId")?,
                sticker_resource_type: f.opt("stickerResourceType")?,
                keywords: f.opt("keywords")?,
                text: Lenient::optional(f.text.take())?,
            },
            _ => MessageContent::Unknown,
        };
        Ok(Message { id, content, quote_token })
    }
}

impl Source {
    /// Each field as last written (a key given twice counts once, its last value).
    fn read(r: &mut json::Reader<'_>) -> Read<Lenient<Source>> {
        let (mut kind, mut user_id, mut group_id, mut room_id) = (None, None, None, None);
        r.object(|r, key| {
            match key {
                "type" => kind = Some(text(r)?.map(|t| SourceKind::parse(&t))),
                "userId" => user_id = Some(string(r)?),
                "groupId" => group_id = Some(string(r)?),
                "roomId" => room_id = Some(string(r)?),
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
fn payload<T: serde::de::DeserializeOwned>(raw: Option<&str>) -> Result<T, ()> {
    json::from_str(raw.ok_or(())?).map_err(|_| ())
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
        Some(field) if f.payload(field).is_none_or(|raw| raw == "null") => format!("`{field}` is missing"),
        Some(field) => format!("`{field}` is not in LINE's shape"),
        None => format!("the `{type_name}` event is not in LINE's shape"),
    }
}

impl Event {
    /// Reads an event from its text, in one pass. Never fails: what is not LINE's shape is kept
    /// as [`EventKind::Malformed`], with its text. The text is JSON (a [`RawValue`] is), so
    /// whatever is read is fit to be forwarded.
    pub fn from_raw(raw: &RawValue) -> Self {
        Self::from_json(raw.get())
    }

    /// [`Event::from_raw`] of text known to be one JSON value.
    fn from_json(text: &str) -> Self {
        let body: Arc<str> = Arc::from(text);
        let mut r = json::Reader::new(&body);
        Self::read(&mut r, &body).unwrap_or_else(|e| {
            // Not JSON after all: kept whole, as malformed.
            Self::from_fields(Text { body: body.clone(), start: 0, end: body.len() }, Err(e))
        })
    }

    /// The event at the reader's position (over `body`), read as it is crossed; its text is the
    /// stretch crossed. Fails only when the text is not JSON.
    fn read(r: &mut json::Reader<'_>, body: &Arc<str>) -> Result<Self, json::Error> {
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
        Ok(Self::from_fields(Text { body: body.clone(), start, end: r.pos() }, read))
    }

    fn from_fields(raw: Text, fields: Result<&mut Fields<'_>, json::Error>) -> Self {
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
                let kind = EventKind::Malformed { type_name: String::new(), reason };
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
    pub fn from_value(value: Value) -> Self {
        Self::from_json(&value.to_string())
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

/// Reads the event's text as it is (serde_json deserializers only: the text is taken verbatim).
impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Event::from_raw(&Box::<RawValue>::deserialize(d)?))
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
    fn the_queue_message_carries_the_raw_event() {
        let raw = json!({"type": "join", "timestamp": 1, "newField": {"a": [1, 2]}});
        let e = Event::from_value(raw.clone());
        let queued = crate::envelope::QueuedEvent::Line {
            dedupe_key: "k\"1".into(),
            destination: None,
            received_at: 5,
            event: Box::new(e.clone()),
        };
        let written: Value = serde_json::from_str(&queued.to_json()).unwrap();
        assert_eq!(written, json!({"kind": "line", "dedupeKey": "k\"1", "receivedAt": 5, "event": raw}));
        let back: Event = serde_json::from_str(&raw.to_string()).unwrap();
        assert_eq!(back, e);
    }
}
