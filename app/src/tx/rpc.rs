//! The original's output forms: `RpcTransaction` (the `getTransaction` result) and
//! `TransactionTree` (the `getTransactionTree` result). They are part of the compatibility
//! contract, so they live next to the transaction model rather than with the HTTP wire types.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::{Hash, Payload, ProgramMetadata, Transaction, TxFile, Workflow};

/// A transaction as `getTransaction` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcTransaction {
    /// Hex of the 65-byte uncompressed key.
    pub author: String,
    /// Hex.
    pub hash: String,
    pub payload: RpcPayload,
    pub nonce: u64,
    /// Hex of `r ‖ s`.
    pub signature: String,
}

/// An output file in the output form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcFile {
    /// Full download URL on the serving node.
    pub url: String,
    /// Hex BLAKE3.
    pub checksum: String,
    pub vm_path: String,
}

#[allow(
    clippy::large_enum_variant,
    reason = "one payload per transaction; boxing would only obscure the wire model"
)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcPayload {
    Empty,
    Transfer {
        to: String,
        value: String,
    },
    Stake {
        value: String,
    },
    Unstake {
        value: String,
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
        parent: String,
        prover: String,
        /// Base64.
        proof: String,
        files: Vec<RpcFile>,
    },
    ProofKey {
        parent: String,
        /// Hex.
        key: String,
    },
    Verification {
        parent: String,
        verifier: String,
        /// Base64.
        verification: String,
        files: Vec<RpcFile>,
    },
    Cancel {
        parent: String,
    },
}

/// The download path of an output file, relative to the file server's root:
/// `txfiles/<tx hex>/<checksum hex>/<basename>`.
pub fn output_file_path(tx: &Hash, file: &TxFile) -> String {
    format!(
        "txfiles/{}/{}/{}",
        tx.to_hex(),
        file.checksum.to_hex(),
        file.basename()
    )
}

impl RpcTransaction {
    /// The output form of `tx`. `file_base_url` is this node's download base,
    /// e.g. `http://127.0.0.1:9995` (no trailing slash).
    pub fn from_transaction(tx: &Transaction, file_base_url: &str) -> Self {
        let files = |files: &[TxFile]| -> Vec<RpcFile> {
            files
                .iter()
                .map(|f| RpcFile {
                    url: format!("{file_base_url}/{}", output_file_path(&tx.hash, f)),
                    checksum: f.checksum.to_hex(),
                    vm_path: f.name.clone(),
                })
                .collect()
        };
        let payload = match &tx.payload {
            Payload::Empty => RpcPayload::Empty,
            Payload::Transfer { to, value } => RpcPayload::Transfer {
                to: to.to_hex(),
                value: value.to_string(),
            },
            Payload::Stake { value } => RpcPayload::Stake {
                value: value.to_string(),
            },
            Payload::Unstake { value } => RpcPayload::Unstake {
                value: value.to_string(),
            },
            Payload::Deploy {
                name,
                prover,
                verifier,
            } => RpcPayload::Deploy {
                name: name.clone(),
                prover: prover.clone(),
                verifier: verifier.clone(),
            },
            Payload::Run { workflow } => RpcPayload::Run {
                workflow: workflow.clone(),
            },
            Payload::Proof {
                parent,
                prover,
                proof,
                files: f,
            } => RpcPayload::Proof {
                parent: parent.to_hex(),
                prover: prover.to_hex(),
                proof: STANDARD.encode(proof),
                files: files(f),
            },
            Payload::ProofKey { parent, key } => RpcPayload::ProofKey {
                parent: parent.to_hex(),
                key: hex::encode(key),
            },
            Payload::Verification {
                parent,
                verifier,
                verification,
                files: f,
            } => RpcPayload::Verification {
                parent: parent.to_hex(),
                verifier: verifier.to_hex(),
                verification: STANDARD.encode(verification),
                files: files(f),
            },
            Payload::Cancel { parent } => RpcPayload::Cancel {
                parent: parent.to_hex(),
            },
        };
        Self {
            author: tx.author.to_hex(),
            hash: tx.hash.to_hex(),
            payload,
            nonce: tx.nonce,
            signature: tx.signature.to_hex(),
        }
    }
}

/// A Run → Proof → Verification tree, in the original's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransactionTree {
    Root {
        children: Vec<TransactionTree>,
        hash: Hash,
    },
    Node {
        children: Vec<TransactionTree>,
        hash: Hash,
    },
    Leaf {
        hash: Hash,
    },
}

impl TransactionTree {
    /// Builds the tree rooted at `root` from `(hash, parent)` edges, children in the order given.
    /// A root without children is still a `Root`; a non-root without children is a `Leaf`.
    pub fn build(root: Hash, edges: &[(Hash, Hash)]) -> Self {
        Self::Root {
            children: Self::children_of(root, edges, 0),
            hash: root,
        }
    }

    fn children_of(parent: Hash, edges: &[(Hash, Hash)], depth: usize) -> Vec<Self> {
        // The original's trees are two levels deep; the bound guards against cycles in bad data.
        if depth > 16 {
            return Vec::new();
        }
        edges
            .iter()
            .filter(|(_, p)| *p == parent)
            .map(|(hash, _)| {
                let children = Self::children_of(*hash, edges, depth + 1);
                if children.is_empty() {
                    Self::Leaf { hash: *hash }
                } else {
                    Self::Node {
                        children,
                        hash: *hash,
                    }
                }
            })
            .collect()
    }

    pub fn hash(&self) -> Hash {
        match self {
            Self::Root { hash, .. } | Self::Node { hash, .. } | Self::Leaf { hash } => *hash,
        }
    }
}
