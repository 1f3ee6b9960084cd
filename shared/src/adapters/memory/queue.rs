//! A work queue in memory: what was sent, with its delay.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{BackendError, WorkQueue};

#[derive(Default)]
pub struct MemoryWorkQueue(Mutex<Vec<(String, u32)>>);

impl MemoryWorkQueue {
    pub fn sent(&self) -> Vec<(String, u32)> {
        self.0.lock().map(|q| q.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl WorkQueue for MemoryWorkQueue {
    async fn send(&self, body: &str, delay_secs: u32) -> Result<(), BackendError> {
        self.0
            .lock()
            .map_err(|_| BackendError::Queue { operation: "SendMessage", message: "memory queue poisoned".into() })?
            .push((body.to_string(), delay_secs));
        Ok(())
    }
}
