//! `oa doctor`: checks a stack end to end and says, in words, what is wrong and what to do.
//!
//! Each check ends in one of four verdicts: `ok`; `FAIL` (the stack does not work as it is: the
//! command exits non-zero); `warn` (it works, but something a brand expects is missing, e.g. no
//! rules published yet); `skip` (the check has no counterpart here, e.g. alarms on the local stack,
//! or needs what an earlier check could not get). The checks, in order: the secret, the webhook
//! URL, the tables, the queues and their dead letters, the access token with LINE, LINE's webhook
//! setting and its test request, the event source mappings, the alarms, rules and settings
//! published, and the month's quota.

use std::fmt;

use serde_json::{json, Value};
use shared::adapters::sdk::describe;
use shared::secrets::SecretName;

use crate::dlq;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        })
    }
}

/// One check's outcome: what was checked, and what was found (and, when wrong, what to do).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub check: &'static str,
    pub verdict: Verdict,
    pub said: String,
}

impl Finding {
    fn new(check: &'static str, verdict: Verdict, said: impl Into<String>) -> Self {
        Finding { check, verdict, said: said.into() }
    }
}

/// The report as printed, and whether the stack passed (no `FAIL`).
pub fn report(findings: &[Finding]) -> (String, bool) {
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!("{:<5} {:<13} {}\n", f.verdict, f.check, f.said));
    }
    let count = |v: Verdict| findings.iter().filter(|f| f.verdict == v).count();
    let (failed, warned) = (count(Verdict::Fail), count(Verdict::Warn));
    out.push_str(&match (failed, warned) {
        (0, 0) => "doctor: all checks passed\n".to_string(),
        (0, w) => format!("doctor: passed with {w} warning(s)\n"),
        (f, w) => format!("doctor: {f} check(s) failed, {w} warning(s)\n"),
    });
    (out, failed == 0)
}

/// The tables every stack has, by setting.
pub const TABLES: [&str; 5] = ["EVENTS_TABLE", "USERS_TABLE", "TAGS_TABLE", "RULES_TABLE", "CAMPAIGNS_TABLE"];

/// Where a setting's value comes from (the process environment, in `oa`).
pub type Settings = Box<dyn Fn(&str) -> Option<String>>;

/// What the doctor looks at: the settings `--local` or `--stack` gave (or the environment).
pub struct Doctor {
    pub sdk: aws_config::SdkConfig,
    /// The local stack (no alarms or mappings to check; line-sim stands in for LINE).
    pub local: bool,
    /// The CloudFormation stack's name, when given with `--stack`.
    pub stack: Option<String>,
    pub env: Settings,
    pub http: reqwest::Client,
}

impl Doctor {
    fn setting(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }

    fn line_base(&self) -> String {
        self.setting("LINE_API_BASE").unwrap_or_else(|| "https://api.line.me".into()).trim_end_matches('/').to_string()
    }

    /// Where LINE is, in words a person can act on.
    fn line_unreachable(&self, e: &reqwest::Error) -> String {
        let base = self.line_base();
        let hint = if self.local { " (locally that is line-sim: `make local-up` starts it)" } else { "" };
        format!("cannot reach LINE at {base}{hint}: {}", shared::adapters::sdk::chain(e))
    }

    /// Every check, in order.
    pub async fn run(&self) -> Vec<Finding> {
        let mut out = vec![];
        let token = self.secret(&mut out).await;
        out.push(self.webhook().await);
        out.push(self.tables().await);
        out.extend(self.queues().await);
        match &token {
            Some(token) => {
                let token_works = self.token(token).await;
                let works = token_works.verdict == Verdict::Ok;
                out.push(token_works);
                if works {
                    out.extend(self.line_webhook(token).await);
                } else {
                    out.push(Finding::new("line-webhook", Verdict::Skip, "needs a working access token"));
                }
                out.push(if works {
                    self.quota(token).await
                } else {
                    Finding::new("quota", Verdict::Skip, "needs a working access token")
                });
            }
            None => {
                for check in ["line-token", "line-webhook", "quota"] {
                    out.push(Finding::new(check, Verdict::Skip, "needs the access token from the secret"));
                }
            }
        }
        out.extend(self.stack_resources().await);
        out.extend(self.published().await);
        out
    }

    /// The secret: readable, with its three keys. Gives the access token.
    async fn secret(&self, out: &mut Vec<Finding>) -> Option<String> {
        let wanted = [SecretName::ChannelSecret, SecretName::ChannelAccessToken, SecretName::ShopEventsSecret];
        let (keys, from) = match self.setting(shared::secrets::SECRET_ARN_VAR) {
            Some(arn) => {
                let client = aws_sdk_secretsmanager::Client::new(&self.sdk);
                match crate::secrets::read(&client, &arn).await {
                    Ok(keys) => (keys, format!("secret {arn}")),
                    Err(e) => {
                        out.push(Finding::new(
                            "secret",
                            Verdict::Fail,
                            format!(
                                "{e}: does it exist in this region, and may you read it? (oa secrets put --name NAME)"
                            ),
                        ));
                        return None;
                    }
                }
            }
            None => {
                let keys =
                    wanted.iter().filter_map(|n| self.setting(n.env_var()).map(|v| (n.key().to_string(), v))).collect();
                (keys, "the environment".to_string())
            }
        };
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|n| keys.get(n.key()).is_none_or(|v| v.trim().is_empty()))
            .map(|n| if from.starts_with("secret") { n.key() } else { n.env_var() })
            .collect();
        if missing.is_empty() {
            out.push(Finding::new(
                "secret",
                Verdict::Ok,
                format!("{from} has the channel secret, access token and shop secret"),
            ));
        } else {
            out.push(Finding::new(
                "secret",
                Verdict::Fail,
                format!("{from} has no {}: oa secrets put --name NAME writes all three", missing.join(", ")),
            ));
        }
        keys.get(SecretName::ChannelAccessToken.key()).filter(|t| !t.trim().is_empty()).cloned()
    }

    /// The webhook URL refuses an unsigned request with 401.
    async fn webhook(&self) -> Finding {
        let Some(url) = self.setting("WEBHOOK_URL") else {
            return Finding::new("webhook", Verdict::Fail, "WEBHOOK_URL is not set: give --stack NAME or --local");
        };
        let body = json!({ "destination": "doctor", "events": [] }).to_string();
        match self.http.post(&url).header("content-type", "application/json").body(body).send().await {
            Ok(r) if r.status().as_u16() == 401 => {
                Finding::new("webhook", Verdict::Ok, format!("{url} refuses an unsigned request (401)"))
            }
            Ok(r) if r.status().is_success() => Finding::new(
                "webhook",
                Verdict::Fail,
                format!("{url} accepted a request with no signature ({}): anyone could post events to it", r.status()),
            ),
            Ok(r) => Finding::new(
                "webhook",
                Verdict::Fail,
                format!(
                    "{url} answered {} to an unsigned request, not 401: look at the webhook function's log",
                    r.status()
                ),
            ),
            Err(e) => {
                let hint = if self.local { " (`make local-up` starts the local stack)" } else { "" };
                Finding::new(
                    "webhook",
                    Verdict::Fail,
                    format!("cannot reach {url}{hint}: {}", shared::adapters::sdk::chain(&e)),
                )
            }
        }
    }

    async fn tables(&self) -> Finding {
        let client = aws_sdk_dynamodb::Client::new(&self.sdk);
        let mut problems = vec![];
        for var in TABLES {
            let Some(table) = self.setting(var) else {
                problems.push(format!("{var} is not set"));
                continue;
            };
            match client.describe_table().table_name(&table).send().await {
                Ok(out) => {
                    let status = out.table().and_then(|t| t.table_status()).map(|s| s.as_str().to_string());
                    if status.as_deref() != Some("ACTIVE") {
                        problems.push(format!("{table} is {}", status.unwrap_or_else(|| "in no state".into())));
                    }
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                    problems.push(format!("no table {table}"));
                }
                Err(e) => problems.push(format!("cannot read {table}: {}", describe(&e))),
            }
        }
        if problems.is_empty() {
            Finding::new("tables", Verdict::Ok, format!("{} tables active", TABLES.len()))
        } else {
            let hint =
                if self.local { "`make local-up` creates them" } else { "is the stack deployed in this region?" };
            Finding::new("tables", Verdict::Fail, format!("{}: {hint}", problems.join("; ")))
        }
    }

    /// Every queue exists, and every dead-letter queue is empty.
    async fn queues(&self) -> Vec<Finding> {
        let client = aws_sdk_sqs::Client::new(&self.sdk);
        let pairs = match dlq::pairs(None, |n| self.setting(n)) {
            Ok(p) => p,
            Err(e) => return vec![Finding::new("queues", Verdict::Fail, e)],
        };
        let mut missing = vec![];
        let mut letters = vec![];
        for pair in &pairs {
            if let Err(e) = dlq::depth(&client, &pair.queue).await {
                missing.push(e);
            }
            match dlq::depth(&client, &pair.dlq).await {
                Ok((visible, in_flight)) if visible + in_flight > 0 => {
                    letters.push(format!("{} in {}'s", visible + in_flight, pair.name))
                }
                Ok(_) => {}
                Err(e) => missing.push(e),
            }
        }
        let queues = if missing.is_empty() {
            Finding::new("queues", Verdict::Ok, format!("{} queues and their dead-letter queues exist", pairs.len()))
        } else {
            Finding::new("queues", Verdict::Fail, missing.join("; "))
        };
        let dead = if !missing.is_empty() {
            Finding::new("dead-letters", Verdict::Skip, "needs the queues")
        } else if letters.is_empty() {
            Finding::new("dead-letters", Verdict::Ok, "every dead-letter queue is empty")
        } else {
            Finding::new(
                "dead-letters",
                Verdict::Fail,
                format!(
                    "dead letters: {} dead-letter queue; see what they are with `oa dlq list`, fix the cause \
                     (docs/operations.md), then `oa dlq redrive QUEUE` (or `oa dlq purge QUEUE --yes` for those not \
                     worth it)",
                    letters.join(", ")
                ),
            )
        };
        vec![queues, dead]
    }

    async fn line_get(&self, token: &str, path: &str) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.line_base());
        let r = self.http.get(&url).bearer_auth(token).send().await.map_err(|e| self.line_unreachable(&e))?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// The access token works: `GET /v2/bot/info`.
    async fn token(&self, token: &str) -> Finding {
        if let Err(e) = crate::secrets::check_line_base(&self.line_base()) {
            return Finding::new("line-token", Verdict::Fail, e);
        }
        match self.line_get(token, "/v2/bot/info").await {
            Ok((200, bot)) => Finding::new(
                "line-token",
                Verdict::Ok,
                format!(
                    "LINE takes the access token: bot {} ({})",
                    bot["displayName"].as_str().unwrap_or("?"),
                    bot["basicId"].as_str().unwrap_or("?")
                ),
            ),
            Ok((401, _)) => Finding::new(
                "line-token",
                Verdict::Fail,
                "LINE refused the access token (401): it was reissued or revoked; issue a long-lived token in the \
                 console's Messaging API tab and store it with `oa secrets put --name NAME`",
            ),
            Ok((status, body)) => Finding::new(
                "line-token",
                Verdict::Fail,
                format!("LINE answered {status} to GET /v2/bot/info: {}", body["message"].as_str().unwrap_or("")),
            ),
            Err(e) => Finding::new("line-token", Verdict::Fail, e),
        }
    }

    /// LINE sends webhooks to this stack's URL, with "Use webhook" on, and its test request passes.
    async fn line_webhook(&self, token: &str) -> Vec<Finding> {
        let Some(ours) = self.setting("WEBHOOK_URL") else {
            return vec![Finding::new("line-webhook", Verdict::Skip, "needs WEBHOOK_URL")];
        };
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        let endpoint = match self.line_get(token, "/v2/bot/channel/webhook/endpoint").await {
            Ok((200, v)) => v,
            Ok((404, _)) => {
                return vec![Finding::new(
                    "line-webhook",
                    Verdict::Fail,
                    format!("the channel has no webhook URL: set {ours} in the console's Messaging API tab"),
                )]
            }
            Ok((status, body)) => {
                return vec![Finding::new(
                    "line-webhook",
                    Verdict::Fail,
                    format!(
                        "LINE answered {status} to GET webhook/endpoint: {}",
                        body["message"].as_str().unwrap_or("")
                    ),
                )]
            }
            Err(e) => return vec![Finding::new("line-webhook", Verdict::Fail, e)],
        };
        let theirs = endpoint["endpoint"].as_str().unwrap_or_default();
        let setting = if !same(theirs, &ours) {
            Finding::new(
                "line-webhook",
                Verdict::Fail,
                format!(
                    "LINE sends this channel's webhooks to {theirs}, not to this stack's {ours}: set {ours} as the \
                     Webhook URL in the console's Messaging API tab"
                ),
            )
        } else if endpoint["active"] != Value::Bool(true) {
            Finding::new(
                "line-webhook",
                Verdict::Fail,
                "\"Use webhook\" is off in the console's Messaging API tab: LINE sends nothing; switch it on",
            )
        } else {
            Finding::new("line-webhook", Verdict::Ok, format!("LINE sends webhooks to {ours}, and Use webhook is on"))
        };
        // LINE's own "Verify": a signed request with no events, from LINE to our URL.
        let url = format!("{}/v2/bot/channel/webhook/test", self.line_base());
        let test = match self.http.post(&url).bearer_auth(token).json(&json!({ "endpoint": ours })).send().await {
            Err(e) => Finding::new("line-verify", Verdict::Fail, self.line_unreachable(&e)),
            Ok(r) => {
                let status = r.status().as_u16();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                let code = v["statusCode"].as_i64().unwrap_or(0);
                if status == 200 && v["success"] == Value::Bool(true) {
                    Finding::new("line-verify", Verdict::Ok, format!("LINE's test request reached {ours} ({code})"))
                } else if code == 401 {
                    Finding::new(
                        "line-verify",
                        Verdict::Fail,
                        "the webhook refused LINE's signed test request (401): the secret's channel secret is not \
                         this channel's; store the one from the Basic settings tab with `oa secrets put`",
                    )
                } else if status == 200 {
                    Finding::new(
                        "line-verify",
                        Verdict::Fail,
                        format!(
                            "LINE's test request to {ours} failed: {} {} ({})",
                            v["reason"].as_str().unwrap_or("?"),
                            code,
                            v["detail"].as_str().unwrap_or("")
                        ),
                    )
                } else {
                    Finding::new(
                        "line-verify",
                        Verdict::Fail,
                        format!("LINE answered {status} to POST webhook/test: {}", v["message"].as_str().unwrap_or("")),
                    )
                }
            }
        };
        vec![setting, test]
    }

    /// Messages used and left this month.
    async fn quota(&self, token: &str) -> Finding {
        let quota = self.line_get(token, "/v2/bot/message/quota").await;
        let used = self.line_get(token, "/v2/bot/message/quota/consumption").await;
        match (quota, used) {
            (Ok((200, q)), Ok((200, u))) => {
                let used = u["totalUsage"].as_u64().unwrap_or(0);
                match (q["type"].as_str(), q["value"].as_u64()) {
                    (Some("limited"), Some(limit)) if used >= limit => Finding::new(
                        "quota",
                        Verdict::Warn,
                        format!(
                            "{used} of {limit} messages used this month: pushes wait for next month or a larger plan \
                             (replies stay free)"
                        ),
                    ),
                    (Some("limited"), Some(limit)) => Finding::new(
                        "quota",
                        Verdict::Ok,
                        format!("{used} of {limit} messages used this month, {} left", limit - used),
                    ),
                    _ => Finding::new("quota", Verdict::Ok, format!("{used} messages this month, no monthly limit")),
                }
            }
            (Err(e), _) | (_, Err(e)) => Finding::new("quota", Verdict::Fail, e),
            (Ok((a, _)), Ok((b, _))) => {
                let s = if a != 200 { a } else { b };
                Finding::new("quota", Verdict::Fail, format!("LINE answered {s} to the quota endpoints"))
            }
        }
    }

    /// The stack's last deploy went through, its event source mappings are enabled and no alarm
    /// is in ALARM: read from the CloudFormation stack and its resources.
    async fn stack_resources(&self) -> Vec<Finding> {
        let Some(stack) = &self.stack else {
            let why = if self.local {
                "no local counterpart (`oa local poll` reads the queues; nothing raises alarms)"
            } else {
                "give --stack NAME to check them"
            };
            return vec![Finding::new("mappings", Verdict::Skip, why), Finding::new("alarms", Verdict::Skip, why)];
        };
        let cfn = aws_sdk_cloudformation::Client::new(&self.sdk);
        let status = match cfn.describe_stacks().stack_name(stack).send().await {
            Ok(out) => out.stacks().first().and_then(|s| s.stack_status()).map(|s| s.as_str().to_string()),
            Err(e) => Some(format!("unreadable ({})", describe(&e))),
        }
        .unwrap_or_else(|| "missing".into());
        let state = stack_state(stack, &status);
        let mut resources = vec![];
        let mut pages = cfn.list_stack_resources().stack_name(stack).into_paginator().send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(p) => resources.extend(
                    p.stack_resource_summaries()
                        .iter()
                        .filter_map(|r| Some((r.resource_type()?.to_string(), r.physical_resource_id()?.to_string()))),
                ),
                Err(e) => {
                    let said = format!("cannot list the resources of stack {stack}: {}", describe(&e));
                    return vec![
                        state,
                        Finding::new("mappings", Verdict::Fail, said.clone()),
                        Finding::new("alarms", Verdict::Fail, said),
                    ];
                }
            }
        }
        let of = |kind: &str| -> Vec<String> {
            resources.iter().filter(|(t, _)| t == kind).map(|(_, id)| id.clone()).collect()
        };
        let alarms_declared = of("AWS::CloudWatch::Alarm").len();
        vec![
            state,
            self.mappings(&of("AWS::Lambda::EventSourceMapping")).await,
            self.alarms(stack, alarms_declared).await,
        ]
    }

    async fn mappings(&self, uuids: &[String]) -> Finding {
        let lambda = aws_sdk_lambda::Client::new(&self.sdk);
        let (mut off, mut changing) = (vec![], vec![]);
        for uuid in uuids {
            match lambda.get_event_source_mapping().uuid(uuid).send().await {
                Ok(m) => {
                    let state = m.state().unwrap_or("unknown");
                    let queue = m.event_source_arn().and_then(|a| a.rsplit(':').next()).unwrap_or("?");
                    let function = m.function_arn().and_then(|a| a.rsplit(':').next()).unwrap_or("?");
                    let problem = m.last_processing_result().filter(|r| r.starts_with("PROBLEM"));
                    match (state, problem) {
                        ("Enabled", None) => {}
                        ("Enabled", Some(p)) => off.push(format!("{queue} -> {function}: {p}")),
                        ("Creating" | "Enabling" | "Updating", _) => changing.push(format!("{queue} -> {function} is {state}")),
                        _ => off.push(format!(
                            "{queue} -> {function} is {state} (aws lambda update-event-source-mapping --uuid {uuid} --enabled)"
                        )),
                    }
                }
                Err(e) => off.push(format!("cannot read mapping {uuid}: {}", describe(&e))),
            }
        }
        if uuids.is_empty() {
            Finding::new(
                "mappings",
                Verdict::Fail,
                "the stack has no event source mappings: is it this product's stack?",
            )
        } else if !off.is_empty() {
            Finding::new("mappings", Verdict::Fail, format!("queues nobody reads: {}", off.join("; ")))
        } else if !changing.is_empty() {
            Finding::new("mappings", Verdict::Warn, format!("{}: run doctor again in a minute", changing.join("; ")))
        } else {
            Finding::new("mappings", Verdict::Ok, format!("{} event source mappings enabled", uuids.len()))
        }
    }

    /// The stack's alarms: CloudFormation names them `<stack>-<LogicalId>-<suffix>`, and every
    /// alarm of the template has a logical id ending in `Alarm` (so `oa-staging-...` is not read as
    /// stack `oa`'s).
    async fn alarms(&self, stack: &str, declared: usize) -> Finding {
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&self.sdk);
        let prefix = format!("{stack}-");
        let mut ours = 0;
        let mut firing = vec![];
        let mut pages = cloudwatch.describe_alarms().alarm_name_prefix(&prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    return Finding::new("alarms", Verdict::Fail, format!("cannot read the alarms: {}", describe(&e)))
                }
            };
            for alarm in page.metric_alarms() {
                let Some(name) = alarm.alarm_name() else { continue };
                if !is_stack_alarm(stack, name) {
                    continue;
                }
                ours += 1;
                if alarm.state_value().is_some_and(|s| s.as_str() == "ALARM") {
                    firing.push(name.to_string());
                }
            }
        }
        if !firing.is_empty() {
            Finding::new(
                "alarms",
                Verdict::Fail,
                format!("firing: {}; docs/operations.md says what each means and what to run", firing.join(", ")),
            )
        } else if ours < declared {
            Finding::new(
                "alarms",
                Verdict::Warn,
                format!("found {ours} of the stack's {declared} alarms: the rest cannot be read (cloudwatch:DescribeAlarms?)"),
            )
        } else if ours == 0 {
            Finding::new(
                "alarms",
                Verdict::Warn,
                format!("no alarm named {stack}-<name>Alarm-...: is this the product's stack?"),
            )
        } else {
            Finding::new("alarms", Verdict::Ok, format!("none of the stack's {ours} alarms fires"))
        }
    }

    /// Rules and account settings published (a warning when not: the stack works, but answers
    /// nobody and caps nothing).
    async fn published(&self) -> Vec<Finding> {
        let Some(table) = self.setting("RULES_TABLE") else {
            return vec![Finding::new("rules", Verdict::Skip, "RULES_TABLE is not set")];
        };
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.sdk);
        let rules = shared::adapters::dynamodb::rules::RulesStore::new(dynamodb.clone(), &table);
        let rules = match rules.current_version().await {
            Ok(Some(v)) => Finding::new("rules", Verdict::Ok, format!("rules version {v} published")),
            Ok(None) => Finding::new(
                "rules",
                Verdict::Warn,
                "no rules published: friends get no keyword replies until `oa rules apply FILE`",
            ),
            Err(e) => Finding::new("rules", Verdict::Fail, format!("cannot read the rules: {e}")),
        };
        let settings = shared::adapters::dynamodb::rules::RulesStore::settings(dynamodb, &table);
        let settings = match settings.live().await {
            Ok(Some(p)) => {
                Finding::new("settings", Verdict::Ok, format!("account settings version {} published", p.version))
            }
            Ok(None) => Finding::new(
                "settings",
                Verdict::Warn,
                "no account settings: campaigns cannot start until `oa settings apply FILE` (time zone, caps, plan)",
            ),
            Err(e) => Finding::new("settings", Verdict::Fail, format!("cannot read the account settings: {e}")),
        };
        vec![rules, settings]
    }
}

/// What a CloudFormation stack status says about the stack.
pub fn stack_state(stack: &str, status: &str) -> Finding {
    match status {
        "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "IMPORT_COMPLETE" => {
            Finding::new("stack", Verdict::Ok, format!("{stack} is {status}"))
        }
        // The last deploy failed and the stack went back to the code before it: it works, as it was.
        s if s.starts_with("UPDATE_ROLLBACK_COMPLETE") => Finding::new(
            "stack",
            Verdict::Warn,
            format!("{stack}'s last deploy was rolled back ({status}): the code before it runs; see the stack's events, fix, deploy again"),
        ),
        s if s.ends_with("_IN_PROGRESS") && !s.contains("ROLLBACK") => Finding::new(
            "stack",
            Verdict::Warn,
            format!("{stack} is {status}: a deploy is under way; run doctor again when it ends"),
        ),
        _ => Finding::new(
            "stack",
            Verdict::Fail,
            format!("{stack} is {status}: see its events in the CloudFormation console, fix, deploy again"),
        ),
    }
}

/// Whether the alarm `name` is one of `stack`'s (`<stack>-<LogicalId>Alarm-<suffix>`).
pub fn is_stack_alarm(stack: &str, name: &str) -> bool {
    name.strip_prefix(stack)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.split('-').next())
        .is_some_and(|logical_id| logical_id.ends_with("Alarm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_whose_last_deploy_failed_is_named() {
        assert_eq!(stack_state("oa", "UPDATE_COMPLETE").verdict, Verdict::Ok);
        assert_eq!(stack_state("oa", "UPDATE_IN_PROGRESS").verdict, Verdict::Warn);
        let rolled_back = stack_state("oa", "UPDATE_ROLLBACK_COMPLETE");
        assert_eq!(rolled_back.verdict, Verdict::Warn);
        assert!(rolled_back.said.contains("the code before it runs"), "{}", rolled_back.said);
        assert_eq!(stack_state("oa", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS").verdict, Verdict::Warn);
        assert_eq!(stack_state("oa", "ROLLBACK_COMPLETE").verdict, Verdict::Fail);
        assert_eq!(stack_state("oa", "UPDATE_ROLLBACK_FAILED").verdict, Verdict::Fail);
    }

    #[test]
    fn a_stacks_alarms_are_told_from_a_longer_named_stacks() {
        assert!(is_stack_alarm("oa", "oa-WebhookErrorsAlarm-1A2B3C"));
        assert!(!is_stack_alarm("oa", "oa-staging-WebhookErrorsAlarm-1A2B3C"));
        assert!(!is_stack_alarm("oa", "oax-WebhookErrorsAlarm-1A2B3C"));
        assert!(is_stack_alarm("oa-staging", "oa-staging-CampaignsStalledAlarm-Z"));
    }

    #[test]
    fn a_failure_fails_the_report_and_a_warning_or_skip_does_not() {
        let ok = Finding::new("tables", Verdict::Ok, "5 tables active");
        let warn = Finding::new("rules", Verdict::Warn, "no rules published");
        let skip = Finding::new("alarms", Verdict::Skip, "no local counterpart");
        let fail = Finding::new("line-token", Verdict::Fail, "cannot reach LINE");
        let (text, passed) = report(&[ok.clone(), warn.clone(), skip.clone()]);
        assert!(passed, "{text}");
        assert!(text.ends_with("doctor: passed with 1 warning(s)\n"), "{text}");
        let (text, passed) = report(&[ok, warn, skip, fail]);
        assert!(!passed);
        assert!(text.contains("FAIL  line-token    cannot reach LINE"), "{text}");
        assert!(text.ends_with("doctor: 1 check(s) failed, 1 warning(s)\n"), "{text}");
    }
}
