//! AWS SDK clients, configured once from the environment.
//!
//! Endpoints come from `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_SQS` (read by aws-config
//! itself), so the same binary talks to DynamoDB Local and the SQS emulator locally and to AWS in
//! production. Each operation is bounded so a request never runs into LINE's 2 s webhook deadline.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the shared SDK configuration with an upper bound per operation (all retries included).
pub async fn sdk_config(operation_timeout: Duration) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(500))
                .operation_timeout(operation_timeout)
                .build(),
        )
        .load()
        .await
}
