//! End to end against the stack `make local-up` runs: the functions under `cargo lambda watch` at
//! WEBHOOK_URL / EVENTS_URL, the event-source poller, line-sim at LINE_API_BASE, the `oa` CLI, and
//! local.env agreeing with the template.

use std::process::Command;

use integration_tests::*;
use serde_json::Value;

/// Tests that tag friends `cart:open` on the one running stack and the campaign test, whose
/// preview must equal what it sends, take turns.
static CART_SEGMENT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn local_env_names_exactly_what_the_template_creates() {
    let sdk = local_sdk().await;
    let template = oa::stack::Template::load(&repo_root().join("infra/template.yaml")).unwrap();
    let stack = oa::stack::provision(
        &template,
        "oa-local",
        &aws_sdk_dynamodb::Client::new(&sdk),
        &aws_sdk_sqs::Client::new(&sdk),
    )
    .await
    .unwrap();
    for function in ["WebhookFunction", "KeywordReplyFunction", "TaggerFunction"] {
        let env = stack.function_env(&template, function).unwrap();
        assert!(env.len() >= 3, "{function}: {env:?}");
        for (name, value) in env {
            assert_eq!(setting(&name), value, "local.env's {name} must name what the template creates");
        }
    }
}

#[tokio::test]
async fn a_signed_webhook_to_the_running_function_is_recorded_and_tagged_once() {
    require_functions();
    let url = setting("WEBHOOK_URL");
    let secret = setting("LINE_CHANNEL_SECRET");
    let http = reqwest::Client::new();
    let (user, id) = (sample::user_id(), sample::event_id());
    let body = sample::body("Ulocal", &[sample::follow(&id, &user, sample::now_ms(), false)]);
    let first = oa::post_signed(&http, &url, "x-line-signature", &secret, body.clone()).await.unwrap();
    assert_eq!((first.0, counts(&first.1)), (200, (1, 0)), "{first:?}");
    let again = oa::post_signed(&http, &url, "x-line-signature", &secret, body.clone()).await.unwrap();
    assert_eq!((again.0, counts(&again.1)), (200, (0, 1)), "{again:?}");
    let forged = oa::post_signed(&http, &url, "x-line-signature", "not-the-secret", body).await.unwrap();
    assert_eq!(forged.0, 401);

    // reply-queue and tag-queue are consumed by the poller: the follow is tagged, once.
    let tags = shared::adapters::dynamodb::tags::DynamoTags::reader(
        aws_sdk_dynamodb::Client::new(&local_sdk().await),
        setting("TAGS_TABLE"),
        setting("USERS_TABLE"),
    );
    let started = std::time::Instant::now();
    let tagged = loop {
        let items = tags.tags_of(&user).await.unwrap();
        if items.iter().any(|t| t.tag == "friend:new") || started.elapsed() > std::time::Duration::from_secs(10) {
            break items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let new = tagged.iter().find(|t| t.tag == "friend:new").expect("the tagger tagged the follow");
    assert_eq!((new.version, new.indexed), (1, true), "written once, and in the index");

    // The follow was recorded in the stack's users table.
    let dynamodb = aws_sdk_dynamodb::Client::new(&local_sdk().await);
    let friend = get_item(&dynamodb, &setting("USERS_TABLE"), "userId", &user).await.expect("friend recorded");
    assert_eq!(friend["state"].as_s().unwrap(), "following");
}

#[tokio::test]
async fn shop_events_reach_the_running_function_on_their_own_route() {
    require_functions();
    let http = reqwest::Client::new();
    let id = sample::event_id();
    let event = sample::shop_event(
        &id,
        "purchase",
        &sample::user_id(),
        sample::now_ms(),
        serde_json::json!({"category": "dessert"}),
    );
    let body = serde_json::to_vec(&event).unwrap();
    let (status, answer) =
        oa::post_signed(&http, &setting("EVENTS_URL"), "x-shop-signature", &setting("SHOP_EVENTS_SECRET"), body)
            .await
            .unwrap();
    assert_eq!((status, counts(&answer)), (200, (1, 0)), "{answer}");
    let get = http.get(setting("EVENTS_URL")).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
}

#[test]
fn the_oa_cli_signs_and_posts_test_events() {
    require_functions();
    let user = sample::user_id();
    let id = sample::event_id();
    let send = |extra: &[&str]| {
        let out = Command::new(oa_binary())
            .current_dir(repo_root())
            .args(["--local", "webhook", "send", "--text", "hi", "--user", &user, "--event-id", &id])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = send(&[]);
    assert!(ok && out.starts_with("200 "), "{out}");
    let answer: Value = serde_json::from_str(out[4..].split(" (").next().unwrap()).unwrap();
    assert_eq!(answer["enqueued"], 1, "{out}");
    let (ok, out) = send(&["--redelivery"]);
    assert!(ok && out.contains(r#""duplicates":1"#), "{out}");
    let (ok, out) = send(&["--secret", "wrong"]);
    assert!(!ok && out.contains("401"), "{out}");
}

#[tokio::test]
async fn the_bundled_invoke_examples_are_accepted() {
    let stack = TestStack::new().await;
    let mut config = stack.webhook_config();
    config.secrets = shared::secrets::SecretSource::Environment(
        [
            (shared::secrets::SecretName::ChannelSecret, local_secret("LINE_CHANNEL_SECRET")),
            (shared::secrets::SecretName::ShopEventsSecret, local_secret("SHOP_EVENTS_SECRET")),
        ]
        .into(),
    );
    let deps = webhook::Deps::new(config, &stack.sdk).await.unwrap();
    let dir = repo_root().join("functions/webhook/events");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let request = lambda_http::request::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let (status, answer) = call(&deps, request).await;
        assert_eq!((status, counts(&answer)), (200, (1, 0)), "{}: {answer}", path.display());
        n += 1;
    }
    assert!(n >= 3);
    assert_eq!(stack.drain("TagQueue").await.len(), n);
}

/// Runs the `oa` binary against the local stack (`--local`): success, and stdout then stderr.
fn oa(args: &[&str]) -> (bool, String) {
    let out = oa_local(args);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Rules applied with the CLI (a bad file refused with its line, changing nothing), then a signed
/// webhook from LINE (line-sim) gets exactly one reply with the configured messages within a second.
/// One test, because both parts change the stack's one set of live rules.
#[tokio::test]
async fn bakery_rules_applied_with_the_cli_answer_within_a_second_and_tag_friends_for_segments() {
    require_functions();
    let _turn = CART_SEGMENT.lock().await;
    require_service("line-sim", &setting("LINE_API_BASE"));
    let (ok, out) = oa(&["rules", "apply", "examples/bakery-rules.yaml"]);
    assert!(ok && (out.contains("published version") || out.contains("no changes")), "{out}");

    let (_, before) = oa(&["rules", "list"]);
    assert!(before.contains("menu") && before.contains("after-hours"), "{before}");
    let dir = std::env::temp_dir().join(format!("rules-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "replies:\n  - id: hi\n    match: { regex: \"(unclosed\" }\n    messages: [hello]\n").unwrap();
    let (ok, out) = oa(&["rules", "validate", bad.to_str().unwrap()]);
    assert!(!ok && out.contains("bad.yaml:3:"), "{out}");
    let (ok, out) = oa(&["rules", "apply", bad.to_str().unwrap()]);
    assert!(!ok && out.contains("bad.yaml:3:") && out.contains("invalid regex"), "{out}");
    assert_eq!(oa(&["rules", "list"]).1, before, "the live rules did not change");
    let book = shared::rules::RuleBook::parse(
        &std::fs::read_to_string(repo_root().join("examples/bakery-rules.yaml")).unwrap(),
    )
    .unwrap();

    let sim = line_sim::client::SimClient::new(&setting("LINE_API_BASE"));
    let user = sample::user_id();
    let started = std::time::Instant::now();
    let sent = sim.send(None, vec![serde_json::json!({ "userId": user, "text": "Menu" })]).await.unwrap();
    assert_eq!(sent.status, 200, "{}", sent.body);
    let expected = match book
        .decide(shared::rules::Trigger::Text("Menu"), shared::rules::file::SourceKind::User, jiff::Timestamp::now())
        .answer
    {
        shared::rules::Answer::Rule { messages, .. } => messages,
        other => panic!("the bakery answers \"Menu\" at any hour: {other:?}"),
    };
    let got = loop {
        let got = sim.deliveries(&user).await.unwrap();
        if !got.is_empty() || started.elapsed() > std::time::Duration::from_secs(1) {
            break got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let took = started.elapsed();
    assert_eq!(got.len(), 1, "one reply within 1 s (after {took:?}): {got:?}");
    assert_eq!(got[0]["api"], "reply");
    assert_eq!(serde_json::Value::Array(expected), got[0]["messages"]);
    // Absence is checked once reply-queue is empty (everything handled), not after a sleep.
    let sqs = aws_sdk_sqs::Client::new(&local_sdk().await);
    let started = std::time::Instant::now();
    while queue_depth_at(&sqs, &setting("REPLY_QUEUE_URL")).await > 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "reply-queue never drained");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(sim.deliveries(&user).await.unwrap().len(), 1, "and only one");

    // Tags: friends tagged through webhooks and shop events, found with oa segment as the rules say.
    let (fan, buyer, cart) = (sample::user_id(), sample::user_id(), sample::user_id());
    let follow = |u: &str| serde_json::json!({ "type": "follow", "userId": u });
    let answer =
        |u: &str, a: &str| serde_json::json!({ "type": "postback", "userId": u, "data": format!("q=dessert&a={a}") });
    let events = vec![
        follow(&fan),
        answer(&fan, "yes"),
        follow(&buyer),
        serde_json::json!({ "userId": buyer, "text": "Do you still have pudding?" }),
        follow(&cart),
        answer(&cart, "yes"),
    ];
    assert_eq!(sim.send(None, events).await.unwrap().status, 200);
    let (ok, out) = oa(&["events", "send", "--type", "add_to_cart", "--user", &cart, "--property", "sku=tart-1"]);
    assert!(ok, "{out}");
    let (ok, out) =
        oa(&["events", "send", "--type", "purchase", "--user", &buyer, "--property", "category=Fruit Tarts"]);
    assert!(ok, "{out}");
    let started = std::time::Instant::now();
    while !oa(&["tags", "of", &buyer]).1.contains("bought:fruit_tarts")
        || !oa(&["tags", "of", &cart]).1.contains("cart:open")
        || !oa(&["tags", "of", &fan]).1.contains("dessert")
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(15), "the tagger did not tag in 15 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, of_buyer) = oa(&["tags", "of", &buyer]);
    assert!(of_buyer.contains("keyword:talks-dessert") && of_buyer.contains("shop:purchase"), "{of_buyer}");
    let members = |expr: &str| {
        let (ok, out) = oa(&["segment", "sample", expr, "--limit", "1000000"]);
        assert!(ok, "{out}");
        out
    };
    let ours = |out: &str| [&fan, &buyer, &cart].map(|u| out.lines().any(|l| l == u.as_str()));
    assert_eq!(ours(&members("dessert AND NOT buyer")), [true, false, true]);
    assert_eq!(ours(&members("tagged(cart:open, within 3d) AND NOT buyer")), [false, false, true]);
    assert_eq!(ours(&members("bought:fruit_tarts OR friend:returning")), [false, true, false]);
    let (ok, count) = oa(&["segment", "count", "dessert"]);
    assert!(ok && count.lines().next().unwrap().parse::<u64>().unwrap() >= 3, "{count}");
    let (_, list) = oa(&["tags", "list"]);
    assert!(list.lines().any(|l| l.starts_with("dessert ")), "{list}");

    // A friend who blocks the account leaves every segment.
    assert_eq!(
        sim.send(None, vec![serde_json::json!({ "type": "unfollow", "userId": fan })]).await.unwrap().status,
        200
    );
    let started = std::time::Instant::now();
    while ours(&members("dessert"))[0] {
        assert!(started.elapsed() < std::time::Duration::from_secs(15), "the block did not reach the index in 15 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let (ok, out) = oa(&["segment", "count", "dessert AND (vip"]);
    assert!(!ok && out.contains("position 16") && out.contains("                ^ expected ')'"), "{out}");
    // 5,000 parentheses deep overflowed the stack and aborted the process; now it is refused.
    let deep = format!("{}dessert{}", "(".repeat(5_000), ")".repeat(5_000));
    let (ok, out) = oa(&["segment", "count", &deep]);
    let shown: String = out.chars().filter(|c| !matches!(c, '(' | ')')).take(400).collect();
    assert!(!ok && out.contains("position 64") && out.contains("nested too deep"), "{shown}");
}

/// `oa` without `--local` goes to AWS: it reads nothing from local.env or .local/run.env, and says
/// so before it changes anything. (Here AWS is unreachable and there are no credentials, so it
/// fails; what matters is that the local table the name points at is untouched.)
#[tokio::test]
async fn oa_aims_at_aws_unless_told_local_and_says_which_before_changing_anything() {
    let stack = TestStack::new().await;
    let table = stack.table("RulesTable").to_string();
    let run = |local: bool| {
        let mut command = Command::new(oa_binary());
        command
            .current_dir(repo_root())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .env("AWS_REGION", "ap-northeast-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("RULES_TABLE", &table);
        if local {
            command.arg("--local");
        }
        let out = command.args(["rules", "apply", "examples/bakery-rules.yaml"]).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let rules = shared::adapters::dynamodb::rules::RulesStore::new(stack.dynamodb.clone(), &table);

    let (ok, out) = run(false);
    assert!(out.contains("target: AWS, region ap-northeast-1") && out.contains(&table), "{out}");
    assert!(!ok, "no AWS here, no credentials: it must fail, not fall back to the emulator: {out}");
    assert_eq!(rules.current_version().await.unwrap(), None, "the local table was not touched");

    let (ok, out) = run(true);
    assert!(ok && out.contains("target: the LOCAL stack") && out.contains("published version 1"), "{out}");
    assert_eq!(rules.current_version().await.unwrap(), Some(1));
}

#[tokio::test]
async fn a_signed_body_cut_inside_a_utf8_character_gets_a_400_from_the_running_stack() {
    require_functions();
    let body =
        sample::body("Ulocal", &[sample::text(&sample::event_id(), &sample::user_id(), "café", sample::now_ms())]);
    let cut = body[..body.iter().position(|&b| b == 0xC3).unwrap() + 1].to_vec();
    let (status, answer) = oa::post_signed(
        &reqwest::Client::new(),
        &setting("WEBHOOK_URL"),
        "x-line-signature",
        &setting("LINE_CHANNEL_SECRET"),
        cut,
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "a redelivery could never clear a 500 here: {answer}");
    assert!(answer.contains("not JSON"), "{answer}");
}

/// The campaign path on the running stack: the bakery rules and examples/account.yaml (2 pushes a
/// month) applied with the CLI, friends tagged through webhooks and shop events, then the example
/// cart campaign created, previewed and started with the CLI; the campaign and multicast functions
/// run under `cargo lambda watch`, fed by the poller. What the preview said is what line-sim
/// delivered and billed, once per friend; the third campaign of the month stops at the cap.
/// `users` follow the account (through line-sim's signed webhook) and each adds a tart to their
/// cart (a signed shop event through `oa`).
async fn follow_with_open_carts(sim: &line_sim::client::SimClient, users: &[String]) {
    let follows = users.iter().map(|u| serde_json::json!({ "type": "follow", "userId": u })).collect();
    assert_eq!(sim.send(None, follows).await.unwrap().status, 200);
    for u in users {
        let (ok, out) = oa(&["events", "send", "--type", "add_to_cart", "--user", u, "--property", "sku=tart-1"]);
        assert!(ok, "{out}");
    }
}

#[tokio::test]
async fn a_cart_campaign_previewed_at_n_messages_reaches_exactly_n_friends_once_and_the_cap_stops_the_third() {
    require_functions();
    let _turn = CART_SEGMENT.lock().await;
    require_service("line-sim", &setting("LINE_API_BASE"));
    let (ok, out) = oa(&["rules", "apply", "examples/bakery-rules.yaml"]);
    assert!(ok, "{out}");
    let (ok, out) = oa(&["settings", "apply", "examples/account.yaml"]);
    assert!(ok && out.contains("2 per month"), "{out}");

    let sim = line_sim::client::SimClient::new(&setting("LINE_API_BASE"));
    let carts: Vec<String> = (0..5).map(|_| sample::user_id()).collect();
    let (buyer, opted_out) = (sample::user_id(), sample::user_id());
    let mut everyone = carts.clone();
    everyone.extend([buyer.clone(), opted_out.clone()]);
    follow_with_open_carts(&sim, &everyone).await;
    let (ok, out) = oa(&["events", "send", "--type", "purchase", "--user", &buyer, "--property", "category=tarts"]);
    assert!(ok, "{out}");
    let (ok, out) = oa(&["suppress", "add", &opted_out]);
    assert!(ok && out.contains("opted out"), "{out}");
    let started = std::time::Instant::now();
    while !carts.iter().all(|u| oa(&["tags", "of", u]).1.contains("cart:open"))
        || !oa(&["tags", "of", &buyer]).1.contains("buyer")
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the tagger did not tag in 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let example = std::fs::read_to_string(repo_root().join("examples/cart-abandoners.campaign.yaml")).unwrap();
    let dir = std::env::temp_dir().join(format!("campaigns-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let billed = || async { sim.counters().await.unwrap()["counters"]["messagesBilled"].as_u64().unwrap_or(0) };
    let mut pushes: std::collections::HashMap<String, usize> = Default::default();
    for round in 1..=3 {
        let id = format!("cart-{run}-{round}");
        let text = format!("Your cart misses you ({id})");
        let file = dir.join(format!("{id}.campaign.yaml"));
        let body = example
            .replace("id: cart-2026-11", &format!("id: {id}"))
            .replace("Your cart misses you: 10% off today with code CART10", &text);
        std::fs::write(&file, body).unwrap();
        let (ok, out) = oa(&["campaign", "create", file.to_str().unwrap()]);
        assert!(ok && out.contains("draft"), "{out}");
        let (ok, out) = oa(&["campaign", "preview", &id, "--json"]);
        assert!(ok, "{out}");
        let preview: Value = serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap();
        let n = preview["billable"].as_u64().unwrap();
        let billed_before = billed().await;
        let (ok, out) = oa(&["campaign", "start", &id]);
        assert!(ok, "{out}");
        let (ok, out) = oa(&["campaign", "status", &id, "--wait", "--json"]);
        assert!(ok, "{out}");
        let status: Value = serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap();
        assert_eq!(status["state"], "done", "{status}");
        assert_eq!(status["sent"].as_u64(), Some(n), "preview {preview}\nstatus {status}");
        assert_eq!(billed().await - billed_before, n, "billed what the preview said");
        // Friends pushed twice this month before this campaign are at the cap of account.yaml.
        let capped: Vec<String> = pushes.iter().filter(|(_, k)| **k >= 2).map(|(u, _)| u.clone()).collect();
        // Who got it: line-sim's deliveries with this campaign's text, once each.
        let mut reached = 0;
        for u in &everyone {
            let got = sim.deliveries(u).await.unwrap();
            let k = got.iter().filter(|d| d["messages"][0]["text"] == text.as_str()).count();
            assert!(k <= 1, "{u} got campaign {id} {k} times");
            reached += k;
            *pushes.entry(u.clone()).or_default() += k;
        }
        assert!(reached as u64 <= n);
        let (_, shown) = oa(&["campaign", "show", &id]);
        assert!(shown.contains(&format!("sent {n}")) && !shown.contains("PROBLEM"), "{shown}");
        if round == 3 {
            // (Each campaign draws its own 10% holdout, so a friend may have missed one of the two.)
            assert!(!capped.is_empty(), "cart friends got the first two: {pushes:?}");
            let skipped = status["planSkipped"]["cap"].as_u64().unwrap() + status["skippedBy"]["cap"].as_u64().unwrap();
            assert!(skipped >= capped.len() as u64, "{status}");
            for u in &capped {
                assert_eq!(pushes[u], 2, "{u} was at the cap and got the third campaign");
            }
        }
    }
    assert_eq!(pushes[&buyer] + pushes[&opted_out], 0, "buyers and opted-out friends get nothing");
    assert!(pushes.values().all(|k| *k <= 2), "never more than the cap: {pushes:?}");
    // The list reads an index, which DynamoDB updates a moment after the campaign.
    let started = std::time::Instant::now();
    loop {
        let (ok, list) = oa(&["campaign", "list"]);
        if ok && list.contains(&format!("cart-{run}-1")) {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{list}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_campaign_created_again_skips_friends_an_earlier_run_reached_unless_created_with_resend() {
    require_functions();
    let _turn = CART_SEGMENT.lock().await;
    require_service("line-sim", &setting("LINE_API_BASE"));
    let (ok, out) = oa(&["rules", "apply", "examples/bakery-rules.yaml"]);
    assert!(ok, "{out}");
    let (ok, out) = oa(&["settings", "apply", "examples/account.yaml"]);
    assert!(ok, "{out}");
    let sim = line_sim::client::SimClient::new(&setting("LINE_API_BASE"));
    let carts: Vec<String> = (0..6).map(|_| sample::user_id()).collect();
    follow_with_open_carts(&sim, &carts).await;
    let started = std::time::Instant::now();
    while !carts.iter().all(|u| oa(&["tags", "of", u]).1.contains("cart:open")) {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the tagger did not tag in 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let id = format!("again-{}", ulid::Ulid::new().to_string().to_lowercase());
    let text = format!("Your cart misses you ({id})");
    let example = std::fs::read_to_string(repo_root().join("examples/cart-abandoners.campaign.yaml")).unwrap();
    let file = std::env::temp_dir().join(format!("{id}.campaign.yaml"));
    let body = example
        .replace("id: cart-2026-11", &format!("id: {id}"))
        .replace("Your cart misses you: 10% off today with code CART10", &text);
    std::fs::write(&file, body).unwrap();
    let json = |out: &str| -> Value { serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap() };
    // One run: create, preview, start, wait. (preview, status)
    let run = |extra: &'static [&'static str]| {
        let file = file.to_str().unwrap().to_string();
        let id = id.clone();
        async move {
            let mut create = vec!["campaign", "create", file.as_str()];
            create.extend_from_slice(extra);
            let (ok, out) = oa(&create);
            assert!(ok && out.contains("draft"), "{out}");
            let (ok, out) = oa(&["campaign", "preview", &id, "--json"]);
            assert!(ok, "{out}");
            let preview = json(&out);
            let (ok, out) = oa(&["campaign", "start", &id]);
            assert!(ok, "{out}");
            let (ok, out) = oa(&["campaign", "status", &id, "--wait", "--json"]);
            assert!(ok, "{out}");
            let status = json(&out);
            assert_eq!(status["state"], "done", "{status}");
            assert_eq!(status["sent"], preview["billable"], "preview {preview}\nstatus {status}");
            (preview, status)
        }
    };
    let got = |u: String| {
        let (sim, text) = (&sim, &text);
        async move { sim.deliveries(&u).await.unwrap().iter().filter(|d| d["messages"][0]["text"] == text.as_str()).count() }
    };
    let (_, first) = run(&[]).await;
    let mut reached = vec![];
    for u in &carts {
        let k = got(u.clone()).await;
        assert!(k <= 1, "{u} got the first run {k} times");
        if k == 1 {
            reached.push(u.clone());
        }
    }
    assert!(!reached.is_empty(), "{first}");
    // Created again (a fixed typo, say): friends the first run reached are skipped as alreadySent.
    let (preview, second) = run(&[]).await;
    let already = preview["skipped"]["alreadySent"].as_u64().unwrap();
    assert!(already >= reached.len() as u64, "{preview}");
    let counted =
        second["planSkipped"]["alreadySent"].as_u64().unwrap() + second["skippedBy"]["alreadySent"].as_u64().unwrap();
    assert_eq!(counted, already, "{second}");
    for u in &reached {
        assert_eq!(got(u.clone()).await, 1, "{u} was pushed the campaign again");
    }
    // Created with --resend: they get it again.
    let (preview, _) = run(&["--resend"]).await;
    assert_eq!(preview["skipped"]["alreadySent"], 0, "{preview}");
    for u in &reached {
        assert_eq!(got(u.clone()).await, 2, "--resend reaches {u} again");
    }
}

/// The sweep through the running stack: the campaign function, invoked as its EventBridge
/// schedule would (the poller does it every 30 s here), answers what it found and writes its
/// counts as CloudWatch embedded metrics on its log.
#[tokio::test]
async fn the_sweep_runs_on_the_campaign_function_and_writes_its_metrics_for_cloudwatch() {
    use oa::poller::Invoker;
    require_functions();
    let invoker = oa::poller::HttpInvoker::new(&setting("LAMBDA_INVOKE_URL"));
    let log = repo_root().join(".local/logs/functions.log");
    let before = std::fs::metadata(&log).map_or(0, |m| m.len());
    let event = oa::poller::scheduled_event("ap-northeast-1", "2026-12-07T00:00:00Z");
    let answer = invoker.invoke("campaign", event).await.unwrap();
    let paused = answer["paused"].as_object().expect("paused by reason");
    let reasons: Vec<&str> = paused.keys().map(String::as_str).collect();
    assert_eq!(reasons, ["budget", "line", "person", "quietHours", "quota"], "{answer}");
    assert!(answer["stalled"].is_array() && answer["finished"].is_array() && answer["requeued"].is_u64(), "{answer}");
    // The metric lines, as CloudWatch Logs reads them (the log is written as the function runs).
    let started = std::time::Instant::now();
    let metrics = loop {
        let text = std::fs::read(&log).unwrap();
        let new = String::from_utf8_lossy(&text[before as usize..]).into_owned();
        let lines: Vec<Value> = new
            .lines()
            .filter_map(|l| l.find('{').map(|i| &l[i..]))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("_aws").is_some())
            .collect();
        if lines.len() >= 6 || started.elapsed() > std::time::Duration::from_secs(5) {
            break lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let totals = metrics.iter().find(|m| m.get("CampaignsStalled").is_some()).expect("the totals line");
    assert_eq!(totals["_aws"]["CloudWatchMetrics"][0]["Namespace"], "oa-local");
    assert_eq!(totals["CampaignsStalled"], answer["stalled"].as_array().unwrap().len());
    assert_eq!(totals["CampaignsNeedingAttention"], answer["needingAttention"]);
    let by_reason = metrics.iter().filter(|m| m["Reason"].is_string()).count();
    assert!(by_reason >= 5, "one line per reason: {metrics:?}");
}

/// `oa` is a command: `make local-up` links it into `.local/bin`, and `--local` finds the
/// repository's settings from any directory inside it.
#[test]
fn oa_from_local_bin_finds_the_local_stack_from_a_directory_inside_the_repository() {
    require_functions();
    let oa = repo_root().join(".local/bin/oa");
    assert!(oa.exists(), "make local-up links {}", oa.display());
    let out =
        Command::new(&oa).current_dir(repo_root().join("docs")).args(["--local", "campaign", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let outside =
        Command::new(&oa).current_dir(std::env::temp_dir()).args(["--local", "campaign", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&outside.stderr);
    assert!(!outside.status.success() && text.contains("run oa inside the repository"), "{text}");
}

#[test]
fn oa_doctor_passes_on_the_running_local_stack_and_skips_what_only_aws_has() {
    require_functions();
    let (ok, out) = oa(&["doctor"]);
    assert!(ok, "{out}");
    for line in [
        "ok    secret        the environment has the channel secret, access token and shop secret",
        "ok    webhook",
        "ok    tables        5 tables active",
        "ok    queues",
        "ok    dead-letters  every dead-letter queue is empty",
        "ok    line-token    LINE takes the access token: bot line-sim",
        "ok    line-webhook",
        "ok    line-verify   LINE's test request reached",
        "ok    quota",
        "skip  mappings      no local counterpart",
        "skip  alarms        no local counterpart",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
}

#[test]
fn oa_doctor_names_line_sim_when_nothing_answers_where_it_should_be() {
    require_functions();
    // line-sim's address with nothing listening on it: what doctor sees when line-sim is stopped.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let out = Command::new(oa_binary())
        .current_dir(repo_root().join("docs"))
        .env("LINE_API_BASE", &base)
        .args(["--local", "doctor"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "FAIL  line-token    cannot reach LINE at {base} (locally that is line-sim: `make local-up` starts it)"
        )),
        "{text}"
    );
    assert!(text.contains("skip  line-webhook  needs a working access token"), "{text}");
    assert!(text.contains("ok    tables"), "the rest is still checked: {text}");
}
