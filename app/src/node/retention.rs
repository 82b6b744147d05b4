//! Retention on a running node: the collector (`crate::collect`) once an hour, each pass's
//! report in the log and the last one kept for the API.

use std::time::Duration;

use tracing::{info, warn};

use crate::collect::{Collected, Retention, collect};

use super::{Node, NodeError};

/// How often the collector runs.
const COLLECT_EVERY: Duration = Duration::from_secs(3600);

impl Node {
    /// One collector pass now.
    pub async fn collect(&self, retention: &Retention) -> Result<Collected, NodeError> {
        let collected = collect(self.store(), self.data_dir(), retention).await?;
        if collected.files() > 0
            || collected.history_rows > 0
            || collected.sessions > 0
            || collected.deliveries > 0
        {
            info!(
                target: "gevulot",
                freed_bytes = collected.bytes(),
                files = collected.files(),
                outputs = collected.outputs.files,
                images = collected.images.files,
                vm_logs = collected.vm_logs.files,
                content = collected.content.files,
                history_rows = collected.history_rows,
                sessions = collected.sessions,
                deliveries = collected.deliveries,
                took_ms = collected.took.as_millis() as u64,
                "retention: deleted what expired"
            );
        }
        Ok(collected)
    }

    /// Runs the collector now and every hour until [`Node::shutdown`].
    pub fn keep_collecting(&self, retention: Retention) {
        let node = self.clone();
        self.keep(tokio::spawn(async move {
            let mut every = tokio::time::interval(COLLECT_EVERY);
            loop {
                every.tick().await;
                if let Err(e) = node.collect(&retention).await {
                    warn!(target: "gevulot", error = %e, "the retention collector failed; it runs again in an hour");
                }
            }
        }));
    }
}
