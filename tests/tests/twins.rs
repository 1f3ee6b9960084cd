//! The campaign path's outside parties and their twins, held to one contract: LINE's twin
//! (`shared::adapters::memory::line`) against line-sim (`line_in_memory::…`,
//! `line_on_line_sim::…`): a retry key is remembered for 24 hours, then forgotten; and the fleet's
//! send schedule in memory against DynamoDB Local (`pacer_in_memory::…`,
//! `pacer_on_dynamodb_local::…`). The stores' contract is in `contract.rs`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use shared::campaign::ports::Pacer;

/// 2026-11-15T00:00Z.
const NOW: i64 = 1_794_700_800_000;

fn user(i: usize) -> String {
    format!("U{i:032x}")
}

// ---- LINE and its twin ----------------------------------------------------------------------

/// LINE's multicast under contract, with a clock that can be moved on.
#[async_trait]
trait LineFixture: Send + Sync {
    fn line(&self) -> &dyn shared::campaign::ports::Multicaster;
    async fn advance(&self, ms: i64);
}

struct TestClock(AtomicI64);

impl shared::ports::Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct LineTwin {
    line: shared::adapters::memory::line::MemoryLine,
    clock: Arc<TestClock>,
}

#[async_trait]
impl LineFixture for LineTwin {
    fn line(&self) -> &dyn shared::campaign::ports::Multicaster {
        &self.line
    }
    async fn advance(&self, ms: i64) {
        self.clock.0.fetch_add(ms, Ordering::SeqCst);
    }
}

struct LineSimFixture {
    sim: line_sim::LineSim,
    client: shared::adapters::line::LineClient,
}

#[async_trait]
impl LineFixture for LineSimFixture {
    fn line(&self) -> &dyn shared::campaign::ports::Multicaster {
        &self.client
    }
    async fn advance(&self, ms: i64) {
        self.sim.client().advance_clock(ms / 1000).await.expect("line-sim moves its clock");
    }
}

async fn line_twin() -> LineTwin {
    let clock = Arc::new(TestClock(AtomicI64::new(NOW)));
    LineTwin { line: shared::adapters::memory::line::MemoryLine::with_clock(clock.clone()), clock }
}

async fn line_sim(friends: &[String]) -> LineSimFixture {
    use shared::config::Secret;
    use shared::secrets::{SecretName, Secrets, StaticStore};
    let token = integration_tests::pipeline::ACCESS_TOKEN;
    let config = line_sim::SimConfig::new(integration_tests::CHANNEL_SECRET, token);
    let sim = line_sim::LineSim::start(config, ([127, 0, 0, 1], 0).into()).await.expect("line-sim starts");
    let listed: Vec<serde_json::Value> =
        friends.iter().map(|u| serde_json::json!({ "userId": u, "displayName": u })).collect();
    sim.client().add_friends(serde_json::Value::Array(listed)).await.unwrap();
    let store = StaticStore(std::collections::BTreeMap::from([(SecretName::ChannelAccessToken, Secret::new(token))]));
    let secrets = Arc::new(Secrets::load(Arc::new(store), &[SecretName::ChannelAccessToken]).await.unwrap());
    let client =
        shared::adapters::line::LineClient::new(&sim.base_url(), secrets, std::time::Duration::from_secs(5)).unwrap();
    LineSimFixture { sim, client }
}

/// A LINE no connection can be made to (the port closed): the call is refused before a byte of it
/// was sent, so the sender knows LINE has nothing (and decides the batch again), unlike a timeout.
#[tokio::test]
async fn a_line_no_connection_reaches_is_unreachable_not_maybe_taken() {
    use shared::config::Secret;
    use shared::line::answer::LineError;
    use shared::secrets::{SecretName, Secrets, StaticStore};
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let token = integration_tests::pipeline::ACCESS_TOKEN;
    let store = StaticStore(std::collections::BTreeMap::from([(SecretName::ChannelAccessToken, Secret::new(token))]));
    let secrets = Arc::new(Secrets::load(Arc::new(store), &[SecretName::ChannelAccessToken]).await.unwrap());
    let base = format!("http://{closed}");
    let client = shared::adapters::line::LineClient::new(&base, secrets, std::time::Duration::from_secs(5)).unwrap();
    let messages = [serde_json::json!({ "type": "text", "text": "hi" })];
    let e = client.multicast(&[user(1).as_str()], &messages, "key", None).await.unwrap_err();
    assert!(matches!(e, LineError::Unreachable(_)), "{e:?}");
    assert!(e.is_retryable() && !e.is_ambiguous());
}

/// A retry key LINE took answers 409 with the request it was taken with, for 24 hours; then it
/// is a new key and the same request goes out again (why a batch first called over 23 hours ago
/// is never retried by itself).
async fn a_retry_key_is_remembered_for_24_hours(f: &dyn LineFixture) {
    let (a, b) = (user(1), user(2));
    let to = [a.as_str(), b.as_str()];
    let messages = [serde_json::json!({ "type": "text", "text": "hello" })];
    let key = "6b6c2f3e-2a4b-4c8e-9d7a-0a1b2c3d4e5f";
    let first = f.line().multicast(&to, &messages, key, None).await.expect("taken");
    let again = f.line().multicast(&to, &messages, key, None).await;
    match again {
        Err(shared::line::answer::LineError::RetryKeyAccepted { accepted_request_id }) => {
            assert_eq!(accepted_request_id, first.request_id, "the request it was taken with")
        }
        other => panic!("a key taken 0 s ago: {other:?}"),
    }
    f.advance(23 * 3_600_000).await;
    assert!(f.line().multicast(&to, &messages, key, None).await.is_err(), "23 hours later: still remembered");
    f.advance(3_600_000 + 1_000).await;
    let later = f.line().multicast(&to, &messages, key, None).await.expect("24 hours later: a new key");
    assert_ne!(later.request_id, first.request_id);
    let month = f.line().month().await.expect("the quota endpoints answer");
    assert_eq!(month.used, 4, "two deliveries to two friends");
}

mod line_in_memory {
    #[tokio::test]
    async fn a_retry_key_is_remembered_for_24_hours() {
        super::a_retry_key_is_remembered_for_24_hours(&super::line_twin().await).await
    }
}

mod line_on_line_sim {
    #[tokio::test]
    async fn a_retry_key_is_remembered_for_24_hours() {
        let friends = [super::user(1), super::user(2)];
        super::a_retry_key_is_remembered_for_24_hours(&super::line_sim(&friends).await).await
    }
}

// ---- the fleet's send schedule ----------------------------------------------------------------

/// The account's `sendRate`, set on the shared schedule (`oa settings apply`), binds a sender
/// whose campaign started at a higher rate from its next claim (one that had read the schedule
/// before finds its claim refused and reads it again), and never speeds one up.
async fn the_accounts_rate_binds_senders_of_campaigns_started_at_another(
    running: &dyn Pacer,
    oa: &dyn Pacer,
    fresh: &dyn Pacer,
) {
    let interval = |rate| shared::campaign::pace::PaceState::default().interval_us(rate, 0);
    let t = (NOW + 3_600_000) * 1000;
    let a = running.claim(200, t).await.unwrap().unwrap();
    let b = running.claim(200, t).await.unwrap().unwrap();
    assert_eq!(b - a, interval(200), "the campaign started at 200 a second");
    oa.set_rate(10, 2).await.unwrap();
    oa.set_rate(300, 1).await.unwrap(); // an older settings version's, applied late: no effect
    let c = running.claim(200, t).await.unwrap().unwrap();
    let d = running.claim(200, t).await.unwrap().unwrap();
    let e = running.claim(200, t).await.unwrap().unwrap();
    assert_eq!((d - c, e - d), (interval(10), interval(10)), "10 a second from the next claim on, not one at 200");
    let f = fresh.claim(200, t).await.unwrap().unwrap();
    let g = fresh.claim(200, t).await.unwrap().unwrap();
    assert_eq!(g - f, interval(10), "a process that starts later claims at it from its first claim");
    // Raised again, it never makes a campaign faster than its own rate.
    oa.set_rate(1000, 3).await.unwrap();
    let h = fresh.claim(20, t).await.unwrap().unwrap();
    let i = fresh.claim(20, t).await.unwrap().unwrap();
    assert!(i - h >= interval(20), "a campaign at 20 a second stays at 20 or slower");
}

mod pacer_in_memory {
    #[tokio::test]
    async fn the_accounts_rate_binds_senders_of_campaigns_started_at_another() {
        let pacer = shared::adapters::memory::schedule::MemoryPacer::default();
        super::the_accounts_rate_binds_senders_of_campaigns_started_at_another(&pacer, &pacer, &pacer).await
    }
}

mod pacer_on_dynamodb_local {
    use shared::adapters::dynamodb::schedule::DynamoPacer;

    #[tokio::test]
    async fn the_accounts_rate_binds_senders_of_campaigns_started_at_another() {
        let stack = integration_tests::TestStack::new().await;
        let pacer = || DynamoPacer::new(stack.dynamodb.clone(), stack.table("CampaignsTable"));
        let (running, oa, fresh) = (pacer(), pacer(), pacer());
        super::the_accounts_rate_binds_senders_of_campaigns_started_at_another(&running, &oa, &fresh).await
    }
}
