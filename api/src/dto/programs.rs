//! Deployed programs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use app::model::Program;

use super::*;

/// Resources a program asks for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Resources {
    pub mem_mib: u64,
    pub cpus: u64,
    pub gpus: u64,
}

/// A deployed program.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProgramInfo {
    pub hash: String,
    pub name: String,
    pub image_file_name: String,
    pub image_file_url: String,
    /// Hex BLAKE3 of the image.
    pub image_file_checksum: String,
    pub resources: Resources,
    /// True when the Deploy named no requirements and the defaults apply.
    pub resources_defaulted: bool,
    /// `prover` or `verifier`.
    pub role: String,
    /// The Deploy transaction (hex).
    pub deploy_tx: String,
    pub created_at: String,
    /// Where the image stands on this node (fetched as soon as the Deploy is stored, unless this
    /// node can never run the program: then `not_needed`); absent on a node that does not
    /// execute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<super::FileFetchInfo>,
}

impl ProgramInfo {
    /// With where its image stands on this node.
    pub fn fetched(mut self, state: Option<app::download::FetchState>) -> Self {
        self.image = state.map(|s| {
            super::FileFetchInfo::new(&self.image_file_name, &self.image_file_checksum, &s)
        });
        self
    }
}

impl From<&Program> for ProgramInfo {
    fn from(p: &Program) -> Self {
        let r = p.resource_requirements.unwrap_or_default();
        Self {
            hash: p.hash.to_hex(),
            name: p.name.clone(),
            image_file_name: p.image_file_name.clone(),
            image_file_url: p.image_file_url.clone(),
            image_file_checksum: p.image_file_checksum.clone(),
            resources: Resources {
                mem_mib: r.mem,
                cpus: r.cpus,
                gpus: r.gpus,
            },
            resources_defaulted: p.resource_requirements.is_none(),
            role: p.role.as_str().to_string(),
            deploy_tx: p.deploy_tx.to_hex(),
            created_at: rfc3339(p.created_at_ms),
            image: None,
        }
    }
}

/// A program with the runs that use it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProgramDetail {
    #[serde(flatten)]
    pub program: ProgramInfo,
    /// The newest runs using this program (hex hashes, at most 50).
    pub runs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProgramList {
    pub items: Vec<ProgramInfo>,
}
