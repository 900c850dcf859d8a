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
//!
//! It must not touch storage, sessions or chat platforms: the gateway core owns the job queue,
//! approvals and delivery, and calls into this crate.
#![warn(missing_docs)]

pub mod client;
pub mod command;
pub mod openclaw;
pub mod templates;
