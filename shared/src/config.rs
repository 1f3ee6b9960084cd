//! Settings read once from the environment at start-up.
//!
//! A missing or malformed variable is an error that names it, so a misconfigured function fails at
//! its first cold start with a clear message instead of on some later request.

use std::fmt;
use std::str::FromStr;

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing required environment variable {0}")]
    Missing(&'static str),
    #[error("missing required environment variable {name} (or {arn}: the Secrets Manager secret that holds it)")]
    MissingSecret { name: &'static str, arn: &'static str },
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A secret value: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where settings come from: the process environment in production, a map in tests.
pub trait EnvSource {
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for std::collections::HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).map(|v| v.to_string())
    }
}

/// A required, non-empty variable.
pub fn required(env: &dyn EnvSource, name: &'static str) -> Result<String, ConfigError> {
    match env.get(name) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        Some(_) => Err(ConfigError::Invalid { name, reason: "is empty".into() }),
        None => Err(ConfigError::Missing(name)),
    }
}

/// An optional variable parsed with `FromStr`, `default` when unset.
pub fn parsed_or<T>(env: &dyn EnvSource, name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match env.get(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid { name, reason: format!("{v:?}: {e}") }),
    }
}

/// A queue URL: must look like an SQS queue URL (`http(s)://host/account/name`).
pub fn queue_url(env: &dyn EnvSource, name: &'static str) -> Result<String, ConfigError> {
    let v = required(env, name)?;
    let ok = (v.starts_with("https://") || v.starts_with("http://")) && v.trim_end_matches('/').split('/').count() >= 5;
    if ok {
        Ok(v)
    } else {
        Err(ConfigError::Invalid { name, reason: format!("{v:?} is not an SQS queue URL") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn missing_variable_is_named() {
        let env: HashMap<&str, &str> = HashMap::new();
        assert_eq!(required(&env, "USERS_TABLE"), Err(ConfigError::Missing("USERS_TABLE")));
        assert_eq!(
            ConfigError::Missing("USERS_TABLE").to_string(),
            "missing required environment variable USERS_TABLE"
        );
    }

    #[test]
    fn malformed_number_is_named_with_its_value() {
        let env: HashMap<&str, &str> = HashMap::from([("TTL_HOURS", "two")]);
        let err = parsed_or::<u64>(&env, "TTL_HOURS", 1).unwrap_err();
        assert!(err.to_string().contains("TTL_HOURS") && err.to_string().contains("\"two\""), "{err}");
    }

    #[test]
    fn queue_url_must_be_a_url() {
        let env: HashMap<&str, &str> = HashMap::from([("Q", "reply.fifo")]);
        assert!(matches!(queue_url(&env, "Q"), Err(ConfigError::Invalid { name: "Q", .. })));
        let env: HashMap<&str, &str> = HashMap::from([("Q", "http://127.0.0.1:9324/123456789012/reply.fifo")]);
        assert!(queue_url(&env, "Q").is_ok());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("very-secret");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
