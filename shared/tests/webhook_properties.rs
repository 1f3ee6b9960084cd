//! Property tests of the webhook body parser and the queue message built from it, starting from a
//! body in LINE's own SDK test suite (28 events of many types) and changing one event: a field
//! replaced by another JSON type, random Unicode, a huge number, or deep nesting; a field dropped;
//! the event cut short or replaced by any JSON. Whatever LINE could sign:
//! - the parser never panics and answers within a second;
//! - a body that is JSON with an `events` array is never refused, and every event in it is kept,
//!   each with its own bytes exactly as sent; the events that were not changed come out exactly as
//!   they do from the unchanged body (a bad event never costs its neighbours);
//! - refused bodies say why (not JSON, with serde_json's line and column; or not the envelope);
//! - parse, then the queue message, then the consumer's parse gives back the same event;
//! - the JSON reader under it reads what serde_json reads (the same values) and refuses what it
//!   refuses, on JSON written out compact or pretty, then cut, or with a byte changed or added.
//!
//! `make fuzz` runs the same properties with many more cases (`PROPTEST_CASES`).

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::Value;
use shared::envelope::QueuedEvent;
use shared::ingest::line_items;
use shared::line::webhook::{ParseError, WebhookBody};

const FIXTURE: &str = include_str!("../benches/fixtures/tests_v3_text_webhook.json");
const LIMIT: Duration = Duration::from_secs(1);

fn events_of(body: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(body).unwrap();
    v["events"].as_array().unwrap().clone()
}

/// A JSON text of any shape, including what LINE never sends.
fn any_json() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>().prop_map(|s| Value::String(s).to_string()),
        Just("99999999999999999999999999999999999999".to_string()),
        Just("-1e400".to_string()),
        Just("1.5e12".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        (1usize..200).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
        (1usize..200).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))),
    ]
    .boxed()
}

/// Event `i` of the fixture changed in one place, written out as text.
fn changed_event() -> BoxedStrategy<(usize, String)> {
    let events = events_of(FIXTURE);
    let n = events.len();
    (0..n, any::<prop::sample::Index>(), any_json(), 0u8..4, any::<bool>())
        .prop_map(move |(i, field, value, how, last)| {
            let event = &events[i];
            let text = match (how, event.as_object()) {
                // A field's value replaced by any JSON, the field written first or last (a
                // payload after `type` is read as it goes by, one before it once `type` is known).
                (0, Some(map)) if !map.is_empty() => {
                    let key = map.keys().nth(field.index(map.len())).unwrap().clone();
                    let mut map = map.clone();
                    map.remove(&key);
                    let rest = Value::Object(map).to_string();
                    let sep = if rest == "{}" { "" } else { "," };
                    let member = format!("{}:{value}", Value::String(key));
                    match last {
                        true => format!("{}{sep}{member}}}", &rest[..rest.len() - 1]),
                        false => format!("{{{member}{sep}{}", &rest[1..]),
                    }
                }
                // A field dropped.
                (1, Some(map)) if !map.is_empty() => {
                    let mut map = map.clone();
                    let key = map.keys().nth(field.index(map.len())).unwrap().clone();
                    map.remove(&key);
                    Value::Object(map).to_string()
                }
                // The event replaced by any JSON.
                (2, _) => value,
                // The text of a field (message text, postback data, ...) replaced by random Unicode.
                _ => {
                    let mut e = event.clone();
                    let random: String = value.chars().rev().collect();
                    if let Some(t) = e.pointer_mut("/message/text") {
                        *t = Value::String(random);
                    } else if let Some(d) = e.pointer_mut("/postback/data") {
                        *d = Value::String(random);
                    } else {
                        e["replyToken"] = Value::String(random);
                    }
                    e.to_string()
                }
            };
            (i, text)
        })
        .boxed()
}

/// The fixture's events as text, event `i` replaced by `text`: a body of 28 events.
fn body_with(i: usize, text: &str) -> String {
    let events: Vec<String> = events_of(FIXTURE)
        .iter()
        .enumerate()
        .map(|(j, e)| if j == i { text.to_string() } else { e.to_string() })
        .collect();
    format!(r#"{{"destination":"Ud000000000000000000000000000bot0","events":[{}]}}"#, events.join(", "))
}

/// Text that is JSON or nearly: a JSON value written out (compact or pretty), then maybe cut
/// short, or with one byte changed or added.
fn json_like() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        any::<String>().prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Short decimals, which every correct reader turns into the same f64.
        (any::<i32>(), 0i32..8).prop_map(|(m, e)| Value::from(f64::from(m) / 10f64.powi(e))),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ];
    let value = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    (value, any::<bool>(), any::<prop::sample::Index>(), any::<u8>(), 0u8..4)
        .prop_map(|(v, pretty, at, byte, how)| {
            let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
            let mut bytes = text.into_bytes();
            match how {
                0 => {}
                1 => bytes.truncate(at.index(bytes.len() + 1)),
                2 if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                _ => bytes.insert(at.index(bytes.len() + 1), byte),
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .boxed()
}

/// Equal values; floats within one unit in the last place (serde_json, built without its
/// `float_roundtrip` feature, may round a long number the other way; the reader rounds correctly).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= x.abs().max(y.abs()) * f64::EPSILON
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let start = Instant::now();
    let out = f();
    prop_assert!(start.elapsed() < LIMIT, "took {:?}", start.elapsed());
    Ok(out)
}

proptest! {
    #[test]
    fn the_reader_reads_what_serde_json_reads_and_refuses_the_rest(text in json_like()) {
        use serde::de::IgnoredAny;
        use shared::line::json;
        let ours = timed(|| json::from_str::<Value>(&text))?;
        match (&ours, &serde_json::from_str::<Value>(&text)) {
            (Ok(a), Ok(b)) => prop_assert!(same(a, b), "{:?}: ours {:?}, serde_json {:?}", text, a, b),
            (Err(e), Err(_)) => prop_assert!(e.line() >= 1, "placed: {}", e),
            (ours, theirs) => prop_assert!(false, "{:?}: ours {:?}, serde_json {:?}", text, ours, theirs),
        }
        // Crossing without reading (no depth limit, escapes checked for form only) agrees too.
        let crossed = json::from_str::<IgnoredAny>(&text).is_ok();
        prop_assert_eq!(crossed, serde_json::from_str::<IgnoredAny>(&text).is_ok(), "{:?}", text);
    }

    #[test]
    fn any_bytes_are_parsed_or_refused_with_a_reason(bytes in prop::collection::vec(any::<u8>(), 0..2_000)) {
        match timed(|| WebhookBody::parse(&bytes))? {
            Ok(body) => {
                // Only an object with an `events` array is accepted, and every element is kept.
                #[derive(serde::Deserialize)]
                struct Probe<'a> {
                    #[serde(borrow)]
                    events: Vec<&'a serde_json::value::RawValue>,
                }
                let probe: Probe = serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(body.events.len(), probe.events.len());
            }
            Err(ParseError::NotJson(e)) => prop_assert!(e.line() >= 1, "{}", e),
            Err(ParseError::NotEnvelope(why)) => prop_assert!(!why.is_empty()),
        }
    }

    #[test]
    fn text_cut_short_is_refused_as_not_json_never_a_panic(cut in 0usize..FIXTURE.trim_end().len()) {
        let text = &FIXTURE.as_bytes()[..cut];
        let refused = timed(|| WebhookBody::parse(text))?;
        prop_assert!(matches!(refused, Err(ParseError::NotJson(_))), "{:?}", refused.map(|b| b.events.len()));
    }

    #[test]
    fn one_changed_event_never_costs_its_neighbours((i, text) in changed_event()) {
        let body = body_with(i, &text);
        let parsed = timed(|| WebhookBody::parse(body.as_bytes()))?;
        // Never refused, even nested past what a JSON tree holds.
        let parsed = parsed.map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
        let original_text = body_with(usize::MAX, "");
        let original = WebhookBody::parse(original_text.as_bytes()).unwrap();
        prop_assert_eq!(parsed.events.len(), original.events.len(), "nothing dropped");
        for (j, (got, want)) in parsed.events.iter().zip(&original.events).enumerate() {
            if j != i {
                prop_assert_eq!(got, want, "event {} changed", j);
            }
        }
        // Kept byte for byte, whatever was done to it.
        prop_assert_eq!(parsed.events[i].raw(), text.as_str());
        // Each event's bytes are exactly its stretch of the body, in order.
        let mut rest = body.as_str();
        for e in &parsed.events {
            let at = rest.find(e.raw()).ok_or_else(|| TestCaseError::fail(format!("not in order: {}", e.raw())))?;
            rest = &rest[at + e.raw().len()..];
        }
    }

    #[test]
    fn parse_then_queue_then_parse_gives_back_the_same_events((i, text) in changed_event()) {
        let body = body_with(i, &text);
        let Ok(parsed) = WebhookBody::parse(body.as_bytes()) else { return Ok(()) };
        let events = parsed.events.clone();
        let items = line_items(parsed, 1_795_000_000_000);
        prop_assert_eq!(items.len(), events.len());
        for (item, event) in items.iter().zip(&events) {
            let queued: QueuedEvent = serde_json::from_str(&item.body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            match queued {
                QueuedEvent::Line { event: back, dedupe_key, .. } => {
                    prop_assert_eq!(&*back, event);
                    prop_assert_eq!(dedupe_key, event.dedupe_key());
                }
                other => return Err(TestCaseError::fail(format!("not a LINE event: {other:?}"))),
            }
        }
    }
}

#[test]
fn every_fixture_event_is_forwarded_exactly_as_sent() {
    let body = WebhookBody::parse(FIXTURE.as_bytes()).unwrap();
    assert_eq!(body.events.len(), 28);
    let items = line_items(body.clone(), 0);
    for (event, item) in body.events.iter().zip(&items) {
        assert!(FIXTURE.contains(event.raw()), "the event's own bytes");
        assert!(item.body.contains(event.raw()), "forwarded byte for byte: {}", item.body);
    }
}

#[test]
fn key_order_number_formats_and_escapes_survive_the_queue() {
    let event = r#"{ "timestamp" : 1.0E3, "type":"unfollow","source":{"userId":"U0123456789abcdef0123456789abcdef","type":"user"}, "x":"caf\u00e9 \ud83c\udf70", "big": 123456789012345678901234567890 }"#;
    let body = format!(r#"{{"events":[{event}]}}"#);
    let parsed = WebhookBody::parse(body.as_bytes()).unwrap();
    assert_eq!(parsed.events[0].raw(), event);
    let items = line_items(parsed, 0);
    assert!(items[0].body.contains(event), "{}", items[0].body);
}

#[test]
fn json_a_tree_cannot_hold_is_kept_and_keyed_by_its_own_bytes() {
    let u = "U0123456789abcdef0123456789abcdef";
    let deep = format!(
        r#"{{"type":"unfollow","source":{{"type":"user","userId":"{u}"}},"x":{}1{}}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let huge = format!(r#"{{"type":"unfollow","source":{{"type":"user","userId":"{u}"}},"x":1e400}}"#);
    let huge_timestamp = r#"{"type":"unfollow","timestamp":1e400}"#;
    let surrogate = r#"{"type":"join","replyToken":"\ud800"}"#;
    let good = format!(r#"{{"type":"unfollow","source":{{"type":"user","userId":"{u}"}}}}"#);
    let body = format!(r#"{{"events":[null,{deep},{huge},{huge_timestamp},{surrogate},{good}]}}"#);
    let parsed = WebhookBody::parse(body.as_bytes()).unwrap();
    assert_eq!(parsed.events.len(), 6, "nothing dropped");
    assert_eq!(parsed.events[1].raw(), deep);
    // Fields it does not read may hold anything: these two are good unfollows.
    assert!(parsed.events[1].malformed().is_none() && parsed.events[2].malformed().is_none());
    // Where it reads, it says so, without the content: a number no type holds is a field of the
    // wrong type; a lone surrogate cannot be read as text at all.
    assert_eq!(parsed.events[3].malformed(), Some("`timestamp` is not an integer (milliseconds)"));
    let surrogate = parsed.events[4].malformed();
    assert!(surrogate.is_some_and(|r| r.starts_with("the event cannot be read")), "{surrogate:?}");
    assert!(parsed.events[5].malformed().is_none());
    // Keys: never the key of a `null` event or of each other.
    let keys: std::collections::HashSet<String> = parsed.events.iter().map(|e| e.dedupe_key()).collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
}
