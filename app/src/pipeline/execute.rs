//! The seam between the pipeline and the VM executor.

use std::future::Future;
use std::path::PathBuf;

use tokio::sync::{oneshot, watch};

use crate::data_dir::DataDir;
use crate::tx::Hash;
use crate::vm::executor::{ExecError, Executor, Outcome, TaskSpec};
use crate::vm::outputs::AcceptedOutput;

/// What runs a task in a VM. The node uses [`Executor`]; the pipeline's rule tests script it and
/// its benchmark stubs it.
pub trait Execute: Send + Sync + 'static {
    /// Runs `spec` to its end; `started` is told when the program first asks for its task.
    fn execute(
        &self,
        spec: TaskSpec,
        cancel: watch::Receiver<bool>,
        started: oneshot::Sender<()>,
    ) -> impl Future<Output = Result<Outcome, ExecError>> + Send;

    /// Moves accepted outputs to where the download server serves them
    /// ([`DataDir::output_file`]).
    fn store_outputs(
        &self,
        outputs: &[AcceptedOutput],
        data_dir: &DataDir,
        tx: &Hash,
    ) -> std::io::Result<Vec<PathBuf>>;

    /// Removes what is left of a finished task's VM.
    fn cleanup(&self, id: &str);

    /// Where the VM's serial console of task `id` is logged, when it is.
    fn console_log(&self, _id: &str) -> Option<PathBuf> {
        None
    }
}

impl Execute for Executor {
    async fn execute(
        &self,
        spec: TaskSpec,
        cancel: watch::Receiver<bool>,
        started: oneshot::Sender<()>,
    ) -> Result<Outcome, ExecError> {
        self.run_reporting(&spec, cancel, Some(started)).await
    }

    fn store_outputs(
        &self,
        outputs: &[AcceptedOutput],
        data_dir: &DataDir,
        tx: &Hash,
    ) -> std::io::Result<Vec<PathBuf>> {
        Executor::store_outputs(self, outputs, data_dir, tx)
    }

    fn cleanup(&self, id: &str) {
        Executor::cleanup(self, id);
    }

    fn console_log(&self, id: &str) -> Option<PathBuf> {
        Some(Executor::console_log(self, id))
    }
}
