//! Conformance with LINE's official SDK test suites: every webhook body in
//! `../shared/reference/line-sdk-webhook-fixtures` (Go, Java, Python), signed, is accepted, and every
//! event in it reaches the queues intact; the signature vectors hold.
//!
//! That folder lives beside the repository when it is present. Without it these tests say so on stderr and
//! check nothing else; the project's own tests cover the same code paths with their own bodies.

use std::collections::BTreeSet;
use std::path::PathBuf;

use integration_tests::*;
use serde_json::Value;
use shared::line::webhook::Event;

fn fixtures() -> Option<PathBuf> {
    let dir = repo_root().join("../shared/reference/line-sdk-webhook-fixtures");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("note: {} is not present: LINE SDK fixture conformance not checked", dir.display());
        None
    }
}

fn bodies(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sdk in ["go", "java", "python"] {
        for entry in std::fs::read_dir(dir.join(sdk)).expect("fixture folder readable") {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn every_sdk_fixture_body_is_accepted_and_every_event_reaches_the_queues() {
    let Some(dir) = fixtures() else { return };
    let files = bodies(&dir);
    assert!(files.len() >= 30, "expected the SDK fixtures, found {}", files.len());
    let stack = TestStack::new().await;
    let deps = stack.webhook().await;
    let mut events_seen = 0;
    for file in files {
        let body = std::fs::read(&file).unwrap();
        let name = file.strip_prefix(&dir).unwrap().display().to_string();
        let (status, answer) = call(&deps, line_post(&body)).await;
        assert_eq!(status, 200, "{name}: {answer}");

        let fixture: Value = serde_json::from_slice(&body).unwrap();
        let raw_events = fixture["events"].as_array().cloned().unwrap_or_default();
        events_seen += raw_events.len();
        let expected_tag: BTreeSet<String> =
            raw_events.iter().map(|e| Event::from_value(e.clone()).dedupe_key()).collect();
        let expected_reply: BTreeSet<String> = raw_events
            .iter()
            .filter(|e| e["replyToken"].as_str().is_some_and(|t| !t.is_empty()))
            .map(|e| Event::from_value(e.clone()).dedupe_key())
            .collect();
        // Different files reuse ids (the Go and Python suites share events): a repeat of an event
        // already enqueued is a duplicate, not a new message.
        let (enqueued, duplicates) = counts(&answer);
        assert_eq!(enqueued + duplicates, raw_events.len() as u64, "{name}: {answer}");

        let tagged = stack.drain_events("TagQueue").await;
        let replied = stack.drain_events("ReplyQueue").await;
        let tag_keys: BTreeSet<String> = keys(&tagged).into_iter().collect();
        let reply_keys: BTreeSet<String> = keys(&replied).into_iter().collect();
        assert!(tag_keys.is_subset(&expected_tag), "{name}: unexpected tag messages");
        assert!(reply_keys.is_subset(&expected_reply), "{name}: unexpected reply messages");
        assert_eq!(tag_keys.len() as u64, enqueued, "{name}: every new event is on the tag queue");
        // What arrives is what LINE sent, byte for byte.
        let text = std::str::from_utf8(&body).unwrap();
        for queued in &tagged {
            let shared::envelope::QueuedEvent::Line { event, .. } = queued else { panic!("{name}: not a LINE event") };
            assert!(text.contains(event.raw()), "{name}: event changed on the way: {}", event.raw());
        }
    }
    assert!(events_seen > 100, "only {events_seen} events in the fixtures");
}

#[test]
fn signature_vectors_hold() {
    let Some(dir) = fixtures() else { return };
    let text = std::fs::read_to_string(dir.join("signature/signature_vectors.json")).unwrap();
    let vectors: Value = serde_json::from_str(&text).unwrap();
    let vectors = vectors["vectors"].as_array().expect("vectors");
    assert!(!vectors.is_empty());
    for v in vectors {
        let secret = v["channel_secret"].as_str().unwrap();
        let body = v["body"].as_str().unwrap();
        let signature = v["x_line_signature"].as_str().unwrap();
        let valid = v["valid"].as_bool().unwrap();
        let verdict = shared::line::signature::verify(secret, body.as_bytes(), Some(signature.as_bytes()));
        assert_eq!(verdict.is_ok(), valid, "{v}");
        if valid {
            assert_eq!(shared::line::signature::sign(secret, body.as_bytes()), signature);
        }
    }
}
