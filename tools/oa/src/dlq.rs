//! Dead letters: what each queue's dead-letter queue holds (`oa dlq list`) and moving it back to
//! its queue once the cause is fixed (`oa dlq redrive`).
//!
//! A redrive receives from the DLQ, sends each message to its queue as it was (body, attributes,
//! and on a FIFO queue its message group), and only then deletes it from the DLQ. A redrive cut
//! short (a crash, a refused send) therefore leaves a message in both queues at worst, never in
//! neither; every consumer is idempotent, so a message handled twice does no harm. On a FIFO queue
//! the deduplication id is the DLQ message's own id, so running the same redrive again within
//! five minutes does not even send it twice.

use std::collections::{HashMap, HashSet};

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use serde_json::Value;
use shared::adapters::sdk::describe;

/// The four queues: the short name `oa dlq` takes, the queue's and its DLQ's URL settings.
pub const QUEUES: [(&str, &str, &str); 4] = [
    ("reply", "REPLY_QUEUE_URL", "REPLY_DLQ_URL"),
    ("tag", "TAG_QUEUE_URL", "TAG_DLQ_URL"),
    ("campaign", "CAMPAIGN_QUEUE_URL", "CAMPAIGN_DLQ_URL"),
    ("multicast", "MULTICAST_QUEUE_URL", "MULTICAST_DLQ_URL"),
];

#[derive(clap::Subcommand)]
pub enum DlqCommand {
    /// What each dead-letter queue holds (or one: reply, tag, campaign, multicast): how many, and
    /// for each message its id, when it was sent, when it was first received (its first try) and
    /// how often (looking with `oa dlq list` counts too).
    List {
        queue: Option<String>,
        /// Messages shown per queue (at most; SQS returns a sample, not an ordered list).
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Show each message's body too (it may hold what friends wrote).
        #[arg(long)]
        body: bool,
    },
    /// Delete a dead-letter queue's messages for good (e.g. replies whose token expired long ago).
    Purge {
        queue: String,
        /// Yes, delete them.
        #[arg(long)]
        yes: bool,
    },
    /// Move a dead-letter queue's messages back to its queue, once the cause is fixed.
    Redrive {
        queue: String,
        /// Move at most this many.
        #[arg(long)]
        max: Option<usize>,
    },
}

/// A queue and its DLQ, by URL.
#[derive(Debug, Clone)]
pub struct Pair {
    pub name: &'static str,
    pub queue: String,
    pub dlq: String,
}

/// The pairs `queue` names (all four when `None`), with their URLs from the environment.
pub fn pairs(queue: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<Vec<Pair>, String> {
    if let Some(q) = queue {
        if !QUEUES.iter().any(|(n, _, _)| *n == q) {
            let names: Vec<&str> = QUEUES.iter().map(|(n, _, _)| *n).collect();
            return Err(format!("no queue {q:?}: one of {}", names.join(", ")));
        }
    }
    QUEUES
        .iter()
        .filter(|(n, _, _)| queue.is_none_or(|q| q == *n))
        .map(|(name, queue_var, dlq_var)| {
            let get = |var: &str| {
                env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                    format!("{var} is not set: give --stack NAME (a stack of today's template outputs it) or --local, or set {var}")
                })
            };
            Ok(Pair { name, queue: get(queue_var)?, dlq: get(dlq_var)? })
        })
        .collect()
}

/// One dead letter as `oa dlq list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    pub id: String,
    pub sent_ms: Option<i64>,
    pub first_received_ms: Option<i64>,
    pub receive_count: Option<u64>,
    pub group: Option<String>,
    pub body: String,
}

impl Letter {
    fn of(m: &aws_sdk_sqs::types::Message) -> Letter {
        let attrs = m.attributes();
        let number = |name: MessageSystemAttributeName| attrs.and_then(|a| a.get(&name)).and_then(|v| v.parse().ok());
        Letter {
            id: m.message_id().unwrap_or_default().to_string(),
            sent_ms: number(MessageSystemAttributeName::SentTimestamp),
            first_received_ms: number(MessageSystemAttributeName::ApproximateFirstReceiveTimestamp),
            receive_count: number(MessageSystemAttributeName::ApproximateReceiveCount).map(|n: i64| n as u64),
            group: attrs.and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId)).cloned(),
            body: m.body().unwrap_or_default().to_string(),
        }
    }

    /// One line: id, times, tries, group, and what the body is (its `type` or `kind`, never its
    /// text unless `with_body`).
    pub fn line(&self, with_body: bool) -> String {
        let time = |ms: Option<i64>| {
            ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| "?".into())
        };
        let what = serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| {
                ["type", "kind"].iter().find_map(|k| v.get(k).and_then(Value::as_str).map(|s| format!("{k} {s}")))
            })
            .unwrap_or_else(|| format!("{} bytes", self.body.len()));
        let mut line = format!(
            "  {}  sent {}  first received {}  received {} times  {}",
            self.id,
            time(self.sent_ms),
            time(self.first_received_ms),
            self.receive_count.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
            what
        );
        if let Some(g) = &self.group {
            line.push_str(&format!("  group {g}"));
        }
        if with_body {
            line.push_str(&format!("\n    {}", self.body));
        }
        line
    }
}

/// How many messages a queue holds (visible, and in flight).
pub async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<(u64, u64), String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| format!("cannot read {url}: {}", describe(&e)))?;
    let get =
        |n: QueueAttributeName| out.attributes().and_then(|a| a.get(&n)).and_then(|v| v.parse().ok()).unwrap_or(0u64);
    Ok((
        get(QueueAttributeName::ApproximateNumberOfMessages),
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}

/// Up to `limit` messages of `url`, looked at without hiding them from anyone (visibility 0).
pub async fn peek(sqs: &aws_sdk_sqs::Client, url: &str, limit: usize) -> Result<Vec<Letter>, String> {
    let mut seen: Vec<Letter> = vec![];
    // A few receives: SQS samples servers, so one receive may return fewer than there are.
    for _ in 0..limit.div_ceil(10) + 2 {
        if seen.len() >= limit {
            break;
        }
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(limit.saturating_sub(seen.len()).clamp(1, 10) as i32)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| format!("cannot receive from {url}: {}", describe(&e)))?;
        let mut new = 0;
        for m in out.messages() {
            let letter = Letter::of(m);
            if !seen.iter().any(|l| l.id == letter.id) {
                seen.push(letter);
                new += 1;
            }
        }
        if new == 0 {
            break;
        }
    }
    seen.truncate(limit);
    Ok(seen)
}

/// `oa dlq list`: each pair's DLQ depth and a sample of its messages.
pub async fn list(sqs: &aws_sdk_sqs::Client, pairs: &[Pair], limit: usize, with_body: bool) -> Result<String, String> {
    let mut out = String::new();
    for pair in pairs {
        let (visible, in_flight) = depth(sqs, &pair.dlq).await?;
        out.push_str(&format!("{}: {} dead letters", pair.name, visible + in_flight));
        if in_flight > 0 {
            out.push_str(&format!(" ({in_flight} being looked at by someone else)"));
        }
        out.push_str(&format!("  ({})\n", pair.dlq));
        if visible > 0 {
            for letter in peek(sqs, &pair.dlq, limit).await? {
                out.push_str(&letter.line(with_body));
                out.push('\n');
            }
            out.push_str(&format!(
                "  after fixing the cause: oa dlq redrive {0}; or, if they are not worth it: oa dlq purge {0} --yes\n",
                pair.name
            ));
        }
    }
    Ok(out)
}

/// How long a redrive holds the messages it received before it sends them on.
const REDRIVE_VISIBILITY_SECS: i32 = 120;

/// What a redrive did: how many it moved, and why it stopped early, if it did.
#[derive(Debug, Default, PartialEq)]
pub struct Redriven {
    pub moved: usize,
    pub stopped: Option<String>,
}

/// `oa dlq redrive`: moves up to `max` messages (default: as many as the DLQ holds when it starts)
/// from the pair's DLQ to its queue. A message this redrive sent that is back in the DLQ (same
/// message id: its cause is not fixed) is left there, hidden for the rest of the run; when a
/// receive brings only such messages, the redrive stops, so it never goes round in circles.
pub async fn redrive(sqs: &aws_sdk_sqs::Client, pair: &Pair, max: Option<usize>) -> Result<Redriven, String> {
    let fifo = pair.queue.ends_with(".fifo");
    let max = match max {
        Some(m) => m,
        None => depth(sqs, &pair.dlq).await?.0 as usize,
    };
    let mut sent: HashSet<String> = HashSet::new();
    let mut done = Redriven::default();
    while done.moved < max {
        let out = sqs
            .receive_message()
            .queue_url(&pair.dlq)
            .max_number_of_messages((max - done.moved).min(10) as i32)
            .visibility_timeout(REDRIVE_VISIBILITY_SECS)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| format!("cannot receive from {}: {}", pair.dlq, describe(&e)))?;
        if out.messages().is_empty() {
            break;
        }
        let (back, fresh): (Vec<_>, Vec<_>) =
            out.messages().iter().partition(|m| m.message_id().is_some_and(|id| sent.contains(id)));
        if fresh.is_empty() {
            done.stopped = Some(format!(
                "stopped: {} message(s) this redrive moved came back to the DLQ; their cause is not fixed",
                back.len()
            ));
            release(sqs, pair, &back).await;
            break;
        }
        for (i, m) in fresh.iter().enumerate() {
            match move_one(sqs, pair, m, fifo).await {
                Ok(new_id) => {
                    sent.insert(new_id);
                    done.moved += 1;
                }
                Err(e) => {
                    // What this receive still holds is visible again at once, not in two minutes.
                    release(sqs, pair, &fresh[i..]).await;
                    release(sqs, pair, &back).await;
                    return Err(format!("moved {}; {e}", done.moved));
                }
            }
        }
    }
    Ok(done)
}

/// Makes received messages visible again at once.
async fn release(sqs: &aws_sdk_sqs::Client, pair: &Pair, messages: &[&aws_sdk_sqs::types::Message]) {
    for handle in messages.iter().filter_map(|m| m.receipt_handle()) {
        let _ = sqs
            .change_message_visibility()
            .queue_url(&pair.dlq)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await;
    }
}

/// Sends one dead letter to its queue as it was, then deletes it from the DLQ; returns the id of
/// the message sent.
async fn move_one(
    sqs: &aws_sdk_sqs::Client,
    pair: &Pair,
    m: &aws_sdk_sqs::types::Message,
    fifo: bool,
) -> Result<String, String> {
    let id = m.message_id().unwrap_or_default();
    let attributes: HashMap<String, MessageAttributeValue> = m.message_attributes().cloned().unwrap_or_default();
    let mut send = sqs
        .send_message()
        .queue_url(&pair.queue)
        .message_body(m.body().unwrap_or_default())
        .set_message_attributes((!attributes.is_empty()).then_some(attributes));
    if fifo {
        let group = m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .cloned()
            .unwrap_or_else(|| "redrive".into());
        send = send.message_group_id(group).message_deduplication_id(id);
    }
    let sent = send
        .send()
        .await
        .map_err(|e| format!("cannot send {id} to {}: {} (it stays in the DLQ)", pair.queue, describe(&e)))?;
    if let Some(handle) = m.receipt_handle() {
        sqs.delete_message().queue_url(&pair.dlq).receipt_handle(handle).send().await.map_err(|e| {
            format!(
                "{id} was sent to {} but not deleted from the DLQ ({}): it will be there again",
                pair.name,
                describe(&e)
            )
        })?;
    }
    Ok(sent.message_id().unwrap_or_default().to_string())
}

/// `oa dlq purge`: deletes every message of the pair's DLQ (dead letters not worth moving back,
/// such as replies whose token has long expired).
pub async fn purge(sqs: &aws_sdk_sqs::Client, pair: &Pair) -> Result<u64, String> {
    let (visible, in_flight) = depth(sqs, &pair.dlq).await?;
    sqs.purge_queue()
        .queue_url(&pair.dlq)
        .send()
        .await
        .map_err(|e| format!("cannot purge {}: {}", pair.dlq, describe(&e)))?;
    Ok(visible + in_flight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
    }

    #[test]
    fn a_queue_is_named_by_its_short_name_and_needs_both_urls() {
        let vars = [("REPLY_QUEUE_URL", "q"), ("REPLY_DLQ_URL", "d")];
        let p = pairs(Some("reply"), env(&vars)).unwrap();
        assert_eq!((p[0].name, p[0].queue.as_str(), p[0].dlq.as_str()), ("reply", "q", "d"));
        assert!(pairs(Some("replies"), env(&vars)).unwrap_err().contains("one of reply, tag, campaign, multicast"));
        assert!(pairs(None, env(&vars)).unwrap_err().contains("TAG_QUEUE_URL is not set"));
    }

    #[test]
    fn a_letter_shows_what_it_is_but_not_its_text_unless_asked() {
        let letter = Letter {
            id: "m1".into(),
            sent_ms: Some(0),
            first_received_ms: Some(60_000),
            receive_count: Some(5),
            group: Some("U1".into()),
            body: r#"{"type":"message","text":"my address is ..."}"#.into(),
        };
        let line = letter.line(false);
        assert!(line.contains("first received 1970-01-01T00:01:00Z") && line.contains("received 5 times"), "{line}");
        assert!(line.contains("type message") && !line.contains("address"), "{line}");
        assert!(letter.line(true).contains("my address"));
    }
}
