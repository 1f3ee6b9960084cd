//! LINE's multicast and quota in memory, answering from a script: the campaign path's faults
//! (refusals, a delivery whose answer never came) tested in milliseconds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use crate::campaign::ports::Multicaster;
use crate::campaign::price::Month;
use crate::line::answer::{Accepted, LineError};
use crate::ports::{Clock, SystemClock};

/// LINE forgets a retry key this long after it accepted it.
pub const RETRY_KEY_TTL_MS: i64 = 24 * 3_600_000;

/// What LINE does with the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Refuse without doing anything (500, 429, 401, 400...).
    Refuse(LineError),
    /// Deliver, bill and remember the key, then never answer (the client times out).
    DeliverThenTimeOut,
}

#[derive(Default)]
struct Line {
    /// Retry key → (the request it was accepted with, when).
    keys: HashMap<String, (String, i64)>,
    script: VecDeque<Answer>,
    received: HashMap<String, usize>,
    /// Every request: (retry key, what happened).
    calls: Vec<(String, String)>,
    quota: Option<u64>,
}

/// LINE's multicast in memory: retry keys remembered for 24 hours on its clock (409 for a key it
/// took; after that a key is new again, as on LINE), deliveries per friend, and a script of
/// answers for the next requests.
pub struct MemoryLine {
    inner: Mutex<Line>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryLine {
    fn default() -> Self {
        MemoryLine::with_clock(Arc::new(SystemClock))
    }
}

impl MemoryLine {
    /// A LINE whose time is `clock`'s (it forgets retry keys 24 hours after it took them).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemoryLine { inner: Mutex::new(Line::default()), clock }
    }

    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        if let Ok(mut l) = self.inner.lock() {
            l.script.extend(answers);
        }
    }

    /// The month's quota its quota endpoint reports (None: no limit).
    pub fn set_quota(&self, quota: Option<u64>) {
        if let Ok(mut l) = self.inner.lock() {
            l.quota = quota;
        }
    }

    /// How many multicasts a friend received.
    pub fn received(&self, user: &str) -> usize {
        self.inner.lock().map(|l| l.received.get(user).copied().unwrap_or(0)).unwrap_or(0)
    }

    pub fn calls(&self) -> Vec<(String, String)> {
        self.inner.lock().map(|l| l.calls.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Multicaster for MemoryLine {
    async fn month(&self) -> Result<Month, LineError> {
        let l = self.inner.lock().map_err(|_| LineError::Transport("memory line poisoned".into()))?;
        Ok(Month { quota: l.quota, used: l.received.values().sum::<usize>() as u64 })
    }

    async fn multicast(
        &self,
        to: &[&str],
        _messages: &[Value],
        retry_key: &str,
        _unit: Option<&str>,
    ) -> Result<Accepted, LineError> {
        let now = self.clock.now_ms();
        let mut l = self.inner.lock().map_err(|_| LineError::Transport("memory line poisoned".into()))?;
        l.keys.retain(|_, (_, at)| now - *at < RETRY_KEY_TTL_MS);
        if let Some((accepted, _)) = l.keys.get(retry_key).cloned() {
            l.calls.push((retry_key.into(), "409".into()));
            return Err(LineError::RetryKeyAccepted { accepted_request_id: Some(accepted) });
        }
        let request_id = format!("req-{}", l.calls.len());
        match l.script.pop_front() {
            Some(Answer::Refuse(e)) => {
                l.calls.push((retry_key.into(), e.kind().into()));
                Err(e)
            }
            answer => {
                for u in to {
                    *l.received.entry(u.to_string()).or_default() += 1;
                }
                l.keys.insert(retry_key.into(), (request_id.clone(), now));
                if answer == Some(Answer::DeliverThenTimeOut) {
                    l.calls.push((retry_key.into(), "deliveredThenTimedOut".into()));
                    return Err(LineError::Timeout(std::time::Duration::from_secs(10)));
                }
                l.calls.push((retry_key.into(), "200".into()));
                Ok(Accepted { request_id: Some(request_id) })
            }
        }
    }
}
