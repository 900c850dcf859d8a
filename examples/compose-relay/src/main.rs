//! `compose-relay`: see the crate docs and `examples/compose-relay/README.md`.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use clawgate_client::ClientOptions;
use compose_relay::{Accounts, GatewayLink, Relay};

#[derive(Parser)]
#[command(
    version,
    about = "Reference relay: gives a web app's users chat with a clawgate agent over one gateway connection",
    after_help = "Examples:\n  \
        printf 'ann:%s\\n' \"$(printf 'ann-password' | compose-relay hash-password)\" > users.txt\n  \
        echo 'plan: ann' > acl.txt\n  \
        CLAWGATE_TOKEN=… compose-relay serve --users users.txt --acl acl.txt\n  \
        # then open http://127.0.0.1:8790/"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web app and relay its chats to the gateway.
    Serve {
        /// Where the browser connects.
        #[arg(long, default_value = "127.0.0.1:8790")]
        listen: SocketAddr,
        /// The gateway's WebSocket URL.
        #[arg(long, env = "CLAWGATE_URL", default_value = "ws://127.0.0.1:18789")]
        gateway: String,
        /// The gateway token (best: a scoped token limited to `compose:*` sessions).
        #[arg(long, env = "CLAWGATE_TOKEN", hide_env_values = true)]
        token: String,
        /// Users file: `name:<argon2 hash>` per line.
        #[arg(long)]
        users: PathBuf,
        /// ACL file: `doc-id: user user …` per line.
        #[arg(long)]
        acl: PathBuf,
        /// Messages per user per minute.
        #[arg(long, default_value_t = 20)]
        rate_per_minute: u32,
    },
    /// Try it in one command: demo users ann and bob (passwords printed), documents `plan`
    /// (both) and `secret` (ann), against the gateway on this machine.
    Demo {
        /// Where the browser connects.
        #[arg(long, default_value = "127.0.0.1:8790")]
        listen: SocketAddr,
        /// The gateway's WebSocket URL.
        #[arg(long, env = "CLAWGATE_URL", default_value = "ws://127.0.0.1:18789")]
        gateway: String,
        /// The gateway token [default: the one `clawgate gateway` stored in ~/.clawgate/gateway-token].
        #[arg(long, env = "CLAWGATE_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Read a password on stdin and print its argon2 hash for the users file.
    HashPassword,
}

/// The token `clawgate gateway` stored in its state dir.
fn stored_token() -> anyhow::Result<String> {
    let dir = std::env::var_os("CLAWGATE_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".clawgate")))
        .context("no HOME: pass --token")?;
    let path = dir.join("gateway-token");
    let token = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (start `clawgate gateway` first, or pass --token)", path.display()))?;
    Ok(token.trim().to_owned())
}

fn relay_options(gateway: String, token: String) -> ClientOptions {
    ClientOptions::new(gateway)
        .token(token)
        .client_id("gateway-client")
        .display_name("compose-relay")
        .scopes(["operator.read", "operator.write"])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password).context("reading the password on stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "no password on stdin");
            println!("{}", compose_relay::hash_password(password)?);
            Ok(())
        }
        Command::Serve { listen, gateway, token, users, acl, rate_per_minute } => {
            let accounts = Accounts::load(&users, &acl)?;
            let relay = Relay::new(accounts, GatewayLink::spawn(relay_options(gateway, token)), rate_per_minute);
            compose_relay::serve(relay, listen).await
        }
        Command::Demo { listen, gateway, token } => {
            let token = match token {
                Some(t) => t,
                None => stored_token()?,
            };
            let password = |_| uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
            let (ann, bob): (String, String) = (password(()), password(()));
            let users =
                format!("ann:{}\nbob:{}\n", compose_relay::hash_password(&ann)?, compose_relay::hash_password(&bob)?);
            let accounts = Accounts::parse(&users, "plan: ann bob\nsecret: ann\n")?;
            println!("demo users: ann / {ann}   bob / {bob}   (documents: plan = ann+bob, secret = ann)");
            let relay = Relay::new(accounts, GatewayLink::spawn(relay_options(gateway, token)), 20);
            compose_relay::serve(relay, listen).await
        }
    }
}
