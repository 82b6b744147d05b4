//! The original node's test vectors, byte for byte: parse, recompute the hash and its preimage,
//! verify, re-sign, and re-serialise both the input and the output form.

use app::crypto::{SecretKey, SignatureError, ecdsa_message};
use app::tx::rpc::{RpcTransaction, TransactionTree};
use app::tx::{Hash, Transaction};
use app::validate::{Limits, ValidationError, validate};

use crate::support::transaction_vector_names;

fn hex_field(v: &serde_json::Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field}"))
        .to_string()
}

#[test]
fn every_transaction_vector_matches_byte_for_byte() {
    let names = transaction_vector_names();
    assert!(
        names.len() >= 20,
        "expected the full vector set, got {}",
        names.len()
    );
    let host = testkit::vector("keys")["get_transaction_host"]
        .as_str()
        .expect("host")
        .to_string();
    for name in names {
        let v = testkit::vector(&name);
        let input = hex_field(&v, "input_json");
        let tx: Transaction = serde_json::from_str(&input).expect("parses");

        assert_eq!(
            tx.compute_hash().to_hex(),
            hex_field(&v, "hash_hex"),
            "{name}: hash"
        );
        assert_eq!(
            tx.hash.to_hex(),
            hex_field(&v, "hash_hex"),
            "{name}: hash field"
        );
        assert_eq!(
            hex::encode(tx.hash_preimage()),
            hex_field(&v, "hash_preimage_hex"),
            "{name}: preimage"
        );
        let mut payload_bytes = Vec::new();
        tx.payload.write_hash_bytes(&mut payload_bytes);
        assert_eq!(
            hex::encode(payload_bytes),
            hex_field(&v, "payload_serialize_into_hex"),
            "{name}: payload bytes"
        );
        assert_eq!(
            hex::encode(ecdsa_message(&tx.hash)),
            hex_field(&v, "ecdsa_message_hex"),
            "{name}: signed message"
        );
        assert_eq!(
            tx.signature.to_hex(),
            hex_field(&v, "signature_rs_hex"),
            "{name}: signature"
        );
        assert_eq!(tx.verify_signature(), Ok(()), "{name}: verify");
        assert_eq!(
            validate(&tx, &Limits::default()),
            Ok(()),
            "{name}: validate"
        );

        // Signing the same content with the same key gives the same signature (RFC 6979).
        let key =
            SecretKey::from_bytes(&hex::decode(hex_field(&v, "secret_key_hex")).expect("hex"))
                .expect("key");
        assert_eq!(
            key.public_key().to_hex(),
            hex_field(&v, "author_pubkey_hex"),
            "{name}: author"
        );
        let resigned = Transaction::new_signed(tx.payload.clone(), tx.nonce, &key);
        assert_eq!(resigned, tx, "{name}: re-signed");

        // Input form round trip, and the exact JSON-RPC parameter.
        assert_eq!(tx.to_json(), input, "{name}: input form");
        assert_eq!(
            format!("[{}]", tx.to_json()),
            hex_field(&v, "send_transaction_params_json"),
            "{name}: sendTransaction params"
        );

        // Output form (getTransaction), with and without the envelope.
        let out = RpcTransaction::from_transaction(&tx, &format!("http://{host}"));
        assert_eq!(
            serde_json::to_string(&out).expect("json"),
            hex_field(&v, "rpc_output_json"),
            "{name}: output form"
        );
        assert_eq!(
            format!("{{\"Ok\":{}}}", serde_json::to_string(&out).expect("json")),
            hex_field(&v, "rpc_response_json"),
            "{name}: response envelope"
        );
        let back: RpcTransaction =
            serde_json::from_str(&hex_field(&v, "rpc_output_json")).expect("output form parses");
        assert_eq!(back, out, "{name}: output form parses back");
        assert_eq!(
            hex_field(&v, "get_transaction_params_json"),
            serde_json::to_string(&[tx.hash]).expect("json"),
            "{name}: getTransaction params"
        );
    }
}

#[test]
fn program_hash_vectors() {
    for name in ["program_prover", "program_verifier"] {
        let v = testkit::vector(name);
        let meta: app::tx::ProgramMetadata =
            serde_json::from_str(v["program_metadata_json"].as_str().expect("json"))
                .expect("parses");
        assert_eq!(
            meta.compute_hash().to_hex(),
            hex_field(&v, "hash_hex"),
            "{name}"
        );
        assert_eq!(
            serde_json::to_string(&meta).expect("json"),
            hex_field(&v, "program_metadata_json"),
            "{name}: round trip"
        );
    }
}

#[test]
fn tree_vector() {
    let v = testkit::vector("tx_tree_run_proof_verification");
    let rows = v["db_rows"].as_array().expect("rows");
    let mut root = None;
    let mut edges = Vec::new();
    for row in rows {
        let hash = Hash::from_hex(row[0].as_str().expect("hash")).expect("hex");
        match row[1].as_str() {
            None => root = Some(hash),
            Some(parent) => edges.push((hash, Hash::from_hex(parent).expect("hex"))),
        }
    }
    let tree = TransactionTree::build(root.expect("root"), &edges);
    assert_eq!(
        serde_json::to_string(&tree).expect("json"),
        hex_field(&v, "result_json")
    );
    assert_eq!(
        format!("{{\"Ok\":{}}}", serde_json::to_string(&tree).expect("json")),
        hex_field(&v, "rpc_response_json")
    );
}

fn negative(name: &str) -> (serde_json::Value, Transaction) {
    let v = testkit::vector(name);
    let tx = serde_json::from_str(v["input_json"].as_str().expect("json")).expect("parses");
    (v, tx)
}

#[test]
fn altered_hash_field_is_refused() {
    let (v, tx) = negative("neg_altered_hash_field");
    // The signature is valid for the content; only the claimed hash is wrong.
    assert_eq!(tx.verify_signature(), Ok(()));
    let err = validate(&tx, &Limits::default()).expect_err("refused");
    assert_eq!(err.code(), "hash_mismatch");
    assert_eq!(
        err,
        ValidationError::HashMismatch {
            claimed: Hash::from_hex(&hex_field(&v, "hash_hex_in_field")).expect("hex"),
            computed: Hash::from_hex(&hex_field(&v, "true_hash_hex")).expect("hex"),
        }
    );
    assert!(
        err.to_string().contains(&hex_field(&v, "true_hash_hex")),
        "{err}"
    );
}

#[test]
fn signature_over_unreversed_hash_is_refused() {
    let (_, tx) = negative("neg_signature_over_raw_hash");
    let err = validate(&tx, &Limits::default()).expect_err("refused");
    assert_eq!(err, ValidationError::Signature(SignatureError::Mismatch));
    assert_eq!(err.code(), "bad_signature");
}

#[test]
fn tampered_nonce_is_refused() {
    let (_, tx) = negative("neg_nonce_tampered");
    let err = validate(&tx, &Limits::default()).expect_err("refused");
    assert_eq!(err.code(), "hash_mismatch");
    assert_eq!(tx.verify_signature(), Err(SignatureError::Mismatch));
}

#[test]
fn duplicate_program_run_is_refused() {
    let (_, tx) = negative("neg_run_duplicate_program");
    assert_eq!(tx.verify_signature(), Ok(()));
    let err = validate(&tx, &Limits::default()).expect_err("refused");
    assert_eq!(err.code(), "duplicate_program");
    assert!(err.to_string().contains("steps[1].program"), "{err}");
}

#[test]
fn decoding_cases_match_the_original() {
    let cases: Vec<_> = testkit::original_vectors()
        .into_iter()
        .filter(|v| v["type"] == "deserialization_case")
        .collect();
    assert_eq!(cases.len(), 8);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let parsed =
            serde_json::from_str::<Transaction>(case["input_json"].as_str().expect("json"));
        let expected = case["original_deserializes"].as_bool().expect("bool");
        assert_eq!(parsed.is_ok(), expected, "{name}: {parsed:?}");
        if let (Ok(tx), Some(verify)) = (&parsed, case["original_verify_if_deserialized"].as_bool())
        {
            assert_eq!(tx.verify_signature().is_ok(), verify, "{name}");
        }
    }
}

#[test]
fn fixture_key_forms() {
    let v = testkit::vector("keys");
    for key in v["keys"].as_array().expect("keys") {
        let secret = SecretKey::from_bytes(
            &hex::decode(key["secret_key_hex"].as_str().expect("hex")).expect("hex"),
        )
        .expect("valid");
        let public = secret.public_key();
        assert_eq!(public.to_hex(), key["pubkey_65_hex"].as_str().expect("hex"));
        assert_eq!(
            serde_json::to_value(public).expect("json"),
            key["pubkey_json_base64"]
        );
    }
}
