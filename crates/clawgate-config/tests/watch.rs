//! The config watcher against a real directory: edits, broken edits, editor-style renames,
//! self-writes and shutdown. Every wait is bounded.

use std::fs;
use std::path::Path;
use std::time::Duration;

use clawgate_config::{ConfigWatcher, ReloadClass, WatchEvent, load};
use tokio::sync::mpsc::Receiver;

const DEBOUNCE: Duration = Duration::from_millis(50);
/// Generous: CI file systems can be slow to deliver events.
const EVENT_WAIT: Duration = Duration::from_secs(10);
/// How long "nothing happens" is observed for.
const QUIET: Duration = Duration::from_millis(600);

async fn next_event(rx: &mut Receiver<WatchEvent>) -> WatchEvent {
    tokio::time::timeout(EVENT_WAIT, rx.recv())
        .await
        .expect("no watch event within the time limit")
        .expect("watch channel closed")
}

async fn assert_quiet(rx: &mut Receiver<WatchEvent>) {
    if let Ok(event) = tokio::time::timeout(QUIET, rx.recv()).await {
        panic!("expected no event, got {event:?}");
    }
}

fn changed_paths(event: &WatchEvent) -> Vec<(String, ReloadClass)> {
    match event {
        WatchEvent::Reloaded { changes, .. } => changes.iter().map(|c| (c.path.clone(), c.class)).collect(),
        WatchEvent::Invalid(err) => panic!("expected a reload, got {err}"),
    }
}

fn setup(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clawgate.json5");
    fs::write(&path, text).unwrap();
    (dir, path)
}

#[tokio::test]
async fn editing_the_file_reports_changed_keys_with_reload_classes() {
    let (_dir, path) = setup("{gateway: {port: 1000}}");
    let (_watcher, mut rx) = ConfigWatcher::spawn(&path, DEBOUNCE).unwrap();
    assert_quiet(&mut rx).await;

    fs::write(&path, "{gateway: {port: 1001, auth: {token: 'x'}}}").unwrap();
    let event = next_event(&mut rx).await;
    assert_eq!(
        changed_paths(&event),
        vec![
            ("gateway.auth.token".to_owned(), ReloadClass::Hot),
            ("gateway.port".to_owned(), ReloadClass::RestartProcess),
        ]
    );
    let WatchEvent::Reloaded { config, .. } = event else { unreachable!() };
    assert_eq!(config.config.gateway.port, 1001);
}

#[tokio::test]
async fn broken_edit_is_reported_and_the_fix_reloads() {
    let (_dir, path) = setup("{logging: {level: 'info'}}");
    let (_watcher, mut rx) = ConfigWatcher::spawn(&path, DEBOUNCE).unwrap();

    fs::write(&path, "{\n  logging: {level: 'loud'},\n}").unwrap();
    match next_event(&mut rx).await {
        WatchEvent::Invalid(err) => {
            let text = err.to_string();
            assert!(text.contains("clawgate.json5:2:20: logging.level:"), "{text}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }

    fs::write(&path, "{logging: {level: 'debug'}}").unwrap();
    let event = next_event(&mut rx).await;
    // Diffed against the last valid version, not the broken one.
    assert_eq!(changed_paths(&event), vec![("logging.level".to_owned(), ReloadClass::RestartProcess)]);
}

#[tokio::test]
async fn editor_style_write_and_rename_is_seen() {
    let (dir, path) = setup("{channels: {}}");
    let (_watcher, mut rx) = ConfigWatcher::spawn(&path, DEBOUNCE).unwrap();

    let tmp = dir.path().join(".clawgate.json5.swp");
    fs::write(&tmp, "{channels: {telegram: {enabled: true}}}").unwrap();
    fs::rename(&tmp, &path).unwrap();
    let event = next_event(&mut rx).await;
    assert_eq!(changed_paths(&event), vec![("channels.telegram.enabled".to_owned(), ReloadClass::RestartSubsystem)]);
}

#[tokio::test]
async fn rewriting_identical_content_sends_nothing() {
    let (_dir, path) = setup("{gateway: {port: 5}}");
    let (_watcher, mut rx) = ConfigWatcher::spawn(&path, DEBOUNCE).unwrap();
    fs::write(&path, "{gateway: {port: 5}}").unwrap();
    assert_quiet(&mut rx).await;
}

#[tokio::test]
async fn self_writes_are_not_reported_but_become_the_baseline() {
    let (_dir, path) = setup("{gateway: {port: 1}}");
    let (watcher, mut rx) = ConfigWatcher::spawn(&path, DEBOUNCE).unwrap();

    watcher.write("{gateway: {port: 2}}").unwrap();
    assert_quiet(&mut rx).await;

    // A later outside edit is diffed against our write, so only its own change shows.
    fs::write(&path, "{gateway: {port: 2}, logging: {level: 'warn'}}").unwrap();
    let event = next_event(&mut rx).await;
    assert_eq!(changed_paths(&event), vec![("logging.level".to_owned(), ReloadClass::RestartProcess)]);
}

#[tokio::test]
async fn change_made_before_spawn_is_caught_with_a_caller_baseline() {
    let (_dir, path) = setup("{gateway: {port: 1}}");
    let loaded = load(&path).unwrap();
    fs::write(&path, "{gateway: {port: 3}}").unwrap();

    let (_watcher, mut rx) = ConfigWatcher::builder(&path).debounce(DEBOUNCE).baseline(loaded).spawn().unwrap();
    let event = next_event(&mut rx).await;
    assert_eq!(changed_paths(&event), vec![("gateway.port".to_owned(), ReloadClass::RestartProcess)]);
}

#[tokio::test]
async fn deleting_the_file_keeps_the_config_until_it_returns() {
    let (_dir, path) = setup("{gateway: {port: 1}}");
    let (_watcher, mut rx) = ConfigWatcher::spawn(&path, DEBOUNCE).unwrap();
    fs::remove_file(&path).unwrap();
    assert_quiet(&mut rx).await;
    fs::write(&path, "{gateway: {port: 4}}").unwrap();
    let event = next_event(&mut rx).await;
    assert_eq!(changed_paths(&event), vec![("gateway.port".to_owned(), ReloadClass::RestartProcess)]);
}

#[tokio::test]
async fn watching_a_file_that_does_not_exist_yet_reports_its_creation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new-dir").join("clawgate.json5");
    let (_watcher, mut rx) = ConfigWatcher::spawn(&path, DEBOUNCE).unwrap();
    assert!(Path::new(path.parent().unwrap()).is_dir());
    fs::write(&path, "{hooks: {enabled: true}}").unwrap();
    let event = next_event(&mut rx).await;
    assert_eq!(changed_paths(&event), vec![("hooks.enabled".to_owned(), ReloadClass::Hot)]);
}

#[tokio::test]
async fn dropping_the_watcher_closes_the_channel() {
    let (_dir, path) = setup("{}");
    let (watcher, mut rx) = ConfigWatcher::spawn(&path, DEBOUNCE).unwrap();
    drop(watcher);
    let closed = tokio::time::timeout(EVENT_WAIT, rx.recv()).await;
    assert!(matches!(closed, Ok(None)), "{closed:?}");
}
