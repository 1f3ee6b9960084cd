//! One simulated channel: its state, channel secret and webhook, shared by the routes.

use std::sync::Mutex;
use std::time::Duration;

use crate::state::{Settings, State};

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Signs the webhooks the sim sends.
    pub channel_secret: String,
    /// The bearer token API calls must carry.
    pub access_token: String,
    /// Default target of the webhook sender.
    pub webhook_url: Option<String>,
    pub settings: Settings,
    /// Seed of the fault dice, for repeatable runs.
    pub seed: u64,
}

impl SimConfig {
    pub fn new(channel_secret: impl Into<String>, access_token: impl Into<String>) -> Self {
        SimConfig {
            channel_secret: channel_secret.into(),
            access_token: access_token.into(),
            webhook_url: None,
            settings: Settings::default(),
            seed: 1,
        }
    }
}

/// The channel's webhook URL and whether "Use webhook" is on.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: Option<String>,
    pub active: bool,
}

/// The shared state behind every route.
pub struct Sim {
    pub(crate) state: Mutex<State>,
    pub(crate) channel_secret: String,
    /// The channel's webhook setting, as the console and `PUT .../webhook/endpoint` set it.
    pub(crate) webhook: Mutex<Webhook>,
    pub(crate) http: reqwest::Client,
}

impl Sim {
    pub fn new(config: SimConfig) -> Self {
        Sim {
            state: Mutex::new(State::new(config.access_token, config.settings, config.seed)),
            channel_secret: config.channel_secret,
            webhook: Mutex::new(Webhook { active: config.webhook_url.is_some(), url: config.webhook_url }),
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("TLS backend"),
        }
    }
}
