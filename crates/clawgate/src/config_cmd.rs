//! `clawgate config validate`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use clawgate_config::LoadedConfig;
use clawgate_core::config_service::Overrides;
use clawgate_core::settings::GatewaySettings;

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
            let loaded = match clawgate_config::load_with_env(&path, &clawgate_config::Env::process()) {
                Ok(loaded) => loaded,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(1);
                }
            };
            let base = GatewaySettings::for_tests("", state_dir);
            if let Err(msg) = check(&loaded, &base, &Overrides::default()) {
                eprintln!("{msg}");
                return Ok(1);
            }
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            if loaded.exists {
                println!("ok: {} is valid", path.display());
            } else {
                println!("ok: {} does not exist; clawgate runs with defaults", path.display());
            }
            Ok(0)
        }
    }
}

/// What gateway startup resolves from a loaded config.
pub use clawgate_core::config_service::Checked;

/// The one validation path of `clawgate config validate` and `clawgate gateway` (and, through
/// [`clawgate_core::config_service::validate`], of config edits and the file watcher): every
/// problem as `file:line:column: key.path: message`.
pub fn check(loaded: &LoadedConfig, base: &GatewaySettings, overrides: &Overrides) -> Result<Checked, String> {
    clawgate_core::config_service::check(loaded, base, overrides).map_err(|e| e.to_string())
}
