//! `ComfyClient` against `FakeComfy` (the native ComfyUI 0.3.64 behaviour in
//! `contracts/comfy-real.md`).

use std::time::Duration;

use clawgate_comfy::client::{ComfyClient, ComfyError, ComfyEvent, EventStream, JobStatus};
use clawgate_testkit::fake_comfy::FakeComfy;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// The weight-free workflow of comfy-real.md §4 (EmptyImage → ImageInvert → SaveImage).
fn solid(width: u32, height: u32, color: u32) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "gw_native"}}
    })
}

fn client(fake: &FakeComfy, id: &str) -> ComfyClient {
    ComfyClient::builder(&format!("{}/", fake.base_url()), id)
        .request_timeout(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(200))
        .build()
        .expect("client")
}

/// Opens the client's socket and waits for the `status` ComfyUI sends on connect, so no event of
/// a later prompt is missed.
async fn connected(client: &ComfyClient) -> EventStream {
    let mut events = client.events();
    let first = tokio::time::timeout(WAIT, events.next()).await.expect("status on connect");
    assert!(matches!(first, Some(ComfyEvent::Status { .. })), "{first:?}");
    events
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

#[tokio::test]
async fn weight_free_workflow_reports_progress_and_yields_a_png() -> anyhow::Result<()> {
    let fake = FakeComfy::builder().job_duration(Duration::from_millis(150)).start().await?;
    let client = client(&fake, "gw-test-client");
    let mut events = connected(&client).await;

    let submitted = client.submit(&solid(64, 32, 0xFF0000)).await?;
    assert_eq!(submitted.number, 0);
    assert_eq!(submitted.node_errors, json!({}));
    let mut seen = Vec::new();
    let entry = client.wait_for(&submitted.prompt_id, WAIT, |e| seen.push(e.clone())).await?;
    assert_eq!(entry.status, JobStatus::Completed);

    // The history poll may find the entry before the socket delivered the last events, so the
    // whole sequence is read from a stream that was open throughout (ComfyUI sends them before
    // it writes history, so they all come).
    let mut all = Vec::new();
    while !all.iter().any(|e: &ComfyEvent| e.is_terminal()) {
        match tokio::time::timeout(WAIT, events.next()).await? {
            Some(e) if e.prompt_id() == Some(submitted.prompt_id.as_str()) => all.push(e),
            Some(_) => {}
            None => panic!("event stream ended"),
        }
    }
    assert_eq!(all.first(), Some(&ComfyEvent::ExecutionStart { prompt_id: submitted.prompt_id.clone() }));
    assert!(all.contains(&ComfyEvent::Cached { prompt_id: submitted.prompt_id.clone(), nodes: vec![] }));
    assert!(all.iter().any(|e| matches!(e, ComfyEvent::Executing { node: Some(n), .. } if n == "1")));
    assert!(all.iter().any(|e| matches!(e, ComfyEvent::Progress { value: 1, max: 2, .. })));
    assert!(
        all.iter().any(|e| matches!(e, ComfyEvent::Executed { node, images, .. } if node == "3" && images.len() == 1))
    );
    assert!(all.iter().any(|e| matches!(e, ComfyEvent::Success { .. })));
    // `wait_for` reported them in order from the first (replayed if it came before the call),
    // up to where history ended the wait.
    assert!(!seen.is_empty() && all.starts_with(&seen), "reported {seen:?}\nof {all:?}");

    assert_eq!(entry.outputs.len(), 1);
    let file = &entry.outputs[0];
    assert_eq!(
        (file.filename.as_str(), file.subfolder.as_str(), file.kind.as_str()),
        ("gw_native_00001_.png", "", "output")
    );
    let png = client.view(file).await?;
    assert_eq!(png_size(&png), (64, 32));
    assert_eq!(fake.completed_count(), 1);
    assert_eq!(fake.submitted()[0].client_id.as_deref(), Some("gw-test-client"));
    Ok(())
}

#[tokio::test]
async fn identical_resubmit_is_served_from_cache_with_the_earlier_file() -> anyhow::Result<()> {
    let fake = FakeComfy::start().await?;
    let client = client(&fake, "cache-client");
    let mut events = connected(&client).await;

    let first = client.submit(&solid(32, 32, 1)).await?;
    let first = client.wait_for(&first.prompt_id, WAIT, |_| {}).await?;
    let again = client.submit(&solid(32, 32, 1)).await?;
    let cached = client.wait_for(&again.prompt_id, WAIT, |_| {}).await?;
    // History can win the race against the socket here, so read the events from the stream.
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &ComfyEvent| e.is_terminal()) {
        match tokio::time::timeout(WAIT, events.next()).await? {
            Some(e) if e.prompt_id() == Some(again.prompt_id.as_str()) => seen.push(e),
            Some(_) => {}
            None => panic!("event stream ended"),
        }
    }

    assert_eq!(cached.status, JobStatus::Completed);
    assert_eq!(cached.outputs, first.outputs);
    let all = vec!["1".to_owned(), "2".to_owned(), "3".to_owned()];
    assert!(seen.contains(&ComfyEvent::Cached { prompt_id: again.prompt_id.clone(), nodes: all }), "{seen:?}");
    assert!(!seen.iter().any(|e| matches!(e, ComfyEvent::Progress { .. })));

    // A changed input runs for real and writes a new file.
    let varied = client.submit(&solid(32, 32, 2)).await?;
    let varied = client.wait_for(&varied.prompt_id, WAIT, |_| {}).await?;
    assert_eq!(varied.outputs[0].filename, "gw_native_00002_.png");
    Ok(())
}

#[tokio::test]
async fn scripted_failure_is_an_execution_error() -> anyhow::Result<()> {
    let fake = FakeComfy::start().await?;
    fake.fail_next(1);
    let client = client(&fake, "fail-client");
    let mut events = connected(&client).await;

    let submitted = client.submit(&solid(16, 16, 3)).await?;
    let entry = client.wait_for(&submitted.prompt_id, WAIT, |_| {}).await?;
    let mut errors = Vec::new();
    while errors.is_empty() {
        match tokio::time::timeout(WAIT, events.next()).await? {
            Some(ComfyEvent::Error { message, .. }) => errors.push(message),
            Some(_) => {}
            None => panic!("event stream ended"),
        }
    }
    let JobStatus::Failed { message, node_id } = entry.status else { panic!("not failed: {entry:?}") };
    assert!(message.contains("Scripted failure"), "{message}");
    assert_eq!(node_id.as_deref(), Some("1"));
    assert_eq!(errors, vec![message]);
    assert!(entry.outputs.is_empty());

    // Only the next one failed.
    let next = client.submit(&solid(16, 16, 3)).await?;
    assert_eq!(client.wait_for(&next.prompt_id, WAIT, |_| {}).await?.status, JobStatus::Completed);
    Ok(())
}

#[tokio::test]
async fn invalid_prompts_are_permanent_errors_with_node_errors() -> anyhow::Result<()> {
    let fake = FakeComfy::start().await?;
    let client = client(&fake, "invalid-client");

    let unknown = client.submit(&json!({"1": {"class_type": "NoSuchNode", "inputs": {}}})).await;
    let Err(err @ ComfyError::Invalid { .. }) = unknown else { panic!("{unknown:?}") };
    assert!(!err.is_transient());
    let ComfyError::Invalid { kind, message, details, .. } = err else { unreachable!() };
    assert_eq!(kind, "invalid_prompt");
    assert_eq!(message, "Cannot execute because node NoSuchNode does not exist.");
    assert_eq!(details, "Node ID '#1'");

    let mut bad = solid(64, 32, 255);
    bad["1"]["inputs"]["width"] = json!("abc");
    let Err(ComfyError::Invalid { kind, node_errors, .. }) = client.submit(&bad).await else { panic!("accepted") };
    assert_eq!(kind, "prompt_outputs_failed_validation");
    assert_eq!(node_errors["1"]["errors"][0]["type"], "invalid_input_type");
    assert_eq!(node_errors["1"]["dependent_outputs"], json!(["3"]));
    assert!(fake.submitted().is_empty());
    Ok(())
}

#[tokio::test]
async fn cancel_pending_removes_it_from_the_queue_and_it_never_reaches_history() -> anyhow::Result<()> {
    let fake = FakeComfy::start().await?;
    fake.set_paused(true);
    let client = client(&fake, "cancel-client");

    let a = client.submit(&solid(8, 8, 10)).await?;
    let b = client.submit(&solid(8, 8, 11)).await?;
    let queue = client.queue().await?;
    assert!(queue.running.is_empty());
    assert_eq!(queue.pending, vec![a.prompt_id.clone(), b.prompt_id.clone()]);

    client.cancel_pending(&a.prompt_id).await?;
    assert_eq!(client.queue().await?.pending, vec![b.prompt_id.clone()]);
    assert_eq!(fake.deleted_from_queue(), 1);

    fake.set_paused(false);
    assert_eq!(client.wait_for(&b.prompt_id, WAIT, |_| {}).await?.status, JobStatus::Completed);
    assert_eq!(client.history(&a.prompt_id).await?, None);
    Ok(())
}

#[tokio::test]
async fn interrupt_stops_the_running_prompt() -> anyhow::Result<()> {
    let fake = FakeComfy::start().await?;
    fake.hang();
    let client = client(&fake, "interrupt-client");
    let _events = connected(&client).await;

    let submitted = client.submit(&solid(8, 8, 12)).await?;
    clawgate_testkit::wait_until(WAIT, "the prompt runs", || async {
        client.queue().await.ok().filter(|q| q.running == vec![submitted.prompt_id.clone()]).map(|_| ())
    })
    .await?;
    // Targeting another prompt does nothing; the global interrupt stops it.
    client.interrupt_prompt("not-running").await?;
    assert_eq!(fake.interrupt_count(), 0);
    client.interrupt().await?;

    let mut seen = Vec::new();
    let entry = client.wait_for(&submitted.prompt_id, WAIT, |e| seen.push(e.clone())).await?;
    assert_eq!(entry.status, JobStatus::Interrupted);
    assert!(entry.outputs.is_empty());
    assert_eq!(fake.interrupt_count(), 1);
    assert!(client.queue().await?.running.is_empty());
    Ok(())
}

#[tokio::test]
async fn completion_is_found_by_polling_when_the_websocket_is_lost_mid_job() -> anyhow::Result<()> {
    let fake = FakeComfy::builder().job_duration(Duration::from_millis(800)).start().await?;
    let client = client(&fake, "lost-ws-client");
    let mut events = connected(&client).await;

    let submitted = client.submit(&solid(8, 8, 13)).await?;
    loop {
        match tokio::time::timeout(WAIT, events.next()).await? {
            Some(ComfyEvent::ExecutionStart { .. }) => break,
            Some(_) => {}
            None => panic!("event stream ended"),
        }
    }
    fake.set_ws_enabled(false);

    let mut seen = Vec::new();
    let entry = client.wait_for(&submitted.prompt_id, WAIT, |e| seen.push(e.clone())).await?;
    assert_eq!(entry.status, JobStatus::Completed);
    assert!(!seen.iter().any(ComfyEvent::is_terminal), "the socket was down: {seen:?}");

    // The socket comes back by itself once the server accepts it again.
    fake.set_ws_enabled(true);
    let back = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(ComfyEvent::Status { .. }) = events.next().await {
                break;
            }
        }
    })
    .await;
    assert!(back.is_ok(), "no reconnect");
    Ok(())
}

#[tokio::test]
async fn a_killed_server_is_a_transient_transport_error() -> anyhow::Result<()> {
    let fake = FakeComfy::start().await?;
    let client = client(&fake, "kill-client");
    client.system_stats().await?;
    let pending = {
        fake.set_paused(true);
        client.submit(&solid(8, 8, 14)).await?
    };

    fake.kill();
    let err = client.submit(&solid(8, 8, 15)).await.expect_err("server is gone");
    assert!(matches!(err, ComfyError::Transport { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(client.system_stats().await.is_err());
    let waited = client.wait_for(&pending.prompt_id, WAIT, |_| {}).await;
    assert!(matches!(waited, Err(ComfyError::Transport { .. })), "{waited:?}");
    Ok(())
}

#[tokio::test]
async fn two_instances_queue_independently() -> anyhow::Result<()> {
    let a = FakeComfy::start().await?;
    let b = FakeComfy::start().await?;
    assert_ne!(a.addr(), b.addr());
    let (ca, cb) = (client(&a, "a"), client(&b, "b"));
    let ja = ca.submit(&solid(8, 8, 20)).await?;
    let jb = cb.submit(&solid(8, 8, 21)).await?;
    let (ra, rb) = tokio::join!(ca.wait_for(&ja.prompt_id, WAIT, |_| {}), cb.wait_for(&jb.prompt_id, WAIT, |_| {}));
    assert_eq!(ra?.outputs[0].filename, "gw_native_00001_.png");
    assert_eq!(rb?.outputs[0].filename, "gw_native_00001_.png");
    assert_eq!(ca.history(&jb.prompt_id).await?, None);
    assert_eq!((a.submitted().len(), b.submitted().len()), (1, 1));
    Ok(())
}

#[tokio::test]
async fn a_tagged_prompt_is_found_again_pending_running_and_finished() -> anyhow::Result<()> {
    let fake = FakeComfy::builder().job_duration(Duration::from_millis(300)).start().await?;
    let client = client(&fake, "gw-tag");
    fake.set_paused(true);
    let first = client.submit_tagged(&solid(8, 8, 1), "job_a:1").await?;
    let second = client.submit_tagged(&solid(8, 8, 2), "job_b:1").await?;
    client.submit(&solid(8, 8, 3)).await?;
    assert_eq!(client.find_tagged("job_b:1").await?, Some(second.prompt_id.clone()), "pending");
    assert_eq!(client.find_tagged("job_c:1").await?, None, "never submitted");
    fake.set_paused(false);
    client.wait_for(&first.prompt_id, WAIT, |_| {}).await?;
    assert_eq!(client.find_tagged("job_a:1").await?, Some(first.prompt_id), "finished: found in history");
    assert_eq!(client.find_tagged("job_a:2").await?, None, "another attempt of the same job is another tag");
    Ok(())
}

#[tokio::test]
async fn a_prompt_is_known_while_pending_and_after_it_finished_and_an_unreachable_server_is_not_asked()
-> anyhow::Result<()> {
    let fake = FakeComfy::builder().job_duration(Duration::from_millis(50)).start().await?;
    let client = client(&fake, "gw-knows");
    fake.set_paused(true);
    let queued = client.submit(&solid(8, 8, 1)).await?;
    assert!(client.knows_prompt(&queued.prompt_id).await, "pending");
    assert!(!client.knows_prompt("no-such-prompt").await, "never submitted");
    fake.set_paused(false);
    client.wait_for(&queued.prompt_id, WAIT, |_| {}).await?;
    assert!(client.knows_prompt(&queued.prompt_id).await, "finished: in history");
    let dead = ComfyClient::new("http://127.0.0.1:1", "gw-dead")?;
    assert!(dead.knows_prompt("anything").await, "a server that cannot answer is assumed to know it");
    Ok(())
}

#[tokio::test]
async fn system_info_reads_the_version_and_each_devices_vram() -> anyhow::Result<()> {
    let fake = FakeComfy::start().await?;
    let info = client(&fake, "stats-client").system_info().await?;
    assert_eq!(info.comfyui_version.as_deref(), Some("0.3.64"));
    assert_eq!(info.devices.len(), 1, "{info:?}");
    let cpu = &info.devices[0];
    assert_eq!((cpu.name.as_str(), cpu.kind.as_str()), ("cpu", "cpu"));
    assert_eq!((cpu.vram_total, cpu.vram_free), (Some(8 << 30), Some(4 << 30)));
    Ok(())
}

/// A server that answers every request with `body` as JSON, once per connection.
async fn answering(body: Vec<u8>) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    Ok(format!("http://{addr}"))
}

#[tokio::test]
async fn an_oversized_or_odd_system_stats_answer_is_malformed_not_read_whole() -> anyhow::Result<()> {
    let padding = "x".repeat(clawgate_comfy::client::MAX_SYSTEM_STATS_BODY);
    let big = serde_json::to_vec(&json!({"system": {"os": padding}, "devices": []}))?;
    let client = ComfyClient::new(&answering(big).await?, "big")?;
    let err = client.system_info().await.expect_err("too big");
    assert!(matches!(err, ComfyError::Malformed { .. }), "{err:?}");

    let odd = serde_json::to_vec(&json!({"devices": [{"name": "cpu"}]}))?;
    let client = ComfyClient::new(&answering(odd).await?, "odd")?;
    assert!(matches!(client.system_info().await, Err(ComfyError::Malformed { .. })));

    let partial = serde_json::to_vec(
        &json!({"system": {"comfyui_version": 7}, "devices": [{"name": "cuda:0", "vram_total": "x"}, {"type": "cpu"}]}),
    )?;
    let info = ComfyClient::new(&answering(partial).await?, "partial")?.system_info().await?;
    assert_eq!(info.comfyui_version, None, "a field of the wrong type counts as absent");
    assert_eq!(info.devices.len(), 1, "a device without a name is skipped: {info:?}");
    assert_eq!(info.devices[0].vram_total, None);
    Ok(())
}
