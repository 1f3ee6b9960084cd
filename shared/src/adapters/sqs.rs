//! SQS adapter: ordered SendMessageBatch calls (10 entries and 256 KiB per call at most), and the
//! rules SQS applies to what it is sent, shared with the in-memory queue.

use std::collections::HashSet;

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use tokio::time::Instant;

use crate::ports::{BatchOutcome, MessageQueue, OutgoingMessage};

const MAX_ENTRIES: usize = 10;
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Whether SQS accepts `id` as a MessageGroupId or MessageDeduplicationId: 1-128 characters of
/// ASCII letters, digits and punctuation (no spaces).
pub fn is_valid_sqs_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether SQS accepts `body`: at most 256 KiB of the characters it allows (#x9, #xA, #xD,
/// #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF).
pub fn is_valid_sqs_body(body: &str) -> bool {
    !body.is_empty()
        && body.len() <= MAX_BATCH_BYTES
        && body
            .chars()
            .all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..))
}

/// `json` (serialised JSON) with the characters SQS refuses written as JSON escapes instead: the
/// same JSON value, in a body SQS takes. Outside strings, JSON text is ASCII, so such characters
/// can only be inside strings, where `\uXXXX` means the same character.
pub fn sqs_safe_json(json: String) -> String {
    if !json.contains(['\u{FFFE}', '\u{FFFF}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if matches!(c, '\u{FFFE}' | '\u{FFFF}') {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }
}

/// The next SendMessageBatch call out of `pending` (indexes into `messages`, in order): at most 10
/// entries and 256 KiB, and at most one entry per message group, each group's first pending one,
/// so a failed entry can never have a later entry of its group succeed beside it.
pub fn next_call(messages: &[OutgoingMessage<'_>], pending: &[usize]) -> Vec<usize> {
    let mut call = Vec::new();
    let mut groups_seen: HashSet<&str> = HashSet::new();
    let mut bytes = 0;
    for &i in pending {
        let Some(m) = messages.get(i) else { continue };
        if !groups_seen.insert(m.group_id) {
            continue; // an earlier message of this group is in this call, or waits for the next
        }
        if call.len() == MAX_ENTRIES || (!call.is_empty() && bytes + m.body.len() > MAX_BATCH_BYTES) {
            break;
        }
        bytes += m.body.len();
        call.push(i);
    }
    call
}

#[async_trait]
impl MessageQueue for SqsQueue {
    async fn send_all(&self, messages: &[OutgoingMessage<'_>], deadline: Instant) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        let mut pending: Vec<usize> = (0..messages.len()).collect();
        let mut stopped: HashSet<&str> = HashSet::new();
        let group = |i: usize| messages.get(i).map_or("", |m| m.group_id);
        while !pending.is_empty() {
            // A group with a message not enqueued sends nothing more, so its order holds.
            let (skip, keep): (Vec<usize>, Vec<usize>) = pending.iter().partition(|&&i| stopped.contains(group(i)));
            outcome.failed.extend(skip);
            pending = keep;
            let call = next_call(messages, &pending);
            if call.is_empty() {
                break;
            }
            let entries: Result<Vec<_>, _> = call
                .iter()
                .filter_map(|&i| Some((i, messages.get(i)?)))
                .map(|(i, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(m.body)
                        .message_group_id(m.group_id)
                        .message_deduplication_id(m.dedupe_id)
                        .build()
                })
                .collect();
            let sent = match entries {
                Ok(entries) => {
                    let request =
                        self.client.send_message_batch().queue_url(&self.url).set_entries(Some(entries)).send();
                    match tokio::time::timeout_at(deadline, request).await {
                        Ok(result) => result.map_err(|e| crate::adapters::sdk::describe(&e)),
                        Err(_) => {
                            outcome.deadline_passed = true;
                            Err("the request's deadline passed".to_string())
                        }
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            pending.retain(|i| !call.contains(i));
            match sent {
                Ok(out) => {
                    for f in out.failed() {
                        if let Ok(i) = f.id().parse::<usize>() {
                            outcome.failed.push(i);
                            stopped.insert(group(i));
                        }
                        outcome.error.get_or_insert_with(|| format!("{}: {}", f.code(), f.message().unwrap_or("")));
                    }
                }
                Err(e) => {
                    // SQS did not answer (or answered with an error for the whole call): everything
                    // from here on is reported failed, and nothing more is tried in this request.
                    outcome.failed.extend(call);
                    outcome.failed.append(&mut pending);
                    outcome.error.get_or_insert(e);
                }
            }
        }
        outcome.failed.sort_unstable();
        outcome.failed.dedup();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs<'a>(bodies: &'a [String], groups: &'a [&'a str]) -> Vec<OutgoingMessage<'a>> {
        bodies.iter().zip(groups).map(|(body, g)| OutgoingMessage { group_id: g, dedupe_id: "d", body }).collect()
    }

    #[test]
    fn calls_hold_at_most_ten_entries_and_one_per_group() {
        let bodies = vec!["x".repeat(10); 23];
        let groups: Vec<String> = (0..23).map(|i| format!("g{i}")).collect();
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let m = msgs(&bodies, &groups);
        let all: Vec<usize> = (0..23).collect();
        assert_eq!(next_call(&m, &all), (0..10).collect::<Vec<_>>());
        let same = vec!["g"; 23];
        let m = msgs(&bodies, &same);
        assert_eq!(next_call(&m, &all), [0], "one friend's events go one call at a time, in order");
        let mixed = ["a", "a", "b", "a", "c"];
        let m = msgs(&bodies[..5], &mixed);
        assert_eq!(next_call(&m, &[0, 1, 2, 3, 4]), [0, 2, 4]);
        assert_eq!(next_call(&m, &[1, 3]), [1]);
    }

    #[test]
    fn calls_stay_under_the_byte_limit() {
        let bodies = vec!["x".repeat(100 * 1024); 5];
        let groups = ["a", "b", "c", "d", "e"];
        let m = msgs(&bodies, &groups);
        assert_eq!(next_call(&m, &[0, 1, 2, 3, 4]), [0, 1]);
        assert!(next_call(&m, &[]).is_empty());
    }

    #[test]
    fn ids_and_bodies_sqs_refuses_are_recognised_and_bodies_made_safe() {
        assert!(is_valid_sqs_id("U0123456789abcdef0123456789abcdef"));
        assert!(is_valid_sqs_id("sha256:00ff"));
        for bad in ["", "a b", "ü", &"x".repeat(129)] {
            assert!(!is_valid_sqs_id(bad), "{bad:?}");
        }
        let json = serde_json::to_string(&serde_json::json!({"text": "a\u{FFFF}b\u{FFFE}"})).unwrap();
        assert!(!is_valid_sqs_body(&json));
        let safe = sqs_safe_json(json.clone());
        assert!(is_valid_sqs_body(&safe), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["text"], "a\u{FFFF}b\u{FFFE}", "the same value");
    }
}

/// A standard queue of work items (campaign-queue, multicast-queue): at-least-once, so whoever
/// consumes it is idempotent.
#[derive(Clone)]
pub struct SqsWorkQueue {
    client: Client,
    url: String,
}

impl SqsWorkQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }
}

#[async_trait]
impl crate::ports::WorkQueue for SqsWorkQueue {
    async fn send(&self, body: &str, delay_secs: u32) -> Result<(), crate::ports::BackendError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(delay_secs.min(900) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| crate::ports::BackendError::Queue {
                operation: "SendMessage",
                message: crate::adapters::sdk::describe(&e),
            })
    }
}
