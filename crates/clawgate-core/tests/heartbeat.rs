//! The heartbeat runner on its own: an agent service on an in-memory store, its own `Events` and
//! `Tasks`, and (for real turns) a fake model on loopback. The schedule is tested on tokio's
//! paused clock with beats that never reach the model (quiet hours all day), so virtual time is
//! the only time involved; turns and wakes with the fake model on the real clock.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use clawgate_core::agent::{AgentService, AgentSetup, NoComfy};
use clawgate_core::broadcast::Broadcaster;
use clawgate_core::channels::Outbox;
use clawgate_core::events::Events;
use clawgate_core::heartbeat_runner::{HeartbeatService, WakeOutcome, main_session};
use clawgate_core::presence::PresenceState;
use clawgate_core::tasks::Tasks;
use clawgate_store::AnyStore;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};

/// Bound on one whole turn (the fake answers in milliseconds; CI machines are slow).
const TURN_WAIT: Duration = Duration::from_secs(30);
const HALF_HOUR: Duration = Duration::from_secs(30 * 60);

async fn runner(config: Value) -> (HeartbeatService, Tasks) {
    runner_on(AnyStore::open_in_memory().await.expect("in-memory store"), config)
}

/// A runner over `store` (a second one over the same store is the gateway after a restart).
fn runner_on(store: AnyStore, config: Value) -> (HeartbeatService, Tasks) {
    let loaded = clawgate_config::parse_str(&config.to_string(), Path::new("clawgate.json5")).expect("config");
    let setup = AgentSetup::from_config(&loaded.config, Path::new(".")).expect("agents");
    let events = Events::new(Arc::new(Broadcaster::default()), Arc::new(PresenceState::new(json!({}))));
    let tasks = Tasks::new();
    let agents =
        AgentService::new(store.clone(), events.clone(), tasks.clone(), setup, Arc::new(NoComfy), Default::default());
    let outbox = Outbox::new(store.clone(), Default::default());
    (HeartbeatService::new(store, agents, events, tasks.clone(), outbox), tasks)
}

/// Waits for the next beat's event.
async fn next_beat(rx: &mut tokio::sync::watch::Receiver<Option<Value>>) -> Value {
    rx.changed().await.expect("the runner is alive");
    rx.borrow_and_update().clone().expect("a beat stores its event")
}

#[tokio::test]
async fn beats_come_every_interval_and_set_heartbeats_pauses_them() {
    // Quiet all day ("00:00"–"00:00" is an empty window): each beat is a skip, no model call.
    let config = json!({"agents": {"defaults": {"heartbeat": {"every": "30m",
        "activeHours": {"start": "00:00", "end": "00:00"}}}}});
    let (hb, tasks) = runner(config).await;
    // Paused once the store is open (its pool's timers must not run on virtual time); below, the
    // store sees only each beat's single write of its event, with a connection free.
    tokio::time::pause();
    let mut rx = hb.subscribe();
    let t0 = Instant::now();
    hb.start().await;

    let first = next_beat(&mut rx).await;
    assert_eq!((&first["status"], &first["reason"]), (&json!("skipped"), &json!("quiet-hours")), "{first}");
    let at = t0.elapsed();
    assert!(at >= HALF_HOUR && at < HALF_HOUR * 2, "the first beat comes one interval after the start: {at:?}");
    next_beat(&mut rx).await;
    let at = t0.elapsed();
    assert!(at >= HALF_HOUR * 2 && at < HALF_HOUR * 3, "the second one interval later: {at:?}");
    assert_eq!(hb.last(), rx.borrow().clone(), "last-heartbeat is the last event");

    // Paused: three hours of virtual time pass without a beat.
    assert!(!hb.set_enabled(false));
    let quiet = tokio::time::timeout(HALF_HOUR * 6, rx.changed()).await;
    assert!(quiet.is_err(), "no beat while heartbeats are off");

    // Resumed: the interval counts from the resume.
    let resumed = Instant::now();
    assert!(hb.set_enabled(true));
    next_beat(&mut rx).await;
    let at = resumed.elapsed();
    assert!(at >= HALF_HOUR && at < HALF_HOUR * 2, "one interval after the resume: {at:?}");

    tasks.shutdown(Duration::from_secs(5)).await;
}

async fn with_model(script: Script) -> (FakeOpenAi, HeartbeatService, Tasks) {
    let fake = FakeOpenAi::start(script).await.expect("fake model");
    let config = json!({
        "models": {"providers": {"fake": {"baseUrl": fake.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}, "heartbeat": {"every": "30m", "ackMaxChars": 20}}},
    });
    let (hb, tasks) = runner(config).await;
    (fake, hb, tasks)
}

#[tokio::test]
async fn wake_now_runs_a_turn_that_reads_the_queued_events_and_an_ack_is_not_delivered() {
    let (fake, hb, tasks) = with_model(Script::new().otherwise(Turn::text(["NO_REPLY"]))).await;
    let mut rx = hb.subscribe();
    hb.start().await;
    let main = main_session("main");

    let queued = hb.wake("main", &main, "disk at 91%", false, "test").await.expect("wake");
    assert_eq!(queued, WakeOutcome::Queued);
    let again = hb.wake("main", &main, "disk at 91%", false, "test").await.expect("wake");
    assert_eq!(again, WakeOutcome::Coalesced, "the same waiting text is not queued twice");
    assert!(fake.requests().is_empty(), "next-heartbeat starts no turn");

    hb.wake("main", &main, "backup failed", true, "test").await.expect("wake now");
    let beat = tokio::time::timeout(TURN_WAIT, next_beat(&mut rx)).await.expect("the wake's beat");
    assert_eq!(beat["status"], "ok-token", "NO_REPLY is an acknowledgement: {beat}");
    assert!(beat.get("message").is_none(), "nothing to deliver: {beat}");
    let sent = fake.requests().last().expect("the turn reached the model").body.to_string();
    for text in ["disk at 91%", "backup failed", "reply NO_REPLY"] {
        assert!(sent.contains(text), "the heartbeat turn carries {text:?}: {sent}");
    }
    assert_eq!(hb.last(), Some(beat));
    tasks.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_reply_with_something_to_say_is_kept_in_the_event() {
    let (_fake, hb, tasks) =
        with_model(Script::new().otherwise(Turn::text(["The nightly backup failed twice; check the NAS."]))).await;
    let beat = hb.beat("main", &main_session("main"), &fallback()).await;
    assert_eq!((&beat["status"], &beat["reason"]), (&json!("skipped"), &json!("no-delivery-target")), "{beat}");
    assert_eq!(beat["message"], "The nightly backup failed twice; check the NAS.", "{beat}");
    tasks.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_last_beat_survives_a_restart() {
    let path = tempfile::tempdir().unwrap();
    let config = json!({"agents": {"defaults": {"heartbeat": {"every": "30m",
        "activeHours": {"start": "00:00", "end": "00:00"}}}}});
    let store = AnyStore::open_sqlite(&path.path().join("state.db")).await.expect("store");
    let (hb, tasks) = runner_on(store.clone(), config.clone());
    hb.start().await;
    assert_eq!(hb.last(), None, "no beat yet");
    let beat = hb.beat("main", &main_session("main"), &fallback_quiet()).await;
    assert_eq!(beat["reason"], "quiet-hours", "{beat}");
    tasks.shutdown(Duration::from_secs(5)).await;
    store.close().await.expect("close");

    let store = AnyStore::open_sqlite(&path.path().join("state.db")).await.expect("store reopened");
    let (again, tasks) = runner_on(store, config);
    again.start().await;
    assert_eq!(again.last(), Some(beat), "last-heartbeat after the restart is the last beat before it");
    tasks.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn outside_active_hours_in_their_zone_nothing_runs() {
    let (fake, hb, tasks) = with_model(Script::new().otherwise(Turn::text(["The disk is full."]))).await;
    // A one-hour window that starts two hours from now in Tokyo: now is outside it.
    let tokyo = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo);
    let start = (tokyo + chrono::Duration::hours(2)).format("%H:00").to_string();
    let end = (tokyo + chrono::Duration::hours(3)).format("%H:00").to_string();
    let spec = clawgate_core::heartbeat::resolve(
        Some(&json!({"every": "30m", "activeHours": {"start": start, "end": end, "timezone": "Asia/Tokyo"}})),
        None,
        "test",
    )
    .unwrap()
    .unwrap();
    let beat = hb.beat("main", &main_session("main"), &spec).await;
    assert_eq!((&beat["status"], &beat["reason"]), (&json!("skipped"), &json!("quiet-hours")), "{beat}");
    assert!(fake.requests().is_empty(), "no model call outside the active hours");
    tasks.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_target_with_no_chat_skips_before_the_model_is_asked() {
    let (fake, hb, tasks) = with_model(Script::new().otherwise(Turn::text(["The disk is full."]))).await;
    for target in [json!({"target": "last"}), json!({"target": "telegram"}), json!({"target": "owner"})] {
        let spec =
            clawgate_core::heartbeat::resolve(Some(&json!({"every": "30m"})), Some(&target), "t").unwrap().unwrap();
        let beat = hb.beat("main", &main_session("main"), &spec).await;
        assert_eq!((&beat["status"], &beat["reason"]), (&json!("skipped"), &json!("no-route")), "{target}: {beat}");
    }
    assert!(fake.requests().is_empty(), "no model call without a chat to tell");
    tasks.shutdown(Duration::from_secs(5)).await;
}

/// A heartbeat that is always outside its active hours.
fn fallback_quiet() -> clawgate_core::heartbeat::HeartbeatSpec {
    let quiet = json!({"every": "30m", "activeHours": {"start": "00:00", "end": "00:00"}});
    clawgate_core::heartbeat::resolve(Some(&quiet), None, "test").unwrap().unwrap()
}

fn fallback() -> clawgate_core::heartbeat::HeartbeatSpec {
    clawgate_core::heartbeat::resolve(Some(&json!({"every": "30m"})), None, "test").unwrap().unwrap()
}
