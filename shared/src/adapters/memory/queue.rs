//! A work queue in memory: what was sent, with its delay; it can be told to refuse sends after a
//! number of them (a throttled or cut-short client).

use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{BackendError, WorkQueue};

#[derive(Default)]
pub struct MemoryWorkQueue {
    sent: Mutex<Vec<(String, u32)>>,
    /// Sends after this many are refused.
    refuse_after: Option<usize>,
}

impl MemoryWorkQueue {
    /// A queue that takes `n` messages, then refuses every send.
    pub fn refusing_after(n: usize) -> Self {
        MemoryWorkQueue { refuse_after: Some(n), ..Self::default() }
    }

    pub fn sent(&self) -> Vec<(String, u32)> {
        self.sent.lock().map(|q| q.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl WorkQueue for MemoryWorkQueue {
    async fn send(&self, body: &str, delay_secs: u32) -> Result<(), BackendError> {
        let mut sent = self
            .sent
            .lock()
            .map_err(|_| BackendError::Queue { operation: "SendMessage", message: "memory queue poisoned".into() })?;
        if self.refuse_after.is_some_and(|n| sent.len() >= n) {
            return Err(BackendError::Queue { operation: "SendMessage", message: "injected: throttled".into() });
        }
        sent.push((body.to_string(), delay_secs));
        Ok(())
    }
}
