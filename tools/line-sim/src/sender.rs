//! LINE's other side: builds webhook events (with reply tokens the sim will honour), signs the body
//! with the channel secret and POSTs it, and redelivers sent events on request.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::sim::Sim;
use crate::state::{Friend, State};

/// Event types that carry a reply token (in `active` mode).
const REPLYABLE: &[&str] =
    &["message", "messageEdited", "follow", "join", "memberJoined", "postback", "beacon", "accountLink", "things"];

/// `POST /__sim/webhook/send`: events written in full or with shorthands (`userId`, `groupId`,
/// `text`, `data`, `isUnblocked`); the sim fills in ids, timestamps, tokens and the rest.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendRequest {
    /// Where to POST; the sim's configured webhook URL when absent.
    pub url: Option<String>,
    #[serde(default)]
    pub destination: Option<String>,
    pub events: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedeliverRequest {
    pub url: Option<String>,
    #[serde(default)]
    pub destination: Option<String>,
    pub webhook_event_ids: Vec<String>,
}

/// What the webhook answered, and the events exactly as sent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendResult {
    pub status: u16,
    pub body: String,
    pub events: Vec<Value>,
}

pub const BOT_USER_ID: &str = "U00000000000000000000000000000b07";

fn hex_id(n: usize) -> String {
    let mut s = uuid::Uuid::new_v4().simple().to_string();
    s.truncate(n);
    s
}

/// Fills a partial event in, registering the friend and issuing its reply token.
fn complete(st: &mut State, input: &Value) -> Result<Value, String> {
    let mut e: Map<String, Value> = input.as_object().cloned().ok_or("each event must be a JSON object")?;
    let now = st.now_ms();
    // Shorthands.
    let user = e.remove("userId").and_then(|v| v.as_str().map(str::to_string));
    let group = e.remove("groupId").and_then(|v| v.as_str().map(str::to_string));
    if !e.contains_key("source") {
        let source = match (&group, &user) {
            (Some(g), Some(u)) => json!({ "type": "group", "groupId": g, "userId": u }),
            (Some(g), None) => json!({ "type": "group", "groupId": g }),
            (None, Some(u)) => json!({ "type": "user", "userId": u }),
            (None, None) => return Err("an event needs a source (or a userId shorthand)".into()),
        };
        e.insert("source".into(), source);
    }
    if let Some(text) = e.remove("text") {
        e.entry("type").or_insert("message".into());
        e.insert("message".into(), json!({ "type": "text", "text": text }));
    }
    if let Some(data) = e.remove("data") {
        e.entry("type").or_insert("postback".into());
        e.insert("postback".into(), json!({ "data": data }));
    }
    let kind = e.get("type").and_then(Value::as_str).ok_or("an event needs a type")?.to_string();
    if let Some(m) = e.get_mut("message").and_then(Value::as_object_mut) {
        m.entry("id").or_insert(ulid::Ulid::new().0.to_string().into());
        m.entry("quoteToken").or_insert(hex_id(32).into());
    }
    e.entry("webhookEventId").or_insert(ulid::Ulid::new().to_string().into());
    e.entry("timestamp").or_insert(now.into());
    e.entry("mode").or_insert("active".into());
    e.entry("deliveryContext").or_insert(json!({ "isRedelivery": false }));

    // The platform's view of the friend.
    let source = e["source"].clone();
    let user_id = source.get("userId").and_then(Value::as_str).map(str::to_string);
    if let Some(u) = &user_id {
        let known = st.friends.get(u).map(|f| f.blocked);
        match kind.as_str() {
            "follow" => {
                if let Some(f) = e.get_mut("follow").and_then(Value::as_object_mut) {
                    f.entry("isUnblocked").or_insert(known.unwrap_or(false).into());
                } else {
                    let unblocked = e.remove("isUnblocked").and_then(|v| v.as_bool()).unwrap_or(known == Some(true));
                    e.insert("follow".into(), json!({ "isUnblocked": unblocked }));
                }
                upsert_friend(st, u, false);
            }
            "unfollow" => upsert_friend(st, u, true),
            _ if known.is_none() => upsert_friend(st, u, false),
            _ => {}
        }
    }
    let to = source.get("groupId").or(source.get("roomId")).or(source.get("userId")).and_then(Value::as_str);
    let active = e.get("mode").and_then(Value::as_str) == Some("active");
    if REPLYABLE.contains(&kind.as_str()) && active && !e.contains_key("replyToken") {
        if let Some(to) = to {
            let time = e.get("timestamp").and_then(Value::as_i64).unwrap_or(now);
            e.insert("replyToken".into(), st.issue_token(to, time).into());
        }
    }
    Ok(Value::Object(e))
}

fn upsert_friend(st: &mut State, user_id: &str, blocked: bool) {
    let n = st.friends.len() + 1;
    st.friends
        .entry(user_id.to_string())
        .or_insert_with(|| Friend {
            user_id: user_id.to_string(),
            display_name: format!("Friend {n}"),
            blocked,
            picture_url: None,
            status_message: None,
            language: "en".into(),
        })
        .blocked = blocked;
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl Sim {
    fn target(&self, url: Option<String>) -> Result<String, String> {
        url.or_else(|| self.webhook.lock().expect("webhook").url.clone())
            .ok_or_else(|| "no webhook URL: give \"url\" or start the sim with WEBHOOK_URL".into())
    }

    pub async fn send(&self, request: SendRequest) -> Result<SendResult, String> {
        let url = self.target(request.url)?;
        let events = {
            let mut st = self.state.lock().expect("sim state");
            let events = request.events.iter().map(|e| complete(&mut st, e)).collect::<Result<Vec<_>, _>>()?;
            for e in &events {
                let id = e["webhookEventId"].as_str().unwrap_or_default().to_string();
                st.sent_events.insert(id, e.clone());
            }
            events
        };
        self.post(&url, request.destination, events).await
    }

    /// Sends events again, identical but for `deliveryContext.isRedelivery: true`.
    pub async fn redeliver(&self, request: RedeliverRequest) -> Result<SendResult, String> {
        let url = self.target(request.url)?;
        let events = {
            let mut st = self.state.lock().expect("sim state");
            let mut out = vec![];
            for id in &request.webhook_event_ids {
                let mut e = st.sent_events.get(id).cloned().ok_or_else(|| format!("no event {id} was sent"))?;
                e["deliveryContext"] = json!({ "isRedelivery": true });
                if let Some(token) = e.get("replyToken").and_then(Value::as_str) {
                    st.refresh_token(token);
                }
                out.push(e);
            }
            st.bump("webhookRedeliveries", out.len() as u64);
            out
        };
        self.post(&url, request.destination, events).await
    }

    pub(crate) async fn post(
        &self,
        url: &str,
        destination: Option<String>,
        events: Vec<Value>,
    ) -> Result<SendResult, String> {
        let destination = destination.unwrap_or_else(|| BOT_USER_ID.to_string());
        let body = serde_json::to_vec(&json!({ "destination": destination, "events": events })).expect("json");
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-line-signature", sign(&self.channel_secret, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        self.state.lock().expect("sim state").bump("webhooksSent", 1);
        Ok(SendResult { status, body, events })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signs_like_line() {
        // LINE's own test vector ("Verify webhook signature").
        let body = br#"{"destination":"U8e742f61d673b39c7fff3cecb7536ef0","events":[]}"#;
        assert_eq!(
            super::sign("8c570fa6dd201bb328f1c1eac23a96d8", body),
            "GhRKmvmHys4Pi8DxkF4+EayaH0OqtJtaZxgTD9fMDLs="
        );
    }
}
