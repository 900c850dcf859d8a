//! The chat command grammar, who may run what, and the reply texts users see.
//!
//! Compatible with the ComfyUI-OpenClaw chat connector (`connector/router_dispatch.py`,
//! `router_execution_handlers.py`): the same commands, argument rules, command classes and reply
//! strings, so users and their muscle memory carry over.
//!
//! # Grammar
//!
//! `/run <template> [key=value ...] [free text] [--approval|--require-approval|-a]`, `/status [job]`,
//! `/jobs` (`/queue`), `/history [job]`, `/stop` (`/cancel`, `/interrupt`) `[job ...]`,
//! `/trace <id>`, `/approvals`, `/approve <id>`, `/reject <id> [reason]`, `/schedules`,
//! `/schedule run|enable|disable <id>`, `/templates`, `/workers`, `/help` (`/start`).
//! The gateway core's chat-command registry recognises the names (case-insensitive, with a
//! `@botname` suffix or a leading `@bot` mention, and `!name` for `/name`, since Slack keeps a
//! leading `/` for its own commands) and hands the rest to [`parse_args`]; the names
//! and aliases come from [`Verb`]. Arguments split like Python's `shlex` in POSIX mode with only `"` as a quote
//! (`k="a b"` is `k=a b`; `'` is an ordinary character; a backslash escapes the next character
//! outside quotes and `"` or `\` inside them). Typographic quotes `“ ”`, which phone keyboards
//! substitute for `"`, count as `"`.
//!
//! # Authorization ([`authorize`])
//!
//! Every command has a class, `public`, `run` or `admin` ([`Verb::default_class`]), which configuration can
//! override per command. If the class has an `allowFrom` list, the sender must be on it (admins are
//! not exempt). Admin-class commands need an admin. A `/run` from a trusted sender (an admin, a
//! sender the channel marks trusted, or one on `trustedUsers`/`trustedChats`) runs directly;
//! anyone else's, and any `/run … --approval`, needs approval.
//!
//! # Configuration: the `comfy.commands` section ([`CommandPolicy::from_config`])
//!
//! ```json
//! {
//!   "adminUsers":   ["telegram:123456789", "discord:80351110224678912"],
//!   "trustedUsers": ["whatsapp:15551234567", "42"],
//!   "trustedChats": ["telegram:-1001234567890"],
//!   "allowFrom":    {"public": [], "run": [], "admin": []},
//!   "overrides":    {"/status": "admin", "stop": "run"}
//! }
//! ```
//!
//! Every key is optional. IDs are strings or integers; `platform:id` matches on that platform
//! only, a bare `id` on any platform (as the connector did; prefer the scoped form, since numeric
//! IDs of different platforms can collide). `overrides` keys are command names with or without
//! `/`, aliases included; values are `public`, `run` or `admin`. Unknown keys, unknown commands
//! and bad classes are errors naming the key, where the connector silently ignored them and left
//! the command at its default class.
//!
//! # Connector bugs fixed (comfyui-openclaw.md §3.10 and nearby)
//!
//! - §3.10.1: `/history <id>` read `status` at the top level of ComfyUI's `/history/{id}` reply;
//!   the gateway answers from its own job record ([`HistoryEntry`]).
//! - §3.10.2: `/schedules` printed `id` and `cron`; the extension's `schedule_id`, `cron_expr`
//!   and `interval_sec` are read ([`crate::openclaw::RemoteSchedule`]).
//! - §3.10.3: free text always went to `positive_prompt`; `/run` keeps it apart
//!   (the `free_text` of [`Command::Run`]) and [`crate::templates::Template::prompt_key`] picks the key
//!   from the template's `allowed_inputs` as intended.
//! - §3.10.4: the `/reject` reason was lost; it is kept in [`Command::Reject`] and echoed in
//!   [`reply::rejected`] so the gateway, which owns approvals, can record it.
//! - §3.10.5: every ordinary message got `Unknown command`; anything that is not a known slash
//!   command goes to the agent. Commands without the slash (`status`, `queue`) are no longer
//!   commands, as they would capture ordinary words.
//! - `/help` listed `/stop` as a general command although it is admin-only; the registry's
//!   `/help` lists only what the sender may use ([`CommandPolicy::may_use`]), overrides included.
//! - Overrides keyed by an alias (`/cancel`) never applied; they now resolve to the command.
//! - `/schedule` answered `Not implemented yet.` to anything but `run`; `enable` and `disable`
//!   are parsed, and the usage text names them.
//! - `/trace` always appended `...`; [`reply::trace`] does only when it cut the text.
//! - IDs typed in chat end up in backend URLs; they are checked against the backend's job-ID
//!   pattern (`[A-Za-z0-9][A-Za-z0-9._:-]{0,127}`) here instead of being trusted.
//!
//! Out of scope here: rate limiting, the command-length check, reply truncation per platform
//! (§3.10.7) and rate-limit bucket keys (§3.10.8) belong to the channel layer.
//!
//! # Layout
//!
//! [`grammar`](Verb) (names, aliases, help lines, [`parse_args`]), [`policy`](CommandPolicy)
//! (classes, `comfy.commands`, [`authorize`]) and [`reply`] (the texts users see).

mod grammar;
mod policy;
pub mod reply;

pub use grammar::{Command, Problem, ScheduleAction, Verb, parse_args};
pub use policy::{CommandClass, CommandPolicy, Decision, PolicyError, SenderCtx, authorize};
pub use reply::{
    ApprovalSummary, HistoryEntry, JobState, JobSubmitted, JobView, QueuePosition, ScheduleSummary, WorkerSummary,
};

#[cfg(test)]
mod test_support {
    use super::Command;

    /// A `/run` command as the grammar builds it.
    pub(super) fn run(template: &str, inputs: &[(&str, &str)], free: Option<&str>, approval: bool) -> Command {
        Command::Run {
            template: template.to_owned(),
            inputs: inputs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            free_text: free.map(str::to_owned),
            require_approval: approval,
        }
    }
}
