//! Settings of the campaign planner, read once at start-up; a missing one is named.

use std::time::Duration;

use shared::config::{parsed_or, queue_url, required, ConfigError, EnvSource};

#[derive(Debug, Clone)]
pub struct Config {
    /// CAMPAIGNS_TABLE: campaigns, their batches and the planner's checkpoint.
    pub campaigns_table: String,
    /// USERS_TABLE: follow state, opt-outs and cap sets per friend.
    pub users_table: String,
    /// TAGS_TABLE: the tag index segments are resolved from.
    pub tags_table: String,
    /// MULTICAST_QUEUE_URL: one message per planned batch.
    pub multicast_queue_url: String,
    /// CAMPAIGN_QUEUE_URL: continuations (a segment larger than one invocation plans) and
    /// scheduled starts.
    pub campaign_queue_url: String,
    /// METRICS_NAMESPACE: the CloudWatch namespace of the sweep's metrics (the stack's name;
    /// default `line-oa`).
    pub metrics_namespace: String,
    /// AWS_OPERATION_TIMEOUT_MS (default 3000).
    pub aws_operation_timeout: Duration,
}

impl Config {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Ok(Config {
            campaigns_table: required(env, "CAMPAIGNS_TABLE")?,
            users_table: required(env, "USERS_TABLE")?,
            tags_table: required(env, "TAGS_TABLE")?,
            multicast_queue_url: queue_url(env, "MULTICAST_QUEUE_URL")?,
            campaign_queue_url: queue_url(env, "CAMPAIGN_QUEUE_URL")?,
            metrics_namespace: env.get("METRICS_NAMESPACE").unwrap_or_else(|| "line-oa".into()),
            aws_operation_timeout: Duration::from_millis(parsed_or(env, "AWS_OPERATION_TIMEOUT_MS", 3000u64)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_missing_setting_is_named() {
        let env: HashMap<&str, &str> =
            HashMap::from([("CAMPAIGNS_TABLE", "c"), ("USERS_TABLE", "u"), ("TAGS_TABLE", "t")]);
        assert_eq!(
            Config::from_env(&env).unwrap_err().to_string(),
            "missing required environment variable MULTICAST_QUEUE_URL"
        );
    }
}
