//! The webhook function's settings, read once at start-up.

use std::time::Duration;

use shared::config::{parsed_or, queue_url, required, ConfigError, EnvSource, Secret};

#[derive(Debug, Clone)]
pub struct Config {
    /// LINE_CHANNEL_SECRET: verifies `x-line-signature`.
    pub channel_secret: Secret,
    /// SHOP_EVENTS_SECRET: verifies `x-shop-signature` on `POST /events`.
    pub shop_events_secret: Secret,
    /// EVENTS_TABLE: idempotency records, one per event key.
    pub events_table: String,
    /// USERS_TABLE: follow/block state per friend.
    pub users_table: String,
    /// REPLY_QUEUE_URL / TAG_QUEUE_URL: the FIFO queues the consumers read.
    pub reply_queue_url: String,
    pub tag_queue_url: String,
    /// IDEMPOTENCY_TTL_HOURS (default 168): how long a processed event keeps redeliveries out.
    pub idempotency_ttl: Duration,
    /// IDEMPOTENCY_IN_PROGRESS_SECS (default 30): how long a claim blocks a concurrent twin; longer
    /// than the function timeout, so a crashed claim frees itself for the next redelivery.
    pub in_progress_timeout: Duration,
    /// AWS_OPERATION_TIMEOUT_MS (default 1500): cap per DynamoDB/SQS call, retries included, so the
    /// answer to LINE stays inside its 2 s deadline.
    pub aws_operation_timeout: Duration,
}

impl Config {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Ok(Self {
            channel_secret: Secret::new(required(env, "LINE_CHANNEL_SECRET")?),
            shop_events_secret: Secret::new(required(env, "SHOP_EVENTS_SECRET")?),
            events_table: required(env, "EVENTS_TABLE")?,
            users_table: required(env, "USERS_TABLE")?,
            reply_queue_url: queue_url(env, "REPLY_QUEUE_URL")?,
            tag_queue_url: queue_url(env, "TAG_QUEUE_URL")?,
            idempotency_ttl: Duration::from_secs(3600 * parsed_or(env, "IDEMPOTENCY_TTL_HOURS", 168u64)?),
            in_progress_timeout: Duration::from_secs(parsed_or(env, "IDEMPOTENCY_IN_PROGRESS_SECS", 30u64)?),
            aws_operation_timeout: Duration::from_millis(parsed_or(env, "AWS_OPERATION_TIMEOUT_MS", 1500u64)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn complete() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("LINE_CHANNEL_SECRET", "s"),
            ("SHOP_EVENTS_SECRET", "t"),
            ("EVENTS_TABLE", "events"),
            ("USERS_TABLE", "users"),
            ("REPLY_QUEUE_URL", "http://127.0.0.1:9324/123456789012/reply.fifo"),
            ("TAG_QUEUE_URL", "http://127.0.0.1:9324/123456789012/tag.fifo"),
        ])
    }

    #[test]
    fn reads_a_complete_environment_with_defaults() {
        let c = Config::from_env(&complete()).unwrap();
        assert_eq!(c.users_table, "users");
        assert_eq!(c.in_progress_timeout, Duration::from_secs(30));
        assert_eq!(c.idempotency_ttl, Duration::from_secs(168 * 3600));
    }

    #[test]
    fn each_missing_variable_is_named() {
        for name in complete().keys() {
            let mut env = complete();
            env.remove(name);
            let err = Config::from_env(&env).unwrap_err();
            assert_eq!(err, ConfigError::Missing(name), "{name}");
        }
    }
}
