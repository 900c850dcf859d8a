//! Helpers shared by the provider tests.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawgate_llm::{
    Api, EventStream, LlmError, Provider, ProviderConfig, RetryPolicy, StreamEvent, Timeouts, build_provider,
};
use futures_util::StreamExt;

/// Timeouts short enough for tests that wait on them, long enough for a loaded CI box.
pub fn test_timeouts() -> Timeouts {
    Timeouts { connect: Duration::from_secs(5), first_byte: Duration::from_secs(10), idle: Duration::from_secs(10) }
}

/// Retries quickly so tests do not sleep on backoff.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy { max_attempts: 3, base: Duration::from_millis(10), cap: Duration::from_secs(5) }
}

pub fn provider(api: Api, base_url: &str, key: Option<&str>, timeouts: Timeouts) -> Arc<dyn Provider> {
    let mut config = ProviderConfig::new("fake", base_url, api).with_timeouts(timeouts);
    config.api_key = key.map(str::to_owned);
    build_provider(config).expect("valid provider config")
}

/// Every event of a stream, and the error that ended it, if any.
pub async fn drain(mut stream: EventStream) -> (Vec<StreamEvent>, Option<LlmError>) {
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => events.push(event),
            Err(error) => {
                assert!(stream.next().await.is_none(), "nothing may follow an error");
                return (events, Some(error));
            }
        }
    }
    (events, None)
}

pub fn text_of(events: &[StreamEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// A `tracing` writer that keeps everything in memory, to check what was (not) logged.
#[derive(Clone, Default)]
pub struct LogBuffer(pub Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer lock")).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a TRACE-level subscriber writing into the returned buffer for the current thread
/// (tokio tests run on one thread, so the client's spawned tasks are covered too).
pub fn capture_logs() -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}
