//! Verify + parse a webhook body, as the handler does before touching storage:
//! 1-event and 30-event bodies of LINE's current shape. Throughput is reported in events/s.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use shared::ingest::line_items;
use shared::line::signature::{sign, verify};
use shared::line::webhook::WebhookBody;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn body(events: usize) -> Vec<u8> {
    let events: Vec<_> = (0..events)
        .map(|i| {
            json!({
                "type": "message", "mode": "active", "timestamp": 1795305600000_i64 + i as i64,
                "source": {"type": "user", "userId": format!("U{:032x}", i)},
                "webhookEventId": format!("01KB0BENCH{:016}", i),
                "deliveryContext": {"isRedelivery": false},
                "replyToken": format!("{:032x}", i),
                "message": {"id": format!("{}", 500000000000000000_u64 + i as u64), "type": "text",
                            "text": "I'd like the strawberry shortcake, please", "quoteToken": "q".repeat(80)}
            })
        })
        .collect();
    json!({"destination": "Ud000000000000000000000000000bot0", "events": events}).to_string().into_bytes()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify_parse");
    for n in [1usize, 30] {
        let body = body(n);
        let signature = sign(SECRET, &body);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("verify+parse", n), &body, |b, body| {
            b.iter(|| {
                verify(SECRET, body, Some(signature.as_bytes())).unwrap();
                WebhookBody::parse(body).unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("verify+parse+queue-bodies", n), &body, |b, body| {
            b.iter(|| {
                verify(SECRET, body, Some(signature.as_bytes())).unwrap();
                line_items(WebhookBody::parse(body).unwrap(), 0)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
