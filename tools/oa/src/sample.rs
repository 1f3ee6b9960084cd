//! Builders for webhook events shaped like LINE's (current shape: webhookEventId, deliveryContext,
//! mode) and for shop events.

use serde_json::{json, Value};

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A fresh webhookEventId (a ULID, like LINE's).
pub fn event_id() -> String {
    ulid::Ulid::new().to_string()
}

/// A random, well-formed LINE user ID.
pub fn user_id() -> String {
    format!("U{:032x}", ulid::Ulid::new().0)
}

fn common(kind: &str, id: &str, user: &str, timestamp: i64, redelivery: bool) -> Value {
    json!({
        "type": kind,
        "mode": "active",
        "timestamp": timestamp,
        "source": {"type": "user", "userId": user},
        "webhookEventId": id,
        "deliveryContext": {"isRedelivery": redelivery},
    })
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

pub fn text(id: &str, user: &str, text: &str, timestamp: i64) -> Value {
    with(
        common("message", id, user, timestamp, false),
        json!({"replyToken": format!("rt-{id}"), "message": {"id": format!("m{timestamp}"), "type": "text", "text": text, "quoteToken": "q"}}),
    )
}

pub fn follow(id: &str, user: &str, timestamp: i64, is_unblocked: bool) -> Value {
    with(
        common("follow", id, user, timestamp, false),
        json!({"replyToken": format!("rt-{id}"), "follow": {"isUnblocked": is_unblocked}}),
    )
}

pub fn unfollow(id: &str, user: &str, timestamp: i64) -> Value {
    common("unfollow", id, user, timestamp, false)
}

pub fn postback(id: &str, user: &str, data: &str, timestamp: i64) -> Value {
    with(
        common("postback", id, user, timestamp, false),
        json!({"replyToken": format!("rt-{id}"), "postback": {"data": data}}),
    )
}

/// Marks an event as LINE's redelivery of itself.
pub fn redelivered(mut event: Value) -> Value {
    event["deliveryContext"] = json!({"isRedelivery": true});
    event
}

/// A webhook body as LINE sends it.
pub fn body(destination: &str, events: &[Value]) -> Vec<u8> {
    json!({"destination": destination, "events": events}).to_string().into_bytes()
}

/// A shop event.
pub fn shop_event(event_id: &str, kind: &str, user: &str, occurred_at_ms: i64, properties: Value) -> Value {
    json!({"eventId": event_id, "type": kind, "userId": user, "occurredAt": occurred_at_ms, "properties": properties})
}
