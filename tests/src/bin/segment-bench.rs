//! Segment resolution, measured.
//!
//!   cargo run --release -p integration-tests --bin segment-bench -- [--friends 100000] [--memory 1000000]
//!
//! 1. DynamoDB Local: seeds `--friends` tagged friends on a fresh stack (tag items and users rows in
//!    the tagger's own format, written in batches), then for each expression times the count (16
//!    shards in parallel) and the full resolution (every user ID, in pages of 500 from one reader), with
//!    index items read and read capacity units. Needs DynamoDB Local and the SQS emulator
//!    (`make local-up`).
//! 2. In memory: the same expressions over `--memory` friends, through the same resolver over an
//!    in-memory index, and the bare evaluator (`Expr::matches`) over every friend.
//!
//! Prints Markdown tables (the README's).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use integration_tests::seed::{bulk_friends, user_id};
use integration_tests::TestStack;
use shared::adapters::dynamodb::tags::DynamoTags;
use shared::adapters::memory::segment::MemoryIndex;
use shared::segment::resolve::{ReadStats, Resolver, SegmentIndex};
use shared::segment::{Expr, FriendFacts, TagFacts};

const DAY: i64 = 86_400_000;
const EXPRESSIONS: [&str; 5] = [
    "dessert",
    "dessert AND NOT vip",
    "tagged(cart:open, within 3d) AND NOT buyer",
    "(dessert OR bought:cakes) AND friend_since(90d)",
    "NOT vip",
];

/// Friend `i`'s facts: dessert 30 %, vip 10 %, buyer 8 %, bought:cakes 5 %, an open cart 6 % (set
/// 0-6 days ago), blocked 3 %.
fn facts(i: u64, now: i64) -> FriendFacts {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let pick = |salt: u64, percent: u64| (h.rotate_left(salt as u32 * 7) % 100) < percent;
    let mut tags = HashMap::new();
    let forever = |days_ago: i64| TagFacts { tagged_at_ms: now - days_ago * DAY, expires_at_ms: None };
    for (salt, percent, tag) in [(1, 30, "dessert"), (2, 10, "vip"), (3, 8, "buyer"), (4, 5, "bought:cakes")] {
        if pick(salt, percent) {
            tags.insert(tag.to_string(), forever((h % 200) as i64));
        }
    }
    if pick(5, 6) {
        let at = now - ((h >> 8) % 7) as i64 * DAY - 3_600_000;
        tags.insert("cart:open".to_string(), TagFacts { tagged_at_ms: at, expires_at_ms: Some(at + 7 * DAY) });
    }
    FriendFacts { blocked: pick(6, 3), followed_at_ms: Some(now - ((h >> 16) % 400) as i64 * DAY), tags }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|p| args.get(p + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

async fn seed(stack: &TestStack, friends: u64, now: i64) {
    let started = Instant::now();
    let items = bulk_friends(stack, (0..friends).map(|i| (user_id(i), facts(i, now)))).await;
    eprintln!("seeded {friends} friends ({items} items) in {}", ms(started.elapsed()));
}

async fn measure(index: &dyn SegmentIndex, expr: &Expr, now: i64) -> (u64, Duration, ReadStats, Duration, ReadStats) {
    let resolver = Resolver::new(index);
    let started = Instant::now();
    let counted = resolver.count(expr, now).await.unwrap();
    let count_time = started.elapsed();
    let started = Instant::now();
    let (mut reader, mut n, mut read) = (resolver.reader(expr, now, None), 0u64, ReadStats::default());
    loop {
        let page = reader.next_page(500).await.unwrap();
        n += page.user_ids.len() as u64;
        read.add(page.read);
        if page.next.is_none() {
            break;
        }
    }
    assert_eq!(n, counted.friends, "paging and counting agree");
    (counted.friends, count_time, counted.read, started.elapsed(), read)
}

#[tokio::main]
async fn main() {
    let (friends, memory) = (arg("--friends", 100_000), arg("--memory", 1_000_000));
    let now = shared::ports::Clock::now_ms(&shared::ports::SystemClock);

    if friends > 0 {
        let stack = TestStack::new().await;
        seed(&stack, friends, now).await;
        let index = DynamoTags::reader(stack.dynamodb.clone(), stack.table("TagsTable"), stack.table("UsersTable"));
        println!("\nDynamoDB Local, {friends} friends:\n");
        println!(
            "| expression | friends | count | items read | full resolution (pages of 500) | items read | read units |"
        );
        println!("|---|---|---|---|---|---|---|");
        for text in EXPRESSIONS {
            let expr = Expr::parse(text).unwrap();
            let (n, ct, cr, rt, rr) = measure(&index, &expr, now).await;
            println!(
                "| `{text}` | {n} | {} | {} | {} | {} | {:.0} |",
                ms(ct),
                cr.items,
                ms(rt),
                rr.items,
                rr.capacity_units
            );
        }
    }

    if memory > 0 {
        let started = Instant::now();
        let population: Vec<(String, FriendFacts)> = (0..memory).map(|i| (user_id(i), facts(i, now))).collect();
        let index = MemoryIndex::new(population.iter().map(|(u, f)| (u.as_str(), f)));
        eprintln!("built {memory} friends in memory in {}", ms(started.elapsed()));
        println!("\nIn memory, {memory} friends:\n");
        println!("| expression | friends | resolver count | resolver, all IDs | evaluator alone (every friend) |");
        println!("|---|---|---|---|---|");
        for text in EXPRESSIONS {
            let expr = Expr::parse(text).unwrap();
            let (n, ct, _, rt, _) = measure(&index, &expr, now).await;
            let started = Instant::now();
            let bare = population.iter().filter(|(_, f)| expr.matches(f, now)).count() as u64;
            let bare_time = started.elapsed();
            assert_eq!(bare, n, "{text}: the resolver and the evaluator agree");
            println!("| `{text}` | {n} | {} | {} | {} |", ms(ct), ms(rt), ms(bare_time));
        }
    }
}
