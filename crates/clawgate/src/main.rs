//! `clawgate` — an OpenClaw-compatible gateway in one Rust binary.

mod backup_cmd;
mod cli;
mod config_cmd;
mod doctor;
mod gateway_cmd;
mod import_cmd;
mod log_rotate;
mod logging;
mod malloc;
mod paths;
mod service_cmd;
mod state_lock;
mod store_cmd;
mod worker_cmd;

use clap::{Parser, Subcommand};

/// clawgate: the OpenClaw Gateway, done right.
#[derive(Debug, Parser)]
#[command(name = "clawgate", version, about, long_about = None, after_help = "Examples:
  clawgate gateway                     # run the gateway on 127.0.0.1:18789
  clawgate call health                 # call a method on the running gateway
  clawgate devices list                # pending pairing requests and paired devices
  clawgate nodes list                  # nodes (openclaw node run): connected, approved, commands
  clawgate channels status             # chat accounts: state, last in/out, webhook URL
  clawgate channels stop --channel telegram    # pause a channel without a restart
  clawgate pairing approve telegram K7M2Q9XA   # let a chat sender in
  clawgate chat --session work         # chat with the default agent in the terminal
  clawgate sessions list               # chat sessions, most recent first
  clawgate jobs list                   # ComfyUI jobs, newest first
  clawgate workers                     # ComfyUI workers, configured and joined
  clawgate worker --gateway ws://gw:18789 --token T --name gpu1   # join a gateway as a ComfyUI worker
  clawgate usage --by model            # tokens and cost of the last 30 days per model
  clawgate tokens create --name compose --scopes operator.write --sessions 'compose:*'   # a backend's token
  clawgate doctor                      # check config, state, providers, bots, ComfyUI, TLS
  clawgate backup ~/clawgate.backup    # copy the state and config while the gateway runs
  clawgate service install             # run it as a systemd user service
  clawgate import connector-env .env   # migrate from the ComfyUI-OpenClaw connector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway in the foreground.
    Gateway(gateway_cmd::GatewayArgs),
    /// Call any method on a running gateway and print the result.
    Call(cli::call::CallArgs),
    /// Show a running gateway's version, uptime, connections and pairing state.
    Status(cli::status::StatusArgs),
    /// List, approve, reject and revoke devices.
    Devices(cli::devices::DevicesArgs),
    /// Nodes: list, approve or reject their pairing requests, invoke commands on them.
    Nodes(cli::nodes::NodesArgs),
    /// Chat channels: status, and start, stop or log out an account without a restart.
    Channels(cli::channels::ChannelsArgs),
    /// Approve or reject chat senders who asked for access with a pairing code.
    Pairing(cli::channels::PairingArgs),
    /// ComfyUI jobs: list, show, cancel.
    Jobs(cli::jobs::JobsArgs),
    /// ComfyUI workers, configured and joined: health, load, last heartbeat, last error.
    Workers(cli::jobs::WorkersArgs),
    /// Run next to a ComfyUI server and join a gateway as one of its workers (connects out).
    Worker(worker_cmd::WorkerArgs),
    /// Chat with an agent in the terminal (or send one message with --message).
    Chat(cli::chat::ChatArgs),
    /// List chat sessions, show a session's transcript, reset a session.
    Sessions(cli::sessions::SessionsArgs),
    /// Tokens and cost of the agent turns, by day, agent, model, provider or session.
    Usage(cli::usage::UsageArgs),
    /// Scoped access tokens for backends: create, list, revoke.
    Tokens(cli::tokens::TokensArgs),
    /// Work with the config file.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Check config, state, providers, chat accounts, ComfyUI workers and TLS; print what to fix.
    Doctor(doctor::DoctorArgs),
    /// Bring configuration over from other tools (the ComfyUI-OpenClaw connector's .env).
    #[command(subcommand)]
    Import(import_cmd::ImportCommand),
    /// Back up the state database and config into one file (safe while the gateway runs).
    Backup(backup_cmd::BackupArgs),
    /// Restore a backup into a state directory (stop the gateway first).
    Restore(backup_cmd::RestoreArgs),
    /// Run the gateway as a systemd service: install, uninstall, status.
    Service(service_cmd::ServiceArgs),
    /// The state store (SQLite file or PostgreSQL database): migrate its schema.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Gateway(_)) {
        // Before any thread starts: the long-running process gets its malloc settings.
        malloc::pin_mmap_threshold();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("clawgate: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Gateway(args) => gateway_cmd::run(args).await,
            Command::Call(args) => {
                logging::init_cli();
                cli::call::run(args).await
            }
            Command::Status(args) => {
                logging::init_cli();
                cli::status::run(args).await
            }
            Command::Tokens(args) => {
                logging::init_cli();
                cli::tokens::run(args).await
            }
            Command::Devices(args) => {
                logging::init_cli();
                cli::devices::run(args).await
            }
            Command::Nodes(args) => {
                logging::init_cli();
                cli::nodes::run(args).await
            }
            Command::Channels(args) => {
                logging::init_cli();
                cli::channels::run_channels(args).await
            }
            Command::Pairing(args) => {
                logging::init_cli();
                cli::channels::run_pairing(args).await
            }
            Command::Jobs(args) => {
                logging::init_cli();
                cli::jobs::run_jobs(args).await
            }
            Command::Workers(args) => {
                logging::init_cli();
                cli::jobs::run_workers(args).await
            }
            Command::Worker(args) => {
                worker_cmd::init_logging();
                worker_cmd::run(args).await
            }
            Command::Chat(args) => {
                logging::init_cli();
                cli::chat::run(args).await
            }
            Command::Sessions(args) => {
                logging::init_cli();
                cli::sessions::run(args).await
            }
            Command::Usage(args) => {
                logging::init_cli();
                cli::usage::run(args).await
            }
            Command::Config(cmd) => {
                logging::init_cli();
                config_cmd::run(cmd)
            }
            Command::Doctor(args) => {
                logging::init_cli();
                doctor::run(args).await
            }
            Command::Import(cmd) => {
                logging::init_cli();
                import_cmd::run(cmd)
            }
            Command::Backup(args) => {
                logging::init_cli();
                backup_cmd::backup(args).await
            }
            Command::Restore(args) => {
                logging::init_cli();
                backup_cmd::restore(args).await
            }
            Command::Service(args) => {
                logging::init_cli();
                service_cmd::run(args)
            }
            Command::Store(cmd) => {
                logging::init_cli();
                store_cmd::run(cmd).await
            }
        }
    });
    match result {
        Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("clawgate: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
