//! Logging for the functions: Lambda's advanced logging controls (`AWS_LAMBDA_LOG_LEVEL`,
//! `AWS_LAMBDA_LOG_FORMAT`), like `lambda_runtime`'s default subscriber, with one difference: the
//! level applies to this project's crates only. Every other crate (the Lambda runtime, hyper, the
//! AWS SDK, ...) logs at INFO at most, whatever the setting: at DEBUG and TRACE they print raw
//! events (message text, signatures) and request bodies (a secret's value).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// Bytes this process's log lines wrote since the last [`take_log_bytes`] (what CloudWatch Logs
/// ingests, and bills, of them).
static LOG_BYTES: AtomicU64 = AtomicU64::new(0);

/// The bytes logged since the last take; the count starts again at zero.
pub fn take_log_bytes() -> u64 {
    LOG_BYTES.swap(0, Ordering::Relaxed)
}

/// Standard output, counting what goes through it.
struct CountedStdout(std::io::Stdout);

impl Write for CountedStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        LOG_BYTES.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn counted_stdout() -> CountedStdout {
    CountedStdout(std::io::stdout())
}

/// The crates whose level follows `AWS_LAMBDA_LOG_LEVEL`.
const OWN_CRATES: &[&str] = &["shared", "webhook", "keyword_reply", "tagger", "campaign", "multicast"];

/// The filter for `level` (a tracing level name; INFO when unset or unknown).
pub fn filter(level: Option<&str>) -> EnvFilter {
    let own = level.and_then(|l| l.parse::<LevelFilter>().ok()).unwrap_or(LevelFilter::INFO);
    let others = own.min(LevelFilter::INFO);
    let mut directives = others.to_string().to_lowercase();
    for krate in OWN_CRATES {
        directives.push_str(&format!(",{krate}={}", own.to_string().to_lowercase()));
    }
    EnvFilter::new(directives)
}

/// Installs the subscriber: JSON lines when `AWS_LAMBDA_LOG_FORMAT` is `JSON`, text otherwise; no
/// timestamps (CloudWatch adds them).
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_writer(counted_stdout)
        .with_env_filter(filter(level.as_deref()));
    let installed = if json { builder.json().try_init() } else { builder.try_init() };
    if let Err(e) = installed {
        eprintln!("logging was already set up: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Collects the targets of the events that get through.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
        fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.lock().unwrap().push(event.metadata().target().to_string());
        }
    }

    #[test]
    fn debug_and_trace_reach_our_crates_only() {
        for level in ["TRACE", "DEBUG"] {
            let seen = Seen::default();
            let subscriber = tracing_subscriber::registry().with(filter(Some(level))).with(seen.clone());
            tracing::subscriber::with_default(subscriber, || {
                tracing::debug!(target: "lambda_runtime::layers::api_client", "raw event with message text");
                tracing::trace!(target: "lambda_http", "raw request");
                tracing::debug!(target: "aws_smithy_runtime::client", "a secret's value");
                tracing::info!(target: "lambda_runtime", "runtime info still shows");
                tracing::debug!(target: "shared::ingest", "ours");
                tracing::debug!(target: "keyword_reply::handler", "ours too");
                tracing::debug!(target: "campaign::handler", "the planner's");
                tracing::debug!(target: "multicast::handler", "the sender's");
            });
            let seen = seen.0.lock().unwrap().clone();
            let ours = ["shared::ingest", "keyword_reply::handler", "campaign::handler", "multicast::handler"];
            assert_eq!(seen[0], "lambda_runtime", "{level}");
            assert_eq!(seen[1..], ours, "{level}");
        }
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(filter(Some("WARN"))).with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "shared::ingest", "not at WARN");
            tracing::warn!(target: "lambda_runtime", "warnings show");
        });
        assert_eq!(*seen.0.lock().unwrap(), ["lambda_runtime"]);
    }
}
