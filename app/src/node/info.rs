//! The node itself: identity, database, uptime, what it offers to programs, readiness.

use std::time::SystemTime;

use crate::pipeline::Usage;

use super::{Node, NodeError};

/// Who and what this node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub version: &'static str,
    pub public_key: crate::crypto::PublicKey,
    /// `postgres` or `sqlite`.
    pub database: &'static str,
    pub database_version: String,
    pub started_at: SystemTime,
    pub execution: bool,
    pub file_base_url: String,
    pub transactions: i64,
}

/// What this node offers to programs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpus: u64,
    pub mem_mib: u64,
    /// PCI addresses of the GPUs configured for programs (`GEVULOT_GPU_DEVICES`).
    pub gpu_devices: Vec<String>,
    /// False when the node never executes (`GEVULOT_NODE_NO_EXECUTION`).
    pub execution: bool,
    /// Below this many free bytes on the data filesystem, no download or VM starts and the node
    /// is not ready (`GEVULOT_MIN_FREE_MB`; 0: no floor).
    pub min_free_bytes: u64,
}

impl Node {
    pub async fn info(&self) -> Result<NodeInfo, NodeError> {
        let store = self.store();
        Ok(NodeInfo {
            version: env!("CARGO_PKG_VERSION"),
            public_key: self.public_key(),
            database: self.database(),
            database_version: store.server_version().await?,
            started_at: self.started_at(),
            execution: self.parts().resources.execution,
            file_base_url: self.file_base_url().to_string(),
            transactions: store.count_transactions().await?,
        })
    }

    /// `postgres` or `sqlite`.
    pub fn database(&self) -> &'static str {
        self.store().backend().as_str()
    }

    pub fn resources(&self) -> &Resources {
        &self.parts().resources
    }

    /// What the node's tasks hold and wait for now; `None` when it never executes.
    pub fn usage(&self) -> Option<Usage> {
        self.parts().pipeline.as_ref().map(|p| p.usage())
    }

    /// How the intake's group commit has done: commits and the transactions in them.
    pub fn commit_stats(&self) -> crate::intake::CommitStats {
        self.parts().intake.commit_stats()
    }

    /// How the task phases' writer has done: commits and the phase changes in them.
    pub fn phase_commit_stats(&self) -> crate::intake::CommitStats {
        self.parts().intake.phase_commit_stats()
    }

    /// What became of transactions whose commit went unanswered: found stored and announced,
    /// found not stored, not kept, and waiting for the database now.
    pub fn unknown_outcomes(&self) -> crate::intake::UnknownOutcomes {
        self.parts().intake.unknown_outcomes()
    }

    /// Whether the database answers.
    pub async fn database_ready(&self) -> Result<(), NodeError> {
        Ok(self.store().ping().await?)
    }

    /// What each area of the data directory holds, walked at most once a minute (the walk
    /// touches every file).
    pub async fn data_use(&self) -> std::sync::Arc<Vec<crate::data_dir::AreaUse>> {
        const FRESH: std::time::Duration = std::time::Duration::from_secs(60);
        let mut cached = self.inner.data_use.lock().await;
        if let Some((at, usage)) = &*cached
            && at.elapsed() < FRESH
        {
            return usage.clone();
        }
        let data = self.data_dir().clone();
        let usage = std::sync::Arc::new(
            tokio::task::spawn_blocking(move || data.usage())
                .await
                .unwrap_or_default(),
        );
        *cached = Some((std::time::Instant::now(), usage.clone()));
        usage
    }
}
