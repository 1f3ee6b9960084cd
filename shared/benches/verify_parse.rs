//! Verify + parse a webhook body, as the handler does before touching storage, on bodies from
//! LINE's own SDK test suites (`fixtures/`): 28 events of many types, and two 1-event bodies.
//! Throughput is reported in events/s.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shared::ingest::line_items;
use shared::line::signature::{sign, verify};
use shared::line::webhook::WebhookBody;

const SECRET: &str = "8c570fa6dd201bb328f1c1eac23a96d8";

const BODIES: &[(&str, &[u8])] = &[
    ("python-28-events", include_bytes!("fixtures/tests_v3_text_webhook.json")),
    ("java-text-user", include_bytes!("fixtures/text-user.json")),
    ("go-message-edited", include_bytes!("fixtures/v8_webhook_handwritten__message_edited.json")),
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify_parse");
    for (name, body) in BODIES {
        let signature = sign(SECRET, body);
        let events = WebhookBody::parse(body).expect("a fixture parses").events.len();
        group.throughput(Throughput::Elements(events as u64));
        group.bench_with_input(BenchmarkId::new("verify+parse", name), body, |b, body| {
            b.iter(|| {
                verify(SECRET, body, Some(signature.as_bytes())).unwrap();
                WebhookBody::parse(body).unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("parse", name), body, |b, body| {
            b.iter(|| WebhookBody::parse(body).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("verify+parse+queue-bodies", name), body, |b, body| {
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
