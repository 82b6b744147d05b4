//! Deployed programs.

use crate::tx::{Hash, ResourceRequest};

/// The part a program plays in a workflow: a prover's step yields a Proof, a verifier's a
/// Verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgramRole {
    Prover,
    Verifier,
}

impl ProgramRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ProgramRole::Prover => "prover",
            ProgramRole::Verifier => "verifier",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [ProgramRole::Prover, ProgramRole::Verifier]
            .into_iter()
            .find(|r| r.as_str() == text)
    }

    /// What a step running a program in this role produces.
    pub fn result_kind(self) -> super::TaskKind {
        match self {
            ProgramRole::Prover => super::TaskKind::Proof,
            ProgramRole::Verifier => super::TaskKind::Verification,
        }
    }
}

/// A deployed program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub hash: Hash,
    pub name: String,
    pub image_file_name: String,
    pub image_file_url: String,
    pub image_file_checksum: String,
    /// What the Deploy asked for; `None` means the default ([`ResourceRequest::default`]).
    pub resource_requirements: Option<ResourceRequest>,
    /// The role it was first deployed in.
    pub role: ProgramRole,
    pub deploy_tx: Hash,
    pub created_at_ms: i64,
}

impl Program {
    /// The image's path on the download server and under the data directory.
    pub fn image_path(&self) -> String {
        format!("images/{}/{}", self.hash.to_hex(), self.image_file_name)
    }
}
