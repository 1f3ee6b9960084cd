//! The channel's secrets: read once at cold start, kept in memory, read again when they may have
//! changed. Nothing secret is ever in a function's configuration.
//!
//! - **On AWS** a function gets the ARN of one Secrets Manager secret (`LINE_SECRET_ARN`): a JSON
//!   object with `channelSecret`, `channelAccessToken` and `shopEventsSecret` (each function reads
//!   only the keys it needs, and may only read that one secret).
//! - **Locally** the same code reads the same secrets from the environment: `LINE_CHANNEL_SECRET`,
//!   `LINE_CHANNEL_ACCESS_TOKEN`, `SHOP_EVENTS_SECRET` (`local.env`).
//!
//! Setting both is refused at start-up: the secrets live in one place, never in two that might
//! disagree. A missing key is named at start-up too.
//!
//! Reading again: after LINE answers 401 (the access token was reissued) and after a webhook
//! signature does not match (the channel secret may have been reissued). Reads are single-flight
//! and happen at most once per `min_age` the caller gives ([`AFTER_UNAUTHORIZED`],
//! [`AFTER_BAD_SIGNATURE`]), so a flood of forged webhooks costs each running instance at most one
//! Secrets Manager call a minute (plus the read at its cold start; the webhook's reserved
//! concurrency bounds the instances). A failed read keeps the values in hand.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tracing::{info, warn};

use crate::config::{ConfigError, EnvSource, Secret};
use crate::ports::{Clock, SystemClock};

/// The environment variable that names the Secrets Manager secret.
pub const SECRET_ARN_VAR: &str = "LINE_SECRET_ARN";
/// After LINE answers 401, the secret is read again unless it was read this recently.
pub const AFTER_UNAUTHORIZED: Duration = Duration::from_secs(5);
/// After a signature does not match, the secret is read again unless it was read this recently.
pub const AFTER_BAD_SIGNATURE: Duration = Duration::from_secs(60);

/// One secret value a function may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretName {
    /// Verifies `x-line-signature` (webhook).
    ChannelSecret,
    /// The Messaging API's bearer token (keyword-reply, and every function that calls LINE).
    ChannelAccessToken,
    /// Verifies `x-shop-signature` (webhook's `/events`).
    ShopEventsSecret,
}

impl SecretName {
    /// Its key in the Secrets Manager secret's JSON.
    pub fn key(self) -> &'static str {
        match self {
            SecretName::ChannelSecret => "channelSecret",
            SecretName::ChannelAccessToken => "channelAccessToken",
            SecretName::ShopEventsSecret => "shopEventsSecret",
        }
    }

    /// Its environment variable, when the secrets come from the environment.
    pub fn env_var(self) -> &'static str {
        match self {
            SecretName::ChannelSecret => "LINE_CHANNEL_SECRET",
            SecretName::ChannelAccessToken => "LINE_CHANNEL_ACCESS_TOKEN",
            SecretName::ShopEventsSecret => "SHOP_EVENTS_SECRET",
        }
    }
}

/// Why the secrets could not be read. Never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the secret {source_name}: {message}")]
    Read { source_name: String, message: String },
    #[error("the secret {source_name} is not a JSON object")]
    NotJson { source_name: String },
    #[error("the secret {source_name} has no non-empty \"{key}\"")]
    Missing { source_name: String, key: &'static str },
}

/// Where the secrets are, as the configuration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A Secrets Manager secret, by ARN.
    SecretsManager { arn: String },
    /// Values from the environment, read at start-up.
    Environment(BTreeMap<SecretName, Secret>),
}

impl SecretSource {
    /// Reads where the secrets `wanted` are: `LINE_SECRET_ARN`, or else each one's own variable.
    pub fn from_env(env: &dyn EnvSource, wanted: &[SecretName]) -> Result<Self, ConfigError> {
        let in_env: Vec<SecretName> = wanted.iter().copied().filter(|n| env.get(n.env_var()).is_some()).collect();
        match env.get(SECRET_ARN_VAR).filter(|v| !v.trim().is_empty()) {
            Some(arn) => {
                if let Some(both) = in_env.first() {
                    return Err(ConfigError::Invalid {
                        name: SECRET_ARN_VAR,
                        reason: format!(
                            "{} is set too: keep the secrets in Secrets Manager (LINE_SECRET_ARN) or in the \
                             environment, not both",
                            both.env_var()
                        ),
                    });
                }
                if !(arn.starts_with("arn:") && arn.contains(":secretsmanager:")) {
                    return Err(ConfigError::Invalid {
                        name: SECRET_ARN_VAR,
                        reason: format!("{arn:?} is not a Secrets Manager secret ARN"),
                    });
                }
                Ok(SecretSource::SecretsManager { arn: arn.trim().to_string() })
            }
            None => {
                let mut values = BTreeMap::new();
                for &name in wanted {
                    match env.get(name.env_var()) {
                        Some(v) if !v.trim().is_empty() => {
                            values.insert(name, Secret::new(v));
                        }
                        Some(_) => {
                            return Err(ConfigError::Invalid { name: name.env_var(), reason: "is empty".into() })
                        }
                        None => return Err(ConfigError::MissingSecret { name: name.env_var(), arn: SECRET_ARN_VAR }),
                    }
                }
                Ok(SecretSource::Environment(values))
            }
        }
    }

    /// The store that reads this source.
    pub fn store(&self, sdk: &aws_config::SdkConfig) -> Arc<dyn SecretStore> {
        match self {
            SecretSource::SecretsManager { arn } => {
                Arc::new(SecretsManagerStore { client: aws_sdk_secretsmanager::Client::new(sdk), arn: arn.clone() })
            }
            SecretSource::Environment(values) => Arc::new(StaticStore(values.clone())),
        }
    }
}

/// Reads every secret value a source holds.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Where the secrets come from (an ARN, "the environment"), for messages; never a value.
    fn name(&self) -> String;
    async fn read(&self) -> Result<BTreeMap<SecretName, Secret>, SecretError>;
}

/// One Secrets Manager secret: a JSON object of strings.
pub struct SecretsManagerStore {
    pub client: aws_sdk_secretsmanager::Client,
    pub arn: String,
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    fn name(&self) -> String {
        self.arn.clone()
    }

    async fn read(&self) -> Result<BTreeMap<SecretName, Secret>, SecretError> {
        let out =
            self.client.get_secret_value().secret_id(&self.arn).send().await.map_err(|e| SecretError::Read {
                source_name: self.name(),
                message: crate::adapters::sdk::describe(&e),
            })?;
        let text = out.secret_string().unwrap_or_default();
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) else {
            return Err(SecretError::NotJson { source_name: self.name() });
        };
        let mut values = BTreeMap::new();
        for name in [SecretName::ChannelSecret, SecretName::ChannelAccessToken, SecretName::ShopEventsSecret] {
            if let Some(Value::String(v)) = object.get(name.key()) {
                if !v.trim().is_empty() {
                    values.insert(name, Secret::new(v.clone()));
                }
            }
        }
        Ok(values)
    }
}

/// Values fixed at start-up (from the environment).
pub struct StaticStore(pub BTreeMap<SecretName, Secret>);

#[async_trait]
impl SecretStore for StaticStore {
    fn name(&self) -> String {
        "the environment".into()
    }

    async fn read(&self) -> Result<BTreeMap<SecretName, Secret>, SecretError> {
        Ok(self.0.clone())
    }
}

/// The values in hand and when they were read.
#[derive(Debug)]
pub struct SecretValues {
    values: BTreeMap<SecretName, Secret>,
    read_at_ms: i64,
}

impl SecretValues {
    /// A wanted value: always present (checked when read).
    pub fn get(&self, name: SecretName) -> Option<&Secret> {
        self.values.get(&name)
    }
}

/// The secrets a function uses, with re-reads as the module docs say.
pub struct Secrets {
    store: Arc<dyn SecretStore>,
    clock: Arc<dyn Clock>,
    wanted: Vec<SecretName>,
    current: RwLock<Arc<SecretValues>>,
    refreshing: tokio::sync::Mutex<()>,
    reads: AtomicU64,
}

impl Secrets {
    /// Reads the secrets once (the cold start): fails, naming the key, when one `wanted` is missing.
    pub async fn load(store: Arc<dyn SecretStore>, wanted: &[SecretName]) -> Result<Self, SecretError> {
        Self::load_with_clock(store, wanted, Arc::new(SystemClock)).await
    }

    /// [`Self::load`] with the clock that times refreshes (tests move it instead of waiting).
    pub async fn load_with_clock(
        store: Arc<dyn SecretStore>,
        wanted: &[SecretName],
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SecretError> {
        let values = Self::read_checked(store.as_ref(), wanted, clock.now_ms()).await?;
        Ok(Secrets {
            store,
            clock,
            wanted: wanted.to_vec(),
            current: RwLock::new(Arc::new(values)),
            refreshing: tokio::sync::Mutex::new(()),
            reads: AtomicU64::new(1),
        })
    }

    async fn read_checked(
        store: &dyn SecretStore,
        wanted: &[SecretName],
        now_ms: i64,
    ) -> Result<SecretValues, SecretError> {
        let values = store.read().await?;
        if let Some(missing) = wanted.iter().find(|n| !values.contains_key(n)) {
            return Err(SecretError::Missing { source_name: store.name(), key: missing.key() });
        }
        Ok(SecretValues { values, read_at_ms: now_ms })
    }

    /// The values in hand.
    pub fn current(&self) -> Arc<SecretValues> {
        match self.current.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How many times the store was read (the cold start included).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Reads the secrets again unless they were read less than `min_age` ago, and returns what is
    /// current afterwards. Concurrent callers share one read. A failed read, or one that lacks a
    /// wanted key, keeps the values in hand (and says so in the log).
    pub async fn refresh(&self, min_age: Duration, why: &'static str) -> Arc<SecretValues> {
        let _one_at_a_time = self.refreshing.lock().await;
        let held = self.current();
        let now = self.clock.now_ms();
        if now - held.read_at_ms < min_age.as_millis() as i64 {
            return held;
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        let next = match Self::read_checked(self.store.as_ref(), &self.wanted, now).await {
            Ok(fresh) => {
                let changed = self.wanted.iter().any(|n| fresh.get(*n) != held.get(*n));
                info!(secret = %self.store.name(), why, changed, "secret read again");
                Arc::new(fresh)
            }
            Err(e) => {
                warn!(error = %e, why, "cannot read the secret again; keeping the values in hand");
                // Do not ask again at once: the same min_age applies from this attempt.
                Arc::new(SecretValues { values: held.values.clone(), read_at_ms: now })
            }
        };
        match self.current.write() {
            Ok(mut c) => *c = next.clone(),
            Err(poisoned) => *poisoned.into_inner() = next.clone(),
        }
        next
    }

    /// After `used` failed with `name` in a way a reissued secret explains (LINE's 401, a
    /// signature mismatch): reads the secret again ([`Self::refresh`] with `min_age`) and returns
    /// the values to try once more, or `None` when `name` is still what `used` held.
    pub async fn reissued(
        &self,
        name: SecretName,
        used: &SecretValues,
        min_age: Duration,
        why: &'static str,
    ) -> Option<Arc<SecretValues>> {
        let fresh = self.refresh(min_age, why).await;
        (fresh.get(name) != used.get(name)).then_some(fresh)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// A store whose values a test changes.
    struct Rotating(Mutex<BTreeMap<SecretName, Secret>>);

    /// A clock the test moves.
    #[derive(Default)]
    struct Moved(std::sync::atomic::AtomicI64);

    impl Clock for Moved {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl SecretStore for Rotating {
        fn name(&self) -> String {
            "test".into()
        }
        async fn read(&self) -> Result<BTreeMap<SecretName, Secret>, SecretError> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    fn token(v: &str) -> BTreeMap<SecretName, Secret> {
        BTreeMap::from([(SecretName::ChannelAccessToken, Secret::new(v))])
    }

    #[test]
    fn an_arn_and_environment_secrets_together_are_refused() {
        let both: HashMap<&str, &str> = HashMap::from([
            ("LINE_SECRET_ARN", "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:oa/line-AbCdEf"),
            ("LINE_CHANNEL_ACCESS_TOKEN", "tok"),
        ]);
        let e = SecretSource::from_env(&both, &[SecretName::ChannelAccessToken]).unwrap_err().to_string();
        assert!(
            e.contains("LINE_SECRET_ARN") && e.contains("LINE_CHANNEL_ACCESS_TOKEN") && !e.contains("tok\""),
            "{e}"
        );
        let neither: HashMap<&str, &str> = HashMap::new();
        let e = SecretSource::from_env(&neither, &[SecretName::ChannelSecret]).unwrap_err().to_string();
        assert!(e.contains("LINE_CHANNEL_SECRET") && e.contains("LINE_SECRET_ARN"), "{e}");
        let bad: HashMap<&str, &str> = HashMap::from([("LINE_SECRET_ARN", "oa/line")]);
        assert!(SecretSource::from_env(&bad, &[SecretName::ChannelSecret]).is_err());
        let arn: HashMap<&str, &str> = HashMap::from([("LINE_SECRET_ARN", both["LINE_SECRET_ARN"])]);
        assert!(matches!(
            SecretSource::from_env(&arn, &[SecretName::ChannelSecret]),
            Ok(SecretSource::SecretsManager { .. })
        ));
    }

    #[tokio::test]
    async fn a_missing_key_is_named_at_load() {
        let store = Arc::new(Rotating(Mutex::new(token("t"))));
        let e = Secrets::load(store, &[SecretName::ChannelSecret]).await.err().unwrap().to_string();
        assert!(e.contains("channelSecret"), "{e}");
    }

    #[tokio::test]
    async fn refreshes_are_rate_limited_and_shared() {
        let store = Arc::new(Rotating(Mutex::new(token("old"))));
        let clock = Arc::new(Moved::default());
        let wanted = [SecretName::ChannelAccessToken];
        let secrets = Secrets::load_with_clock(store.clone(), &wanted, clock.clone()).await.unwrap();
        *store.0.lock().unwrap() = token("new");
        // Read a moment ago: a refresh within min_age does not call the store.
        clock.0.store(59_000, Ordering::SeqCst);
        let held = secrets.refresh(Duration::from_secs(60), "test").await;
        assert_eq!(held.get(SecretName::ChannelAccessToken).unwrap().expose(), "old");
        assert_eq!(secrets.reads(), 1);
        // 50 at once past min_age: one read, everyone gets the new value.
        clock.0.store(61_000, Ordering::SeqCst);
        let all = futures::future::join_all((0..50).map(|_| secrets.refresh(Duration::from_secs(60), "t"))).await;
        assert!(all.iter().all(|v| v.get(SecretName::ChannelAccessToken).unwrap().expose() == "new"));
        assert_eq!(secrets.reads(), 2);
        clock.0.store(120_000, Ordering::SeqCst);
        let burst = futures::future::join_all((0..50).map(|_| secrets.refresh(Duration::from_secs(60), "f"))).await;
        assert_eq!(burst.len(), 50);
        assert_eq!(secrets.reads(), 2, "a burst within a minute of the last read reads nothing");
    }

    #[tokio::test]
    async fn a_read_that_lacks_a_key_keeps_the_values_in_hand() {
        let store = Arc::new(Rotating(Mutex::new(token("old"))));
        let secrets = Secrets::load(store.clone(), &[SecretName::ChannelAccessToken]).await.unwrap();
        store.0.lock().unwrap().clear();
        let kept = secrets.refresh(Duration::ZERO, "test").await;
        assert_eq!(kept.get(SecretName::ChannelAccessToken).unwrap().expose(), "old");
    }
}
