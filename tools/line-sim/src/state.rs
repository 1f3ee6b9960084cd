//! What the simulated platform remembers, and the rules it applies. No HTTP here: `api` turns
//! requests into calls on [`State`], `inspect` exposes it, `sender` plays LINE's webhook side.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The endpoints that have their own rate limit, faults and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Api {
    Reply,
    Push,
    Multicast,
    Quota,
    Profile,
    Validate,
    Followers,
    /// The channel's own settings: bot info, the webhook endpoint and its test.
    Channel,
}

impl Api {
    pub const ALL: [Api; 8] =
        [Api::Reply, Api::Push, Api::Multicast, Api::Quota, Api::Profile, Api::Validate, Api::Followers, Api::Channel];

    pub fn name(self) -> &'static str {
        match self {
            Api::Reply => "reply",
            Api::Push => "push",
            Api::Multicast => "multicast",
            Api::Quota => "quota",
            Api::Profile => "profile",
            Api::Validate => "validate",
            Api::Followers => "followers",
            Api::Channel => "channel",
        }
    }

    pub fn parse(s: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// Settings that can be changed while running (`PUT /__sim/config`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Settings {
    /// Requests per second per endpoint (token buckets holding one second's worth).
    pub rate_limits: BTreeMap<Api, f64>,
    /// Messages a month; `None` is LINE's `{"type":"none"}` (no limit).
    pub monthly_quota: Option<u64>,
    pub reply_token_ttl_secs: i64,
    /// How long a "hang" fault holds the request before answering 500.
    pub hang_ms: u64,
    pub max_body_bytes: usize,
    /// Requests kept in the request log.
    pub log_capacity: usize,
    /// Whether the account may list its followers (LINE: verified and premium accounts only).
    pub followers_api: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rate_limits: BTreeMap::from([
                (Api::Reply, 2_000.0),
                (Api::Push, 2_000.0),
                (Api::Multicast, 200.0),
                (Api::Quota, 2_000.0),
                (Api::Profile, 2_000.0),
                (Api::Validate, 2_000.0),
                (Api::Followers, 2_000.0),
                (Api::Channel, 2_000.0),
            ]),
            monthly_quota: None,
            reply_token_ttl_secs: 60,
            hang_ms: 30_000,
            max_body_bytes: 2 * 1024 * 1024,
            log_capacity: 10_000,
            followers_api: true,
        }
    }
}

/// Probabilities (0-1) of a fault on each request to one endpoint, for the next `times` requests
/// (all of them when absent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Answer 500 without doing anything.
    pub error500: f64,
    /// Answer 429 (rate limit) without doing anything.
    pub rate_limit429: f64,
    /// Hold the request past any sane client timeout without doing anything.
    pub hang: f64,
    /// Do the work (deliver, bill, remember the retry key), then hang: the nasty case for clients.
    pub hang_after_delivery: f64,
    /// Answer 403 (the channel may not use this API) without doing anything.
    pub forbidden403: f64,
    /// Only requests whose body contains this text are affected (and counted in `times`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// Let this many matching requests through first (a fault in the middle of a run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Error500,
    RateLimit429,
    Hang,
    HangAfterDelivery,
    Forbidden403,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Friend {
    pub user_id: String,
    pub display_name: String,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(default = "default_language")]
    pub language: String,
}

fn default_language() -> String {
    "en".into()
}

/// One message request as one recipient received it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub api: Api,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_key: Option<String>,
    /// Simulated time, ms since the epoch.
    pub at: i64,
    pub messages: Arc<Vec<Value>>,
}

/// One request as the platform saw it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub request_id: String,
    pub api: Api,
    pub status: u16,
    /// Arrival, simulated time: ms since the epoch, and µs (for spacing finer than a millisecond).
    pub at: i64,
    pub at_us: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<&'static str>,
    /// Recipients that received the messages.
    pub delivered_to: usize,
    /// Messages billed (recipients, for billed endpoints).
    pub billed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ReplyToken {
    /// Who the reply goes to: the event's user, group or room id.
    pub to: String,
    pub issued_at: i64,
    pub event_time: i64,
    pub used: bool,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A failed request: status, LINE's error body, extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub details: Vec<(String, String)>,
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Refusal { status, message: message.into(), details: vec![], headers: vec![] }
    }

    fn detail(mut self, property: &str, message: impl Into<String>) -> Self {
        self.details.push((property.into(), message.into()));
        self
    }

    pub fn body(&self) -> Value {
        let mut body = json!({ "message": self.message });
        if !self.details.is_empty() {
            body["details"] =
                self.details.iter().map(|(p, m)| json!({ "message": m, "property": p })).collect::<Vec<_>>().into();
        }
        body
    }
}

pub const RATE_LIMITED: &str = "The API rate limit has been exceeded. Try again later.";
pub const MONTHLY_LIMIT: &str = "You have reached your monthly limit.";
pub const INVALID_REPLY_TOKEN: &str = "Invalid reply token";
pub const RETRY_KEY_ACCEPTED: &str = "The retry key is already accepted";
const RETRY_KEY_TTL_MS: i64 = 24 * 3_600_000;
/// A redelivered event's token works only within 20 minutes of the event.
const REDELIVERY_TOKEN_WINDOW_MS: i64 = 20 * 60_000;

pub struct State {
    pub settings: Settings,
    pub access_token: String,
    clock_offset_ms: i64,
    pub friends: HashMap<String, Friend>,
    pub tokens: HashMap<String, ReplyToken>,
    retry_keys: HashMap<String, (String, i64)>,
    pub deliveries: HashMap<String, Vec<Delivery>>,
    pub log: VecDeque<LogEntry>,
    pub counters: BTreeMap<String, u64>,
    usage: HashMap<String, u64>,
    /// `customAggregationUnits` names used, by month (LINE allows 1,000 a month).
    units: HashMap<String, HashSet<String>>,
    buckets: HashMap<Api, Bucket>,
    pub faults: BTreeMap<Api, Faults>,
    /// Webhook events sent, by webhookEventId, for redelivery.
    pub sent_events: HashMap<String, Value>,
    rng: fastrand::Rng,
}

pub fn is_user_id(s: &str) -> bool {
    s.len() == 33 && s.starts_with('U') && s[1..].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_chat_id(s: &str) -> bool {
    s.len() == 33
        && matches!(s.as_bytes()[0], b'U' | b'C' | b'R')
        && s[1..].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The (simulated) month a time falls in, for the monthly quota.
fn month_of(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms / 1000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}", t.year(), t.month() as u8)
}

impl State {
    pub fn new(access_token: String, settings: Settings, seed: u64) -> Self {
        State {
            settings,
            access_token,
            clock_offset_ms: 0,
            friends: HashMap::new(),
            tokens: HashMap::new(),
            retry_keys: HashMap::new(),
            deliveries: HashMap::new(),
            log: VecDeque::new(),
            counters: BTreeMap::new(),
            usage: HashMap::new(),
            units: HashMap::new(),
            buckets: HashMap::new(),
            faults: BTreeMap::new(),
            sent_events: HashMap::new(),
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// Forgets everything that happened (friends, tokens, keys, deliveries, log, counters, usage,
    /// faults, clock offset); keeps the settings.
    pub fn reset(&mut self) {
        let fresh = State::new(self.access_token.clone(), self.settings.clone(), self.rng.u64(..));
        *self = fresh;
    }

    /// Simulated time in ms: the real clock plus whatever `advance` added.
    pub fn now_ms(&self) -> i64 {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default();
        real + self.clock_offset_ms
    }

    /// Simulated time in µs.
    pub fn now_us(&self) -> i64 {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or_default();
        real + self.clock_offset_ms * 1000
    }

    pub fn advance(&mut self, ms: i64) {
        self.clock_offset_ms += ms;
    }

    pub fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms
    }

    pub fn bump(&mut self, counter: &str, by: u64) {
        *self.counters.entry(counter.to_string()).or_default() += by;
    }

    pub fn usage_this_month(&self) -> u64 {
        self.usage.get(&month_of(self.now_ms())).copied().unwrap_or_default()
    }

    pub fn check_auth(&self, authorization: Option<&str>) -> Result<(), Refusal> {
        match authorization.and_then(|h| h.strip_prefix("Bearer ")) {
            Some(t) if t == self.access_token => Ok(()),
            _ => Err(Refusal::new(
                401,
                "Authentication failed. Confirm that the access token in the authorization header is valid.",
            )),
        }
    }

    /// Takes one token from the endpoint's bucket (capacity: one second's worth).
    pub fn take_rate(&mut self, api: Api) -> Result<(), Refusal> {
        let rate = self.settings.rate_limits.get(&api).copied().unwrap_or(f64::INFINITY);
        if !rate.is_finite() || rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let bucket = self.buckets.entry(api).or_insert(Bucket { tokens: rate, last: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * rate).min(rate.max(1.0));
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Refusal::new(429, RATE_LIMITED))
        }
    }

    /// Rolls the dice for this request's fault, if the endpoint has any configured.
    pub fn roll_fault(&mut self, api: Api, body: &[u8]) -> Option<Fault> {
        let faults = self.faults.get_mut(&api)?;
        if faults.times == Some(0) {
            return None;
        }
        if let Some(text) = &faults.body_contains {
            let needle = text.as_bytes();
            if needle.is_empty() || !body.windows(needle.len()).any(|w| w == needle) {
                return None;
            }
        }
        if let Some(after) = faults.after.as_mut().filter(|a| **a > 0) {
            *after -= 1;
            return None;
        }
        if let Some(t) = faults.times.as_mut() {
            *t -= 1;
        }
        let faults = faults.clone();
        let roll = self.rng.f64();
        let mut edge = 0.0;
        for (p, f) in [
            (faults.error500, Fault::Error500),
            (faults.rate_limit429, Fault::RateLimit429),
            (faults.hang, Fault::Hang),
            (faults.hang_after_delivery, Fault::HangAfterDelivery),
            (faults.forbidden403, Fault::Forbidden403),
        ] {
            edge += p;
            if roll < edge {
                return Some(f);
            }
        }
        None
    }

    pub fn record(&mut self, entry: LogEntry) {
        self.bump(&format!("{}.{}", entry.api.name(), entry.status), 1);
        if self.log.len() >= self.settings.log_capacity.max(1) {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    fn deliver(&mut self, to: &str, api: Api, request_id: &str, retry_key: Option<&str>, messages: &Arc<Vec<Value>>) {
        let at = self.now_ms();
        self.deliveries.entry(to.to_string()).or_default().push(Delivery {
            api,
            request_id: request_id.to_string(),
            retry_key: retry_key.map(str::to_string),
            at,
            messages: messages.clone(),
        });
        self.bump("messagesDelivered", messages.len() as u64);
    }

    /// Whether messages sent to `user_id` reach someone: a known friend who has not blocked us.
    fn reachable(&self, user_id: &str) -> bool {
        self.friends.get(user_id).is_some_and(|f| !f.blocked)
    }

    /// Issues a reply token for an event sent to the bot.
    pub fn issue_token(&mut self, to: &str, event_time: i64) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let issued_at = self.now_ms();
        self.tokens.insert(token.clone(), ReplyToken { to: to.to_string(), issued_at, event_time, used: false });
        self.bump("replyTokensIssued", 1);
        token
    }

    /// A redelivery makes an unused token usable for another minute, within 20 minutes of the event.
    pub fn refresh_token(&mut self, token: &str) {
        let now = self.now_ms();
        if let Some(t) = self.tokens.get_mut(token) {
            if !t.used && now - t.event_time <= REDELIVERY_TOKEN_WINDOW_MS {
                t.issued_at = now;
            }
        }
    }

    fn check_retry_key(&mut self, key: Option<&str>) -> Result<(), Refusal> {
        let Some(key) = key else { return Ok(()) };
        if uuid::Uuid::parse_str(key).is_err() {
            return Err(Refusal::new(400, "The value of the X-Line-Retry-Key header is invalid"));
        }
        let now = self.now_ms();
        match self.retry_keys.get(key) {
            Some((request_id, at)) if now - at < RETRY_KEY_TTL_MS => {
                let mut r = Refusal::new(409, RETRY_KEY_ACCEPTED);
                r.headers.push(("x-line-accepted-request-id", request_id.clone()));
                Err(r)
            }
            _ => Ok(()),
        }
    }

    fn accept_retry_key(&mut self, key: Option<&str>, request_id: &str) {
        if let Some(key) = key {
            let now = self.now_ms();
            self.retry_keys.insert(key.to_string(), (request_id.to_string(), now));
        }
    }

    /// Bills `n` messages against the monthly quota, or refuses them all.
    fn bill(&mut self, n: u64) -> Result<(), Refusal> {
        let month = month_of(self.now_ms());
        let used = self.usage.get(&month).copied().unwrap_or_default();
        if let Some(quota) = self.settings.monthly_quota {
            if used + n > quota {
                return Err(Refusal::new(429, MONTHLY_LIMIT));
            }
        }
        *self.usage.entry(month).or_default() += n;
        self.bump("messagesBilled", n);
        Ok(())
    }

    /// `POST /v2/bot/message/reply`. Returns the recipient.
    pub fn reply(&mut self, body: &Value, retry_key: Option<&str>, request_id: &str) -> Result<Outcome, Refusal> {
        if retry_key.is_some() {
            return Err(Refusal::new(400, "The X-Line-Retry-Key header is not supported for this endpoint"));
        }
        let messages = messages(body)?;
        let token = body.get("replyToken").and_then(Value::as_str).unwrap_or_default();
        let now = self.now_ms();
        let ttl = self.settings.reply_token_ttl_secs * 1000;
        let to = match self.tokens.get_mut(token) {
            Some(t) if !t.used && now - t.issued_at <= ttl => {
                t.used = true;
                t.to.clone()
            }
            _ => {
                self.bump("reply.invalidToken", 1);
                return Err(Refusal::new(400, INVALID_REPLY_TOKEN));
            }
        };
        self.deliver(&to, Api::Reply, request_id, None, &messages);
        Ok(Outcome { delivered_to: 1, billed: 0, body: sent_messages(&messages) })
    }

    /// `POST /v2/bot/message/push`.
    pub fn push(&mut self, body: &Value, retry_key: Option<&str>, request_id: &str) -> Result<Outcome, Refusal> {
        let to = body.get("to").and_then(Value::as_str).unwrap_or_default();
        if !is_chat_id(to) {
            return Err(Refusal::new(400, "The request body has 1 error(s)").detail("to", "Invalid to"));
        }
        let messages = messages(body)?;
        self.check_retry_key(retry_key)?;
        let reach = !to.starts_with('U') || self.reachable(to);
        if reach {
            self.bill(1)?;
            self.deliver(to, Api::Push, request_id, retry_key, &messages);
        }
        self.accept_retry_key(retry_key, request_id);
        Ok(Outcome { delivered_to: reach as usize, billed: reach as u64, body: sent_messages(&messages) })
    }

    /// `POST /v2/bot/message/multicast`: billed per reachable recipient; all or nothing.
    pub fn multicast(&mut self, body: &Value, retry_key: Option<&str>, request_id: &str) -> Result<Outcome, Refusal> {
        let to: Vec<&str> = match body.get("to").and_then(Value::as_array) {
            Some(list) if (1..=500).contains(&list.len()) => list.iter().map(|v| v.as_str().unwrap_or("")).collect(),
            Some(list) => {
                return Err(Refusal::new(400, "The request body has 1 error(s)")
                    .detail("to", format!("Size must be between 1 and 500, got {}", list.len())))
            }
            None => return Err(Refusal::new(400, "The request body has 1 error(s)").detail("to", "Must be an array")),
        };
        if let Some(i) = to.iter().position(|u| !is_user_id(u)) {
            return Err(
                Refusal::new(400, "The request body has 1 error(s)").detail(&format!("to[{i}]"), "Invalid user ID")
            );
        }
        let messages = messages(body)?;
        let unit = self.aggregation_unit(body)?;
        self.check_retry_key(retry_key)?;
        if let Some(unit) = unit {
            let month = month_of(self.now_ms());
            if self.units.entry(month).or_default().insert(unit) {
                self.bump("aggregationUnitsUsed", 1);
            }
        }
        let mut seen = HashSet::new();
        let reachable: Vec<&str> = to.into_iter().filter(|u| seen.insert(*u) && self.reachable(u)).collect();
        self.bill(reachable.len() as u64)?;
        for user in &reachable {
            self.deliver(user, Api::Multicast, request_id, retry_key, &messages);
        }
        self.accept_retry_key(retry_key, request_id);
        Ok(Outcome { delivered_to: reachable.len(), billed: reachable.len() as u64, body: json!({}) })
    }
}

impl State {
    /// `customAggregationUnits`: at most one name, `^[a-zA-Z0-9_]{1,30}$`, and at most 1,000
    /// names a month.
    fn aggregation_unit(&self, body: &Value) -> Result<Option<String>, Refusal> {
        let Some(units) = body.get("customAggregationUnits") else { return Ok(None) };
        let bad = |m: &str| Refusal::new(400, "The request body has 1 error(s)").detail("customAggregationUnits", m);
        let list = units.as_array().ok_or_else(|| bad("Must be an array"))?;
        let [unit] = list.as_slice() else { return Err(bad("Size must be between 0 and 1")) };
        let unit = unit.as_str().unwrap_or_default();
        let ok = (1..=30).contains(&unit.len()) && unit.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(bad("Must match pattern ^[a-zA-Z0-9_]{1,30}$"));
        }
        let used = self.units.get(&month_of(self.now_ms()));
        if used.is_some_and(|u| u.len() >= 1_000 && !u.contains(unit)) {
            return Err(Refusal::new(400, "The number of custom aggregation units this month exceeds the limit"));
        }
        Ok(Some(unit.to_string()))
    }

    /// `GET /v2/bot/followers/ids`: following friends' IDs (not those who blocked the account),
    /// `limit` a page (at most 1,000), in a stable order; `next` is where the next page starts.
    pub fn followers(&self, start: Option<&str>, limit: Option<usize>) -> Result<Outcome, Refusal> {
        if !self.settings.followers_api {
            return Err(Refusal::new(403, "Access to this API is not available for your account"));
        }
        let limit = limit.unwrap_or(1_000);
        if !(1..=1_000).contains(&limit) {
            return Err(Refusal::new(400, "The request body has 1 error(s)").detail("limit", "Must be 1-1000"));
        }
        let mut ids: Vec<&str> = self.friends.values().filter(|f| !f.blocked).map(|f| f.user_id.as_str()).collect();
        ids.sort_unstable();
        let from = match start {
            Some(token) => ids.partition_point(|u| *u <= token),
            None => 0,
        };
        let page: Vec<&str> = ids.iter().skip(from).take(limit).copied().collect();
        let mut body = json!({ "userIds": page });
        if from + page.len() < ids.len() {
            if let Some(last) = page.last() {
                body["next"] = json!(last);
            }
        }
        Ok(Outcome { delivered_to: 0, billed: 0, body })
    }
}

/// What a successful request did.
#[derive(Debug)]
pub struct Outcome {
    pub delivered_to: usize,
    pub billed: u64,
    pub body: Value,
}

fn sent_messages(messages: &[Value]) -> Value {
    let sent: Vec<Value> = messages
        .iter()
        .map(|_| json!({ "id": ulid::Ulid::new().0.to_string(), "quoteToken": uuid::Uuid::new_v4().simple().to_string() }))
        .collect();
    json!({ "sentMessages": sent })
}

/// Checks `messages`: 1-5 objects with a `type`; text at most 5,000 characters.
fn messages(body: &Value) -> Result<Arc<Vec<Value>>, Refusal> {
    let bad = |property: String, message: String| {
        Refusal::new(400, "The request body has 1 error(s)").detail(&property, message)
    };
    let list = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("messages".into(), "Must be an array".into()))?;
    if !(1..=5).contains(&list.len()) {
        return Err(bad("messages".into(), format!("Size must be between 1 and 5, got {}", list.len())));
    }
    for (i, m) in list.iter().enumerate() {
        match m.get("type").and_then(Value::as_str) {
            None => return Err(bad(format!("messages[{i}].type"), "Must be specified".into())),
            Some("text") => {
                let n = m.get("text").and_then(Value::as_str).map(|t| t.chars().count()).unwrap_or(0);
                if n == 0 || n > 5_000 {
                    return Err(bad(
                        format!("messages[{i}].text"),
                        format!("Length must be between 1 and 5000, got {n}"),
                    ));
                }
            }
            Some("flex") => {
                let alt = m.get("altText").and_then(Value::as_str).map(|t| t.chars().count()).unwrap_or(0);
                if alt == 0 || alt > 1_500 {
                    return Err(bad(
                        format!("messages[{i}].altText"),
                        format!("Length must be between 1 and 1500, got {alt}"),
                    ));
                }
                match m.pointer("/contents/type").and_then(Value::as_str) {
                    Some("bubble") | Some("carousel") => {}
                    _ => {
                        return Err(bad(
                            format!("messages[{i}].contents.type"),
                            "Must be one of [bubble, carousel]".into(),
                        ))
                    }
                }
            }
            Some("sticker" | "image" | "video" | "audio" | "location" | "imagemap" | "template" | "textV2") => {}
            Some(other) => {
                return Err(bad(format!("messages[{i}].type"), format!("Invalid message type: {other}")));
            }
        }
    }
    Ok(Arc::new(list.clone()))
}

/// `POST /v2/bot/message/validate/*`: checks the messages as a send would, sends nothing.
pub fn validate(body: &Value) -> Result<Outcome, Refusal> {
    messages(body)?;
    Ok(Outcome { delivered_to: 0, billed: 0, body: json!({}) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const U1: &str = "U0123456789abcdef0123456789abcdef";
    const U2: &str = "U1111111111abcdef0123456789abcdef";

    fn state() -> State {
        let mut s = State::new("t".into(), Settings::default(), 7);
        s.friends.insert(
            U1.into(),
            Friend {
                user_id: U1.into(),
                display_name: "A".into(),
                blocked: false,
                picture_url: None,
                status_message: None,
                language: "en".into(),
            },
        );
        s.friends.insert(
            U2.into(),
            Friend {
                user_id: U2.into(),
                display_name: "B".into(),
                blocked: true,
                picture_url: None,
                status_message: None,
                language: "en".into(),
            },
        );
        s
    }

    fn text(t: &str) -> Value {
        json!([{ "type": "text", "text": t }])
    }

    #[test]
    fn reply_tokens_are_single_use_and_expire() {
        let mut s = state();
        let token = s.issue_token(U1, s.now_ms());
        let body = json!({ "replyToken": token, "messages": text("hi") });
        assert!(s.reply(&body, None, "r1").is_ok());
        assert_eq!(s.reply(&body, None, "r2").unwrap_err().message, INVALID_REPLY_TOKEN);
        let late = s.issue_token(U1, s.now_ms());
        s.advance(61_000);
        let body = json!({ "replyToken": late, "messages": text("hi") });
        assert_eq!(s.reply(&body, None, "r3").unwrap_err().status, 400);
        assert_eq!(s.deliveries[U1].len(), 1);
    }

    #[test]
    fn multicast_bills_reachable_friends_only_and_honours_retry_keys_for_a_day() {
        let mut s = state();
        let unknown = "U2222222222abcdef0123456789abcdef";
        let key = uuid::Uuid::new_v4().to_string();
        let body = json!({ "to": [U1, U2, unknown, U1], "messages": text("news") });
        let out = s.multicast(&body, Some(&key), "m1").unwrap();
        assert_eq!((out.delivered_to, out.billed), (1, 1));
        let again = s.multicast(&body, Some(&key), "m2").unwrap_err();
        assert_eq!(again.status, 409);
        assert_eq!(again.headers, vec![("x-line-accepted-request-id", "m1".to_string())]);
        s.advance(RETRY_KEY_TTL_MS);
        assert!(s.multicast(&body, Some(&key), "m3").is_ok(), "after 24 h the key is a new request");
        assert_eq!(s.deliveries[U1].len(), 2);
        assert!(!s.deliveries.contains_key(U2));
    }

    #[test]
    fn the_monthly_quota_refuses_whole_requests() {
        let mut s = state();
        s.settings.monthly_quota = Some(1);
        let body = json!({ "to": [U1], "messages": text("a") });
        assert!(s.multicast(&body, None, "a").is_ok());
        let r = s.multicast(&body, None, "b").unwrap_err();
        assert_eq!((r.status, r.message.as_str()), (429, MONTHLY_LIMIT));
        assert_eq!(s.usage_this_month(), 1);
    }

    #[test]
    fn bad_requests_name_the_property() {
        let mut s = state();
        let too_many: Vec<&str> = vec![U1; 501];
        let r = s.multicast(&json!({ "to": too_many, "messages": text("a") }), None, "x").unwrap_err();
        assert_eq!(r.body()["details"][0]["property"], "to");
        let r = s.multicast(&json!({ "to": ["nope"], "messages": text("a") }), None, "x").unwrap_err();
        assert_eq!(r.body()["details"][0]["property"], "to[0]");
        let long = "x".repeat(5_001);
        let r = s.push(&json!({ "to": U1, "messages": text(&long) }), None, "x").unwrap_err();
        assert_eq!(r.body()["details"][0]["property"], "messages[0].text");
        let six: Vec<Value> = (0..6).map(|_| json!({ "type": "text", "text": "a" })).collect();
        assert_eq!(s.push(&json!({ "to": U1, "messages": six }), None, "x").unwrap_err().status, 400);
        assert_eq!(
            s.push(&json!({ "to": U1, "messages": text("a") }), Some("not-a-uuid"), "x").unwrap_err().status,
            400
        );
    }

    #[test]
    fn faults_fire_for_the_requested_count() {
        let mut s = state();
        s.faults.insert(Api::Reply, Faults { error500: 1.0, times: Some(2), ..Faults::default() });
        assert_eq!(s.roll_fault(Api::Reply, b""), Some(Fault::Error500));
        assert_eq!(s.roll_fault(Api::Reply, b""), Some(Fault::Error500));
        assert_eq!(s.roll_fault(Api::Reply, b""), None);
        assert_eq!(s.roll_fault(Api::Push, b""), None);
    }

    #[test]
    fn faults_can_target_requests_by_their_body() {
        let mut s = state();
        let only = Faults { error500: 1.0, times: Some(1), body_contains: Some("VIP".into()), ..Faults::default() };
        s.faults.insert(Api::Reply, only);
        assert_eq!(s.roll_fault(Api::Reply, br#"{"messages":[{"text":"Open 8 to 8"}]}"#), None, "not counted");
        assert_eq!(s.roll_fault(Api::Reply, br#"{"messages":[{"text":"Welcome, VIP!"}]}"#), Some(Fault::Error500));
        assert_eq!(s.roll_fault(Api::Reply, br#"{"messages":[{"text":"Welcome, VIP!"}]}"#), None, "once");
    }

    #[test]
    fn the_token_bucket_refuses_past_the_rate() {
        let mut s = state();
        s.settings.rate_limits.insert(Api::Multicast, 3.0);
        let results: Vec<bool> = (0..5).map(|_| s.take_rate(Api::Multicast).is_ok()).collect();
        assert_eq!(results, [true, true, true, false, false]);
    }
}
