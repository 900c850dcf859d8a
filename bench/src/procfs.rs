//! Server-side resource figures from /proc: RSS and CPU time of a process and its descendants.
//!
//! CPU is `utime + stime` from `/proc/PID/stat` (clock ticks, usually 10 ms), summed over the
//! process tree found through `/proc/PID/task/*/children`. A child that exits between two
//! samples takes its CPU time with it, so only long-lived trees (the servers here) are
//! measured well.

use std::collections::BTreeSet;
use std::fs;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};

/// Clock ticks per second (`getconf CLK_TCK`, 100 on every Linux we care about).
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|v| *v > 0.0)
            .unwrap_or(100.0)
    })
}

/// The process and all its live descendants (pid first).
pub fn tree(pid: u32) -> Vec<u32> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut stack = vec![pid];
    // Bounded: a process tree on this box has far fewer than 10k members.
    while let Some(p) = stack.pop() {
        if !seen.insert(p) || seen.len() > 10_000 {
            continue;
        }
        out.push(p);
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(children) = fs::read_to_string(task.path().join("children")) {
                stack.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// `VmRSS` of one process in KiB.
pub fn rss_kb(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is the pid alive?)"))?;
    status_field_kb(&status, "VmRSS:").ok_or_else(|| anyhow!("no VmRSS for pid {pid}"))
}

fn status_field_kb(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn threads(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// utime + stime of one process in seconds (all its threads, live and exited).
pub fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_stat_cpu_ticks(&stat).map(|t| t as f64 / clk_tck()).ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))
}

/// The process name may hold spaces and parens, so fields are counted after the last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ")" comes field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds used so far by this load-generator process.
pub fn self_cpu_secs() -> f64 {
    cpu_secs(std::process::id()).unwrap_or(0.0)
}

/// CPU time of one process in nanoseconds, from the scheduler's per-thread accounting
/// (`/proc/PID/task/*/schedstat`, first field): fine enough to tell a few turns apart, where
/// `/proc/PID/stat`'s 10 ms ticks are not. Threads that exited are not counted, so this suits a
/// server whose worker threads live as long as it does.
pub fn sched_cpu_ns(pid: u32) -> Result<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("reading /proc/{pid}/task"))?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        // A thread may exit while we read: skip it.
        let Ok(stat) = fs::read_to_string(task.path().join("schedstat")) else { continue };
        total += stat.split_whitespace().next().and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    }
    Ok(total)
}

/// One snapshot of a server's process tree.
#[derive(Clone, Debug)]
pub struct Sample {
    pub pids: Vec<u32>,
    pub rss_main_kb: u64,
    pub rss_tree_kb: u64,
    pub cpu_tree_s: f64,
    pub threads_main: u64,
}

impl Sample {
    pub fn take(pid: u32) -> Result<Self> {
        let pids = tree(pid);
        let rss_main_kb = rss_kb(pid)?;
        let mut rss_tree_kb = 0;
        let mut cpu_tree_s = 0.0;
        for &p in &pids {
            // Children may exit while we read; skip them rather than fail the run.
            rss_tree_kb += rss_kb(p).unwrap_or(0);
            cpu_tree_s += cpu_secs(p).unwrap_or(0.0);
        }
        Ok(Self { rss_main_kb, rss_tree_kb, cpu_tree_s, threads_main: threads(pid), pids })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "processes": self.pids.len(),
            "threads_main": self.threads_main,
            "rss_main_kb": self.rss_main_kb,
            "rss_tree_kb": self.rss_tree_kb,
            "cpu_tree_s": (self.cpu_tree_s * 1000.0).round() / 1000.0,
        })
    }
}

/// Takes a sample when a pid was given; a vanished pid is an error (the server died).
pub fn maybe_sample(pid: Option<u32>) -> Result<Option<Sample>> {
    pid.map(Sample::take).transpose()
}

/// `MemAvailable` of the machine in KiB.
pub fn mem_available_kb() -> Option<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    status_field_kb(&meminfo, "MemAvailable:")
}

/// Fails early, with the fix, when `sockets` more descriptors would not fit under the soft
/// `RLIMIT_NOFILE` of this process.
pub fn check_fd_room(sockets: u64) -> Result<()> {
    let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(soft) = soft
        && sockets + 64 > soft
    {
        anyhow::bail!(
            "{sockets} sockets need more file descriptors than the limit ({soft}); run `ulimit -n {}` first",
            sockets + 1024
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let stat = "1234 (node (main) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 15 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn own_threads_cpu_is_readable() {
        let a = sched_cpu_ns(std::process::id()).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(sched_cpu_ns(std::process::id()).unwrap() > a);
    }

    #[test]
    fn own_process_is_readable() {
        let s = Sample::take(std::process::id()).expect("self sample");
        assert!(s.rss_main_kb > 0);
        assert!(s.pids.contains(&std::process::id()));
    }
}
