//! First-party shop events, posted by the brand's shop backend to `POST /events`.
//!
//! Body: one event object, or a JSON array of up to [`MAX_EVENTS_PER_REQUEST`] of them:
//! `{"eventId": "...", "type": "add_to_cart", "userId": "U...", "occurredAt": "2026-11-22T10:00:00Z",
//! "properties": {...}}`. `occurredAt` is RFC 3339 or milliseconds since the epoch, within the last
//! [`MAX_AGE_MS`] and at most [`MAX_FUTURE_MS`] ahead of the receiver's clock: a time in the future
//! would make the friend's tags ignore every real event until then (tags keep the latest event
//! time), and seconds or microseconds mistaken for milliseconds land in 1970 or the year 50,000.
//! Signed like LINE webhooks (HMAC-SHA256 of the raw body, base64) with the shop secret in
//! `x-shop-signature`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The header shop events are signed in.
pub const SHOP_SIGNATURE_HEADER: &str = "x-shop-signature";
pub const MAX_EVENTS_PER_REQUEST: usize = 100;
/// The most JSON `properties` may take: an event must fit one queue message.
pub const MAX_PROPERTIES_BYTES: usize = 64 * 1024;
/// The oldest `occurredAt` accepted: 30 days before now.
pub const MAX_AGE_MS: i64 = 30 * 86_400_000;
/// The furthest `occurredAt` may be ahead of now (clock skew): 5 minutes.
pub const MAX_FUTURE_MS: i64 = 5 * 60_000;

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
    crate::line::webhook::is_user_id(s)
}

impl ShopEvent {
    /// Parses and validates a request body (one object or an array), received at `now_ms`.
    pub fn parse_body(body: &[u8], now_ms: i64) -> Result<Vec<ShopEvent>, ShopEventError> {
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
                event.validate(now_ms).map_err(|reason| ShopEventError::Invalid { index, reason })?;
                Ok(event)
            })
            .collect()
    }

    fn validate(&self, now_ms: i64) -> Result<(), String> {
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
        if serde_json::to_string(&self.properties).map_or(true, |p| p.len() > MAX_PROPERTIES_BYTES) {
            return Err(format!("properties must be at most {} KiB of JSON", MAX_PROPERTIES_BYTES / 1024));
        }
        let at = self.occurred_at;
        if !(now_ms - MAX_AGE_MS..=now_ms + MAX_FUTURE_MS).contains(&at) {
            let when = time::OffsetDateTime::from_unix_timestamp_nanos(at as i128 * 1_000_000)
                .ok()
                .and_then(|t| t.format(&Rfc3339).ok())
                .unwrap_or_else(|| "out of range".into());
            let hint = if at.unsigned_abs() < 100_000_000_000 {
                " (it looks like seconds: send milliseconds since the epoch, or RFC 3339)"
            } else if at > 100_000_000_000_000 {
                " (it looks like microseconds: send milliseconds since the epoch, or RFC 3339)"
            } else {
                ""
            };
            return Err(format!(
                "occurredAt {at} ({when}) must be within the last 30 days and at most 5 minutes ahead of \
                 the server's clock{hint}"
            ));
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
    /// 2026-11-22T10:00:00Z, "now" for these tests.
    const NOW: i64 = 1_795_341_600_000;

    fn parse(body: &[u8]) -> Result<Vec<ShopEvent>, ShopEventError> {
        ShopEvent::parse_body(body, NOW)
    }

    #[test]
    fn single_event_with_rfc3339_time() {
        let body = format!(
            r#"{{"eventId":"o-1","type":"add_to_cart","userId":"{USER}","occurredAt":"2026-11-22T10:00:00Z","properties":{{"sku":"cake-1"}}}}"#
        );
        let events = parse(body.as_bytes()).unwrap();
        assert_eq!(events[0].occurred_at, 1_795_341_600_000);
        assert_eq!(events[0].properties["sku"], "cake-1");
        assert_eq!(events[0].dedupe_key(), "shop:o-1");
    }

    #[test]
    fn array_with_millis() {
        let body = format!(
            r#"[{{"eventId":"a","type":"purchase","userId":"{USER}","occurredAt":1795341600005}},{{"eventId":"b","type":"view_product","userId":"{USER}","occurredAt":1795341600006}}]"#
        );
        assert_eq!(parse(body.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn invalid_events_say_which_and_why() {
        let bad_user = r#"{"eventId":"a","type":"purchase","userId":"bob","occurredAt":1795341600005}"#;
        let e = parse(bad_user.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("event 0") && e.contains("userId"), "{e}");
        let missing = format!(
            r#"[{{"eventId":"a","type":"purchase","userId":"{USER}","occurredAt":1795341600005}},{{"type":"x"}}]"#
        );
        let e = parse(missing.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("event 1") && e.contains("eventId"), "{e}");
        let bad_time = format!(r#"{{"eventId":"a","type":"purchase","userId":"{USER}","occurredAt":"yesterday"}}"#);
        assert!(parse(bad_time.as_bytes()).unwrap_err().to_string().contains("RFC 3339"));
        assert!(matches!(parse(b"[]"), Err(ShopEventError::Empty)));
    }

    #[test]
    fn times_outside_the_window_are_refused_naming_the_field() {
        let at = |t: i64| format!(r#"{{"eventId":"a","type":"purchase","userId":"{USER}","occurredAt":{t}}}"#);
        assert!(parse(at(NOW - 29 * 86_400_000).as_bytes()).is_ok());
        assert!(parse(at(NOW + 4 * 60_000).as_bytes()).is_ok());
        for (t, hint) in [
            (NOW + 6 * 60_000, ""),
            (NOW * 1000, "microseconds"),
            (NOW / 1000, "seconds"),
            (NOW - 31 * 86_400_000, ""),
            (i64::MIN, ""),
            (i64::MAX, "microseconds"),
        ] {
            let e = parse(at(t).as_bytes()).unwrap_err().to_string();
            assert!(e.contains("event 0") && e.contains("occurredAt") && e.contains(hint), "{t}: {e}");
        }
        assert!(matches!(parse(b"{"), Err(ShopEventError::NotJson(_))));
    }
}
