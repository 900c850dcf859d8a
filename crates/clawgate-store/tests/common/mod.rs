//! The kill harness shared by the crash-safety tests: the test binary re-runs one of its own
//! tests as a child writer, and the parent SIGKILLs it at a chosen moment.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the parent waits for the child to make progress.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// When the parent pulls the plug.
#[derive(Debug, Clone, Copy)]
pub enum KillAt {
    /// This long after spawning, whatever the child is doing (start-up, migrations).
    AfterSpawn(Duration),
    /// As soon as this many iterations have finished (0: right after the store opened).
    AfterIterations(u64),
}

/// Which child test to run and how it reports progress.
pub struct Harness {
    /// The `#[test]` that acts as the writer when its env var is set.
    pub child_test: &'static str,
    /// Env var carrying the database path to the child.
    pub db_env: &'static str,
    /// Env var carrying the round number to the child.
    pub round_env: &'static str,
    /// Line the child prints once its store is open.
    pub ready_marker: &'static str,
    /// Prefix of the child's "iterations done" lines.
    pub progress_marker: &'static str,
}

impl Harness {
    /// Spawns the child writer, waits for `moment`, and SIGKILLs it.
    pub fn run_and_kill(&self, db: &Path, round: usize, moment: KillAt) {
        let exe = std::env::current_exe().expect("current test binary");
        let mut child = Command::new(exe)
            .args([self.child_test, "--exact", "--nocapture", "--test-threads=1"])
            .env(self.db_env, db)
            .env(self.round_env, round.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child writer");
        let lines = stdout_lines(&mut child);
        match moment {
            KillAt::AfterSpawn(delay) => std::thread::sleep(delay),
            KillAt::AfterIterations(target) => self.wait_for_iterations(&mut child, &lines, target),
        }
        // `Child::kill` is SIGKILL on Unix: no destructors, no rollback, no checkpoint.
        child.kill().expect("kill child");
        let status = child.wait().expect("reap child");
        eprintln!("round {round}: killed at {moment:?} ({status})");
    }

    fn wait_for_iterations(&self, child: &mut Child, lines: &mpsc::Receiver<String>, target: u64) {
        let started = Instant::now();
        let mut ready = false;
        let mut done = 0u64;
        while !(ready && done >= target) {
            let left = WAIT_LIMIT.saturating_sub(started.elapsed());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if line.contains(self.ready_marker) {
                        ready = true;
                    }
                    if let Some(rest) = line.split(self.progress_marker).nth(1) {
                        done = rest.trim().parse().unwrap_or(done);
                    }
                }
                Err(err) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!(
                        "child writer stopped before {target} iterations ({err:?}; ready={ready}, \
                         done={done}, status={status:?})"
                    );
                }
            }
        }
    }
}

fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
