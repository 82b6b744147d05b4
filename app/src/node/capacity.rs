//! What this node announces to the network about itself (see `p2p::capacity`): its resources,
//! the GPUs of its pool by model, what is free now, its queue, whether it executes or drains.

use std::time::Duration;

use tokio::sync::watch;
use tracing::debug;

use crate::p2p::Capacity;

use super::Node;

impl Node {
    /// This node's capacity now.
    pub async fn capacity(&self) -> Capacity {
        let resources = self.resources();
        let usage = self.usage();
        let gpus = match self.gpus().await {
            Ok(gpus) => gpus
                .iter()
                // What a task could get: in the pool and ready (as the scheduler counts them).
                .filter(|g| {
                    matches!(
                        g.state,
                        crate::gpu::PoolState::Free | crate::gpu::PoolState::Busy(_)
                    )
                })
                .map(|g| {
                    g.gpu
                        .as_ref()
                        .map_or_else(|| "unknown GPU".to_string(), |gpu| gpu.model())
                })
                .collect(),
            Err(e) => {
                debug!(target: "gevulot", error = %e, "cannot read the GPU pool for the capacity announcement");
                Vec::new()
            }
        };
        let execution = resources.execution && usage.is_some();
        Capacity {
            execution,
            draining: self.drain_state().draining(),
            cpus: resources.cpus,
            mem_mib: resources.mem_mib,
            gpus,
            free_cpus: usage.map_or(0, |u| u.free_cpus),
            free_mem_mib: usage.map_or(0, |u| u.free_mem_mib),
            free_gpus: usage.map_or(0, |u| u.free_gpus as u64),
            running: usage.map_or(0, |u| u.running as u64),
            waiting: usage.map_or(0, |u| u.waiting as u64),
            download_url: self.file_base_url().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            at_ms: 0,
            holds: Vec::new(),
        }
    }
}

/// Keeps `capacity` equal to the node's, refreshed every `every` (the network announces the
/// latest value at the same pace).
pub(super) async fn keep_current(
    node: Node,
    capacity: watch::Sender<Option<Capacity>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = node.capacity().await;
        if capacity.send(Some(now)).is_err() {
            return;
        }
    }
}
