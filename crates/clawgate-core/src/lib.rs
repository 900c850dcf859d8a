//! The gateway's domain: authentication and pairing, scope checks, the broadcaster (per-client
//! `seq`, scope filter, slow-consumer policy), presence and health state, and the WS method
//! handlers.
//!
//! This crate owns the rules of the protocol — who may connect, with which scopes, what each
//! method does — and must not touch sockets, HTTP or SQL directly: the server crate feeds it
//! decoded frames and carries its pre-serialized output, and storage goes through the
//! `clawgate-store` traits.
#![warn(missing_docs)]

pub mod access_tokens;
pub mod agent;
pub mod auth;
pub mod broadcast;
pub mod channels;
pub mod client_addr;
pub mod cluster;
pub mod comfy;
pub mod config_service;
pub mod cron;
pub mod discovery;
pub mod dispatch;
pub mod error;
pub mod event_relay;
pub mod events;
pub mod exec_approvals;
pub mod gateway;
pub mod handshake;
pub mod health;
pub mod heartbeat;
pub mod heartbeat_runner;
pub mod logs;
pub mod media;
pub mod methods;
pub mod metrics;
pub mod nodes;
pub mod pairing;
pub mod presence;
pub mod session_key;
pub mod settings;
pub mod tasks;
pub mod time;

pub use error::{CoreError, ErrorKind};
pub use gateway::Gateway;
pub use session_key::SessionKey;
