//! Wiring: configuration, SDK clients and adapters, built once per cold start.

use lambda_http::{run, service_fn, Error};
use shared::config::ProcessEnv;
use webhook::config::Config;
use webhook::{function_handler, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env(&ProcessEnv).inspect_err(|e| tracing::error!("configuration: {e}"))?;
    let sdk = shared::aws::sdk_config(config.aws_operation_timeout).await;
    let deps = Deps::new(config, &sdk);
    run(service_fn(|req| function_handler(&deps, req))).await
}
