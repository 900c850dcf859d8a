//! Where state and config live: flags, then environment, then `~/.clawgate`.

use std::path::{Path, PathBuf};

/// The state directory: `--state-dir`, `CLAWGATE_STATE_DIR`, or `~/.clawgate`.
pub fn state_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("CLAWGATE_STATE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    home().join(".clawgate")
}

/// The config file: `--config`, `CLAWGATE_CONFIG`, or `<state-dir>/clawgate.json5`.
pub fn config_path(flag: Option<&Path>, state_dir: &Path) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("CLAWGATE_CONFIG").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    state_dir.join("clawgate.json5")
}

/// The file the generated gateway token is written to (mode 0600).
pub fn token_file(state_dir: &Path) -> PathBuf {
    state_dir.join("gateway-token")
}

/// The SQLite database.
pub fn database(state_dir: &Path) -> PathBuf {
    state_dir.join("clawgate.db")
}

/// The default log file.
pub fn log_file(state_dir: &Path) -> PathBuf {
    state_dir.join("logs").join("clawgate.log")
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

/// Create a directory readable only by its owner.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Write a secret file readable only by its owner.
pub fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, contents)
    }
}
