//! Helpers shared by the test modules.

use app::crypto::SecretKey;
use app::tx::{
    Hash, Payload, ProgramData, ProgramMetadata, ResourceRequest, Transaction, TxFile, Workflow,
    WorkflowStep,
};

/// The transaction of a fixture vector, parsed from its input JSON.
pub fn vector_tx(name: &str) -> Transaction {
    let v = testkit::vector(name);
    let json = v["input_json"].as_str().expect("input_json");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The names of every valid transaction vector.
pub fn transaction_vector_names() -> Vec<String> {
    testkit::original_vectors()
        .into_iter()
        .filter(|v| v["type"] == "transaction")
        .map(|v| v["name"].as_str().expect("name").to_string())
        .collect()
}

pub fn key(seed: u8) -> SecretKey {
    SecretKey::from_bytes(&[seed; 32]).expect("valid key")
}

pub fn program(name: &str) -> ProgramMetadata {
    let mut meta = ProgramMetadata {
        name: name.to_string(),
        hash: Hash::default(),
        image_file_name: format!("{name}.img"),
        image_file_url: format!("http://127.0.0.1:8000/{name}.img"),
        image_file_checksum: hex::encode(blake3::hash(name.as_bytes()).as_bytes()),
        resource_requirements: Some(ResourceRequest {
            mem: 512,
            cpus: 1,
            gpus: 0,
        }),
    };
    meta.hash = meta.compute_hash();
    meta
}

pub fn deploy(key: &SecretKey, prover: &str, verifier: &str, nonce: u64) -> Transaction {
    Transaction::new_signed(
        Payload::Deploy {
            name: format!("{prover}+{verifier}"),
            prover: program(prover),
            verifier: program(verifier),
        },
        nonce,
        key,
    )
}

pub fn input(name: &str) -> ProgramData {
    ProgramData::Input {
        file_name: format!("/workspace/{name}"),
        file_url: format!("http://127.0.0.1:8000/{name}"),
        checksum: hex::encode(blake3::hash(name.as_bytes()).as_bytes()),
    }
}

/// A Run over `programs`, each step after the first reading the previous step's output.
pub fn run(key: &SecretKey, programs: &[Hash], nonce: u64) -> Transaction {
    let steps = programs
        .iter()
        .enumerate()
        .map(|(i, p)| WorkflowStep {
            program: *p,
            args: vec!["--step".into(), i.to_string()],
            inputs: if i == 0 {
                vec![input("a.txt"), input("b.txt")]
            } else {
                vec![
                    input(&format!("extra{i}.txt")),
                    ProgramData::Output {
                        source_program: programs[i - 1],
                        file_name: format!("/workspace/out{}.dat", i - 1),
                    },
                    input(&format!("z{i}.txt")),
                ]
            },
        })
        .collect();
    Transaction::new_signed(
        Payload::Run {
            workflow: Workflow { steps },
        },
        nonce,
        key,
    )
}

pub fn proof(key: &SecretKey, parent: Hash, prover: Hash, nonce: u64) -> Transaction {
    Transaction::new_signed(
        Payload::Proof {
            parent,
            prover,
            proof: vec![1, 2, 3, nonce as u8],
            files: vec![TxFile {
                name: "/workspace/proof.dat".into(),
                url: "http://127.0.0.1:9995".into(),
                checksum: Hash([7; 32]),
                extention: app::tx::Marker,
            }],
        },
        nonce,
        key,
    )
}

pub fn verification(key: &SecretKey, parent: Hash, verifier: Hash, nonce: u64) -> Transaction {
    Transaction::new_signed(
        Payload::Verification {
            parent,
            verifier,
            verification: vec![9, 9],
            files: vec![],
        },
        nonce,
        key,
    )
}

pub fn empty(key: &SecretKey, nonce: u64) -> Transaction {
    Transaction::new_signed(Payload::Empty, nonce, key)
}

/// A node's configuration as `gevulot run` builds it, without execution: data in `dir`, the
/// network `p2p` if any.
pub fn node_config(
    dir: &std::path::Path,
    store: app::store::Store,
    key: SecretKey,
    acl: app::node::AclPolicy,
    p2p: Option<app::p2p::Config>,
) -> app::node::Config {
    app::node::Config {
        data: app::data_dir::DataDir::new(dir),
        store,
        key,
        limits: Default::default(),
        acl,
        acl_whitelist_url: None,
        p2p,
        file_base_url: "http://127.0.0.1:9".into(),
        resources: Default::default(),
        sysfs_root: dir.join("sys"),
        max_upload_bytes: 1 << 20,
        session_ttl: app::auth::DEFAULT_SESSION_TTL,
        placement_redundancy: 1,
        webhooks: Default::default(),
        execution: None,
        observer: None,
    }
}

/// A one-step Run of program `name` by key `seed`, stored, and its proof task.
pub async fn stored_run_with_task(
    store: &app::store::Store,
    seed: u8,
    name: &str,
) -> (Transaction, app::model::Task) {
    let r = run(&key(seed), &[program(name).hash], 0);
    store
        .insert_transactions(std::slice::from_ref(&r), app::model::Source::Rest)
        .await
        .expect("the Run");
    let task = proof_task(store, r.hash, 0, name).await;
    (r, task)
}

/// A proof task for step `step` of Run `run`, running program `name`.
pub async fn proof_task(
    store: &app::store::Store,
    run: Hash,
    step: i64,
    name: &str,
) -> app::model::Task {
    store
        .create_tasks(&[app::model::NewTask {
            tx: run,
            step_index: step,
            program: program(name).hash,
            kind: app::model::TaskKind::Proof,
        }])
        .await
        .expect("a task")
        .remove(0)
}
