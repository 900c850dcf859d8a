//! Delivery of ComfyUI job results to a web chat session (`deliver_to = {channel: "webchat",
//! sessionKey}`, set when `/run` came through `chat.send`).
//!
//! A notice or a finished job becomes one assistant message in that session's transcript, told to
//! clients as a finished run (`session.message`, a `chat` `final` under a run id of its own,
//! `sessions.changed`), so an open page shows it at once and history keeps it. A finished job's
//! message carries one block per stored output, `{type: "image"|"file", url: "/media/<token>",
//! mimeType, filename, jobId}` (`chat.history` signs the link afresh on every read).
//!
//! Unlike an agent's reply, the message is not published on the agent service's in-process run
//! feed: its run id (`comfy-<key>`) is made here, so no caller can be waiting on it there.
//!
//! Each delivery is made once per key (`job:<id>:done`, `job:<id>:failed`, …): its run id is
//! `comfy-<key>`, and a key whose run id is already in the transcript is not appended again (a
//! restart's reconcile may deliver a job a second time).

use std::time::Duration;

use serde_json::{Value, json};

use clawgate_store::{
    EntryStatus, JobRecord, JobStatus, JobStore, SessionStore, TranscriptEntry, TranscriptRole, TranscriptStore,
};

use crate::agent::AgentsConfig;
use crate::session_key::SessionKey;
use crate::time::now_ms;

use super::host::Host;

/// How long a finished job's message waits to be announced for the job to be marked completed
/// (its media links are served only then).
const COMPLETION_WAIT: Duration = Duration::from_secs(30);

/// Whether the job's results go to a web chat session (`deliver_to.channel == "webchat"`).
pub(super) fn is_target(job: &JobRecord) -> bool {
    job.deliver_to.as_ref().and_then(|d| d.get("channel")).and_then(|c| c.as_str()) == Some("webchat")
}

/// A notice about the job (`[Job Failed]…`, an approval request, …) as an assistant message.
pub(super) async fn deliver_text(host: &Host, job: &JobRecord, key: &str, text: &str) {
    let msg = message(vec![json!({"type": "text", "text": text})]);
    if let Some(d) = deliver(host, job, key, &msg).await {
        announce(host, &d);
    }
}

/// The completed job's summary and its outputs, one image (or file) block each.
pub(super) async fn deliver_outputs(host: &Host, job: &JobRecord, problems: &[String]) {
    let mut problems = problems.to_vec();
    let mut blocks = Vec::new();
    for name in job.outputs.as_array().into_iter().flatten().filter_map(|o| o.get("filename")?.as_str()) {
        let Some(url) = host.media.signed_path(job, name).await else {
            problems.push(format!("{name}: cannot sign a link to it"));
            continue;
        };
        let mime = crate::media::content_type(name);
        let kind = if mime.starts_with("image/") { "image" } else { "file" };
        blocks.push(json!({"type": kind, "url": url, "mimeType": mime, "filename": name, "jobId": job.id}));
    }
    let mut text = format!("[Job Completed]\nID: {}\nTemplate: {}\nImages: {}", job.id, job.template_id, blocks.len());
    for p in &problems {
        text.push_str(&format!("\nNot delivered: {p}"));
    }
    let mut content = vec![json!({"type": "text", "text": text})];
    content.extend(blocks);
    let Some(d) = deliver(host, job, &format!("job:{}:done", job.id), &message(content)).await else { return };
    // The job is delivered before it is marked completed (see the dispatcher's `finish`), and
    // its files are served only after: clients hear of the message once the links work.
    let host2 = host.clone();
    let job_id = job.id.clone();
    host.tasks().spawn("comfy", async move {
        let host = host2;
        let shutdown = host.tasks().token();
        let deadline = tokio::time::Instant::now() + COMPLETION_WAIT;
        loop {
            match host.store().get_job(&job_id).await {
                Ok(Some(j)) if j.status == JobStatus::Running && tokio::time::Instant::now() < deadline => {}
                _ => break,
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(25)) => {}
            }
        }
        announce(&host, &d);
    });
}

/// Tell clients about a delivered message as they hear of a finished run: `session.message`,
/// one `chat` `final` for its run id carrying the message, `sessions.changed`.
fn announce(host: &Host, d: &Delivered) {
    let events = host.events();
    events.session_message(&d.session_key, &crate::agent::transcript::history_message(&d.entry));
    let payload = json!({"runId": d.run_id, "sessionKey": d.session_key, "agentId": d.agent_id, "seq": 1,
                         "state": "final", "stopReason": "stop", "message": d.entry.content});
    events.run_event("chat", &d.session_key, &payload, false);
    events.session_changed(&d.session_key, "run-finished");
}

/// The session a delivery names, as `(key, agent id)`: a key without an agent belongs to the
/// configured default agent.
fn session_of(host: &Host, key: &str) -> Option<(String, String)> {
    let current = host.config.current();
    let default_agent =
        AgentsConfig::from_config(&current.config).map(|a| a.default_id).unwrap_or_else(|_| "main".into());
    SessionKey::parse(key, &default_agent).ok().map(SessionKey::into_parts)
}

fn message(content: Vec<Value>) -> Value {
    json!({"role": "assistant", "content": content, "timestamp": now_ms(), "stopReason": "stop",
           "__openclaw": {"source": "comfy"}})
}

/// A message appended to its session, not yet announced.
struct Delivered {
    session_key: String,
    agent_id: String,
    run_id: String,
    entry: TranscriptEntry,
}

/// Append `msg` to the job's session under `comfy-<key>`; `None` when there is no session to
/// deliver to, the key was delivered before, or the store failed (logged).
async fn deliver(host: &Host, job: &JobRecord, key: &str, msg: &Value) -> Option<Delivered> {
    let target = job.deliver_to.as_ref().and_then(|d| d.get("sessionKey")).and_then(Value::as_str);
    let Some((session_key, agent_id)) = target.and_then(|k| session_of(host, k)) else {
        tracing::warn!(job = %job.id, "web chat delivery without a valid sessionKey; dropped");
        return None;
    };
    let run_id = format!("comfy-{key}");
    let _one_at_a_time = host.webchat_delivering.lock().await;
    let store = host.store();
    match store.find_by_run(&run_id).await {
        Ok(done) if !done.is_empty() => return None,
        Ok(_) => {}
        Err(e) => {
            tracing::error!(job = %job.id, error = %e, "cannot check the web chat delivery");
            return None;
        }
    }
    let appended = match store.ensure_session(&session_key, &agent_id, now_ms()).await {
        Ok(session) => {
            store
                .append(
                    &session.session_id,
                    TranscriptRole::Assistant,
                    msg,
                    Some(&run_id),
                    EntryStatus::Final,
                    now_ms(),
                )
                .await
        }
        Err(e) => Err(e),
    };
    match appended {
        Ok(entry) => Some(Delivered { session_key, agent_id, run_id, entry }),
        Err(e) => {
            tracing::error!(job = %job.id, session = %session_key, error = %e, "cannot deliver to the web chat");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::transcript;

    #[test]
    fn a_result_message_reads_as_text_for_the_model() {
        let m = message(vec![
            json!({"type": "text", "text": "[Job Completed]"}),
            json!({"type": "image", "url": "/media/a.b", "mimeType": "image/png", "filename": "x.png"}),
        ]);
        assert_eq!(transcript::text_of(&m), "[Job Completed]");
        assert_eq!(m["role"], "assistant");
    }
}
