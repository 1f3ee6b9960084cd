//! `line-sim`: serves the simulated LINE Messaging API.
//!
//! Settings (environment): LINE_SIM_ADDR (127.0.0.1:8090), LINE_CHANNEL_SECRET and
//! LINE_CHANNEL_ACCESS_TOKEN (required), WEBHOOK_URL (default target of the webhook sender),
//! LINE_SIM_MONTHLY_QUOTA (messages a month; unlimited when unset), LINE_SIM_SEED.

use std::net::SocketAddr;

use line_sim::{LineSim, SimConfig};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn required(name: &str) -> Result<String, String> {
    env(name).ok_or_else(|| format!("{name} is not set"))
}

fn parse<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
    env(name).map(|v| v.parse().map_err(|_| format!("{name}={v:?} is not valid"))).transpose()
}

async fn run() -> Result<(), String> {
    let addr: SocketAddr = parse("LINE_SIM_ADDR")?.unwrap_or_else(|| ([127, 0, 0, 1], 8090).into());
    let mut config = SimConfig::new(required("LINE_CHANNEL_SECRET")?, required("LINE_CHANNEL_ACCESS_TOKEN")?);
    config.webhook_url = env("WEBHOOK_URL");
    config.settings.monthly_quota = parse("LINE_SIM_MONTHLY_QUOTA")?;
    config.seed = parse("LINE_SIM_SEED")?.unwrap_or(1);
    let sim = LineSim::start(config, addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(addr = %sim.addr, "line-sim listening");
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    Ok(())
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    if let Err(e) = run().await {
        eprintln!("line-sim: {e}");
        std::process::exit(2);
    }
}
