//! `clawgate service install|status|uninstall` with `HOME` in a temp dir: the unit lands in the
//! user unit directory, passes `systemd-analyze verify` (user and system flavours; skipped with a
//! reason where systemd-analyze is absent), and status/uninstall find it. systemctl is never run:
//! `PATH` holds no systemctl.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A state dir with a space in its name: the unit must quote it.
    fn state(&self) -> PathBuf {
        self.path().join("my state")
    }

    fn clawgate(&self, args: &[&str]) -> Output {
        let empty = self.path().join("empty-bin");
        std::fs::create_dir_all(&empty).unwrap();
        Command::new(BIN)
            .args(args)
            .env("HOME", self.path())
            .env("PATH", &empty)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CLAWGATE_STATE_DIR")
            .env_remove("CLAWGATE_CONFIG")
            .env_remove("SUDO_USER")
            .output()
            .expect("run clawgate")
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn systemd_analyze() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("systemd-analyze")).find(|p| p.is_file()));
    if found.is_none() {
        eprintln!("SKIP systemd-analyze verify: systemd-analyze is not installed on this machine");
    }
    found
}

/// `systemd-analyze [--user] verify UNIT` must pass without a single warning.
fn verify(home: &Home, unit: &Path, user: bool) {
    let Some(analyze) = systemd_analyze() else { return };
    let runtime = home.path().join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let mut cmd = Command::new(analyze);
    if user {
        cmd.arg("--user");
    }
    let out = cmd
        .arg("verify")
        .arg(unit)
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .expect("run systemd-analyze");
    let unit_text = std::fs::read_to_string(unit).unwrap_or_default();
    assert!(out.status.success(), "systemd-analyze verify failed: {}\n{unit_text}", text(&out));
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(complaints.trim().is_empty(), "systemd-analyze warned:\n{complaints}\n{unit_text}");
}

#[test]
fn a_user_unit_is_installed_verified_reported_and_removed() {
    let home = Home::new();
    let state = home.state();
    let out = home.clawgate(&["service", "install", "--state-dir", state.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let unit = home.path().join(".config/systemd/user/clawgate.service");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(&unit.display().to_string()), "says where: {printed}");
    assert!(printed.contains("systemctl --user enable --now clawgate.service"), "says how to enable: {printed}");
    assert!(state.is_dir(), "the state dir exists for the sandbox to make it writable");

    let body = std::fs::read_to_string(&unit).expect("unit written");
    let bin = Path::new(BIN).canonicalize().unwrap();
    let exec = format!(
        "ExecStart={} gateway --state-dir \"{}\" --config \"{}\"",
        bin.display(),
        state.display(),
        state.join("clawgate.json5").display()
    );
    assert!(body.lines().any(|l| l == exec), "{exec}\nin\n{body}");
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "Restart=on-failure",
        "MemoryDenyWriteExecute=yes",
        "LimitNOFILE=65536",
        "WantedBy=default.target",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} in\n{body}");
    }
    assert!(body.contains(&format!("ReadWritePaths=\"{}\"", state.display())), "{body}");
    verify(&home, &unit, true);

    let out = home.clawgate(&["service", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("installed: ") && said.contains("systemctl not found"), "{said}");

    let out = home.clawgate(&["service", "uninstall"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("systemctl --user disable --now clawgate.service"));
    assert!(!unit.exists(), "removed");
    let out = home.clawgate(&["service", "status"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stdout).contains("not installed"), "{}", text(&out));
}

#[test]
fn a_system_unit_dry_run_prints_a_unit_that_verifies_and_writes_nothing() {
    let home = Home::new();
    let state = home.state();
    let out = home.clawgate(&[
        "service",
        "install",
        "--system",
        "--dry-run",
        "--run-as",
        "clawgate",
        "--state-dir",
        state.to_str().unwrap(),
        "--read-write",
        "/srv/agent workspace",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let unit = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(unit.contains("User=clawgate\n") && unit.contains("WantedBy=multi-user.target\n"), "{unit}");
    assert!(unit.contains("-\"/srv/agent workspace\""), "{unit}");
    assert!(!state.exists() && !home.path().join(".config").exists(), "a dry run writes nothing");
    let file = home.path().join("clawgate.service");
    std::fs::write(&file, &unit).unwrap();
    verify(&home, &file, false);
}
