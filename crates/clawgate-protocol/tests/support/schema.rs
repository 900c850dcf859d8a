//! Shared by the typed-wire tests (`typed_wire*.rs`): the vendored OpenClaw schema (2026.9.6
//! definitions merged over 2026.9.1), validators for its definitions, and name helpers.
//!
//! The schema is the copy vendored in the testkit (`clawgate-testkit/data/`), read from the
//! workspace: this crate cannot depend on the testkit, and one vendored copy is enough.
#![allow(dead_code)]

use std::sync::OnceLock;

use jsonschema::{Draft, Registry, Validator};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

const SCHEMA_JSON: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../clawgate-testkit/data/openclaw-protocol.schema.json"));
const ROOT_URI: &str = "https://clawgate.invalid/protocol/openclaw-protocol.json";

pub struct Schema {
    pub registry: Registry<'static>,
    pub names: Vec<String>,
}

/// The 2026.9.6 definitions merged over the 2026.9.1 ones (as the testkit's validator does).
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let doc: Value = serde_json::from_str(&rust_patterns(SCHEMA_JSON)).expect("vendored schema parses");
        let mut merged: Map<String, Value> = doc["definitions"].as_object().expect("definitions").clone();
        for (name, def) in doc["x-openclaw-2026.9.6-definitions"].as_object().expect("9.6 definitions") {
            merged.insert(name.clone(), def.clone());
        }
        let names = merged.keys().cloned().collect();
        let root = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$id": ROOT_URI,
            "definitions": Value::Object(merged),
        });
        let registry = Registry::new().add(ROOT_URI, root).and_then(|b| b.prepare()).expect("schema registers");
        Schema { registry, names }
    })
}

pub fn has_definition(name: &str) -> bool {
    schema().names.iter().any(|n| n == name)
}

pub fn validator(name: &str) -> Validator {
    jsonschema::options()
        .with_draft(Draft::Draft7)
        .with_registry(&schema().registry)
        .build(&json!({"$ref": format!("{ROOT_URI}#/definitions/{name}")}))
        .unwrap_or_else(|e| panic!("compiling {name}: {e}"))
}

pub fn schema_errors(name: &str, instance: &Value) -> Vec<String> {
    validator(name).iter_errors(instance).map(|e| format!("at {:?}: {e}", e.instance_path().as_str())).collect()
}

/// `device.pair.approve` → `DevicePairApprove`.
pub fn pascal(method: &str) -> String {
    method
        .split(['.', '-'])
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// Decode `v` as a `P`, with serde's message on failure.
pub fn decodes<P: DeserializeOwned>(v: &Value) -> Result<P, String> {
    serde_json::from_value(v.clone()).map_err(|e| e.to_string())
}

/// Decode a params example into its type (the value is dropped).
pub type Decode = fn(&Value) -> Result<(), String>;

/// A [`Decode`] for `P`.
pub fn decoder<P: DeserializeOwned>(v: &Value) -> Result<(), String> {
    decodes::<P>(v).map(|_| ())
}

/// Every `(method, example name, serialised result)` matches upstream's `<Method>Result` when it
/// has one; a method without one must be listed in `without_definition` (so adding a type for a
/// method upstream defines cannot skip the check), and a listed one must not have one.
pub fn check_results(examples: &[(&str, &str, Value)], without_definition: &[&str]) {
    for (method, example, value) in examples {
        let name = format!("{}Result", pascal(method));
        if has_definition(&name) {
            assert!(
                !without_definition.contains(method),
                "{method} has {name} upstream: take it off RESULTS_WITHOUT_DEFINITION"
            );
            let errors = schema_errors(&name, value);
            assert!(errors.is_empty(), "{example} does not match {name}: {errors:?}\n{value:#}");
        } else {
            assert!(without_definition.contains(method), "{method}: no {name} upstream and not listed");
        }
    }
}

/// Every `(method, schema-valid example, decode, closed)`: the example is valid against
/// upstream's `<Method>Params` when there is one and decodes; with an extra field it is refused
/// by both the schema and the type when `closed`, and still decodes otherwise.
pub fn check_params(examples: &[(&str, Value, Decode, bool)]) {
    for (method, example, decode, closed) in examples {
        let name = format!("{}Params", pascal(method));
        if has_definition(&name) {
            let errors = schema_errors(&name, example);
            assert!(errors.is_empty(), "{method}: example is not a valid {name}: {errors:?}");
        }
        decode(example).unwrap_or_else(|e| panic!("{method}: {example} does not decode: {e}"));
        let mut extra = example.clone();
        extra["unexpected"] = json!(1);
        if *closed {
            assert!(has_definition(&name), "{method}: closed without an upstream {name}");
            assert!(!schema_errors(&name, &extra).is_empty(), "{method}: the schema takes {extra}");
            assert!(decode(&extra).is_err(), "{method}: the type takes {extra}");
        } else {
            decode(&extra).unwrap_or_else(|e| panic!("{method}: {extra} should be ignored: {e}"));
        }
    }
}

/// Upstream's approval-id pattern (75 places, e.g. `ApprovalGetResult`) spells "any well-formed
/// UTF-16" with lone-surrogate classes (`[\\uD800-\\uDFFF]`) that no Rust regex engine
/// compiles; a Rust string is always well-formed, so `[\\s\\S]` means the same here.
fn rust_patterns(schema: &str) -> String {
    const JS_ONLY: &str = r#""^(?!\\.{1,2}$)(?:[^\\uD800-\\uDFFF]|[\\uD800-\\uDBFF][\\uDC00-\\uDFFF])+$""#;
    schema.replace(JS_ONLY, r#""^(?!\\.{1,2}$)[\\s\\S]+$""#)
}
