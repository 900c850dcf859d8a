//! Client-side subcommands: they talk to a running gateway over its WebSocket, as any operator
//! client would, through `clawgate-client`.

pub mod call;
pub mod channels;
pub mod chat;
pub mod conn;
pub mod device_auth;
pub mod devices;
pub mod jobs;
pub mod nodes;
mod output;
pub mod sessions;
pub mod status;
pub mod tokens;
pub mod usage;
