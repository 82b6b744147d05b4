//! Property tests: any transaction the code builds round-trips through JSON (and storage) and
//! keeps its hash and signature.

use app::crypto::SecretKey;
use app::tx::{
    BigInt, Hash, Marker, Payload, ProgramData, ProgramMetadata, ResourceRequest, Transaction,
    TxFile, Workflow, WorkflowStep,
};
use proptest::prelude::*;

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/._:é-]{0,24}"
}

fn bigint() -> impl Strategy<Value = BigInt> {
    any::<i128>().prop_map(BigInt::from_i128)
}

fn key() -> impl Strategy<Value = SecretKey> {
    (1u8..=250).prop_map(|seed| SecretKey::from_bytes(&[seed; 32]).expect("valid"))
}

fn meta() -> impl Strategy<Value = ProgramMetadata> {
    (
        text(),
        hash(),
        text(),
        text(),
        text(),
        proptest::option::of((any::<u64>(), any::<u64>(), any::<u64>())),
    )
        .prop_map(
            |(name, hash, image_file_name, image_file_url, image_file_checksum, req)| {
                ProgramMetadata {
                    name,
                    hash,
                    image_file_name,
                    image_file_url,
                    image_file_checksum,
                    resource_requirements: req.map(|(mem, cpus, gpus)| ResourceRequest {
                        mem,
                        cpus,
                        gpus,
                    }),
                }
            },
        )
}

fn program_data() -> impl Strategy<Value = ProgramData> {
    prop_oneof![
        (text(), text(), text()).prop_map(|(file_name, file_url, checksum)| ProgramData::Input {
            file_name,
            file_url,
            checksum
        }),
        (hash(), text()).prop_map(|(source_program, file_name)| ProgramData::Output {
            source_program,
            file_name
        }),
    ]
}

fn files() -> impl Strategy<Value = Vec<TxFile>> {
    proptest::collection::vec(
        (text(), text(), hash()).prop_map(|(name, url, checksum)| TxFile {
            name,
            url,
            checksum,
            extention: Marker,
        }),
        0..3,
    )
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..64)
}

pub fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        Just(Payload::Empty),
        (key(), bigint()).prop_map(|(k, value)| Payload::Transfer {
            to: k.public_key(),
            value
        }),
        bigint().prop_map(|value| Payload::Stake { value }),
        bigint().prop_map(|value| Payload::Unstake { value }),
        (text(), meta(), meta()).prop_map(|(name, prover, verifier)| Payload::Deploy {
            name,
            prover,
            verifier
        }),
        proptest::collection::vec(
            (
                hash(),
                proptest::collection::vec(text(), 0..3),
                proptest::collection::vec(program_data(), 0..4)
            )
                .prop_map(|(program, args, inputs)| WorkflowStep {
                    program,
                    args,
                    inputs
                }),
            0..4
        )
        .prop_map(|steps| Payload::Run {
            workflow: Workflow { steps }
        }),
        (hash(), hash(), bytes(), files()).prop_map(|(parent, prover, proof, files)| {
            Payload::Proof {
                parent,
                prover,
                proof,
                files,
            }
        }),
        (hash(), bytes()).prop_map(|(parent, key)| Payload::ProofKey { parent, key }),
        (hash(), hash(), bytes(), files()).prop_map(|(parent, verifier, verification, files)| {
            Payload::Verification {
                parent,
                verifier,
                verification,
                files,
            }
        }),
        hash().prop_map(|parent| Payload::Cancel { parent }),
    ]
}

pub fn transaction() -> impl Strategy<Value = Transaction> {
    (payload(), any::<u64>(), key())
        .prop_map(|(payload, nonce, key)| Transaction::new_signed(payload, nonce, &key))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn json_round_trip_keeps_hash_and_signature(tx in transaction()) {
        let json = tx.to_json();
        let back: Transaction = serde_json::from_str(&json).expect("parses");
        prop_assert_eq!(&back, &tx);
        prop_assert_eq!(back.compute_hash(), tx.hash);
        prop_assert_eq!(back.verify_signature(), Ok(()));
        prop_assert_eq!(back.to_json(), json);
    }
}

#[test]
fn storage_round_trip_keeps_hash() {
    // A smaller number of cases through a real (SQLite) database.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = testkit::tempdir();
    let store = rt.block_on(async {
        let store =
            app::store::Store::connect(&testkit::sqlite_url(dir.path()), &Default::default())
                .await
                .expect("connect");
        store.migrate().await.expect("migrate");
        store
    });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    runner
        .run(&transaction(), |tx| {
            let stored = rt.block_on(async {
                store
                    .insert_transaction(&tx, app::model::Source::Rpc)
                    .await
                    .expect("insert");
                store
                    .get_transaction(&tx.hash)
                    .await
                    .expect("get")
                    .expect("found")
            });
            prop_assert_eq!(&stored.tx, &tx);
            prop_assert_eq!(stored.tx.compute_hash(), tx.hash);
            Ok(())
        })
        .expect("property holds");
}
