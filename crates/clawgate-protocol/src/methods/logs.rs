//! `logs.tail`: params and result (schema `LogsTailParams`, `LogsTailResult`).

use serde::{Deserialize, Serialize};

/// `logs.tail {cursor?, limit?, maxBytes?}`. The ranges (`limit` 1..=5000, `maxBytes`
/// 1..=1000000) are checked by the handler, with its own messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogsTailParams {
    /// Byte offset to continue from; the tail of the file when absent.
    #[serde(default)]
    pub cursor: Option<u64>,
    /// Most lines to return (default 200).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Most bytes to read (default 250000).
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `logs.tail` → one page of the log file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsTailResult {
    /// The log file's path.
    pub file: String,
    /// The offset to pass as `cursor` next time.
    pub cursor: u64,
    /// The file's size.
    pub size: u64,
    /// The lines read.
    pub lines: Vec<String>,
    /// More lines were there than `limit`/`maxBytes` allowed (sent only when true).
    #[serde(skip_serializing_if = "is_false")]
    pub truncated: bool,
    /// The file was rotated or truncated since `cursor` (sent only when true).
    #[serde(skip_serializing_if = "is_false")]
    pub reset: bool,
    /// Bytes skipped to honour `maxBytes` (sent only when not zero).
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped_bytes: u64,
}
