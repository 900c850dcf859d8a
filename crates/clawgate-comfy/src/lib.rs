//! ComfyUI for the clawgate gateway.
//!
//! - [`templates`]: a directory of ComfyUI API-format workflows with `"{{key}}"` placeholders and
//!   a `manifest.json` (the layout of ComfyUI-OpenClaw's `data/templates`), validated, typed
//!   inputs, rendering.
//! - [`client`]: a native ComfyUI server: `POST /prompt`, progress over `/ws`, `/history`,
//!   `/view`, `/queue`, `/interrupt`, `/system_stats`.
//! - [`command`]: the ComfyUI chat commands' names, argument grammar and `comfy.commands` policy
//!   (`/run`, `/status`, `/jobs`, `/approve`, …) and the reply texts users see; the gateway
//!   core's command registry recognises them.
//! - [`openclaw`]: the ComfyUI-OpenClaw extension's endpoints and bridge API.
//! - [`pool`]: the configured workers, their probes and health, the choice of a worker, and the
//!   templates directory.
//! - [`joined`]: workers that join by themselves (`clawgate worker`) over their own connection.
//! - [`dispatch`]: the durable queue's dispatcher: a job's run on a worker, its outputs, failing
//!   over, and reconciling after a restart.
//!
//! It must not know sessions, chat platforms or the gateway: the job queue is reached through
//! `clawgate-store`'s `JobStore` trait, and telling clients and delivering results go through
//! the [`dispatch::JobHost`] the core implements.
#![warn(missing_docs)]

pub mod client;
pub mod command;
pub mod dispatch;
pub mod joined;
pub mod openclaw;
pub mod pool;
pub mod templates;
