//! `table`: turn the JSON lines of one comparison run into a markdown table (one column per
//! server label) plus a check of the project's performance targets.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;

#[derive(Args, Debug)]
pub struct TableArgs {
    /// A .jsonl file written by the scenarios' `--json` output.
    pub file: PathBuf,
    /// Only lines with this run id (default: the run id of the last line).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Column order; labels not listed follow in order of appearance.
    #[arg(long, value_delimiter = ',', default_value = "echo,openclaw,clawgate")]
    pub labels: Vec<String>,
    /// The server the targets are checked for.
    #[arg(long, default_value = "clawgate")]
    pub subject: String,
    /// The baseline the relative targets refer to.
    #[arg(long, default_value = "echo")]
    pub baseline: String,
}

struct Line {
    scenario: String,
    label: String,
    params: Value,
    figures: Value,
    /// Set when the scenario failed (then `figures` is null).
    error: Option<String>,
}

impl Line {
    fn p(&self, key: &str) -> Option<u64> {
        self.params.get(key).and_then(Value::as_u64)
    }
    /// A figure by JSON pointer; `/../params/<key>` reads a parameter instead.
    fn f(&self, path: &str) -> Option<f64> {
        if let Some(key) = path.strip_prefix("/../params/") {
            return self.params.get(key).and_then(Value::as_f64);
        }
        self.figures.pointer(path).and_then(Value::as_f64)
    }
}

type Filter = Box<dyn Fn(&Line) -> bool>;

/// One table row: which lines feed it and which figure (JSON pointer) it shows.
struct Row {
    title: String,
    filter: Filter,
    cells: Vec<(&'static str, &'static str, Fmt)>,
}

#[derive(Clone, Copy)]
enum Fmt {
    Rate,
    Ms,
    Us,
    Mb,
    Kb,
    Pct,
}

fn fmt_num(v: f64, f: Fmt) -> String {
    match f {
        Fmt::Rate => thousands(v.round() as i64),
        Fmt::Ms | Fmt::Us | Fmt::Kb => {
            if v.abs() >= 100.0 {
                thousands(v.round() as i64)
            } else if v.abs() >= 10.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.3}")
            }
        }
        Fmt::Mb => format!("{:.1}", v / 1024.0),
        Fmt::Pct => format!("{:.0}%", v * 100.0),
    }
}

fn thousands(v: i64) -> String {
    let s = v.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if v < 0 { format!("-{out}") } else { out }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if !n.is_multiple_of(2) { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// `median [min–max]` over repeats, or the single value.
fn agg(vals: &[f64], f: Fmt) -> String {
    match vals.len() {
        0 => String::new(),
        1 => fmt_num(vals[0], f),
        _ => {
            let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{} [{}–{}]", fmt_num(median(vals.to_vec()), f), fmt_num(lo, f), fmt_num(hi, f))
        }
    }
}

/// An error message cut to fit a table cell (and without `|`, which would split it).
fn short(err: &str) -> String {
    let clean = err.replace('|', "/");
    let mut cut: String = clean.chars().take(90).collect();
    if cut.len() < clean.len() {
        cut.push('…');
    }
    cut
}

fn rows(lines: &[Line]) -> Vec<Row> {
    let mut rows = vec![
        Row {
            title: "start → TCP listening (ms)".into(),
            filter: Box::new(|l| l.scenario == "ready"),
            cells: vec![("", "/listen_ms", Fmt::Ms)],
        },
        Row {
            title: "start → first hello-ok (ms)".into(),
            filter: Box::new(|l| l.scenario == "ready"),
            cells: vec![("", "/hello_ms", Fmt::Ms)],
        },
        Row {
            title: "CPU used by start-up, 3 s after hello (s)".into(),
            filter: Box::new(|l| l.scenario == "ready"),
            cells: vec![("", "/startup_cpu_s", Fmt::Ms)],
        },
        Row {
            title: "idle RSS, main process / process tree (MB)".into(),
            filter: Box::new(|l| l.scenario == "rss"),
            cells: vec![("", "/rss_main_kb", Fmt::Mb), (" / ", "/rss_tree_kb", Fmt::Mb)],
        },
    ];
    rows.push(Row {
        title: "idle conns: RSS growth per connection, main / tree (KB)".into(),
        filter: Box::new(|l| l.scenario == "idle"),
        cells: vec![("", "/kb_per_conn_main", Fmt::Kb), (" / ", "/kb_per_conn_tree", Fmt::Kb)],
    });
    for c in [1u64, 16] {
        rows.push(Row {
            title: format!("handshakes/s, concurrency {c}"),
            filter: Box::new(move |l| l.scenario == "handshake" && l.p("concurrency") == Some(c)),
            cells: vec![("", "/rate_per_s", Fmt::Rate)],
        });
        rows.push(Row {
            title: "  handshake latency p50 / p99 (ms)".into(),
            filter: Box::new(move |l| l.scenario == "handshake" && l.p("concurrency") == Some(c)),
            cells: vec![("", "/latency/p50_ms", Fmt::Ms), (" / ", "/latency/p99_ms", Fmt::Ms)],
        });
        rows.push(Row {
            title: "  server CPU per handshake (µs)".into(),
            filter: Box::new(move |l| l.scenario == "handshake" && l.p("concurrency") == Some(c)),
            cells: vec![("", "/server_cpu_per_op_us", Fmt::Us)],
        });
    }
    for (conns, depth) in [(1u64, 1u64), (16, 1), (16, 8)] {
        let f = move |l: &Line| l.scenario == "rpc" && l.p("connections") == Some(conns) && l.p("depth") == Some(depth);
        rows.push(Row {
            title: format!("`health` req/s, {conns} conn, depth {depth}"),
            filter: Box::new(f),
            cells: vec![("", "/rate_per_s", Fmt::Rate)],
        });
        rows.push(Row {
            title: "  latency p50 / p99 / p99.9 (ms)".into(),
            filter: Box::new(f),
            cells: vec![
                ("", "/latency/p50_ms", Fmt::Ms),
                (" / ", "/latency/p99_ms", Fmt::Ms),
                (" / ", "/latency/p999_ms", Fmt::Ms),
            ],
        });
        rows.push(Row {
            title: "  server CPU per request (µs); load tool's CPU (% of its core)".into(),
            filter: Box::new(f),
            cells: vec![("", "/server_cpu_per_op_us", Fmt::Us), ("; ", "/client_cpu_util", Fmt::Pct)],
        });
    }
    for n in [100u64, 1000] {
        let f = move |l: &Line| l.scenario == "fanout" && l.p("listeners") == Some(n);
        rows.push(Row {
            title: format!("fanout to {n}: delivery p50 / p99 (ms)"),
            filter: Box::new(f),
            cells: vec![("", "/delivery/p50_ms", Fmt::Ms), (" / ", "/delivery/p99_ms", Fmt::Ms)],
        });
        rows.push(Row {
            title: format!("  all {n} reached p50 / p99 (ms)"),
            filter: Box::new(f),
            cells: vec![("", "/all_reached/p50_ms", Fmt::Ms), (" / ", "/all_reached/p99_ms", Fmt::Ms)],
        });
        rows.push(Row {
            title: "  server CPU per delivered event (µs)".into(),
            filter: Box::new(f),
            cells: vec![("", "/server_cpu_per_op_us", Fmt::Us)],
        });
    }
    rows.extend(chat_rows(lines));
    rows
}

/// Chat rows, one block per session count present (gateways' `chat` lines and the model-only
/// `direct` lines side by side), then the `chat.history` block.
fn chat_rows(lines: &[Line]) -> Vec<Row> {
    let is_turns = |l: &Line| l.scenario == "chat" || l.scenario == "direct";
    let mut counts: Vec<u64> = lines.iter().filter(|l| is_turns(l)).filter_map(|l| l.p("sessions")).collect();
    counts.sort_unstable();
    counts.dedup();
    let mut rows = Vec::new();
    for s in counts {
        let f = move |l: &Line| (l.scenario == "chat" || l.scenario == "direct") && l.p("sessions") == Some(s);
        let mut add = |title: String, cells: Vec<(&'static str, &'static str, Fmt)>| {
            rows.push(Row { title, filter: Box::new(f), cells });
        };
        add(format!("chat, {s} concurrent session(s): turns/s"), vec![("", "/turns_per_s", Fmt::Ms)]);
        add(
            "  turns per session × sessions; completed / failed".into(),
            vec![("", "/../params/turns", Fmt::Rate), (" ; ", "/turns", Fmt::Rate), (" / ", "/errors", Fmt::Rate)],
        );
        add(
            "  time to first delta p50 / p99 (ms)".into(),
            vec![("", "/ttft/p50_ms", Fmt::Ms), (" / ", "/ttft/p99_ms", Fmt::Ms)],
        );
        add(
            "  same, turns after each session's first, p50 / p99 (ms)".into(),
            vec![("", "/ttft_warm/p50_ms", Fmt::Ms), (" / ", "/ttft_warm/p99_ms", Fmt::Ms)],
        );
        add(
            "  inter-delta p50 / p99 (ms)".into(),
            vec![("", "/inter_delta/p50_ms", Fmt::Ms), (" / ", "/inter_delta/p99_ms", Fmt::Ms)],
        );
        add(
            "  turn, send → final, p50 / p99 (ms)".into(),
            vec![("", "/turn/p50_ms", Fmt::Ms), (" / ", "/turn/p99_ms", Fmt::Ms)],
        );
        add(
            "  chat.send ack p50 / p99 (ms)".into(),
            vec![("", "/ack/p50_ms", Fmt::Ms), (" / ", "/ack/p99_ms", Fmt::Ms)],
        );
        add("  deltas received per turn".into(), vec![("", "/deltas_per_turn", Fmt::Ms)]);
        add(
            "  server CPU per turn (µs); load tool's CPU (% of its core)".into(),
            vec![("", "/server_cpu_per_op_us", Fmt::Us), ("; ", "/client_cpu_util", Fmt::Pct)],
        );
    }
    if lines.iter().any(|l| l.scenario == "history") {
        let f = |l: &Line| l.scenario == "history";
        rows.push(Row {
            title: "`chat.history`: messages in the session; returned per call".into(),
            filter: Box::new(f),
            cells: vec![("", "/total_messages", Fmt::Rate), ("; ", "/messages_returned", Fmt::Rate)],
        });
        rows.push(Row {
            title: "  latency p50 / p99 / p99.9 (ms)".into(),
            filter: Box::new(f),
            cells: vec![
                ("", "/latency/p50_ms", Fmt::Ms),
                (" / ", "/latency/p99_ms", Fmt::Ms),
                (" / ", "/latency/p999_ms", Fmt::Ms),
            ],
        });
        rows.push(Row {
            title: "  server CPU per call (µs)".into(),
            filter: Box::new(f),
            cells: vec![("", "/server_cpu_per_op_us", Fmt::Us)],
        });
        rows.push(Row {
            title: "  fill with `chat.inject`: rows/s; server CPU per row (µs)".into(),
            filter: Box::new(f),
            cells: vec![("", "/fill_rows_per_s", Fmt::Rate), ("; ", "/fill_server_cpu_per_row_us", Fmt::Us)],
        });
    }
    rows
}

fn read_lines(args: &TableArgs) -> Result<Vec<Line>> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let parsed: Vec<Value> =
        text.lines().filter(|l| !l.trim().is_empty()).filter_map(|l| serde_json::from_str(l).ok()).collect();
    let run_id = match &args.run_id {
        Some(r) => r.clone(),
        None => parsed.last().and_then(|v| v.get("run_id")).and_then(Value::as_str).unwrap_or_default().to_owned(),
    };
    let lines: Vec<Line> = parsed
        .into_iter()
        .filter(|v| v.get("run_id").and_then(Value::as_str) == Some(run_id.as_str()))
        .map(|v| Line {
            scenario: v["scenario"].as_str().unwrap_or_default().to_owned(),
            label: v["label"].as_str().unwrap_or_default().to_owned(),
            params: v["params"].clone(),
            figures: v["figures"].clone(),
            error: v["error"].as_str().map(str::to_owned),
        })
        .collect();
    if lines.is_empty() {
        bail!("no lines with run id {run_id:?} in {}", args.file.display());
    }
    Ok(lines)
}

pub fn run(args: TableArgs) -> Result<()> {
    let lines = read_lines(&args)?;
    // Listed labels first, in the given order (a missing one gets a "pending" column), then
    // any other label in order of appearance.
    let mut labels: Vec<String> = args.labels.clone();
    for l in &lines {
        if !labels.contains(&l.label) {
            labels.push(l.label.clone());
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "| metric | {} |", labels.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(labels.len()));
    for row in rows(&lines) {
        let mut cells = Vec::new();
        for label in &labels {
            let matching: Vec<&Line> = lines.iter().filter(|l| &l.label == label && (row.filter)(l)).collect();
            let has_any = lines.iter().any(|l| &l.label == label);
            if matching.is_empty() {
                cells.push(if has_any { "–".into() } else { "pending".into() });
                continue;
            }
            let failed: Vec<&str> = matching.iter().filter_map(|l| l.error.as_deref()).collect();
            if failed.len() == matching.len() {
                cells.push(format!("failed: {}", short(failed[0])));
                continue;
            }
            let mut cell = String::new();
            let ok: Vec<&Line> = matching.iter().copied().filter(|l| l.error.is_none()).collect();
            let matching = ok;
            let mut any = false;
            for (sep, path, f) in &row.cells {
                let vals: Vec<f64> = matching.iter().filter_map(|l| l.f(path)).collect();
                any |= !vals.is_empty();
                cell.push_str(sep);
                cell.push_str(&agg(&vals, *f));
            }
            if !any {
                // The scenario ran but has no such figure (e.g. no ack when talking to the
                // model directly, no fill on a server without chat.inject).
                cell = "n/a".into();
            }
            if !failed.is_empty() {
                cell.push_str(&format!(" (+{} failed)", failed.len()));
            }
            cells.push(cell);
        }
        let _ = writeln!(out, "| {} | {} |", row.title, cells.join(" | "));
    }
    out.push('\n');
    out.push_str(&targets(&lines, &args.subject, &args.baseline));
    out.push_str(&chat_targets(&lines, &args.subject));
    print!("{out}");
    Ok(())
}

/// The issue's targets, checked for `subject` against `baseline` in the same run.
fn targets(lines: &[Line], subject: &str, baseline: &str) -> String {
    let med = |label: &str, filter: &dyn Fn(&Line) -> bool, path: &str| -> Option<f64> {
        let v: Vec<f64> = lines.iter().filter(|l| l.label == label && filter(l)).filter_map(|l| l.f(path)).collect();
        (!v.is_empty()).then(|| median(v))
    };
    let ready = |l: &Line| l.scenario == "ready";
    let rss = |l: &Line| l.scenario == "rss";
    let hs16 = |l: &Line| l.scenario == "handshake" && l.p("concurrency") == Some(16);
    let rpc16 = |l: &Line| l.scenario == "rpc" && l.p("connections") == Some(16) && l.p("depth") == Some(1);
    let fan1000 = |l: &Line| l.scenario == "fanout" && l.p("listeners") == Some(1000);

    let mut out = format!("Targets for `{subject}` (baseline `{baseline}`, same run; medians over repeats):\n\n");
    let mut check = |name: &str, value: Option<f64>, pass: &dyn Fn(f64) -> bool, shown: &dyn Fn(f64) -> String| {
        let (mark, text) = match value {
            None => ("pending".to_owned(), "not measured".to_owned()),
            Some(v) => (if pass(v) { "met" } else { "NOT met" }.to_owned(), shown(v)),
        };
        let _ = writeln!(out, "- {name}: {text} — **{mark}**");
    };
    check("start → listening < 100 ms", med(subject, &ready, "/listen_ms"), &|v| v < 100.0, &|v| {
        format!("{v:.1} ms")
    });
    check("idle RSS < 15 MB (process tree)", med(subject, &rss, "/rss_tree_kb"), &|v| v < 15.0 * 1024.0, &|v| {
        format!("{:.1} MB", v / 1024.0)
    });
    let ratio = |f: &dyn Fn(&Line) -> bool| -> Option<f64> {
        Some(med(subject, f, "/rate_per_s")? / med(baseline, f, "/rate_per_s")?)
    };
    check("handshakes/s at 16 connections ≥ ½ of the echo server's", ratio(&hs16), &|v| v >= 0.5, &|v| {
        format!("{:.2}× the baseline", v)
    });
    check("`health` req/s at 16 connections ≥ ½ of the echo server's", ratio(&rpc16), &|v| v >= 0.5, &|v| {
        format!("{:.2}× the baseline", v)
    });
    check(
        "`health` p99 < 2 ms at 16 connections (depth 1)",
        med(subject, &rpc16, "/latency/p99_ms"),
        &|v| v < 2.0,
        &|v| format!("{v:.3} ms"),
    );
    let p99_all = med(subject, &fan1000, "/all_reached/p99_ms");
    check(
        "fanout to 1000 clients < 20 ms (all reached, p50)",
        med(subject, &fan1000, "/all_reached/p50_ms"),
        &|v| v < 20.0,
        &|v| format!("p50 {v:.2} ms (p99 {})", p99_all.map_or("?".into(), |p| format!("{p:.2} ms"))),
    );
    out
}

/// The chat targets: gateway overhead on time to first delta (gateway − direct-to-model,
/// same session count, same run) under 1 ms at p50, and `chat.history` under 5 ms.
fn chat_targets(lines: &[Line], subject: &str) -> String {
    let med = |label: Option<&str>, scenario: &str, sessions: Option<u64>, path: &str| -> Option<f64> {
        let v: Vec<f64> = lines
            .iter()
            .filter(|l| l.scenario == scenario && label.is_none_or(|x| l.label == x))
            .filter(|l| sessions.is_none() || l.p("sessions") == sessions)
            .filter_map(|l| l.f(path))
            .collect();
        (!v.is_empty()).then(|| median(v))
    };
    let mut out = String::new();
    let mut counts: Vec<u64> =
        lines.iter().filter(|l| l.scenario == "direct").filter_map(|l| l.p("sessions")).collect();
    counts.sort_unstable();
    counts.dedup();
    for s in counts {
        let gw = med(Some(subject), "chat", Some(s), "/ttft/p50_ms");
        let direct = med(None, "direct", Some(s), "/ttft/p50_ms");
        let gw99 = med(Some(subject), "chat", Some(s), "/ttft/p99_ms");
        let direct99 = med(None, "direct", Some(s), "/ttft/p99_ms");
        let (mark, text) = match (gw, direct) {
            (Some(g), Some(d)) => {
                let p99 = match (gw99, direct99) {
                    (Some(a), Some(b)) => format!("; p99 {a:.3} − {b:.3} = {:.3} ms", a - b),
                    _ => String::new(),
                };
                (if g - d < 1.0 { "met" } else { "NOT met" }, format!("p50 {g:.3} − {d:.3} = {:.3} ms{p99}", g - d))
            }
            _ => ("pending", "not measured".to_owned()),
        };
        let name = if s == 1 { "target" } else { "same measure" };
        let _ = writeln!(
            out,
            "- gateway overhead on time to first delta, {s} session(s) ({name}: < 1 ms at p50): {text} — **{mark}**"
        );
    }
    if let Some(p50) = med(Some(subject), "history", None, "/latency/p50_ms") {
        let p99 = med(Some(subject), "history", None, "/latency/p99_ms").unwrap_or(f64::NAN);
        let rows = med(Some(subject), "history", None, "/total_messages").unwrap_or(f64::NAN);
        let mark = if p50 < 5.0 { "met" } else { "NOT met" };
        let _ = writeln!(
            out,
            "- `chat.history` limit 50 on a {rows:.0}-message transcript < 5 ms: p50 {p50:.3} ms, p99 {p99:.3} ms \
             (p99 {}) — **{mark}**",
            if p99 < 5.0 { "also under" } else { "over" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(agg(&[1.0, 3.0, 2.0], Fmt::Rate), "2 [1–3]");
        assert_eq!(fmt_num(0.1234, Fmt::Ms), "0.123");
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn builds_from_lines_and_marks_missing_servers_pending() {
        let dir = std::env::temp_dir().join(format!("bench-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let file = dir.join("r.jsonl");
        std::fs::write(
            &file,
            concat!(
                r#"{"scenario":"rpc","label":"echo","run_id":"x","params":{"connections":16,"depth":1},"figures":{"rate_per_s":1000.0,"latency":{"p50_ms":0.1,"p99_ms":0.2,"p999_ms":0.3}}}"#,
                "\n"
            ),
        )
        .expect("write");
        let args = TableArgs {
            file,
            run_id: None,
            labels: vec!["echo".into(), "clawgate".into()],
            subject: "clawgate".into(),
            baseline: "echo".into(),
        };
        let lines = read_lines(&args).expect("lines");
        assert_eq!(lines.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
