//! Wiring: configuration, SDK clients and adapters, built once per cold start.

// No panics on data from outside: a panic fails the whole batch or request.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

use lambda_http::Error;
use shared::config::ProcessEnv;
use webhook::config::Config;
use webhook::{function_handler, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = Config::from_env(&ProcessEnv).inspect_err(|e| tracing::error!("configuration: {e}"))?;
    let sdk = shared::aws::sdk_config(config.aws_operation_timeout).await;
    let deps = Deps::new(config, &sdk).await.inspect_err(|e| tracing::error!("secrets: {e}"))?;
    shared::costs::meter::run_http("webhook", |req| function_handler(&deps, req)).await
}
