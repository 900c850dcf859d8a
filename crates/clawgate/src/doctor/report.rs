//! What a check found, and the two ways the doctor shows it: a grouped list for people and
//! `--json` for scripts. Checks only produce [`Outcome`]s; nothing here does I/O but printing.

use std::fmt::Write as _;

use serde::Serialize;

/// Where a check belongs in the report. The order here is the order of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    Config,
    State,
    Network,
    Tls,
    Providers,
    Channels,
    Comfy,
}

impl Section {
    pub const ALL: [Section; 7] = [
        Section::Config,
        Section::State,
        Section::Network,
        Section::Tls,
        Section::Providers,
        Section::Channels,
        Section::Comfy,
    ];

    fn title(self) -> &'static str {
        match self {
            Section::Config => "config",
            Section::State => "state",
            Section::Network => "network",
            Section::Tls => "tls",
            Section::Providers => "providers",
            Section::Channels => "channels",
            Section::Comfy => "comfy",
        }
    }
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skipped,
}

/// A check's result without its name: one line of fact and, on warn and fail, what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub status: Status,
    pub message: String,
    /// What the operator should do (always set on warn and fail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// What `--fix` changed to get here (the check then reads ok).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
}

impl Finding {
    pub fn ok(message: impl Into<String>) -> Self {
        Self { status: Status::Ok, message: message.into(), fix: None, fixed: None }
    }
    pub fn warn(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { status: Status::Warn, message: message.into(), fix: Some(fix.into()), fixed: None }
    }
    pub fn fail(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { status: Status::Fail, message: message.into(), fix: Some(fix.into()), fixed: None }
    }
    pub fn skipped(message: impl Into<String>) -> Self {
        Self { status: Status::Skipped, message: message.into(), fix: None, fixed: None }
    }
    /// An ok that `--fix` brought about by doing `what`.
    pub fn fixed(message: impl Into<String>, what: impl Into<String>) -> Self {
        Self { status: Status::Ok, message: message.into(), fix: None, fixed: Some(what.into()) }
    }
}

/// One check's result: its stable id (`channels.telegram.default`), its section and finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub id: String,
    pub section: Section,
    #[serde(flatten)]
    pub finding: Finding,
}

impl Outcome {
    pub fn new(id: impl Into<String>, section: Section, finding: Finding) -> Self {
        Self { id: id.into(), section, finding }
    }
}

/// How many checks ended each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
    pub skipped: usize,
    /// Fixes `--fix` made.
    pub fixed: usize,
}

impl Summary {
    pub fn of(outcomes: &[Outcome]) -> Self {
        let mut s = Self::default();
        for o in outcomes {
            match o.finding.status {
                Status::Ok => s.ok += 1,
                Status::Warn => s.warn += 1,
                Status::Fail => s.fail += 1,
                Status::Skipped => s.skipped += 1,
            }
            if o.finding.fixed.is_some() {
                s.fixed += 1;
            }
        }
        s
    }

    /// The process exit code: 1 when anything failed.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.fail > 0)
    }

    fn line(&self) -> String {
        let mut line = format!(
            "{} ok, {} warning{}, {} failed, {} skipped",
            self.ok,
            self.warn,
            if self.warn == 1 { "" } else { "s" },
            self.fail,
            self.skipped
        );
        if self.fixed > 0 {
            let _ = write!(line, "; {} fixed", self.fixed);
        }
        line
    }
}

/// The report for people: a header, the checks grouped by section in [`Section::ALL`] order
/// (each group in the order its checks were listed), and a summary line.
pub fn render_text(header: &str, outcomes: &[Outcome]) -> String {
    let mut out = String::from(header);
    for section in Section::ALL {
        let mut group = outcomes.iter().filter(|o| o.section == section).peekable();
        if group.peek().is_none() {
            continue;
        }
        let _ = writeln!(out, "{}", section.title());
        for o in group {
            let f = &o.finding;
            let label = match f.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
                Status::Skipped => "skip",
            };
            let _ = writeln!(out, "  {label}  {}", f.message);
            if let Some(fix) = &f.fix {
                let _ = writeln!(out, "        fix: {fix}");
            }
            if let Some(fixed) = &f.fixed {
                let _ = writeln!(out, "        fixed: {fixed}");
            }
        }
    }
    let summary = Summary::of(outcomes);
    if summary.fail == 0 && summary.warn == 0 {
        let _ = writeln!(out, "all checks passed ({})", summary.line());
    } else {
        let _ = writeln!(out, "summary: {}", summary.line());
    }
    out
}

/// The report for scripts: `{ok, summary, checks: [{id, section, status, message, fix?, fixed?}]}`.
pub fn render_json(outcomes: &[Outcome]) -> serde_json::Value {
    let summary = Summary::of(outcomes);
    serde_json::json!({
        "ok": summary.fail == 0,
        "summary": summary,
        "checks": outcomes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Outcome> {
        vec![
            Outcome::new("channels.telegram.default", Section::Channels, Finding::ok("telegram/default: bot @x")),
            Outcome::new("config.file", Section::Config, Finding::ok("config file is valid")),
            Outcome::new("state.dir", Section::State, Finding::fail("state dir is open", "chmod 700 /s")),
            Outcome::new("providers.x", Section::Providers, Finding::skipped("skipped (--offline)")),
            Outcome::new("state.token", Section::State, Finding::fixed("token file is private", "chmod 600 /t")),
        ]
    }

    #[test]
    fn text_groups_by_section_in_a_fixed_order_and_ends_with_a_summary() {
        let text = render_text("clawgate doctor\n", &sample());
        let config = text.find("config\n").unwrap();
        let state = text.find("state\n").unwrap();
        let providers = text.find("providers\n").unwrap();
        let channels = text.find("channels\n").unwrap();
        assert!(config < state && state < providers && providers < channels, "{text}");
        assert!(text.contains("  FAIL  state dir is open\n        fix: chmod 700 /s\n"), "{text}");
        assert!(text.contains("        fixed: chmod 600 /t\n"), "{text}");
        assert!(text.ends_with("summary: 3 ok, 0 warnings, 1 failed, 1 skipped; 1 fixed\n"), "{text}");
        assert!(!text.contains("tls\n"), "empty sections are left out: {text}");
    }

    #[test]
    fn json_lists_every_check_and_whether_all_passed() {
        let v = render_json(&sample());
        assert_eq!(v["ok"], false);
        assert_eq!(v["summary"]["fail"], 1);
        assert_eq!(v["checks"].as_array().unwrap().len(), 5);
        assert_eq!(v["checks"][2]["status"], "fail");
        assert_eq!(v["checks"][2]["fix"], "chmod 700 /s");
        assert_eq!(v["checks"][4]["fixed"], "chmod 600 /t");
        assert!(v["checks"][0].get("fix").is_none());
    }

    #[test]
    fn exit_code_is_one_only_when_something_failed() {
        assert_eq!(Summary::of(&sample()).exit_code(), 1);
        let warn_only = [Outcome::new("a", Section::Config, Finding::warn("w", "do x"))];
        assert_eq!(Summary::of(&warn_only).exit_code(), 0);
    }
}
