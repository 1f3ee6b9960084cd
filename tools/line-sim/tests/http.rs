//! line-sim over HTTP, as a client of LINE sees it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use line_sim::{LineSim, SimConfig};
use serde_json::{json, Value};

const TOKEN: &str = "sim-test-token";
const SECRET: &str = "sim-test-secret";
const U1: &str = "U0123456789abcdef0123456789abcdef";

async fn sim() -> LineSim {
    LineSim::start(SimConfig::new(SECRET, TOKEN), ([127, 0, 0, 1], 0).into()).await.unwrap()
}

async fn post(sim: &LineSim, path: &str, body: &Value, headers: &[(&str, &str)]) -> (u16, HeaderMap, Value) {
    let mut r = reqwest::Client::new().post(format!("{}{path}", sim.base_url())).bearer_auth(TOKEN).json(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let response = r.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_answer_has_a_request_id_and_errors_look_like_lines() {
    let sim = sim().await;
    let bad_auth = reqwest::Client::new()
        .post(format!("{}/v2/bot/message/push", sim.base_url()))
        .bearer_auth("wrong")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_auth.status(), 401);
    assert!(bad_auth.headers().contains_key("x-line-request-id"));

    let (status, headers, body) = post(
        &sim,
        "/v2/bot/message/reply",
        &json!({"replyToken": "nope", "messages": [{"type": "text", "text": "x"}]}),
        &[],
    )
    .await;
    assert_eq!((status, body), (400, json!({"message": "Invalid reply token"})));
    assert!(headers.contains_key("x-line-request-id"));

    let huge = json!({"to": U1, "messages": [{"type": "text", "text": "x".repeat(3 << 20)}]});
    assert_eq!(post(&sim, "/v2/bot/message/push", &huge, &[]).await.0, 413);

    let profile = reqwest::Client::new()
        .get(format!("{}/v2/bot/profile/{U1}", sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(profile.status(), 404, "unknown friends have no profile");
}

#[tokio::test]
async fn a_repeated_retry_key_gets_409_with_the_first_request_id() {
    let sim = sim().await;
    sim.client().add_friends(json!([{"userId": U1, "displayName": "Mei"}])).await.unwrap();
    let key = uuid::Uuid::new_v4().to_string();
    let body = json!({"to": [U1], "messages": [{"type": "text", "text": "news"}]});
    let (first, h1, _) = post(&sim, "/v2/bot/message/multicast", &body, &[("X-Line-Retry-Key", &key)]).await;
    let (second, h2, b2) = post(&sim, "/v2/bot/message/multicast", &body, &[("X-Line-Retry-Key", &key)]).await;
    assert_eq!((first, second), (200, 409));
    assert_eq!(b2["message"], "The retry key is already accepted");
    assert_eq!(h2["x-line-accepted-request-id"], h1["x-line-request-id"]);
    assert_eq!(sim.client().deliveries(U1).await.unwrap().len(), 1);
    let consumption: Value = reqwest::Client::new()
        .get(format!("{}/v2/bot/message/quota/consumption", sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(consumption, json!({"totalUsage": 1}));
}

#[tokio::test]
async fn a_hang_outlasts_the_client_and_429s_follow_the_bucket() {
    let sim = sim().await;
    sim.client().add_friends(json!([{"userId": U1, "displayName": "Mei"}])).await.unwrap();
    sim.client().set_faults("push", json!({"hang": 1.0, "times": 1})).await.unwrap();
    let body = json!({"to": U1, "messages": [{"type": "text", "text": "x"}]});
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let hung =
        quick.post(format!("{}/v2/bot/message/push", sim.base_url())).bearer_auth(TOKEN).json(&body).send().await;
    assert!(hung.unwrap_err().is_timeout());
    assert_eq!(post(&sim, "/v2/bot/message/push", &body, &[]).await.0, 200, "the fault was for one request");

    sim.client().configure(json!({"rateLimits": {"push": 2}})).await.unwrap();
    let mut statuses = vec![];
    for _ in 0..4 {
        statuses.push(post(&sim, "/v2/bot/message/push", &body, &[]).await.0);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2, "{statuses:?}");
    let (_, _, b) = post(&sim, "/v2/bot/message/push", &body, &[]).await;
    assert_eq!(b["message"], "The API rate limit has been exceeded. Try again later.");
}

/// A receiver standing in for the webhook: records the body and signature.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, Bytes)>>>) {
    let seen = Arc::new(Mutex::new(vec![]));
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/webhook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| async move {
            let sig = headers["x-line-signature"].to_str().unwrap().to_string();
            s.lock().unwrap().push((sig, body));
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn the_webhook_sender_signs_issues_honoured_tokens_and_redelivers() {
    let sim = sim().await;
    let (url, seen) = receiver().await;
    let sent = sim.client().send(Some(&url), vec![json!({"userId": U1, "text": "hello"})]).await.unwrap();
    assert_eq!(sent.status, 200);
    let event = &sent.events[0];
    assert_eq!(event["message"]["text"], "hello");
    assert_eq!(event["deliveryContext"]["isRedelivery"], false);
    let (sig, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(sig, line_sim::sender::sign(SECRET, &body));

    let id = event["webhookEventId"].as_str().unwrap();
    let again = sim.client().redeliver(Some(&url), &[id]).await.unwrap();
    assert_eq!(again.events[0]["webhookEventId"], event["webhookEventId"]);
    assert_eq!(again.events[0]["replyToken"], event["replyToken"]);
    assert_eq!(again.events[0]["deliveryContext"]["isRedelivery"], true);

    let reply = json!({"replyToken": event["replyToken"], "messages": [{"type": "text", "text": "hi!"}]});
    assert_eq!(post(&sim, "/v2/bot/message/reply", &reply, &[]).await.0, 200);
    assert_eq!(post(&sim, "/v2/bot/message/reply", &reply, &[]).await.0, 400, "single use");
    let got = sim.client().deliveries(U1).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["messages"][0]["text"], "hi!");
    assert_eq!(got[0]["api"], "reply");

    let standby =
        sim.client().send(Some(&url), vec![json!({"userId": U1, "text": "x", "mode": "standby"})]).await.unwrap();
    assert!(standby.events[0].get("replyToken").is_none(), "no reply token in standby");
}
