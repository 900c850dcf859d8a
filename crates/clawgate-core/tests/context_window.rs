//! The in-memory context window of a session: what the model is sent is exactly what reading
//! the transcript would give, whether the window is used, dropped, rebuilt, bypassed by another
//! writer, outlived by a compaction or a reset. Compared on the request bodies the (fake) model
//! received.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use clawgate_core::agent::{AgentService, AgentSetup, NoComfy, RunOutcome, RunRequest, WindowStats};
use clawgate_core::broadcast::Broadcaster;
use clawgate_core::events::Events;
use clawgate_core::presence::PresenceState;
use clawgate_core::tasks::Tasks;
use clawgate_store::{AnyStore, EntryStatus, RunKind, SessionStore, TranscriptRole, TranscriptStore};
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};

/// Bound on one whole turn (the fake answers in milliseconds; CI machines are slow).
const TURN_WAIT: Duration = Duration::from_secs(30);

struct Agents {
    svc: AgentService,
    store: AnyStore,
    fake: FakeOpenAi,
    turns: usize,
}

impl Agents {
    /// A service whose model has a small context window (a budget of a few messages, so the
    /// choice is cut by the budget) and a transcript compacted past `max_entries`.
    async fn start(max_entries: u64) -> Self {
        let fake = FakeOpenAi::start(Script::always(Turn::echo("re: "))).await.expect("starting the fake model");
        let config = json!({
            "models": {"providers": {"fake": {
                "baseUrl": fake.base_url(), "apiKey": "fake-key", "api": "openai-completions",
                // (4300 - 4096) / 2 = 102 tokens of history: about six of these messages.
                "models": [{"id": "fake-model", "name": "Fake Model", "contextWindow": 4300}],
            }}},
            "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
            "session": {"maxTranscriptEntries": max_entries},
        });
        let loaded = clawgate_config::parse_str(&config.to_string(), Path::new("clawgate.json5")).expect("config");
        let setup = AgentSetup::from_config(&loaded.config, Path::new(".")).expect("agents");
        let store = AnyStore::open_in_memory().await.expect("in-memory store");
        let events = Events::new(Arc::new(Broadcaster::default()), Arc::new(PresenceState::new(json!({}))));
        let svc = AgentService::new(store.clone(), events, Tasks::new(), setup, Arc::new(NoComfy), Default::default());
        Self { svc, store, fake, turns: 0 }
    }

    /// One turn of `session` with `message`, to its end; returns the messages the model got.
    async fn turn(&mut self, session: &str, message: &str) -> Value {
        self.turns += 1;
        let run_id = format!("run-{}", self.turns);
        let req = RunRequest {
            run_id: run_id.clone(),
            session_key: session.into(),
            agent_id: "main".into(),
            message: message.into(),
            kind: RunKind::Chat,
            timeout: None,
            extra_system: None,
            client: None,
            context: None,
        };
        self.svc.submit(req).await.expect("submit");
        let outcome = self.svc.wait(&run_id, TURN_WAIT).await.expect("wait").expect("known run");
        assert!(matches!(outcome, RunOutcome::Completed(_)), "{outcome:?}");
        let requests = self.fake.chat_requests();
        assert_eq!(requests.len(), self.turns, "one model request per turn");
        requests[self.turns - 1].body["messages"].clone()
    }

    async fn session_id(&self, key: &str) -> String {
        self.store.get_session(key).await.expect("get").expect("the session exists").session_id
    }
}

/// The user messages of a turn's model request.
fn users(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Message `i` of a conversation: long enough that the budget keeps only the last few.
fn said(i: usize) -> String {
    format!("message number {i} of this conversation")
}

#[tokio::test]
async fn every_turn_sends_the_model_what_the_transcript_gives_with_or_without_the_window() {
    // Compaction past 16 entries happens along the way (the window is dropped and rebuilt).
    let mut a = Agents::start(16).await;
    for i in 0..30 {
        let cached = a.turn("agent:main:cached", &said(i)).await;
        // The other session holds the same conversation but never keeps a window: each of its
        // turns reads the transcript (the path of a miss, or of a gateway without the window).
        a.svc.forget_context("agent:main:uncached");
        let uncached = a.turn("agent:main:uncached", &said(i)).await;
        assert_eq!(cached, uncached, "turn {i}: the model got another context");
        assert_eq!(users(&cached).last().map(String::as_str), Some(said(i).as_str()));
        if i >= 10 {
            assert!(users(&cached).len() < i, "turn {i}: the budget cuts the history: {cached}");
        }
    }
    let WindowStats { hits, misses } = a.svc.context_window_stats();
    // The cached session's turns come from its window, but for its first and those after each
    // compaction (every other turn once the transcript is past 16 entries); every turn of the
    // other session is a miss.
    assert!(hits >= 15, "hits {hits}, misses {misses}");
    assert!(misses >= 30, "hits {hits}, misses {misses}");
}

#[tokio::test]
async fn an_entry_another_writer_appends_reaches_the_next_context() {
    let mut a = Agents::start(50_000).await;
    let key = "agent:main:injected";
    a.turn(key, &said(0)).await;
    a.turn(key, &said(1)).await;
    // A writer other than the run (chat.inject, a system event) appends between two turns.
    let sid = a.session_id(key).await;
    let note = json!({"role": "user", "content": "an injected note", "timestamp": 1});
    a.store.append(&sid, TranscriptRole::User, &note, None, EntryStatus::Final, 1).await.expect("append");
    let messages = a.turn(key, &said(2)).await;
    assert_eq!(users(&messages)[users(&messages).len() - 2..], ["an injected note".to_owned(), said(2)], "{messages}");
}

#[tokio::test]
async fn after_a_reset_or_an_eviction_the_context_is_rebuilt_from_the_store() {
    let mut a = Agents::start(50_000).await;
    let key = "agent:main:reset";
    for i in 0..3 {
        a.turn(key, &said(i)).await;
    }
    assert_eq!(a.svc.context_windows(), 1);
    // A reset starts a new transcript: nothing of the old one reaches the model.
    a.store.reset_session(key, 2).await.expect("reset");
    let messages = a.turn(key, "after the reset").await;
    assert_eq!(users(&messages), ["after the reset"], "{messages}");
    // Evicted: the next turn reads the transcript again and gets the same history.
    a.svc.forget_all_contexts();
    assert_eq!(a.svc.context_windows(), 0);
    let before = a.svc.context_window_stats();
    let messages = a.turn(key, "after the eviction").await;
    assert_eq!(users(&messages), ["after the reset", "after the eviction"], "{messages}");
    assert_eq!(a.svc.context_window_stats().misses, before.misses + 1);
    assert_eq!(a.svc.context_windows(), 1, "rebuilt");
    // A deleted session's key starts from nothing.
    a.store.delete_session(key, true).await.expect("delete");
    let messages = a.turn(key, "a new start").await;
    assert_eq!(users(&messages), ["a new start"], "{messages}");
}
