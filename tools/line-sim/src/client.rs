//! A typed client of line-sim's `/__sim/` API.

use serde_json::{json, Value};

use crate::sender::SendResult;

#[derive(Clone)]
pub struct SimClient {
    base: String,
    http: reqwest::Client,
}

/// A failed call to the simulator.
#[derive(Debug, thiserror::Error)]
#[error("line-sim {what}: {message}")]
pub struct SimError {
    what: String,
    message: String,
}

impl SimClient {
    pub fn new(base: &str) -> Self {
        SimClient { base: base.trim_end_matches('/').to_string(), http: reqwest::Client::new() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, SimError> {
        let err = |message: String| SimError { what: format!("{method} {path}"), message };
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.map_err(|e| err(e.to_string()))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| err(e.to_string()))?;
        if !status.is_success() {
            return Err(err(format!("{status}: {text}")));
        }
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text).map_err(|e| err(e.to_string()))? })
    }

    /// Builds, signs and POSTs `events` (shorthands allowed) to `url` (or the sim's default).
    pub async fn send(&self, url: Option<&str>, events: Vec<Value>) -> Result<SendResult, SimError> {
        let v = self
            .call(reqwest::Method::POST, "/__sim/webhook/send", Some(json!({ "url": url, "events": events })))
            .await?;
        serde_json::from_value(v).map_err(|e| SimError { what: "send".into(), message: e.to_string() })
    }

    pub async fn redeliver(&self, url: Option<&str>, ids: &[&str]) -> Result<SendResult, SimError> {
        let body = json!({ "url": url, "webhookEventIds": ids });
        let v = self.call(reqwest::Method::POST, "/__sim/webhook/redeliver", Some(body)).await?;
        serde_json::from_value(v).map_err(|e| SimError { what: "redeliver".into(), message: e.to_string() })
    }

    /// What `to` (a user, group or room id) received, oldest first.
    pub async fn deliveries(&self, to: &str) -> Result<Vec<Value>, SimError> {
        let v = self.call(reqwest::Method::GET, &format!("/__sim/deliveries/{to}"), None).await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    pub async fn requests(&self, api: &str) -> Result<Vec<Value>, SimError> {
        let v = self.call(reqwest::Method::GET, &format!("/__sim/requests?api={api}"), None).await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    pub async fn counters(&self) -> Result<Value, SimError> {
        self.call(reqwest::Method::GET, "/__sim/counters", None).await
    }

    pub async fn set_faults(&self, api: &str, faults: Value) -> Result<Value, SimError> {
        self.call(reqwest::Method::PUT, &format!("/__sim/faults/{api}"), Some(faults)).await
    }

    pub async fn clear_faults(&self) -> Result<(), SimError> {
        self.call(reqwest::Method::DELETE, "/__sim/faults", None).await.map(|_| ())
    }

    pub async fn configure(&self, patch: Value) -> Result<Value, SimError> {
        self.call(reqwest::Method::PUT, "/__sim/config", Some(patch)).await
    }

    pub async fn add_friends(&self, friends: Value) -> Result<Value, SimError> {
        self.call(reqwest::Method::POST, "/__sim/friends", Some(friends)).await
    }

    pub async fn advance_clock(&self, secs: i64) -> Result<Value, SimError> {
        self.call(reqwest::Method::POST, "/__sim/clock", Some(json!({ "advanceSecs": secs }))).await
    }

    /// Reissues the channel access token: only `token` works from now on.
    pub async fn set_access_token(&self, token: &str) -> Result<(), SimError> {
        self.call(reqwest::Method::POST, "/__sim/access-token", Some(json!({ "accessToken": token }))).await.map(|_| ())
    }

    pub async fn reset(&self) -> Result<(), SimError> {
        self.call(reqwest::Method::POST, "/__sim/reset", None).await.map(|_| ())
    }
}
