//! A campaign rig: this test's stack (DynamoDB Local, the SQS emulator), line-sim in process, the
//! `oa` campaign commands, and the campaign and multicast functions' handlers fed from their real
//! queues by [`CampaignRig::pump`], as Lambda's event source would (failed records come back).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsMessage;
use line_sim::{LineSim, SimConfig};
use oa::campaigns::Campaigns;
use serde_json::{json, Value};
use shared::adapters::dynamodb::campaigns::DynamoCampaigns;
use shared::adapters::dynamodb::ingest::DynamoFriends;
use shared::adapters::dynamodb::rules::RulesStore;
use shared::adapters::dynamodb::schedule::DynamoPacer;
use shared::adapters::dynamodb::tags::DynamoTags;
use shared::adapters::line::LineClient;
use shared::adapters::sqs::SqsWorkQueue;
use shared::campaign::model::Campaign;
use shared::campaign::ports::CampaignRepo;
use shared::config::Secret;
use shared::ports::{Clock, FriendChange, FriendStore};
use shared::rules::tags::{Change, TagOp};
use shared::secrets::{SecretName, Secrets, StaticStore};

use crate::pipeline::ACCESS_TOKEN;
use crate::{repo_root, ShiftedClock, TestStack, CHANNEL_SECRET};

pub const ACCOUNT: &str =
    "timezone: Asia/Taipei\ncaps:\n  - { per: month, max: 2 }\nplan: tw-2023-medium\nsuppress: []\n";

pub struct CampaignRig {
    pub stack: TestStack,
    pub sim: LineSim,
    pub oa: Campaigns,
    pub planner: campaign::Deps,
    pub sender: multicast::Deps,
    pub clock: Arc<ShiftedClock>,
    pub store: DynamoCampaigns,
    dir: std::path::PathBuf,
    sender_config: multicast::config::Config,
    secrets: Arc<Secrets>,
    /// The billable messages the sender's invocations counted (`LineMessagesBilled`).
    pub billed: std::sync::atomic::AtomicU64,
}

fn vars(env: &BTreeMap<String, String>) -> HashMap<&str, &str> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

impl CampaignRig {
    /// A rig whose account settings are `account` (YAML).
    pub async fn new(account: &str) -> Self {
        let stack = TestStack::new().await;
        let sim = LineSim::start(SimConfig::new(CHANNEL_SECRET, ACCESS_TOKEN), ([127, 0, 0, 1], 0).into())
            .await
            .expect("line-sim starts");
        let base = sim.base_url();
        let template = oa::stack::Template::load(&repo_root().join("infra/template.yaml")).unwrap();
        let clock = Arc::new(ShiftedClock::default());
        let store = StaticStore(BTreeMap::from([(SecretName::ChannelAccessToken, Secret::new(ACCESS_TOKEN))]));
        let secrets = Arc::new(Secrets::load(Arc::new(store), &[SecretName::ChannelAccessToken]).await.unwrap());

        let env = stack.stack.function_env(&template, "CampaignFunction").unwrap();
        let config = campaign::config::Config::from_env(&vars(&env)).expect("the template configures the planner");
        let mut planner = campaign::Deps::new(&config, &stack.sdk);
        planner.clock = clock.clone();

        let env = stack.stack.function_env(&template, "MulticastFunction").unwrap();
        let mut v = vars(&env);
        v.remove("LINE_SECRET_ARN");
        v.insert("LINE_CHANNEL_ACCESS_TOKEN", ACCESS_TOKEN);
        v.insert("LINE_API_BASE", &base);
        v.insert("LINE_HTTP_TIMEOUT_MS", "1000");
        v.insert("SEND_BACKOFF_MS", "20");
        let sender_config = multicast::config::Config::from_env(&v).expect("the template configures the sender");
        let mut sender =
            multicast::Deps::from_parts(&sender_config, secrets.clone(), stack.dynamodb.clone(), stack.sqs.clone())
                .unwrap();
        sender.clock = clock.clone();

        let store =
            DynamoCampaigns::new(stack.dynamodb.clone(), stack.table("CampaignsTable"), stack.table("UsersTable"));
        let oa = Campaigns {
            store: Arc::new(store.clone()),
            settings: RulesStore::settings(stack.dynamodb.clone(), stack.table("RulesTable")),
            index: Box::new(DynamoTags::reader(
                stack.dynamodb.clone(),
                stack.table("TagsTable"),
                stack.table("UsersTable"),
            )),
            line: LineClient::new(&base, secrets.clone(), Duration::from_secs(2)).unwrap(),
            plans: Box::new(SqsWorkQueue::new(stack.sqs.clone(), stack.queue_url("CampaignQueue"))),
            batches: Box::new(SqsWorkQueue::new(stack.sqs.clone(), stack.queue_url("MulticastQueue"))),
            pacer: Box::new(DynamoPacer::new(stack.dynamodb.clone(), stack.table("CampaignsTable"))),
        };
        let dir = std::env::temp_dir().join(format!("campaign-rig-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let billed = Default::default();
        let rig = CampaignRig { stack, sim, oa, planner, sender, clock, store, dir, sender_config, secrets, billed };
        let path = rig.write("account.yaml", account);
        rig.oa.apply_settings(&path, rig.clock.now_ms()).await.expect("settings apply");
        rig
    }

    /// Writes a file for the CLI functions to read.
    pub fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A campaign file.
    pub fn campaign_file(&self, id: &str, segment: &str, extra: &str) -> std::path::PathBuf {
        let text = format!("id: {id}\nname: {id}\nsegment: {segment}\nmessages: [\"News for {id}\"]\n{extra}");
        self.write(&format!("{id}.campaign.yaml"), &text)
    }

    /// A following friend (in line-sim and in the users table) with `tags`.
    pub async fn friend(&self, user: &str, tags: &[&str]) {
        self.sim.client().add_friends(json!([{ "userId": user, "displayName": user }])).await.unwrap();
        let friends = DynamoFriends::new(self.stack.dynamodb.clone(), self.stack.table("UsersTable"));
        let now = self.clock.now_ms();
        friends.record(user, FriendChange::Followed { is_unblocked: false }, now - 1000, now).await.unwrap();
        let ops: Vec<TagOp> = tags
            .iter()
            .map(|t| TagOp { tag: t.to_string(), change: Change::Add { expires_after: None }, source: "test".into() })
            .collect();
        let writer = DynamoTags::new(
            self.stack.dynamodb.clone(),
            self.stack.table("TagsTable"),
            self.stack.table("UsersTable"),
            self.stack.table("EventsTable"),
            3600,
        );
        writer.change(user, &ops, now - 500, now, true, &format!("seed:{user}")).await.unwrap();
    }

    /// The friend blocks the account: LINE and the users table know.
    pub async fn block(&self, user: &str) {
        self.sim.client().add_friends(json!([{ "userId": user, "displayName": user, "blocked": true }])).await.unwrap();
        let friends = DynamoFriends::new(self.stack.dynamodb.clone(), self.stack.table("UsersTable"));
        let now = self.clock.now_ms();
        friends.record(user, FriendChange::Unfollowed, now, now).await.unwrap();
    }

    pub async fn campaign(&self, id: &str) -> Campaign {
        self.store.get(id).await.unwrap().expect("the campaign exists")
    }

    /// Feeds both queues to their functions until both are empty (or `within` passes). A failed
    /// record comes back at once (as after its visibility timeout), and each delivery counts
    /// towards the queue's maxReceiveCount as on AWS. Returns the failures seen.
    pub async fn pump(&self, within: Duration) -> usize {
        let start = Instant::now();
        let mut failures = 0;
        loop {
            let plans = self.receive("CampaignQueue").await;
            let batches = self.receive("MulticastQueue").await;
            if plans.is_empty() && batches.is_empty() {
                return failures;
            }
            if !plans.is_empty() {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                let response = campaign::handler::handle_batch(&self.planner, &plans, deadline).await;
                failures += self.settle("CampaignQueue", &plans, &response).await;
            }
            if !batches.is_empty() {
                let (response, billed) = multicast::handler::handle_records(&self.sender, &batches).await;
                self.billed.fetch_add(billed, std::sync::atomic::Ordering::SeqCst);
                failures += self.settle("MulticastQueue", &batches, &response).await;
            }
            if start.elapsed() > within {
                return failures;
            }
        }
    }

    /// Sends multicast-queue with `n` senders at once, each its own invocation (its own
    /// connections and view of the send schedule; only DynamoDB is shared), taking up to 4
    /// records a receive as the event source does, until the queue is empty and nobody is busy.
    /// Returns the failures seen.
    pub async fn send_with_fleet(&self, n: usize, within: Duration) -> usize {
        self.send_with_fleet_faulty(n, within, None).await
    }

    /// [`Self::send_with_fleet`], `fault` injected into the first sender once it has handled its
    /// first records (so that it hits a request in mid-run).
    pub async fn send_with_fleet_faulty(
        &self,
        n: usize,
        within: Duration,
        fault: Option<shared::campaign::send::Failpoint>,
    ) -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let busy = AtomicUsize::new(0);
        let failures = AtomicUsize::new(0);
        let start = Instant::now();
        let fleet: Vec<multicast::Deps> = (0..n)
            .map(|_| {
                let mut d = multicast::Deps::from_parts(
                    &self.sender_config,
                    self.secrets.clone(),
                    self.stack.dynamodb.clone(),
                    self.stack.sqs.clone(),
                )
                .unwrap();
                d.clock = self.clock.clone();
                d
            })
            .collect();
        let members = fleet.iter().enumerate().map(|(i, deps)| {
            let fault = if i == 0 { fault } else { None };
            self.fleet_member(deps, &busy, &failures, start, within, fault)
        });
        futures::future::join_all(members).await;
        failures.load(Ordering::SeqCst)
    }

    async fn fleet_member(
        &self,
        deps: &multicast::Deps,
        busy: &std::sync::atomic::AtomicUsize,
        failures: &std::sync::atomic::AtomicUsize,
        start: Instant,
        within: Duration,
        mut fault: Option<shared::campaign::send::Failpoint>,
    ) {
        use std::sync::atomic::Ordering;
        loop {
            busy.fetch_add(1, Ordering::SeqCst);
            let records = self.receive_up_to("MulticastQueue", 4).await;
            if !records.is_empty() {
                let (response, billed) = multicast::handler::handle_records(deps, &records).await;
                self.billed.fetch_add(billed, Ordering::SeqCst);
                failures.fetch_add(self.settle("MulticastQueue", &records, &response).await, Ordering::SeqCst);
                if let Some(f) = fault.take() {
                    *deps.failpoint.lock().unwrap() = Some(f);
                }
            }
            let others = busy.fetch_sub(1, Ordering::SeqCst) - 1;
            if (records.is_empty() && others == 0) || start.elapsed() > within {
                return;
            }
            if records.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Plans only: campaign-queue until it is empty; multicast-queue is left alone.
    pub async fn plan_only(&self) {
        loop {
            let plans = self.receive("CampaignQueue").await;
            if plans.is_empty() {
                return;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let response = campaign::handler::handle_batch(&self.planner, &plans, deadline).await;
            assert_eq!(self.settle("CampaignQueue", &plans, &response).await, 0);
        }
    }

    /// The campaign runs in a friend's cap set of this month.
    pub async fn cap_set(&self, user: &str) -> Vec<String> {
        self.cap_set_at(user, self.clock.now_ms()).await
    }

    /// The campaign runs in a friend's cap set of the month of `at_ms`.
    pub async fn cap_set_at(&self, user: &str, at_ms: i64) -> Vec<String> {
        let item = crate::get_item(&self.stack.dynamodb, self.stack.table("UsersTable"), "userId", user).await;
        let zone = shared::rules::window::Zone::parse("Asia/Taipei").unwrap();
        let now = jiff::Timestamp::from_millisecond(at_ms).unwrap();
        let attr = shared::campaign::model::period_attribute(shared::campaign::file::Period::Month, now, &zone);
        item.and_then(|i| i.get(&attr).and_then(|v| v.as_ss().ok()).cloned()).unwrap_or_default()
    }

    /// One round: the plans, then the batches, each received once. Returns the failures.
    /// A sender like the rig's with LINE calls allowed `timeout` (the rig's own allows 1 s).
    pub fn sender_with_line_timeout(&self, timeout: Duration) -> multicast::Deps {
        let mut config = self.sender_config.clone();
        config.line_timeout = timeout;
        let mut sender = multicast::Deps::from_parts(
            &config,
            self.secrets.clone(),
            self.stack.dynamodb.clone(),
            self.stack.sqs.clone(),
        )
        .unwrap();
        sender.clock = self.clock.clone();
        sender
    }

    /// Plans what is queued, then hands the queued batches to `sender`'s whole Lambda handler
    /// (metering included) with an invocation deadline `deadline` from now; how long it took.
    pub async fn invoke_sender(&self, sender: &multicast::Deps, deadline: Duration) -> Duration {
        let plans = self.receive("CampaignQueue").await;
        if !plans.is_empty() {
            let until = tokio::time::Instant::now() + Duration::from_secs(60);
            let response = campaign::handler::handle_batch(&self.planner, &plans, until).await;
            self.settle("CampaignQueue", &plans, &response).await;
        }
        let records = self.receive("MulticastQueue").await;
        assert!(!records.is_empty(), "a batch to send");
        let mut context = lambda_runtime::Context::default();
        context.deadline = (shared::ports::SystemClock.now_ms() + deadline.as_millis() as i64) as u64;
        let mut batch = aws_lambda_events::event::sqs::SqsEvent::default();
        batch.records = records.clone();
        let event = lambda_runtime::LambdaEvent::new(batch, context);
        let started = Instant::now();
        let response = multicast::function_handler(sender, event).await.unwrap();
        let took = started.elapsed();
        self.settle("MulticastQueue", &records, &response).await;
        took
    }

    pub async fn pump_once(&self) -> usize {
        let mut failures = 0;
        let plans = self.receive("CampaignQueue").await;
        if !plans.is_empty() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let response = campaign::handler::handle_batch(&self.planner, &plans, deadline).await;
            failures += self.settle("CampaignQueue", &plans, &response).await;
        }
        let batches = self.receive("MulticastQueue").await;
        if !batches.is_empty() {
            let (response, billed) = multicast::handler::handle_records(&self.sender, &batches).await;
            self.billed.fetch_add(billed, std::sync::atomic::Ordering::SeqCst);
            failures += self.settle("MulticastQueue", &batches, &response).await;
        }
        failures
    }

    async fn receive(&self, queue: &str) -> Vec<SqsMessage> {
        self.receive_up_to(queue, 10).await
    }

    async fn receive_up_to(&self, queue: &str, most: i32) -> Vec<SqsMessage> {
        let out = self
            .stack
            .sqs
            .receive_message()
            .queue_url(self.stack.queue_url(queue))
            .max_number_of_messages(most)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap();
        out.messages()
            .iter()
            .map(|m| {
                let mut record = SqsMessage::default();
                record.message_id = m.message_id.clone();
                record.receipt_handle = m.receipt_handle.clone();
                record.body = m.body.clone();
                record
            })
            .collect()
    }

    async fn settle(
        &self,
        queue: &str,
        records: &[SqsMessage],
        response: &aws_lambda_events::event::sqs::SqsBatchResponse,
    ) -> usize {
        let failed: Vec<&String> = response.batch_item_failures.iter().map(|f| &f.item_identifier).collect();
        for r in records {
            let handle = r.receipt_handle.clone().unwrap();
            let url = self.stack.queue_url(queue);
            if failed.contains(&r.message_id.as_ref().unwrap()) {
                let _ = self
                    .stack
                    .sqs
                    .change_message_visibility()
                    .queue_url(url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await;
            } else {
                self.stack.sqs.delete_message().queue_url(url).receipt_handle(handle).send().await.unwrap();
            }
        }
        failed.len()
    }

    /// Every sum of the counters holds, and what line-sim delivered per friend is what they say.
    pub async fn assert_adds_up(&self, id: &str, friends: &[String]) {
        let c = self.campaign(id).await;
        assert!(c.counters.problems(c.plan_done).is_empty(), "{:?}", c.counters.problems(c.plan_done));
        let k = c.counters;
        assert_eq!(k.planned, k.sent + k.skipped.total() + k.failed + k.held + k.unknown, "{k:?}");
        let mut received = 0;
        for f in friends {
            let n = self.received(f).await;
            assert!(n <= 1, "{f} received {n} multicasts of one campaign");
            received += n as u64;
        }
        assert_eq!(received, k.sent, "line-sim delivered {received}, the counters say {}", k.sent);
    }

    /// Multicast requests each friend received (test pushes and replies are not multicasts).
    pub async fn received(&self, user: &str) -> usize {
        self.sim.client().deliveries(user).await.unwrap().iter().filter(|d| d["api"] == "multicast").count()
    }

    /// What line-sim billed this month.
    pub async fn billed(&self) -> u64 {
        self.sim.client().counters().await.unwrap()["counters"]["messagesBilled"].as_u64().unwrap_or(0)
    }

    /// The multicast requests line-sim logged: (status, retry key).
    pub async fn multicast_log(&self) -> Vec<(u64, String)> {
        let log: Vec<Value> = self.sim.client().requests("multicast").await.unwrap();
        log.iter()
            .map(|r| (r["status"].as_u64().unwrap_or(0), r["retryKey"].as_str().unwrap_or_default().to_string()))
            .collect()
    }
}

/// The most requests in any 100 ms window of line-sim's request log (arrival times, ms), and
/// the achieved rate (requests a second from the first to the last).
pub fn windows(log: &[Value]) -> (usize, f64) {
    let mut at: Vec<i64> = log.iter().filter_map(|r| r["at"].as_i64()).collect();
    at.sort_unstable();
    let mut most = 0;
    let mut j = 0;
    for i in 0..at.len() {
        while at[i] - at[j] >= 100 {
            j += 1;
        }
        most = most.max(i - j + 1);
    }
    let span = at.last().zip(at.first()).map_or(0, |(l, f)| l - f) as f64 / 1000.0;
    let rate = if span > 0.0 { (at.len() - 1) as f64 / span } else { 0.0 };
    (most, rate)
}

/// When each logged request reached line-sim, µs since the epoch, in order.
pub fn arrivals_us(log: &[Value]) -> Vec<i64> {
    let mut at: Vec<i64> = log.iter().filter_map(|r| r["atUs"].as_i64()).collect();
    at.sort_unstable();
    at
}

/// `n` fresh user IDs.
pub fn users(n: usize) -> Vec<String> {
    (0..n).map(|_| crate::pipeline::user()).collect()
}
