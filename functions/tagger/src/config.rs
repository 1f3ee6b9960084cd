//! Settings of the tagger, read once at start-up; a missing one is named.

use std::time::Duration;

use shared::config::{parsed_or, required, ConfigError, EnvSource};

#[derive(Debug, Clone)]
pub struct Config {
    /// RULES_TABLE: versioned rules (`oa rules apply`); the `tags:` section is the tagger's.
    pub rules_table: String,
    /// EVENTS_TABLE: idempotency records; tag changes use keys `tag:<event key>`.
    pub events_table: String,
    /// USERS_TABLE: follow state (blocked friends' tags leave the index).
    pub users_table: String,
    /// TAGS_TABLE: tags, the tag index and per-tag counters.
    pub tags_table: String,
    /// IDEMPOTENCY_TTL_HOURS (default 168): how long a redelivered event is recognised.
    pub idempotency_ttl: Duration,
    /// AWS_OPERATION_TIMEOUT_MS (default 1500).
    pub aws_operation_timeout: Duration,
}

impl Config {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Ok(Config {
            rules_table: required(env, "RULES_TABLE")?,
            events_table: required(env, "EVENTS_TABLE")?,
            users_table: required(env, "USERS_TABLE")?,
            tags_table: required(env, "TAGS_TABLE")?,
            idempotency_ttl: Duration::from_secs(3600 * parsed_or(env, "IDEMPOTENCY_TTL_HOURS", 168u64)?),
            aws_operation_timeout: Duration::from_millis(parsed_or(env, "AWS_OPERATION_TIMEOUT_MS", 1500u64)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_missing_setting_is_named() {
        let mut env: HashMap<&str, &str> =
            HashMap::from([("RULES_TABLE", "r"), ("EVENTS_TABLE", "e"), ("USERS_TABLE", "u")]);
        assert_eq!(Config::from_env(&env).unwrap_err().to_string(), "missing required environment variable TAGS_TABLE");
        env.insert("TAGS_TABLE", "t");
        assert_eq!(Config::from_env(&env).unwrap().idempotency_ttl, Duration::from_secs(168 * 3600));
        env.insert("IDEMPOTENCY_TTL_HOURS", "a week");
        assert!(Config::from_env(&env).unwrap_err().to_string().contains("IDEMPOTENCY_TTL_HOURS"));
    }
}
