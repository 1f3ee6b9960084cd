//! The webhook function's settings, read once at start-up.

use std::time::Duration;

use shared::config::{parsed_or, queue_url, required, ConfigError, EnvSource};
use shared::secrets::{SecretName, SecretSource};

#[derive(Debug, Clone)]
pub struct Config {
    /// LINE_SECRET_ARN (the Secrets Manager secret's `channelSecret` and `shopEventsSecret`), or
    /// locally LINE_CHANNEL_SECRET and SHOP_EVENTS_SECRET: verify `x-line-signature` and
    /// `x-shop-signature`.
    pub secrets: SecretSource,
    /// EVENTS_TABLE: idempotency records, one per event key.
    pub events_table: String,
    /// USERS_TABLE: follow/block state per friend.
    pub users_table: String,
    /// REPLY_QUEUE_URL / TAG_QUEUE_URL: the FIFO queues the consumers read.
    pub reply_queue_url: String,
    pub tag_queue_url: String,
    /// IDEMPOTENCY_TTL_HOURS (default 168): how long a processed event keeps redeliveries out.
    pub idempotency_ttl: Duration,
    /// IDEMPOTENCY_IN_PROGRESS_SECS (default 11): how long a claim blocks a concurrent twin (and
    /// the friend's later events behind it); longer than the function timeout (10 s), so a claim
    /// whose owner crashed or was cut off frees itself for the next redelivery soon.
    pub in_progress_timeout: Duration,
    /// AWS_OPERATION_TIMEOUT_MS (default 1500): cap per DynamoDB/SQS call, retries included.
    pub aws_operation_timeout: Duration,
    /// WEBHOOK_DEADLINE_MS (default 1500, at most 1600): the whole request, from the handler's
    /// start to the answer, clean-up included; LINE counts answers after 2 s as failures, and a
    /// cold start (reading the secret, first connections) comes before the handler starts. Past
    /// it: 500, and the redelivery completes what is missing.
    pub deadline: Duration,
}

impl Config {
    /// The secrets this function reads.
    pub const SECRETS: &[SecretName] = &[SecretName::ChannelSecret, SecretName::ShopEventsSecret];

    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let deadline = Duration::from_millis(parsed_or(env, "WEBHOOK_DEADLINE_MS", 1500u64)?);
        if !(Duration::from_millis(500)..=Duration::from_millis(1600)).contains(&deadline) {
            return Err(ConfigError::Invalid {
                name: "WEBHOOK_DEADLINE_MS",
                reason: "must be 500-1600: LINE waits 2 s, settling needs a few hundred ms, and a cold start \
                         comes on top"
                    .into(),
            });
        }
        Ok(Self {
            secrets: SecretSource::from_env(env, Config::SECRETS)?,
            events_table: required(env, "EVENTS_TABLE")?,
            users_table: required(env, "USERS_TABLE")?,
            reply_queue_url: queue_url(env, "REPLY_QUEUE_URL")?,
            tag_queue_url: queue_url(env, "TAG_QUEUE_URL")?,
            idempotency_ttl: Duration::from_secs(3600 * parsed_or(env, "IDEMPOTENCY_TTL_HOURS", 168u64)?),
            in_progress_timeout: Duration::from_secs(parsed_or(env, "IDEMPOTENCY_IN_PROGRESS_SECS", 11u64)?),
            aws_operation_timeout: Duration::from_millis(parsed_or(env, "AWS_OPERATION_TIMEOUT_MS", 1500u64)?),
            deadline,
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
        assert_eq!(c.in_progress_timeout, Duration::from_secs(11));
        assert_eq!(c.idempotency_ttl, Duration::from_secs(168 * 3600));
    }

    #[test]
    fn each_missing_variable_is_named() {
        for name in complete().keys() {
            let mut env = complete();
            env.remove(name);
            let err = Config::from_env(&env).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let mut env = complete();
        env.insert("WEBHOOK_DEADLINE_MS", "5000");
        assert!(Config::from_env(&env).unwrap_err().to_string().contains("WEBHOOK_DEADLINE_MS"));
    }
}
