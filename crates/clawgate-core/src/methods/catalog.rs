//! `commands.list`, `models.list`, `question.list`, `taskSuggestions.list`.

use clawgate_protocol::methods::catalog::*;

use crate::agent::AgentService;
use crate::error::CoreError;

/// `commands.list` → the chat commands clawgate understands.
pub async fn commands_list(_: CommandsListParams) -> Result<CommandsListResult, CoreError> {
    let cmd = |name: &str, description: &str| CommandEntry {
        name: name.to_owned(),
        native_name: name.to_owned(),
        text_aliases: vec![format!("/{name}")],
        description: description.to_owned(),
        category: CommandCategory::Session,
        source: CommandSource::Native,
        scope: CommandScope::Both,
        accepts_args: false,
    };
    Ok(CommandsListResult {
        commands: vec![
            cmd("new", "Start a new session (the old transcript is kept)."),
            cmd("reset", "Reset the current session."),
        ],
    })
}

/// `models.list` → every model named in `models.providers.*.models[]`, plus the agents' models.
pub async fn models_list(agents: &AgentService, _: ModelsListParams) -> Result<ModelsListResult, CoreError> {
    let registry = agents.registry();
    let mut models = Vec::new();
    for id in registry.ids() {
        let Some(cfg) = registry.config(id) else { continue };
        for m in &cfg.models {
            models.push(ModelEntry {
                id: m.id.clone(),
                name: m.name.clone(),
                provider: id.to_owned(),
                context_window: m.context_window.map(|w| u64::from(w).max(1)),
            });
        }
    }
    let configured = agents.agents();
    for a in &configured.agents {
        let full = configured.model_for(a);
        if let Some((provider, model)) = full.split_once('/')
            && !models.iter().any(|m| m.provider == provider && m.id == model)
        {
            models.push(ModelEntry {
                id: model.to_owned(),
                name: model.to_owned(),
                provider: provider.to_owned(),
                context_window: None,
            });
        }
    }
    Ok(ModelsListResult { models })
}

/// `question.list` → `{questions: []}`: clawgate's agents ask no questions yet.
pub async fn question_list(_: QuestionListParams) -> Result<QuestionListResult, CoreError> {
    Ok(QuestionListResult { questions: Vec::new() })
}

/// `taskSuggestions.list` → `{suggestions: []}`: clawgate suggests no tasks yet.
pub async fn task_suggestions_list(_: TaskSuggestionsListParams) -> Result<TaskSuggestionsListResult, CoreError> {
    Ok(TaskSuggestionsListResult { suggestions: Vec::new() })
}
