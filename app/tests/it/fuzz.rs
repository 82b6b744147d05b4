//! Bad input never panics: the JSON decoder and the validator over mutated and random input.
//! A bounded number of cases, so it runs in CI in seconds.

use app::tx::Transaction;
use app::validate::{Limits, validate};
use proptest::prelude::*;

fn seeds() -> Vec<String> {
    testkit::original_vectors()
        .into_iter()
        .filter_map(|v| v["input_json"].as_str().map(str::to_string))
        .collect()
}

fn decode_and_validate(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Ok(tx) = serde_json::from_str::<Transaction>(text)
    {
        let _ = validate(&tx, &Limits::default());
        let _ = tx.to_json();
        let _ = app::tx::rpc::RpcTransaction::from_transaction(&tx, "http://127.0.0.1:9995");
    }
}

/// A mutation of a seed: byte flips, truncation, splices of JSON fragments.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, &'static str),
    Replace(usize, usize, &'static str),
}

const FRAGMENTS: &[&str] = &[
    "null",
    "-1",
    "1e400",
    "18446744073709551616",
    "[]",
    "{}",
    "\"\"",
    "[2,[1]]",
    "\"../../etc/passwd\"",
    "\"/workspace/..\"",
    "[0,[0,0,0]]",
    "{\"Run\":{\"workflow\":{\"steps\":[]}}}",
    "\"Cancel\"",
    "\"\\u0000\"",
    "[255,255,255]",
    "\"file:///etc/passwd\"",
    ",",
    "]",
    "}",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), proptest::sample::select(FRAGMENTS))
            .prop_map(|(i, f)| Mutation::Insert(i, f)),
        (
            any::<usize>(),
            0usize..40,
            proptest::sample::select(FRAGMENTS)
        )
            .prop_map(|(i, n, f)| Mutation::Replace(i, n, f)),
    ]
}

fn apply(seed: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.as_bytes().to_vec();
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(i, b) => {
                if !bytes.is_empty() {
                    let at = i % len;
                    bytes[at] ^= b;
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i % len),
            Mutation::Insert(i, f) => {
                let at = i % len;
                bytes.splice(at.min(bytes.len())..at.min(bytes.len()), f.bytes());
            }
            Mutation::Replace(i, n, f) => {
                let at = (i % len).min(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.splice(at..end, f.bytes());
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_vectors_never_panic(seed in proptest::sample::select(seeds()), muts in proptest::collection::vec(mutation(), 1..6)) {
        decode_and_validate(&apply(&seed, &muts));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_and_validate(&bytes);
    }
}
