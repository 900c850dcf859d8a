//! `clawgate config validate`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::paths;

/// Work with the config file.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the config file and print every problem with file:line:column and key.
    #[command(after_help = "Examples:
  clawgate config validate
  clawgate config validate --config ./clawgate.json5")]
    Validate(ValidateArgs),
}

/// Arguments of `config validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Config file [default: $CLAWGATE_CONFIG or <state-dir>/clawgate.json5]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// State directory [default: $CLAWGATE_STATE_DIR or ~/.clawgate]
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<i32> {
    match cmd {
        ConfigCommand::Validate(args) => {
            let state_dir = paths::state_dir(args.state_dir.as_deref());
            let path = paths::config_path(args.config.as_deref(), &state_dir);
            match clawgate_config::load_with_env(&path, &clawgate_config::Env::process()) {
                Ok(loaded) if loaded.exists => {
                    if let Err(msg) = check_channels(&loaded) {
                        eprintln!("{msg}");
                        return Ok(1);
                    }
                    println!("ok: {} is valid", path.display());
                    Ok(0)
                }
                Ok(_) => {
                    println!("ok: {} does not exist; clawgate runs with defaults", path.display());
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(1)
                }
            }
        }
    }
}

/// Check the `channels` section (its platforms, policies and secrets), naming the file, line and
/// column of the offending key: `clawgate.json5:7:5: channels.telegram.dmPolicy: …`.
pub fn check_channels(loaded: &clawgate_config::LoadedConfig) -> Result<(), String> {
    let Err(e) = clawgate_channels::accounts_from_config(&loaded.value, loaded.base_dir()) else {
        return Ok(());
    };
    let map = clawgate_config::SourceMap::new(&loaded.raw);
    let pos = clawgate_config::KeyPath::parse(&e.path).and_then(|p| map.location(&p)).map(|l| l.key.unwrap_or(l.value));
    Err(match pos {
        Some(p) => format!("{}:{}:{}: {}: {}", loaded.path.display(), p.line, p.column, e.path, e.message),
        None => format!("{}: {}: {}", loaded.path.display(), e.path, e.message),
    })
}
