//! `clawgate doctor`: check what an operator gets wrong and say what to do about each.
//!
//! Every check has an id, a section and a [`Finding`] (ok, warn, fail or skipped, one line of
//! fact, and on warn and fail what to do). Local checks (config, state directory, database,
//! permissions, port, TLS files) run first, in order, and never write unless `--fix` is given,
//! and then only the safe fixes: creating the state directory and tightening permissions.
//! Network checks (providers, chat accounts, ComfyUI workers) run concurrently, each bounded by
//! `--timeout`, and are skipped with `--offline`. The state database is inspected without
//! migrating it: a doctor must not upgrade what it was asked to look at.

mod cert;
mod control_ui;
mod local;
mod remote;
mod report;

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use clap::Args;

use crate::paths;
pub use report::{Finding, Outcome, Section, Status};

/// Check config, state, providers, chat accounts, ComfyUI workers and TLS; print what to fix.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate doctor
  clawgate doctor --offline            # only what can be checked without the network
  clawgate doctor --fix                # also make the safe fixes (permissions, missing dirs)
  clawgate doctor --json | jq '.checks[] | select(.status != \"ok\")'
  clawgate doctor --state-dir /srv/clawgate")]
pub struct DoctorArgs {
    /// Config file [default: $CLAWGATE_CONFIG or <state-dir>/clawgate.json5]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// State directory [default: $CLAWGATE_STATE_DIR or ~/.clawgate]
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Print the result as JSON ({ok, summary, checks: [{id, section, status, message, fix}]})
    #[arg(long)]
    pub json: bool,
    /// Skip the checks that need the network (providers, chat accounts, ComfyUI workers)
    #[arg(long)]
    pub offline: bool,
    /// Apply the safe fixes: create a missing state directory, make the state directory,
    /// the token file and a config file holding secrets private. Each fix is reported
    #[arg(long)]
    pub fix: bool,
    /// Seconds each network check may take
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub timeout: u64,
}

/// A boxed future of a network check.
pub(crate) type CheckFuture = Pin<Box<dyn Future<Output = Finding> + Send>>;

/// A network check not yet run.
pub(crate) struct Probe {
    id: String,
    section: Section,
    /// What the check looks at, for `--offline` and timeout messages (`provider openai`).
    what: String,
    run: CheckFuture,
}

impl Probe {
    pub(crate) fn new(
        id: impl Into<String>,
        section: Section,
        what: impl Into<String>,
        run: impl Future<Output = Finding> + Send + 'static,
    ) -> Self {
        Self { id: id.into(), section, what: what.into(), run: Box::pin(run) }
    }
}

/// What every check may look at.
pub(crate) struct Ctx {
    pub state_dir: PathBuf,
    pub config_path: PathBuf,
    /// `None` when the config does not load (the config check failed).
    pub loaded: Option<clawgate_config::LoadedConfig>,
    /// `--fix`.
    pub fix: bool,
    /// (schedule name, template id) of every enabled ComfyUI schedule in the state database,
    /// read by the database check so the ComfyUI checks can see that each template exists.
    pub scheduled_templates: Vec<(String, String)>,
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<i32> {
    let state_dir = paths::state_dir(args.state_dir.as_deref());
    let config_path = paths::config_path(args.config.as_deref(), &state_dir);
    let mut ctx = Ctx { state_dir, config_path, loaded: None, fix: args.fix, scheduled_templates: Vec::new() };

    let mut outcomes = local::run(&mut ctx).await;
    let probes = remote::probes(&ctx);
    let progress = !args.json && std::io::stderr().is_terminal();
    outcomes.extend(run_probes(probes, args.offline, Duration::from_secs(args.timeout), progress).await);

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report::render_json(&outcomes))?);
    } else {
        let header = format!(
            "clawgate doctor\n  state dir: {}\n  config:    {}\n",
            ctx.state_dir.display(),
            ctx.config_path.display()
        );
        print!("{}", report::render_text(&header, &outcomes));
    }
    Ok(report::Summary::of(&outcomes).exit_code())
}

/// Runs the network checks concurrently, each bounded by `timeout`; the outcomes come back in
/// the order the probes were listed. With `progress`, a counter on stderr tells a person at a
/// terminal that something is happening while slow servers are waited for.
async fn run_probes(probes: Vec<Probe>, offline: bool, timeout: Duration, progress: bool) -> Vec<Outcome> {
    if offline {
        return probes
            .into_iter()
            .map(|p| Outcome::new(p.id, p.section, Finding::skipped(format!("{}: skipped (--offline)", p.what))))
            .collect();
    }
    let total = probes.len();
    let mut slots: Vec<Option<Outcome>> = vec![None; total];
    let mut set = tokio::task::JoinSet::new();
    let mut pending = Vec::with_capacity(total);
    for (i, p) in probes.into_iter().enumerate() {
        let Probe { id, section, what, run } = p;
        pending.push((id.clone(), section, what.clone()));
        set.spawn(async move {
            let finding = match tokio::time::timeout(timeout, run).await {
                Ok(f) => f,
                Err(_) => Finding::fail(
                    format!("{what}: no answer within {}s", timeout.as_secs()),
                    "check that the server is up and reachable from this machine (a firewall, a wrong host or port)",
                ),
            };
            (i, Outcome::new(id, section, finding))
        });
    }
    let mut done = 0;
    while let Some(joined) = set.join_next().await {
        done += 1;
        if progress {
            eprint!("\r  checking network services: {done}/{total}");
            let _ = std::io::stderr().flush();
        }
        if let Ok((i, outcome)) = joined {
            slots[i] = Some(outcome);
        }
    }
    if progress && total > 0 {
        eprintln!();
    }
    // A check that panicked still gets a line: the report names every check it started.
    slots
        .into_iter()
        .zip(pending)
        .map(|(slot, (id, section, what))| {
            slot.unwrap_or_else(|| {
                Outcome::new(
                    id,
                    section,
                    Finding::fail(format!("{what}: the check itself failed"), "report this as a clawgate bug"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_check_times_out_and_the_others_keep_their_order() {
        let probes = vec![
            Probe::new("a", Section::Providers, "provider a", async { Finding::ok("a answers") }),
            Probe::new("b", Section::Channels, "telegram/default", async {
                std::future::pending::<()>().await;
                Finding::ok("never")
            }),
            Probe::new("c", Section::Comfy, "worker c", async { Finding::warn("c is old", "upgrade c") }),
        ];
        let out = run_probes(probes, false, Duration::from_secs(1), false).await;
        let ids: Vec<_> = out.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(out[1].finding.status, Status::Fail);
        assert_eq!(out[1].finding.message, "telegram/default: no answer within 1s");
        assert_eq!(out[2].finding.status, Status::Warn);
    }

    #[tokio::test]
    async fn offline_skips_every_network_check_without_running_it() {
        let probes = vec![Probe::new("a", Section::Providers, "provider a", async {
            panic!("an offline doctor must not run network checks")
        })];
        let out = run_probes(probes, true, Duration::from_secs(5), false).await;
        assert_eq!(out[0].finding, Finding::skipped("provider a: skipped (--offline)"));
    }
}
