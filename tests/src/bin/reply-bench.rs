//! Time from LINE sending a webhook to the friend receiving the reply, through the running local
//! stack: line-sim's sender → webhook (cargo lambda watch) → reply-queue → poller →
//! keyword-reply (cargo lambda watch) → line-sim. Needs `make local-up` and rules with a "menu"
//! keyword (`oa --local rules apply examples/bakery-rules.yaml`).
//!
//!   cargo run --release -p integration-tests --bin reply-bench -- [--messages 100]

use std::time::{Duration, Instant};

use integration_tests::*;
use serde_json::json;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let messages: usize = match args.get(1).map(String::as_str) {
        Some("--messages") => args.get(2).and_then(|v| v.parse().ok()).expect("--messages N"),
        None => 100,
        Some(other) => panic!("unknown option {other}"),
    };
    load_local_env();
    require_service("line-sim", &setting("LINE_API_BASE"));
    let sim = line_sim::client::SimClient::new(&setting("LINE_API_BASE"));
    let mut took = vec![];
    for _ in 0..messages {
        let user = sample::user_id();
        let start = Instant::now();
        let sent = sim.send(None, vec![json!({ "userId": user, "text": "menu" })]).await.expect("line-sim sends");
        assert_eq!(sent.status, 200, "{}", sent.body);
        loop {
            if !sim.deliveries(&user).await.expect("line-sim answers").is_empty() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no reply to {user} within 30 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        took.push(start.elapsed());
    }
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    println!(
        "{messages} messages, webhook sent -> reply received: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        took[took.len() - 1].as_secs_f64() * 1e3
    );
}
