//! Printing results and errors the same way in every client subcommand.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use clawgate_protocol::ErrorShape;

/// Print a JSON value: one compact line with `--json`, pretty otherwise.
pub fn print_json(value: &Value, compact: bool) {
    let text = if compact { serde_json::to_string(value) } else { serde_json::to_string_pretty(value) };
    println!("{}", text.unwrap_or_else(|_| value.to_string()));
}

/// Print a gateway error: `{"ok":false,"error":{…}}` on stdout with `--json`, a readable
/// message on stderr otherwise.
pub fn print_error(error: &ErrorShape, as_json: bool) {
    if as_json {
        println!("{}", json!({"ok": false, "error": error}));
        return;
    }
    eprintln!("error: {} ({})", error.message, error.code);
    if let Some(details) = &error.details {
        eprintln!("details: {}", serde_json::to_string_pretty(details).unwrap_or_else(|_| details.to_string()));
    }
    if let Some(ms) = error.retry_after_ms {
        eprintln!("retry after {ms} ms");
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `42s`, `5m`, `3h 4m`, `2d 1h`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How long ago `ts_ms` was, e.g. `5m 3s`; `-` when unknown.
pub fn age(ts_ms: Option<i64>) -> String {
    match ts_ms {
        Some(ts) if ts > 0 => duration(now_ms().saturating_sub(ts).max(0) as u64),
        _ => "-".to_owned(),
    }
}

/// A string field of a JSON object, or `""`.
pub fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A string-array field joined with `,`, or `-` when empty.
pub fn list_field(v: &Value, key: &str) -> String {
    let items: Vec<&str> =
        v.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if items.is_empty() { "-".to_owned() } else { items.join(",") }
}

/// The first 12 characters of a device id: enough to tell devices apart, short enough for a table.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Left-aligned columns, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_owned()
    };
    let mut lines = vec![line(header.to_vec())];
    lines.extend(rows.iter().map(|r| line(r.iter().map(String::as_str).collect())));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_two_largest_units() {
        assert_eq!(duration(42_000), "42s");
        assert_eq!(duration(303_000), "5m 3s");
        assert_eq!(duration(3 * 3_600_000 + 4 * 60_000), "3h 4m");
        assert_eq!(duration(2 * 86_400_000 + 3_600_000), "2d 1h");
    }

    #[test]
    fn table_pads_columns_to_the_widest_cell() {
        let t = table(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(t, "A     BB\nlong  x");
    }
}
