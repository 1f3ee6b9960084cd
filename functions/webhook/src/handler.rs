//! HTTP in, queue messages out. Order of checks: route, method, size, signature, parse; only a
//! verified, well-formed body reaches storage. Nothing here calls LINE. One deadline covers the
//! whole request (`WEBHOOK_DEADLINE_MS`, from its arrival): LINE waits 2 s.

use std::sync::Arc;

use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Error, Request, Response};
use serde_json::json;
use shared::adapters::dynamodb::capacity::{self, Tally};
use shared::adapters::dynamodb::ingest::{DynamoFriends, DynamoIdempotency};
use shared::adapters::memory::ingest::{MemoryFriends, MemoryIdempotency, MemoryQueue};
use shared::adapters::sqs::SqsQueue;
use shared::adapters::sqs_requests::{self, SqsTally};
use shared::costs::meter::Meter;
use shared::ingest::{line_items, shop_items, Ingestor, Report};
use shared::line::signature::{verify, SignatureError, LINE_SIGNATURE_HEADER};
use shared::line::webhook::{EventKind, WebhookBody};
use shared::ports::SystemClock;
use shared::secrets::{SecretError, SecretName, Secrets, StaticStore, AFTER_BAD_SIGNATURE};
use shared::shop::{ShopEvent, SHOP_SIGNATURE_HEADER};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::Config;

/// Largest body accepted (LINE's own webhook bodies are far smaller): 1 MiB, else 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the handler needs, built once in `main`.
pub struct Deps {
    /// The channel secret and the shop secret (read again, at most once a minute, when a
    /// signature does not match: the channel secret may have been reissued).
    pub secrets: Arc<Secrets>,
    pub ingestor: Ingestor,
    /// The whole request's time budget, from arrival.
    pub deadline: std::time::Duration,
    /// What each invocation used, written as its metrics.
    pub meter: Meter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Line,
    Shop,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Line => "webhook",
            Route::Shop => "events",
        }
    }
}

impl Deps {
    /// The production wiring: the secrets (read once, now), DynamoDB and SQS adapters over
    /// clients from `sdk`.
    pub async fn new(config: Config, sdk: &aws_config::SdkConfig) -> Result<Self, SecretError> {
        let secrets = Secrets::load(config.secrets.store(sdk), Config::SECRETS).await?;
        let (dynamodb, units) = capacity::client(sdk);
        let (sqs, requests) = sqs_requests::client(sdk);
        let mut deps = Self::from_parts(config, Arc::new(secrets), dynamodb, sqs);
        deps.meter = Meter::new("webhook", units, requests, None);
        Ok(deps)
    }

    pub fn from_parts(
        config: Config,
        secrets: Arc<Secrets>,
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
    ) -> Self {
        Deps {
            ingestor: Ingestor {
                idempotency: Arc::new(DynamoIdempotency::new(
                    dynamodb.clone(),
                    &config.events_table,
                    config.idempotency_ttl.as_secs() as i64,
                    config.in_progress_timeout.as_millis() as i64,
                )),
                friends: Arc::new(DynamoFriends::new(dynamodb, &config.users_table)),
                reply_queue: Arc::new(SqsQueue::new(sqs.clone(), &config.reply_queue_url)),
                tag_queue: Arc::new(SqsQueue::new(sqs, &config.tag_queue_url)),
                clock: Arc::new(SystemClock),
            },
            secrets,
            deadline: config.deadline,
            meter: Meter::new("webhook", Tally::default(), SqsTally::default(), None),
        }
    }

    /// Every store in memory (the queues refuse what SQS refuses) and the secrets given: for tests
    /// and benchmarks of the handler's own work.
    pub async fn in_memory(channel_secret: &str, shop_events_secret: &str) -> Result<Self, SecretError> {
        let values = [(SecretName::ChannelSecret, channel_secret), (SecretName::ShopEventsSecret, shop_events_secret)]
            .map(|(n, v)| (n, shared::config::Secret::new(v)))
            .into_iter()
            .collect();
        let secrets = Secrets::load(Arc::new(StaticStore(values)), Config::SECRETS).await?;
        Ok(Deps {
            secrets: Arc::new(secrets),
            ingestor: Ingestor {
                idempotency: Arc::new(MemoryIdempotency::new(11_000)),
                friends: Arc::new(MemoryFriends::default()),
                reply_queue: Arc::new(MemoryQueue::default()),
                tag_queue: Arc::new(MemoryQueue::default()),
                clock: Arc::new(SystemClock),
            },
            deadline: std::time::Duration::from_millis(1500),
            meter: Meter::new("webhook", Tally::default(), SqsTally::default(), None),
        })
    }

    /// Checks `signature` against `body` with the secret `name`. On a mismatch the secret is read
    /// again (at most once a minute, whatever the traffic) and, if it changed, checked once more.
    async fn verify(&self, name: SecretName, body: &[u8], signature: Option<&[u8]>) -> Result<(), SignatureError> {
        if signature.is_none() {
            return Err(SignatureError::Missing);
        }
        let held = self.secrets.current();
        let check = |values: &shared::secrets::SecretValues| match values.get(name) {
            Some(secret) => verify(secret.expose(), body, signature),
            None => Err(SignatureError::Mismatch),
        };
        match check(&held) {
            Err(SignatureError::Mismatch) => {
                match self.secrets.reissued(name, &held, AFTER_BAD_SIGNATURE, "a signature did not match").await {
                    Some(fresh) => check(&fresh),
                    None => Err(SignatureError::Mismatch),
                }
            }
            other => other,
        }
    }
}

/// Routes on the last path segment, so the same function serves `/webhook` behind a Function URL,
/// an API Gateway stage or `cargo lambda watch`'s `/lambda-url/webhook/webhook`.
fn route(path: &str) -> Option<Route> {
    match path.trim_end_matches('/').rsplit('/').next() {
        Some("webhook") => Some(Route::Line),
        Some("events") => Some(Route::Shop),
        _ => None,
    }
}

fn respond(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

fn message(status: StatusCode, text: &str) -> Response<Body> {
    respond(status, json!({ "message": text }))
}

/// [`handle`], measured: the events it records are the number its answer gives.
pub async fn function_handler(deps: &Deps, req: Request) -> Result<Response<Body>, Error> {
    let started = std::time::Instant::now();
    let response = handle(deps, req).await;
    let events = match response.as_ref().map(|r| r.body()) {
        Ok(Body::Text(t)) => serde_json::from_str::<serde_json::Value>(t).ok().and_then(|v| v.get("events")?.as_u64()),
        _ => None,
    };
    deps.meter.take(started, events.unwrap_or(0), None).emit(&[]);
    response
}

pub async fn handle(deps: &Deps, req: Request) -> Result<Response<Body>, Error> {
    // The request arrived (Lambda hands it over whole): LINE's 2 s started before this.
    let deadline = Instant::now() + deps.deadline;
    let path = req.uri().path().to_string();
    let Some(route) = route(&path) else {
        info!(path, status = 404, "no such route");
        return Ok(message(StatusCode::NOT_FOUND, "Not found"));
    };
    if req.method() != Method::POST {
        info!(route = route.name(), method = %req.method(), status = 405, "method not allowed");
        let mut r = message(StatusCode::METHOD_NOT_ALLOWED, "Use POST");
        r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return Ok(r);
    }
    let body: &[u8] = match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    if body.len() > MAX_BODY_BYTES {
        info!(route = route.name(), bytes = body.len(), status = 413, "body too large");
        return Ok(message(StatusCode::PAYLOAD_TOO_LARGE, "Body larger than 1 MiB"));
    }
    let (secret, header_name) = match route {
        Route::Line => (SecretName::ChannelSecret, LINE_SIGNATURE_HEADER),
        Route::Shop => (SecretName::ShopEventsSecret, SHOP_SIGNATURE_HEADER),
    };
    let signature = req.headers().get(header_name).map(|v| v.as_bytes());
    match deps.verify(secret, body, signature).await {
        Ok(()) => {}
        // No signature at all: not LINE or the shop with a wrong secret (they always sign), but a
        // scanner or `oa doctor`'s probe; kept out of the signature alarm's count.
        Err(SignatureError::Missing) => {
            info!(route = route.name(), bytes = body.len(), status = 401, "unsigned request");
            return Ok(message(StatusCode::UNAUTHORIZED, "Invalid signature"));
        }
        Err(e) => {
            warn!(route = route.name(), bytes = body.len(), reason = %e, status = 401, "rejected signature");
            return Ok(message(StatusCode::UNAUTHORIZED, "Invalid signature"));
        }
    }

    let received_at = deps.ingestor.clock.now_ms();
    let mut unknown_types: Vec<String> = Vec::new();
    let (items, destination) = match route {
        Route::Line => match WebhookBody::parse(body) {
            Ok(parsed) => {
                // Kept and forwarded all the same; named in the request's log line (a type name
                // is a short identifier: a longer one is cut, so a log line stays a line).
                unknown_types = parsed
                    .events
                    .iter()
                    .filter_map(|e| match &e.kind {
                        EventKind::Other { type_name } => Some(type_name.chars().take(64).collect()),
                        _ => None,
                    })
                    .collect();
                let destination = parsed.destination.clone();
                (line_items(parsed, received_at), destination)
            }
            Err(e) => return Ok(bad_request(route, &e)),
        },
        Route::Shop => match ShopEvent::parse_body(body, received_at) {
            Ok(events) => (shop_items(events, received_at), None),
            Err(e) => return Ok(bad_request(route, &e)),
        },
    };
    let keys: Vec<String> = items.iter().map(|i| i.key.clone()).collect();
    // Reasons name fields, never their content.
    let malformed: Vec<(String, String)> =
        items.iter().filter_map(|i| Some((i.key.clone(), i.malformed.clone()?))).collect();
    let report = if items.is_empty() { Report::default() } else { deps.ingestor.ingest(items, deadline).await };
    let status = if report.needs_redelivery() { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
    info!(
        route = route.name(),
        status = status.as_u16(),
        destination = destination.as_deref().unwrap_or(""),
        events = report.received,
        enqueued = report.enqueued,
        duplicates = report.duplicates,
        in_progress = report.in_progress,
        failed = report.failed,
        partial = report.partial,
        deadline_hit = report.deadline_hit,
        stale_friend_updates = report.stale_friend_updates,
        event_ids = ?keys,
        unknown_types = ?unknown_types,
        malformed = ?malformed,
        // A number for the template's metric filter (WebhookMalformedEvents): events no consumer
        // will act on, which someone should look at.
        malformed_events = report.malformed,
        dropped = report.dropped,
        errors = ?report.errors,
        "ingested"
    );
    let text = if status == StatusCode::OK { "OK" } else { "Not all events could be recorded; redeliver" };
    // LINE ignores the body; people and tools read what happened to each event here.
    Ok(respond(
        status,
        json!({
            "message": text,
            "events": report.received,
            "enqueued": report.enqueued,
            "duplicates": report.duplicates,
            "inProgress": report.in_progress,
            "failed": report.failed,
            "partial": report.partial,
            "malformed": report.malformed,
            "dropped": report.dropped,
        }),
    ))
}

fn bad_request(route: Route, e: &dyn std::fmt::Display) -> Response<Body> {
    // The parse error names what is wrong with the envelope; it never echoes message text.
    info!(route = route.name(), status = 400, reason = %e, "bad request");
    message(StatusCode::BAD_REQUEST, &e.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What the function writes to its log, as CloudWatch gets it.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn post(body: &str, signature: &str) -> Request {
        let mut request = Request::new(Body::Text(body.to_string()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = "/webhook".parse().unwrap();
        request.headers_mut().insert(LINE_SIGNATURE_HEADER, signature.parse().unwrap());
        request
    }

    /// The template's metric filters count fields of these log lines: if a line changes, the
    /// alarms go blind. Each filter's pattern is checked against what the handler writes.
    #[tokio::test]
    async fn the_log_lines_the_template_s_alarms_count_are_written() {
        let template = include_str!("../../../infra/template.yaml");
        assert!(template.contains(r#"{ $.fields.message = "rejected signature" }"#));
        assert!(template.contains("{ $.fields.malformed_events > 0 }"));
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt().json().with_writer(move || writer.clone()).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let deps = Deps::in_memory("s", "t").await.unwrap();
        let body = r#"{"events":[{"type":"message","timestamp":1.5,"webhookEventId":"01BAD"}]}"#;
        let signed = shared::line::signature::sign("s", body.as_bytes());
        assert_eq!(function_handler(&deps, post(body, &signed)).await.unwrap().status(), 200);
        assert_eq!(function_handler(&deps, post(body, "forged")).await.unwrap().status(), 401);
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert!(lines.iter().any(|l| l["fields"]["malformed_events"] == 1), "{text}");
        assert!(lines.iter().any(|l| l["fields"]["message"] == "rejected signature"), "{text}");
        // A request with no signature header (a scanner, `oa doctor`'s probe) is refused the
        // same, but not counted as a signature that does not match.
        let mut unsigned = post(body, "x");
        unsigned.headers_mut().remove(LINE_SIGNATURE_HEADER);
        assert_eq!(function_handler(&deps, unsigned).await.unwrap().status(), 401);
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(lines.iter().filter(|l| l["fields"]["message"] == "rejected signature").count(), 1, "{text}");
        assert!(lines.iter().any(|l| l["fields"]["message"] == "unsigned request"), "{text}");
    }

    #[test]
    fn routes_by_last_segment() {
        assert_eq!(route("/webhook"), Some(Route::Line));
        assert_eq!(route("/lambda-url/webhook/webhook/"), Some(Route::Line));
        assert_eq!(route("/events"), Some(Route::Shop));
        assert_eq!(route("/"), None);
        assert_eq!(route("/other"), None);
    }
}
