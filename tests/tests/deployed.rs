//! The paths that only a deployed stack takes, against moto (which serves CloudFormation beside
//! SQS and Secrets Manager): `oa --stack NAME` reads the stack's Outputs, so no table or queue name
//! is typed by hand.

use std::process::Command;

use integration_tests::*;
use shared::adapters::dynamodb::rules::RulesStore;

/// `oa ARGS` as against AWS (no --local), with CloudFormation served by moto.
fn oa(args: &[&str]) -> (bool, String) {
    let out = Command::new(oa_binary())
        .current_dir(std::env::temp_dir())
        .env("AWS_ENDPOINT_URL_CLOUDFORMATION", setting("AWS_ENDPOINT_URL_SQS"))
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// A CloudFormation stack in moto whose Outputs name `tables` of `stack`, as the template's do; its
/// name.
async fn stack_naming(stack: &TestStack, tables: &[&str]) -> String {
    let name = format!("oa-{}", ulid::Ulid::new().to_string().to_lowercase());
    let outputs: serde_json::Map<String, serde_json::Value> =
        tables.iter().map(|t| (t.to_string(), serde_json::json!({ "Value": stack.table(t) }))).collect();
    let template = serde_json::json!({
        "Resources": { "Probe": { "Type": "AWS::SQS::Queue", "Properties": { "QueueName": format!("{name}-probe") } } },
        "Outputs": outputs,
    });
    let cfn = aws_sdk_cloudformation::Client::from_conf(
        aws_sdk_cloudformation::config::Builder::from(&stack.sdk).endpoint_url(setting("AWS_ENDPOINT_URL_SQS")).build(),
    );
    cfn.create_stack().stack_name(&name).template_body(template.to_string()).send().await.unwrap();
    name
}

#[tokio::test]
async fn oa_with_a_stack_name_finds_its_tables_in_the_stacks_outputs() {
    let stack = TestStack::new().await;
    let name = stack_naming(&stack, &["RulesTable", "TagsTable", "UsersTable"]).await;

    let rules = repo_root().join("examples/bakery-rules.yaml");
    let (ok, out) = oa(&["--stack", &name, "rules", "apply", rules.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains(stack.table("RulesTable")), "the target is named: {out}");
    let store = RulesStore::new(stack.dynamodb.clone(), stack.table("RulesTable"));
    assert_eq!(store.current_version().await.unwrap(), Some(1), "the rules went to the stack's rules table");

    let (ok, out) = oa(&["--stack", "no-such-stack", "rules", "list"]);
    assert!(!ok && out.contains("--stack no-such-stack"), "{out}");
}

/// `oa ARGS` as against AWS, with `env` set, `stdin` piped in, and every AWS service moto serves
/// pointed at it; run off the async runtime so an in-process line-sim keeps answering.
async fn oa_with(args: &[&str], env: &[(&str, String)], stdin: &str) -> (bool, String) {
    let moto = setting("AWS_ENDPOINT_URL_SQS");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(oa_binary())
            .current_dir(std::env::temp_dir())
            .env("AWS_ENDPOINT_URL_CLOUDFORMATION", &moto)
            .env("AWS_ENDPOINT_URL_LAMBDA", &moto)
            .env("AWS_ENDPOINT_URL_CLOUDWATCH", &moto)
            .env("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", &moto)
            // What a deployed stack's secret holds is read from Secrets Manager, never local.env.
            .env_remove("LINE_CHANNEL_SECRET")
            .env_remove("LINE_CHANNEL_ACCESS_TOKEN")
            .env_remove("SHOP_EVENTS_SECRET")
            .envs(env)
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    })
    .await
    .unwrap()
}

/// A line-sim in this process, signing with local.env's channel secret (so the local webhook takes
/// its test request) and taking `token`.
async fn sim(token: &str) -> line_sim::LineSim {
    let mut config = line_sim::SimConfig::new(setting("LINE_CHANNEL_SECRET"), token);
    config.webhook_url = Some(setting("WEBHOOK_URL"));
    line_sim::LineSim::start(config, ([127, 0, 0, 1], 0).into()).await.unwrap()
}

async fn secret_keys(sdk: &aws_config::SdkConfig, id: &str) -> serde_json::Value {
    let out = aws_sdk_secretsmanager::Client::new(sdk).get_secret_value().secret_id(id).send().await.unwrap();
    serde_json::from_str(out.secret_string().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oa_secrets_put_writes_the_three_keys_checks_the_token_with_line_and_keeps_the_shop_secret() {
    let stack = TestStack::new().await;
    let line = sim("the-long-lived-token").await;
    let name = format!("{}/line", stack.stack.name);
    let env = [("LINE_API_BASE", line.base_url())];
    let channel_secret = "0123456789abcdef0123456789abcdef";

    // Refused before anything is written: a channel secret that is not one, a token LINE refuses.
    let (ok, out) = oa_with(&["secrets", "put", "--name", &name], &env, "not-a-secret\nthe-long-lived-token\n").await;
    assert!(!ok && out.contains("32 hexadecimal characters"), "{out}");
    let (ok, out) = oa_with(&["secrets", "put", "--name", &name], &env, &format!("{channel_secret}\nrevoked\n")).await;
    assert!(!ok && out.contains("LINE refused the channel access token"), "{out}");
    let (ok, out) = oa_with(&["secrets", "arn", "--name", &name], &env, "").await;
    assert!(!ok && out.contains(&format!("no secret {name}")), "nothing was created: {out}");

    // Created: the ARN alone on the last line of stdout, the three keys the functions read.
    let (ok, out) =
        oa_with(&["secrets", "put", "--name", &name], &env, &format!("{channel_secret}\nthe-long-lived-token\n")).await;
    assert!(ok, "{out}");
    assert!(out.contains("LINE takes the token: bot line-sim"), "{out}");
    let (ok, arn) = oa_with(&["secrets", "arn", "--name", &name], &env, "").await;
    assert!(ok && arn.trim().starts_with("arn:aws:secretsmanager:"), "{arn}");
    assert!(out.lines().any(|l| l == arn.trim()), "put prints the ARN: {out}");
    assert!(!out.contains(channel_secret) && !out.contains("the-long-lived-token"), "no value is printed: {out}");
    let first = secret_keys(&stack.sdk, arn.trim()).await;
    assert_eq!(first["channelSecret"], channel_secret);
    assert_eq!(first["channelAccessToken"], "the-long-lived-token");
    let shop = first["shopEventsSecret"].as_str().unwrap().to_string();
    assert_eq!(shop.len(), 64, "a generated shop secret: {shop}");

    // A new token: the shop secret the shop backend signs with stays, unless asked for a new one.
    line_sim::client::SimClient::new(&line.base_url()).set_access_token("a-reissued-token").await.unwrap();
    let (ok, out) =
        oa_with(&["secrets", "put", "--name", &name], &env, &format!("{channel_secret}\na-reissued-token\n")).await;
    assert!(ok && out.contains("shopEventsSecret: kept"), "{out}");
    let second = secret_keys(&stack.sdk, arn.trim()).await;
    assert_eq!(
        (second["channelAccessToken"].as_str(), second["shopEventsSecret"].as_str()),
        (Some("a-reissued-token"), Some(shop.as_str()))
    );
    let (ok, printed) = oa_with(&["secrets", "shop-secret", "--name", &name], &env, "").await;
    assert!(ok && printed.trim() == shop, "{printed}");
    let (ok, out) = oa_with(
        &["secrets", "put", "--name", &name, "--new-shop-secret"],
        &env,
        &format!("{channel_secret}\na-reissued-token\n"),
    )
    .await;
    assert!(ok, "{out}");
    assert_ne!(secret_keys(&stack.sdk, arn.trim()).await["shopEventsSecret"].as_str(), Some(shop.as_str()));
}

#[tokio::test]
async fn oa_dlq_lists_dead_letters_without_their_text_and_redrive_moves_them_back_in_their_groups() {
    let stack = TestStack::new().await;
    let (queue, dlq) = (stack.queue_url("ReplyQueue").to_string(), stack.queue_url("ReplyDeadLetterQueue").to_string());
    for (i, user) in ["U1", "U1", "U2"].iter().enumerate() {
        let body = serde_json::json!({ "type": "message", "text": format!("private words {i}") }).to_string();
        stack
            .sqs
            .send_message()
            .queue_url(&dlq)
            .message_body(body)
            .message_group_id(*user)
            .message_deduplication_id(format!("d{i}"))
            .send()
            .await
            .unwrap();
    }
    let env = [("REPLY_QUEUE_URL", queue.clone()), ("REPLY_DLQ_URL", dlq.clone())];
    let (ok, out) = oa_with(&["dlq", "list", "reply"], &env, "").await;
    assert!(ok, "{out}");
    assert!(out.contains("reply: 3 dead letters"), "{out}");
    assert_eq!(out.matches("type message").count(), 3, "{out}");
    assert!(out.contains("group U1") && out.contains("group U2"), "{out}");
    assert!(!out.contains("private words"), "no friend's text without --body: {out}");
    assert!(out.contains("oa dlq redrive reply"), "{out}");
    let (ok, out) = oa_with(&["dlq", "list", "replies"], &env, "").await;
    assert!(!ok && out.contains("one of reply, tag, campaign, multicast"), "{out}");

    let (ok, out) = oa_with(&["dlq", "redrive", "reply"], &env, "").await;
    assert!(ok && out.contains("3 message(s) moved"), "{out}");
    let (ok, out) = oa_with(&["dlq", "list", "reply"], &env, "").await;
    assert!(ok && out.contains("reply: 0 dead letters"), "{out}");
    let mut groups = vec![];
    loop {
        let got = stack
            .sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() {
            break;
        }
        for m in got.messages() {
            let group =
                m.attributes().unwrap()[&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId].clone();
            groups.push((group, m.body().unwrap().to_string()));
            stack
                .sqs
                .delete_message()
                .queue_url(&queue)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    // In the order received, grouped (a stable sort): within a group, the order they were sent.
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(groups.len(), 3, "{groups:?}");
    assert_eq!(groups.iter().map(|(g, _)| g.as_str()).collect::<Vec<_>>(), ["U1", "U1", "U2"]);
    assert!(groups[0].1.contains("private words 0") && groups[1].1.contains("private words 1"), "in order: {groups:?}");

    // A standard queue's dead letters (campaign): a redrive moves what the DLQ held when it began,
    // at most --max; purge deletes the rest for good, and only when told --yes.
    let (queue, dlq) =
        (stack.queue_url("CampaignQueue").to_string(), stack.queue_url("CampaignDeadLetterQueue").to_string());
    let three_plans = || async {
        for i in 0..3 {
            let body = format!(r#"{{"kind":"plan","n":{i}}}"#);
            stack.sqs.send_message().queue_url(&dlq).message_body(body).send().await.unwrap();
        }
    };
    three_plans().await;
    let env = [("CAMPAIGN_QUEUE_URL", queue.clone()), ("CAMPAIGN_DLQ_URL", dlq.clone())];
    let (ok, out) = oa_with(&["dlq", "redrive", "campaign", "--max", "2"], &env, "").await;
    assert!(ok && out.contains("2 message(s) moved"), "{out}");
    assert_eq!(stack.drain("CampaignQueue").await.len(), 2);
    let (ok, out) = oa_with(&["dlq", "purge", "campaign"], &env, "").await;
    assert!(!ok && out.contains("add --yes"), "{out}");
    let (ok, out) = oa_with(&["dlq", "list", "campaign"], &env, "").await;
    assert!(ok && out.contains("campaign: 1 dead letters") && out.contains("kind plan"), "{out}");
    let (ok, out) = oa_with(&["dlq", "purge", "campaign", "--yes"], &env, "").await;
    assert!(ok && out.contains("1 dead letter(s) of campaign deleted"), "{out}");
    let (ok, out) = oa_with(&["dlq", "list", "campaign"], &env, "").await;
    assert!(ok && out.contains("campaign: 0 dead letters"), "{out}");

    // Whatever fails again comes back to the DLQ (here at once: the queue is the DLQ itself): the
    // redrive moves each once, then stops and says so, instead of going round in circles.
    three_plans().await;
    let env = [("CAMPAIGN_QUEUE_URL", dlq.clone()), ("CAMPAIGN_DLQ_URL", dlq.clone())];
    let redrive = oa_with(&["dlq", "redrive", "campaign", "--max", "10"], &env, "");
    let (ok, out) = tokio::time::timeout(std::time::Duration::from_secs(60), redrive).await.expect("the redrive ends");
    assert!(
        !ok && out.contains("3 message(s) moved") && out.contains("3 message(s) this redrive moved came back"),
        "{out}"
    );
    assert!(out.contains("3 left in the dead-letter queue"), "{out}");
    assert_eq!(stack.drain("CampaignDeadLetterQueue").await.len(), 3, "nothing lost: {out}");
}

/// A stack as CloudFormation (moto) knows it: this test's tables and queues in its Outputs, one
/// event source mapping among its resources; and two alarms named as CloudFormation names them,
/// one of this stack and one of a stack whose name starts with this one's (moto's CloudFormation
/// does not create alarms, so they are made directly).
async fn deployed_stack(stack: &TestStack, secret_arn: &str, line_api_base: &str) -> String {
    let name = format!("oa-{}", ulid::Ulid::new().to_string().to_lowercase());
    let base = setting("WEBHOOK_URL").trim_end_matches("webhook").to_string();
    let mut outputs = serde_json::json!({
        "WebhookUrl": { "Value": base },
        "EventsUrl": { "Value": base },
        "SecretArn": { "Value": secret_arn },
    });
    for table in ["EventsTable", "UsersTable", "TagsTable", "RulesTable", "CampaignsTable"] {
        outputs[table] = serde_json::json!({ "Value": stack.table(table) });
    }
    for q in ["Reply", "Tag", "Campaign", "Multicast"] {
        outputs[format!("{q}QueueUrl")] = serde_json::json!({ "Value": stack.queue_url(&format!("{q}Queue")) });
        outputs[format!("{q}DeadLetterQueueUrl")] =
            serde_json::json!({ "Value": stack.queue_url(&format!("{q}DeadLetterQueue")) });
    }
    let template = serde_json::json!({
        // Where the stack's functions reach LINE (here line-sim): doctor checks the token there.
        "Parameters": { "LineApiBase": { "Type": "String", "Default": line_api_base } },
        "Resources": {
            "Role": { "Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": { "Version": "2012-10-17", "Statement": [{ "Effect": "Allow",
                    "Principal": { "Service": "lambda.amazonaws.com" }, "Action": "sts:AssumeRole" }] } } },
            "Function": { "Type": "AWS::Lambda::Function", "Properties": {
                "FunctionName": format!("{name}-multicast"), "Runtime": "provided.al2023", "Handler": "bootstrap",
                "Role": { "Fn::GetAtt": ["Role", "Arn"] }, "Code": { "ZipFile": "bootstrap" } } },
            "Queue": { "Type": "AWS::SQS::Queue", "Properties": { "QueueName": format!("{name}-multicast") } },
            "Mapping": { "Type": "AWS::Lambda::EventSourceMapping", "Properties": {
                "FunctionName": { "Ref": "Function" }, "EventSourceArn": { "Fn::GetAtt": ["Queue", "Arn"] }, "BatchSize": 4 } },
        },
        "Outputs": outputs,
    });
    let cfn = aws_sdk_cloudformation::Client::from_conf(
        aws_sdk_cloudformation::config::Builder::from(&stack.sdk).endpoint_url(setting("AWS_ENDPOINT_URL_SQS")).build(),
    );
    cfn.create_stack().stack_name(&name).template_body(template.to_string()).send().await.unwrap();
    let cloudwatch = aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::config::Builder::from(&stack.sdk).endpoint_url(setting("AWS_ENDPOINT_URL_SQS")).build(),
    );
    for alarm in [format!("{name}-MulticastDeadLetterAlarm-1A2B3C"), format!("{name}-other-WebhookErrorsAlarm-4D5E6F")]
    {
        cloudwatch
            .put_metric_alarm()
            .alarm_name(&alarm)
            .namespace("AWS/SQS")
            .metric_name("ApproximateNumberOfMessagesVisible")
            .statistic(aws_sdk_cloudwatch::types::Statistic::Maximum)
            .period(60)
            .evaluation_periods(1)
            .threshold(0.0)
            .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
            .send()
            .await
            .unwrap();
        cloudwatch
            .set_alarm_state()
            .alarm_name(&alarm)
            .state_value(aws_sdk_cloudwatch::types::StateValue::Ok)
            .state_reason("test")
            .send()
            .await
            .unwrap();
    }
    // Another stack's alarm firing is not this stack's problem.
    cloudwatch
        .set_alarm_state()
        .alarm_name(format!("{name}-other-WebhookErrorsAlarm-4D5E6F"))
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("test")
        .send()
        .await
        .unwrap();
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oa_doctor_checks_a_deployed_stack_and_says_what_is_wrong() {
    let stack = TestStack::new().await;
    let line = sim("doctor-token").await;
    let secret = stack
        .secret(serde_json::json!({
            "channelSecret": setting("LINE_CHANNEL_SECRET"),
            "channelAccessToken": "doctor-token",
            "shopEventsSecret": "s",
        }))
        .await;
    let name = deployed_stack(&stack, &secret, &line.base_url()).await;
    // The shell's LINE_API_BASE is not where the stack's functions reach LINE: not used.
    let env = [("LINE_API_BASE", "http://127.0.0.1:1".to_string())];
    let moto = |sdk: &aws_config::SdkConfig| {
        aws_config::SdkConfig::builder()
            .region(sdk.region().cloned())
            .credentials_provider(sdk.credentials_provider().unwrap())
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(setting("AWS_ENDPOINT_URL_SQS"))
            .build()
    };

    // Healthy, but nothing published yet: warnings, and a pass.
    let (ok, out) = oa_with(&["--stack", &name, "doctor"], &env, "").await;
    assert!(ok, "{out}");
    for line in [
        "ok    stack         ",
        "ok    secret",
        "ok    webhook",
        "ok    tables        5 tables active",
        "ok    dead-letters",
        "ok    line-token    LINE takes the access token: bot line-sim",
        "ok    line-webhook",
        "ok    line-verify",
        "ok    mappings      1 event source mappings enabled",
        "ok    alarms        none of the stack's 1 alarms fires",
        "warn  rules         no rules published",
        "warn  settings",
        "ok    quota",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }

    // Broken four ways: each named, with what to do, and the exit status says so.
    let lambda = aws_sdk_lambda::Client::new(&moto(&stack.sdk));
    let uuid = lambda
        .list_event_source_mappings()
        .send()
        .await
        .unwrap()
        .event_source_mappings()
        .iter()
        .find(|m| m.function_arn().is_some_and(|f| f.ends_with(&format!("{name}-multicast"))))
        .and_then(|m| m.uuid().map(str::to_string))
        .unwrap();
    lambda.update_event_source_mapping().uuid(&uuid).enabled(false).send().await.unwrap();
    aws_sdk_cloudwatch::Client::new(&moto(&stack.sdk))
        .set_alarm_state()
        .alarm_name(format!("{name}-MulticastDeadLetterAlarm-1A2B3C"))
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("test")
        .send()
        .await
        .unwrap();
    stack
        .sqs
        .send_message()
        .queue_url(stack.queue_url("MulticastDeadLetterQueue"))
        .message_body("{}")
        .send()
        .await
        .unwrap();
    // The console's webhook URL changed to another server's (LINE's own API sets it as the console does).
    let put = reqwest::Client::new()
        .put(format!("{}/v2/bot/channel/webhook/endpoint", line.base_url()))
        .bearer_auth("doctor-token")
        .json(&serde_json::json!({ "endpoint": "https://example.com/elsewhere" }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let (ok, out) = oa_with(&["--stack", &name, "doctor"], &env, "").await;
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("--uuid {uuid} --enabled")), "{out}");
    assert!(out.contains(&format!("firing: {name}-MulticastDeadLetterAlarm-1A2B3C;")), "{out}");
    assert!(out.contains("dead letters: 1 in multicast's dead-letter queue") && out.contains("oa dlq list"), "{out}");
    assert!(out.contains("LINE sends this channel's webhooks to https://example.com/elsewhere"), "{out}");
    assert!(out.contains("doctor: 4 check(s) failed"), "{out}");

    // A token LINE no longer takes: named, and the checks that need it skipped, not failed.
    line_sim::client::SimClient::new(&line.base_url()).set_access_token("reissued").await.unwrap();
    let (ok, out) = oa_with(&["--stack", &name, "doctor"], &env, "").await;
    assert!(!ok && out.contains("LINE refused the access token (401)") && out.contains("oa secrets put"), "{out}");
    assert!(out.contains("skip  line-webhook  needs a working access token"), "{out}");
}

/// `infra/deploy.sh ACTION ENV` (what `make deploy` and `make destroy` run) with `sam` and the
/// build replaced by scripts that record their arguments: what sam would have been asked to do,
/// what was built, and the output.
async fn deploy_script(
    action: &str,
    env: &str,
    samconfig: &std::path::Path,
    arch: Option<&str>,
) -> (bool, String, String, String) {
    let dir = samconfig.parent().unwrap();
    let record = |name: &str| {
        let script = dir.join(name);
        std::fs::write(&script, format!("#!/bin/sh\necho \"$@\" > {}.args\n", script.display())).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let _ = std::fs::remove_file(dir.join(format!("{name}.args")));
        script
    };
    let (sam, build) = (record("sam"), record("build"));
    let mut command = Command::new(repo_root().join("infra/deploy.sh"));
    command
        .args([action, env])
        .env("SAM", &sam)
        .env("BUILD", &build)
        .env("OA", oa_binary())
        .env("SAMCONFIG", samconfig);
    match arch {
        Some(a) => command.env("ARCH", a),
        None => command.env_remove("ARCH"),
    };
    let out = command.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let read =
        |name: &str| std::fs::read_to_string(dir.join(format!("{name}.args"))).unwrap_or_default().trim().to_string();
    (out.status.success(), read("sam"), read("build"), text)
}

#[tokio::test]
async fn make_deploy_finds_the_secret_by_name_builds_for_the_stack_and_keeps_the_saved_answers() {
    let stack = TestStack::new().await;
    let dir = std::env::temp_dir().join(format!("deploy-{}", stack.stack.name));
    std::fs::create_dir_all(&dir).unwrap();
    let samconfig = dir.join("samconfig.toml");
    let config = samconfig.display().to_string();
    let name = format!("oa-{}", stack.stack.name);
    let section =
        format!("version = 0.1\n\n[t.deploy.parameters]\nstack_name = \"{name}\"\nconfirm_changeset = true\n");
    std::fs::write(&samconfig, &section).unwrap();

    let (ok, sam, built, out) = deploy_script("deploy", "t", &samconfig, None).await;
    assert!(!ok && sam.is_empty() && built.is_empty(), "no build or deploy without the secret: {out}");
    assert!(out.contains(&format!("create it first with  oa secrets put --name {name}/line")), "{out}");
    let (ok, _, _, out) = deploy_script("deploy", "nope", &samconfig, None).await;
    assert!(!ok && out.contains("no environment 'nope' in") && out.contains("(there: t)"), "{out}");

    let arn = aws_sdk_secretsmanager::Client::new(&stack.sdk)
        .create_secret()
        .name(format!("{name}/line"))
        .secret_string("{}")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let (ok, sam, built, out) = deploy_script("deploy", "t", &samconfig, None).await;
    assert!(ok, "{out}");
    assert_eq!(built, "arm64", "arm64 unless asked: {out}");
    assert_eq!(
        sam,
        format!("deploy --config-file {config} --config-env t --template-file template.yaml --guided --parameter-overrides SecretArn={arn} Architecture=arm64")
    );
    assert!(out.contains("answer y to \"WebhookFunction Function Url has no authentication"), "{out}");

    // What the guided deploy saved (an x86 stack, in the secret's region): later deploys build for
    // it and reuse the answers as they are; an ARCH that does not match is refused.
    let region = arn.split(':').nth(3).unwrap().to_string();
    let saved = format!(
        "{section}region = \"{region}\"\nparameter_overrides = \"SecretArn=\\\"{arn}\\\" Architecture=\\\"x86_64\\\" LogLevel=\\\"DEBUG\\\"\"\n"
    );
    std::fs::write(&samconfig, &saved).unwrap();
    let (ok, sam, built, out) = deploy_script("deploy", "t", &samconfig, None).await;
    assert!(ok, "{out}");
    assert_eq!(built, "x86-64");
    assert_eq!(
        sam,
        format!("deploy --config-file {config} --config-env t --template-file template.yaml --region {region}")
    );
    let (ok, sam, built, out) = deploy_script("deploy", "t", &samconfig, Some("arm64")).await;
    assert!(!ok && sam.is_empty() && built.is_empty(), "{out}");
    assert!(out.contains("the stack runs x86-64 functions; ARCH=arm64 would ship the wrong binaries"), "{out}");

    // The secret made again (a new ARN suffix): the new ARN is saved in place of the old, the other
    // answers stay, and the deploy reads them from the file as usual.
    std::fs::write(&samconfig, saved.replace(&arn, &format!("{arn}-old"))).unwrap();
    let (ok, sam, _, out) = deploy_script("deploy", "t", &samconfig, None).await;
    assert!(ok && out.contains("the secret's ARN changed"), "{out}");
    assert_eq!(
        sam,
        format!("deploy --config-file {config} --config-env t --template-file template.yaml --region {region}")
    );
    assert_eq!(std::fs::read_to_string(&samconfig).unwrap(), saved, "the new ARN saved, nothing else changed");

    // Answers kept as a table (as `sam deploy --save-params` writes them) are read too.
    let table = format!(
        "{section}region = \"{region}\"\n\n[t.deploy.parameters.parameter_overrides]\nSecretArn = \"{arn}\"\nArchitecture = \"x86_64\"\n"
    );
    std::fs::write(&samconfig, &table).unwrap();
    let (ok, sam, built, out) = deploy_script("deploy", "t", &samconfig, None).await;
    assert!(ok && built == "x86-64", "{out}");
    assert_eq!(
        sam,
        format!("deploy --config-file {config} --config-env t --template-file template.yaml --region {region}")
    );

    // The stack's region is where the secret is looked for.
    std::fs::write(&samconfig, saved.replace(&format!("region = \"{region}\""), "region = \"us-west-2\"")).unwrap();
    let (ok, _, _, out) = deploy_script("deploy", "t", &samconfig, None).await;
    assert!(!ok && out.contains(&format!("no usable secret {name}/line in us-west-2")), "{out}");

    std::fs::write(&samconfig, &saved).unwrap();
    let (ok, sam, _, out) = deploy_script("destroy", "t", &samconfig, None).await;
    assert!(ok, "{out}");
    assert_eq!(sam, format!("delete --config-file {config} --config-env t --stack-name {name} --region {region}"));
    assert!(out.contains(&format!("kept: {name}-events, {name}-users")), "{out}");
}

/// `oa --stack NAME costs` reads the functions' metrics from CloudWatch (`GetMetricData`, served by
/// moto): a workload put as the functions write it costs what the price table says, by hand; the
/// idle functions are listed with zeros; without Lambda's report records (moto's Logs Insights
/// runs no `stats`) the functions' own durations stand in, and the report says so.
#[tokio::test]
async fn oa_costs_for_a_stack_reads_its_functions_metrics_from_cloudwatch() {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    let stack = TestStack::new().await;
    let name = stack_naming(&stack, &["RulesTable", "CampaignsTable", "UsersTable"]).await;
    let moto = setting("AWS_ENDPOINT_URL_SQS");
    let cw = aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::config::Builder::from(&stack.sdk).endpoint_url(&moto).build(),
    );
    // The period starts now: moto's GetMetricData drops the namespace once dimensions are given,
    // so the data of an earlier run of this test (another namespace) must fall outside it.
    // (Its datapoints also show a moment late: the period ends a minute ahead.)
    let now = jiff::Timestamp::now();
    let t0 = (now - jiff::SignedDuration::from_secs(1)).to_string();
    let t1 = (now + jiff::SignedDuration::from_secs(60)).to_string();
    // The tagger's metrics over two invocation lines, as its EMF lines would become.
    let workload = [
        ("Invocations", [30.0, 10.0]),
        ("DurationMs", [3_000.0, 1_000.0]),
        ("Records", [90.0, 30.0]),
        ("ReadUnits", [20.5, 9.5]),
        ("WriteUnits", [8.0, 2.0]),
        ("SqsFifoRequests", [60.0, 20.0]),
        ("LogBytes", [600_000.0, 400_000.0]),
    ];
    for (metric, values) in workload {
        for v in values {
            let datum = MetricDatum::builder()
                .metric_name(metric)
                .dimensions(Dimension::builder().name("function").value("tagger").build())
                .value(v)
                .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from(std::time::SystemTime::now()))
                .build();
            cw.put_metric_data().namespace(&name).metric_data(datum).send().await.unwrap();
        }
    }
    let (ok, out) = oa_with(
        &["--stack", &name, "costs", "--since", &t0, "--until", &t1, "--region", "us-east-1", "--format", "json"],
        &[],
        "",
    )
    .await;
    assert!(ok, "{out}");
    // The JSON on stdout, then the notes on stderr.
    let json = &out[out.find('{').unwrap()..];
    let report: serde_json::Value =
        serde_json::Deserializer::from_str(json).into_iter().next().expect("a JSON report").unwrap();
    let p = price_table("us-east-1");
    let tagger = report["functions"].as_array().unwrap().iter().find(|f| f["function"] == "tagger").unwrap();
    let cost = &tagger["cost"];
    let by_hand = [
        ("lambda", 4.0 * template_memory("tagger") / 1024.0 * p["lambdaGbSecondArm64"] + 40.0 * p["lambdaRequest"]),
        ("dynamodb", 30.0 * p["dynamodbReadUnit"] + 10.0 * p["dynamodbWriteUnit"]),
        ("sqs", 80.0 * p["sqsFifoRequest"]),
        ("logs", 1_000_000.0 / (1024.0 * 1024.0 * 1024.0) * p["logsIngestedGb"]),
    ];
    for (part, want) in by_hand {
        let got = cost[part].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-12 + 1e-9 * want, "{part}: {got} by oa, {want} by hand\n{out}");
    }
    assert_eq!(tagger["invocations"], 40.0);
    assert_eq!(tagger["records"], 120.0);
    for f in report["functions"].as_array().unwrap().iter().filter(|f| f["function"] != "tagger") {
        assert_eq!(f["cost"]["total"], 0.0, "{f}");
    }
    assert_eq!(report["functions"].as_array().unwrap().len(), 5);
    assert_eq!(report["durationSource"], "measured", "{out}");
    assert!(out.contains("billed durations not read"), "{out}");
    assert_eq!(report["fixedMonthly"]["customMetrics"], 7, "the namespace's metrics: {}", report["fixedMonthly"]);
    assert_eq!(report["region"], "us-east-1");
}
