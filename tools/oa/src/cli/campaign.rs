//! `oa settings`, `oa suppress`, `oa campaign` and `oa friends`: the commands that work on the
//! campaigns side of a stack (account settings, opt-outs, campaigns, the follower import), with
//! the tables, queues and LINE client they share ([`CampaignEnv`]).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use oa::sample;

use crate::{announce, aws_config, AnyError};

#[derive(Subcommand)]
pub(crate) enum FriendsCommand {
    /// Record every follower LINE lists as following (friends whose state events recorded are
    /// left alone); goes on where an unfinished import stopped. Verified and premium accounts only.
    Import {
        /// Start from LINE's first page, forgetting an unfinished import's place.
        #[arg(long)]
        restart: bool,
        #[command(flatten)]
        env: CampaignEnv,
    },
}

#[derive(Args)]
pub(crate) struct CampaignEnv {
    #[arg(long, env = "CAMPAIGNS_TABLE")]
    campaigns_table: String,
    #[arg(long, env = "USERS_TABLE")]
    users_table: String,
    #[arg(long, env = "TAGS_TABLE")]
    tags_table: String,
    #[arg(long, env = "RULES_TABLE")]
    rules_table: String,
    #[arg(long, env = "CAMPAIGN_QUEUE_URL")]
    campaign_queue_url: String,
    #[arg(long, env = "MULTICAST_QUEUE_URL")]
    multicast_queue_url: String,
    #[arg(long, env = "LINE_API_BASE", default_value = "https://api.line.me")]
    line_api_base: String,
}

#[derive(Subcommand)]
pub(crate) enum SettingsCommand {
    /// Check a settings file; errors name FILE:LINE:COLUMN.
    Validate { file: PathBuf },
    /// Validate and publish as a new version; opt-outs follow its `suppress:` list.
    Apply {
        file: PathBuf,
        #[command(flatten)]
        env: CampaignEnv,
    },
    /// The live settings.
    Show {
        #[command(flatten)]
        env: CampaignEnv,
    },
}

#[derive(Subcommand)]
pub(crate) enum SuppressCommand {
    /// Opt friends out of every push.
    Add {
        users: Vec<String>,
        #[command(flatten)]
        env: CampaignEnv,
    },
    /// Opt friends back in (only opt-outs made with `oa suppress add`).
    Remove {
        users: Vec<String>,
        #[command(flatten)]
        env: CampaignEnv,
    },
    List {
        #[command(flatten)]
        env: CampaignEnv,
    },
}

#[derive(Subcommand)]
pub(crate) enum CampaignCommand {
    /// Check a campaign file (FILE:LINE:COLUMN errors; the messages are checked by LINE at create).
    Validate { file: PathBuf },
    /// Create a draft from a file, after LINE's validator accepted its messages.
    Create {
        file: PathBuf,
        /// Send to friends an earlier run of the same id was sent to as well (by default they are
        /// skipped as `alreadySent`: a campaign recreated after a cancel is not pushed twice).
        #[arg(long)]
        resend: bool,
        #[command(flatten)]
        env: CampaignEnv,
    },
    /// Who gets it, who not and why, and what it costs this month (a file or a campaign id).
    Preview {
        file_or_id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        env: CampaignEnv,
    },
    /// Start a draft (now, or at its schedule).
    Start {
        id: String,
        #[command(flatten)]
        env: CampaignEnv,
    },
    List {
        #[command(flatten)]
        env: CampaignEnv,
    },
    Show {
        id: String,
        #[command(flatten)]
        env: CampaignEnv,
    },
    /// Live progress: sent of planned, rate, ETA, billable messages.
    Status {
        id: String,
        #[arg(long)]
        json: bool,
        /// Return once the campaign is done, paused, cancelled or needs attention.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        env: CampaignEnv,
    },
    Pause {
        id: String,
        #[command(flatten)]
        env: CampaignEnv,
    },
    Resume {
        id: String,
        #[command(flatten)]
        env: CampaignEnv,
    },
    /// Decide the batches whose outcome is unknown (LINE's answer never came and its retry keys
    /// are forgotten after 24 h): check LINE's statistics (the campaign's aggregationUnit), then
    /// say --delivered (counted sent) or --not-delivered (counted failed, cap slots given back).
    Resolve {
        id: String,
        #[arg(long, conflicts_with = "not_delivered", required_unless_present = "not_delivered")]
        delivered: bool,
        #[arg(long)]
        not_delivered: bool,
        #[command(flatten)]
        env: CampaignEnv,
    },
    Cancel {
        id: String,
        #[command(flatten)]
        env: CampaignEnv,
    },
    /// A test push to a few named friends, outside caps and counters.
    Test {
        id: String,
        #[arg(long, num_args = 1.., required = true)]
        to: Vec<String>,
        #[command(flatten)]
        env: CampaignEnv,
    },
}

async fn campaigns(env: &CampaignEnv, local: bool, change: Option<&str>) -> Result<oa::campaigns::Campaigns, AnyError> {
    use shared::adapters::sqs::SqsWorkQueue;
    use shared::secrets::{SecretName, SecretSource, Secrets};
    let sdk = aws_config().await;
    if let Some(what) = change {
        announce(local, &sdk, "AWS_ENDPOINT_URL_DYNAMODB", what);
    }
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let dynamodb_for_pacer = dynamodb.clone();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    // The access token (validator, quota, test pushes): LINE_SECRET_ARN, or locally the variable.
    const SECRETS: &[SecretName] = &[SecretName::ChannelAccessToken];
    let source = SecretSource::from_env(&shared::config::ProcessEnv, SECRETS)?;
    let secrets = Secrets::load(source.store(&sdk), SECRETS).await?;
    let line = shared::adapters::line::LineClient::new(
        &env.line_api_base,
        std::sync::Arc::new(secrets),
        std::time::Duration::from_secs(10),
    )?;
    Ok(oa::campaigns::Campaigns {
        store: std::sync::Arc::new(shared::adapters::dynamodb::campaigns::DynamoCampaigns::new(
            dynamodb.clone(),
            &env.campaigns_table,
            &env.users_table,
        )),
        settings: shared::adapters::dynamodb::rules::RulesStore::settings(dynamodb.clone(), &env.rules_table),
        index: Box::new(shared::adapters::dynamodb::tags::DynamoTags::reader(
            dynamodb,
            &env.tags_table,
            &env.users_table,
        )),
        line,
        plans: Box::new(SqsWorkQueue::new(sqs.clone(), &env.campaign_queue_url)),
        batches: Box::new(SqsWorkQueue::new(sqs, &env.multicast_queue_url)),
        pacer: Box::new(shared::adapters::dynamodb::schedule::DynamoPacer::new(
            dynamodb_for_pacer,
            &env.campaigns_table,
        )),
    })
}

pub(crate) async fn friends(command: FriendsCommand, local: bool) -> Result<(), AnyError> {
    let FriendsCommand::Import { restart, env } = command;
    let c = campaigns(&env, local, Some(&format!("import followers into table {}", env.users_table))).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let friends = shared::adapters::dynamodb::ingest::DynamoFriends::new(dynamodb.clone(), &env.users_table);
    let import = oa::friends::Import {
        line: &c.line,
        friends: &friends,
        dynamodb: &dynamodb,
        campaigns_table: &env.campaigns_table,
    };
    let done = import
        .run(restart, sample::now_ms(), |p| {
            eprintln!("page {}: {} listed, {} new", p.pages, p.listed, p.added);
        })
        .await?;
    println!(
        "imported: {} followers listed by LINE, {} recorded as following, {} already known{}",
        done.listed,
        done.added,
        done.listed - done.added,
        if done.resumed { " (went on from an unfinished import)" } else { "" }
    );
    Ok(())
}

pub(crate) async fn settings(command: SettingsCommand, local: bool) -> Result<(), AnyError> {
    let now = sample::now_ms();
    match command {
        SettingsCommand::Validate { file } => {
            let (_, s) = oa::campaigns::load_settings_file(&file)?;
            println!(
                "{}: valid (time zone {}, {} caps, {} opt-outs)",
                file.display(),
                s.timezone.name(),
                s.caps.len(),
                s.suppress.len()
            );
        }
        SettingsCommand::Apply { file, env } => {
            let c = campaigns(&env, local, Some(&format!("publish settings to table {}", env.rules_table))).await?;
            print!("{}", c.apply_settings(&file, now).await?);
        }
        SettingsCommand::Show { env } => {
            let c = campaigns(&env, local, None).await?;
            match c.settings.live().await? {
                None => println!("no settings applied yet (oa settings apply FILE)"),
                Some(p) => print!("# version {}\n{}", p.version, p.source),
            }
        }
    }
    Ok(())
}

pub(crate) async fn suppress(command: SuppressCommand, local: bool) -> Result<(), AnyError> {
    let now = sample::now_ms();
    match command {
        SuppressCommand::Add { users, env } | SuppressCommand::Remove { users, env } if users.is_empty() => {
            let _ = env;
            Err("give one or more user IDs".into())
        }
        SuppressCommand::Add { users, env } => {
            let c = campaigns(&env, local, Some(&format!("opt friends out in table {}", env.users_table))).await?;
            for u in &users {
                if !shared::shop::is_line_user_id(u) {
                    return Err(format!("{u:?} is not a LINE user ID").into());
                }
                let changed = c.store.suppress(u, true, "cli", now).await?;
                println!("{u}: {}", if changed { "opted out" } else { "already opted out" });
            }
            Ok(())
        }
        SuppressCommand::Remove { users, env } => {
            let c = campaigns(&env, local, Some(&format!("opt friends back in in table {}", env.users_table))).await?;
            for u in &users {
                let changed = c.store.suppress(u, false, "cli", now).await?;
                println!("{u}: {}", if changed { "opted back in" } else { "not opted out with oa suppress add" });
            }
            Ok(())
        }
        SuppressCommand::List { env } => {
            let c = campaigns(&env, local, None).await?;
            for (u, by) in c.store.suppressed().await? {
                println!("{u}  ({by})");
            }
            Ok(())
        }
    }
}

pub(crate) async fn campaign(command: CampaignCommand, local: bool) -> Result<(), AnyError> {
    use oa::campaigns::{format_preview, format_show, status_json, status_line};
    let now = sample::now_ms();
    match command {
        CampaignCommand::Validate { file } => {
            let (_, f) = oa::campaigns::load_campaign(&file)?;
            println!(
                "{}: valid (campaign {}, {} messages, segment {})",
                file.display(),
                f.id,
                f.messages.0.len(),
                f.segment
            );
        }
        CampaignCommand::Create { file, resend, env } => {
            let c =
                campaigns(&env, local, Some(&format!("create a campaign in table {}", env.campaigns_table))).await?;
            let created = c.create(&file, resend, now).await?;
            println!(
                "created campaign {} (run {}) as a draft{}: preview it, then oa campaign start {}",
                created.id,
                created.run,
                if resend { ", resending to friends earlier runs reached" } else { "" },
                created.id
            );
        }
        CampaignCommand::Preview { file_or_id, json, env } => {
            let c = campaigns(&env, local, None).await?;
            let preview = c.preview(&file_or_id, now).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&preview)?);
            } else {
                print!("{}", format_preview(&preview));
            }
        }
        CampaignCommand::Start { id, env } => {
            let c = campaigns(&env, local, Some(&format!("start campaign {id} (billed pushes)"))).await?;
            let started = c.start(&id, now).await?;
            println!("campaign {id} is {}: follow it with oa campaign status {id}", started.state.name());
        }
        CampaignCommand::List { env } => {
            let c = campaigns(&env, local, None).await?;
            for k in c.admin().list().await? {
                println!(
                    "{:<24} {:<14} {}/{} sent  {}",
                    k.id,
                    k.state.name(),
                    k.counters.sent,
                    k.counters.planned,
                    k.name
                );
            }
        }
        CampaignCommand::Show { id, env } => {
            let c = campaigns(&env, local, None).await?;
            let k = c.admin().get(&id).await?;
            print!("{}", format_show(&k));
        }
        CampaignCommand::Status { id, json, wait, env } => {
            use std::io::{IsTerminal, Write};
            let c = campaigns(&env, local, None).await?;
            let live = !json && std::io::stderr().is_terminal();
            loop {
                let k = c.admin().get(&id).await?;
                let settled = k.state.is_settled() || k.state == shared::campaign::model::State::Draft;
                if !json {
                    if live {
                        eprint!("\r\x1b[2K{}", status_line(&k));
                        let _ = std::io::stderr().flush();
                    } else if !wait || settled {
                        println!("{}", status_line(&k));
                    }
                }
                if !wait || settled {
                    if live {
                        eprintln!();
                    }
                    if json {
                        println!("{}", serde_json::to_string_pretty(&status_json(&k))?);
                    }
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        CampaignCommand::Pause { id, env } => {
            let c = campaigns(&env, local, Some(&format!("pause campaign {id}"))).await?;
            println!("campaign {id} is {}", c.pause(&id).await?.state.name());
        }
        CampaignCommand::Resume { id, env } => {
            let c = campaigns(&env, local, Some(&format!("resume campaign {id} (billed pushes)"))).await?;
            println!("campaign {id} is {}", c.resume(&id, now).await?.state.name());
        }
        CampaignCommand::Resolve { id, delivered, not_delivered: _, env } => {
            let c = campaigns(&env, local, Some(&format!("resolve unknown outcomes of campaign {id}"))).await?;
            let (batches, recipients, after) = c.resolve(&id, delivered, now).await?;
            let said = if delivered { "delivered" } else { "not delivered" };
            println!(
                "{batches} batches ({recipients} friends) resolved as {said}; campaign {id} is {}",
                after.state.name()
            );
        }
        CampaignCommand::Cancel { id, env } => {
            let c = campaigns(&env, local, Some(&format!("cancel campaign {id}"))).await?;
            println!("campaign {id} is {}", c.cancel(&id).await?.state.name());
        }
        CampaignCommand::Test { id, to, env } => {
            let c = campaigns(&env, local, Some(&format!("test-push campaign {id} to {} friends", to.len()))).await?;
            println!("{}", c.test(&id, &to).await?);
        }
    }
    Ok(())
}
