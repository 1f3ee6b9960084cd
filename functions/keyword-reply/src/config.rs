//! Settings of the keyword-reply function, read once at start-up; a missing one is named.

use std::time::Duration;

use shared::config::{parsed_or, required, ConfigError, EnvSource};
use shared::secrets::{SecretName, SecretSource};

#[derive(Debug, Clone)]
pub struct Config {
    /// LINE_SECRET_ARN (the Secrets Manager secret's `channelAccessToken`), or locally
    /// LINE_CHANNEL_ACCESS_TOKEN: the Messaging API's bearer token.
    pub secrets: SecretSource,
    /// LINE_API_BASE (default https://api.line.me): line-sim's address locally.
    pub line_api_base: String,
    /// LINE_HTTP_TIMEOUT_MS (default 3000): per reply call.
    pub line_timeout: Duration,
    /// RULES_TABLE: versioned rules (`oa rules apply`).
    pub rules_table: String,
    /// EVENTS_TABLE: idempotency records; replies use keys `reply:<event key>`.
    pub events_table: String,
    /// USERS_TABLE: friends; the fallback cooldown lives on the friend's item.
    pub users_table: String,
    /// REPLY_TOKEN_MAX_AGE_SECS (default 50): older tokens are not tried (LINE honours them ~60 s).
    pub max_token_age: Duration,
    /// IDEMPOTENCY_TTL_HOURS (default 168) and IDEMPOTENCY_IN_PROGRESS_SECS (default 15).
    pub idempotency_ttl: Duration,
    pub in_progress_timeout: Duration,
    /// AWS_OPERATION_TIMEOUT_MS (default 1500).
    pub aws_operation_timeout: Duration,
}

impl Config {
    /// The secrets this function reads.
    pub const SECRETS: &[SecretName] = &[SecretName::ChannelAccessToken];

    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Ok(Config {
            secrets: SecretSource::from_env(env, Config::SECRETS)?,
            line_api_base: parsed_or(env, "LINE_API_BASE", "https://api.line.me".to_string())?,
            line_timeout: Duration::from_millis(parsed_or(env, "LINE_HTTP_TIMEOUT_MS", 3000u64)?),
            rules_table: required(env, "RULES_TABLE")?,
            events_table: required(env, "EVENTS_TABLE")?,
            users_table: required(env, "USERS_TABLE")?,
            max_token_age: Duration::from_secs(parsed_or(env, "REPLY_TOKEN_MAX_AGE_SECS", 50u64)?),
            idempotency_ttl: Duration::from_secs(3600 * parsed_or(env, "IDEMPOTENCY_TTL_HOURS", 168u64)?),
            in_progress_timeout: Duration::from_secs(parsed_or(env, "IDEMPOTENCY_IN_PROGRESS_SECS", 15u64)?),
            aws_operation_timeout: Duration::from_millis(parsed_or(env, "AWS_OPERATION_TIMEOUT_MS", 1500u64)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_missing_setting_is_named_and_secrets_stay_hidden() {
        let mut env: HashMap<&str, &str> =
            HashMap::from([("LINE_CHANNEL_ACCESS_TOKEN", "tok-123"), ("RULES_TABLE", "r"), ("EVENTS_TABLE", "e")]);
        assert_eq!(
            Config::from_env(&env).unwrap_err().to_string(),
            "missing required environment variable USERS_TABLE"
        );
        env.remove("LINE_CHANNEL_ACCESS_TOKEN");
        env.insert("USERS_TABLE", "u");
        assert!(Config::from_env(&env).unwrap_err().to_string().contains("LINE_SECRET_ARN"));
        env.insert("LINE_CHANNEL_ACCESS_TOKEN", "tok-123");
        env.insert("USERS_TABLE", "u");
        let c = Config::from_env(&env).unwrap();
        assert_eq!(c.max_token_age, Duration::from_secs(50));
        assert!(!format!("{c:?}").contains("tok-123"));
        env.insert("REPLY_TOKEN_MAX_AGE_SECS", "soon");
        assert!(Config::from_env(&env).unwrap_err().to_string().contains("REPLY_TOKEN_MAX_AGE_SECS"));
    }
}
