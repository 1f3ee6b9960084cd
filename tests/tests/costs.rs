//! `oa costs` on the stack `make local-up` runs: a known workload (N webhooks, M shop events, one
//! cart campaign) costs what the checked-in price table and the units DynamoDB Local reported say,
//! computed here by hand from the functions' own log lines and the campaign's usage items.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use integration_tests::*;
use serde_json::Value;

/// Runs `oa --local ARGS`; its stdout, or a panic with both streams.
fn oa(args: &[&str]) -> String {
    let out = oa_local(args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "oa {args:?}:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

/// One function's usage: invocations, ms, read and write units, SQS and FIFO requests, log bytes.
#[derive(Debug, Default, Clone, Copy)]
struct Used([f64; 7]);

/// Lambda, DynamoDB, SQS and logs cost of `u` for `function` on arm64, by hand.
fn by_hand(p: &BTreeMap<String, f64>, function: &str, u: Used) -> [f64; 4] {
    let [inv, ms, ru, wu, sqs, fifo, bytes] = u.0;
    let lambda = ms / 1000.0 * template_memory(function) / 1024.0 * p["lambdaGbSecondArm64"] + inv * p["lambdaRequest"];
    let dynamodb = ru * p["dynamodbReadUnit"] + wu * p["dynamodbWriteUnit"];
    let sqs = sqs * p["sqsRequest"] + fifo * p["sqsFifoRequest"];
    let logs = bytes / (1024.0 * 1024.0 * 1024.0) * p["logsIngestedGb"];
    [lambda, dynamodb, sqs, logs]
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-12 + 1e-9 * b.abs(), "{what}: {a} by oa, {b} by hand");
}

#[tokio::test]
async fn a_known_workload_costs_what_the_price_table_and_the_units_dynamodb_reported_say() {
    require_functions();
    require_service("line-sim", &setting("LINE_API_BASE"));
    oa(&["rules", "apply", "examples/bakery-rules.yaml"]);
    oa(&["settings", "apply", "examples/account.yaml"]);
    let t0 = jiff::Timestamp::now();

    // N webhooks (a new friend each), then M of them add a tart to their cart (signed shop events).
    const N: usize = 12;
    const M: usize = 8;
    let sim = line_sim::client::SimClient::new(&setting("LINE_API_BASE"));
    let users: Vec<String> = (0..N).map(|_| sample::user_id()).collect();
    for u in &users {
        let sent = sim.send(None, vec![serde_json::json!({ "type": "follow", "userId": u })]).await.unwrap();
        assert_eq!(sent.status, 200);
    }
    for u in &users[..M] {
        oa(&["events", "send", "--type", "add_to_cart", "--user", u, "--property", "sku=tart-1"]);
    }
    let started = Instant::now();
    while !users[..M].iter().all(|u| oa(&["tags", "of", u]).contains("cart:open")) {
        assert!(started.elapsed() < Duration::from_secs(20), "the tagger did not tag in 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One cart campaign, sent to the end.
    let id = format!("costs-{}", ulid::Ulid::new().to_string().to_lowercase());
    let example = std::fs::read_to_string(repo_root().join("examples/cart-abandoners.campaign.yaml")).unwrap();
    let file = std::env::temp_dir().join(format!("{id}.campaign.yaml"));
    std::fs::write(&file, example.replace("id: cart-2026-11", &format!("id: {id}"))).unwrap();
    oa(&["campaign", "create", file.to_str().unwrap()]);
    oa(&["campaign", "start", &id]);
    let out = oa(&["campaign", "status", &id, "--wait", "--json"]);
    let status: Value = serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap();
    assert_eq!(status["state"], "done", "{status}");
    let sent = status["sent"].as_u64().unwrap();
    assert!(sent >= 1, "the new cart friends are under the cap: {status}");
    let sdk = local_sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    for queue in ["REPLY_QUEUE_URL", "TAG_QUEUE_URL"] {
        let started = Instant::now();
        while queue_depth_at(&sqs, &setting(queue)).await > 0 {
            assert!(started.elapsed() < Duration::from_secs(20), "{queue} did not drain");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The metrics line is written as each invocation ends; let the log catch up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t1 = jiff::Timestamp::now();

    let report: Value = serde_json::from_str(&oa(&[
        "costs",
        "--since",
        &t0.to_string(),
        "--until",
        &t1.to_string(),
        "--format",
        "json",
    ]))
    .unwrap();

    // By hand: the functions' metrics lines in the period, summed per function.
    let log = std::fs::read_to_string(repo_root().join(".local/logs/functions.log")).unwrap();
    let mut used: BTreeMap<String, Used> = BTreeMap::new();
    let mut billed: BTreeMap<String, f64> = BTreeMap::new();
    let (from, to) = (t0.as_millisecond(), t1.as_millisecond());
    // The sender's month-to-date values: (when, messages, spend).
    let mut month: Vec<(i64, f64, f64)> = vec![];
    for line in log.lines().filter(|l| l.starts_with('{') && l.contains("\"_aws\"")) {
        let doc: Value = serde_json::from_str(line).unwrap();
        let at = doc["_aws"]["Timestamp"].as_i64().unwrap();
        if let (Some(m), Some(s)) = (doc["LineMonthToDateMessages"].get(0), doc["LineMonthToDateSpend"].get(0)) {
            month.push((at, m.as_f64().unwrap(), s.as_f64().unwrap()));
        }
        let Some(function) = doc["function"].as_str().filter(|_| at >= from && at <= to) else { continue };
        let number = |name: &str| match &doc[name] {
            Value::Array(values) => values.iter().map(|v| v.as_f64().unwrap()).sum(),
            v => v.as_f64().unwrap_or(0.0),
        };
        let u = used.entry(function.to_string()).or_default();
        let names =
            ["Invocations", "DurationMs", "ReadUnits", "WriteUnits", "SqsRequests", "SqsFifoRequests", "LogBytes"];
        for (i, name) in names.iter().enumerate() {
            u.0[i] += number(name);
        }
        *billed.entry(function.to_string()).or_default() += number("LineMessagesBilled");
    }
    let p = price_table("ap-northeast-1");
    let functions = report["functions"].as_array().unwrap();
    let listed: Vec<&str> = functions.iter().map(|f| f["function"].as_str().unwrap()).collect();
    assert_eq!(listed, ["webhook", "keyword-reply", "tagger", "campaign", "multicast"]);
    for f in functions {
        let name = f["function"].as_str().unwrap();
        let u = used.get(name).copied().unwrap_or_default();
        let [lambda, dynamodb, sqs, logs] = by_hand(&p, name, u);
        let cost = &f["cost"];
        close(f["invocations"].as_f64().unwrap(), u.0[0], &format!("{name} invocations"));
        close(
            f["gbSeconds"].as_f64().unwrap(),
            u.0[1] / 1000.0 * template_memory(name) / 1024.0,
            &format!("{name} GB-s"),
        );
        close(cost["lambda"].as_f64().unwrap(), lambda, &format!("{name} Lambda"));
        close(cost["dynamodb"].as_f64().unwrap(), dynamodb, &format!("{name} DynamoDB"));
        close(cost["sqs"].as_f64().unwrap(), sqs, &format!("{name} SQS"));
        close(cost["logs"].as_f64().unwrap(), logs, &format!("{name} logs"));
        close(cost["total"].as_f64().unwrap(), lambda + dynamodb + sqs + logs, &format!("{name} total"));
    }
    // The workload itself: N + M requests to the webhook, and the functions measured real work.
    let webhook = used["webhook"].0;
    assert_eq!(webhook[0] as usize, N + M, "one webhook invocation per request");
    assert!(webhook[3] > 0.0 && webhook[5] > 0.0, "the webhook wrote and queued: {webhook:?}");
    for f in ["tagger", "campaign", "multicast", "keyword-reply"] {
        assert!(used.get(f).is_some_and(|u| u.0[0] >= 1.0), "{f} ran: {used:?}");
    }
    assert_eq!(report["durationSource"], "measured", "no REPORT lines locally");
    assert_eq!(billed.get("multicast").copied(), Some(sent as f64), "the sender's billed messages: the campaign's");
    // After it sent: LINE's count for the month (line-sim's), and the bill on tw-2023-medium, whose
    // fee covers 3,000 and which sends none beyond: NT$800. (A sender reads them at most once a
    // minute: without a reading in the period there must be one in the minute before it.)
    match month.iter().find(|(at, _, _)| *at >= from && *at <= to) {
        Some((_, messages, spend)) => {
            assert!(*messages >= sent as f64 && *messages <= report["month"]["used"].as_f64().unwrap(), "{month:?}");
            assert_eq!(*spend, 800.0);
        }
        None => assert!(month.iter().any(|(at, _, _)| *at >= from - 60_000 && *at < from), "no month-to-date value"),
    }

    // The campaign: its LINE bill on tw-2023-medium (NT$800 for 3,000, none beyond) and the AWS
    // cost of its usage items, converted once at 32.5.
    let row = report["campaigns"].as_array().unwrap().iter().find(|c| c["id"] == id.as_str()).unwrap();
    assert_eq!((row["recipients"].as_u64(), row["lineMessages"].as_u64()), (Some(sent), Some(sent)));
    let used_before = row["usedBefore"].as_u64().unwrap();
    let inside = sent.min(3_000u64.saturating_sub(used_before));
    close(row["lineCost"].as_f64().unwrap(), inside as f64 * 800.0 / 3_000.0, "allocated LINE cost");
    close(row["lineMarginalCost"].as_f64().unwrap(), 0.0, "marginal LINE cost inside the plan");
    assert_eq!(row["currency"], "TWD");
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let items = dynamodb
        .query()
        .table_name(setting("CAMPAIGNS_TABLE"))
        .key_condition_expression("pk = :pk AND begins_with(sk, :usage)")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("c#{id}")))
        .expression_attribute_values(":usage", aws_sdk_dynamodb::types::AttributeValue::S("usage#".into()))
        .send()
        .await
        .unwrap();
    let mut aws_usd = 0.0;
    let mut charged = vec![];
    for item in items.items() {
        // usage#<run>#<function>
        let function = item["sk"].as_s().unwrap().rsplit('#').next().unwrap().to_string();
        let n = |k: &str| item.get(k).map_or(0.0, |v| v.as_n().unwrap().parse::<f64>().unwrap());
        let u = Used([
            n("invocations"),
            n("billedMs"),
            n("readUnits"),
            n("writeUnits"),
            n("sqsRequests"),
            n("sqsFifoRequests"),
            n("logBytes"),
        ]);
        assert!(u.0[0] > 0.0 && u.0[1] > 0.0, "{function}: {u:?}");
        aws_usd += by_hand(&p, &function, u).iter().sum::<f64>();
        charged.push(function);
    }
    charged.sort();
    assert_eq!(charged, ["campaign", "multicast"], "the planner and the sender charged the campaign");
    close(row["awsCostUsd"].as_f64().unwrap(), aws_usd, "the campaign's AWS cost, USD");
    close(row["awsCost"].as_f64().unwrap(), aws_usd * 32.5, "converted once");
    let total = inside as f64 * 800.0 / 3_000.0 + aws_usd * 32.5;
    close(row["total"].as_f64().unwrap(), total, "total");
    close(row["costPerRecipient"].as_f64().unwrap(), total / sent as f64, "per recipient");

    // The same, as a person reads it.
    let table = oa(&["costs", "--since", &t0.to_string(), "--until", &t1.to_string(), "--by", "campaign"]);
    assert!(table.contains(&id) && table.contains("TWD"), "{table}");
    assert!(report["fixedMonthly"]["alarms"].as_u64().unwrap() >= 10, "{}", report["fixedMonthly"]);
}
