//! `oa`: the operator's and developer's command line.
//!
//! Aimed at AWS by default: settings come from flags, else the environment; credentials from the
//! SDK's chain. With `--local` (and always for `oa local` and `oa sim`) it talks to the local
//! stack, with settings from `.local/run.env` and `local.env` (see [`oa::target`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use cli::campaign::{
    campaign, friends, settings, suppress, CampaignCommand, FriendsCommand, SettingsCommand, SuppressCommand,
};
use oa::{post_signed, sample, segments, stack};
use serde_json::{Map, Value};

mod cli;

#[derive(Parser)]
#[command(name = "oa", version, about = "LINE OA backend: rules, local stack and test traffic")]
struct Cli {
    /// Talk to the local stack (settings from .local/run.env and local.env). Without it, commands
    /// go to AWS with the SDK's usual credentials, and nothing is read from those files.
    #[arg(long, global = true)]
    local: bool,
    /// A deployed stack: its tables, queues, URLs and secret come from its CloudFormation Outputs
    /// (given before the command: `oa --stack prod rules list`).
    #[arg(long, value_name = "NAME", conflicts_with = "local")]
    stack: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The local stack.
    #[command(subcommand)]
    Local(LocalCommand),
    /// Signed LINE webhooks.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Signed shop events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Reply rules as code: validate, apply, list, test.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Talk to line-sim: send webhooks as LINE would, see what friends received.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Segments: how many friends an expression selects, and who (grammar: README "Segments").
    #[command(subcommand)]
    Segment(SegmentCommand),
    /// Tags: friends per tag, and one friend's tags.
    #[command(subcommand)]
    Tags(TagsCommand),
    /// Account settings as code: time zone, caps, plan, opt-outs (examples/account.yaml).
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Opt-outs: friends never pushed.
    #[command(subcommand)]
    Suppress(SuppressCommand),
    /// Campaigns: create, preview (price), start, status, pause, resume, cancel, resolve, test.
    #[command(subcommand)]
    Campaign(CampaignCommand),
    /// Friends from before the backend: LINE's follower list into the users table.
    #[command(subcommand)]
    Friends(FriendsCommand),
    /// The stack's secret in Secrets Manager: channel secret, access token, shop secret.
    #[command(subcommand)]
    Secrets(oa::secrets::SecretsCommand),
    /// Check a stack end to end (oa --stack NAME doctor, oa --local doctor): what is wrong and what to do.
    Doctor,
    /// Dead letters: list what each queue's DLQ holds, move it back once the cause is fixed.
    #[command(subcommand)]
    Dlq(oa::dlq::DlqCommand),
    /// What each function and campaign cost over a period (oa --local costs, oa --stack NAME costs).
    Costs(cli::costs::CostsArgs),
}

#[derive(Args)]
struct TagTables {
    #[arg(long, env = "TAGS_TABLE")]
    tags_table: String,
    #[arg(long, env = "USERS_TABLE")]
    users_table: String,
}

#[derive(Subcommand)]
enum SegmentCommand {
    /// How many following friends EXPR selects, e.g. 'dessert AND NOT vip'.
    Count {
        expr: String,
        #[command(flatten)]
        tables: TagTables,
    },
    /// The first user IDs EXPR selects.
    Sample {
        expr: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        tables: TagTables,
    },
}

#[derive(Subcommand)]
enum TagsCommand {
    /// Every tag with its number of friends (from the per-tag counters).
    List {
        #[command(flatten)]
        tables: TagTables,
    },
    /// One friend's tags: source, age, expiry; removed and expired ones last.
    Of {
        user_id: String,
        #[command(flatten)]
        tables: TagTables,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Check a rules file; errors name FILE:LINE:COLUMN.
    Validate { file: PathBuf },
    /// Validate, show the changes against the live rules, publish them as a new version.
    Apply {
        file: PathBuf,
        /// Only show what would change.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, env = "RULES_TABLE")]
        table: String,
    },
    /// The live rules.
    List {
        #[arg(long, env = "RULES_TABLE")]
        table: String,
    },
    /// Which rule answers a message, and why (the live rules, or --file).
    Test {
        /// The message text (or postback data with --postback).
        text: Option<String>,
        #[arg(long, conflicts_with = "table")]
        file: Option<PathBuf>,
        #[arg(long, env = "RULES_TABLE")]
        table: Option<String>,
        /// Treat TEXT as postback data.
        #[arg(long)]
        postback: bool,
        /// Test the follow greeting instead (add --unblocked for a returning friend).
        #[arg(long, conflicts_with = "text")]
        follow: bool,
        #[arg(long, requires = "follow")]
        unblocked: bool,
        /// The chat kind: user, group or room.
        #[arg(long, default_value = "user")]
        chat: String,
        /// When, as RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Subcommand)]
enum SimCommand {
    /// Send one event as the LINE platform: signed, with a reply token line-sim honours.
    Send {
        #[arg(long, env = "LINE_API_BASE")]
        sim: String,
        /// The webhook to POST to (default: the one line-sim was started with).
        #[arg(long)]
        url: Option<String>,
        #[command(flatten)]
        event: EventChoice,
        /// Send in standby mode (no reply token).
        #[arg(long)]
        standby: bool,
    },
    /// Redeliver a sent event (same id and token, isRedelivery: true).
    Redeliver {
        #[arg(long, env = "LINE_API_BASE")]
        sim: String,
        #[arg(long)]
        url: Option<String>,
        webhook_event_id: String,
    },
    /// What a friend (or group) received.
    Deliveries {
        #[arg(long, env = "LINE_API_BASE")]
        sim: String,
        to: String,
    },
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Create the template's tables and queues in DynamoDB Local and the SQS emulator (idempotent);
    /// prints the function's resulting settings as KEY=VALUE lines.
    Provision {
        #[arg(long, default_value = "infra/template.yaml")]
        template: PathBuf,
        #[arg(long, default_value = "oa-local")]
        stack: String,
        #[arg(long, default_value = "WebhookFunction")]
        function: String,
    },
    /// Serve the webhook's Function URL locally in front of `cargo lambda watch`, handing bodies
    /// that are not UTF-8 over base64-encoded as a Function URL does.
    Front {
        #[arg(long, default_value = "127.0.0.1:9080")]
        listen: std::net::SocketAddr,
        /// The function's URL under `cargo lambda watch`.
        #[arg(long, default_value = "http://127.0.0.1:9000/lambda-url/webhook")]
        upstream: String,
    },
    /// Feed each function's SQS queue to it under `cargo lambda watch`, like Lambda's event source
    /// mappings (batch size from the template, partial batch failures, visibility timeout, DLQ).
    Poll {
        #[arg(long, default_value = "infra/template.yaml")]
        template: PathBuf,
        #[arg(long, default_value = "oa-local")]
        stack: String,
        /// Where `cargo lambda watch` serves the Lambda Invoke API.
        #[arg(long, env = "LAMBDA_INVOKE_URL", default_value = "http://127.0.0.1:9000")]
        invoke_url: String,
        /// Most invocations at once per queue, whatever the template's MaximumConcurrency says
        /// (two cores locally; `cargo lambda watch --concurrency` must allow as many).
        #[arg(long, env = "POLL_MAX_CONCURRENCY", default_value_t = 5)]
        max_concurrency: usize,
        /// Seconds between two runs of each scheduled function (the template's schedules run
        /// every few minutes on AWS; sooner here, so a local campaign is swept while you look).
        #[arg(long, env = "SWEEP_EVERY_SECS", default_value_t = 30)]
        sweep_every: u64,
    },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Build a LINE-shaped event, sign it and POST it.
    Send(SendArgs),
    /// Print the x-line-signature of a file's bytes.
    Sign {
        file: PathBuf,
        #[arg(long, env = "LINE_CHANNEL_SECRET", hide_env_values = true)]
        secret: String,
    },
}

#[derive(Args)]
struct SendArgs {
    #[arg(long, env = "WEBHOOK_URL")]
    url: String,
    #[arg(long, env = "LINE_CHANNEL_SECRET", hide_env_values = true)]
    secret: String,
    #[command(flatten)]
    event: EventChoice,
    /// Send this file's bytes as the body instead of building one.
    #[arg(long, group = "kind")]
    body_file: Option<PathBuf>,
    /// Reuse a webhookEventId (e.g. to see a redelivery deduplicated).
    #[arg(long)]
    event_id: Option<String>,
    /// Mark the event as a redelivery.
    #[arg(long)]
    redelivery: bool,
    #[arg(long, default_value = "Ud000000000000000000000000000bot0")]
    destination: String,
}

/// Which event to send, shared by `oa webhook send` and `oa sim send`.
#[derive(Args)]
struct EventChoice {
    /// The friend sending it (default: a random user ID).
    #[arg(long)]
    user: Option<String>,
    /// A text message (the default event: --text hi).
    #[arg(long, group = "kind")]
    text: Option<String>,
    #[arg(long, group = "kind")]
    follow: bool,
    #[arg(long, group = "kind")]
    unfollow: bool,
    /// A postback with this data, e.g. "q=dessert&a=yes".
    #[arg(long, group = "kind")]
    postback: Option<String>,
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Sign and POST a shop event.
    Send {
        #[arg(long, env = "EVENTS_URL")]
        url: String,
        #[arg(long, env = "SHOP_EVENTS_SECRET", hide_env_values = true)]
        secret: String,
        /// e.g. view_product, add_to_cart, purchase.
        #[arg(long = "type")]
        kind: String,
        #[arg(long)]
        user: String,
        /// key=value, repeatable.
        #[arg(long = "property")]
        properties: Vec<String>,
        #[arg(long)]
        event_id: Option<String>,
    },
}

fn main() -> ExitCode {
    // Before parsing: flags read their defaults from the environment.
    let args: Vec<String> = std::env::args().collect();
    if oa::target::is_local(&args) {
        let here = std::env::current_dir().unwrap_or_else(|_| ".".into());
        let root = oa::target::repository_root(&here).unwrap_or(here);
        match oa::target::local_settings(&root) {
            Ok((settings, _)) => {
                for (name, value) in oa::target::local_changes(&settings, |n| std::env::var(n).ok()) {
                    // Single-threaded here: nothing else reads the environment yet.
                    match value {
                        Some(v) => unsafe { std::env::set_var(name, v) },
                        None => unsafe { std::env::remove_var(name) },
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else if let Some(name) = oa::target::stack_name(&args) {
        let outputs = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(stack_outputs(&name)));
        match outputs {
            Ok((outputs, parameters)) => {
                for (var, value) in oa::target::stack_settings(&outputs, &parameters) {
                    // Single-threaded here: nothing else reads the environment yet.
                    match value {
                        Some(v) => unsafe { std::env::set_var(var, v) },
                        None => unsafe { std::env::remove_var(var) },
                    }
                }
            }
            Err(e) => {
                eprintln!("error: --stack {name}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyError = Box<dyn std::error::Error>;

/// Prints (to stderr) where a change is about to go.
fn announce(local: bool, sdk: &aws_config::SdkConfig, endpoint_var: &str, what: &str) {
    let endpoint = std::env::var(endpoint_var).ok();
    let region = sdk.region().map(|r| r.to_string());
    eprintln!("{}", oa::target::describe(local, endpoint.as_deref(), region.as_deref(), what));
}

async fn run(cli: Cli) -> Result<(), AnyError> {
    let local = cli.local;
    match cli.command {
        Command::Local(LocalCommand::Provision { template, stack: name, function }) => {
            let template = stack::Template::load(&template)?;
            let sdk = aws_config().await;
            announce(true, &sdk, "AWS_ENDPOINT_URL_DYNAMODB", &format!("create the tables and queues of stack {name}"));
            let created = stack::provision(
                &template,
                &name,
                &aws_sdk_dynamodb::Client::new(&sdk),
                &aws_sdk_sqs::Client::new(&sdk),
            )
            .await?;
            for (k, v) in created.function_env(&template, &function)? {
                println!("{k}={v}");
            }
            Ok(())
        }
        Command::Local(LocalCommand::Front { listen, upstream }) => {
            println!("[front] {listen} -> {upstream}");
            Ok(oa::front::serve(listen, &upstream).await?)
        }
        Command::Local(LocalCommand::Poll { template, stack: name, invoke_url, max_concurrency, sweep_every }) => {
            poll(&template, &name, &invoke_url, max_concurrency, sweep_every).await
        }
        Command::Rules(command) => rules(command, local).await,
        Command::Sim(command) => sim(command).await,
        Command::Segment(command) => segment(command).await,
        Command::Tags(command) => tags(command).await,
        Command::Settings(command) => settings(command, local).await,
        Command::Suppress(command) => suppress(command, local).await,
        Command::Campaign(command) => campaign(command, local).await,
        Command::Friends(command) => friends(command, local).await,
        Command::Secrets(command) => Ok(oa::secrets::run(&aws_config().await, command).await?),
        Command::Doctor => doctor(local, cli.stack).await,
        Command::Dlq(command) => dlq(command, local).await,
        Command::Costs(args) => cli::costs::costs(args, local, cli.stack).await,
        Command::Webhook(WebhookCommand::Sign { file, secret }) => {
            let body = std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            println!("{}", shared::line::signature::sign(&secret, &body));
            Ok(())
        }
        Command::Webhook(WebhookCommand::Send(args)) => send_webhook(args).await,
        Command::Events(EventsCommand::Send { url, secret, kind, user, properties, event_id }) => {
            let mut props = Map::new();
            for p in properties {
                let (k, v) = p.split_once('=').ok_or_else(|| format!("--property {p:?} is not key=value"))?;
                props.insert(k.to_string(), Value::String(v.to_string()));
            }
            let id = event_id.unwrap_or_else(sample::event_id);
            let event = sample::shop_event(&id, &kind, &user, sample::now_ms(), Value::Object(props));
            let body = serde_json::to_vec(&event)?;
            eprintln!("target: POST {url}");
            report(
                post_signed(&reqwest::Client::new(), &url, shared::shop::SHOP_SIGNATURE_HEADER, &secret, body).await?,
                &id,
            )
        }
    }
}

async fn send_webhook(args: SendArgs) -> Result<(), AnyError> {
    let (body, label) = if let Some(file) = &args.body_file {
        (std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?, file.display().to_string())
    } else {
        let e = &args.event;
        let user = e.user.clone().unwrap_or_else(sample::user_id);
        if !shared::shop::is_line_user_id(&user) {
            return Err(format!("--user {user:?} is not a LINE user ID (U + 32 hex digits)").into());
        }
        let id = args.event_id.clone().unwrap_or_else(sample::event_id);
        let now = sample::now_ms();
        let event = if e.follow {
            sample::follow(&id, &user, now, false)
        } else if e.unfollow {
            sample::unfollow(&id, &user, now)
        } else if let Some(data) = &e.postback {
            sample::postback(&id, &user, data, now)
        } else {
            sample::text(&id, &user, e.text.as_deref().unwrap_or("hi"), now)
        };
        let event = if args.redelivery { sample::redelivered(event) } else { event };
        (sample::body(&args.destination, &[event]), id)
    };
    eprintln!("target: POST {}", args.url);
    let response = post_signed(&reqwest::Client::new(), &args.url, "x-line-signature", &args.secret, body).await?;
    report(response, &label)
}

fn report((status, text): (u16, String), label: &str) -> Result<(), AnyError> {
    println!("{status} {text} ({label})");
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the endpoint answered {status}").into())
    }
}

async fn poll(
    template: &std::path::Path,
    name: &str,
    invoke_url: &str,
    max_concurrency: usize,
    sweep_every: u64,
) -> Result<(), AnyError> {
    use std::sync::Arc;
    let template = stack::Template::load(template)?;
    let sdk = aws_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
    let invoker: Arc<dyn oa::poller::Invoker> = Arc::new(oa::poller::HttpInvoker::new(invoke_url));
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut pollers = vec![];
    for mut m in oa::poller::mappings(&template)? {
        m.max_concurrency = m.max_concurrency.min(max_concurrency.max(1));
        let url = stack::queue_url(&template, name, &m.queue, &sqs).await?;
        println!("[poll] {} -> {} ({url}, batch {}, {} at once)", m.queue, m.binary, m.batch_size, m.max_concurrency);
        pollers.push(oa::poller::Poller::new(m, sqs.clone(), &url, &region, invoker.clone()));
    }
    let log = |m: &oa::poller::Mapping, r: &oa::poller::PollReport| match &r.invoke_error {
        Some(e) => println!("[poll] {}: {e}", m.queue),
        None => println!(
            "[poll] {} -> {}: {} received, {} deleted, {} left for retry",
            m.queue, m.binary, r.received, r.deleted, r.returned
        ),
    };
    // The schedules (the sweep), every `sweep_every` seconds instead of the template's rate.
    let every = std::time::Duration::from_secs(sweep_every.max(1));
    let schedules = oa::poller::schedules(&template)?;
    for s in &schedules {
        println!("[schedule] {} ({}) every {}s here", s.binary, s.expression, every.as_secs());
    }
    let scheduled = schedules.iter().map(|s| {
        let (invoker, region) = (invoker.clone(), region.clone());
        async move {
            loop {
                tokio::time::sleep(every).await;
                let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
                match invoker.invoke(&s.binary, oa::poller::scheduled_event(&region, &now)).await {
                    Ok(answer) => println!("[schedule] {}: {answer}", s.binary),
                    Err(e) => println!("[schedule] {}: {e}", s.binary),
                }
            }
        }
    });
    // Every queue polled at once, and the schedules, until the process is stopped.
    tokio::join!(
        futures::future::join_all(pollers.iter().map(|p| p.run(stop.clone(), log))),
        futures::future::join_all(scheduled),
    );
    Ok(())
}

async fn rules(command: RulesCommand, local: bool) -> Result<(), AnyError> {
    use oa::rules;
    use shared::adapters::dynamodb::rules::RulesStore;
    let store = |table: String, change: Option<&'static str>| async move {
        let sdk = aws_config().await;
        if let Some(what) = change {
            announce(local, &sdk, "AWS_ENDPOINT_URL_DYNAMODB", &format!("{what} table {table}"));
        }
        RulesStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)
    };
    match command {
        RulesCommand::Validate { file } => {
            let (_, book) = rules::load(&file)?;
            let f = &book.file;
            println!(
                "{}: valid ({} text rules, {} postback rules{}{}; tags: {} keyword rules, {} postback rules, {} shop event types)",
                file.display(),
                f.replies.len(),
                f.postbacks.len(),
                if f.follow.is_some() { ", follow greeting" } else { "" },
                if f.fallback.is_some() { ", fallback" } else { "" },
                f.tags.keywords.len(),
                f.tags.postbacks.len(),
                f.tags.shop.len(),
            );
        }
        RulesCommand::Apply { file, dry_run, table } => {
            let store = store(table, Some(if dry_run { "compare with" } else { "publish rules to" })).await;
            match rules::apply(&store, &file, dry_run, sample::now_ms()).await? {
                rules::Applied::Unchanged { version } => println!("no changes: version {version} is live"),
                rules::Applied::WouldChange { changes } => {
                    println!("would change (dry run, nothing written):");
                    changes.iter().for_each(|c| println!("  {c}"));
                }
                rules::Applied::Published { version, changes } => {
                    changes.iter().for_each(|c| println!("  {c}"));
                    println!("published version {version}");
                }
            }
        }
        RulesCommand::List { table } => match store(table, None).await.live().await? {
            None => println!("no rules applied yet (oa rules apply FILE)"),
            Some(live) => {
                let book = shared::rules::RuleBook::parse(&live.source)?;
                println!("version {} (sha256 {})", live.version, &live.sha256[..12]);
                print!("{}", rules::list(&book));
            }
        },
        RulesCommand::Test { text, file, table, postback, follow, unblocked, chat, at } => {
            let book = match (file, table) {
                (Some(f), _) => rules::load(&f)?.1,
                (None, Some(t)) => {
                    let live = store(t, None).await.live().await?.ok_or("no rules applied yet; give --file")?;
                    shared::rules::RuleBook::parse(&live.source)?
                }
                (None, None) => return Err("give --file FILE, or RULES_TABLE for the live rules".into()),
            };
            let source = match chat.as_str() {
                "user" => shared::rules::file::SourceKind::User,
                "group" => shared::rules::file::SourceKind::Group,
                "room" => shared::rules::file::SourceKind::Room,
                other => return Err(format!("--chat {other:?}: use user, group or room").into()),
            };
            let at = match at {
                Some(a) => a.parse::<jiff::Timestamp>().map_err(|e| format!("--at {a:?}: {e}"))?,
                None => jiff::Timestamp::now(),
            };
            let text = text.unwrap_or_default();
            let trigger = if follow {
                shared::rules::Trigger::Follow { unblocked }
            } else if postback {
                shared::rules::Trigger::Postback(&text)
            } else {
                shared::rules::Trigger::Text(&text)
            };
            print!("{}", rules::explain(&book, trigger, source, at));
        }
    }
    Ok(())
}

async fn sim(command: SimCommand) -> Result<(), AnyError> {
    use serde_json::json;
    match command {
        SimCommand::Send { sim, url, event: e, standby } => {
            let user = e.user.unwrap_or_else(sample::user_id);
            let mut event = if e.follow {
                json!({ "type": "follow", "userId": user })
            } else if e.unfollow {
                json!({ "type": "unfollow", "userId": user })
            } else if let Some(data) = e.postback {
                json!({ "type": "postback", "userId": user, "data": data })
            } else {
                json!({ "type": "message", "userId": user, "text": e.text.unwrap_or_else(|| "hi".into()) })
            };
            if standby {
                event["mode"] = "standby".into();
            }
            let client = line_sim::client::SimClient::new(&sim);
            let sent = client.send(url.as_deref(), vec![event]).await?;
            println!(
                "{} {} (webhookEventId {}, user {user})",
                sent.status, sent.body, sent.events[0]["webhookEventId"]
            );
        }
        SimCommand::Redeliver { sim, url, webhook_event_id } => {
            let client = line_sim::client::SimClient::new(&sim);
            let sent = client.redeliver(url.as_deref(), &[&webhook_event_id]).await?;
            println!("{} {}", sent.status, sent.body);
        }
        SimCommand::Deliveries { sim, to } => {
            let client = line_sim::client::SimClient::new(&sim);
            println!("{}", serde_json::to_string_pretty(&client.deliveries(&to).await?)?);
        }
    }
    Ok(())
}

async fn tag_reader(tables: TagTables) -> shared::adapters::dynamodb::tags::DynamoTags {
    let sdk = aws_config().await;
    shared::adapters::dynamodb::tags::DynamoTags::reader(
        aws_sdk_dynamodb::Client::new(&sdk),
        tables.tags_table,
        tables.users_table,
    )
}

async fn segment(command: SegmentCommand) -> Result<(), AnyError> {
    use shared::segment::resolve::Resolver;
    let now = shared::ports::Clock::now_ms(&shared::ports::SystemClock);
    let started = std::time::Instant::now();
    match command {
        SegmentCommand::Count { expr, tables } => {
            let parsed = segments::parse(&expr)?;
            let index = tag_reader(tables).await;
            let counted = Resolver::new(&index).count(&parsed, now).await?;
            println!("{}", counted.friends);
            eprintln!("{parsed}: {}", segments::cost(&counted.read, started.elapsed()));
        }
        SegmentCommand::Sample { expr, limit, tables } => {
            let parsed = segments::parse(&expr)?;
            let index = tag_reader(tables).await;
            let page = Resolver::new(&index).page(&parsed, now, None, limit).await?;
            for user in &page.user_ids {
                println!("{user}");
            }
            eprintln!("{parsed}: {} shown; {}", page.user_ids.len(), segments::cost(&page.read, started.elapsed()));
        }
    }
    Ok(())
}

async fn tags(command: TagsCommand) -> Result<(), AnyError> {
    let now = shared::ports::Clock::now_ms(&shared::ports::SystemClock);
    match command {
        TagsCommand::List { tables } => {
            print!("{}", segments::format_counts(&tag_reader(tables).await.counts(now).await?))
        }
        TagsCommand::Of { user_id, tables } => {
            print!("{}", segments::format_tags_of(&tag_reader(tables).await.tags_of(&user_id).await?, now))
        }
    }
    Ok(())
}

async fn doctor(local: bool, stack: Option<String>) -> Result<(), AnyError> {
    let sdk = aws_config().await;
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "no region".into());
    match (&stack, local) {
        (_, true) => eprintln!("doctor: the local stack"),
        (Some(name), _) => eprintln!("doctor: stack {name} in {region}"),
        (None, _) => eprintln!("doctor: the stack the environment names, in {region} (--stack NAME reads it all)"),
    }
    // No redirects: a webhook URL that redirects is itself a finding, not something to follow.
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let doctor = oa::doctor::Doctor { sdk, local, stack, env: Box::new(|name| std::env::var(name).ok()), http };
    let (text, passed) = oa::doctor::report(&doctor.run().await);
    print!("{text}");
    if passed {
        Ok(())
    } else {
        Err("the stack is not ready: see FAIL above".into())
    }
}

async fn dlq(command: oa::dlq::DlqCommand, local: bool) -> Result<(), AnyError> {
    use oa::dlq::DlqCommand;
    let sdk = aws_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let env = |name: &str| std::env::var(name).ok();
    match command {
        DlqCommand::List { queue, limit, body } => {
            let pairs = oa::dlq::pairs(queue.as_deref(), env)?;
            print!("{}", oa::dlq::list(&sqs, &pairs, limit, body).await?);
        }
        DlqCommand::Purge { queue, yes } => {
            let pair = oa::dlq::pairs(Some(&queue), env)?.remove(0);
            if !yes {
                return Err(format!("this deletes every message in {} for good: add --yes", pair.dlq).into());
            }
            announce(local, &sdk, "AWS_ENDPOINT_URL_SQS", &format!("delete every message of {}", pair.dlq));
            let n = oa::dlq::purge(&sqs, &pair).await?;
            println!("{n} dead letter(s) of {} deleted (SQS may take up to a minute to finish)", pair.name);
        }
        DlqCommand::Redrive { queue, max } => {
            let pair = oa::dlq::pairs(Some(&queue), env)?.remove(0);
            announce(
                local,
                &sdk,
                "AWS_ENDPOINT_URL_SQS",
                &format!("move dead letters from {} to {}", pair.dlq, pair.queue),
            );
            let done = oa::dlq::redrive(&sqs, &pair, max).await?;
            println!("{} message(s) moved from {}'s dead-letter queue back to {}", done.moved, pair.name, pair.queue);
            let (visible, in_flight) = oa::dlq::depth(&sqs, &pair.dlq).await?;
            if visible + in_flight > 0 {
                println!("{} left in the dead-letter queue ({in_flight} not visible yet)", visible + in_flight);
            }
            if let Some(why) = done.stopped {
                return Err(why.into());
            }
        }
    }
    Ok(())
}

/// A deployed stack's Outputs and Parameters (CloudFormation `DescribeStacks`), as (key, value).
type Pairs = Vec<(String, String)>;
async fn stack_outputs(name: &str) -> Result<(Pairs, Pairs), String> {
    let sdk = aws_config().await;
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "no region".into());
    let out = aws_sdk_cloudformation::Client::new(&sdk)
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| format!("cannot read the stack in {region}: {}", shared::adapters::sdk::describe(&e)))?;
    let stack = out.stacks().first().ok_or_else(|| format!("no stack {name} in {region}"))?;
    let outputs = stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect();
    let parameters = stack
        .parameters()
        .iter()
        .filter_map(|p| Some((p.parameter_key()?.to_string(), p.parameter_value()?.to_string())))
        .collect();
    Ok((outputs, parameters))
}

async fn aws_config() -> aws_config::SdkConfig {
    shared::aws::sdk_config(std::time::Duration::from_secs(10)).await
}
