//! `clawgate config validate`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use clawgate_config::LoadedConfig;
use clawgate_core::agent::AgentService;
use clawgate_core::config_service::{Overrides, settings_from_config};
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
pub struct Checked {
    /// Gateway settings, secrets resolved.
    pub settings: GatewaySettings,
    /// Providers and agents.
    pub agents: AgentService,
}

/// The one validation path of `clawgate config validate` and `clawgate gateway`: everything
/// startup resolves from the config — gateway settings and their secret references
/// (`{env}`/`{file}`), providers and agents, channels, ComfyUI — with each error named
/// `file:line:column: key.path: message`.
///
/// Class closed: *validate says ok and the gateway then refuses*. Both commands call this, so
/// a check added for startup is a check of `config validate` too.
pub fn check(loaded: &LoadedConfig, base: &GatewaySettings, overrides: &Overrides) -> Result<Checked, String> {
    let located = |message: String| locate(loaded, &message);
    let settings = settings_from_config(loaded, base, overrides).map_err(located)?;
    let agents = AgentService::from_config(&loaded.value, loaded.base_dir()).map_err(located)?;
    if let Err(e) = clawgate_channels::accounts_from_config(&loaded.value, loaded.base_dir()) {
        return Err(located(format!("{}: {}", e.path, e.message)));
    }
    clawgate_core::comfy::ComfyConfig::from_config(&loaded.value, loaded.base_dir()).map_err(located)?;
    Ok(Checked { settings, agents })
}

/// `key.path: message` → `file:line:column: key.path: message` (the key's place in the file,
/// or its closest existing parent's; just `file: …` when the message names no key).
fn locate(loaded: &LoadedConfig, message: &str) -> String {
    let file = loaded.path.display();
    let Some((head, _)) = message.split_once(": ") else { return format!("{file}: {message}") };
    let Some(mut path) = clawgate_config::KeyPath::parse(head.trim()) else { return format!("{file}: {message}") };
    let map = clawgate_config::SourceMap::new(&loaded.raw);
    loop {
        if let Some(l) = map.location(&path) {
            let p = l.key.unwrap_or(l.value);
            return format!("{file}:{}:{}: {message}", p.line, p.column);
        }
        match path.parent() {
            Some(parent) if !parent.is_root() => path = parent,
            _ => return format!("{file}: {message}"),
        }
    }
}
