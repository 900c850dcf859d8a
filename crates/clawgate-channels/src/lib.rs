//! Chat channels of the clawgate gateway.
//!
//! A platform adapter ([`Channel`]) turns the platform's updates into normalised
//! [`InboundMessage`]s and hands them to an [`Ingress`] (the gateway core, which records them
//! durably before anything acts on them), and sends [`OutboundMessage`]s the core's outbox
//! hands back, returning only once the platform accepted them. This crate also holds what is
//! the same for every platform: config (`channels.<name>`), the ingress security gate
//! ([`policy`]), reply chunking ([`chunk`]) and liveness ([`StatusCell`]).
//!
//! It must not touch storage or sessions (core owns both) and must never log a bot token.
#![warn(missing_docs)]

pub mod channel;
pub mod chunk;
pub mod config;
pub mod discord;
pub mod fault;
pub mod line;
pub mod model;
pub mod policy;
pub mod probe;
pub mod slack;
pub mod telegram;
pub mod webhook;
pub mod whatsapp;

pub use channel::{
    Accepted, Capabilities, Channel, ChannelError, ChannelSnapshot, Ingress, IngressError, RetryPolicy, SendError,
    StatusCell, TextMeasure, WebhookError, WebhookReply, WebhookRequest,
};
pub use chunk::chunk_text;
pub use config::{
    AccountConfig, AccountSettings, ChannelConfigError, DmPolicy, GroupPolicy, GroupRule, RateLimits,
    accounts_from_config, accounts_from_value,
};
pub use model::{
    AccountKey, ChatKind, Delivered, InboundMedia, InboundMessage, MediaSource, OutboundMedia, OutboundMessage,
};
pub use policy::{Verdict, gate};
pub use probe::{Identity, ProbeError, probe_account};
