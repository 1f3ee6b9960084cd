//! The Messaging API endpoints the project uses, answering the way LINE does: every response
//! carries `x-line-request-id`; errors are `{"message", "details"?}`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::sim::Sim;
use crate::state::{Api, Fault, LogEntry, Outcome, Refusal, State, RATE_LIMITED};

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v2/bot/message/reply", post(|s, h, b| message(s, h, b, Api::Reply)))
        .route("/v2/bot/message/push", post(|s, h, b| message(s, h, b, Api::Push)))
        .route("/v2/bot/message/multicast", post(|s, h, b| message(s, h, b, Api::Multicast)))
        .route("/v2/bot/message/validate/multicast", post(|s, h, b| message(s, h, b, Api::Validate)))
        .route("/v2/bot/message/validate/push", post(|s, h, b| message(s, h, b, Api::Validate)))
        .route("/v2/bot/message/quota", get(quota))
        .route("/v2/bot/message/quota/consumption", get(consumption))
        .route("/v2/bot/profile/{user_id}", get(profile))
        .route("/v2/bot/followers/ids", get(followers))
        .route("/v2/bot/info", get(bot_info))
        .route("/v2/bot/channel/webhook/endpoint", get(webhook_endpoint).put(set_webhook_endpoint))
        .route("/v2/bot/channel/webhook/test", post(test_webhook))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Everything every endpoint does around its own work: auth, rate limit, faults, the log.
async fn handle(
    sim: &Sim,
    api: Api,
    headers: &HeaderMap,
    body: &[u8],
    work: impl FnOnce(&mut State, Option<&str>, &str) -> Result<Outcome, Refusal>,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let retry_key = header(headers, "x-line-retry-key");
    // When the request arrived (what a rate limit counts), not when its work was done.
    let arrived = std::time::Instant::now();
    let (result, fault, hang_ms) = {
        let mut st = sim.state.lock().expect("sim state");
        let mut fault = None;
        let result = st.check_auth(header(headers, "authorization")).and_then(|_| st.take_rate(api)).and_then(|_| {
            fault = st.roll_fault(api, body);
            match fault {
                Some(Fault::Error500 | Fault::Hang) => Err(Refusal::new(500, "Internal server error")),
                Some(Fault::RateLimit429) => Err(Refusal::new(429, RATE_LIMITED)),
                Some(Fault::Forbidden403) => {
                    Err(Refusal::new(403, "The bot is not allowed to use this API. Check the plan and permissions."))
                }
                _ => work(&mut st, retry_key, &request_id),
            }
        });
        if fault.is_some() {
            st.bump("faultsInjected", 1);
        }
        let (status, delivered_to, billed, error) = match &result {
            Ok(o) => (200, o.delivered_to, o.billed, None),
            Err(r) => (r.status, 0, 0, Some(r.message.clone())),
        };
        let at_us = st.now_us() - arrived.elapsed().as_micros() as i64;
        st.record(LogEntry {
            request_id: request_id.clone(),
            api,
            status,
            at: at_us.div_euclid(1000),
            at_us,
            retry_key: retry_key.map(str::to_string),
            fault: fault.map(|f| match f {
                Fault::Error500 => "error500",
                Fault::RateLimit429 => "rateLimit429",
                Fault::Hang => "hang",
                Fault::HangAfterDelivery => "hangAfterDelivery",
                Fault::Forbidden403 => "forbidden403",
            }),
            delivered_to,
            billed,
            error,
        });
        (result, fault, st.settings.hang_ms)
    };
    if matches!(fault, Some(Fault::Hang | Fault::HangAfterDelivery)) {
        tokio::time::sleep(Duration::from_millis(hang_ms)).await;
    }
    let (status, body, extra) = match result {
        Ok(o) => (200, o.body, vec![]),
        Err(r) => (r.status, r.body(), r.headers),
    };
    let mut response =
        (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), Json(body)).into_response();
    let h = response.headers_mut();
    h.insert("x-line-request-id", HeaderValue::from_str(&request_id).expect("uuid is ascii"));
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    response
}

async fn message(AxumState(sim): AxumState<Arc<Sim>>, headers: HeaderMap, body: Bytes, api: Api) -> Response {
    handle(&sim, api, &headers, &body, |st, retry_key, request_id| {
        if body.len() > st.settings.max_body_bytes {
            return Err(Refusal::new(413, "Request entity too large"));
        }
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            let mut r = Refusal::new(400, "The request body has 1 error(s)");
            r.details.push(("".into(), format!("Invalid JSON: {e}")));
            r
        })?;
        match api {
            Api::Reply => st.reply(&value, retry_key, request_id),
            Api::Push => st.push(&value, retry_key, request_id),
            Api::Validate => crate::state::validate(&value),
            _ => st.multicast(&value, retry_key, request_id),
        }
    })
    .await
}

async fn quota(AxumState(sim): AxumState<Arc<Sim>>, headers: HeaderMap) -> Response {
    handle(&sim, Api::Quota, &headers, &[], |st, _, _| {
        let body = match st.settings.monthly_quota {
            Some(value) => json!({ "type": "limited", "value": value }),
            None => json!({ "type": "none" }),
        };
        Ok(Outcome { delivered_to: 0, billed: 0, body })
    })
    .await
}

async fn consumption(AxumState(sim): AxumState<Arc<Sim>>, headers: HeaderMap) -> Response {
    handle(&sim, Api::Quota, &headers, &[], |st, _, _| {
        Ok(Outcome { delivered_to: 0, billed: 0, body: json!({ "totalUsage": st.usage_this_month() }) })
    })
    .await
}

async fn profile(AxumState(sim): AxumState<Arc<Sim>>, Path(user_id): Path<String>, headers: HeaderMap) -> Response {
    handle(&sim, Api::Profile, &headers, &[], |st, _, _| match st.friends.get(&user_id) {
        Some(f) if !f.blocked => {
            let mut body = json!({ "userId": f.user_id, "displayName": f.display_name, "language": f.language });
            if let Some(p) = &f.picture_url {
                body["pictureUrl"] = p.clone().into();
            }
            if let Some(s) = &f.status_message {
                body["statusMessage"] = s.clone().into();
            }
            Ok(Outcome { delivered_to: 0, billed: 0, body })
        }
        _ => Err(Refusal::new(404, "Not found")),
    })
    .await
}

#[derive(serde::Deserialize)]
struct FollowersQuery {
    start: Option<String>,
    limit: Option<usize>,
}

async fn followers(
    AxumState(sim): AxumState<Arc<Sim>>,
    axum::extract::Query(q): axum::extract::Query<FollowersQuery>,
    headers: HeaderMap,
) -> Response {
    handle(&sim, Api::Followers, &headers, &[], |st, _, _| st.followers(q.start.as_deref(), q.limit)).await
}

async fn bot_info(AxumState(sim): AxumState<Arc<Sim>>, headers: HeaderMap) -> Response {
    handle(&sim, Api::Channel, &headers, &[], |_, _, _| {
        let body = json!({
            "userId": crate::sender::BOT_USER_ID,
            "basicId": "@000sim",
            "displayName": "line-sim",
            "chatMode": "bot",
            "markAsReadMode": "auto",
        });
        Ok(Outcome { delivered_to: 0, billed: 0, body })
    })
    .await
}

async fn webhook_endpoint(AxumState(sim): AxumState<Arc<Sim>>, headers: HeaderMap) -> Response {
    let webhook = sim.webhook.lock().expect("webhook").clone();
    handle(&sim, Api::Channel, &headers, &[], |_, _, _| match webhook.url {
        // LINE answers 404 before a URL was ever set.
        None => Err(Refusal::new(404, "Not found")),
        Some(url) => {
            Ok(Outcome { delivered_to: 0, billed: 0, body: json!({ "endpoint": url, "active": webhook.active }) })
        }
    })
    .await
}

/// The endpoint in a `PUT .../webhook/endpoint` or `POST .../webhook/test` body.
fn endpoint_of(body: &[u8], required: bool) -> Result<Option<String>, Refusal> {
    let invalid = |why: &str| {
        let mut r = Refusal::new(400, "The request body has 1 error(s)");
        r.details.push(("endpoint".into(), why.into()));
        r
    };
    let value: Value = if body.is_empty() && !required {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|_| invalid("Invalid JSON"))?
    };
    match value.get("endpoint") {
        None | Some(Value::Null) if !required => Ok(None),
        Some(Value::String(url)) if url.starts_with("https://") || url.starts_with("http://") => {
            if url.len() > 500 {
                return Err(invalid("must be at most 500 characters"));
            }
            Ok(Some(url.clone()))
        }
        _ => Err(invalid("must be a valid URL")),
    }
}

async fn set_webhook_endpoint(AxumState(sim): AxumState<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(&sim, Api::Channel, &headers, &body, |_, _, _| {
        let url = endpoint_of(&body, true)?;
        sim.webhook.lock().expect("webhook").url = url;
        Ok(Outcome { delivered_to: 0, billed: 0, body: json!({}) })
    })
    .await
}

/// LINE's "Verify": a signed webhook with no events to the given endpoint (or the channel's), and
/// what it answered.
async fn test_webhook(AxumState(sim): AxumState<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut endpoint = None;
    let checked = handle(&sim, Api::Channel, &headers, &body, |_, _, _| {
        endpoint = endpoint_of(&body, false)?;
        Ok(Outcome { delivered_to: 0, billed: 0, body: json!({}) })
    })
    .await;
    if checked.status() != StatusCode::OK {
        return checked;
    }
    let Some(url) = endpoint.or_else(|| sim.webhook.lock().expect("webhook").url.clone()) else {
        return (StatusCode::BAD_REQUEST, Json(json!({ "message": "The webhook URL is not set" }))).into_response();
    };
    let timestamp =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let (success, status, reason, detail) = match sim.post(&url, None, vec![]).await {
        Ok(r) if (200..300).contains(&r.status) => (true, r.status as i64, "OK".to_string(), r.status.to_string()),
        Ok(r) => (false, r.status as i64, "ERROR_STATUS_CODE".into(), r.status.to_string()),
        Err(e) => (false, 0, "COULD_NOT_CONNECT".into(), e),
    };
    let body =
        json!({ "success": success, "timestamp": timestamp, "statusCode": status, "reason": reason, "detail": detail });
    let mut response = Json(body).into_response();
    if let Some(id) = checked.headers().get("x-line-request-id") {
        response.headers_mut().insert("x-line-request-id", id.clone());
    }
    response
}
