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
