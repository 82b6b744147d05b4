//! Tasks: the execution of one workflow step, and their phases.

use crate::tx::Hash;

/// Execution phases of a task. Terminal phases end a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Queued,
    WaitingForProgram,
    Downloading,
    WaitingForResources,
    Booting,
    Running,
    Submitting,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl Phase {
    pub const ALL: [Phase; 11] = [
        Phase::Queued,
        Phase::WaitingForProgram,
        Phase::Downloading,
        Phase::WaitingForResources,
        Phase::Booting,
        Phase::Running,
        Phase::Submitting,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Cancelled,
        Phase::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::WaitingForProgram => "waiting_for_program",
            Phase::Downloading => "downloading",
            Phase::WaitingForResources => "waiting_for_resources",
            Phase::Booting => "booting",
            Phase::Running => "running",
            Phase::Submitting => "submitting",
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
            Phase::Cancelled => "cancelled",
            Phase::TimedOut => "timed_out",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Phase::Succeeded | Phase::Failed | Phase::Cancelled | Phase::TimedOut
        )
    }
}

/// Why a task failed, in a few words an operator can count by: the category of a `failed` or
/// `timed_out` task's reason (`gevulot_task_failures_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The program itself reported failure.
    Program,
    /// The VM or its guest kernel stopped without a result.
    Crash,
    /// The VM did not start.
    Boot,
    /// An image or input could not be downloaded, or its checksum was wrong.
    Download,
    /// The program ran past `GEVULOT_MAX_VM_RUN_TIME`.
    Deadline,
    /// A limit or rule stopped it: its workspace's size, its requests, an output the node
    /// refused.
    Limits,
    /// It can never fit this node's resources.
    Resources,
    /// Its program was never deployed.
    NotDeployed,
    /// The node stopped during its last attempt.
    NodeStopped,
    Other,
}

impl FailureReason {
    pub const ALL: [FailureReason; 10] = [
        FailureReason::Program,
        FailureReason::Crash,
        FailureReason::Boot,
        FailureReason::Download,
        FailureReason::Deadline,
        FailureReason::Limits,
        FailureReason::Resources,
        FailureReason::NotDeployed,
        FailureReason::NodeStopped,
        FailureReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Program => "program",
            FailureReason::Crash => "crash",
            FailureReason::Boot => "boot",
            FailureReason::Download => "download",
            FailureReason::Deadline => "deadline",
            FailureReason::Limits => "limits",
            FailureReason::Resources => "resources",
            FailureReason::NotDeployed => "not_deployed",
            FailureReason::NodeStopped => "node_stopped",
            FailureReason::Other => "other",
        }
    }

    /// The category of a task that ended in `phase` with `error`; `None` unless it failed or
    /// timed out. (The pipeline's reasons are its own sentences; this reads them.)
    pub fn of(phase: Phase, error: Option<&str>) -> Option<Self> {
        match phase {
            Phase::TimedOut => return Some(FailureReason::Deadline),
            Phase::Failed => {}
            _ => return None,
        }
        let e = error.unwrap_or_default();
        let has = |words: &[&str]| words.iter().any(|w| e.contains(w));
        Some(if has(&["the node stopped during"]) {
            FailureReason::NodeStopped
        } else if has(&["was not deployed within"]) {
            FailureReason::NotDeployed
        } else if has(&["cannot run on this node"]) {
            FailureReason::Resources
        } else if has(&["the program reported", "the program submitted"]) {
            FailureReason::Program
        } else if has(&["the VM did not start", "did not create its socket"]) {
            FailureReason::Boot
        } else if has(&[
            "without a result",
            "panicked",
            "internal error",
            "guest service closed",
        ]) {
            FailureReason::Crash
        } else if has(&["GEVULOT_MAX_WORKSPACE_MB", "requests; its VM", "refused:"]) {
            FailureReason::Limits
        } else if has(&["://", "download", "BLAKE3", "checksum"]) {
            FailureReason::Download
        } else {
            FailureReason::Other
        })
    }
}

/// What a task produces: a Proof (a prover's step) or a Verification (a verifier's step).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    Proof,
    Verification,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Proof => "proof",
            TaskKind::Verification => "verification",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [TaskKind::Proof, TaskKind::Verification]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// A unit of execution: one workflow step of one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub id: i64,
    /// The Run (for a proving step) or the Proof (for a verifying step) being executed.
    pub tx: Hash,
    pub step_index: i64,
    pub program: Hash,
    /// What the step produces.
    pub kind: TaskKind,
    pub phase: Phase,
    pub attempt: i64,
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// One entry of a task's timeline: the phase it entered, when, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhaseChange {
    pub task_id: i64,
    pub phase: Phase,
    /// The reason for a failure or retry, or what the task waits for.
    pub note: Option<String>,
    pub at_ms: i64,
}

/// What to create a task from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTask {
    pub tx: Hash,
    pub step_index: i64,
    pub program: Hash,
    pub kind: TaskKind,
}

/// A phase change to make: the task, the phase it enters, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhaseChangeOf {
    pub task: i64,
    pub phase: Phase,
    /// The reason for a failure or retry, or what the task waits for.
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_fall_into_categories() {
        let of = |phase, e: &str| FailureReason::of(phase, Some(e)).map(FailureReason::as_str);
        assert_eq!(of(Phase::Succeeded, ""), None);
        assert_eq!(of(Phase::Cancelled, "cancelled"), None);
        assert_eq!(
            of(Phase::TimedOut, "the program ran longer than 5 s"),
            Some("deadline")
        );
        for (reason, category) in [
            (
                "the program reported that the task failed (Failed); its console ended with: x",
                "program",
            ),
            (
                "failed 3 times, the last with: the VM did not start: spawn failed",
                "boot",
            ),
            (
                "failed 3 times, the last with: the VM stopped without a result; its console ended with: http://x",
                "crash",
            ),
            (
                "http://127.0.0.1:1/p.img: the content's BLAKE3 is ab, not the expected cd; nothing was kept",
                "download",
            ),
            (
                "failed 3 times, the last with: http://x/i: failed after 3 attempts: connection refused",
                "download",
            ),
            (
                "the program wrote more than 32 MiB to /workspace (GEVULOT_MAX_WORKSPACE_MB); its VM was stopped",
                "limits",
            ),
            (
                "the program sent the node's guest service more than 1000 requests; its VM was stopped",
                "limits",
            ),
            (
                "output \"/workspace/proof.dat\" refused: a symbolic link; outputs must be regular files",
                "limits",
            ),
            (
                "output /workspace/proof.dat refused: the guest reported checksum ab, but the file's BLAKE3 is cd",
                "limits",
            ),
            (
                "needs 64 CPUs, the node has 4; it cannot run on this node",
                "resources",
            ),
            (
                "program ab was not deployed within 3600 s of the Run; deploy it, then submit the Run again",
                "not_deployed",
            ),
            (
                "the node stopped during attempt 3 of 3; no attempt is left",
                "node_stopped",
            ),
            ("something new", "other"),
        ] {
            assert_eq!(of(Phase::Failed, reason), Some(category), "{reason}");
        }
    }
}
