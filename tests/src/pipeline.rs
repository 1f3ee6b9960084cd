//! The pipeline of one test, isolated: line-sim (in process, random port) sends signed webhooks
//! over HTTP to the webhook function (served in process), which enqueues to this test's reply-queue
//! and tag-queue; event-source pollers feed batches to keyword-reply, which replies to line-sim, and
//! to the tagger, which tags. DynamoDB Local, the SQS emulator and Secrets Manager (keyword-reply
//! reads its access token from a secret, as on AWS) are real; only the Lambda runtime is left out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;
use axum::body::Bytes;
use axum::http::Request as AxumRequest;
use keyword_reply::Deps as ReplyDeps;
use line_sim::client::SimClient;
use line_sim::sender::SendResult;
use line_sim::{LineSim, SimConfig};
use oa::poller::{Invoker, Poller};
use serde_json::Value;
use shared::adapters::dynamodb::rules::{Publish, RulesStore};
use shared::adapters::dynamodb::tags::DynamoTags;
use shared::secrets::Secrets;
use tagger::Deps as TaggerDeps;

pub use crate::ShiftedClock;
use crate::{repo_root, TestStack, CHANNEL_SECRET};

pub const ACCESS_TOKEN: &str = "test-channel-access-token";

/// Calls the queue consumers' handlers in this process, with the payload the poller built.
struct InProcess {
    reply: ReplyDeps,
    tagger: TaggerDeps,
}

#[async_trait]
impl Invoker for InProcess {
    async fn invoke(&self, function: &str, payload: Value) -> Result<Value, String> {
        let event: SqsEvent = serde_json::from_value(payload).map_err(|e| e.to_string())?;
        let response = match function {
            // A failed invocation (Err), as Lambda reports it: the poller deletes nothing.
            "keyword-reply" => {
                keyword_reply::handler::handle_batch(&self.reply, &event.records).await.map_err(|e| e.to_string())?
            }
            "tagger" => tagger::handler::handle_batch(&self.tagger, &event.records).await,
            other => return Err(format!("no function {other}")),
        };
        Ok(serde_json::to_value(response).expect("response serialises"))
    }
}

pub struct Pipeline {
    pub stack: TestStack,
    pub sim: LineSim,
    pub webhook_url: String,
    /// The Secrets Manager secret keyword-reply reads its access token from.
    pub secret_arn: String,
    /// Failed invocations of each function, as the poller saw them.
    pub invoke_errors: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    pub rules: RulesStore,
    /// The tags of this test's stack, for reading.
    pub tags: DynamoTags,
    pub clock: Arc<ShiftedClock>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Serves the webhook function's handler over HTTP, as a Function URL would.
async fn serve_webhook(deps: Arc<webhook::Deps>) -> String {
    let app = axum::Router::new().fallback(move |request: AxumRequest<axum::body::Body>| {
        let deps = deps.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes: Bytes = axum::body::to_bytes(body, 8 << 20).await.unwrap_or_default();
            let request = lambda_http::http::Request::from_parts(parts, lambda_http::Body::Binary(bytes.to_vec()));
            let response = webhook::function_handler(&deps, request).await.expect("the handler answers");
            let (parts, body) = response.into_parts();
            axum::response::Response::from_parts(parts, axum::body::Body::from(body.to_vec()))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

impl Pipeline {
    /// A pipeline whose live rules are `rules_yaml`. `max_token_age_ms` as in production (50 s).
    pub async fn new(rules_yaml: &str) -> Self {
        let stack = TestStack::new().await;
        let sim = LineSim::start(SimConfig::new(CHANNEL_SECRET, ACCESS_TOKEN), ([127, 0, 0, 1], 0).into())
            .await
            .expect("line-sim starts");
        let webhook_url = serve_webhook(Arc::new(stack.webhook().await)).await;

        let template = oa::stack::Template::load(&repo_root().join("infra/template.yaml")).unwrap();
        let env = stack.stack.function_env(&template, "KeywordReplyFunction").unwrap();
        let mut vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let base = sim.base_url();
        let secret_arn = stack.secret(serde_json::json!({ "channelAccessToken": ACCESS_TOKEN })).await;
        vars.insert("LINE_SECRET_ARN", &secret_arn);
        vars.insert("LINE_API_BASE", &base);
        vars.insert("LINE_HTTP_TIMEOUT_MS", "1000");
        let config = keyword_reply::config::Config::from_env(&vars).expect("the template configures keyword-reply");
        let clock = Arc::new(ShiftedClock::default());
        let store = config.secrets.store(&stack.sdk);
        let secrets = Secrets::load_with_clock(store, keyword_reply::config::Config::SECRETS, clock.clone())
            .await
            .expect("keyword-reply reads its secret");
        let mut deps =
            ReplyDeps::from_parts(&config, Arc::new(secrets), stack.dynamodb.clone()).expect("keyword-reply starts");
        deps.clock = clock.clone();
        let env = stack.stack.function_env(&template, "TaggerFunction").unwrap();
        let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let tagger_config = tagger::config::Config::from_env(&vars).expect("the template configures the tagger");
        let mut tagger_deps = TaggerDeps::new(&tagger_config, stack.dynamodb.clone()).expect("the tagger starts");
        tagger_deps.clock = clock.clone();
        let tags = DynamoTags::reader(stack.dynamodb.clone(), &tagger_config.tags_table, &tagger_config.users_table);

        let rules = RulesStore::new(stack.dynamodb.clone(), &config.rules_table);
        let published = rules.publish(rules_yaml, None, 0).await.expect("rules publish");
        assert_eq!(published, Publish::Published { version: 1 });

        let invoker = Arc::new(InProcess { reply: deps, tagger: tagger_deps });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let invoke_errors: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
        for function in ["KeywordReplyFunction", "TaggerFunction"] {
            let mapping = oa::poller::mappings(&template)
                .unwrap()
                .into_iter()
                .find(|m| m.function == function)
                .unwrap_or_else(|| panic!("{function} has an SQS event source"));
            // One invocation at a time: the test's webhook, pollers and functions share one
            // thread, and the template's 20 at once starve the webhook past its deadline.
            let mapping = oa::poller::Mapping { max_concurrency: 1, ..mapping };
            let queue_url = stack.queue_url(&mapping.queue).to_string();
            let poller = Poller::new(mapping, stack.sqs.clone(), &queue_url, "ap-northeast-1", invoker.clone());
            let stopped = stopped.clone();
            let errors = invoke_errors.clone();
            tokio::spawn(async move {
                poller
                    .run(stopped, move |m, r| {
                        if let Some(e) = &r.invoke_error {
                            errors.lock().unwrap_or_else(|p| p.into_inner()).push((m.binary.clone(), e.clone()));
                        }
                    })
                    .await
            });
        }
        Pipeline { stack, sim, webhook_url, secret_arn, invoke_errors, rules, tags, clock, stop }
    }

    pub fn sim(&self) -> SimClient {
        self.sim.client()
    }

    /// Sends events as LINE would (signed, with honoured reply tokens) to the webhook.
    pub async fn send(&self, events: Vec<Value>) -> SendResult {
        let sent = self.sim().send(Some(&self.webhook_url), events).await.expect("line-sim sends");
        assert_eq!(sent.status, 200, "webhook answered {}", sent.body);
        sent
    }

    /// One field (`status`, `fault`, ...) of every reply request line-sim logged, oldest first.
    pub async fn reply_log(&self, field: &str) -> Vec<Value> {
        let log = self.sim().requests("reply").await.expect("line-sim answers");
        log.iter().map(|r| r[field].clone()).collect()
    }

    pub async fn deliveries(&self, to: &str) -> Vec<Value> {
        self.sim().deliveries(to).await.expect("line-sim answers")
    }

    /// Waits until `to` has received `n` requests (or `within` passes) and returns them all.
    pub async fn wait_for(&self, to: &str, n: usize, within: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let got = self.deliveries(to).await;
            if got.len() >= n || start.elapsed() > within {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Messages visible + in flight on reply-queue (0: everything was processed and deleted).
    pub async fn reply_queue_depth(&self) -> usize {
        queue_depth(&self.stack, "ReplyQueue").await
    }

    /// Waits until reply-queue is empty (everything processed) or `within` passes.
    pub async fn wait_until_drained(&self, within: Duration) -> usize {
        self.wait_until_queue_drained("ReplyQueue", within).await
    }

    /// Waits until tag-queue is empty (every event tagged) and returns, or panics after 20 s.
    pub async fn wait_until_tagged(&self) {
        let left = self.wait_until_queue_drained("TagQueue", Duration::from_secs(20)).await;
        assert_eq!(left, 0, "tag-queue still holds {left} messages");
    }

    /// Posts signed shop events (one JSON object or an array) to the webhook's /events route.
    pub async fn shop(&self, body: Value) {
        let url = self.webhook_url.replace("/webhook", "/events");
        let (status, text) = oa::post_signed(
            &reqwest::Client::new(),
            &url,
            shared::shop::SHOP_SIGNATURE_HEADER,
            crate::SHOP_SECRET,
            serde_json::to_vec(&body).unwrap(),
        )
        .await
        .expect("the webhook answers");
        assert_eq!(status, 200, "{text}");
    }

    async fn wait_until_queue_drained(&self, logical_id: &str, within: Duration) -> usize {
        let start = Instant::now();
        loop {
            let depth = queue_depth(&self.stack, logical_id).await;
            if depth == 0 || start.elapsed() > within {
                return depth;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn queue_depth(stack: &TestStack, logical_id: &str) -> usize {
    crate::queue_depth_at(&stack.sqs, stack.queue_url(logical_id)).await
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A fresh LINE user ID.
pub fn user() -> String {
    format!("U{:032x}", ulid::Ulid::new().0)
}

/// The texts of one delivery's messages.
pub fn texts(delivery: &Value) -> Vec<String> {
    delivery["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["text"].as_str().map(str::to_string))
        .collect()
}
