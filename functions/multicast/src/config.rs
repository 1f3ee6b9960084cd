//! Settings of the multicast sender, read once at start-up; a missing one is named.

use std::time::Duration;

use shared::config::{parsed_or, required, ConfigError, EnvSource};
use shared::secrets::{SecretName, SecretSource};

#[derive(Debug, Clone)]
pub struct Config {
    /// LINE_SECRET_ARN (the secret's `channelAccessToken`), or locally LINE_CHANNEL_ACCESS_TOKEN.
    pub secrets: SecretSource,
    /// LINE_API_BASE (default https://api.line.me).
    pub line_api_base: String,
    /// LINE_HTTP_TIMEOUT_MS (default 10000): per multicast call. A timeout is ambiguous (LINE may
    /// have taken the batch): the retry goes with the same key.
    pub line_timeout: Duration,
    /// CAMPAIGNS_TABLE: campaigns and batches.
    pub campaigns_table: String,
    /// USERS_TABLE: follow state, opt-outs and the cap sets reserved per friend.
    pub users_table: String,
    /// CAMPAIGN_QUEUE_URL: where the plan message that resumes a campaign after its quiet hours
    /// goes.
    pub campaign_queue_url: String,
    /// BATCH_LEASE_SECS (default 90, above the function's 60 s timeout): how long a batch stays
    /// with the sender that took it; a dead sender's batch is taken over after it.
    pub lease: Duration,
    /// SEND_ATTEMPTS (default 4) tries per invocation (rate limits, 5xx, timeouts), with
    /// jittered backoff from SEND_BACKOFF_MS (default 200); then the message comes back later.
    pub attempts: u32,
    pub backoff: Duration,
    /// AWS_OPERATION_TIMEOUT_MS (default 3000).
    pub aws_operation_timeout: Duration,
    /// RULES_TABLE (optional): where the account settings are, whose plan prices the month's
    /// messages for the month-to-date spend metric; without it only the month's messages are.
    pub rules_table: Option<String>,
}

impl Config {
    pub const SECRETS: &[SecretName] = &[SecretName::ChannelAccessToken];

    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Ok(Config {
            secrets: SecretSource::from_env(env, Config::SECRETS)?,
            line_api_base: parsed_or(env, "LINE_API_BASE", "https://api.line.me".to_string())?,
            line_timeout: Duration::from_millis(parsed_or(env, "LINE_HTTP_TIMEOUT_MS", 10_000u64)?),
            campaigns_table: required(env, "CAMPAIGNS_TABLE")?,
            users_table: required(env, "USERS_TABLE")?,
            campaign_queue_url: required(env, "CAMPAIGN_QUEUE_URL")?,
            lease: Duration::from_secs(parsed_or(env, "BATCH_LEASE_SECS", 90u64)?),
            attempts: parsed_or(env, "SEND_ATTEMPTS", 4u32)?,
            backoff: Duration::from_millis(parsed_or(env, "SEND_BACKOFF_MS", 200u64)?),
            aws_operation_timeout: Duration::from_millis(parsed_or(env, "AWS_OPERATION_TIMEOUT_MS", 3000u64)?),
            rules_table: env.get("RULES_TABLE").filter(|t| !t.trim().is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_missing_setting_is_named() {
        let env: HashMap<&str, &str> = HashMap::from([("LINE_CHANNEL_ACCESS_TOKEN", "t"), ("CAMPAIGNS_TABLE", "c")]);
        assert_eq!(
            Config::from_env(&env).unwrap_err().to_string(),
            "missing required environment variable USERS_TABLE"
        );
    }
}
