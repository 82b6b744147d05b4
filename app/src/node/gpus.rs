//! The GPU pool: the host's GPUs (sysfs), the operators' decisions (database) and what the
//! pipeline's tasks hold, combined; changes reach the pipeline at once.

use std::collections::BTreeMap;

use crate::gpu::{GpuStatus, PoolDecision, PoolState};
use crate::vm::qemu::GpuPassthrough;

use super::{Node, NodeError};

impl Node {
    /// The host's GPUs and configured addresses, each with its pool state.
    pub async fn gpus(&self) -> Result<Vec<GpuStatus>, NodeError> {
        let assignments = self.store().gpu_assignments().await?;
        let sysfs = self.parts().sysfs.clone();
        let configured = self.parts().resources.gpu_devices.clone();
        let busy = self
            .parts()
            .pipeline
            .as_ref()
            .map(|p| p.busy_gpus())
            .unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            crate::gpu::pool(&sysfs, &configured, &assignments, &busy)
        })
        .await
        .map_err(|_| NodeError::Internal("the GPU inventory failed".into()))?
        .map_err(|e| NodeError::SysfsUnavailable(e.to_string()))
    }

    /// Records an operator's decision about the GPU at `address` and hands the pipeline the
    /// GPUs it may use now; returns every GPU after the change.
    pub async fn change_gpu(
        &self,
        address: &str,
        decision: PoolDecision,
        reason: Option<&str>,
        by: &crate::model::Actor,
    ) -> Result<Vec<GpuStatus>, NodeError> {
        let result = self.apply_gpu_decision(address, decision, reason, by).await;
        let detail = match &result {
            Ok(_) => reason.map_or_else(
                || decision.as_str().to_string(),
                |r| format!("{}: {r}", decision.as_str()),
            ),
            Err(e) => format!("{}: {e}", decision.as_str()),
        };
        self.record(
            by,
            crate::model::AuditAction::GpuPool,
            Some(address),
            Some(&detail),
            result.is_ok(),
        )
        .await;
        result
    }

    async fn apply_gpu_decision(
        &self,
        address: &str,
        decision: PoolDecision,
        reason: Option<&str>,
        by: &crate::model::Actor,
    ) -> Result<Vec<GpuStatus>, NodeError> {
        if !crate::gpu::is_pci_address(address) {
            return Err(NodeError::InvalidParameter(format!(
                "address: {address:?} is not a PCI address (lowercase dddd:bb:dd.f, e.g. 0000:01:00.0)"
            )));
        }
        let known = self
            .gpus()
            .await?
            .iter()
            .any(|s| s.address == address && s.gpu.is_some());
        if !known && decision != PoolDecision::Released {
            return Err(NodeError::NotFound(format!(
                "there is no GPU at {address} on this host (see GET /api/v1/gpus)"
            )));
        }
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if decision.needs_reason() && reason.is_none() {
            return Err(NodeError::InvalidParameter(
                "reason: say why the GPU is set aside, for the other operators".into(),
            ));
        }
        self.store()
            .set_gpu_assignment(address, decision, reason, &by.name)
            .await?;
        tracing::info!(target: "gevulot", by = %by.name, gpu = %address, state = decision.as_str(), "GPU pool changed");
        let updated = self.gpus().await?;
        if let Some(pipeline) = &self.parts().pipeline {
            pipeline.set_gpu_pool(usable(&updated));
        }
        Ok(updated)
    }

    /// Tells the pipeline which GPUs it may use now (on start, and after outside changes).
    pub async fn refresh_gpu_pool(&self) -> Result<(), NodeError> {
        if let Some(pipeline) = &self.parts().pipeline {
            pipeline.set_gpu_pool(usable(&self.gpus().await?));
        }
        Ok(())
    }
}

/// The GPUs programs may get: in the pool, ready, and neither reserved nor in maintenance (a busy
/// one stays: it is free again when its task ends), each with the functions it passes through.
pub fn usable(statuses: &[GpuStatus]) -> BTreeMap<String, GpuPassthrough> {
    statuses
        .iter()
        .filter(|s| matches!(s.state, PoolState::Free | PoolState::Busy(_)))
        .filter_map(|s| {
            let gpu = s.gpu.as_ref()?;
            Some((
                s.address.clone(),
                GpuPassthrough {
                    functions: gpu
                        .passthrough_functions()
                        .into_iter()
                        .map(str::to_string)
                        .collect(),
                },
            ))
        })
        .collect()
}
