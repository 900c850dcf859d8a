//! Property tests for the frame and connect parsers: whatever bytes arrive, parsing answers with
//! a value or an error, never a panic, and a well-formed request frame round-trips. (The fixed
//! mutation corpus of `hostile_input.rs` stays; this adds shrinking, generated inputs.)

use clawgate_protocol::connect::parse_connect_params;
use clawgate_protocol::frames::parse_request_frame;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Connect params with plausible keys and arbitrary values.
fn connect_params() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "minProtocol",
        "maxProtocol",
        "client",
        "role",
        "scopes",
        "caps",
        "auth",
        "device",
        "locale",
        "userAgent",
        "permissions",
    ]);
    prop::collection::btree_map(keys, json_value(), 0..10)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_the_frame_parser(text in ".{0,400}") {
        let _ = parse_request_frame(&text);
    }

    #[test]
    fn arbitrary_json_never_panics_the_frame_parser(v in json_value()) {
        let _ = parse_request_frame(&v.to_string());
    }

    #[test]
    fn arbitrary_connect_params_never_panic(params in connect_params()) {
        let _ = parse_connect_params(&params);
        let frame = json!({"type": "req", "id": "1", "method": "connect", "params": params});
        let _ = parse_request_frame(&frame.to_string());
    }

    #[test]
    fn request_frames_round_trip(id in "[a-zA-Z0-9-]{1,36}", method in "[a-z][a-z.]{0,30}", params in json_value()) {
        let frame = json!({"type": "req", "id": id, "method": method, "params": params.clone()});
        let parsed = parse_request_frame(&frame.to_string()).expect("a well-formed request frame parses");
        prop_assert_eq!(parsed.id, id);
        prop_assert_eq!(parsed.method, method);
        if !params.is_null() {
            // As any JSON reader reads the sent text (floats are not bit-exact through text).
            let sent: Value = serde_json::from_str(&params.to_string()).expect("json");
            prop_assert_eq!(parsed.params, Some(sent));
        }
    }
}
