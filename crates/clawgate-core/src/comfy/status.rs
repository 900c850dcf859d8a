//! `/status` with ComfyUI configured: one block per worker, like the connector's `/status`
//! (`[Online] System Status`, `- Logs:`, `- Errors:`, `- Queue:`; contracts/comfyui-openclaw.md
//! §3.5) but for each worker, with its queue split into running and pending, its ComfyUI version
//! and each device's free VRAM from `/system_stats`.
//!
//! Everything is asked live, every worker at once and every call with [`CALL_TIMEOUT`], so one
//! dead or stalled worker costs the reply at most that long and never the other workers' lines.
//! A call that fails is a line saying so, never an error for the whole reply; at most
//! [`MAX_WORKERS_SHOWN`] workers are listed.

use std::sync::Arc;
use std::time::Duration;

use clawgate_comfy::client::{QueueState, SystemStats};
use clawgate_comfy::openclaw::Health;
use clawgate_comfy::pool::Worker;

/// How long one call to a worker may take before its line says it did not answer.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Workers listed in one reply; the rest are counted.
pub(crate) const MAX_WORKERS_SHOWN: usize = 10;

/// Devices listed per worker.
const MAX_DEVICES_SHOWN: usize = 4;

/// Longest error or device name shown (characters).
const MAX_TEXT: usize = 160;

/// What one worker answered, call by call (`Err` holds the text the line shows).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WorkerStatus {
    pub name: String,
    /// `comfyui` or `openclaw`.
    pub mode: String,
    /// `GET /queue`: (running, pending).
    pub queue: Result<(usize, usize), String>,
    /// The probe's last queue count, shown when the live `/queue` fails.
    pub cached_queue: Option<u64>,
    /// `GET /system_stats`.
    pub stats: Result<SystemStats, String>,
    /// `GET /openclaw/health` of an `openclaw` worker.
    pub extension: Option<Result<Health, String>>,
}

impl WorkerStatus {
    /// Online as the connector judges it: an `openclaw` worker when its extension's health
    /// answers; a native one when ComfyUI answers at all.
    fn online(&self) -> bool {
        match &self.extension {
            Some(health) => health.is_ok(),
            None => self.queue.is_ok() || self.stats.is_ok(),
        }
    }

    /// Why it counts as offline.
    fn offline_reason(&self) -> &str {
        match (&self.extension, &self.queue) {
            (Some(Err(e)), _) | (None, Err(e)) => e,
            _ => "no answer",
        }
    }
}

/// Asks every worker (the first [`MAX_WORKERS_SHOWN`]) at once and words the answers.
pub(crate) async fn workers_status(workers: &[Arc<Worker>]) -> String {
    let shown = &workers[..workers.len().min(MAX_WORKERS_SHOWN)];
    let list = futures_util::future::join_all(shown.iter().map(|w| ask(w))).await;
    render(&list, workers.len() - shown.len())
}

/// One worker's calls, at once, each bounded by [`CALL_TIMEOUT`]. Error texts are scrubbed of
/// the worker URL's password (and cut when shown).
async fn ask(w: &Worker) -> WorkerStatus {
    if w.link().is_some() {
        return joined_status(w);
    }
    let late = || format!("no answer within {} s", CALL_TIMEOUT.as_secs());
    let scrub = |e: String| w.cfg.url.scrub(&e);
    let queue = async {
        match tokio::time::timeout(CALL_TIMEOUT, w.client().queue()).await {
            Ok(Ok(QueueState { running, pending })) => Ok((running.len(), pending.len())),
            Ok(Err(e)) => Err(scrub(e.to_string())),
            Err(_) => Err(late()),
        }
    };
    let stats = async {
        match tokio::time::timeout(CALL_TIMEOUT, w.client().system_info()).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(scrub(e.to_string())),
            Err(_) => Err(late()),
        }
    };
    let extension = async {
        let oc = w.openclaw()?;
        Some(match tokio::time::timeout(CALL_TIMEOUT, oc.health()).await {
            Ok(Ok(health)) => Ok(health),
            Ok(Err(e)) => Err(scrub(e.to_string())),
            Err(_) => Err(late()),
        })
    };
    let (queue, stats, extension) = tokio::join!(queue, stats, extension);
    WorkerStatus {
        name: w.cfg.name.clone(),
        mode: w.cfg.mode.clone(),
        queue,
        cached_queue: w.summary().queue_remaining,
        stats,
        extension,
    }
}

/// A worker that joined by itself is reachable only through its connection: what its last
/// heartbeat said of its ComfyUI.
fn joined_status(w: &Worker) -> WorkerStatus {
    let summary = w.summary();
    let queue = if w.healthy() {
        let total = usize::try_from(summary.queue_remaining.unwrap_or(0)).unwrap_or(usize::MAX);
        Ok((w.running(), total.saturating_sub(w.running())))
    } else {
        Err(summary.last_error.clone().unwrap_or_else(|| "its ComfyUI does not answer".into()))
    };
    WorkerStatus {
        name: w.cfg.name.clone(),
        mode: "joined".into(),
        queue,
        cached_queue: summary.queue_remaining,
        stats: Err("joined worker: its ComfyUI is reachable only from the worker".into()),
        extension: None,
    }
}

/// The reply: a count line, then one block per worker, then how many were left out.
pub(crate) fn render(list: &[WorkerStatus], more: usize) -> String {
    if list.is_empty() && more == 0 {
        return "ComfyUI workers: none configured".to_owned();
    }
    let online = list.iter().filter(|w| w.online()).count();
    let mut out = format!("ComfyUI workers: {online} of {} online", list.len());
    if more > 0 {
        out.push_str(&format!(" ({} listed)", list.len()));
    }
    for w in list {
        out.push('\n');
        render_one(&mut out, w);
    }
    if more > 0 {
        out.push_str(&format!("\n…and {more} more worker{}", if more == 1 { "" } else { "s" }));
    }
    out
}

fn render_one(out: &mut String, w: &WorkerStatus) {
    let line = |out: &mut String, text: String| {
        out.push('\n');
        out.push_str(&text);
    };
    if !w.online() {
        out.push_str(&format!("[Offline] Worker {} ({})", w.name, w.mode));
        line(out, format!("- Error: {}", cut(w.offline_reason())));
        return;
    }
    out.push_str(&format!("[Online] Worker {} ({})", w.name, w.mode));
    if let Some(Ok(health)) = &w.extension {
        if let Some(v) = &health.version {
            line(out, format!("- Extension: ComfyUI-OpenClaw {}", cut(v)));
        }
        line(out, format!("- Logs: {}", health.logs_processed));
        line(out, format!("- Errors: {}", health.errors_captured));
    }
    line(
        out,
        match (&w.queue, w.cached_queue) {
            (Ok((running, pending)), _) => {
                format!("- Queue: {} ({running} running, {pending} pending)", running + pending)
            }
            (Err(e), Some(n)) => format!("- Queue: {n} (last probe; now unavailable: {})", cut(e)),
            (Err(e), None) => format!("- Queue: unavailable ({})", cut(e)),
        },
    );
    match &w.stats {
        Ok(stats) => {
            let mut system =
                format!("- ComfyUI: {}", stats.comfyui_version.as_deref().map_or("version unknown".into(), cut));
            if let (Some(free), Some(total)) = (stats.ram_free, stats.ram_total) {
                system.push_str(&format!(", RAM {} of {} GiB free", gib(free), gib(total)));
            }
            line(out, system);
            for d in stats.devices.iter().take(MAX_DEVICES_SHOWN) {
                let mut text = format!("- Device: {}", cut(&d.name));
                if let (Some(free), Some(total)) = (d.vram_free, d.vram_total) {
                    text.push_str(&format!(", VRAM {} of {} GiB free", gib(free), gib(total)));
                }
                line(out, text);
            }
            if stats.devices.len() > MAX_DEVICES_SHOWN {
                line(out, format!("- …and {} more devices", stats.devices.len() - MAX_DEVICES_SHOWN));
            }
        }
        Err(e) => line(out, format!("- System stats: unavailable ({})", cut(e))),
    }
}

/// Bytes as GiB with one decimal.
fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / f64::from(1u32 << 30))
}

/// At most [`MAX_TEXT`] characters, `…` when cut.
fn cut(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_TEXT - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use clawgate_comfy::client::Device;

    use super::*;

    fn native(name: &str) -> WorkerStatus {
        WorkerStatus {
            name: name.into(),
            mode: "comfyui".into(),
            queue: Ok((1, 2)),
            cached_queue: Some(3),
            stats: Ok(SystemStats {
                comfyui_version: Some("0.3.64".into()),
                ram_total: Some(16 << 30),
                ram_free: Some(6 << 29),
                devices: vec![Device {
                    name: "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync".into(),
                    kind: "cuda".into(),
                    vram_total: Some(24 << 30),
                    vram_free: Some(20 << 30),
                }],
                ..SystemStats::default()
            }),
            extension: None,
        }
    }

    #[test]
    fn an_online_worker_shows_queue_version_and_vram() {
        assert_eq!(
            render(&[native("gpu-a")], 0),
            "ComfyUI workers: 1 of 1 online\n\
             [Online] Worker gpu-a (comfyui)\n\
             - Queue: 3 (1 running, 2 pending)\n\
             - ComfyUI: 0.3.64, RAM 3.0 of 16.0 GiB free\n\
             - Device: cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync, VRAM 20.0 of 24.0 GiB free"
        );
    }

    #[test]
    fn an_openclaw_worker_adds_the_connectors_logs_and_errors() {
        let w = WorkerStatus {
            mode: "openclaw".into(),
            extension: Some(Ok(Health {
                version: Some("1.0.7".into()),
                logs_processed: 12,
                errors_captured: 1,
                raw: serde_json::Value::Null,
            })),
            ..native("oc")
        };
        let text = render(&[w], 0);
        assert!(
            text.contains(
                "[Online] Worker oc (openclaw)\n- Extension: ComfyUI-OpenClaw 1.0.7\n- Logs: 12\n- Errors: 1\n- Queue: 3"
            ),
            "{text}"
        );
    }

    #[test]
    fn failures_are_lines_not_errors() {
        let dead = WorkerStatus {
            queue: Err("could not reach ComfyUI on /queue".into()),
            stats: Err("no answer within 3 s".into()),
            ..native("dead")
        };
        let half = WorkerStatus { queue: Err("ComfyUI answered HTTP 500 on /queue".into()), ..native("half") };
        let stats_gone = WorkerStatus { stats: Err("no answer within 3 s".into()), cached_queue: None, ..native("s") };
        let oc_down = WorkerStatus {
            mode: "openclaw".into(),
            extension: Some(Err("HTTP 503: Service unavailable".into())),
            ..native("oc")
        };
        let text = render(&[dead, half, stats_gone, oc_down], 0);
        assert!(text.starts_with("ComfyUI workers: 2 of 4 online\n"), "{text}");
        assert!(
            text.contains(
                "[Offline] Worker dead (comfyui)\n- Error: could not reach ComfyUI on /queue\n[Online] Worker half"
            ),
            "{text}"
        );
        assert!(
            text.contains("- Queue: 3 (last probe; now unavailable: ComfyUI answered HTTP 500 on /queue)"),
            "{text}"
        );
        assert!(text.contains("[Online] Worker s (comfyui)\n- Queue: 3 (1 running, 2 pending)\n- System stats: unavailable (no answer within 3 s)"), "{text}");
        assert!(text.ends_with("[Offline] Worker oc (openclaw)\n- Error: HTTP 503: Service unavailable"), "{text}");
    }

    #[test]
    fn the_reply_is_bounded() {
        let many: Vec<WorkerStatus> = (0..MAX_WORKERS_SHOWN).map(|i| native(&format!("w{i}"))).collect();
        let text = render(&many, 5);
        assert!(text.starts_with("ComfyUI workers: 10 of 10 online (10 listed)"), "{text}");
        assert!(text.ends_with("\n…and 5 more workers"), "{text}");
        let long = WorkerStatus { queue: Err("e".repeat(5000)), stats: Err("x".into()), ..native("long") };
        let text = render(&[long], 0);
        assert!(text.chars().count() < 400, "{}", text.chars().count());
        assert_eq!(render(&[], 0), "ComfyUI workers: none configured");
    }
}
