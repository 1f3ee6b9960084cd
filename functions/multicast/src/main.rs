//! Wiring: configuration, SDK clients and the LINE client, built once per cold start.

// No panics on data from outside: a panic fails the whole batch or request.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

use lambda_runtime::Error;
use multicast::config::Config;
use multicast::{function_handler, Deps};
use shared::config::ProcessEnv;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = Config::from_env(&ProcessEnv).inspect_err(|e| tracing::error!("configuration: {e}"))?;
    let sdk = shared::aws::sdk_config(config.aws_operation_timeout).await;
    let deps = Deps::new(&config, &sdk).await.inspect_err(|e| tracing::error!("start-up: {e}"))?;
    shared::costs::meter::run("multicast", |event| function_handler(&deps, event)).await
}
