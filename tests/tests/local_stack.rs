//! End to end against the stack `make local-up` runs: the functions under `cargo lambda watch` at
//! WEBHOOK_URL / EVENTS_URL, the event-source poller, line-sim at LINE_API_BASE, the `oa` CLI, and
//! local.env agreeing with the template.

use std::process::Command;

use integration_tests::*;
use serde_json::Value;
use shared::envelope::QueuedEvent;

fn require_functions() {
    require_service("The functions (cargo lambda watch)", &setting("WEBHOOK_URL"));
}

/// The running stack's own queue, read (and emptied) like a consumer would.
async fn drain(url: &str) -> Vec<QueuedEvent> {
    let sqs = aws_sdk_sqs::Client::new(&local_sdk().await);
    drain_queue(&sqs, url).await.iter().map(|b| serde_json::from_str(b).expect("a QueuedEvent")).collect()
}

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
async fn a_signed_webhook_to_the_running_function_lands_once_on_each_queue() {
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

    let ours = |events: Vec<QueuedEvent>| events.into_iter().filter(|e| e.dedupe_key() == id).count();
    assert_eq!(ours(drain(&setting("TAG_QUEUE_URL")).await), 1);
    // reply-queue is consumed by the poller and keyword-reply: see the bakery test below.

    // The follow was recorded in the stack's users table.
    let dynamodb = aws_sdk_dynamodb::Client::new(&local_sdk().await);
    let friend = dynamodb
        .get_item()
        .table_name(setting("USERS_TABLE"))
        .key("userId", aws_sdk_dynamodb::types::AttributeValue::S(user))
        .send()
        .await
        .unwrap()
        .item
        .expect("friend recorded");
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

fn oa_binary() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("debug/oa");
    assert!(path.exists(), "{} is missing: build it with `cargo build -p oa` (make test does)", path.display());
    path
}

#[test]
fn the_oa_cli_signs_and_posts_test_events() {
    require_functions();
    let user = sample::user_id();
    let id = sample::event_id();
    let send = |extra: &[&str]| {
        let out = Command::new(oa_binary())
            .current_dir(repo_root())
            .args(["webhook", "send", "--text", "hi", "--user", &user, "--event-id", &id])
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
    config.channel_secret = local_secret("LINE_CHANNEL_SECRET");
    config.shop_events_secret = local_secret("SHOP_EVENTS_SECRET");
    let deps = webhook::Deps::new(config, &stack.sdk);
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

fn oa(args: &[&str]) -> (bool, String) {
    let out = Command::new(oa_binary()).current_dir(repo_root()).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Rules applied with the CLI (a bad file refused with its line, changing nothing), then a signed
/// webhook from LINE (line-sim) gets exactly one reply with the configured messages within a second.
/// One test, because both parts change the stack's one set of live rules.
#[tokio::test]
async fn bakery_rules_applied_with_the_cli_answer_a_keyword_within_a_second() {
    require_functions();
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
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(sim.deliveries(&user).await.unwrap().len(), 1, "and only one");
}
