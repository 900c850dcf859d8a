//! `clawgate service install|uninstall|status`: run the gateway under systemd.
//!
//! The unit runs `clawgate gateway --state-dir … --config …` with absolute paths (systemd has no
//! working directory or `$HOME` expansion to rely on), restarts it on failure, and sandboxes it:
//! the whole filesystem read-only except the state directory, the config file's directory
//! (`config.set` rewrites the file) and the log file's; no new privileges, no capabilities, no
//! writable-executable memory, only IP and Unix sockets. clawgate never runs `systemctl` itself:
//! it prints the commands, so installing is inspectable and needs no D-Bus session.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::paths;

/// The unit's file name.
const UNIT: &str = "clawgate.service";

/// Run the gateway as a systemd service: install, uninstall, status.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate service install                      # a user service, state in ~/.clawgate
  clawgate service install --dry-run            # print the unit, write nothing
  clawgate service install --system --run-as clawgate --state-dir /var/lib/clawgate
  clawgate service status
  clawgate service uninstall")]
pub struct ServiceArgs {
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Write the systemd unit and print the systemctl commands that enable it.
    Install(InstallArgs),
    /// Remove the unit (prints the systemctl commands that stop and disable it).
    Uninstall(Scope),
    /// Whether the unit is installed and, where systemctl exists, whether it runs.
    Status(Scope),
}

/// User or system service.
#[derive(Debug, Args)]
struct Scope {
    /// A user service in ~/.config/systemd/user (the default)
    #[arg(long, conflicts_with = "system")]
    user: bool,
    /// A system service in /etc/systemd/system (needs root)
    #[arg(long)]
    system: bool,
}

#[derive(Debug, Args)]
struct InstallArgs {
    #[command(flatten)]
    scope: Scope,
    /// State directory [default: $CLAWGATE_STATE_DIR or ~/.clawgate]
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Config file [default: $CLAWGATE_CONFIG or <state-dir>/clawgate.json5]
    #[arg(long)]
    config: Option<PathBuf>,
    /// The user a system service runs as [default: $SUDO_USER]
    #[arg(long)]
    run_as: Option<String>,
    /// A file of NAME=value lines for the secrets the config names as {env: NAME}
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Another directory the gateway may write to (repeatable), e.g. an agent workspace
    #[arg(long = "read-write", value_name = "DIR")]
    read_write: Vec<PathBuf>,
    /// Print the unit instead of writing it
    #[arg(long)]
    dry_run: bool,
}

/// Where the unit goes and how systemctl is called for it.
struct Target {
    system: bool,
    dir: PathBuf,
}

impl Target {
    fn of(scope: &Scope) -> anyhow::Result<Target> {
        if scope.system {
            return Ok(Target { system: true, dir: PathBuf::from("/etc/systemd/system") });
        }
        let config_home = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).context("HOME is not set")?;
                PathBuf::from(home).join(".config")
            }
        };
        Ok(Target { system: false, dir: config_home.join("systemd").join("user") })
    }

    fn unit_path(&self) -> PathBuf {
        self.dir.join(UNIT)
    }

    /// `systemctl --user` or `sudo systemctl`, for the printed commands.
    fn systemctl(&self) -> &'static str {
        if self.system { "sudo systemctl" } else { "systemctl --user" }
    }
}

pub fn run(args: ServiceArgs) -> anyhow::Result<i32> {
    match args.command {
        ServiceCommand::Install(a) => install(a),
        ServiceCommand::Uninstall(scope) => uninstall(&scope),
        ServiceCommand::Status(scope) => status(&scope),
    }
}

fn install(args: InstallArgs) -> anyhow::Result<i32> {
    let target = Target::of(&args.scope)?;
    let state_dir = std::path::absolute(paths::state_dir(args.state_dir.as_deref()))?;
    let config = std::path::absolute(paths::config_path(args.config.as_deref(), &state_dir))?;
    let exe = std::env::current_exe().and_then(|p| p.canonicalize()).context("cannot find the clawgate binary")?;
    let run_as = match (&args.run_as, target.system) {
        (Some(user), _) => Some(user.clone()),
        (None, true) => std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty() && u != "root"),
        (None, false) => None,
    };
    if args.scope.system && run_as.is_none() {
        eprintln!("warning: the service will run as root; give it its own user with --run-as USER");
    }
    let mut writable = vec![state_dir.clone()];
    if let Some(dir) = config.parent() {
        writable.push(dir.to_path_buf());
    }
    if let Some(log) = configured_log_file(&config) {
        writable.extend(log.parent().map(Path::to_path_buf));
    }
    for dir in &args.read_write {
        writable.push(std::path::absolute(dir)?);
    }
    let env_file = args.env_file.as_deref().map(std::path::absolute).transpose()?;
    let unit = UnitSpec { exe: &exe, state_dir: &state_dir, config: &config, run_as, env_file, writable }
        .render(target.system)?;
    if args.dry_run {
        print!("{unit}");
        return Ok(0);
    }
    if !cfg!(target_os = "linux") {
        bail!("clawgate service installs systemd units (Linux); use --dry-run to see the unit");
    }
    // The sandbox makes only existing paths writable: the state dir must be there at start.
    paths::create_private_dir(&state_dir)
        .with_context(|| format!("cannot create the state dir {}", state_dir.display()))?;
    std::fs::create_dir_all(&target.dir).with_context(|| {
        let hint = if target.system { " (run it with sudo)" } else { "" };
        format!("cannot create {}{hint}", target.dir.display())
    })?;
    let path = target.unit_path();
    let existed = path.exists();
    std::fs::write(&path, &unit).with_context(|| {
        let hint = if target.system { " (run it with sudo)" } else { "" };
        format!("cannot write {}{hint}", path.display())
    })?;
    println!("{} {}", if existed { "updated" } else { "wrote" }, path.display());
    let sc = target.systemctl();
    println!("enable and start it:\n  {sc} daemon-reload\n  {sc} enable --now {UNIT}");
    if !target.system {
        println!("  loginctl enable-linger \"$USER\"   # keep it running while you are logged out");
    }
    let journal = if target.system { "journalctl" } else { "journalctl --user" };
    println!("check it:\n  {sc} status {UNIT}\n  {journal} -u {UNIT} -f");
    Ok(0)
}

fn uninstall(scope: &Scope) -> anyhow::Result<i32> {
    let target = Target::of(scope)?;
    let path = target.unit_path();
    if !path.exists() {
        println!("not installed ({} does not exist)", path.display());
        return Ok(0);
    }
    let sc = target.systemctl();
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    println!("removed {}", path.display());
    println!("stop it and forget it:\n  {sc} disable --now {UNIT}\n  {sc} daemon-reload");
    Ok(0)
}

fn status(scope: &Scope) -> anyhow::Result<i32> {
    let target = Target::of(scope)?;
    let path = target.unit_path();
    if !path.exists() {
        println!("not installed ({} does not exist); `clawgate service install` writes it", path.display());
        return Ok(1);
    }
    println!("installed: {}", path.display());
    if let Some(line) = std::fs::read_to_string(&path)?.lines().find(|l| l.starts_with("ExecStart=")) {
        println!("runs: {}", line.trim_start_matches("ExecStart="));
    }
    match find_in_path("systemctl") {
        None => println!("systemctl not found: cannot tell whether it runs"),
        Some(systemctl) => {
            let mut args: Vec<&str> = Vec::new();
            if !target.system {
                args.push("--user");
            }
            for query in ["is-enabled", "is-active"] {
                let out = Command::new(&systemctl).args(&args).args([query, UNIT]).output();
                let answer = match out {
                    Ok(o) if !o.stdout.is_empty() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
                    Ok(o) => String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("unknown").to_owned(),
                    Err(e) => format!("cannot run systemctl: {e}"),
                };
                println!("{}: {answer}", query.trim_start_matches("is-"));
            }
        }
    }
    Ok(0)
}

/// What goes into the unit.
struct UnitSpec<'a> {
    exe: &'a Path,
    state_dir: &'a Path,
    config: &'a Path,
    run_as: Option<String>,
    env_file: Option<PathBuf>,
    /// Directories the sandbox leaves writable; the first (the state dir) must exist.
    writable: Vec<PathBuf>,
}

impl UnitSpec<'_> {
    fn render(&self, system: bool) -> anyhow::Result<String> {
        let exec = [
            quote(self.exe)?,
            "gateway".to_owned(),
            "--state-dir".to_owned(),
            quote(self.state_dir)?,
            "--config".to_owned(),
            quote(self.config)?,
        ]
        .join(" ");
        let mut writable = Vec::new();
        for (i, dir) in self.writable.iter().enumerate() {
            let q = quote(dir)?;
            if writable.iter().any(|w: &String| w.trim_start_matches('-') == q) {
                continue;
            }
            // `-`: a missing optional directory does not stop the service from starting.
            writable.push(if i == 0 { q } else { format!("-{q}") });
        }
        let mut u = String::new();
        u.push_str("# Written by `clawgate service install`; `clawgate service uninstall` removes it.\n");
        u.push_str("[Unit]\nDescription=clawgate gateway (OpenClaw-compatible)\n");
        u.push_str("After=network-online.target\nWants=network-online.target\n\n");
        u.push_str("[Service]\nType=simple\n");
        u.push_str(&format!("ExecStart={exec}\n"));
        if let Some(user) = &self.run_as {
            if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!("--run-as {user:?}: not a user name");
            }
            u.push_str(&format!("User={user}\n"));
        }
        if let Some(file) = &self.env_file {
            u.push_str(&format!("EnvironmentFile={}\n", quote(file)?));
        }
        u.push_str(concat!(
            "Restart=on-failure\n",
            "RestartSec=5s\n",
            "# The gateway stops within its 8 s grace; past this systemd kills it.\n",
            "TimeoutStopSec=30s\n",
            "LimitNOFILE=65536\n",
            "UMask=0077\n",
            "\n# Sandbox: read-only system and home, writable state.\n",
            "NoNewPrivileges=yes\n",
            "ProtectSystem=strict\n",
            "ProtectHome=read-only\n",
        ));
        u.push_str(&format!("ReadWritePaths={}\n", writable.join(" ")));
        u.push_str(concat!(
            "PrivateTmp=yes\n",
            "PrivateDevices=yes\n",
            "ProtectKernelTunables=yes\n",
            "ProtectKernelModules=yes\n",
            "ProtectKernelLogs=yes\n",
            "ProtectControlGroups=yes\n",
            "ProtectClock=yes\n",
            "ProtectHostname=yes\n",
            "RestrictSUIDSGID=yes\n",
            "RestrictRealtime=yes\n",
            "RestrictNamespaces=yes\n",
            "LockPersonality=yes\n",
            "MemoryDenyWriteExecute=yes\n",
            "SystemCallArchitectures=native\n",
            "# IP for clients, channels and providers; Unix and netlink for name and interface lookups.\n",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK\n",
            "CapabilityBoundingSet=\n",
        ));
        u.push_str("\n[Install]\n");
        u.push_str(if system { "WantedBy=multi-user.target\n" } else { "WantedBy=default.target\n" });
        Ok(u)
    }
}

/// A path as one word of a systemd command line or list: `%` and `$` escaped (specifiers and
/// variable expansion), double-quoted when it holds spaces, quotes or backslashes.
fn quote(path: &Path) -> anyhow::Result<String> {
    let text = path.to_str().with_context(|| format!("{} is not UTF-8; systemd needs it as text", path.display()))?;
    if text.chars().any(char::is_control) {
        bail!("{text:?} holds control characters; a systemd unit cannot name it");
    }
    let escaped = text.replace('%', "%%").replace('$', "$$");
    if escaped.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\') {
        Ok(format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\"")))
    } else {
        Ok(escaped)
    }
}

/// The configured `logging.file`, when the config names one (relative to the config's dir).
fn configured_log_file(config: &Path) -> Option<PathBuf> {
    let loaded = clawgate_config::load(config).ok()?;
    let file = loaded.config.logging.file?;
    Some(if file.is_absolute() { file } else { config.parent()?.join(file) })
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path: OsString = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_and_escaped_for_systemd() {
        assert_eq!(quote(Path::new("/srv/clawgate")).unwrap(), "/srv/clawgate");
        assert_eq!(quote(Path::new("/srv/my state")).unwrap(), "\"/srv/my state\"");
        assert_eq!(quote(Path::new("/srv/100%/$x")).unwrap(), "/srv/100%%/$$x");
        assert_eq!(quote(Path::new("/a \"b\"")).unwrap(), "\"/a \\\"b\\\"\"");
        assert!(quote(Path::new("/a\nb")).is_err());
    }

    #[test]
    fn the_unit_runs_the_gateway_with_absolute_paths_in_a_sandbox() {
        let spec = UnitSpec {
            exe: Path::new("/usr/bin/clawgate"),
            state_dir: Path::new("/var/lib/clawgate"),
            config: Path::new("/etc/clawgate/clawgate.json5"),
            run_as: Some("clawgate".into()),
            env_file: None,
            writable: vec![PathBuf::from("/var/lib/clawgate"), PathBuf::from("/etc/clawgate")],
        };
        let unit = spec.render(true).unwrap();
        assert!(unit.contains(
            "ExecStart=/usr/bin/clawgate gateway --state-dir /var/lib/clawgate --config /etc/clawgate/clawgate.json5\n"
        ));
        assert!(unit.contains("ReadWritePaths=/var/lib/clawgate -/etc/clawgate\n"), "{unit}");
        assert!(unit.contains("User=clawgate\n") && unit.contains("WantedBy=multi-user.target\n"));
        for line in ["NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=read-only", "PrivateTmp=yes"] {
            assert!(unit.lines().any(|l| l == line), "{line} in\n{unit}");
        }
        let user = UnitSpec { run_as: None, ..spec }.render(false).unwrap();
        assert!(!user.contains("User=") && user.contains("WantedBy=default.target\n"));
    }
}
