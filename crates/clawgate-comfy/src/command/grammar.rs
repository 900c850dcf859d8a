//! What a command's arguments mean: [`Verb`]'s table of names, aliases and `/help` lines, and
//! [`parse_args`], the argument grammar (see the module docs of [`crate::command`]).

use std::collections::BTreeMap;

use super::policy::CommandClass;

/// Flags that force the approval flow for a `/run`.
const APPROVAL_FLAGS: [&str; 3] = ["--approval", "--require-approval", "-a"];

/// Longest job, approval, schedule or template id accepted from chat.
const MAX_ID_LEN: usize = 128;

/// A chat command, as the user wrote it, before authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/run <template> [key=value ...] [free text] [--approval]`.
    Run {
        /// The template id.
        template: String,
        /// `key=value` arguments; values stay text until the template types them.
        inputs: BTreeMap<String, String>,
        /// The other words, joined by single spaces, for the template's prompt input.
        free_text: Option<String>,
        /// `--approval`, `--require-approval` or `-a` was given.
        require_approval: bool,
    },
    /// `/status [job]`: the system, or one job.
    Status {
        /// The job, if given.
        job: Option<String>,
    },
    /// `/jobs` (`/queue`).
    Jobs,
    /// `/history [job]`.
    History {
        /// The job, if given.
        job: Option<String>,
    },
    /// `/stop` (`/cancel`, `/interrupt`) `[job ...]`: no ids means the running job.
    Stop {
        /// Job ids, split on spaces and commas.
        jobs: Vec<String>,
    },
    /// `/trace <id>`.
    Trace {
        /// The job or trace id.
        id: String,
    },
    /// `/approvals`: pending approvals.
    Approvals,
    /// `/approve <id>`.
    Approve {
        /// The approval id.
        id: String,
    },
    /// `/reject <id> [reason]`.
    Reject {
        /// The approval id.
        id: String,
        /// Why, if given.
        reason: Option<String>,
    },
    /// `/schedules`.
    Schedules,
    /// `/schedule run|enable|disable <id>`.
    Schedule {
        /// What to do.
        action: ScheduleAction,
        /// The schedule id.
        id: String,
    },
    /// `/templates`.
    Templates,
    /// `/workers`.
    Workers,
    /// `/help` (`/start`).
    Help,
    /// A known command with unusable arguments; answer with [`crate::command::reply::invalid`] after
    /// authorization, as the connector checked permissions before usage.
    Invalid {
        /// The command.
        verb: Verb,
        /// What is wrong.
        problem: Problem,
    },
}

impl Command {
    /// Which command this is.
    pub fn verb(&self) -> Verb {
        match self {
            Self::Run { .. } => Verb::Run,
            Self::Status { .. } => Verb::Status,
            Self::Jobs => Verb::Jobs,
            Self::History { .. } => Verb::History,
            Self::Stop { .. } => Verb::Stop,
            Self::Trace { .. } => Verb::Trace,
            Self::Approvals => Verb::Approvals,
            Self::Approve { .. } => Verb::Approve,
            Self::Reject { .. } => Verb::Reject,
            Self::Schedules => Verb::Schedules,
            Self::Schedule { .. } => Verb::Schedule,
            Self::Templates => Verb::Templates,
            Self::Workers => Verb::Workers,
            Self::Help => Verb::Help,
            Self::Invalid { verb, .. } => *verb,
        }
    }
}

/// What `/schedule` should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleAction {
    /// Run it now.
    Run,
    /// Turn it on.
    Enable,
    /// Turn it off.
    Disable,
}

/// Why a known command's arguments were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Required arguments are missing or a subcommand is unknown.
    Usage,
    /// A `"` is not closed or the text ends with `\`.
    UnbalancedQuotes,
    /// An id has characters a backend id cannot have.
    BadId(String),
}

/// A command, named by its canonical (first) alias; what policy is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    /// `/run`.
    Run,
    /// `/status`.
    Status,
    /// `/jobs`, `/queue`.
    Jobs,
    /// `/history`.
    History,
    /// `/stop`, `/cancel`, `/interrupt`.
    Stop,
    /// `/trace`.
    Trace,
    /// `/approvals`.
    Approvals,
    /// `/approve`.
    Approve,
    /// `/reject`.
    Reject,
    /// `/schedules`.
    Schedules,
    /// `/schedule`.
    Schedule,
    /// `/templates`.
    Templates,
    /// `/workers`.
    Workers,
    /// `/help`, `/start`.
    Help,
}

impl Verb {
    /// Every command, in the order `/help` lists them.
    pub const ALL: [Verb; 14] = [
        Verb::Status,
        Verb::Run,
        Verb::Stop,
        Verb::History,
        Verb::Templates,
        Verb::Help,
        Verb::Jobs,
        Verb::Approvals,
        Verb::Approve,
        Verb::Reject,
        Verb::Schedules,
        Verb::Schedule,
        Verb::Trace,
        Verb::Workers,
    ];

    /// The canonical name, with its slash.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Run => "/run",
            Verb::Status => "/status",
            Verb::Jobs => "/jobs",
            Verb::History => "/history",
            Verb::Stop => "/stop",
            Verb::Trace => "/trace",
            Verb::Approvals => "/approvals",
            Verb::Approve => "/approve",
            Verb::Reject => "/reject",
            Verb::Schedules => "/schedules",
            Verb::Schedule => "/schedule",
            Verb::Templates => "/templates",
            Verb::Workers => "/workers",
            Verb::Help => "/help",
        }
    }

    /// Its other names, with their slash.
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Verb::Jobs => &["/queue"],
            Verb::Stop => &["/cancel", "/interrupt"],
            Verb::Help => &["/start"],
            _ => &[],
        }
    }

    /// Looks a command up by name or alias, with or without the slash, in any case.
    pub fn from_name(name: &str) -> Option<Verb> {
        let name = name.strip_prefix('/').unwrap_or(name);
        let is = |n: &str| n.strip_prefix('/').is_some_and(|n| n.eq_ignore_ascii_case(name));
        Verb::ALL.into_iter().find(|v| is(v.name()) || v.aliases().iter().any(|a| is(a)))
    }

    /// The class before overrides (the connector's table; `/templates` is public like `/help`,
    /// `/workers` admin since it describes the infrastructure).
    pub fn default_class(self) -> CommandClass {
        match self {
            Verb::Status | Verb::Help | Verb::History | Verb::Templates => CommandClass::Public,
            Verb::Run => CommandClass::Run,
            Verb::Stop
            | Verb::Approvals
            | Verb::Approve
            | Verb::Reject
            | Verb::Schedules
            | Verb::Schedule
            | Verb::Trace
            | Verb::Jobs
            | Verb::Workers => CommandClass::Admin,
        }
    }

    /// The one-line description in `/help`.
    pub fn help_line(self) -> &'static str {
        match self {
            Verb::Status => "/status [job] - System status, or one job's",
            Verb::Run => "/run <template> [key=value ...] [prompt text] [--approval] - Run a template",
            Verb::Stop => "/stop [job ...] - Stop every running job you may stop, or the jobs named",
            Verb::History => "/history <job> - A finished job's result",
            Verb::Templates => "/templates - List templates and their inputs",
            Verb::Help => "/help - This text",
            Verb::Jobs => "/jobs - Jobs in the queue",
            Verb::Approvals => "/approvals - Pending approvals",
            Verb::Approve => "/approve <id> - Approve and run",
            Verb::Reject => "/reject <id> [reason] - Reject",
            Verb::Schedules => "/schedules - List schedules",
            Verb::Schedule => "/schedule <run|enable|disable> <id> - Run or switch a schedule",
            Verb::Trace => "/trace <id> - A job's trace",
            Verb::Workers => "/workers - ComfyUI workers and their queues",
        }
    }

    pub(super) fn usage(self) -> &'static str {
        match self {
            Verb::Run => "Usage: /run <template_id> [prompt text] [key=value ...] [--approval]",
            Verb::Approve => "Usage: /approve <id>",
            Verb::Reject => "Usage: /reject <id> [reason]",
            Verb::Schedule => "Usage: /schedule <run|enable|disable> <id>",
            Verb::Trace => "Usage: /trace <id>",
            Verb::History => "Usage: /history <prompt_id>",
            other => other.help_line(),
        }
    }
}

/// Reads the arguments of `verb` (the text after the command's name; the core's command
/// registry recognises the name). A known command with unusable arguments is
/// [`Command::Invalid`], answered after authorization.
pub fn parse_args(verb: Verb, args: &str) -> Command {
    let Some(args) = tokenize(args) else {
        return Command::Invalid { verb, problem: Problem::UnbalancedQuotes };
    };
    build(verb, args).unwrap_or_else(|problem| Command::Invalid { verb, problem })
}

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '“' | '”')
}

/// POSIX-shlex splitting with `"` as the only quote. `None` on an open quote or trailing `\`.
fn tokenize(s: &str) -> Option<Vec<String>> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_token = false;
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if is_quote(c) {
                quoted = false;
            } else if c == '\\' {
                match chars.peek().copied() {
                    Some(n) if is_quote(n) || n == '\\' => {
                        current.push(n);
                        chars.next();
                    }
                    Some(_) => current.push('\\'),
                    None => return None,
                }
            } else {
                current.push(c);
            }
        } else if c.is_whitespace() {
            if in_token {
                tokens.push(std::mem::take(&mut current));
                in_token = false;
            }
        } else if is_quote(c) {
            quoted = true;
            in_token = true;
        } else if c == '\\' {
            current.push(chars.next()?);
            in_token = true;
        } else {
            current.push(c);
            in_token = true;
        }
    }
    if quoted {
        return None;
    }
    if in_token {
        tokens.push(current);
    }
    Some(tokens)
}

/// A job, approval, schedule or template id, as the backend's job-ID pattern allows.
fn is_valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= MAX_ID_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

fn id(token: &str) -> Result<String, Problem> {
    if is_valid_id(token) { Ok(token.to_owned()) } else { Err(Problem::BadId(token.to_owned())) }
}

fn optional_id(args: &[String]) -> Result<Option<String>, Problem> {
    args.first().map(|t| id(t)).transpose()
}

fn required_id(args: &[String]) -> Result<String, Problem> {
    id(args.first().ok_or(Problem::Usage)?)
}

/// A `key=value` key: what template input keys look like.
fn is_input_key(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn build(verb: Verb, args: Vec<String>) -> Result<Command, Problem> {
    Ok(match verb {
        Verb::Run => build_run(args)?,
        Verb::Status => Command::Status { job: optional_id(&args)? },
        Verb::Jobs => Command::Jobs,
        Verb::History => Command::History { job: optional_id(&args)? },
        Verb::Stop => {
            let jobs = args
                .iter()
                .flat_map(|t| t.split(','))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(id)
                .collect::<Result<_, _>>()?;
            Command::Stop { jobs }
        }
        Verb::Trace => Command::Trace { id: required_id(&args)? },
        Verb::Approvals => Command::Approvals,
        Verb::Approve => Command::Approve { id: required_id(&args)? },
        Verb::Reject => {
            let id = required_id(&args)?;
            let reason = args[1..].iter().filter(|t| !t.is_empty()).cloned().collect::<Vec<_>>().join(" ");
            Command::Reject { id, reason: (!reason.is_empty()).then_some(reason) }
        }
        Verb::Schedules => Command::Schedules,
        Verb::Schedule => {
            let [action, target, ..] = args.as_slice() else { return Err(Problem::Usage) };
            let action = match action.to_lowercase().as_str() {
                "run" => ScheduleAction::Run,
                "enable" | "on" => ScheduleAction::Enable,
                "disable" | "off" => ScheduleAction::Disable,
                _ => return Err(Problem::Usage),
            };
            Command::Schedule { action, id: id(target)? }
        }
        Verb::Templates => Command::Templates,
        Verb::Workers => Command::Workers,
        Verb::Help => Command::Help,
    })
}

fn build_run(args: Vec<String>) -> Result<Command, Problem> {
    let mut require_approval = false;
    let mut template = None;
    let mut inputs = BTreeMap::new();
    let mut words = Vec::new();
    for token in args {
        if APPROVAL_FLAGS.contains(&token.as_str()) {
            require_approval = true;
            continue;
        }
        if template.is_none() {
            template = Some(id(&token)?);
            continue;
        }
        if let Some((key, value)) = token.split_once('=')
            && is_input_key(key.trim())
        {
            inputs.insert(key.trim().to_owned(), value.trim().to_owned());
            continue;
        }
        if !token.is_empty() {
            words.push(token);
        }
    }
    let template = template.ok_or(Problem::Usage)?;
    let free_text = (!words.is_empty()).then(|| words.join(" "));
    Ok(Command::Run { template, inputs, free_text, require_approval })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::reply;
    use crate::command::test_support::run;

    /// `/verb args` → the command, as the core's registry hands it over.
    fn parse(text: &str) -> Option<Command> {
        let (name, args) = text.split_once(' ').unwrap_or((text, ""));
        Some(parse_args(Verb::from_name(name.strip_prefix('/')?)?, args))
    }

    fn class_of(cmd: &Command) -> CommandClass {
        cmd.verb().default_class()
    }

    #[test]
    fn run_with_quoted_inputs_and_free_text() {
        assert_eq!(
            parse(r#"/run my-template prompt="hello world" steps=20"#),
            Some(run("my-template", &[("prompt", "hello world"), ("steps", "20")], None, false))
        );
        assert_eq!(
            parse("/run sdxl a red fox seed=-1 --approval at dusk"),
            Some(run("sdxl", &[("seed", "-1")], Some("a red fox at dusk"), true))
        );
        assert_eq!(parse("/run -a sdxl"), Some(run("sdxl", &[], None, true)));
        assert_eq!(parse("/run sdxl --require-approval"), Some(run("sdxl", &[], None, true)));
    }

    #[test]
    fn quoting_follows_posix_shlex_with_double_quotes_only() {
        assert_eq!(parse("/run t it's fine"), Some(run("t", &[], Some("it's fine"), false)));
        assert_eq!(parse(r#"/run t k="a \"b\" c""#), Some(run("t", &[("k", r#"a "b" c"#)], None, false)));
        assert_eq!(parse(r#"/run t k="C:\dir""#), Some(run("t", &[("k", r"C:\dir")], None, false)));
        assert_eq!(parse(r"/run t a\ b"), Some(run("t", &[], Some("a b"), false)));
        assert_eq!(parse("/run t k=“smart quotes”"), Some(run("t", &[("k", "smart quotes")], None, false)));
        assert_eq!(parse(r#"/run t "" x"#), Some(run("t", &[], Some("x"), false)));
        for bad in [r#"/run t k="open"#, r"/run t trailing\", r#"/reject apr_1 "why"#] {
            let cmd = parse(bad).expect("a command");
            assert!(matches!(cmd, Command::Invalid { problem: Problem::UnbalancedQuotes, .. }), "{bad}");
            assert_eq!(reply::invalid(cmd.verb(), &Problem::UnbalancedQuotes), reply::PARSE_FAILED);
        }
    }

    #[test]
    fn unicode_text_survives() {
        assert_eq!(
            parse("/run sdxl 猫が 寝ている　🐱 style=水彩"),
            Some(run("sdxl", &[("style", "水彩")], Some("猫が 寝ている 🐱"), false))
        );
        // A token whose "key" is not an input name stays free text.
        assert_eq!(parse("/run t 1+1=2 ok"), Some(run("t", &[], Some("1+1=2 ok"), false)));
    }

    #[test]
    fn run_without_template_is_usage() {
        for text in ["/run", "/run   ", "/run --approval"] {
            let cmd = parse(text).expect("a command");
            assert_eq!(cmd, Command::Invalid { verb: Verb::Run, problem: Problem::Usage }, "{text}");
            assert_eq!(
                reply::invalid(Verb::Run, &Problem::Usage),
                "Usage: /run <template_id> [prompt text] [key=value ...] [--approval]"
            );
        }
        let cmd = parse("/run ../etc x").expect("a command");
        assert_eq!(cmd, Command::Invalid { verb: Verb::Run, problem: Problem::BadId("../etc".to_owned()) });
    }

    #[test]
    fn names_and_aliases_are_found_in_any_case() {
        assert_eq!(Verb::from_name("/HELP"), Some(Verb::Help));
        assert_eq!(Verb::from_name("start"), Some(Verb::Help));
        assert_eq!(Verb::from_name("/Queue"), Some(Verb::Jobs));
        assert_eq!(Verb::from_name("interrupt"), Some(Verb::Stop));
        for name in ["", "/", "//run", "new", "/unknown"] {
            assert_eq!(Verb::from_name(name), None, "{name:?}");
        }
        for verb in Verb::ALL {
            assert_eq!(Verb::from_name(verb.name()), Some(verb));
        }
    }

    #[test]
    fn every_command_parses() {
        let cases: Vec<(&str, Command)> = vec![
            ("/status", Command::Status { job: None }),
            ("/jobs", Command::Jobs),
            ("/queue", Command::Jobs),
            ("/history", Command::History { job: None }),
            ("/history p1", Command::History { job: Some("p1".to_owned()) }),
            ("/stop", Command::Stop { jobs: vec![] }),
            ("/cancel p-1,p-2 p-3", Command::Stop { jobs: vec!["p-1".into(), "p-2".into(), "p-3".into()] }),
            ("/interrupt p-9", Command::Stop { jobs: vec!["p-9".into()] }),
            ("/trace abc", Command::Trace { id: "abc".into() }),
            ("/approvals", Command::Approvals),
            ("/approve apr_1", Command::Approve { id: "apr_1".into() }),
            ("/reject apr_1", Command::Reject { id: "apr_1".into(), reason: None }),
            (
                r#"/reject apr_1 too   "many cats""#,
                Command::Reject { id: "apr_1".into(), reason: Some("too many cats".into()) },
            ),
            ("/schedules", Command::Schedules),
            ("/schedule run sched_1", Command::Schedule { action: ScheduleAction::Run, id: "sched_1".into() }),
            ("/schedule ENABLE s", Command::Schedule { action: ScheduleAction::Enable, id: "s".into() }),
            ("/schedule disable s", Command::Schedule { action: ScheduleAction::Disable, id: "s".into() }),
            ("/templates", Command::Templates),
            ("/workers", Command::Workers),
            ("/help me", Command::Help),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Some(want), "{text}");
        }
    }

    #[test]
    fn missing_or_bad_arguments_give_usage() {
        let cases = [
            ("/approve", Verb::Approve, Problem::Usage, "Usage: /approve <id>"),
            ("/reject", Verb::Reject, Problem::Usage, "Usage: /reject <id> [reason]"),
            ("/trace", Verb::Trace, Problem::Usage, "Usage: /trace <id>"),
            ("/schedule run", Verb::Schedule, Problem::Usage, "Usage: /schedule <run|enable|disable> <id>"),
            ("/schedule toggle s", Verb::Schedule, Problem::Usage, "Usage: /schedule <run|enable|disable> <id>"),
        ];
        for (text, verb, problem, usage) in cases {
            let cmd = parse(text).expect("a command");
            assert_eq!(cmd, Command::Invalid { verb, problem: problem.clone() }, "{text}");
            assert_eq!(reply::invalid(verb, &problem), usage);
        }
        let cmd = parse("/stop p/1").expect("a command");
        let Command::Invalid { verb, problem } = cmd else { panic!("not invalid: {cmd:?}") };
        assert_eq!(problem, Problem::BadId("p/1".into()));
        assert!(reply::invalid(verb, &problem).starts_with("[Error] Invalid id \"p/1\""));
        let long = format!("/approve {}", "a".repeat(129));
        assert!(matches!(parse(&long), Some(Command::Invalid { problem: Problem::BadId(_), .. })));
    }

    #[test]
    fn default_classes_match_the_connector() {
        assert_eq!(class_of(&Command::Help), CommandClass::Public);
        assert_eq!(class_of(&Command::Status { job: None }), CommandClass::Public);
        assert_eq!(class_of(&Command::History { job: None }), CommandClass::Public);
        assert_eq!(class_of(&Command::Templates), CommandClass::Public);
        assert_eq!(class_of(&run("t", &[], None, false)), CommandClass::Run);
        for cmd in [
            Command::Stop { jobs: vec![] },
            Command::Approvals,
            Command::Approve { id: "a".into() },
            Command::Reject { id: "a".into(), reason: None },
            Command::Schedules,
            Command::Schedule { action: ScheduleAction::Run, id: "s".into() },
            Command::Trace { id: "t".into() },
            Command::Jobs,
            Command::Workers,
        ] {
            assert_eq!(class_of(&cmd), CommandClass::Admin, "{cmd:?}");
        }
        assert_eq!(class_of(&Command::Invalid { verb: Verb::Approve, problem: Problem::Usage }), CommandClass::Admin);
    }
}

/// Property tests: whatever a chat user types, the command parser answers without panicking and
/// what it keeps is bounded by what was typed.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Text that looks like commands: a verb, arguments, `key=value` pairs, quotes, mentions.
    fn commandish() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            prop::sample::select(vec![
                "/run",
                "/status",
                "/jobs",
                "/approvals",
                "/approve",
                "/reject",
                "/cancel",
                "/templates",
                "/help",
                "/run@Claw_Bot",
                "@Claw_Bot",
                "@other",
                "seed=1",
                "k=",
                "=v",
                "\"",
                "'",
                "--",
                "\u{202e}",
            ])
            .prop_map(str::to_owned),
            ".{0,12}",
        ];
        prop::collection::vec(word, 0..8).prop_map(|w| w.join(" "))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics_the_parser(text in ".{0,200}") {
            for verb in Verb::ALL {
                let _ = parse_args(verb, &text);
            }
        }

        #[test]
        fn parsed_commands_are_bounded_by_their_input(text in commandish()) {
            for cmd in Verb::ALL.map(|verb| parse_args(verb, &text)) {
                let kept = format!("{cmd:?}").len();
                prop_assert!(kept <= 4 * text.len() + 256, "{kept} bytes kept from {} typed: {cmd:?}", text.len());
            }
        }
    }
}
