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
