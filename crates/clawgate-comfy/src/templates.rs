//! Workflow templates: a directory of ComfyUI API-format workflows with `"{{key}}"` placeholders
//! and a `manifest.json`, laid out like ComfyUI-OpenClaw's `data/templates` so its templates load
//! unchanged.
//!
//! ```json
//! {
//!   "version": 1,
//!   "templates": {
//!     "invert": {
//!       "path": "invert.json",
//!       "description": "…",
//!       "allowed_inputs": ["width", "color"],
//!       "defaults": {"width": 256, "color": 16711680},
//!       "inputs": {"width": {"type": "integer", "min": 1, "max": 4096}}
//!     }
//!   }
//! }
//! ```
//!
//! `path` (default `<id>.json`), `allowed_inputs`, `defaults` and `description` are OpenClaw's
//! fields; `inputs` is ours and optional: per key a `type` (`integer`, `number`, `string`,
//! `boolean`) and optional `min`, `max` (numbers), `enum` (allowed values) and `maxLength`
//! (strings, in characters). A key without a declared type takes the JSON type of its default, or
//! is a string. A `<id>.json` without a manifest entry is runnable too, as in OpenClaw; its inputs
//! are the placeholders it contains.
//!
//! Unlike OpenClaw, inputs are checked against `allowed_inputs` and typed before rendering, so a
//! bad value is refused here with a message naming the key rather than by ComfyUI's validator, and
//! a `"{{seed}}"` rendered from chat text `seed=5` is the number `5`. A placeholder inside a longer
//! string (`"out/{{name}}"`) is substituted textually; rendering works on parsed JSON, so the
//! result is always correctly escaped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Number, Value};

/// The file that describes the templates in a directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Input keys that receive free text, in order of preference, when a template has several inputs.
/// The connector's intent (its README: "lookup via `allowed_inputs`"); its code never found the
/// metadata and always used `positive_prompt`.
pub const PROMPT_KEYS: [&str; 5] = ["positive_prompt", "prompt", "text", "positive", "caption"];

/// Longest template id or input key accepted; ids travel in chat commands and URLs.
const MAX_ID_LEN: usize = 128;

/// Longest value echoed back in an error message.
const MAX_ECHO_CHARS: usize = 64;

/// Why a template directory could not be loaded or a template could not be rendered.
///
/// Load errors (`Io`, `Json`, `Manifest`, `Workflow`) are for the operator and name the file;
/// render errors are for the chat user and never contain paths.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A file or the directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not valid JSON.
    #[error("{} is not valid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// The manifest has a bad entry.
    #[error("{}: `{key}`: {reason}", file.display())]
    Manifest {
        /// The manifest file.
        file: PathBuf,
        /// Dotted path of the offending key, e.g. `templates.invert.inputs.width.max`.
        key: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// A workflow file is not an API-format graph, or cannot be filled from its manifest entry.
    #[error("{}: {reason}", file.display())]
    Workflow {
        /// The workflow file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No template has this id.
    #[error("unknown template `{id}`; available: {}", join_or_none(available))]
    UnknownTemplate {
        /// The id asked for.
        id: String,
        /// The ids that exist.
        available: Vec<String>,
    },
    /// An input key the template does not accept.
    #[error("template `{template}` has no input `{key}`; allowed: {}", join_or_none(allowed))]
    UnknownInput {
        /// The template.
        template: String,
        /// The key given.
        key: String,
        /// The keys it accepts.
        allowed: Vec<String>,
    },
    /// A value of the wrong type or out of bounds.
    #[error("bad value for `{key}` in template `{template}`: expected {expected}, got \"{value}\"")]
    InvalidValue {
        /// The template.
        template: String,
        /// The input key.
        key: String,
        /// The value given, shortened.
        value: String,
        /// What is allowed, e.g. "an integer from 1 to 4096".
        expected: String,
    },
    /// Placeholders with neither a value nor a default.
    #[error("template `{template}` needs {}", keys.iter().map(|k| format!("{k}=…")).collect::<Vec<_>>().join(" "))]
    MissingInputs {
        /// The template.
        template: String,
        /// The missing keys, sorted.
        keys: Vec<String>,
    },
    /// Free text was given but the template has no input to put it in.
    #[error("template `{template}` takes no free text; use key=value with: {}", join_or_none(allowed))]
    NoPromptInput {
        /// The template.
        template: String,
        /// The keys it accepts.
        allowed: Vec<String>,
    },
    /// Free text and an explicit `key=value` both set the prompt input.
    #[error("both free text and `{key}=…` set `{key}` for template `{template}`; use one of them")]
    FreeTextConflict {
        /// The template.
        template: String,
        /// The prompt key.
        key: String,
    },
}

fn join_or_none(items: &[String]) -> String {
    if items.is_empty() { "(none)".to_owned() } else { items.join(", ") }
}

/// The JSON type an input is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    /// A whole number (`i64`), e.g. ComfyUI `INT`.
    Integer,
    /// A finite number, e.g. ComfyUI `FLOAT`.
    Number,
    /// Text, passed through unchanged.
    String,
    /// `true`/`false` (chat text also accepts `yes`/`no`, `on`/`off`, `1`/`0`).
    Boolean,
}

impl InputType {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "integer" => Some(Self::Integer),
            "number" => Some(Self::Number),
            "string" => Some(Self::String),
            "boolean" => Some(Self::Boolean),
            _ => None,
        }
    }

    /// The type of a JSON value, for inputs without a declared type.
    fn of(value: &Value) -> Self {
        match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Self::Integer,
            Value::Number(_) => Self::Number,
            Value::Bool(_) => Self::Boolean,
            _ => Self::String,
        }
    }
}

/// The declared type and bounds of one input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// The JSON type values are converted to.
    pub kind: InputType,
    /// Smallest allowed number (integer and number inputs).
    pub min: Option<f64>,
    /// Largest allowed number (integer and number inputs).
    pub max: Option<f64>,
    /// The only allowed values, when set.
    pub allowed_values: Option<Vec<Value>>,
    /// Longest allowed string, in characters (string inputs).
    pub max_length: Option<usize>,
    /// Shown to users listing templates.
    pub description: Option<String>,
}

impl InputSpec {
    fn untyped(kind: InputType) -> Self {
        Self { kind, min: None, max: None, allowed_values: None, max_length: None, description: None }
    }

    /// What a valid value looks like, for error messages.
    fn expected(&self) -> String {
        if let Some(values) = &self.allowed_values {
            let shown: Vec<String> = values.iter().map(value_text).collect();
            return format!("one of: {}", shown.join(", "));
        }
        let base = match self.kind {
            InputType::Integer => "an integer",
            InputType::Number => "a number",
            InputType::String => "text",
            InputType::Boolean => "true or false",
        };
        match (self.min, self.max, self.max_length) {
            (Some(lo), Some(hi), _) => format!("{base} from {} to {}", num_text(lo), num_text(hi)),
            (Some(lo), None, _) => format!("{base} of at least {}", num_text(lo)),
            (None, Some(hi), _) => format!("{base} of at most {}", num_text(hi)),
            (None, None, Some(len)) => format!("{base} of at most {len} characters"),
            (None, None, None) => base.to_owned(),
        }
    }

    /// Converts chat text to this input's JSON type. `None` when it does not parse.
    fn convert(&self, raw: &str) -> Option<Value> {
        match self.kind {
            InputType::String => Some(Value::String(raw.to_owned())),
            InputType::Integer => raw.trim().parse::<i64>().ok().map(Value::from),
            InputType::Number => {
                raw.trim().parse::<f64>().ok().filter(|f| f.is_finite()).and_then(Number::from_f64).map(Value::Number)
            }
            InputType::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Some(Value::Bool(true)),
                "false" | "no" | "off" | "0" => Some(Value::Bool(false)),
                _ => None,
            },
        }
    }

    /// Whether a typed value satisfies the type and bounds.
    fn accepts(&self, value: &Value) -> bool {
        let type_ok = match self.kind {
            InputType::Integer => value.as_i64().is_some(),
            InputType::Number => value.is_number(),
            InputType::String => value.is_string(),
            InputType::Boolean => value.is_boolean(),
        };
        if !type_ok {
            return false;
        }
        if let Some(n) = value.as_f64()
            && (self.min.is_some_and(|lo| n < lo) || self.max.is_some_and(|hi| n > hi))
        {
            return false;
        }
        if let (Some(s), Some(len)) = (value.as_str(), self.max_length)
            && s.chars().count() > len
        {
            return false;
        }
        match &self.allowed_values {
            Some(values) => values.iter().any(|v| same_value(v, value)),
            None => true,
        }
    }
}

/// Equality that treats `5` and `5.0` as the same number.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn num_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { n.to_string() }
}

/// A value as it appears inside a longer string, and in messages.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= MAX_ECHO_CHARS {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX_ECHO_CHARS).collect();
        out.push('…');
        out
    }
}

/// A template id or input key: letters, digits, `_`, `-`, `.`; the form chat commands can type.
fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// What users see when listing templates; the shape of OpenClaw's `GET /openclaw/templates` items
/// plus `description`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TemplateInfo {
    /// The template id, used in `/run <id>`.
    pub id: String,
    /// Free-form description from the manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The input keys a caller may set.
    pub allowed_inputs: Vec<String>,
    /// Values used for keys the caller does not set.
    pub defaults: BTreeMap<String, Value>,
}

/// One loaded template.
#[derive(Debug, Clone)]
pub struct Template {
    id: String,
    description: Option<String>,
    /// The workflow file, kept for error messages.
    file: PathBuf,
    allowed_inputs: Vec<String>,
    defaults: BTreeMap<String, Value>,
    /// Declared specs, plus one inferred from the default for every allowed key without one, so
    /// rendering never has to guess.
    specs: BTreeMap<String, InputSpec>,
    workflow: Value,
    /// Every `{{key}}` in the workflow.
    placeholders: BTreeSet<String>,
}

impl Template {
    /// The template id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The manifest description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The input keys a caller may set, in manifest order.
    pub fn allowed_inputs(&self) -> &[String] {
        &self.allowed_inputs
    }

    /// Values used for keys the caller does not set.
    pub fn defaults(&self) -> &BTreeMap<String, Value> {
        &self.defaults
    }

    /// The type and bounds of an allowed input.
    pub fn input_spec(&self, key: &str) -> Option<&InputSpec> {
        self.specs.get(key)
    }

    /// The unrendered workflow.
    pub fn workflow(&self) -> &Value {
        &self.workflow
    }

    /// The input that receives free text: the only allowed input, else the first of
    /// [`PROMPT_KEYS`] that is allowed. `None` when the template takes no free text.
    pub fn prompt_key(&self) -> Option<&str> {
        if let [only] = self.allowed_inputs.as_slice() {
            return Some(only);
        }
        PROMPT_KEYS.iter().copied().find(|k| self.allowed_inputs.iter().any(|a| a == k))
    }

    /// The listing entry for this template.
    pub fn info(&self) -> TemplateInfo {
        TemplateInfo {
            id: self.id.clone(),
            description: self.description.clone(),
            allowed_inputs: self.allowed_inputs.clone(),
            defaults: self.defaults.clone(),
        }
    }

    /// Checks that the workflow can be filled from the manifest entry: every placeholder is
    /// either settable or has a default.
    fn check_fillable(&self) -> Result<(), TemplateError> {
        let unfillable: Vec<&String> = self
            .placeholders
            .iter()
            .filter(|p| !self.defaults.contains_key(*p) && !self.allowed_inputs.contains(p))
            .collect();
        if unfillable.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = unfillable.iter().map(|p| format!("{{{{{p}}}}}")).collect();
        Err(TemplateError::Workflow {
            file: self.file.clone(),
            reason: format!(
                "placeholder {} is neither in allowed_inputs nor in defaults of template `{}`",
                names.join(", "),
                self.id
            ),
        })
    }
}

/// The result of rendering a template.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The API-format workflow, ready for `POST /prompt`.
    pub workflow: Value,
    /// The effective typed inputs: defaults overlaid with the caller's values.
    pub inputs: BTreeMap<String, Value>,
}

/// A template (or the manifest) that could not be loaded, by name, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    /// The template id, or the file name when there is no id (`manifest.json`).
    pub name: String,
    /// Why it was not loaded (names the file).
    pub error: String,
}

/// A loaded template directory.
///
/// Class closed: *one bad file takes every template down*. Each template loads on its own; a
/// bad one is kept as a [`TemplateProblem`] (shown by `/templates`, `comfy.templates.list` and
/// the log) and the others stay usable.
#[derive(Debug, Clone, Default)]
pub struct TemplateLibrary {
    templates: BTreeMap<String, Template>,
    problems: Vec<TemplateProblem>,
}

impl TemplateLibrary {
    /// Loads `dir/manifest.json` (optional) and the workflows it names, plus any other `*.json`
    /// in `dir` that is a valid workflow. Each template loads on its own: a bad manifest entry,
    /// a workflow that is not an API-format graph (such as ComfyUI-OpenClaw's shipped
    /// `sdxl_basic.json`, wrapped in `"key_idx"`), or an unlisted `*.json` that is not a workflow
    /// becomes a [`TemplateProblem`] and the rest load. A manifest that cannot be read at all is
    /// a problem named `manifest.json`; the unlisted files still load.
    ///
    /// # Errors
    /// Only when the directory itself cannot be read.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, TemplateError> {
        let dir = dir.as_ref();
        let manifest_path = dir.join(MANIFEST_FILE);
        let mut templates = BTreeMap::new();
        let mut problems = Vec::new();
        let mut listed_files = BTreeSet::new();

        let manifest = match std::fs::read_to_string(&manifest_path) {
            Ok(text) => serde_json::from_str::<Value>(&text)
                .map_err(|source| TemplateError::Json { path: manifest_path.clone(), source })
                .and_then(|manifest| parse_manifest(dir, &manifest_path, &manifest))
                .map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(TemplateError::Io { path: manifest_path.clone(), source }),
        };
        match manifest {
            Ok(entries) => {
                for (id, file, result) in entries.into_iter().flatten() {
                    listed_files.insert(file);
                    match result {
                        Ok(template) => {
                            templates.insert(id, template);
                        }
                        Err(e) => problems.push(TemplateProblem { name: id, error: e.to_string() }),
                    }
                }
            }
            Err(e) => problems.push(TemplateProblem { name: MANIFEST_FILE.to_owned(), error: e.to_string() }),
        }

        let entries = std::fs::read_dir(dir).map_err(|source| TemplateError::Io { path: dir.to_owned(), source })?;
        let mut unlisted = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| TemplateError::Io { path: dir.to_owned(), source })?;
            let path = entry.path();
            let is_json = path.extension().is_some_and(|e| e == "json");
            if !is_json || path == manifest_path || listed_files.contains(&path) || !path.is_file() {
                continue;
            }
            unlisted.push(path);
        }
        unlisted.sort();
        for path in unlisted {
            let Some(id) = path.file_stem().and_then(|s| s.to_str()).filter(|s| is_valid_name(s)) else {
                continue;
            };
            if templates.contains_key(id) || problems.iter().any(|p| p.name == id) {
                continue;
            }
            match discovered_template(id, &path) {
                Ok(template) => {
                    templates.insert(id.to_owned(), template);
                }
                Err(e) => problems.push(TemplateProblem { name: id.to_owned(), error: e.to_string() }),
            }
        }
        Ok(Self { templates, problems })
    }

    /// The templates (or the manifest) that could not be loaded, in load order.
    pub fn problems(&self) -> &[TemplateProblem] {
        &self.problems
    }

    /// Every template, sorted by id.
    pub fn list(&self) -> Vec<TemplateInfo> {
        self.templates.values().map(Template::info).collect()
    }

    /// One template by id.
    pub fn get(&self, id: &str) -> Option<&Template> {
        self.templates.get(id)
    }

    /// Renders a template with chat inputs (`key=value` pairs, values as typed) and optional free
    /// text, which goes to the template's [`Template::prompt_key`].
    pub fn render(
        &self,
        id: &str,
        inputs: &BTreeMap<String, String>,
        free_text: Option<&str>,
    ) -> Result<Rendered, TemplateError> {
        let template = self.templates.get(id).ok_or_else(|| TemplateError::UnknownTemplate {
            id: id.to_owned(),
            available: self.templates.keys().cloned().collect(),
        })?;
        let mut typed: BTreeMap<String, Value> = BTreeMap::new();
        for (key, raw) in inputs {
            typed.insert(key.clone(), typed_input(template, key, raw)?);
        }
        if let Some(text) = free_text.map(str::trim).filter(|t| !t.is_empty()) {
            let key = template.prompt_key().ok_or_else(|| TemplateError::NoPromptInput {
                template: template.id.clone(),
                allowed: template.allowed_inputs.clone(),
            })?;
            if typed.contains_key(key) {
                return Err(TemplateError::FreeTextConflict { template: template.id.clone(), key: key.to_owned() });
            }
            let value = typed_input(template, key, text)?;
            typed.insert(key.to_owned(), value);
        }

        let mut values = template.defaults.clone();
        values.extend(typed);
        let missing: Vec<String> = template.placeholders.iter().filter(|p| !values.contains_key(*p)).cloned().collect();
        if !missing.is_empty() {
            return Err(TemplateError::MissingInputs { template: template.id.clone(), keys: missing });
        }
        let mut workflow = template.workflow.clone();
        substitute(&mut workflow, &values);
        Ok(Rendered { workflow, inputs: values })
    }
}

/// Validates and types one chat input of `template`.
fn typed_input(template: &Template, key: &str, raw: &str) -> Result<Value, TemplateError> {
    let spec = template.specs.get(key).ok_or_else(|| TemplateError::UnknownInput {
        template: template.id.clone(),
        key: key.to_owned(),
        allowed: template.allowed_inputs.clone(),
    })?;
    spec.convert(raw).filter(|v| spec.accepts(v)).ok_or_else(|| TemplateError::InvalidValue {
        template: template.id.clone(),
        key: key.to_owned(),
        value: shorten(raw),
        expected: spec.expected(),
    })
}

/// The placeholder a whole string is, e.g. `"{{seed}}"` or `"{{ seed }}"`.
fn whole_placeholder(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    is_valid_name(inner).then_some(inner)
}

/// Splits a string into literal text and placeholders. Braces that do not enclose a valid name
/// stay literal.
fn segments(s: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if is_valid_name(name) {
            if start > 0 {
                out.push(Segment::Text(&rest[..start]));
            }
            out.push(Segment::Key(name));
            rest = &after[end + 2..];
        } else {
            // Not a placeholder: keep "{{" literally and look for the next one after it.
            out.push(Segment::Text(&rest[..start + 2]));
            rest = after;
        }
    }
    if !rest.is_empty() {
        out.push(Segment::Text(rest));
    }
    out
}

enum Segment<'a> {
    Text(&'a str),
    Key(&'a str),
}

fn collect_placeholders(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            for seg in segments(s) {
                if let Segment::Key(k) = seg {
                    out.insert(k.to_owned());
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_placeholders(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_placeholders(v, out)),
        _ => {}
    }
}

/// Replaces placeholders in string values. All placeholders are known to have values.
fn substitute(value: &mut Value, values: &BTreeMap<String, Value>) {
    match value {
        Value::String(s) => {
            if let Some(v) = whole_placeholder(s).and_then(|k| values.get(k)) {
                *value = v.clone();
                return;
            }
            if !s.contains("{{") {
                return;
            }
            let mut out = String::with_capacity(s.len());
            for seg in segments(s) {
                match seg {
                    Segment::Text(t) => out.push_str(t),
                    Segment::Key(k) => match values.get(k) {
                        Some(v) => out.push_str(&value_text(v)),
                        None => {
                            out.push_str("{{");
                            out.push_str(k);
                            out.push_str("}}");
                        }
                    },
                }
            }
            *s = out;
        }
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, values)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, values)),
        _ => {}
    }
}

/// Reads and checks an API-format workflow: a non-empty object of nodes, each an object with a
/// string `class_type` and, if present, an object `inputs`.
fn read_workflow(path: &Path) -> Result<Value, TemplateError> {
    let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io { path: path.to_owned(), source })?;
    let workflow: Value =
        serde_json::from_str(&text).map_err(|source| TemplateError::Json { path: path.to_owned(), source })?;
    let bad = |reason: String| TemplateError::Workflow { file: path.to_owned(), reason };
    let nodes = workflow
        .as_object()
        .ok_or_else(|| bad("not an API-format workflow: the top level must be an object of nodes".to_owned()))?;
    if nodes.is_empty() {
        return Err(bad("the workflow has no nodes".to_owned()));
    }
    for (node_id, node) in nodes {
        let node = node.as_object().ok_or_else(|| bad(format!("node `{node_id}` is not an object")))?;
        if !node.get("class_type").is_some_and(Value::is_string) {
            return Err(bad(format!("node `{node_id}` has no string `class_type` (is this an API-format export?)")));
        }
        if node.get("inputs").is_some_and(|i| !i.is_object()) {
            return Err(bad(format!("node `{node_id}`: `inputs` must be an object")));
        }
    }
    Ok(workflow)
}

/// A `<id>.json` without a manifest entry: every placeholder is an allowed string input.
fn discovered_template(id: &str, path: &Path) -> Result<Template, TemplateError> {
    let workflow = read_workflow(path)?;
    let mut placeholders = BTreeSet::new();
    collect_placeholders(&workflow, &mut placeholders);
    let allowed_inputs: Vec<String> = placeholders.iter().cloned().collect();
    let specs = allowed_inputs.iter().map(|k| (k.clone(), InputSpec::untyped(InputType::String))).collect();
    Ok(Template {
        id: id.to_owned(),
        description: None,
        file: path.to_owned(),
        allowed_inputs,
        defaults: BTreeMap::new(),
        specs,
        workflow,
        placeholders,
    })
}

/// One manifest entry: its id, the workflow file it names, and the template or why it is bad.
type ManifestEntry = (String, PathBuf, Result<Template, TemplateError>);

fn parse_manifest(dir: &Path, file: &Path, manifest: &Value) -> Result<Vec<ManifestEntry>, TemplateError> {
    let err = |key: &str, reason: &str| TemplateError::Manifest {
        file: file.to_owned(),
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let top = manifest.as_object().ok_or_else(|| err("(top level)", "must be an object"))?;
    if let Some(version) = top.get("version")
        && version.as_u64() != Some(1)
    {
        return Err(err("version", "only version 1 is supported"));
    }
    let entries = match top.get("templates") {
        Some(Value::Object(entries)) => entries,
        Some(_) => return Err(err("templates", "must be an object mapping template ids to entries")),
        None => return Err(err("templates", "is missing")),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (id, entry) in entries {
        let rel = entry.get("path").and_then(Value::as_str).map_or_else(|| format!("{id}.json"), str::to_owned);
        out.push((id.clone(), dir.join(rel), parse_entry(dir, file, id, entry)));
    }
    Ok(out)
}

fn parse_entry(dir: &Path, file: &Path, id: &str, entry: &Value) -> Result<Template, TemplateError> {
    let prefix = format!("templates.{id}");
    let err = |key: &str, reason: String| TemplateError::Manifest {
        file: file.to_owned(),
        key: if key.is_empty() { prefix.clone() } else { format!("{prefix}.{key}") },
        reason,
    };
    if !is_valid_name(id) {
        return Err(err("", format!("template ids use letters, digits, `_`, `-` and `.` (at most {MAX_ID_LEN})")));
    }
    let entry = entry.as_object().ok_or_else(|| err("", "must be an object".to_owned()))?;

    let rel = match entry.get("path") {
        None => format!("{id}.json"),
        Some(Value::String(p)) => p.clone(),
        Some(_) => return Err(err("path", "must be a string".to_owned())),
    };
    let rel_path = Path::new(&rel);
    let inside = !rel.is_empty() && rel_path.components().all(|c| matches!(c, Component::Normal(_)));
    if !inside {
        return Err(err("path", format!("`{rel}` must be a relative path inside the templates directory")));
    }
    let description = match entry.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(err("description", "must be a string".to_owned())),
    };
    let defaults: BTreeMap<String, Value> = match entry.get("defaults") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(_) => return Err(err("defaults", "must be an object".to_owned())),
    };
    let mut declared = BTreeMap::new();
    match entry.get("inputs") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, spec) in map {
                let spec = parse_spec(spec).map_err(|(field, reason)| {
                    let at = if field.is_empty() { format!("inputs.{key}") } else { format!("inputs.{key}.{field}") };
                    err(&at, reason)
                })?;
                declared.insert(key.clone(), spec);
            }
        }
        Some(_) => return Err(err("inputs", "must be an object mapping input keys to {type, …}".to_owned())),
    }

    let workflow = read_workflow(&dir.join(rel_path))?;
    let mut placeholders = BTreeSet::new();
    collect_placeholders(&workflow, &mut placeholders);

    let allowed_inputs: Vec<String> = match entry.get("allowed_inputs") {
        Some(Value::Array(items)) => {
            let mut keys = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(k) if is_valid_name(k) => {
                        if !keys.iter().any(|have: &String| have == k) {
                            keys.push(k.to_owned());
                        }
                    }
                    _ => {
                        return Err(err(
                            &format!("allowed_inputs[{i}]"),
                            "input keys are strings of letters, digits, `_`, `-` and `.`".to_owned(),
                        ));
                    }
                }
            }
            keys
        }
        Some(_) => return Err(err("allowed_inputs", "must be an array of input keys".to_owned())),
        // OpenClaw does not require the list; fall back to what the entry describes.
        None if !declared.is_empty() => declared.keys().cloned().collect(),
        None => placeholders.iter().cloned().collect(),
    };
    if let Some(key) = declared.keys().find(|k| !allowed_inputs.contains(k)) {
        return Err(err(&format!("inputs.{key}"), "declares a key that is not in allowed_inputs".to_owned()));
    }

    let mut specs = BTreeMap::new();
    for key in &allowed_inputs {
        let spec = match declared.remove(key) {
            Some(spec) => spec,
            None => InputSpec::untyped(defaults.get(key).map_or(InputType::String, InputType::of)),
        };
        specs.insert(key.clone(), spec);
    }
    for (key, value) in &defaults {
        if let Some(spec) = specs.get(key)
            && !spec.accepts(value)
        {
            return Err(err(&format!("defaults.{key}"), format!("{value} is not {}", spec.expected())));
        }
    }

    let template = Template {
        id: id.to_owned(),
        description,
        file: dir.join(rel_path),
        allowed_inputs,
        defaults,
        specs,
        workflow,
        placeholders,
    };
    template.check_fillable()?;
    Ok(template)
}

/// Parses one `inputs.<key>` spec. Errors are `(field, reason)`.
fn parse_spec(spec: &Value) -> Result<InputSpec, (&'static str, String)> {
    let map: &Map<String, Value> =
        spec.as_object().ok_or(("", "must be an object like {\"type\": \"integer\"}".to_owned()))?;
    if let Some(unknown) =
        map.keys().find(|k| !matches!(k.as_str(), "type" | "min" | "max" | "enum" | "maxLength" | "description"))
    {
        return Err(("", format!("unknown field `{unknown}`; known: type, min, max, enum, maxLength, description")));
    }
    let kind = map
        .get("type")
        .and_then(Value::as_str)
        .and_then(InputType::parse)
        .ok_or(("type", "must be one of \"integer\", \"number\", \"string\", \"boolean\"".to_owned()))?;
    let numeric = matches!(kind, InputType::Integer | InputType::Number);
    let bound = |field: &'static str| -> Result<Option<f64>, (&'static str, String)> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) if numeric => v.as_f64().map(Some).ok_or((field, "must be a number".to_owned())),
            Some(_) => Err((field, "applies only to integer and number inputs".to_owned())),
        }
    };
    let min = bound("min")?;
    let max = bound("max")?;
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        return Err(("max", "must not be less than min".to_owned()));
    }
    let max_length = match map.get("maxLength") {
        None | Some(Value::Null) => None,
        Some(v) if kind == InputType::String => Some(
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(("maxLength", "must be a non-negative integer".to_owned()))?,
        ),
        Some(_) => return Err(("maxLength", "applies only to string inputs".to_owned())),
    };
    let description = match map.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(("description", "must be a string".to_owned())),
    };
    let mut spec = InputSpec { kind, min, max, allowed_values: None, max_length, description };
    match map.get("enum") {
        None | Some(Value::Null) => {}
        Some(Value::Array(values)) if !values.is_empty() => {
            // Bounds first, then the list, so each listed value is checked against them.
            if values.iter().any(|v| !spec.accepts(v)) {
                return Err(("enum", format!("every value must be {}", spec.expected())));
            }
            spec.allowed_values = Some(values.clone());
        }
        Some(_) => return Err(("enum", "must be a non-empty array of allowed values".to_owned())),
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, name: &str, value: &Value) {
        std::fs::write(dir.join(name), serde_json::to_string_pretty(value).expect("serialize")).expect("write");
    }

    fn inputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn shipped() -> TemplateLibrary {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
        TemplateLibrary::load(dir).expect("the shipped templates load")
    }

    /// A library with a prompt-style template, like OpenClaw's `sdxl_basic` but in API format.
    fn prompt_library() -> (tempfile::TempDir, TemplateLibrary) {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "txt.json",
            &json!({
                "1": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{positive_prompt}}"}},
                "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{negative_prompt}}"}},
                "3": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "cfg": "{{cfg}}"}},
                "4": {"class_type": "SaveImage", "inputs": {"filename_prefix": "run/{{tag}}_{{seed}}"}}
            }),
        );
        write(
            dir.path(),
            MANIFEST_FILE,
            &json!({"version": 1, "templates": {"txt": {
                "path": "txt.json",
                "allowed_inputs": ["negative_prompt", "positive_prompt", "seed", "cfg", "tag"],
                "defaults": {"seed": 1234, "negative_prompt": "", "cfg": 7.5, "tag": "x"},
                "inputs": {"seed": {"type": "integer", "min": 0}, "tag": {"type": "string", "maxLength": 8}}
            }}}),
        );
        let lib = TemplateLibrary::load(dir.path()).expect("load");
        (dir, lib)
    }

    fn manifest_error(manifest: Value) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "t.json", &json!({"1": {"class_type": "X", "inputs": {"a": "{{a}}"}}}));
        write(dir.path(), MANIFEST_FILE, &manifest);
        let lib = TemplateLibrary::load(dir.path()).expect("a bad manifest is a problem, not a failure");
        assert_eq!(lib.problems().len(), 1, "{:?}", lib.problems());
        lib.problems()[0].error.clone()
    }

    #[test]
    fn shipped_invert_template_loads_with_typed_inputs() {
        let lib = shipped();
        let info = lib.list().into_iter().find(|t| t.id == "invert").expect("invert is listed");
        assert_eq!(info.allowed_inputs, ["width", "height", "color", "batch", "filename_prefix"]);
        assert_eq!(info.defaults["color"], json!(16711680));
        assert!(info.description.is_some());
        let t = lib.get("invert").expect("get");
        assert_eq!(t.input_spec("width").map(|s| s.kind), Some(InputType::Integer));
        assert_eq!(t.prompt_key(), None);
    }

    #[test]
    fn shipped_invert_renders_the_weight_free_workflow_with_numbers() {
        let lib = shipped();
        let r = lib
            .render("invert", &inputs(&[("width", "64"), ("height", "32"), ("color", "255")]), None)
            .expect("render");
        assert_eq!(
            r.workflow,
            json!({
                "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 32, "batch_size": 1, "color": 255}},
                "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "clawgate"}}
            })
        );
        assert_eq!(r.inputs["width"], json!(64));
        assert_eq!(r.inputs["filename_prefix"], json!("clawgate"));
    }

    #[test]
    fn out_of_bounds_integer_names_key_and_range() {
        let err = shipped().render("invert", &inputs(&[("width", "99999")]), None).expect_err("too wide");
        assert!(matches!(&err, TemplateError::InvalidValue { key, .. } if key == "width"));
        assert_eq!(
            err.to_string(),
            "bad value for `width` in template `invert`: expected an integer from 1 to 4096, got \"99999\""
        );
    }

    #[test]
    fn non_numeric_integer_is_refused() {
        let err = shipped().render("invert", &inputs(&[("color", "red")]), None).expect_err("not a number");
        assert!(err.to_string().contains("expected an integer from 0 to 16777215"), "{err}");
        let err = shipped().render("invert", &inputs(&[("color", "1.5")]), None).expect_err("not an integer");
        assert!(matches!(err, TemplateError::InvalidValue { .. }));
    }

    #[test]
    fn unknown_input_lists_allowed_keys() {
        let err = shipped().render("invert", &inputs(&[("steps", "20")]), None).expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "template `invert` has no input `steps`; allowed: width, height, color, batch, filename_prefix"
        );
    }

    #[test]
    fn unknown_template_lists_available() {
        let err = shipped().render("nope", &BTreeMap::new(), None).expect_err("unknown");
        assert!(
            matches!(&err, TemplateError::UnknownTemplate { id, available } if id == "nope" && available.contains(&"invert".to_owned()))
        );
    }

    #[test]
    fn free_text_without_prompt_input_is_refused() {
        let err = shipped().render("invert", &BTreeMap::new(), Some("a red square")).expect_err("no prompt key");
        assert!(matches!(err, TemplateError::NoPromptInput { .. }));
        // Blank free text is no free text.
        assert!(shipped().render("invert", &BTreeMap::new(), Some("   ")).is_ok());
    }

    #[test]
    fn free_text_goes_to_positive_prompt_before_other_prompt_keys() {
        let (_dir, lib) = prompt_library();
        assert_eq!(lib.get("txt").and_then(Template::prompt_key), Some("positive_prompt"));
        let r = lib.render("txt", &inputs(&[("seed", "-0")]), Some("a \"quoted\" cat\n")).expect("render");
        assert_eq!(r.workflow["1"]["inputs"]["text"], json!("a \"quoted\" cat"));
        assert_eq!(r.workflow["2"]["inputs"]["text"], json!(""));
        assert_eq!(r.workflow["3"]["inputs"]["seed"], json!(0));
    }

    #[test]
    fn free_text_conflicting_with_explicit_prompt_is_refused() {
        let (_dir, lib) = prompt_library();
        let err = lib.render("txt", &inputs(&[("positive_prompt", "x")]), Some("y")).expect_err("conflict");
        assert!(matches!(err, TemplateError::FreeTextConflict { key, .. } if key == "positive_prompt"));
    }

    #[test]
    fn prompt_key_follows_preference_and_single_input_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "a.json",
            &json!({"1": {"class_type": "X", "inputs": {"t": "{{text}}", "c": "{{caption}}"}}}),
        );
        write(dir.path(), "b.json", &json!({"1": {"class_type": "X", "inputs": {"d": "{{description}}"}}}));
        write(dir.path(), "c.json", &json!({"1": {"class_type": "X", "inputs": {"w": "{{w}}", "h": "{{h}}"}}}));
        write(
            dir.path(),
            MANIFEST_FILE,
            &json!({"version": 1, "templates": {
                "a": {"allowed_inputs": ["caption", "text"]},
                "b": {"allowed_inputs": ["description"]},
                "c": {"allowed_inputs": ["w", "h"]}
            }}),
        );
        let lib = TemplateLibrary::load(dir.path()).expect("load");
        assert_eq!(lib.get("a").and_then(Template::prompt_key), Some("text"));
        assert_eq!(lib.get("b").and_then(Template::prompt_key), Some("description"));
        assert_eq!(lib.get("c").and_then(Template::prompt_key), None);
        let r = lib.render("b", &BTreeMap::new(), Some("héllo wörld ✓")).expect("render");
        assert_eq!(r.workflow["1"]["inputs"]["d"], json!("héllo wörld ✓"));
    }

    #[test]
    fn embedded_placeholders_are_substituted_textually() {
        let (_dir, lib) = prompt_library();
        let r = lib.render("txt", &inputs(&[("tag", "a\"b\\c"), ("seed", "42")]), Some("cat")).expect("render");
        assert_eq!(r.workflow["4"]["inputs"]["filename_prefix"], json!("run/a\"b\\c_42"));
        // The rendered JSON round-trips, so quotes and backslashes were escaped.
        let text = serde_json::to_string(&r.workflow).expect("serialize");
        assert_eq!(serde_json::from_str::<Value>(&text).expect("reparse"), r.workflow);
    }

    #[test]
    fn undeclared_input_takes_the_type_of_its_default() {
        let (_dir, lib) = prompt_library();
        let r = lib.render("txt", &inputs(&[("cfg", "4")]), Some("cat")).expect("render");
        assert_eq!(r.workflow["3"]["inputs"]["cfg"].as_f64(), Some(4.0));
        let err = lib.render("txt", &inputs(&[("cfg", "high")]), None).expect_err("not a number");
        assert!(err.to_string().contains("expected a number"), "{err}");
    }

    #[test]
    fn max_length_counts_characters() {
        let (_dir, lib) = prompt_library();
        assert!(lib.render("txt", &inputs(&[("tag", "ääääääää")]), Some("cat")).is_ok());
        let err = lib.render("txt", &inputs(&[("tag", "ääääääääx")]), None).expect_err("too long");
        assert!(err.to_string().contains("text of at most 8 characters"), "{err}");
    }

    #[test]
    fn negative_seed_below_min_is_refused() {
        let (_dir, lib) = prompt_library();
        let err = lib.render("txt", &inputs(&[("seed", "-1")]), None).expect_err("below min");
        assert!(err.to_string().contains("an integer of at least 0"), "{err}");
    }

    #[test]
    fn missing_required_placeholder_is_named() {
        let (_dir, lib) = prompt_library();
        let err = lib.render("txt", &BTreeMap::new(), None).expect_err("positive_prompt missing");
        assert!(matches!(&err, TemplateError::MissingInputs { keys, .. } if keys == &["positive_prompt"]));
        assert_eq!(err.to_string(), "template `txt` needs positive_prompt=…");
    }

    #[test]
    fn enum_and_boolean_inputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "e.json",
            &json!({"1": {"class_type": "X", "inputs": {"s": "{{sampler}}", "f": "{{fast}}"}}}),
        );
        write(
            dir.path(),
            MANIFEST_FILE,
            &json!({"templates": {"e": {
                "allowed_inputs": ["sampler", "fast"],
                "defaults": {"sampler": "euler", "fast": false},
                "inputs": {"sampler": {"type": "string", "enum": ["euler", "dpmpp_2m"]}, "fast": {"type": "boolean"}}
            }}}),
        );
        let lib = TemplateLibrary::load(dir.path()).expect("load");
        let r = lib.render("e", &inputs(&[("fast", "Yes"), ("sampler", "dpmpp_2m")]), None).expect("render");
        assert_eq!(r.workflow["1"]["inputs"], json!({"s": "dpmpp_2m", "f": true}));
        let err = lib.render("e", &inputs(&[("sampler", "ddim")]), None).expect_err("not listed");
        assert!(err.to_string().contains("expected one of: euler, dpmpp_2m"), "{err}");
        let err = lib.render("e", &inputs(&[("fast", "maybe")]), None).expect_err("not a bool");
        assert!(err.to_string().contains("expected true or false"), "{err}");
    }

    #[test]
    fn unlisted_workflow_is_runnable_and_junk_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "solo.json",
            &json!({"1": {"class_type": "X", "inputs": {"p": "{{prompt}}", "n": "{{ n }}"}}}),
        );
        write(dir.path(), "manifest.orig.json", &json!({"version": 1, "templates": {}}));
        std::fs::write(dir.path().join("broken.json"), "{").expect("write");
        let lib = TemplateLibrary::load(dir.path()).expect("load without manifest");
        let ids: Vec<String> = lib.list().into_iter().map(|t| t.id).collect();
        assert_eq!(ids, ["solo"]);
        assert_eq!(lib.get("solo").map(Template::allowed_inputs), Some(&["n".to_owned(), "prompt".to_owned()][..]));
        let r = lib.render("solo", &inputs(&[("n", "3")]), Some("hi")).expect("render");
        // Undeclared inputs without defaults stay strings, as in OpenClaw.
        assert_eq!(r.workflow["1"]["inputs"], json!({"p": "hi", "n": "3"}));
    }

    #[test]
    fn non_placeholder_braces_stay_literal() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "b.json",
            &json!({"1": {"class_type": "X", "inputs": {"t": "{{not a key}} {{k}} {{", "u": "}}{{"}}}),
        );
        let lib = TemplateLibrary::load(dir.path()).expect("load");
        let r = lib.render("b", &inputs(&[("k", "v")]), None).expect("render");
        assert_eq!(r.workflow["1"]["inputs"], json!({"t": "{{not a key}} v {{", "u": "}}{{"}));
    }

    #[test]
    fn manifest_errors_name_the_key() {
        let cases = [
            (json!([]), "`(top level)`: must be an object"),
            (json!({"version": 2, "templates": {}}), "`version`: only version 1"),
            (json!({"version": 1}), "`templates`: is missing"),
            (json!({"templates": {"t": {"path": "../t.json"}}}), "`templates.t.path`"),
            (json!({"templates": {"t": {"path": "/etc/t.json"}}}), "`templates.t.path`"),
            (json!({"templates": {"t": {"allowed_inputs": "a"}}}), "`templates.t.allowed_inputs`"),
            (json!({"templates": {"t": {"allowed_inputs": ["a", 3]}}}), "`templates.t.allowed_inputs[1]`"),
            (
                json!({"templates": {"t": {"defaults": {"a": "x"}, "inputs": {"a": {"type": "integer"}}}}}),
                "`templates.t.defaults.a`",
            ),
            (json!({"templates": {"t": {"inputs": {"a": {"type": "float"}}}}}), "`templates.t.inputs.a.type`"),
            (
                json!({"templates": {"t": {"inputs": {"a": {"type": "string", "max": 3}}}}}),
                "`templates.t.inputs.a.max`",
            ),
            (
                json!({"templates": {"t": {"inputs": {"a": {"type": "integer", "min": 5, "max": 1}}}}}),
                "must not be less than min",
            ),
            (
                json!({"templates": {"t": {"inputs": {"a": {"type": "string", "max_length": 3}}}}}),
                "unknown field `max_length`",
            ),
            (
                json!({"templates": {"t": {"inputs": {"a": {"type": "integer", "enum": ["x"]}}}}}),
                "`templates.t.inputs.a.enum`",
            ),
            (
                json!({"templates": {"t": {"allowed_inputs": ["a"], "inputs": {"b": {"type": "string"}}}}}),
                "`templates.t.inputs.b`",
            ),
            (json!({"templates": {"bad id": {}}}), "`templates.bad id`"),
        ];
        for (manifest, want) in cases {
            let got = manifest_error(manifest.clone());
            assert!(got.contains(want), "manifest {manifest}: got {got:?}, want {want:?}");
            assert!(got.contains("manifest.json"), "error names the file: {got}");
        }
    }

    /// The only problem of loading `dir`, which must still load.
    fn only_problem(dir: &Path) -> TemplateProblem {
        let lib = TemplateLibrary::load(dir).expect("bad templates are problems, not failures");
        assert_eq!(lib.problems().len(), 1, "{:?}", lib.problems());
        lib.problems()[0].clone()
    }

    #[test]
    fn workflow_errors_name_the_template_and_file_and_keep_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        // ComfyUI-OpenClaw's shipped sdxl_basic.json wraps its graph in "key_idx" (contracts/comfy-real.md §5).
        write(dir.path(), "wrapped.json", &json!({"key_idx": {"1": {"class_type": "X", "inputs": {}}}}));
        write(dir.path(), "good.json", &json!({"1": {"class_type": "X", "inputs": {"a": "{{a}}"}}}));
        write(dir.path(), MANIFEST_FILE, &json!({"templates": {"wrapped": {}, "good": {"allowed_inputs": ["a"]}}}));
        let lib = TemplateLibrary::load(dir.path()).expect("load");
        assert!(lib.get("good").is_some(), "the good template survives the bad one");
        assert_eq!(lib.problems().len(), 1, "{:?}", lib.problems());
        let p = &lib.problems()[0];
        assert_eq!(p.name, "wrapped");
        assert!(
            p.error.contains("wrapped.json") && p.error.contains("node `key_idx` has no string `class_type`"),
            "{p:?}"
        );
        std::fs::remove_file(dir.path().join("good.json")).expect("rm");
        // Unlisted, wrapped.json is still reported, by its id.
        write(dir.path(), MANIFEST_FILE, &json!({"templates": {}}));
        assert_eq!(only_problem(dir.path()).name, "wrapped");
        std::fs::remove_file(dir.path().join("wrapped.json")).expect("rm");

        write(dir.path(), MANIFEST_FILE, &json!({"templates": {"gone": {}}}));
        let p = only_problem(dir.path());
        assert!(p.name == "gone" && p.error.contains("gone.json"), "{p:?}");

        write(dir.path(), "w.json", &json!({"1": {"class_type": "X", "inputs": {"a": "{{secret}}"}}}));
        write(dir.path(), MANIFEST_FILE, &json!({"templates": {"w": {"allowed_inputs": ["b"]}}}));
        assert!(only_problem(dir.path()).error.contains("{{secret}}"));

        for bad in [json!([]), json!({}), json!({"1": 5}), json!({"1": {"class_type": "X", "inputs": []}})] {
            write(dir.path(), "w.json", &bad);
            write(dir.path(), MANIFEST_FILE, &json!({"templates": {"w": {}}}));
            assert_eq!(only_problem(dir.path()).name, "w", "{bad}");
        }
        std::fs::write(dir.path().join(MANIFEST_FILE), "{\"templates\":").expect("write");
        write(dir.path(), "w.json", &json!({"1": {"class_type": "X", "inputs": {}}}));
        let lib = TemplateLibrary::load(dir.path()).expect("load");
        assert_eq!(lib.problems()[0].name, MANIFEST_FILE);
        assert!(lib.problems()[0].error.contains("not valid JSON"), "{:?}", lib.problems());
        assert!(lib.get("w").is_some(), "unlisted workflows still load beside a broken manifest");
    }

    #[test]
    fn missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = TemplateLibrary::load(dir.path().join("nope")).expect_err("no dir");
        assert!(matches!(err, TemplateError::Io { .. }));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn library() -> &'static TemplateLibrary {
            static LIB: std::sync::OnceLock<(tempfile::TempDir, TemplateLibrary)> = std::sync::OnceLock::new();
            &LIB.get_or_init(prompt_library).1
        }

        fn input_key() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec!["positive_prompt", "negative_prompt", "seed", "cfg", "tag", "nope"])
                    .prop_map(str::to_owned),
                "[a-z_]{1,12}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

            /// Arbitrary chat inputs never panic the renderer, and a rendered workflow is the
            /// template plus at most the inputs' size (each placeholder is filled once per use).
            #[test]
            fn rendering_never_panics_and_stays_bounded(
                id in prop::sample::select(vec!["txt", "other"]),
                inputs in prop::collection::btree_map(input_key(), ".{0,64}", 0..6),
                free in prop::option::of(".{0,64}"),
            ) {
                let lib = library();
                if let Ok(r) = lib.render(id, &inputs, free.as_deref()) {
                    let template = lib.get(id).expect("rendered from a known template").workflow().to_string().len();
                    let typed: usize = inputs.values().map(String::len).sum::<usize>() + free.map_or(0, |f| f.len());
                    let out = r.workflow.to_string().len();
                    // Six placeholders in the template: each may take the largest input, escaped.
                    prop_assert!(out <= template + 6 * (6 * typed + 32), "{out} bytes from {template} + {typed}");
                }
            }
        }
    }
}
