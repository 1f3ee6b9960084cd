//! Signed bodies that are not what LINE sends: a mutation fuzz of webhook bodies (fields removed,
//! retyped, oversized, nested, garbled; events duplicated, replaced; bodies cut, even inside a UTF-8
//! character), built from this project's own events and, when `../shared` is beside the repo, the
//! LINE SDK fixture corpus.
//!
//! The rule: a signed body never gets a 500 (LINE would redeliver it until it gives up, its valid
//! neighbours riding along); only bodies that are not JSON envelopes (`{"events": [...]}`) get 400;
//! every event of an envelope is accounted for (enqueued, or a duplicate within the body). The
//! in-memory queues refuse what SQS refuses (IDs, bodies), so an event SQS would reject fails here
//! too. A smaller run goes through DynamoDB Local and the SQS emulator as well.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use integration_tests::*;
use serde_json::{json, Map, Value};

const BOT: &str = "U0123456789abcdef0123456789abcde0";

/// Events of every shape this project knows, with valid IDs.
fn own_events() -> Vec<Value> {
    let (u, now) = (sample::user_id(), sample::now_ms());
    let group = format!("C{}", &sample::user_id()[1..]);
    let room = format!("R{}", &sample::user_id()[1..]);
    vec![
        sample::text(&sample::event_id(), &u, "hello ＶＩＰ 🍰", now),
        sample::follow(&sample::event_id(), &u, now, true),
        sample::unfollow(&sample::event_id(), &u, now),
        sample::postback(&sample::event_id(), &u, "q=dessert&a=yes", now),
        json!({"type": "message", "mode": "active", "timestamp": now, "webhookEventId": sample::event_id(),
            "replyToken": "rt", "deliveryContext": {"isRedelivery": false},
            "source": {"type": "group", "groupId": group, "userId": u},
            "message": {"id": "1", "type": "sticker", "packageId": "446", "stickerId": "1988", "keywords": ["a", "b"]}}),
        json!({"type": "join", "mode": "active", "timestamp": now, "webhookEventId": sample::event_id(),
            "replyToken": "rt", "source": {"type": "room", "roomId": room}}),
        json!({"type": "memberJoined", "timestamp": now, "webhookEventId": sample::event_id(),
            "source": {"type": "group", "groupId": group}, "joined": {"members": [{"type": "user", "userId": u}]}}),
        json!({"type": "message", "timestamp": now, "webhookEventId": sample::event_id(), "mode": "standby",
            "source": {"type": "user", "userId": u},
            "message": {"id": "2", "type": "location", "latitude": 35.6, "longitude": 139.7, "address": "Tokyo"}}),
        json!({"type": "brandNewThing", "timestamp": now, "webhookEventId": sample::event_id(),
            "source": {"type": "user", "userId": u}, "payload": {"nested": [1, {"x": null}]}}),
        json!({"type": "membership", "timestamp": now, "webhookEventId": sample::event_id(),
            "source": {"type": "user", "userId": u}, "membership": {"type": "joined", "membershipId": 3189}}),
    ]
}

/// Events from LINE's SDK test suites, when the reference folder is beside the repo.
fn sdk_events() -> Vec<Value> {
    let dir = repo_root().join("../shared/reference/line-sdk-webhook-fixtures");
    let mut events = vec![];
    for sdk in ["go", "java", "python"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sdk)) else { continue };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        for file in files {
            let Ok(text) = std::fs::read(&file) else { continue };
            if let Ok(body) = serde_json::from_slice::<Value>(&text) {
                events.extend(body["events"].as_array().cloned().unwrap_or_default());
            }
        }
    }
    events
}

/// Every path (object keys and array indexes) inside `v`.
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(Value::String(k.clone()));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                prefix.push(json!(i));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at<'v>(v: &'v mut Value, path: &[Value]) -> Option<&'v mut Value> {
    let mut cur = v;
    for step in path {
        cur = match step {
            Value::String(k) => cur.as_object_mut()?.get_mut(k)?,
            Value::Number(i) => cur.as_array_mut()?.get_mut(i.as_u64()? as usize)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn garble(rng: &mut fastrand::Rng) -> String {
    let pool =
        ['a', 'Z', '0', ' ', '\u{0}', '\u{7f}', '\u{FFFF}', '\u{FFFE}', '\u{FEFF}', '🍰', 'ü', '\u{202E}', '"', '\\'];
    (0..rng.usize(1..40)).map(|_| pool[rng.usize(..pool.len())]).collect()
}

/// One mutation of one event.
fn mutate(event: &mut Value, rng: &mut fastrand::Rng) {
    let mut all = vec![];
    paths(event, &mut vec![], &mut all);
    let Some(path) = (!all.is_empty()).then(|| all[rng.usize(..all.len())].clone()) else {
        *event = json!(rng.i64(..));
        return;
    };
    match rng.u8(..7) {
        0 => {
            // Remove the field.
            if let (Some(Value::String(k)), Some(parent)) = (path.last(), at(event, &path[..path.len() - 1])) {
                if let Some(m) = parent.as_object_mut() {
                    m.remove(k);
                }
            }
        }
        1 => {
            // Retype it.
            let values = [
                json!(null),
                json!(1.5),
                json!(-1),
                json!(1.8e19),
                json!("text"),
                json!([]),
                json!({}),
                json!(true),
                json!(i64::MAX),
            ];
            if let Some(v) = at(event, &path) {
                *v = values[rng.usize(..values.len())].clone();
            }
        }
        2 => {
            // Oversize it (now and then past what one queue message holds).
            let n = if rng.u8(..20) == 0 { 300 * 1024 } else { 3_000 };
            if let Some(v) = at(event, &path) {
                *v = Value::String("U".repeat(n));
            }
        }
        3 => {
            if let Some(v) = at(event, &path) {
                *v = Value::String(garble(rng));
            }
        }
        4 => {
            // Nest it deep (below serde_json's recursion limit of 128, with the envelope).
            if let Some(v) = at(event, &path) {
                let mut nested = v.take();
                for _ in 0..rng.usize(1..100) {
                    nested = json!([nested]);
                }
                *v = nested;
            }
        }
        5 => {
            // An ID that is not a LINE ID.
            if let Some(src) = event.get_mut("source").and_then(Value::as_object_mut) {
                let key = ["userId", "groupId", "roomId"][rng.usize(..3)];
                src.insert(key.into(), Value::String(garble(rng)));
            }
        }
        _ => {
            if let Some(m) = event.as_object_mut() {
                m.insert("webhookEventId".into(), Value::String(garble(rng)));
            }
        }
    }
}

/// A signed body: 1-5 events of the corpus, each mutated 0-3 times; sometimes events duplicated or
/// replaced by non-objects, sometimes the whole body cut at a random byte.
fn mutated_body(corpus: &[Value], rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut events: Vec<Value> = (0..rng.usize(1..=5)).map(|_| corpus[rng.usize(..corpus.len())].clone()).collect();
    for e in events.iter_mut() {
        for _ in 0..rng.usize(0..=3) {
            mutate(e, rng);
        }
    }
    match rng.u8(..10) {
        0 => events.push(events[0].clone()),
        1 => events.insert(
            rng.usize(..=events.len()),
            [json!(7), json!("x"), json!(null), json!([1])][rng.usize(..4)].clone(),
        ),
        _ => {}
    }
    let mut envelope = Map::new();
    if rng.u8(..10) != 0 {
        envelope.insert("destination".into(), json!(BOT));
    }
    envelope.insert("events".into(), Value::Array(events));
    let mut body = serde_json::to_vec(&Value::Object(envelope)).unwrap();
    if rng.u8(..8) == 0 {
        body.truncate(rng.usize(..body.len()));
    }
    body
}

/// Whether `body` is a JSON envelope LINE could have sent: an object with an `events` array.
/// An object with an `events` array, however deep its events nest (the parser keeps events a JSON
/// tree could not hold: nested past serde_json's 128 levels, a number out of range).
fn is_envelope(body: &[u8]) -> Option<usize> {
    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        events: Vec<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<Probe>(body).ok().map(|p| p.events.len())
}

fn distinct_keys(body: &[u8]) -> usize {
    let parsed = shared::line::webhook::WebhookBody::parse(body).unwrap();
    parsed.events.iter().map(|e| e.dedupe_key()).collect::<HashSet<_>>().len()
}

async fn memory_webhook() -> webhook::Deps {
    webhook::Deps::in_memory(CHANNEL_SECRET, SHOP_SECRET).await.expect("the secrets are given")
}

/// Events too large for a queue message, dropped (logged) rather than retried.
fn dropped(answer: &str) -> u64 {
    serde_json::from_str::<Value>(answer).ok().and_then(|v| v["dropped"].as_u64()).unwrap_or(0)
}

/// Checks one answer against the rule; returns whether the body was an envelope.
fn check(body: &[u8], status: u16, answer: &str, n: usize) -> bool {
    assert_ne!(status, 500, "body {n} got a 500: {answer}\n{}", String::from_utf8_lossy(body));
    match is_envelope(body) {
        None => {
            assert_eq!(status, 400, "body {n} is no envelope but got {status}: {answer}");
            false
        }
        Some(events) => {
            assert_eq!(status, 200, "body {n} is an envelope but got {status}: {answer}");
            let (enqueued, duplicates) = counts(answer);
            let dropped = dropped(answer);
            assert_eq!(enqueued + dropped + duplicates, events as u64, "body {n}: an event went missing: {answer}");
            assert_eq!(enqueued + dropped, distinct_keys(body) as u64, "body {n}: {answer}");
            true
        }
    }
}

#[tokio::test]
async fn four_thousand_mutated_signed_bodies_never_get_a_500_and_lose_no_event() {
    let mut corpus = own_events();
    let sdk = sdk_events();
    eprintln!("corpus: {} own events, {} from LINE's SDK fixtures", corpus.len(), sdk.len());
    corpus.extend(sdk);
    let mut rng = fastrand::Rng::with_seed(20261130);
    let (mut envelopes, mut refused, mut slowest) = (0, 0, Duration::ZERO);
    for n in 0..4_000 {
        let body = mutated_body(&corpus, &mut rng);
        // A fresh world per body: counts are exact, nothing is a duplicate of another body.
        let deps = memory_webhook().await;
        let started = Instant::now();
        // Nothing may hang: the in-memory stores answer at once, so this bound is generous.
        let (status, answer) = tokio::time::timeout(Duration::from_secs(5), call(&deps, line_post(&body)))
            .await
            .unwrap_or_else(|_| panic!("body {n} hangs:\n{}", String::from_utf8_lossy(&body)));
        slowest = slowest.max(started.elapsed());
        if check(&body, status, &answer, n) {
            envelopes += 1;
        } else {
            refused += 1;
        }
    }
    eprintln!("{envelopes} envelopes accepted, {refused} refused with 400; slowest answer {slowest:?}");
    assert!(envelopes > 3_000, "the fuzz must mostly make envelopes: {envelopes}");
    assert!(refused > 100, "and some bodies that are not: {refused}");
}

#[tokio::test]
async fn mutated_bodies_through_dynamodb_local_and_the_sqs_emulator_never_get_a_500() {
    let stack = TestStack::new().await;
    let deps = stack.webhook().await;
    let corpus = own_events();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut accepted = 0;
    for n in 0..300 {
        let body = mutated_body(&corpus, &mut rng);
        let (status, answer) = call(&deps, line_post(&body)).await;
        // One stack for all: a repeated event is a duplicate across bodies, so only the status
        // and the total are checked here.
        assert_ne!(status, 500, "body {n}: {answer}\n{}", String::from_utf8_lossy(&body));
        if let Some(events) = is_envelope(&body) {
            assert_eq!(status, 200, "body {n}: {answer}");
            let (enqueued, duplicates) = counts(&answer);
            assert_eq!(enqueued + dropped(&answer) + duplicates, events as u64, "body {n}: {answer}");
            accepted += 1;
        } else {
            assert_eq!(status, 400, "body {n}: {answer}");
        }
    }
    assert!(accepted > 200, "{accepted}");
}

#[tokio::test]
async fn a_body_cut_inside_a_utf8_character_is_a_400_and_an_event_nested_5000_deep_costs_no_neighbour() {
    let deps = memory_webhook().await;
    let body = sample::body(BOT, &[sample::text(&sample::event_id(), &sample::user_id(), "café", sample::now_ms())]);
    let cut = body.iter().position(|&b| b == 0xC3).unwrap() + 1;
    let (status, answer) = call(&deps, line_post(&body[..cut])).await;
    assert_eq!(status, 400, "{answer}");
    // Kept raw and marked malformed (it is not an object); its neighbour goes on as usual.
    let good = sample::text(&sample::event_id(), &sample::user_id(), "hi", sample::now_ms());
    let deep = format!(r#"{{"events":[{}1{}, {good}]}}"#, "[".repeat(5_000), "]".repeat(5_000));
    let (status, answer) = call(&deps, line_post(deep.as_bytes())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(counts(&answer), (2, 0), "{answer}");
}
