//! `commands.list`, `models.list`, `question.list`, `taskSuggestions.list`: params and results.
//!
//! All four have always ignored their params (the TUI sends `{}` or filters clawgate does not
//! apply), so they take [`AnyParams`].

use serde::Serialize;

use super::AnyParams;

/// `commands.list` takes filters clawgate does not apply; any params are ignored.
pub type CommandsListParams = AnyParams;

/// Where a command comes from (schema `source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandSource {
    /// Built into the gateway.
    Native,
}

/// Where a command may be used (schema `scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandScope {
    /// Typed as text and offered natively.
    Both,
}

/// A command's group in the client's menu (schema `category`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandCategory {
    /// Acts on the session.
    Session,
}

/// One chat command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandEntry {
    /// Name without the slash.
    pub name: String,
    /// The native command's name.
    pub native_name: String,
    /// How it is typed (`/name`).
    pub text_aliases: Vec<String>,
    /// What it does.
    pub description: String,
    /// Menu group.
    pub category: CommandCategory,
    /// Where it comes from.
    pub source: CommandSource,
    /// Where it may be used.
    pub scope: CommandScope,
    /// Whether it takes arguments.
    pub accepts_args: bool,
}

/// `commands.list` → `{commands}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandsListResult {
    /// The commands clawgate understands.
    pub commands: Vec<CommandEntry>,
}

/// `models.list` takes filters clawgate does not apply; any params are ignored.
pub type ModelsListParams = AnyParams;

/// One model a client may pick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntry {
    /// Model id at its provider.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Provider id (`models.providers.<id>`).
    pub provider: String,
    /// Context window in tokens, when configured (at least 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
}

/// `models.list` → `{models}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelsListResult {
    /// Configured models, then the agents' models not listed among them.
    pub models: Vec<ModelEntry>,
}

/// `question.list` takes no params and ignores any.
pub type QuestionListParams = AnyParams;

/// A question an agent asks an operator. clawgate's agents ask none yet, so no value of this
/// type exists and the list is always empty; typing it is the step that adds questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PendingQuestion {}

/// `question.list` → `{questions: []}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuestionListResult {
    /// Questions waiting for an answer (none).
    pub questions: Vec<PendingQuestion>,
}

/// `taskSuggestions.list` takes filters clawgate does not apply; any params are ignored.
pub type TaskSuggestionsListParams = AnyParams;

/// A suggested task. clawgate suggests none yet, so no value of this type exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TaskSuggestion {}

/// `taskSuggestions.list` → `{suggestions: []}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskSuggestionsListResult {
    /// Suggestions (none).
    pub suggestions: Vec<TaskSuggestion>,
}
