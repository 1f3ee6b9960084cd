//! The local poller against the SQS emulator, as Lambda's event source mapping behaves: up to
//! `MaximumConcurrency` invocations at once and never more, every message handled and deleted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use integration_tests::*;
use oa::poller::{Invoker, Mapping, Poller};
use serde_json::{json, Value};

/// Takes 150 ms an invocation and remembers how many ran at once, and which messages it saw.
#[derive(Default)]
struct Slow {
    now: AtomicUsize,
    most: AtomicUsize,
    seen: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl Invoker for Slow {
    async fn invoke(&self, _function: &str, payload: Value) -> Result<Value, String> {
        let at_once = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(at_once, Ordering::SeqCst);
        for r in payload["Records"].as_array().into_iter().flatten() {
            self.seen.lock().unwrap().push(r["body"].as_str().unwrap_or_default().to_string());
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        Ok(json!({ "batchItemFailures": [] }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_runs_up_to_maximum_concurrency_invocations_at_once_and_handles_every_message() {
    let stack = TestStack::new().await;
    let template = oa::stack::Template::load(&repo_root().join("infra/template.yaml")).unwrap();
    let mapping = oa::poller::mappings(&template).unwrap().into_iter().find(|m| m.queue == "MulticastQueue").unwrap();
    assert_eq!((mapping.batch_size, mapping.max_concurrency), (4, 5), "the template's mapping");
    let url = stack.queue_url("MulticastQueue").to_string();
    for i in 0..24 {
        stack.sqs.send_message().queue_url(&url).message_body(format!("m{i}")).send().await.unwrap();
    }
    let invoker = Arc::new(Slow::default());
    let mapping = Mapping { max_concurrency: 3, ..mapping };
    let poller = Poller::new(mapping, stack.sqs.clone(), &url, "ap-northeast-1", invoker.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(async move { poller.run(stopped, |_, _| {}).await });
    let started = std::time::Instant::now();
    while invoker.seen.lock().unwrap().len() < 24 {
        assert!(started.elapsed() < Duration::from_secs(20), "not every message was handled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run).await.expect("the poller stops").unwrap();
    let mut seen = invoker.seen.lock().unwrap().clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 24, "each message handled");
    assert_eq!(invoker.most.load(Ordering::SeqCst), 3, "3 at once, never more");
    assert_eq!(queue_depth_at(&stack.sqs, &url).await, 0, "every handled message deleted");
}
