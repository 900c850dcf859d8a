//! WS method handlers, one file per method group, one function per method.

pub mod channels;
pub mod config;
pub mod devices;
pub mod health;
pub mod logs;
pub mod system;
