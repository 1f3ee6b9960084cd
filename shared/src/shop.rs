//! First-party shop events, posted by the brand's shop backend to `POST /events`.
//!
//! Body: one event object, or a JSON array of up to [`MAX_EVENTS_PER_REQUEST`] of them:
//! `{"eventId": "...", "type": "add_to_cart", "userId": "U...", "occurredAt": "2026-11-22T10:00:00Z",
//! "properties": {...}}`. `occurredAt` is RFC 3339 or milliseconds since the epoch. Signed like LINE
//! webhooks (HMAC-SHA256 of the raw body, base64) with SHOP_EVENTS_SECRET in `x-shop-signature`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The header shop events are signed in.
pub const SHOP_SIGNATURE_HEADER: &str = "x-shop-signature";
pub const MAX_EVENTS_PER_REQUEST: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShopEvent {
    /// The shop's own unique id for this event: the dedupe key.
    pub event_id: String,
    /// e.g. `view_product`, `add_to_cart`, `purchase`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The LINE user ID of the friend who did it.
    pub user_id: String,
    /// Milliseconds since the epoch (normalised from RFC 3339 if given so).
    #[serde(deserialize_with = "millis_or_rfc3339")]
    pub occurred_at: i64,
    #[serde(default)]
    pub properties: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShopEventError {
    #[error("body is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("event {index}: {reason}")]
    Invalid { index: usize, reason: String },
    #[error("too many events: {0} (at most {MAX_EVENTS_PER_REQUEST} per request)")]
    TooMany(usize),
    #[error("no events in the body")]
    Empty,
}

fn millis_or_rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n.as_i64().ok_or_else(|| serde::de::Error::custom("occurredAt must be an integer")),
        Value::String(s) => OffsetDateTime::parse(&s, &Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|e| serde::de::Error::custom(format!("occurredAt {s:?} is not RFC 3339: {e}"))),
        _ => Err(serde::de::Error::custom("occurredAt must be RFC 3339 text or epoch milliseconds")),
    }
}

/// A LINE user ID: `U` and 32 lowercase hex digits.
pub fn is_line_user_id(s: &str) -> bool {
    s.len() == 33 && s.starts_with('U') && s[1..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ShopEvent {
    /// Parses and validates a request body (one object or an array).
    pub fn parse_body(body: &[u8]) -> Result<Vec<ShopEvent>, ShopEventError> {
        let value: Value = serde_json::from_slice(body).map_err(ShopEventError::NotJson)?;
        let items = match value {
            Value::Array(items) => items,
            obj @ Value::Object(_) => vec![obj],
            _ => return Err(ShopEventError::Invalid { index: 0, reason: "not an object".into() }),
        };
        if items.is_empty() {
            return Err(ShopEventError::Empty);
        }
        if items.len() > MAX_EVENTS_PER_REQUEST {
            return Err(ShopEventError::TooMany(items.len()));
        }
        items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let event: ShopEvent = serde_json::from_value(item)
                    .map_err(|e| ShopEventError::Invalid { index, reason: e.to_string() })?;
                event.validate().map_err(|reason| ShopEventError::Invalid { index, reason })?;
                Ok(event)
            })
            .collect()
    }

    fn validate(&self) -> Result<(), String> {
        // The id becomes an SQS deduplication id (<= 128 chars of a limited set) after a prefix.
        let id_ok = !self.event_id.is_empty()
            && self.event_id.len() <= 100
            && self.event_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !id_ok {
            return Err("eventId must be 1-100 characters of A-Z a-z 0-9 - _ . :".into());
        }
        let type_ok = !self.kind.is_empty()
            && self.kind.len() <= 64
            && self.kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !type_ok {
            return Err("type must be 1-64 characters of a-z 0-9 _".into());
        }
        if !is_line_user_id(&self.user_id) {
            return Err("userId must be a LINE user ID (U followed by 32 hex digits)".into());
        }
        Ok(())
    }

    /// The key this event is deduplicated by, across the idempotency table and the queue.
    pub fn dedupe_key(&self) -> String {
        format!("shop:{}", self.event_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "U0123456789abcdef0123456789abcdef";

    #[test]
    fn single_event_with_rfc3339_time() {
        let body = format!(
            r#"{{"eventId":"o-1","type":"add_to_cart","userId":"{USER}","occurredAt":"2026-11-22T10:00:00Z","properties":{{"sku":"cake-1"}}}}"#
        );
        let events = ShopEvent::parse_body(body.as_bytes()).unwrap();
        assert_eq!(events[0].occurred_at, 1_795_341_600_000);
        assert_eq!(events[0].properties["sku"], "cake-1");
        assert_eq!(events[0].dedupe_key(), "shop:o-1");
    }

    #[test]
    fn array_with_millis() {
        let body = format!(
            r#"[{{"eventId":"a","type":"purchase","userId":"{USER}","occurredAt":5}},{{"eventId":"b","type":"view_product","userId":"{USER}","occurredAt":6}}]"#
        );
        assert_eq!(ShopEvent::parse_body(body.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn invalid_events_say_which_and_why() {
        let bad_user = r#"{"eventId":"a","type":"purchase","userId":"bob","occurredAt":5}"#;
        let e = ShopEvent::parse_body(bad_user.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("event 0") && e.contains("userId"), "{e}");
        let missing =
            format!(r#"[{{"eventId":"a","type":"purchase","userId":"{USER}","occurredAt":5}},{{"type":"x"}}]"#);
        let e = ShopEvent::parse_body(missing.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("event 1") && e.contains("eventId"), "{e}");
        let bad_time = format!(r#"{{"eventId":"a","type":"purchase","userId":"{USER}","occurredAt":"yesterday"}}"#);
        assert!(ShopEvent::parse_body(bad_time.as_bytes()).unwrap_err().to_string().contains("RFC 3339"));
        assert!(matches!(ShopEvent::parse_body(b"[]"), Err(ShopEventError::Empty)));
        assert!(matches!(ShopEvent::parse_body(b"{"), Err(ShopEventError::NotJson(_))));
    }
}
