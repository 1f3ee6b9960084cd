//! The SQS requests a process makes, counted as SQS bills them: one request per started 64 KB of
//! its payload, FIFO queues apart (they have their own price).
//!
//! One SDK interceptor ([`Requests`], installed by [`client`]) sees every request of every adapter
//! through that client just before it is sent, reads its size and whether the queue it names
//! (`QueueUrl` in the JSON body) ends in `.fifo`, and adds it to the client's [`SqsTally`]. A
//! request the SDK sends again (a retry) is counted again: SQS bills it again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::costs::model::sqs_requests_for;

/// Billed requests since the last take: (standard queues, FIFO queues).
#[derive(Debug, Clone, Default)]
pub struct SqsTally(Arc<(AtomicU64, AtomicU64)>);

impl SqsTally {
    /// The requests counted since the last take, (standard, FIFO); the tally starts again at zero.
    pub fn take(&self) -> (u64, u64) {
        (self.0 .0.swap(0, Ordering::Relaxed), self.0 .1.swap(0, Ordering::Relaxed))
    }

    pub fn add(&self, payload_bytes: u64, fifo: bool) {
        let counter = if fifo { &self.0 .1 } else { &self.0 .0 };
        counter.fetch_add(sqs_requests_for(payload_bytes), Ordering::Relaxed);
    }
}

/// Whether a request body names a FIFO queue (`"QueueUrl":"https://.../name.fifo"`).
fn names_fifo_queue(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(rename = "QueueUrl", borrow)]
        queue_url: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Body>(body).ok().and_then(|b| b.queue_url).is_some_and(|u| u.ends_with(".fifo"))
}

/// The interceptor; [`client`] installs it.
#[derive(Debug)]
pub struct Requests(SqsTally);

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "SqsRequests"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context.request().body().bytes().unwrap_or_default();
        self.0.add(body.len() as u64, names_fifo_queue(body));
        Ok(())
    }
}

/// An SQS client whose every request is counted, and its tally.
pub fn client(sdk: &aws_config::SdkConfig) -> (aws_sdk_sqs::Client, SqsTally) {
    let tally = SqsTally::default();
    let config = aws_sdk_sqs::config::Builder::from(sdk).interceptor(Requests(tally.clone())).build();
    (aws_sdk_sqs::Client::from_conf(config), tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_started_64_kb_is_a_request_and_fifo_queues_are_apart() {
        let t = SqsTally::default();
        t.add(100, false);
        t.add(64 * 1024, false);
        t.add(64 * 1024 + 1, true);
        t.add(0, true);
        assert_eq!(t.take(), (2, 3));
        assert_eq!(t.take(), (0, 0), "taken means started again");
    }

    #[test]
    fn the_queue_kind_is_read_from_the_body() {
        assert!(names_fifo_queue(br#"{"QueueUrl":"http://x/000/q.fifo","Entries":[]}"#));
        assert!(!names_fifo_queue(br#"{"QueueUrl":"http://x/000/q"}"#));
        assert!(!names_fifo_queue(b"not json"));
    }
}
