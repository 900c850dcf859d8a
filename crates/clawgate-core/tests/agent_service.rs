//! The agent service on its own: built with an in-memory store, its own `Events` and `Tasks`,
//! and a fake OpenAI-compatible model on loopback — no gateway, no binary, no socket to a
//! client. What a run does on the wire is tested end to end in `crates/clawgate/tests/`; here:
//! submit → wait → outcome, the stored request, and what a restart's recovery registers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use clawgate_core::agent::{AgentService, AgentSetup, NoComfy, RunOutcome, RunRequest, Submitted};
use clawgate_core::broadcast::Broadcaster;
use clawgate_core::events::Events;
use clawgate_core::presence::PresenceState;
use clawgate_core::tasks::Tasks;
use clawgate_store::{AnyStore, RunKind, RunStatus, RunStore};
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};

/// What the default fake script streams.
const HELLO: &str = "Hello from the fake model";

/// Bound on one whole turn (the fake answers in milliseconds; CI machines are slow).
const TURN_WAIT: Duration = Duration::from_secs(30);

const SESSION: &str = "agent:main:service";

/// An agent service whose default agent talks to `fake`, on a fresh in-memory store.
struct Agents {
    svc: AgentService,
    store: AnyStore,
    tasks: Tasks,
    fake: FakeOpenAi,
}

impl Agents {
    async fn start(script: Script) -> Self {
        let fake = FakeOpenAi::start(script).await.expect("starting the fake model");
        let config = json!({
            "models": {"providers": {"fake": {
                "baseUrl": fake.base_url(), "apiKey": "fake-key", "api": "openai-completions",
                "models": [{"id": "fake-model", "name": "Fake Model"}],
            }}},
            "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
        });
        let loaded = clawgate_config::parse_str(&config.to_string(), Path::new("clawgate.json5")).expect("config");
        let setup = AgentSetup::from_config(&loaded.config, Path::new(".")).expect("agents");
        let store = AnyStore::open_in_memory().await.expect("in-memory store");
        let events = Events::new(Arc::new(Broadcaster::default()), Arc::new(PresenceState::new(json!({}))));
        let tasks = Tasks::new();
        let svc = AgentService::new(store.clone(), events, tasks.clone(), setup, Arc::new(NoComfy), Default::default());
        Self { svc, store, tasks, fake }
    }

    /// Wait for a run's end; panics on an unknown run or one that did not end in time.
    async fn outcome(&self, run_id: &str) -> RunOutcome {
        let outcome = self.svc.wait(run_id, TURN_WAIT).await.expect("wait").expect("the run is known");
        assert!(outcome.is_terminal(), "{run_id} did not end: {outcome:?}");
        outcome
    }

    /// Queue a run in the store only, as a restart finds it (no lane, nothing registered).
    async fn left_queued(&self, run_id: &str, request: Value) {
        self.store.enqueue(run_id, SESSION, RunKind::Agent, &request, 1).await.expect("enqueue");
    }
}

fn request(run_id: &str, message: &str) -> RunRequest {
    RunRequest {
        run_id: run_id.into(),
        session_key: SESSION.into(),
        agent_id: "main".into(),
        message: message.into(),
        kind: RunKind::Chat,
        timeout: None,
        extra_system: None,
        client: None,
        context: None,
    }
}

/// The text of every message of the model's `n`th chat request with `role`.
fn sent(fake: &FakeOpenAi, n: usize, role: &str) -> Vec<String> {
    let requests = fake.chat_requests();
    let body = &requests.get(n).unwrap_or_else(|| panic!("no chat request #{n}: {requests:?}")).body;
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == role)
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_submitted_run_is_answered_and_its_key_replays_the_result() {
    let a = Agents::start(Script::always(Turn::hello())).await;
    let mut req = request("r1", "hi there");
    req.extra_system = Some("Answer in French.".into());
    req.timeout = Some(Duration::from_secs(90));
    assert!(matches!(a.svc.submit(req.clone()).await.expect("submit"), Submitted::Started));
    match a.outcome("r1").await {
        RunOutcome::Completed(c) => {
            assert_eq!(c.text, HELLO);
            assert_eq!((c.provider.as_str(), c.model.as_str()), ("fake", "fake-model"));
        }
        other => panic!("{other:?}"),
    }
    // What the lane read back from the stored request reached the model.
    assert_eq!(sent(&a.fake, 0, "user"), ["hi there"]);
    assert!(sent(&a.fake, 0, "system").iter().any(|s| s.ends_with("Answer in French.")), "{:?}", a.fake.requests());
    // The stored request keeps the shape earlier databases hold.
    let stored = a.store.get_run("r1").await.expect("get").expect("stored").request;
    assert_eq!(
        stored,
        json!({"agentId": "main", "timeoutMs": 90_000, "extraSystemPrompt": "Answer in French.", "client": null,
               "message": "hi there"})
    );
    // The same key again starts nothing and carries the stored result.
    match a.svc.submit(req).await.expect("resubmit") {
        Submitted::Done(rec) => assert_eq!(RunOutcome::from_record(&rec).text(), HELLO),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.fake.chat_requests().len(), 1);
    assert_eq!(a.svc.active_count(), 0);
}

#[tokio::test]
async fn a_stateless_run_stores_an_excerpt_and_the_model_reads_the_whole_message() {
    let a = Agents::start(Script::always(Turn::hello())).await;
    let whole = format!("{}END", "x".repeat(2 * clawgate_core::agent::STATELESS_STORED_BYTES));
    a.svc.submit_stateless(request("big", &whole)).await.expect("submit");
    assert!(matches!(a.outcome("big").await, RunOutcome::Completed(_)));
    assert!(sent(&a.fake, 0, "user") == [whole.as_str()], "the model did not get the whole message");
    let stored = a.store.get_run("big").await.expect("get").expect("stored").request;
    assert_eq!(stored["messageTruncated"], true, "{stored:.200}");
    assert_eq!(stored["messageBytes"], whole.len());
    let excerpt = stored["message"].as_str().expect("message");
    assert!(excerpt.starts_with("[stateless request: ") && excerpt.ends_with("xEND"), "{excerpt:.200}");
    assert!(excerpt.len() < clawgate_core::agent::STATELESS_STORED_BYTES + 100, "{}", excerpt.len());
}

#[tokio::test]
async fn a_waiter_on_a_run_a_restart_left_queued_wakes_with_its_outcome() {
    let a = Agents::start(Script::always(Turn::hello())).await;
    a.left_queued("old", json!({"agentId": "main", "message": "still there?"})).await;
    a.svc.recover().await.expect("recover");
    // Registered by the recovery: the wait sleeps on the run instead of answering `queued`.
    match a.outcome("old").await {
        RunOutcome::Completed(c) => assert_eq!(c.text, HELLO),
        other => panic!("{other:?}"),
    }
    assert_eq!(sent(&a.fake, 0, "user"), ["still there?"]);
}

#[tokio::test]
async fn recovery_registers_every_queued_run_so_an_abort_finds_one_its_lane_has_not_claimed() {
    // The first run's model never answers, so the second stays queued behind it.
    let a = Agents::start(Script::always(Turn::hang())).await;
    a.left_queued("first", json!({"agentId": "main", "message": "one"})).await;
    a.left_queued("second", json!({"agentId": "main", "message": "two"})).await;
    a.svc.recover().await.expect("recover");
    let mut active = a.svc.active_runs(SESSION);
    active.sort();
    assert_eq!(active, ["first", "second"]);

    let aborted = a.svc.abort(SESSION, Some("second"), clawgate_core::agent::AbortReason::Rpc).await;
    assert_eq!(aborted, ["second"]);
    match a.outcome("second").await {
        RunOutcome::Aborted(x) => assert!(x.queued, "{x:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.store.get_run("second").await.expect("get").expect("stored").status, RunStatus::Aborted);

    a.svc.abort(SESSION, None, clawgate_core::agent::AbortReason::Rpc).await;
    assert!(matches!(a.outcome("first").await, RunOutcome::Aborted(_)));
    assert_eq!(a.svc.active_count(), 0);
    assert!(a.tasks.shutdown(TURN_WAIT).await.is_empty(), "the lane stops with the service");
}

#[tokio::test]
async fn a_stored_request_that_does_not_decode_fails_its_run_with_a_reason() {
    let a = Agents::start(Script::always(Turn::hello())).await;
    a.left_queued("damaged", json!({"agentId": 5, "message": "x"})).await;
    a.svc.recover().await.expect("recover");
    match a.outcome("damaged").await {
        RunOutcome::Failed(f) => assert!(f.error.contains("stored request of this run cannot be read"), "{f:?}"),
        other => panic!("{other:?}"),
    }
    assert!(a.fake.chat_requests().is_empty());
}
