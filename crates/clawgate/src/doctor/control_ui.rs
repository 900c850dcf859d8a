//! The OpenClaw Control UI check: with `gateway.controlUi.root` set, that it is a built Control
//! UI (the gateway refuses to start otherwise); unset, where an installed `openclaw` package's
//! `dist/control-ui` is — `npm root -g` and the usual global `node_modules` directories — so the
//! user can set the key to it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clawgate_server::control_ui::{ROOT_KEY, check_root, configured_root};

use super::report::{Finding, Outcome, Section};

/// How long `npm root -g` may take before the check goes on without it.
const NPM_TIMEOUT: Duration = Duration::from_secs(5);

/// The check's id in the report.
const ID: &str = "config.controlUi";

/// Runs the check for a loaded config.
pub(crate) fn check(loaded: &clawgate_config::LoadedConfig, out: &mut Vec<Outcome>) {
    let ui = &loaded.config.gateway.control_ui;
    let finding = if !ui.enabled {
        Finding::ok("gateway.controlUi.enabled is false: no browser UI is served")
    } else {
        match configured_root(loaded) {
            Some(root) => configured(&root, check_root(loaded)),
            None => unset(find_installed(&candidate_dirs())),
        }
    };
    out.push(Outcome::new(ID, Section::Config, finding));
}

/// The finding for a configured root, given the gateway's own start-up check of it.
fn configured(root: &Path, checked: Result<(), String>) -> Finding {
    match checked {
        Ok(()) => {
            let version = package_version(root).map(|v| format!(" (openclaw {v})")).unwrap_or_default();
            Finding::ok(format!("{ROOT_KEY}: serving the Control UI build at {}{version}", root.display()))
        }
        // The message already names the key, the problem and the fix; the gateway will not start.
        Err(message) => {
            Finding::fail(message, format!("after fixing it, `clawgate doctor` shows where {ROOT_KEY} points"))
        }
    }
}

/// The finding when no root is set: the built-in web chat is served; say how to switch.
fn unset(found: Option<PathBuf>) -> Finding {
    match found {
        Some(dir) => Finding::ok(format!(
            "{ROOT_KEY} is unset, so / serves the built-in web chat; the OpenClaw Control UI is installed at {} \
             — set {ROOT_KEY} to that directory to serve it instead",
            dir.display()
        )),
        None => Finding::ok(format!(
            "{ROOT_KEY} is unset, so / serves the built-in web chat; for the OpenClaw Control UI install the \
             openclaw package (`npm install -g openclaw`) and set {ROOT_KEY} to \"$(npm root -g)/openclaw/dist/control-ui\""
        )),
    }
}

/// The first `<dir>/openclaw/dist/control-ui` holding an `index.html`.
fn find_installed(node_modules_dirs: &[PathBuf]) -> Option<PathBuf> {
    node_modules_dirs.iter().map(|dir| dir.join("openclaw/dist/control-ui")).find(|ui| ui.join("index.html").is_file())
}

/// The global `node_modules` directories to look in: npm's own answer first, then the usual
/// places of system, Homebrew, user-prefix and pnpm installs.
fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = npm_root_global().into_iter().collect();
    dirs.extend(
        ["/usr/local/lib/node_modules", "/usr/lib/node_modules", "/opt/homebrew/lib/node_modules"].map(PathBuf::from),
    );
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        dirs.extend(
            [".npm-global/lib/node_modules", ".local/lib/node_modules", ".local/share/pnpm/global/5/node_modules"]
                .map(|p| home.join(p)),
        );
    }
    dirs
}

/// `npm root -g`, when npm is installed and answers within [`NPM_TIMEOUT`].
fn npm_root_global() -> Option<PathBuf> {
    let mut child = Command::new("npm")
        .args(["root", "-g"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + NPM_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut text).ok()?;
    Some(PathBuf::from(text.trim())).filter(|p| !p.as_os_str().is_empty())
}

/// The version of the `openclaw` package a `dist/control-ui` belongs to (`../../package.json`).
fn package_version(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.parent()?.parent()?.join("package.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    (json["name"] == "openclaw").then(|| json["version"].as_str().map(str::to_owned)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    fn installed_package(dir: &Path) -> PathBuf {
        let pkg = dir.join("node_modules/openclaw");
        std::fs::create_dir_all(pkg.join("dist/control-ui")).expect("mkdir");
        std::fs::write(pkg.join("dist/control-ui/index.html"), "<!doctype html>").expect("index");
        std::fs::write(pkg.join("package.json"), r#"{"name": "openclaw", "version": "2026.9.6"}"#).expect("pkg");
        pkg.join("dist/control-ui")
    }

    fn loaded(dir: &Path, config: &str) -> clawgate_config::LoadedConfig {
        clawgate_config::parse_str(config, &dir.join("clawgate.json5")).expect("config")
    }

    #[test]
    fn an_installed_package_is_found_among_the_global_dirs_and_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ui = installed_package(dir.path());
        let empty = dir.path().join("elsewhere");
        let found = find_installed(&[empty, dir.path().join("node_modules")]);
        assert_eq!(found.as_deref(), Some(ui.as_path()));
        let finding = unset(found);
        assert_eq!(finding.status, Status::Ok);
        assert!(
            finding.message.contains(&ui.display().to_string()) && finding.message.contains(ROOT_KEY),
            "{finding:?}"
        );
        let none = unset(find_installed(&[dir.path().join("nothing")]));
        assert!(none.message.contains("npm install -g openclaw") && none.message.contains("npm root -g"), "{none:?}");
    }

    #[test]
    fn a_configured_root_is_verified_and_its_version_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ui = installed_package(dir.path());
        let good = loaded(dir.path(), r#"{gateway: {controlUi: {root: "node_modules/openclaw/dist/control-ui"}}}"#);
        let mut out = Vec::new();
        check(&good, &mut out);
        assert_eq!(out[0].id, ID);
        assert_eq!(out[0].finding.status, Status::Ok, "{:?}", out[0]);
        assert!(out[0].finding.message.contains("(openclaw 2026.9.6)"), "{:?}", out[0]);
        assert!(out[0].finding.message.contains(&ui.display().to_string()), "{:?}", out[0]);

        let bad = loaded(dir.path(), r#"{gateway: {controlUi: {root: "node_modules/openclaw"}}}"#);
        let mut out = Vec::new();
        check(&bad, &mut out);
        assert_eq!(out[0].finding.status, Status::Fail, "{:?}", out[0]);
        assert!(out[0].finding.message.contains("has no index.html"), "{:?}", out[0]);
        assert!(out[0].finding.message.contains("dist/control-ui"), "the fix is named: {:?}", out[0]);
    }

    #[test]
    fn a_disabled_ui_is_not_looked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let off = loaded(dir.path(), r#"{gateway: {controlUi: {enabled: false, root: "missing"}}}"#);
        let mut out = Vec::new();
        check(&off, &mut out);
        assert_eq!(out[0].finding.status, Status::Ok, "{:?}", out[0]);
        assert!(out[0].finding.message.contains("enabled is false"), "{:?}", out[0]);
    }
}
