//! Wiring: configuration, the DynamoDB client and the rules cache, built once per cold start.

// No panics on data from outside: a panic fails the whole batch or request.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

use lambda_runtime::Error;
use shared::config::ProcessEnv;
use tagger::config::Config;
use tagger::{function_handler, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = Config::from_env(&ProcessEnv).inspect_err(|e| tracing::error!("configuration: {e}"))?;
    let sdk = shared::aws::sdk_config(config.aws_operation_timeout).await;
    let (dynamodb, units) = shared::adapters::dynamodb::capacity::client(&sdk);
    let mut deps = Deps::new(&config, dynamodb)?;
    deps.meter.dynamodb = units;
    shared::costs::meter::run("tagger", |event| function_handler(&deps, event)).await
}
