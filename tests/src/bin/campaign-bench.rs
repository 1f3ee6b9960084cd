//! Campaigns at scale, measured.
//!
//!   cargo run --release -p integration-tests --bin campaign-bench -- [--friends 100000]
//!       [--invocation-secs 20] [--requests 200] [--rate 20]
//!
//! Needs DynamoDB Local and the SQS emulator (`make local-up`); line-sim runs in this process.
//!
//! 1. Planning: seeds `--friends` following friends tagged `dessert` in bulk (users rows and tag
//!    items, not through the pipeline), starts a campaign over `dessert`, and runs the planner as
//!    campaign-queue would, each invocation given `--invocation-secs` so that planning goes on
//!    across invocations. Time, invocations, pages, items and units read and written.
//! 2. The fleet's rate: line-sim's multicast limit and the account's `sendRate` both `--rate`; a
//!    transactional campaign of one friend a batch makes `--requests` requests, sent by
//!    `--senders` (default 5) senders at once. Achieved rate (first to last request on line-sim's log), 429s, the most
//!    requests in any 100 ms window.
//! 3. The cap reservation's cost: write units per 1,000 recipients with 1, 2 and 3 caps, and
//!    after a year of day, week and month caps.
//! 4. With `--stack-rate R` (needs the functions: `make local-up`): the fleet's rate through the
//!    running stack, as a user sees it. `--requests` friends seeded into its tables, the account's
//!    `sendRate` set to R with `oa settings apply`, a transactional campaign of one friend a batch
//!    created and started with `oa`, planned and sent by the functions under `cargo lambda watch`
//!    as the poller feeds them; line-sim's (the stack's) limit set to R.
//!
//! Prints Markdown tables (the README's).

use std::time::{Duration, Instant};

use integration_tests::campaigns::{arrivals_us, users, windows, CampaignRig, ACCOUNT};
use integration_tests::seed::{bulk_friends, user_id};
use integration_tests::TestStack;
use serde_json::json;
use shared::adapters::dynamodb::campaigns::DynamoCampaigns;
use shared::adapters::dynamodb::tags::DynamoTags;
use shared::adapters::memory::queue::MemoryWorkQueue;
use shared::campaign::caps::Demand;
use shared::campaign::file::{AccountSettings, CampaignFile, Cap, Period};
use shared::campaign::model::{PlanMessage, State};
use shared::campaign::plan::{Planned, Planner};
use shared::campaign::ports::{CampaignAdmin, CampaignRepo, CapStore};
use shared::ports::{Clock, SystemClock};
use shared::segment::resolve::{ReadStats, Resolver};
use shared::segment::{Expr, FriendFacts, TagFacts};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|p| args.get(p + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn planning(friends: u64, invocation: Duration) {
    let stack = TestStack::new().await;
    let now = SystemClock.now_ms();
    let facts = FriendFacts {
        blocked: false,
        followed_at_ms: Some(now - 86_400_000),
        tags: [("dessert".to_string(), TagFacts { tagged_at_ms: now - 3_600_000, expires_at_ms: None })].into(),
    };
    let seeded = Instant::now();
    bulk_friends(&stack, (0..friends).map(|i| (user_id(i), facts.clone()))).await;
    eprintln!("seeded {friends} friends in {:.1} s", seeded.elapsed().as_secs_f64());

    let store = DynamoCampaigns::new(stack.dynamodb.clone(), stack.table("CampaignsTable"), stack.table("UsersTable"));
    let settings = AccountSettings::parse(ACCOUNT).unwrap();
    let file = CampaignFile::parse("id: bench\nname: bench\nsegment: dessert\nmessages: [\"hi\"]\n").unwrap();
    store.create(&file, "", false, now).await.unwrap();
    let c = store.start("bench", &settings, State::Planning, now).await.unwrap().unwrap();
    let index = DynamoTags::reader(stack.dynamodb.clone(), stack.table("TagsTable"), stack.table("UsersTable"));
    let (batches, plans) = (MemoryWorkQueue::default(), MemoryWorkQueue::default());
    let planner =
        Planner { store: &store, caps: &store, index: &index, batches: &batches, plans: &plans, clock: &SystemClock };
    let message = PlanMessage { campaign: "bench".into(), run: c.run.clone(), requeue_from: None };
    let started = Instant::now();
    let mut invocations = 0;
    loop {
        invocations += 1;
        let deadline = tokio::time::Instant::now() + invocation;
        match planner.run(&message, deadline).await.unwrap() {
            Planned::Finished { .. } => break,
            Planned::Continued { .. } => continue,
            other => panic!("planning stopped: {other:?}"),
        }
    }
    let took = started.elapsed();
    let c = store.get("bench").await.unwrap().unwrap();
    assert_eq!((c.counters.segment, c.counters.planned), (friends, friends), "{:?}", c.counters);
    let units = store.units();
    // The index reads, as the planner's reader made them (the same resolver, the same pages).
    let resolver = Resolver::new(&index);
    let expr = Expr::parse("dessert").unwrap();
    let mut reader = resolver.reader(&expr, now, None);
    let mut index_read = ReadStats::default();
    loop {
        let page = reader.next_page(500).await.unwrap();
        index_read.add(page.read);
        if page.next.is_none() {
            break;
        }
    }
    let per_5m = 5_000_000.0 / friends as f64;
    println!("\nPlanning {friends} friends (DynamoDB Local, invocations of {} s):\n", invocation.as_secs());
    println!("| friends | time | invocations | pages | index items read | index read units | friends read (read units) | write units | batches queued |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {friends} | {:.1} s | {invocations} | {} | {} | {:.0} | {:.0} | {:.0} | {} |",
        took.as_secs_f64(),
        c.plan_page,
        index_read.items,
        index_read.capacity_units,
        units.reads,
        units.writes,
        batches.sent().len()
    );
    println!(
        "| 5,000,000 (projected, linear) | {:.0} min | {:.0} of 295 s | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | |",
        took.as_secs_f64() * per_5m / 60.0,
        took.as_secs_f64() * per_5m / 295.0,
        f64::from(c.plan_page) * per_5m,
        index_read.items as f64 * per_5m,
        index_read.capacity_units * per_5m,
        units.reads * per_5m,
        units.writes * per_5m,
    );
}

async fn rate(requests: usize, rate: u32, senders: usize) {
    let rig = CampaignRig::new(&format!("{ACCOUNT}sendRate: {rate}\n")).await;
    rig.sim.client().configure(json!({ "rateLimits": { "multicast": rate }, "logCapacity": 100000 })).await.unwrap();
    let all = users(requests);
    for chunk in all.chunks(50) {
        futures::future::join_all(chunk.iter().map(|u| rig.friend(u, &["rate"]))).await;
    }
    let file = rig.campaign_file("rate", "rate", "batchSize: 1\ntransactional: true\n");
    rig.oa.create(&file, false, rig.clock.now_ms()).await.unwrap();
    rig.oa.start("rate", rig.clock.now_ms()).await.unwrap();
    rig.plan_only().await;
    let started = Instant::now();
    let failures = rig.send_with_fleet(senders, Duration::from_secs(600)).await;
    let took = started.elapsed();
    let log = rig.sim.client().requests("multicast").await.unwrap();
    let refused = log.iter().filter(|r| r["status"] == 429).count();
    let (most, achieved) = windows(&log);
    let c = rig.campaign("rate").await;
    assert_eq!(c.counters.sent, requests as u64, "{:?}", c.counters);
    println!(
        "\nThe fleet's rate ({senders} senders, {requests} requests of one friend, line-sim's limit = sendRate):\n"
    );
    println!("| sendRate | achieved | of sendRate | 429s | most in 100 ms | allowed in 100 ms | records back to the queue | wall time |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {rate}/s | {achieved:.2}/s | {:.3} | {refused} | {most} | {} | {failures} | {:.1} s |",
        achieved / f64::from(rate),
        (f64::from(rate) / 10.0).ceil(),
        took.as_secs_f64()
    );
    // Where the missing share went: gaps between consecutive requests longer than the schedule's
    // interval are slots nobody was ready for.
    let at = arrivals_us(&log);
    let interval = 1000.0 / (f64::from(rate) * shared::campaign::pace::MARGIN);
    let idle: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]) as f64 / 1000.0).filter(|&g| g > interval * 1.5).collect();
    println!(
        "\nSchedule interval {interval:.1} ms; {} gaps over 1.5 intervals (slots nobody was ready for), {:.0} ms \
         idle in all",
        idle.len(),
        idle.iter().map(|&g| g - interval).sum::<f64>() + 0.0
    );
    // Whether any request was recorded late (the schedule's item keeps one number for them all).
    let pace = rig
        .stack
        .dynamodb
        .get_item()
        .table_name(rig.stack.table("CampaignsTable"))
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("pace#multicast".into()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("pace".into()))
        .send()
        .await
        .unwrap();
    let recorded = pace.item().is_some_and(|i| i.contains_key("lateAnchor"));
    println!("Late requests recorded (sent or answered late beyond what the spacing absorbs): {recorded}");
    let mut spans: Vec<i64> = at.windows(3).map(|w| w[2] - w[0]).collect();
    spans.sort_unstable();
    println!(
        "Shortest spans of 3 requests in a row (µs; under 100,000 is a window over): {:?}",
        &spans[..spans.len().min(5)]
    );
}

async fn reservation_cost() {
    let stack = TestStack::new().await;
    let now = SystemClock.now_ms();
    let facts = FriendFacts { blocked: false, followed_at_ms: Some(now - 86_400_000), tags: Default::default() };
    bulk_friends(&stack, (0..1_000).map(|i| (user_id(i), facts.clone()))).await;
    let store = DynamoCampaigns::new(stack.dynamodb.clone(), stack.table("CampaignsTable"), stack.table("UsersTable"));
    let zone = shared::rules::window::Zone::parse("Asia/Taipei").unwrap();
    println!("\nThe cap reservation (one conditional UpdateItem a recipient), 1,000 recipients:\n");
    println!("| caps | write units | per recipient | friend item after |");
    println!("|---|---|---|---|");
    let all = [Cap { per: Period::Month, max: 4 }, Cap { per: Period::Week, max: 2 }, Cap { per: Period::Day, max: 1 }];
    for n in 1..=3 {
        let demand = Demand::new(format!("campaign-{n}~0123456789ab"), &all[..n], &zone, false, 0, now);
        let before = store.units();
        for i in 0..1_000 {
            store.reserve(&user_id(i), &demand, now).await.unwrap();
        }
        let writes = store.units().writes - before.writes;
        let item = integration_tests::get_item(&stack.dynamodb, stack.table("UsersTable"), "userId", &user_id(0)).await;
        let size = item.as_ref().map_or(0, item_size);
        println!(
            "| {} | {writes:.0} | {:.2} | about {size} bytes |",
            all[..n].iter().map(|c| format!("{:?}", c.per).to_lowercase()).collect::<Vec<_>>().join(" + "),
            writes / 1_000.0
        );
    }
    reservation_after_a_year(&stack, &store).await;
}

/// A friend pushed every day for a year under day, week and month caps: what the last
/// reservation costs, and the item's size, with past periods pruned as they go.
async fn reservation_after_a_year(stack: &TestStack, store: &DynamoCampaigns) {
    let zone = shared::rules::window::Zone::parse("Asia/Taipei").unwrap();
    let caps =
        [Cap { per: Period::Month, max: 40 }, Cap { per: Period::Week, max: 10 }, Cap { per: Period::Day, max: 2 }];
    let friends: Vec<String> = (2_000..2_010).map(user_id).collect();
    let now = SystemClock.now_ms();
    let facts = FriendFacts { blocked: false, followed_at_ms: Some(now - 400 * 86_400_000), tags: Default::default() };
    bulk_friends(stack, friends.iter().map(|u| (u.clone(), facts.clone()))).await;
    let start = now - 365 * 86_400_000;
    let mut last = 0.0;
    for day in 0..=365 {
        let at = start + day * 86_400_000;
        let demand = Demand::new(format!("daily-{day}~0123456789ab"), &caps, &zone, false, 0, at);
        let before = store.units();
        for u in &friends {
            store.reserve(u, &demand, at).await.unwrap();
        }
        last = (store.units().writes - before.writes) / friends.len() as f64;
    }
    let item = integration_tests::get_item(&stack.dynamodb, stack.table("UsersTable"), "userId", &friends[0]).await;
    let periods = item.as_ref().map_or(0, |i| i.keys().filter(|k| k.starts_with("cap#")).count());
    println!(
        "\nAfter a year of daily pushes under month + week + day caps: {last:.2} write units a reservation, \
         {periods} cap periods on the item, about {} bytes.",
        item.as_ref().map_or(0, item_size)
    );
}

/// An item's size as DynamoDB bills it: attribute names plus values (strings as UTF-8, numbers
/// about one byte per two digits plus one, sets as their members).
fn item_size(item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    V::S(s) => s.len(),
                    V::N(n) => n.len().div_ceil(2) + 1,
                    V::Ss(set) => set.iter().map(String::len).sum(),
                    V::Bool(_) | V::Null(_) => 1,
                    _ => 0,
                }
        })
        .sum()
}

/// Runs `oa --local ARGS` from the repository, and its output.
fn oa(args: &[&str]) -> String {
    // `oa` of the same build, beside this binary (`cargo build -p oa` in the same profile).
    let bin = std::env::current_exe().expect("own path").with_file_name("oa");
    assert!(bin.exists(), "{} is missing: cargo build -p oa (in the same profile) first", bin.display());
    let out = std::process::Command::new(bin)
        .current_dir(integration_tests::repo_root())
        .arg("--local")
        .args(args)
        .output()
        .expect("oa runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "oa {args:?}: {text}");
    text
}

async fn stack_rate(requests: usize, rate: u32) {
    use integration_tests::setting;
    integration_tests::require_service("The functions (cargo lambda watch)", &setting("WEBHOOK_URL"));
    let stack = TestStack::running().await;
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let tag = format!("rate{}", &run[..10]);
    let now = SystemClock.now_ms();
    let facts = FriendFacts {
        blocked: false,
        followed_at_ms: Some(now - 86_400_000),
        tags: [(tag.clone(), TagFacts { tagged_at_ms: now - 1000, expires_at_ms: None })].into(),
    };
    let friends: Vec<String> = (0..requests).map(|_| integration_tests::pipeline::user()).collect();
    bulk_friends(&stack, friends.iter().map(|u| (u.clone(), facts.clone()))).await;
    let sim = line_sim::client::SimClient::new(&setting("LINE_API_BASE"));
    sim.configure(json!({ "rateLimits": { "multicast": rate }, "logCapacity": 100000 })).await.unwrap();
    let before = sim.requests("multicast").await.unwrap().len();
    let dir = std::env::temp_dir().join(format!("stack-rate-{run}"));
    std::fs::create_dir_all(&dir).unwrap();
    let account = std::fs::read_to_string(integration_tests::repo_root().join("examples/account.yaml")).unwrap();
    let settings = dir.join("account.yaml");
    let account: String = account.lines().filter(|l| !l.starts_with("sendRate:")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&settings, format!("{account}sendRate: {rate}\n")).unwrap();
    oa(&["settings", "apply", settings.to_str().unwrap()]);
    let id = format!("rate-{run}");
    let file = dir.join("rate.campaign.yaml");
    std::fs::write(
        &file,
        format!(
            "id: {id}\nname: rate\nsegment: {tag}\nmessages: [\"Rate check\"]\nbatchSize: 1\ntransactional: true\n"
        ),
    )
    .unwrap();
    oa(&["campaign", "create", file.to_str().unwrap()]);
    let started = Instant::now();
    oa(&["campaign", "start", &id]);
    let status = oa(&["campaign", "status", &id, "--wait", "--json"]);
    let took = started.elapsed();
    let status: serde_json::Value = serde_json::from_str(&status[status.find('{').unwrap()..]).unwrap();
    assert_eq!((status["state"].as_str(), status["sent"].as_u64()), (Some("done"), Some(requests as u64)), "{status}");
    let log: Vec<serde_json::Value> = sim.requests("multicast").await.unwrap().split_off(before);
    let refused = log.iter().filter(|r| r["status"] == 429).count();
    let (most, achieved) = windows(&log);
    let at = arrivals_us(&log);
    let mut spans: Vec<i64> = at.windows(1 + (rate as usize).div_ceil(10)).map(|w| w[w.len() - 1] - w[0]).collect();
    spans.sort_unstable();
    println!("\nThe fleet's rate through the running stack ({requests} batches of one friend, `oa campaign start` to done):\n");
    println!("| sendRate | achieved | of sendRate | 429s | most in 100 ms | allowed in 100 ms | shortest window of allowed+1 | start to done |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {rate}/s | {achieved:.2}/s | {:.3} | {refused} | {most} | {} | {:.1} ms | {:.1} s |",
        achieved / f64::from(rate),
        (f64::from(rate) / 10.0).ceil(),
        spans.first().copied().unwrap_or(0) as f64 / 1000.0,
        took.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let stack = arg("--stack-rate", 0) as u32;
    if stack > 0 {
        stack_rate(arg("--requests", 200) as usize, stack).await;
        return;
    }
    let friends = arg("--friends", 100_000);
    let requests = arg("--requests", 200) as usize;
    let send_rate = arg("--rate", 20) as u32;
    if friends > 0 {
        planning(friends, Duration::from_secs(arg("--invocation-secs", 20))).await;
    }
    if requests > 0 {
        rate(requests, send_rate, arg("--senders", 5) as usize).await;
    }
    reservation_cost().await;
}
