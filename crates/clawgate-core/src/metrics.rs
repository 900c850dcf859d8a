//! The gateway's Prometheus metrics: one registry per gateway (no global recorder, so two
//! gateways in one test process never mix their counts), built in `Gateway::new` and handed as a
//! cheap-clone [`Metrics`] handle to the code that counts.
//!
//! Label sets are bounded by construction: a method label is a name from the static method
//! table or `other`, outcomes and directions are fixed words, channels and workers come from the
//! config. Nothing a client sends can add a label value.
//!
//! Gauges that describe state kept elsewhere (outbox depth, ComfyUI queue depth) are computed at
//! scrape time by [`scrape`], so they never drift from the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Labels made only of fixed words.
type Fixed1 = [(&'static str, &'static str); 1];
type Fixed2 = [(&'static str, &'static str); 2];
/// Labels whose values come from the config (channel and worker names).
type Named1 = [(&'static str, String); 1];
type Named2 = [(&'static str, String); 2];
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The method label of a request: the method's name when the gateway implements it, else this.
pub const OTHER_METHOD: &str = "other";

/// The content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;
/// The content type of the OpenMetrics text format (served when the scraper asks for it).
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Request latencies: sub-millisecond `health` up to a long tool call.
const REQUEST_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];
/// ComfyUI jobs: seconds to tens of minutes.
const JOB_BUCKETS: [f64; 11] = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];
/// Store operations: an indexed SQLite read is tens of microseconds, a synced write a few ms.
const STORE_BUCKETS: [f64; 12] = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0];

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

fn store_histogram() -> Histogram {
    Histogram::new(STORE_BUCKETS)
}

/// Which way a chat message or token count went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the platform (or the model's prompt).
    Inbound,
    /// To the platform (or the model's completion).
    Outbound,
}

impl Direction {
    fn message_label(self) -> &'static str {
        match self {
            Direction::Inbound => "in",
            Direction::Outbound => "out",
        }
    }
}

/// Why a send to a chat platform failed (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The platform asked us to wait (429 / retry-after); the message will be retried.
    RateLimited,
    /// A network or server error; the message will be retried.
    Transient,
    /// The platform refused the message, or retries ran out: it is given up.
    Permanent,
    /// The queued row was not a message.
    Invalid,
}

impl SendFailure {
    fn label(self) -> &'static str {
        match self {
            SendFailure::RateLimited => "rate_limited",
            SendFailure::Transient => "transient",
            SendFailure::Permanent => "permanent",
            SendFailure::Invalid => "invalid",
        }
    }
}

/// The gateway's metrics. Cheap to clone; every clone counts into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

struct Inner {
    registry: Registry,
    ws_open: Gauge,
    ws_opened: Counter,
    requests: Family<Fixed2, Counter>,
    request_duration: HistogramFamily<Fixed1>,
    runs: Family<Fixed1, Counter>,
    runs_in_flight: Gauge,
    tokens: Family<Fixed1, Counter>,
    channel_messages: Family<Named2, Counter>,
    send_failures: Family<Named2, Counter>,
    outbox_depth: Family<Named1, Gauge>,
    comfy_queue: Family<Named1, Gauge>,
    comfy_job_duration: Histogram,
    store_op: HistogramFamily<Fixed1>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every series of the gateway, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("clawgate");
        let ws_open = Gauge::default();
        registry.register(
            "ws_connections",
            "WebSocket connections open now (admitted or in handshake)",
            ws_open.clone(),
        );
        let ws_opened = Counter::default();
        registry.register("ws_connections_opened", "WebSocket connections accepted since start", ws_opened.clone());
        let requests = Family::<Fixed2, Counter>::default();
        registry.register(
            "requests",
            "Gateway protocol requests by method and outcome (ok, error, refused)",
            requests.clone(),
        );
        let request_duration = HistogramFamily::<Fixed1>::new_with_constructor(request_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "request_duration",
            "Time from dispatch to the response of a gateway protocol request",
            Unit::Seconds,
            request_duration.clone(),
        );
        let runs = Family::<Fixed1, Counter>::default();
        registry.register("agent_runs", "Agent runs finished, by outcome", runs.clone());
        let runs_in_flight = Gauge::default();
        registry.register("agent_runs_in_flight", "Agent runs started and not finished", runs_in_flight.clone());
        let tokens = Family::<Fixed1, Counter>::default();
        registry.register("llm_tokens", "Model tokens reported by providers (input, output)", tokens.clone());
        let channel_messages = Family::<Named2, Counter>::default();
        registry.register("channel_messages", "Chat messages received (in) and sent (out)", channel_messages.clone());
        let send_failures = Family::<Named2, Counter>::default();
        registry.register(
            "channel_send_failures",
            "Failed sends to a chat platform by kind (rate_limited, transient, permanent, invalid)",
            send_failures.clone(),
        );
        let outbox_depth = Family::<Named1, Gauge>::default();
        registry.register("outbox_depth", "Outbound chat messages queued and not yet sent", outbox_depth.clone());
        let comfy_queue = Family::<Named1, Gauge>::default();
        registry.register(
            "comfy_queue_depth",
            "Prompts queued on a ComfyUI worker (its own queue as last probed, else our jobs on it)",
            comfy_queue.clone(),
        );
        let comfy_job_duration = Histogram::new(JOB_BUCKETS);
        registry.register_with_unit(
            "comfy_job_duration",
            "ComfyUI jobs from start on a worker to a final state",
            Unit::Seconds,
            comfy_job_duration.clone(),
        );
        let store_op = HistogramFamily::<Fixed1>::new_with_constructor(store_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "store_op_duration",
            "Latency of hot store operations",
            Unit::Seconds,
            store_op.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                ws_open,
                ws_opened,
                requests,
                request_duration,
                runs,
                runs_in_flight,
                tokens,
                channel_messages,
                send_failures,
                outbox_depth,
                comfy_queue,
                comfy_job_duration,
                store_op,
            }),
        }
    }

    /// A WebSocket connection was accepted; it is counted open until the guard is dropped.
    pub fn ws_connection(&self) -> WsConnection {
        self.inner.ws_opened.inc();
        self.inner.ws_open.inc();
        WsConnection(self.clone())
    }

    /// A protocol request answered after `elapsed`. Unknown methods share the label `other`.
    pub fn request(&self, method: &str, ok: bool, elapsed: Duration) {
        let method = method_label(method);
        let outcome = if ok { "ok" } else { "error" };
        self.inner.requests.get_or_create(&[("method", method), ("outcome", outcome)]).inc();
        self.inner.request_duration.get_or_create(&[("method", method)]).observe(elapsed.as_secs_f64());
    }

    /// A protocol request refused before dispatch (wrong role, missing scope): outcome
    /// `refused`, no latency.
    pub fn request_refused(&self, method: &str) {
        self.inner.requests.get_or_create(&[("method", method_label(method)), ("outcome", "refused")]).inc();
    }

    /// An agent run started; it counts as in flight until the guard is dropped.
    pub fn run_started(&self) -> RunInFlight {
        self.inner.runs_in_flight.inc();
        RunInFlight(self.clone())
    }

    /// An agent run ended with this outcome (its stored status: `completed`, `failed`, …).
    pub fn run_finished(&self, outcome: &'static str) {
        self.inner.runs.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// Tokens a provider reported for one turn.
    pub fn tokens(&self, input: u64, output: u64) {
        if input > 0 {
            self.inner.tokens.get_or_create(&[("direction", "input")]).inc_by(input);
        }
        if output > 0 {
            self.inner.tokens.get_or_create(&[("direction", "output")]).inc_by(output);
        }
    }

    /// A chat message received from or accepted by a platform.
    pub fn channel_message(&self, channel: &str, direction: Direction) {
        let labels = [("channel", channel.to_owned()), ("direction", direction.message_label().to_owned())];
        self.inner.channel_messages.get_or_create(&labels).inc();
    }

    /// A send to a platform failed.
    pub fn channel_send_failure(&self, channel: &str, kind: SendFailure) {
        let labels = [("channel", channel.to_owned()), ("kind", kind.label().to_owned())];
        self.inner.send_failures.get_or_create(&labels).inc();
    }

    /// A ComfyUI job reached a final state `elapsed` after it started on a worker.
    pub fn comfy_job_finished(&self, elapsed: Duration) {
        self.inner.comfy_job_duration.observe(elapsed.as_secs_f64());
    }

    /// Record one store operation's latency (`op` is a fixed name such as `transcript_append`).
    pub fn store_op(&self, op: &'static str, elapsed: Duration) {
        self.inner.store_op.get_or_create(&[("op", op)]).observe(elapsed.as_secs_f64());
    }

    /// Run a store operation and record its latency.
    pub async fn time_store<T>(&self, op: &'static str, fut: impl std::future::Future<Output = T>) -> T {
        let start = Instant::now();
        let out = fut.await;
        self.store_op(op, start.elapsed());
        out
    }

    /// Replace the outbox depths (channel → queued rows) with a fresh reading.
    pub fn set_outbox_depths(&self, depths: impl IntoIterator<Item = (String, u64)>) {
        set_family(&self.inner.outbox_depth, "channel", depths);
    }

    /// Replace the ComfyUI queue depths (worker → queued prompts) with a fresh reading.
    pub fn set_comfy_queue_depths(&self, depths: impl IntoIterator<Item = (String, u64)>) {
        set_family(&self.inner.comfy_queue, "worker", depths);
    }

    /// The exposition of every series: OpenMetrics when `openmetrics`, else the Prometheus text
    /// format 0.0.4. Returns the body and its content type.
    pub fn encode(&self, openmetrics: bool) -> (String, &'static str) {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail; an encoder error would be a bug in a label value,
        // and a partial page is still the most useful answer.
        let (res, content_type) = if openmetrics {
            (text::encode(&mut out, &self.inner.registry), OPENMETRICS_CONTENT_TYPE)
        } else {
            (prometheus_text::encode(&mut out, &self.inner.registry), PROMETHEUS_CONTENT_TYPE)
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        (out, content_type)
    }
}

/// Read the scrape-time gauges (outbox depth per channel, ComfyUI queue depth per worker) and
/// encode every series (see [`Metrics::encode`]). A store error leaves the outbox gauges as they
/// were last read rather than failing the scrape.
pub async fn scrape(
    metrics: &Metrics,
    store: &crate::gateway::Store,
    channels: &crate::channels::ChannelService,
    comfy: &crate::comfy::ComfyService,
    openmetrics: bool,
) -> (String, &'static str) {
    use clawgate_store::ChannelStore;
    let mut depths: std::collections::BTreeMap<String, u64> =
        channels.accounts().iter().map(|a| (a.cfg.key.channel.clone(), 0)).collect();
    let queued = metrics.time_store("accounts_with_queued_outbound", store.accounts_with_queued_outbound()).await;
    let mut complete = queued.is_ok();
    for (channel, account) in queued.unwrap_or_default() {
        match store.outbox_counts(&channel, &account).await {
            Ok(counts) => *depths.entry(channel).or_default() += counts.queued,
            Err(e) => {
                tracing::warn!(error = %e, "reading outbox depth for metrics failed");
                complete = false;
            }
        }
    }
    if complete {
        metrics.set_outbox_depths(depths);
    }
    let workers = comfy.workers();
    metrics.set_comfy_queue_depths(workers.iter().map(|w| {
        let summary = w.summary();
        (summary.name, summary.queue_remaining.unwrap_or(w.running() as u64))
    }));
    metrics.encode(openmetrics)
}

/// Clear a gauge family and set it from a reading: a channel or worker that went away disappears
/// instead of keeping its last value.
fn set_family(family: &Family<Named1, Gauge>, key: &'static str, values: impl IntoIterator<Item = (String, u64)>) {
    family.clear();
    for (name, value) in values {
        family.get_or_create(&[(key, name)]).set(i64::try_from(value).unwrap_or(i64::MAX));
    }
}

/// The bounded label of a method name.
pub fn method_label(method: &str) -> &'static str {
    clawgate_protocol::methods::implemented(method).map(|spec| spec.name).unwrap_or(OTHER_METHOD)
}

/// An open WebSocket connection (see [`Metrics::ws_connection`]).
#[derive(Debug)]
pub struct WsConnection(Metrics);

impl Drop for WsConnection {
    fn drop(&mut self) {
        self.0.inner.ws_open.dec();
    }
}

/// An agent run in flight (see [`Metrics::run_started`]).
#[derive(Debug)]
pub struct RunInFlight(Metrics);

impl Drop for RunInFlight {
    fn drop(&mut self) {
        self.0.inner.runs_in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label_value() {
        let m = Metrics::new();
        m.request("health", true, Duration::from_millis(1));
        m.request_refused("status");
        for i in 0..50 {
            m.request(&format!("no.such.method.{i}"), false, Duration::from_millis(1));
        }
        let (page, content_type) = m.encode(false);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(page.contains("clawgate_requests_total{method=\"health\",outcome=\"ok\"} 1\n"), "{page}");
        assert!(page.contains("clawgate_requests_total{method=\"other\",outcome=\"error\"} 50\n"), "{page}");
        assert!(!page.contains("no.such.method"), "{page}");
        assert!(page.contains("clawgate_requests_total{method=\"status\",outcome=\"refused\"} 1\n"), "{page}");
    }

    #[test]
    fn guards_count_connections_and_runs_off_when_dropped() {
        let m = Metrics::new();
        let a = m.ws_connection();
        let _b = m.ws_connection();
        drop(a);
        drop(m.run_started());
        m.run_finished("completed");
        let _running = m.run_started();
        let (page, _) = m.encode(false);
        for line in [
            "clawgate_ws_connections 1\n",
            "clawgate_ws_connections_opened_total 2\n",
            "clawgate_agent_runs_in_flight 1\n",
            "clawgate_agent_runs_total{outcome=\"completed\"} 1\n",
        ] {
            assert!(page.contains(line), "{line} missing in {page}");
        }
    }

    #[test]
    fn scrape_time_gauges_forget_what_went_away() {
        let m = Metrics::new();
        m.set_outbox_depths([("telegram".to_owned(), 3), ("slack".to_owned(), 0)]);
        m.set_outbox_depths([("slack".to_owned(), 2)]);
        let (page, _) = m.encode(true);
        assert!(page.contains("clawgate_outbox_depth{channel=\"slack\"} 2\n"), "{page}");
        assert!(!page.contains("telegram"), "{page}");
        assert!(page.ends_with("# EOF\n"), "{page}");
    }
}
