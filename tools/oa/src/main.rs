//! `oa`: the operator's and developer's command line.
//!
//! Settings come from flags, else the environment, else `.local/run.env` (the local stack's effective
//! settings, ports moved included), else `local.env`, in the current directory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use oa::{post_signed, sample, stack};
use serde_json::{Map, Value};

#[derive(Parser)]
#[command(name = "oa", version, about = "LINE OA backend: local stack and test traffic")]
struct Cli {
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
    // dotenvy never overrides a variable already set, so the first file that sets one wins.
    for file in [".local/run.env", "local.env"] {
        if std::path::Path::new(file).exists() {
            let _ = dotenvy::from_filename(file);
        }
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyError = Box<dyn std::error::Error>;

async fn run(cli: Cli) -> Result<(), AnyError> {
    match cli.command {
        Command::Local(LocalCommand::Provision { template, stack: name, function }) => {
            let template = stack::Template::load(&template)?;
            let sdk = aws_config_for_local().await;
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
        let user = args.user.clone().unwrap_or_else(sample::user_id);
        if !shared::shop::is_line_user_id(&user) {
            return Err(format!("--user {user:?} is not a LINE user ID (U + 32 hex digits)").into());
        }
        let id = args.event_id.clone().unwrap_or_else(sample::event_id);
        let now = sample::now_ms();
        let event = if args.follow {
            sample::follow(&id, &user, now, false)
        } else if args.unfollow {
            sample::unfollow(&id, &user, now)
        } else if let Some(data) = &args.postback {
            sample::postback(&id, &user, data, now)
        } else {
            sample::text(&id, &user, args.text.as_deref().unwrap_or("hi"), now)
        };
        let event = if args.redelivery { sample::redelivered(event) } else { event };
        (sample::body(&args.destination, &[event]), id)
    };
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

async fn aws_config_for_local() -> aws_config::SdkConfig {
    shared::aws::sdk_config(std::time::Duration::from_secs(10)).await
}
