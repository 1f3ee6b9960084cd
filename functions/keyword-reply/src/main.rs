//! Wiring: configuration, SDK clients, the LINE client and the rules cache, built once per cold start.

// No panics on data from outside: a panic fails the whole batch or request.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

use keyword_reply::config::Config;
use keyword_reply::{function_handler, Deps};
use lambda_runtime::Error;
use shared::config::ProcessEnv;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = Config::from_env(&ProcessEnv).inspect_err(|e| tracing::error!("configuration: {e}"))?;
    let sdk = shared::aws::sdk_config(config.aws_operation_timeout).await;
    let deps = Deps::new(&config, &sdk).await.inspect_err(|e| tracing::error!("start-up: {e}"))?;
    shared::costs::meter::run("keyword-reply", |event| function_handler(&deps, event)).await
}
