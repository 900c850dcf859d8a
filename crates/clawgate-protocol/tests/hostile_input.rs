//! Whatever arrives from the network, parsing answers with an error value, never a panic.
//! A deterministic generator mutates real frames (byte flips, truncation, splices, deep nesting,
//! type swaps) so every run covers the same large set of inputs.

use clawgate_protocol::connect::parse_connect_params;
use clawgate_protocol::frames::parse_request_frame;

/// xorshift64*: small, deterministic, good enough to scatter mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    r#"{"type":"req","id":"1","method":"connect","params":{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"linux","mode":"cli"},"auth":{"token":"t"},"scopes":["operator.read"],"device":{"id":"ab","publicKey":"cc","signature":"dd","signedAt":1,"nonce":"n"}}}"#,
    r#"{"type":"req","id":"2","method":"health"}"#,
    r#"{"type":"req","id":"3","method":"chat.send","params":{"sessionKey":"agent:main:x","message":"hé ☃","idempotencyKey":"k"}}"#,
];

const SPLICES: &[&str] =
    &["null", "[]", "{}", "-1", "1e999", "\"\\ud800\"", "\u{0}", "[[[[[[[[", "}}}}", "\"", "9007199254740993", "true"];

fn mutate(rng: &mut Rng, seed: &str) -> Vec<u8> {
    let mut b = seed.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = (rng.next() & 0xff) as u8;
            }
            1 if !b.is_empty() => {
                let n = rng.below(b.len());
                b.truncate(n);
            }
            2 => {
                let i = rng.below(b.len() + 1);
                let s = SPLICES[rng.below(SPLICES.len())].as_bytes();
                b.splice(i..i, s.iter().copied());
            }
            3 => {
                // Deep nesting in a params position.
                let depth = 1 + rng.below(5000);
                let mut s = String::from(r#"{"type":"req","id":"x","method":"connect","params":"#);
                s.push_str(&"[".repeat(depth));
                s.push_str(&"]".repeat(depth));
                s.push('}');
                b = s.into_bytes();
            }
            _ => {
                if let Some(i) = b.iter().position(|c| *c == b':') {
                    b.insert(i + 1, b'[');
                }
            }
        }
    }
    b
}

#[test]
fn mutated_frames_never_panic_the_parsers() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0usize;
    for round in 0..20_000 {
        let seed = SEEDS[round % SEEDS.len()];
        let bytes = mutate(&mut rng, seed);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(frame) = parse_request_frame(&text) {
            accepted += 1;
            let _ = parse_connect_params(&frame.params_or_empty());
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            let _ = parse_connect_params(&v);
        }
    }
    // The mutations must leave some frames valid, or the test only exercises the JSON parser.
    assert!(accepted > 100, "only {accepted} mutated frames parsed; the generator is too destructive");
}

#[test]
fn pathological_values_in_every_connect_field_are_rejected_cleanly() {
    let base: serde_json::Value = serde_json::from_str(SEEDS[0]).unwrap();
    let params = base["params"].clone();
    let weird = [
        serde_json::json!(null),
        serde_json::json!(-1),
        serde_json::json!(1.5),
        serde_json::json!(u64::MAX),
        serde_json::json!("x".repeat(100_000)),
        serde_json::json!([]),
        serde_json::json!({"a": {"b": {"c": []}}}),
    ];
    for key in params.as_object().unwrap().keys() {
        for w in &weird {
            let mut p = params.clone();
            p[key] = w.clone();
            let _ = parse_connect_params(&p);
        }
    }
}
