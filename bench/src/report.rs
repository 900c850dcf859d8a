//! Scenario results: a human summary and, with `--json`, one JSON object line on stdout.
//!
//! With `--json` the human summary goes to stderr, so `clawgate-bench … --json >> results.jsonl`
//! collects clean JSON lines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::procfs::{self, Sample};
use crate::stats::round3;

pub struct Report {
    scenario: &'static str,
    label: String,
    run_id: String,
    params: Map<String, Value>,
    figures: Map<String, Value>,
    lines: Vec<String>,
}

impl Report {
    pub fn new(scenario: &'static str, label: &str, run_id: &str) -> Self {
        Self {
            scenario,
            label: label.to_owned(),
            run_id: run_id.to_owned(),
            params: Map::new(),
            figures: Map::new(),
            lines: Vec::new(),
        }
    }

    pub fn param(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.params.insert(key.to_owned(), value.into());
        self
    }

    pub fn figure(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.figures.insert(key.to_owned(), value.into());
        self
    }

    pub fn line(&mut self, text: impl Into<String>) -> &mut Self {
        self.lines.push(text.into());
        self
    }

    /// Adds the server's CPU (process tree, before/after) and this tool's own CPU, so a reader
    /// can tell a server-bound figure from a tool-bound one.
    pub fn cpu(
        &mut self,
        before: Option<&Sample>,
        after: Option<&Sample>,
        ops: u64,
        op_name: &str,
        wall: Duration,
        client_cpu_s: f64,
    ) -> &mut Self {
        let wall_s = wall.as_secs_f64().max(1e-9);
        self.figure("client_cpu_s", round3(client_cpu_s));
        self.figure("client_cpu_util", round3(client_cpu_s / wall_s));
        if let (Some(b), Some(a)) = (before, after) {
            let cpu = (a.cpu_tree_s - b.cpu_tree_s).max(0.0);
            let per_op_us = if ops > 0 { cpu * 1e6 / ops as f64 } else { 0.0 };
            self.figure("server_cpu_s", round3(cpu));
            self.figure("server_cpu_util", round3(cpu / wall_s));
            self.figure("server_cpu_per_op_us", round3(per_op_us));
            self.figure("server_after", a.to_json());
            self.line(format!(
                "server CPU: {cpu:.2} s over {wall_s:.2} s wall ({:.0}% of a core), {per_op_us:.1} µs per {op_name}",
                100.0 * cpu / wall_s
            ));
        }
        self.line(format!(
            "load tool CPU: {client_cpu_s:.2} s ({:.0}% of a core){}",
            100.0 * client_cpu_s / wall_s,
            if client_cpu_s / wall_s > 0.9 { "  <- tool-bound: the rate is a lower bound on the server's" } else { "" }
        ));
        self
    }

    pub fn emit(&self, json_line: bool) {
        let mut human = format!("== {}", self.scenario);
        if !self.label.is_empty() {
            human.push_str(&format!(" [{}]", self.label));
        }
        human.push_str(&format!(" {}\n", Value::Object(self.params.clone())));
        for l in &self.lines {
            human.push_str("   ");
            human.push_str(l);
            human.push('\n');
        }
        if let Some(l) = loadavg() {
            human.push_str(&format!("   machine load average (1/5/15 min): {l}\n"));
        }
        if json_line {
            eprint!("{human}");
            let ts = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let obj = json!({
                "loadavg": loadavg(),
                "scenario": self.scenario,
                "label": self.label,
                "run_id": self.run_id,
                "unix_ts": ts,
                "params": self.params,
                "figures": self.figures,
            });
            println!("{obj}");
        } else {
            print!("{human}");
        }
    }
}

/// The JSON line of a scenario that failed: same keys as a result, with `error` instead of
/// `figures`.
pub fn emit_error(scenario: &str, label: &str, run_id: &str, params: Value, err: &anyhow::Error) {
    let obj = json!({
        "loadavg": loadavg(),
        "scenario": scenario,
        "label": label,
        "run_id": run_id,
        "unix_ts": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "params": params,
        "error": format!("{err:#}"),
    });
    println!("{obj}");
}

/// CPU seconds of this process, for the "was the tool the bottleneck" figure.
pub fn client_cpu() -> f64 {
    procfs::self_cpu_secs()
}

/// `/proc/loadavg`'s first three fields: on a shared box this says how noisy a figure is.
fn loadavg() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}
