//! `oa costs`: gathers the measurements ([`oa::costs`]) and prints the report
//! ([`shared::costs::report`]).

use std::collections::BTreeMap;

use clap::{Args, ValueEnum};
use shared::campaign::file::AccountSettings;
use shared::campaign::ports::CampaignAdmin;
use shared::costs::model::{Arch, Fixed};
use shared::costs::prices::PriceTable;
use shared::costs::report::{DurationSource, Inputs};

use crate::AnyError;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum By {
    Function,
    Campaign,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Args)]
pub(crate) struct CostsArgs {
    /// The period's start: a span back from now (7d, 24h, 30m) or a time (2026-12-01T00:00:00Z).
    #[arg(long, default_value = "7d")]
    since: String,
    /// The period's end, a time (2026-12-08T00:00:00Z); now when not given.
    #[arg(long)]
    until: Option<String>,
    /// Rows of the table: functions or campaigns (JSON and CSV have both).
    #[arg(long, value_enum, default_value = "function")]
    by: By,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// The price table's region (default: the stack's region; ap-northeast-1 locally).
    #[arg(long)]
    region: Option<String>,
}

/// The template as built into `oa`: memory sizes, the architecture's default and the alarms.
const TEMPLATE: &str = include_str!("../../../../infra/template.yaml");

/// The functions' logical ids in the template, by short name.
const LOGICAL_IDS: [(&str, &str); 5] = [
    ("webhook", "WebhookFunction"),
    ("keyword-reply", "KeywordReplyFunction"),
    ("tagger", "TaggerFunction"),
    ("campaign", "CampaignFunction"),
    ("multicast", "MulticastFunction"),
];

fn setting(name: &str) -> Result<String, AnyError> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        format!("{name} is not set: use --local or --stack NAME (or set it as the stack outputs it)").into()
    })
}

pub(crate) async fn costs(args: CostsArgs, local: bool, stack: Option<String>) -> Result<(), AnyError> {
    let time = |flag: &str, s: &str| {
        s.parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|e| format!("{flag} {s:?}: a span (7d) or a time (2026-12-01T00:00:00Z): {e}"))
    };
    let now_ms = match &args.until {
        Some(u) => time("--until", u)?,
        None => oa::sample::now_ms(),
    };
    let since_ms = match shared::names::parse_span(&args.since) {
        Ok(span) => now_ms - span.as_millis() as i64,
        Err(_) => time("--since", &args.since)?,
    };
    if since_ms >= now_ms {
        return Err(format!("--since {} is not before the period's end", args.since).into());
    }
    let template = oa::stack::Template::parse(TEMPLATE)?;
    let global_memory = 128;
    let memory_mb: BTreeMap<String, u32> = LOGICAL_IDS
        .iter()
        .map(|(f, id)| {
            let mb = template
                .resource(id)
                .and_then(|r| r.properties.get("MemorySize"))
                .and_then(|v| template.number(v))
                .unwrap_or(global_memory);
            (f.to_string(), mb as u32)
        })
        .collect();
    let arch = match std::env::var("ARCHITECTURE").ok().as_deref() {
        Some("x86_64") => Arch::X86_64,
        _ => Arch::Arm64,
    };
    let sdk = crate::aws_config().await;
    let region = args
        .region
        .clone()
        .or_else(|| (!local).then(|| sdk.region().map(|r| r.to_string())).flatten())
        .unwrap_or_else(|| "ap-northeast-1".into());
    let table = PriceTable::checked_in()?;
    let prices = table.region(&region)?;
    let today = jiff::Zoned::now().date().to_string();

    // The alarms every stack has, and each spend alarm its threshold turns on (the stack's
    // parameters under --stack; locally the template's defaults, 0: none).
    let threshold_set =
        |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<f64>().ok()).is_some_and(|t| t > 0.0);
    let alarms = template
        .of_kind("AWS::CloudWatch::Alarm")
        .filter(|a| match a.condition.as_deref() {
            Some("HasDailyMessagesAlarm") => threshold_set("DAILY_BILLABLE_MESSAGES_THRESHOLD"),
            Some("HasMonthlySpendAlarm") => threshold_set("MONTHLY_LINE_SPEND_THRESHOLD"),
            _ => true,
        })
        .count() as u32;
    let mut notes = vec![];
    let (collected, duration, stored_bytes) = if local {
        let here = std::env::current_dir()?;
        let root = oa::target::repository_root(&here).ok_or("not inside the repository (run oa --local from it)")?;
        let path = root.join(".local/logs/functions.log");
        let file = std::fs::File::open(&path)
            .map_err(|e| format!("cannot read {} ({e}): is the local stack up (make local-up)?", path.display()))?;
        let stored = file.metadata().map(|m| m.len()).unwrap_or(0);
        let log = std::io::BufReader::new(file);
        (oa::costs::from_log_lines(log, since_ms, now_ms), DurationSource::Measured, stored)
    } else {
        let namespace = match &stack {
            Some(name) => name.clone(),
            None => setting("METRICS_NAMESPACE")?,
        };
        let cw = aws_sdk_cloudwatch::Client::new(&sdk);
        let mut collected = oa::costs::from_cloudwatch(&cw, &namespace, since_ms, now_ms).await?;
        let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
        let duration = match oa::costs::billed_durations(&logs, &namespace, since_ms, now_ms).await {
            Ok(billed) if !billed.is_empty() => {
                // Only where the report records cover the invocations the metrics counted (not a
                // period reaching back before them, or past the logs' retention).
                let mut all = true;
                for (f, used) in collected.functions.iter_mut() {
                    match billed.get(f) {
                        Some((ms, n))
                            if (n - used.usage.invocations).abs() <= (used.usage.invocations * 0.01).max(1.0) =>
                        {
                            used.usage.billed_ms = *ms;
                        }
                        _ if used.usage.invocations == 0.0 => {}
                        _ => {
                            all = false;
                            notes.push(format!(
                                "{f}: Lambda's report records do not cover the period's invocations; its own durations stand in"
                            ));
                        }
                    }
                }
                if all {
                    DurationSource::Billed
                } else {
                    DurationSource::Measured
                }
            }
            Ok(_) => {
                notes.push("no Lambda report records in the period: the functions' own durations stand in".into());
                DurationSource::Measured
            }
            Err(e) => {
                notes.push(format!("billed durations not read ({e}): the functions' own measurements stand in"));
                DurationSource::Measured
            }
        };
        let mut stored = 0u64;
        for f in shared::costs::meter::FUNCTIONS {
            let name = oa::costs::log_group(&namespace, f);
            match logs.describe_log_groups().log_group_name_prefix(&name).send().await {
                Ok(out) => {
                    stored += out
                        .log_groups()
                        .iter()
                        .filter(|g| g.log_group_name() == Some(name.as_str()))
                        .filter_map(|g| g.stored_bytes())
                        .sum::<i64>()
                        .max(0) as u64;
                }
                Err(e) => notes.push(format!(
                    "{name}: stored log size not read ({}): counted as 0",
                    shared::adapters::sdk::describe(&e)
                )),
            }
        }
        (collected, duration, stored)
    };

    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let settings_store =
        shared::adapters::dynamodb::rules::RulesStore::settings(dynamodb.clone(), setting("RULES_TABLE")?);
    let settings = match settings_store.live().await? {
        Some(p) => Some(AccountSettings::parse(&p.source)?),
        None => None,
    };
    let store = shared::adapters::dynamodb::campaigns::DynamoCampaigns::new(
        dynamodb,
        setting("CAMPAIGNS_TABLE")?,
        setting("USERS_TABLE")?,
    );
    let all = store.list().await?;
    let mut usage = BTreeMap::new();
    for c in all.iter().filter(|c| c.created_at_ms >= since_ms || c.last_sent_at_ms.is_some_and(|t| t >= since_ms)) {
        match store.usage(&c.id, &c.run).await {
            Ok(u) => {
                usage.insert(c.id.clone(), u);
            }
            Err(e) => notes.push(format!("campaign {}: usage not read ({e}): its AWS cost shows as 0", c.id)),
        }
    }
    let tz = settings.as_ref().map(|s| s.timezone.tz().clone()).unwrap_or(jiff::tz::TimeZone::UTC);
    let campaigns = oa::costs::campaign_rows(&all, &usage, since_ms, &tz);
    let month = match month().await {
        Ok(m) => Some(m),
        Err(e) => {
            notes.push(format!("the month's LINE quota not read: {e}"));
            None
        }
    };
    let inputs = Inputs {
        region,
        prices,
        arch,
        memory_mb,
        functions: collected.functions,
        duration,
        campaigns,
        plan: settings.as_ref().map(|s| s.plan.resolve()).transpose()?,
        exchange_rate: settings.as_ref().and_then(|s| s.exchange_rate.clone()),
        fixed: Fixed {
            custom_metrics: collected.metrics_seen.len() as u32,
            alarms,
            secrets: 1,
            stored_log_gb: stored_bytes as f64 / (1024.0 * 1024.0 * 1024.0),
        },
        month,
        since: args.since.clone(),
        price_warning: table.staleness(&today),
        notes,
    };
    let report = inputs.report();
    match args.format {
        Format::Table => print!("{}", report.table(matches!(args.by, By::Campaign))),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Csv => print!("{}", report.csv()),
    }
    Ok(())
}

/// The month's billable messages and quota, from LINE (line-sim locally).
async fn month() -> Result<shared::campaign::price::Month, AnyError> {
    use shared::secrets::{SecretName, SecretSource, Secrets};
    const SECRETS: &[SecretName] = &[SecretName::ChannelAccessToken];
    let sdk = crate::aws_config().await;
    let source = SecretSource::from_env(&shared::config::ProcessEnv, SECRETS)?;
    let secrets = Secrets::load(source.store(&sdk), SECRETS).await?;
    let base = std::env::var("LINE_API_BASE").unwrap_or_else(|_| "https://api.line.me".into());
    let line = shared::adapters::line::LineClient::new(
        &base,
        std::sync::Arc::new(secrets),
        std::time::Duration::from_secs(10),
    )?;
    Ok(line.month().await?)
}
