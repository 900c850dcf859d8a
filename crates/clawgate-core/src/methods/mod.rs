//! WS method handlers, one file per method group, one function per method.

pub mod agent;
pub mod approvals;
pub mod catalog;
pub mod channels;
pub mod chat;
pub mod comfy;
pub mod config;
pub mod control_ui;
pub mod cron;
pub mod devices;
pub mod exec_approvals;
pub mod health;
pub mod logs;
pub mod nodes;
pub mod sessions;
pub mod system;
pub mod tokens;
pub mod ui_pages;
pub mod ui_startup;
pub mod usage;
