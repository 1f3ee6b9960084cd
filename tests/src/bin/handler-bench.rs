//! The whole webhook handler against the local services: latency over N requests.
//!
//!   cargo run --release -p integration-tests --bin handler-bench -- [--requests 1000] [--events 1]
//!                                                                    [--concurrency 1] [--http] [--one-friend]
//!
//! In-process (default): the real handler with DynamoDB Local and the SQS emulator, on a fresh
//! stack. `--http`: POSTs to WEBHOOK_URL, i.e. through `cargo lambda watch` (`make local-up`).
//! Each request carries new events (no duplicates), so every one does the full claim, record and
//! enqueue work. `--one-friend`: all of a request's events come from one friend (one message group:
//! each queue call then carries one of them, to keep their order). Needs `make local-up`.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use integration_tests::*;

struct Options {
    requests: usize,
    events: usize,
    concurrency: usize,
    http: bool,
    one_friend: bool,
}

fn options() -> Options {
    let mut o = Options { requests: 1000, events: 1, concurrency: 1, http: false, one_friend: false };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value =
            || args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{} needs a number", args[i]));
        match args[i].as_str() {
            "--requests" => o.requests = value(),
            "--events" => o.events = value(),
            "--concurrency" => o.concurrency = value(),
            "--http" => {
                o.http = true;
                i -= 1;
            }
            "--one-friend" => {
                o.one_friend = true;
                i -= 1;
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let o = options();
    // RUST_LOG=aws_smithy_runtime=debug shows where a request's time goes.
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let stack = TestStack::new().await;
    let deps = stack.webhook().await;
    let http = reqwest::Client::new();
    let (url, secret) = (setting("WEBHOOK_URL"), setting("LINE_CHANNEL_SECRET"));
    if o.http {
        require_service("The functions (cargo lambda watch)", &url);
    }
    let bodies: Vec<Vec<u8>> = (0..o.requests)
        .map(|_| {
            let friend = sample::user_id();
            let events: Vec<_> = (0..o.events)
                .map(|_| {
                    let user = if o.one_friend { friend.clone() } else { sample::user_id() };
                    sample::text(&sample::event_id(), &user, "menu please", sample::now_ms())
                })
                .collect();
            sample::body("Ubench", &events)
        })
        .collect();

    // The queues are drained between chunks, untimed, as the consumers would keep them: the SQS
    // emulator's send time grows with the number of messages waiting, which AWS's does not.
    let mut latencies: Vec<Duration> = Vec::with_capacity(o.requests);
    let mut wall = Duration::ZERO;
    for chunk in bodies.chunks((50 / o.events).max(1)) {
        let started = Instant::now();
        let timed: Vec<Duration> = stream::iter(chunk.iter().cloned())
            .map(|body| {
                let (deps, http, url, secret) = (&deps, &http, &url, &secret);
                async move {
                    let t = Instant::now();
                    let status = if o.http {
                        oa::post_signed(http, url, "x-line-signature", secret, body).await.expect("POST works").0
                    } else {
                        call(deps, line_post(&body)).await.0
                    };
                    assert_eq!(status, 200);
                    t.elapsed()
                }
            })
            .buffer_unordered(o.concurrency)
            .collect()
            .await;
        wall += started.elapsed();
        latencies.extend(timed);
        if o.http {
            drain_queue(&stack.sqs, &setting("REPLY_QUEUE_URL")).await;
            drain_queue(&stack.sqs, &setting("TAG_QUEUE_URL")).await;
        } else {
            stack.drain("ReplyQueue").await;
            stack.drain("TagQueue").await;
        }
    }
    latencies.sort();
    println!(
        "handler ({}), {} requests x {} event(s), concurrency {}: p50 {}  p90 {}  p99 {}  max {}  | {:.0} requests/s",
        if o.http { "HTTP via cargo lambda watch" } else { "in-process" },
        o.requests,
        o.events,
        o.concurrency,
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.90)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap()),
        o.requests as f64 / wall.as_secs_f64(),
    );
}
