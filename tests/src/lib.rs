//! Harness for the tests in `tests/tests/`: they run against the real local services (DynamoDB
//! Local, the SQS emulator, and for end-to-end tests the functions under `cargo lambda watch`).
//! Run them with `make test`, which starts whatever is not running.
//!
//! Every test provisions its own stack from `infra/template.yaml` under a unique name, so tests run
//! in parallel without seeing each other's items or messages.

use std::collections::{BTreeMap, HashMap};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::config::Secret;
use shared::envelope::QueuedEvent;
use shared::ports::{BatchOutcome, Clock, MessageQueue, OutgoingMessage};

pub mod campaigns;
pub mod pipeline;
pub mod seed;

pub use oa::sample;

/// The system clock plus an adjustable offset: lets a test age reply tokens, claims and secrets
/// without waiting.
#[derive(Default)]
pub struct ShiftedClock(pub AtomicI64);

impl ShiftedClock {
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now_ms(&self) -> i64 {
        self.now_us().div_euclid(1000)
    }

    fn now_us(&self) -> i64 {
        shared::ports::SystemClock.now_us() + self.0.load(Ordering::SeqCst) * 1000
    }
}

/// A queue in front of a real one that records every message it passed on successfully, and
/// can refuse the next sends (as an SQS outage would) or take its time about them.
pub struct WatchedQueue {
    pub inner: Arc<dyn MessageQueue>,
    /// The dedupe ids that reached the real queue, in order, every time they were sent.
    pub sent: Mutex<Vec<String>>,
    /// The next this many `send_all` calls fail without sending anything.
    pub fail_next: AtomicUsize,
    /// The next `send_all` call waits this long first (ms), then is cut off by its deadline.
    pub stall_next_ms: AtomicUsize,
}

impl WatchedQueue {
    pub fn new(inner: Arc<dyn MessageQueue>) -> Arc<Self> {
        Arc::new(WatchedQueue {
            inner,
            sent: Mutex::default(),
            fail_next: AtomicUsize::new(0),
            stall_next_ms: AtomicUsize::new(0),
        })
    }

    pub fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl MessageQueue for WatchedQueue {
    async fn send_all(&self, messages: &[OutgoingMessage<'_>], deadline: tokio::time::Instant) -> BatchOutcome {
        let all_failed = |why: &str| BatchOutcome {
            failed: (0..messages.len()).collect(),
            error: Some(why.into()),
            deadline_passed: why.contains("deadline"),
        };
        if self.fail_next.load(Ordering::SeqCst) > 0 {
            self.fail_next.fetch_sub(1, Ordering::SeqCst);
            return all_failed("sqs SendMessageBatch failed: the test switched SQS off");
        }
        let stall = self.stall_next_ms.swap(0, Ordering::SeqCst);
        if stall > 0 {
            let wait = tokio::time::sleep(Duration::from_millis(stall as u64));
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                return all_failed("the request's deadline passed");
            }
        }
        let outcome = self.inner.send_all(messages, deadline).await;
        let mut sent = self.sent.lock().unwrap();
        for (i, m) in messages.iter().enumerate() {
            if !outcome.failed.contains(&i) {
                sent.push(m.dedupe_id.to_string());
            }
        }
        outcome
    }
}

/// Secrets the in-process tests sign with (the end-to-end tests use local.env's).
pub const CHANNEL_SECRET: &str = "test-channel-secret";
pub const SHOP_SECRET: &str = "test-shop-secret";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Reads `local.env` (values already in the environment win), once per process.
pub fn load_local_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = dotenvy::from_path(repo_root().join("local.env"));
    });
}

pub fn setting(name: &str) -> String {
    load_local_env();
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set and not in local.env"))
}

/// Panics with instructions when a local service is not listening.
pub fn require_service(what: &str, url: &str) {
    let authority = url.split("://").nth(1).unwrap_or(url).split('/').next().unwrap_or_default();
    let reachable = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
    assert!(
        reachable,
        "{what} is not reachable at {url}. These tests run against the real local services: run them with \
         `make test` (it starts what is missing), or start the services with `make local-up`."
    );
}

/// SDK config for the local services (checked reachable first).
pub async fn local_sdk() -> aws_config::SdkConfig {
    load_local_env();
    require_service("DynamoDB Local", &setting("AWS_ENDPOINT_URL_DYNAMODB"));
    require_service("The SQS emulator", &setting("AWS_ENDPOINT_URL_SQS"));
    require_service("Secrets Manager (the SQS emulator)", &setting("AWS_ENDPOINT_URL_SECRETS_MANAGER"));
    shared::aws::sdk_config(Duration::from_secs(10)).await
}

/// An isolated stack: every table and queue of the template, under a unique name.
pub struct TestStack {
    pub stack: oa::stack::Stack,
    pub sdk: aws_config::SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl TestStack {
    pub async fn new() -> Self {
        let sdk = local_sdk().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let template = oa::stack::Template::load(&repo_root().join("infra/template.yaml")).expect("template loads");
        let name = format!("t-{}", ulid::Ulid::new().to_string().to_lowercase());
        let stack = oa::stack::provision(&template, &name, &dynamodb, &sqs).await.expect("provisioning works");
        Self { stack, sdk, dynamodb, sqs }
    }

    /// The stack `make local-up` runs (`oa-local`), as it is.
    pub async fn running() -> Self {
        let sdk = local_sdk().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let template = oa::stack::Template::load(&repo_root().join("infra/template.yaml")).expect("template loads");
        let stack = oa::stack::provision(&template, "oa-local", &dynamodb, &sqs).await.expect("the local stack is up");
        Self { stack, sdk, dynamodb, sqs }
    }

    pub fn table(&self, logical_id: &str) -> &str {
        &self.stack.tables[logical_id]
    }

    pub fn queue_url(&self, logical_id: &str) -> &str {
        &self.stack.queue_urls[logical_id]
    }

    /// The webhook function's configuration for this stack (secrets from the environment, as
    /// locally).
    pub fn webhook_config(&self) -> webhook::config::Config {
        let template = oa::stack::Template::load(&repo_root().join("infra/template.yaml")).unwrap();
        let env = self.stack.function_env(&template, "WebhookFunction").unwrap();
        let mut vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        vars.insert("LINE_CHANNEL_SECRET", CHANNEL_SECRET);
        vars.insert("SHOP_EVENTS_SECRET", SHOP_SECRET);
        webhook::config::Config::from_env(&vars).expect("the template gives the function all it needs")
    }

    /// The webhook function's dependencies, wired exactly as in production.
    pub async fn webhook(&self) -> webhook::Deps {
        webhook::Deps::new(self.webhook_config(), &self.sdk).await.expect("the secrets are readable")
    }

    /// The webhook function's dependencies with `config` and another SQS client (e.g. one that
    /// cannot reach SQS).
    pub async fn webhook_with(&self, config: webhook::config::Config, sqs: aws_sdk_sqs::Client) -> webhook::Deps {
        let store = config.secrets.store(&self.sdk);
        let secrets = shared::secrets::Secrets::load(store, webhook::config::Config::SECRETS).await.expect("secrets");
        webhook::Deps::from_parts(config, std::sync::Arc::new(secrets), self.dynamodb.clone(), sqs)
    }

    /// A new Secrets Manager secret (in the emulator) holding `values` (JSON keys as on AWS);
    /// returns its ARN.
    pub async fn secret(&self, values: serde_json::Value) -> String {
        let client = aws_sdk_secretsmanager::Client::new(&self.sdk);
        let name = format!("{}/line-{}", self.stack.name, ulid::Ulid::new().to_string().to_lowercase());
        let out = client
            .create_secret()
            .name(name)
            .secret_string(values.to_string())
            .send()
            .await
            .expect("the SQS emulator (moto) serves Secrets Manager too");
        out.arn.expect("a secret has an ARN")
    }

    /// Replaces the value of the secret `arn` (a rotation, as ops would do it).
    pub async fn rotate_secret(&self, arn: &str, values: serde_json::Value) {
        aws_sdk_secretsmanager::Client::new(&self.sdk)
            .put_secret_value()
            .secret_id(arn)
            .secret_string(values.to_string())
            .send()
            .await
            .expect("the secret can be updated");
    }

    /// Receives and deletes every message on one of this stack's queues; returns their bodies.
    pub async fn drain(&self, logical_id: &str) -> Vec<String> {
        drain_queue(&self.sqs, self.queue_url(logical_id)).await
    }

    /// [`Self::drain`], parsed.
    pub async fn drain_events(&self, logical_id: &str) -> Vec<QueuedEvent<'static>> {
        self.drain(logical_id)
            .await
            .iter()
            .map(|b| {
                let queued: QueuedEvent =
                    serde_json::from_str(b).unwrap_or_else(|e| panic!("queue body is a QueuedEvent ({e}): {b}"));
                queued.into_owned()
            })
            .collect()
    }

    pub async fn item_count(&self, logical_id: &str) -> usize {
        let out = self.dynamodb.scan().table_name(self.table(logical_id)).send().await.expect("scan works");
        out.items.unwrap_or_default().len()
    }

    pub async fn friend(&self, user_id: &str) -> Option<HashMap<String, AttributeValue>> {
        get_item(&self.dynamodb, self.table("UsersTable"), "userId", user_id).await
    }

    /// The idempotency record of an event key.
    pub async fn event_record(&self, key: &str) -> Option<HashMap<String, AttributeValue>> {
        get_item(&self.dynamodb, self.table("EventsTable"), "id", key).await
    }

    /// Nothing at all in any table or queue of this stack.
    pub async fn assert_untouched(&self) {
        for table in self.stack.tables.keys() {
            assert_eq!(self.item_count(table).await, 0, "table {table} must be empty");
        }
        for queue in self.stack.queue_urls.keys() {
            assert!(self.drain(queue).await.is_empty(), "queue {queue} must be empty");
        }
    }
}

/// One item of `table` by its hash key, strongly consistent.
pub async fn get_item(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
    value: &str,
) -> Option<HashMap<String, AttributeValue>> {
    dynamodb
        .get_item()
        .table_name(table)
        .key(key, AttributeValue::S(value.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get works")
        .item
}

/// The item at (`pk`, `sk`) of a campaigns-style table, strongly consistent (empty if absent).
pub async fn get_item_by(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: &str,
    sk: &str,
) -> HashMap<String, AttributeValue> {
    dynamodb
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get works")
        .item
        .unwrap_or_default()
}

/// Receives and deletes every message on the queue at `url`, as a consumer would; returns their
/// bodies in the order received. Two empty polls in a row end it.
pub async fn drain_queue(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut empty_polls = 0;
    while empty_polls < 2 {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive works");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            empty_polls += 1;
            continue;
        }
        empty_polls = 0;
        for m in messages {
            let handle = m.receipt_handle.unwrap_or_default();
            sqs.delete_message().queue_url(url).receipt_handle(handle).send().await.expect("delete works");
            bodies.push(m.body.unwrap_or_default());
        }
    }
    bodies
}

/// Messages visible and in flight on the queue at `url` (0: everything was handled and deleted).
///
/// A zero is read twice, 200 ms apart. The emulator counts the visible messages, then the
/// invisible ones, at two instants: a message whose visibility timeout ends between them (a
/// retry coming back) is in neither count. A message cannot be at that edge for both readings.
pub async fn queue_depth_at(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    let depth = queue_depth_once(sqs, url).await;
    if depth > 0 {
        return depth;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    queue_depth_once(sqs, url).await
}

async fn queue_depth_once(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes");
    let attrs = out.attributes.unwrap_or_default();
    let n = |a: A| attrs.get(&a).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    n(A::ApproximateNumberOfMessages) + n(A::ApproximateNumberOfMessagesNotVisible)
}

/// A Lambda Function URL event (payload 2.0) as AWS delivers it, decoded by lambda_http itself.
pub fn function_url_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8], base64: bool) -> Request {
    let headers: serde_json::Map<String, serde_json::Value> =
        headers.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let body = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8(body.to_vec()).expect("text body")
    };
    let event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous", "apiId": "local", "domainName": "local.lambda-url.ap-northeast-1.on.aws",
            "domainPrefix": "local", "requestId": ulid::Ulid::new().to_string(), "routeKey": "$default",
            "stage": "$default", "time": "22/Nov/2026:00:00:00 +0000", "timeEpoch": 0,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "tests"}
        },
        "body": body,
        "isBase64Encoded": base64,
    });
    lambda_http::request::from_str(&event.to_string()).expect("a valid Function URL event")
}

/// A POST of `body` to `path`, signed with `secret` in `header`. A body that is not UTF-8 arrives
/// base64-encoded, as a Function URL hands over bytes that are not text.
pub fn signed_post(path: &str, header: &str, secret: &str, body: &[u8]) -> Request {
    let signature = shared::line::signature::sign(secret, body);
    let binary = std::str::from_utf8(body).is_err();
    function_url_request("POST", path, &[("content-type", "application/json"), (header, &signature)], body, binary)
}

/// A LINE webhook POST signed with [`CHANNEL_SECRET`].
pub fn line_post(body: &[u8]) -> Request {
    signed_post("/webhook", "x-line-signature", CHANNEL_SECRET, body)
}

/// A shop-events POST signed with [`SHOP_SECRET`].
pub fn shop_post(body: &[u8]) -> Request {
    signed_post("/events", "x-shop-signature", SHOP_SECRET, body)
}

/// Calls the handler; returns the status and the body text.
pub async fn call(deps: &webhook::Deps, request: Request) -> (u16, String) {
    let response: Response<Body> = webhook::function_handler(deps, request).await.expect("the handler never errors");
    let status = response.status().as_u16();
    let text = match response.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    (status, text)
}

/// A webhook body with one text message from a new friend, as a new event.
pub fn one_text_body(text: &str) -> Vec<u8> {
    sample::body(
        "Ubot00000000000000000000000000000",
        &[sample::text(&sample::event_id(), &sample::user_id(), text, sample::now_ms())],
    )
}

/// The counts a 200/500 answer reports: `(enqueued, duplicates)`.
pub fn counts(body: &str) -> (u64, u64) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (v["enqueued"].as_u64().unwrap_or(0), v["duplicates"].as_u64().unwrap_or(0))
}

/// A deadline a few seconds away, for direct queue sends.
pub fn soon() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(5)
}

/// Keys of the queued events, for comparing sets.
pub fn keys(events: &[QueuedEvent]) -> Vec<String> {
    events.iter().map(|e| e.dedupe_key().to_string()).collect()
}

/// The secret the running local stack uses.
pub fn local_secret(name: &str) -> Secret {
    Secret::new(setting(name))
}

/// The `oa` binary of this build (`cargo build -p oa`, which `make test` runs first).
pub fn oa_binary() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("debug/oa");
    assert!(path.exists(), "{} is missing: build it with `cargo build -p oa` (make test does)", path.display());
    path
}

/// `oa --local ARGS`, run from the repository.
pub fn oa_local(args: &[&str]) -> std::process::Output {
    std::process::Command::new(oa_binary()).current_dir(repo_root()).arg("--local").args(args).output().unwrap()
}

/// Skips nothing: fails, naming `make local-up`, when the functions of the local stack are not up.
pub fn require_functions() {
    require_service("The functions (cargo lambda watch)", &setting("WEBHOOK_URL"));
}

/// A region's prices (USD per unit, by name), read straight from infra/prices.yaml: for costs
/// computed by hand.
pub fn price_table(region: &str) -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(repo_root().join("infra/prices.yaml")).unwrap();
    let table: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let region = &table["regions"][region];
    region
        .as_mapping()
        .unwrap_or_else(|| panic!("no {region:?} in prices.yaml"))
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v["usd"].as_f64().unwrap()))
        .collect()
}

/// Memory (MB) per function, straight from the template.
pub fn template_memory(function: &str) -> f64 {
    let text = std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap();
    let template: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let id = match function {
        "webhook" => "WebhookFunction",
        "keyword-reply" => "KeywordReplyFunction",
        "tagger" => "TaggerFunction",
        "campaign" => "CampaignFunction",
        _ => "MulticastFunction",
    };
    template["Resources"][id]["Properties"]["MemorySize"]
        .as_f64()
        .or_else(|| template["Globals"]["Function"]["MemorySize"].as_f64())
        .unwrap()
}
