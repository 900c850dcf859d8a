//! Property tests for the config decoder: arbitrary JSON5-ish text and arbitrary JSON values go
//! through the same entry points as a real config file and `config.patch`. No input panics, and
//! every refusal says where: a syntax error has a line, a problem in the contents names its key.

use std::path::Path;

use clawgate_config::{Config, ConfigError, parse_str};
use proptest::prelude::*;
use serde_json::{Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        ".{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Real config keys (so decoding goes deep) mixed with arbitrary ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "gateway",
            "port",
            "bind",
            "auth",
            "mode",
            "token",
            "password",
            "channels",
            "telegram",
            "discord",
            "agents",
            "defaults",
            "model",
            "primary",
            "models",
            "providers",
            "baseUrl",
            "apiKey",
            "hooks",
            "comfy",
            "workers",
            "url",
            "logging",
            "level",
            "session",
            "cron",
            "tools",
            "env",
            "controlUi",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z]{1,10}",
    ]
}

/// Text that is mostly JSON5-shaped: a rendered value, then spliced with JSON5 punctuation,
/// comments, unquoted keys and arbitrary characters.
fn json5ish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("// c\n".to_owned()),
        Just("/* c */".to_owned()),
        Just("'s'".to_owned()),
        Just("\"\\u00e9\"".to_owned()),
        Just("Infinity".to_owned()),
        Just("0x1F".to_owned()),
        Just("\n".to_owned()),
        key(),
        ".{0,6}",
    ];
    (json_value(), prop::collection::vec((any::<prop::sample::Index>(), piece), 0..6)).prop_map(|(v, edits)| {
        let mut text = v.to_string();
        for (at, piece) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            text.insert_str(i, &piece);
        }
        text
    })
}

fn located(err: &ConfigError) -> bool {
    match err {
        ConfigError::Syntax { issue } => issue.line().is_some(),
        ConfigError::Invalid { issues } => !issues.is_empty() && issues.iter().all(|i| !i.message.is_empty()),
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_and_errors_carry_a_location(text in json5ish()) {
        if let Err(e) = parse_str(&text, Path::new("clawgate.json5")) {
            prop_assert!(located(&e), "an error without a location: {e:?}");
        }
    }

    #[test]
    fn arbitrary_values_never_panic_the_decoder(v in json_value()) {
        if let Err(e) = Config::from_value(&v) {
            prop_assert!(located(&e), "an error without a location: {e:?}");
        }
        let _ = parse_str(&v.to_string(), Path::new("clawgate.json5"));
    }

    #[test]
    fn arbitrary_values_under_real_sections_never_panic(section in key(), v in json_value()) {
        let root = json!({ (section): v });
        let _ = Config::from_value(&root);
        let _ = parse_str(&root.to_string(), Path::new("clawgate.json5"));
    }
}
