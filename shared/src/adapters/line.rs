//! The LINE Messaging API over HTTP: what is sent, and each answer read into a
//! [`LineError`] (by status first: LINE documents that error texts are not guaranteed). It is the
//! campaign path's [`Multicaster`] in production.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use async_trait::async_trait;

use crate::campaign::ports::Multicaster;
use crate::campaign::price::Month;
use crate::line::answer::{Accepted, LineError};
use crate::secrets::{SecretName, Secrets, AFTER_UNAUTHORIZED};

pub const REQUEST_ID_HEADER: &str = "x-line-request-id";
pub const RETRY_KEY_HEADER: &str = "x-line-retry-key";
pub const ACCEPTED_REQUEST_ID_HEADER: &str = "x-line-accepted-request-id";

/// The Messaging API. The access token comes from [`Secrets`]: on a 401 the secret is read again
/// (rate-limited) and the request is sent once more if the token changed.
#[derive(Clone)]
pub struct LineClient {
    http: reqwest::Client,
    base: String,
    secrets: Arc<Secrets>,
    timeout: Duration,
    calls: LineCalls,
}

/// The requests a [`LineClient`] made, per API, since the last take (clones share one tally).
#[derive(Debug, Clone, Default)]
pub struct LineCalls(Arc<Mutex<LineCallCount>>);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineCallCount {
    /// Requests per API (`reply`, `multicast`, `quota`, ...), answered or not.
    pub calls: BTreeMap<&'static str, u64>,
}

impl LineCalls {
    /// What was counted since the last take; the tally starts again at zero.
    pub fn take(&self) -> LineCallCount {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn call(&self, path: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()).calls.entry(api_of(path)).or_default() += 1;
    }
}

/// The API a path calls, by name (the metric's suffix).
pub fn api_of(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or_default();
    match path {
        "/v2/bot/message/reply" => "reply",
        "/v2/bot/message/multicast" => "multicast",
        "/v2/bot/message/push" => "push",
        "/v2/bot/message/validate/multicast" => "validate",
        "/v2/bot/message/quota" => "quota",
        "/v2/bot/message/quota/consumption" => "consumption",
        "/v2/bot/followers/ids" => "followers",
        p if p.starts_with("/v2/bot/profile/") => "profile",
        _ => "other",
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReplyBody<'a> {
    reply_token: &'a str,
    messages: &'a [Value],
}

impl LineClient {
    /// `base` is `https://api.line.me` in production, line-sim's address locally. `secrets` must
    /// hold the channel access token.
    pub fn new(base: &str, secrets: Arc<Secrets>, timeout: Duration) -> Result<Self, LineError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .map_err(|e| LineError::Transport(e.to_string()))?;
        Ok(LineClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            secrets,
            timeout,
            calls: LineCalls::default(),
        })
    }

    /// `POST /v2/bot/message/reply` (free). 1-5 messages.
    pub async fn reply(&self, reply_token: &str, messages: &[Value]) -> Result<Accepted, LineError> {
        let body = ReplyBody { reply_token, messages };
        self.post("/v2/bot/message/reply", &body, None).await.map_err(|e| match e {
            LineError::Rejected { status: 400, ref message, .. } if message.contains("reply token") => {
                LineError::InvalidReplyToken
            }
            other => other,
        })
    }

    /// `POST /v2/bot/message/multicast` (billed per recipient): 1-500 user IDs, 1-5 messages,
    /// with the batch's retry key. A 409 comes back as [`LineError::RetryKeyAccepted`].
    pub async fn multicast(
        &self,
        to: &[&str],
        messages: &[Value],
        retry_key: &str,
        unit: Option<&str>,
    ) -> Result<Accepted, LineError> {
        let body = match unit {
            Some(unit) => serde_json::json!({ "to": to, "messages": messages, "customAggregationUnits": [unit] }),
            None => serde_json::json!({ "to": to, "messages": messages }),
        };
        self.post("/v2/bot/message/multicast", &body, Some(retry_key)).await
    }

    /// `GET /v2/bot/message/quota/consumption`: the month's billable messages so far (OA
    /// Manager's sends included).
    pub async fn consumption(&self) -> Result<u64, LineError> {
        let used = self.get("/v2/bot/message/quota/consumption").await?;
        used.get("totalUsage")
            .and_then(Value::as_u64)
            .ok_or_else(|| LineError::Transport("quota/consumption: no totalUsage in the answer".into()))
    }

    /// The tally of this client's requests (shared by its clones).
    pub fn calls(&self) -> &LineCalls {
        &self.calls
    }

    /// `POST /v2/bot/message/validate/multicast`: LINE's own check of message objects.
    pub async fn validate_multicast(&self, messages: &[Value]) -> Result<(), LineError> {
        let body = serde_json::json!({ "messages": messages });
        self.post("/v2/bot/message/validate/multicast", &body, None).await.map(|_| ())
    }

    /// The month's limit (`GET /v2/bot/message/quota`; None: no limit) and what was sent so far
    /// (`.../quota/consumption`).
    pub async fn month(&self) -> Result<Month, LineError> {
        let quota = self.get("/v2/bot/message/quota").await?;
        let used = self.get("/v2/bot/message/quota/consumption").await?;
        Ok(Month {
            quota: match quota.get("type").and_then(Value::as_str) {
                Some("limited") => quota.get("value").and_then(Value::as_u64),
                _ => None,
            },
            used: used.get("totalUsage").and_then(Value::as_u64).unwrap_or(0),
        })
    }

    /// `GET /v2/bot/followers/ids`: one page of up to 1,000 following friends' IDs (LINE leaves
    /// out friends who blocked the account) and where the next page starts. Verified and premium
    /// accounts only: others get [`LineError::Forbidden`].
    pub async fn followers(&self, start: Option<&str>) -> Result<(Vec<String>, Option<String>), LineError> {
        let mut url =
            reqwest::Url::parse("http://line/v2/bot/followers/ids").map_err(|e| LineError::Transport(e.to_string()))?;
        url.query_pairs_mut().append_pair("limit", "1000");
        if let Some(start) = start {
            url.query_pairs_mut().append_pair("start", start);
        }
        let page = self.get(&format!("{}?{}", url.path(), url.query().unwrap_or_default())).await?;
        let ids = page
            .get("userIds")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        Ok((ids, page.get("next").and_then(Value::as_str).map(str::to_string)))
    }

    async fn get(&self, path: &str) -> Result<Value, LineError> {
        const TOKEN: SecretName = SecretName::ChannelAccessToken;
        let used = self.secrets.current();
        let Some(token) = used.get(TOKEN) else { return Err(LineError::Unauthorized) };
        self.calls.call(path);
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| self.transport(e))?;
        match status {
            200..=299 => serde_json::from_str(&text).map_err(|e| LineError::Transport(format!("{path}: {e}"))),
            401 => Err(LineError::Unauthorized),
            403 => Err(LineError::Forbidden { message: text }),
            429 => Err(LineError::RateLimited),
            500.. => Err(LineError::Server { status, request_id: None }),
            _ => Err(LineError::Rejected { status, message: text, property: None, request_id: None }),
        }
    }

    /// POSTs `body`; after a 401, reads the secret again and, if the token changed, sends once more.
    async fn post<B: Serialize>(&self, path: &str, body: &B, retry_key: Option<&str>) -> Result<Accepted, LineError> {
        const TOKEN: SecretName = SecretName::ChannelAccessToken;
        let used = self.secrets.current();
        match self.post_with(used.get(TOKEN), path, body, retry_key).await {
            Err(LineError::Unauthorized) => {
                match self.secrets.reissued(TOKEN, &used, AFTER_UNAUTHORIZED, "LINE answered 401").await {
                    // A 401 was not accepted: the same request (and retry key) may go again.
                    Some(fresh) => self.post_with(fresh.get(TOKEN), path, body, retry_key).await,
                    None => Err(LineError::Unauthorized),
                }
            }
            other => other,
        }
    }

    async fn post_with<B: Serialize>(
        &self,
        token: Option<&crate::config::Secret>,
        path: &str,
        body: &B,
        retry_key: Option<&str>,
    ) -> Result<Accepted, LineError> {
        let Some(token) = token else { return Err(LineError::Unauthorized) };
        self.calls.call(path);
        let mut request = self.http.post(format!("{}{path}", self.base)).bearer_auth(token.expose()).json(body);
        if let Some(key) = retry_key {
            request = request.header(RETRY_KEY_HEADER, key);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let request_id = header(REQUEST_ID_HEADER);
        if (200..300).contains(&status) {
            return Ok(Accepted { request_id });
        }
        let accepted_request_id = header(ACCEPTED_REQUEST_ID_HEADER);
        let text = response.text().await.unwrap_or_default();
        let parsed = serde_json::from_str::<Value>(&text).ok();
        let property =
            parsed.as_ref().and_then(|v| v.pointer("/details/0/property")).and_then(Value::as_str).map(str::to_string);
        let detail = parsed.as_ref().and_then(|v| v.pointer("/details/0/message")).and_then(Value::as_str);
        let message = parsed
            .as_ref()
            .and_then(|v| v.get("message").and_then(Value::as_str))
            .map(|m| match (&property, detail) {
                (Some(p), Some(d)) => format!("{m}: {p}: {d}"),
                _ => m.to_string(),
            })
            .unwrap_or(text);
        Err(match status {
            401 => LineError::Unauthorized,
            403 => LineError::Forbidden { message },
            409 => LineError::RetryKeyAccepted { accepted_request_id },
            429 if message.contains("monthly limit") => LineError::MonthlyLimit,
            429 => LineError::RateLimited,
            500.. => LineError::Server { status, request_id },
            _ => LineError::Rejected { status, message, property, request_id },
        })
    }

    fn transport(&self, e: reqwest::Error) -> LineError {
        if e.is_timeout() {
            LineError::Timeout(self.timeout)
        } else if e.is_connect() {
            // Before any byte of the request: LINE surely has nothing.
            LineError::Unreachable(e.without_url().to_string())
        } else {
            // Without the URL: it is not secret, but the error chain is what helps.
            LineError::Transport(e.without_url().to_string())
        }
    }
}

#[async_trait]
impl Multicaster for LineClient {
    async fn multicast(
        &self,
        to: &[&str],
        messages: &[Value],
        retry_key: &str,
        unit: Option<&str>,
    ) -> Result<Accepted, LineError> {
        LineClient::multicast(self, to, messages, retry_key, unit).await
    }

    async fn month(&self) -> Result<Month, LineError> {
        LineClient::month(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_is_named_by_its_api_and_queries_do_not_matter() {
        assert_eq!(api_of("/v2/bot/message/reply"), "reply");
        assert_eq!(api_of("/v2/bot/message/multicast"), "multicast");
        assert_eq!(api_of("/v2/bot/message/quota/consumption"), "consumption");
        assert_eq!(api_of("/v2/bot/followers/ids?limit=1000&start=x"), "followers");
        assert_eq!(api_of("/v2/bot/profile/U0123"), "profile");
        assert_eq!(api_of("/v2/bot/info"), "other", "a metric name never carries a path or an id");
    }
}
