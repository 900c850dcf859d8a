//! A small closed-object validator that reports errors in the style of the upstream gateway
//! (which uses AJV), e.g. `must have required property 'id'; at /type: must be equal to constant`.
//!
//! Why not a JSON Schema crate: the upstream error *text* is part of the contract that clients
//! print, and a generic validator words its errors differently. The shapes validated here are
//! small (frames, connect params), so a table-driven checker is clearer than adapting one.

use serde_json::Value;

/// The type of a field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    /// Any string with a minimum and optional maximum length (in chars).
    Str { min: usize, max: Option<usize> },
    /// An integer `>= min`.
    Int { min: i64 },
    /// Anything.
    Any,
    /// An array of strings (each at least `min` long).
    StrArray { min: usize },
    /// One of a closed set of strings.
    Enum(&'static [&'static str]),
    /// A string constant.
    Const(&'static str),
    /// An object whose values are all booleans.
    BoolMap,
    /// A closed object.
    Object(&'static [Field]),
    /// An object that may carry any property.
    OpenObject,
}

/// A named property of a closed object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
}

/// Shorthand constructors so schemas read like tables.
pub(crate) const fn req(name: &'static str, ty: Ty) -> Field {
    Field { name, ty, required: true }
}
pub(crate) const fn opt(name: &'static str, ty: Ty) -> Field {
    Field { name, ty, required: false }
}
pub(crate) const STR1: Ty = Ty::Str { min: 1, max: None };
pub(crate) const STR: Ty = Ty::Str { min: 0, max: None };

/// Validate `value` against a closed object schema; returns AJV-style messages (empty = valid).
pub(crate) fn validate_object(value: &Value, fields: &'static [Field]) -> Vec<String> {
    let mut errors = Vec::new();
    check(value, Ty::Object(fields), "", &mut errors);
    errors
}

fn at(path: &str) -> String {
    if path.is_empty() { "at root".to_owned() } else { format!("at {path}") }
}

fn prefixed(path: &str, msg: &str) -> String {
    if path.is_empty() { msg.to_owned() } else { format!("at {path}: {msg}") }
}

fn check(value: &Value, ty: Ty, path: &str, errors: &mut Vec<String>) {
    match ty {
        Ty::Any => {}
        Ty::Str { min, max } => match value.as_str() {
            None => errors.push(prefixed(path, "must be string")),
            Some(s) => {
                let n = s.chars().count();
                if n < min {
                    errors.push(prefixed(path, &format!("must NOT have fewer than {min} characters")));
                }
                if let Some(max) = max
                    && n > max
                {
                    errors.push(prefixed(path, &format!("must NOT have more than {max} characters")));
                }
            }
        },
        Ty::Int { min } => match value.as_i64() {
            Some(n) if n >= min => {}
            Some(_) => errors.push(prefixed(path, &format!("must be >= {min}"))),
            None if value.is_u64() => {}
            None => errors.push(prefixed(path, "must be integer")),
        },
        Ty::StrArray { min } => match value.as_array() {
            None => errors.push(prefixed(path, "must be array")),
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check(item, Ty::Str { min, max: None }, &format!("{path}/{i}"), errors);
                }
            }
        },
        Ty::Enum(allowed) => match value.as_str() {
            Some(s) if allowed.contains(&s) => {}
            _ => errors.push(prefixed(path, "must be equal to one of the allowed values")),
        },
        Ty::Const(c) => {
            if value.as_str() != Some(c) {
                errors.push(prefixed(path, "must be equal to constant"));
            }
        }
        Ty::BoolMap => match value.as_object() {
            None => errors.push(prefixed(path, "must be object")),
            Some(map) => {
                for (k, v) in map {
                    if !v.is_boolean() {
                        errors.push(prefixed(&format!("{path}/{k}"), "must be boolean"));
                    }
                }
            }
        },
        Ty::OpenObject => {
            if !value.is_object() {
                errors.push(prefixed(path, "must be object"));
            }
        }
        Ty::Object(fields) => {
            let Some(map) = value.as_object() else {
                errors.push(prefixed(path, "must be object"));
                return;
            };
            // Like AJV without `allErrors`, only the first missing property is named.
            if let Some(f) = fields.iter().find(|f| f.required && !map.contains_key(f.name)) {
                errors.push(prefixed(path, &format!("must have required property '{}'", f.name)));
            }
            for f in fields {
                if let Some(v) = map.get(f.name) {
                    check(v, f.ty, &format!("{path}/{}", f.name), errors);
                }
            }
            for key in map.keys() {
                if !fields.iter().any(|f| f.name == key) {
                    errors.push(format!("{}: unexpected property '{key}'", at(path)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const INNER: &[Field] = &[req("id", STR1)];
    const OUTER: &[Field] =
        &[req("a", Ty::Int { min: 1 }), opt("inner", Ty::Object(INNER)), opt("e", Ty::Enum(&["x", "y"]))];

    #[test]
    fn reports_required_then_property_then_unexpected_errors_in_ajv_style() {
        let errs = validate_object(&json!({"inner": {}, "e": "z", "zz": 1}), OUTER);
        assert_eq!(
            errs,
            vec![
                "must have required property 'a'",
                "at /inner: must have required property 'id'",
                "at /e: must be equal to one of the allowed values",
                "at root: unexpected property 'zz'",
            ]
        );
    }

    #[test]
    fn accepts_valid_object() {
        assert!(validate_object(&json!({"a": 3, "inner": {"id": "x"}}), OUTER).is_empty());
    }

    #[test]
    fn integer_minimum_and_type_are_checked() {
        assert_eq!(validate_object(&json!({"a": 0}), OUTER), vec!["at /a: must be >= 1"]);
        assert_eq!(validate_object(&json!({"a": "1"}), OUTER), vec!["at /a: must be integer"]);
        assert_eq!(validate_object(&json!({"a": 1.5}), OUTER), vec!["at /a: must be integer"]);
    }
}
