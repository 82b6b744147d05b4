//! The transaction model, byte-compatible with the original node (`wire-format.md`).
//!
//! - [`Transaction`] is the signed unit. Its serde form is the original's JSON *input* form
//!   (`sendTransaction`'s parameter); [`rpc::RpcTransaction`] is the *output* form.
//! - [`Transaction::compute_hash`] reproduces the original's hash, quirks included: no length
//!   prefixes or variant tags, resource requirements not hashed, Proof bytes hashed twice.
//! - Nothing here checks rules beyond the encoding; see [`crate::validate`].

mod bigint;
mod json;
pub mod rpc;

use std::fmt;

use sha3::{Digest, Sha3_256};

pub use bigint::BigInt;

use crate::crypto::{PublicKey, SecretKey, Signature, SignatureError};

pub use crate::hash::Hash;

/// A unit marker that appears as `null` in JSON: the original's `state` type-state field and
/// the `extention` field of output files. Required on input, as in the original.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Marker;

/// CPU, memory (MiB) and GPU count a program asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResourceRequest {
    /// Memory in MiB.
    pub mem: u64,
    pub cpus: u64,
    pub gpus: u64,
}

impl Default for ResourceRequest {
    /// The original's default: 2048 MiB, 2 CPUs, no GPU.
    fn default() -> Self {
        Self {
            mem: 2048,
            cpus: 2,
            gpus: 0,
        }
    }
}

/// A program as named in a `Deploy`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProgramMetadata {
    pub name: String,
    pub hash: Hash,
    pub image_file_name: String,
    pub image_file_url: String,
    /// Lowercase hex BLAKE3 of the image.
    pub image_file_checksum: String,
    pub resource_requirements: Option<ResourceRequest>,
}

impl ProgramMetadata {
    /// The program hash clients compute: `SHA3-256(name ‖ image_file_name ‖ image_file_url ‖ image_file_checksum)`.
    pub fn compute_hash(&self) -> Hash {
        let mut h = Sha3_256::new();
        h.update(self.name.as_bytes());
        h.update(self.image_file_name.as_bytes());
        h.update(self.image_file_url.as_bytes());
        h.update(self.image_file_checksum.as_bytes());
        Hash(h.finalize().into())
    }

    fn write_hash_bytes(&self, out: &mut impl Sink) {
        out.put(self.name.as_bytes());
        out.put(&self.hash.0);
        out.put(self.image_file_name.as_bytes());
        out.put(self.image_file_url.as_bytes());
        out.put(self.image_file_checksum.as_bytes());
    }
}

/// A file a workflow step reads.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProgramData {
    /// A file downloaded from a URL, placed at `file_name` (a VM path) before the step runs.
    Input {
        file_name: String,
        file_url: String,
        /// Hex BLAKE3 of the file.
        checksum: String,
    },
    /// A file written by an earlier step's program.
    Output {
        source_program: Hash,
        file_name: String,
    },
}

/// One step of a workflow.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkflowStep {
    pub program: Hash,
    pub args: Vec<String>,
    pub inputs: Vec<ProgramData>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Workflow {
    pub steps: Vec<WorkflowStep>,
}

/// An output file attached to a `Proof` or `Verification`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxFile {
    /// The path inside the VM, e.g. `/workspace/proof.dat`.
    pub name: String,
    /// The producing node's HTTP base, e.g. `http://1.2.3.4:9995`.
    pub url: String,
    /// BLAKE3 of the file.
    pub checksum: Hash,
    /// Always `null` (the original's spelling).
    pub extention: Marker,
}

impl TxFile {
    /// The file's name without its directories (where it is stored and served).
    pub fn basename(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }
}

/// The payload variants, in the original's order (the order is the variant index).
#[allow(
    clippy::large_enum_variant,
    reason = "one payload per transaction; boxing would only obscure the wire model"
)]
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Payload {
    Empty,
    Transfer {
        to: PublicKey,
        value: BigInt,
    },
    Stake {
        value: BigInt,
    },
    Unstake {
        value: BigInt,
    },
    Deploy {
        name: String,
        prover: ProgramMetadata,
        verifier: ProgramMetadata,
    },
    Run {
        workflow: Workflow,
    },
    Proof {
        parent: Hash,
        prover: Hash,
        proof: Vec<u8>,
        files: Vec<TxFile>,
    },
    ProofKey {
        parent: Hash,
        key: Vec<u8>,
    },
    Verification {
        parent: Hash,
        verifier: Hash,
        verification: Vec<u8>,
        files: Vec<TxFile>,
    },
    Cancel {
        parent: Hash,
    },
}

/// The kind of a payload, without its content. Stored as its lowercase name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Empty,
    Transfer,
    Stake,
    Unstake,
    Deploy,
    Run,
    Proof,
    ProofKey,
    Verification,
    Cancel,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Empty,
        Kind::Transfer,
        Kind::Stake,
        Kind::Unstake,
        Kind::Deploy,
        Kind::Run,
        Kind::Proof,
        Kind::ProofKey,
        Kind::Verification,
        Kind::Cancel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Empty => "empty",
            Kind::Transfer => "transfer",
            Kind::Stake => "stake",
            Kind::Unstake => "unstake",
            Kind::Deploy => "deploy",
            Kind::Run => "run",
            Kind::Proof => "proof",
            Kind::ProofKey => "proofkey",
            Kind::Verification => "verification",
            Kind::Cancel => "cancel",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Payload {
    pub fn kind(&self) -> Kind {
        match self {
            Payload::Empty => Kind::Empty,
            Payload::Transfer { .. } => Kind::Transfer,
            Payload::Stake { .. } => Kind::Stake,
            Payload::Unstake { .. } => Kind::Unstake,
            Payload::Deploy { .. } => Kind::Deploy,
            Payload::Run { .. } => Kind::Run,
            Payload::Proof { .. } => Kind::Proof,
            Payload::ProofKey { .. } => Kind::ProofKey,
            Payload::Verification { .. } => Kind::Verification,
            Payload::Cancel { .. } => Kind::Cancel,
        }
    }

    /// The transaction this one refers to, for the kinds that have one.
    pub fn parent(&self) -> Option<Hash> {
        match self {
            Payload::Proof { parent, .. }
            | Payload::ProofKey { parent, .. }
            | Payload::Verification { parent, .. }
            | Payload::Cancel { parent } => Some(*parent),
            _ => None,
        }
    }

    /// Output files attached to a Proof or Verification.
    pub fn files(&self) -> &[TxFile] {
        match self {
            Payload::Proof { files, .. } | Payload::Verification { files, .. } => files,
            _ => &[],
        }
    }

    /// Writes the bytes the original hashes for this payload.
    pub fn write_hash_bytes(&self, out: &mut impl Sink) {
        match self {
            Payload::Empty => {}
            Payload::Transfer { to, value } => {
                out.put(to.as_bytes());
                out.put(&value.to_signed_bytes_be());
            }
            Payload::Stake { value } | Payload::Unstake { value } => {
                out.put(&value.to_signed_bytes_be());
            }
            Payload::Deploy {
                name,
                prover,
                verifier,
            } => {
                out.put(name.as_bytes());
                prover.write_hash_bytes(out);
                verifier.write_hash_bytes(out);
            }
            Payload::Run { workflow } => {
                for step in &workflow.steps {
                    out.put(&step.program.0);
                    for arg in &step.args {
                        out.put(arg.as_bytes());
                    }
                    for input in &step.inputs {
                        match input {
                            ProgramData::Input {
                                file_name,
                                file_url,
                                checksum,
                            } => {
                                out.put(file_name.as_bytes());
                                out.put(file_url.as_bytes());
                                out.put(checksum.as_bytes());
                            }
                            ProgramData::Output {
                                source_program,
                                file_name,
                            } => {
                                out.put(&source_program.0);
                                out.put(file_name.as_bytes());
                            }
                        }
                    }
                }
            }
            Payload::Proof {
                parent,
                prover,
                proof,
                files,
            } => {
                out.put(&parent.0);
                out.put(&prover.0);
                // The original appends the proof bytes twice; that is part of the hash now.
                out.put(proof);
                out.put(proof);
                write_files(files, out);
            }
            Payload::ProofKey { parent, key } => {
                out.put(&parent.0);
                out.put(key);
            }
            Payload::Verification {
                parent,
                verifier,
                verification,
                files,
            } => {
                out.put(&parent.0);
                out.put(&verifier.0);
                out.put(verification);
                write_files(files, out);
            }
            Payload::Cancel { parent } => out.put(&parent.0),
        }
    }
}

/// bincode 1's default encoding of `Vec<TxFile>`: u64 LE count, then per file length-prefixed
/// name and url and the 32-byte checksum.
fn write_files(files: &[TxFile], out: &mut impl Sink) {
    out.put(&(files.len() as u64).to_le_bytes());
    for file in files {
        out.put(&(file.name.len() as u64).to_le_bytes());
        out.put(file.name.as_bytes());
        out.put(&(file.url.len() as u64).to_le_bytes());
        out.put(file.url.as_bytes());
        out.put(&file.checksum.0);
    }
}

/// Where hash bytes go: a hasher, or a buffer when the preimage itself is wanted.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Sha3_256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A signed transaction in the original's model. Its serde form is the JSON input form.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transaction {
    pub author: PublicKey,
    /// The hash the sender claims; validation checks it against [`Transaction::compute_hash`].
    pub hash: Hash,
    pub payload: Payload,
    pub nonce: u64,
    pub signature: Signature,
    /// Always `null`; required on input as in the original.
    pub state: Marker,
}

impl Transaction {
    /// Builds and signs a transaction.
    pub fn new_signed(payload: Payload, nonce: u64, key: &SecretKey) -> Self {
        let author = key.public_key();
        let hash = compute_hash(&author, &payload, nonce);
        let signature = key.sign(&hash);
        Self {
            author,
            hash,
            payload,
            nonce,
            signature,
            state: Marker,
        }
    }

    /// `SHA3-256(author (65 bytes) ‖ payload bytes ‖ nonce as u64 big-endian)`.
    pub fn compute_hash(&self) -> Hash {
        compute_hash(&self.author, &self.payload, self.nonce)
    }

    /// The exact bytes that are hashed (for tests and diagnostics).
    pub fn hash_preimage(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put(self.author.as_bytes());
        self.payload.write_hash_bytes(&mut out);
        out.put(&self.nonce.to_be_bytes());
        out
    }

    /// Checks the signature against the recomputed hash (not the transmitted `hash` field).
    pub fn verify_signature(&self) -> Result<(), SignatureError> {
        self.signature.verify(&self.compute_hash(), &self.author)
    }

    /// The JSON input form, as a client sends it.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every map key is a string and no Serialize impl errors.
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("transaction JSON: {e}"))
    }

    pub fn kind(&self) -> Kind {
        self.payload.kind()
    }
}

fn compute_hash(author: &PublicKey, payload: &Payload, nonce: u64) -> Hash {
    let mut h = Sha3_256::new();
    h.put(author.as_bytes());
    payload.write_hash_bytes(&mut h);
    h.put(&nonce.to_be_bytes());
    Hash(h.finalize().into())
}
