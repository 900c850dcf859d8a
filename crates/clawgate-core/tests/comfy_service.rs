//! The ComfyUI service in process: a gateway on an in-memory store whose one worker is a fake
//! ComfyUI on loopback. `comfy.run` goes through the same `dispatch` a WebSocket request does;
//! the job is dispatched, followed, its output stored and shown as a signed media link.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use clawgate_core::Gateway;
use clawgate_core::agent::AgentSetup;
use clawgate_core::broadcast::{AuthKind, ClientHandle, Outbound};
use clawgate_core::config_service::{ConfigService, Overrides};
use clawgate_core::dispatch::{CallContext, dispatch};
use clawgate_core::settings::GatewaySettings;
use clawgate_store::AnyStore;
use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::wait::wait_until;

const WAIT: Duration = Duration::from_secs(20);

/// The repository's example templates (`invert` among them).
fn templates_dir() -> String {
    format!("{}/../../templates", env!("CARGO_MANIFEST_DIR"))
}

struct Harness {
    gw: Arc<Gateway>,
    ctx: CallContext,
    events: UnboundedReceiver<Outbound>,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn new(comfy: &FakeComfy) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("clawgate.json5");
        let config = json!({"comfy": {"templatesDir": templates_dir(),
                                      "workers": [{"name": "gpu", "url": comfy.base_url()}]}});
        let loaded = clawgate_config::parse_str(&config.to_string(), &path).expect("config parses");
        let agents = AgentSetup::from_config(&loaded.config, dir.path()).expect("agents");
        let store = AnyStore::open_in_memory().await.expect("in-memory store");
        let settings = GatewaySettings::for_tests("", dir.path().to_path_buf());
        let gw = Gateway::new("test", settings, store, ConfigService::new(path, loaded), agents, Overrides::default());
        gw.comfy.start(&gw.boot_id, dir.path()).await;
        let scopes = ["operator.admin", "operator.read", "operator.write"].map(String::from).to_vec();
        let (client, events, _) =
            ClientHandle::new("conn-1".into(), "operator".into(), scopes, None, AuthKind::SharedSecret, 1 << 20);
        gw.events.clients().add(client.clone());
        let ctx = CallContext { client, request_id: "1".into(), turn: None };
        Self { gw, ctx, events, dir }
    }

    async fn ok(&self, method: &str, params: Value) -> Value {
        dispatch(&self.gw, &self.ctx, method, params).await.unwrap_or_else(|e| panic!("{method}: {e:?}"))
    }

    /// The payloads of the `comfy.job` events queued for the operator so far.
    fn job_events(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(o) = self.events.try_recv() {
            if let Some(text) = o.text() {
                let frame: Value = serde_json::from_str(&text).expect("a JSON frame");
                if frame["type"] == "event" && frame["event"] == "comfy.job" {
                    out.push(frame["payload"].clone());
                }
            }
        }
        out
    }
}

#[tokio::test]
async fn a_run_is_dispatched_followed_and_shown_with_a_signed_link_to_its_output() {
    let comfy = FakeComfy::start().await.expect("fake ComfyUI");
    let mut h = Harness::new(&comfy).await;
    let workers = h.ok("comfy.workers.list", json!({})).await;
    assert_eq!(workers["workers"][0]["name"], "gpu");
    assert_eq!(workers["workers"][0]["healthy"], true, "probed at start: {workers}");

    let run = h.ok("comfy.run", json!({"templateId": "invert", "inputs": {"width": 16, "height": 16}})).await;
    let job_id = run["jobId"].as_str().expect("jobId").to_owned();
    let job = wait_until(WAIT, "the job completed", || async {
        let job = h.ok("comfy.jobs.get", json!({"jobId": job_id})).await["job"].clone();
        (job["status"] == "completed").then_some(job)
    })
    .await
    .expect("completed");

    assert_eq!((job["worker"].as_str(), job["attempts"].as_i64()), (Some("gpu"), Some(1)), "{job}");
    let output = &job["outputs"][0];
    let file = output["filename"].as_str().expect("filename");
    assert!(output["mediaUrl"].as_str().is_some_and(|u| u.starts_with("/media/")), "{job}");
    assert!(h.dir.path().join("media").join(&job_id).join(file).is_file(), "stored under the state dir");
    assert!(!job.to_string().contains(h.dir.path().to_str().expect("utf-8")), "no local path is shown: {job}");

    let events = h.job_events();
    let statuses: Vec<&str> = events.iter().filter_map(|e| e["status"].as_str()).collect();
    // The dispatcher may claim the job before `comfy.run` told of it as queued.
    for status in ["queued", "dispatched", "running"] {
        assert!(statuses.contains(&status), "{status} in {statuses:?}");
    }
    assert_eq!(statuses.last(), Some(&"completed"), "{events:?}");
    let done = events.iter().find(|e| e["status"] == "completed").expect("a completed event");
    assert_eq!(done["outputs"][0]["filename"], file, "{done}");
    assert!(done["outputs"][0]["mediaUrl"].as_str().is_some_and(|u| u.starts_with("/media/")), "{done}");
    assert_eq!(comfy.completed_count(), 1);
    h.gw.begin_shutdown("test over");
}
