//! Task metrics followed from the node's event bus: how tasks end
//! (`gevulot_tasks_ended_total{phase}`), why they failed (`gevulot_task_failures_total{reason}`:
//! the categories of `app::model::FailureReason`), how long their VMs take to boot (`booting` → `running`,
//! `gevulot_vm_boot_seconds`) and how long programs run (`running` → the next phase,
//! `gevulot_vm_run_seconds`).
//!
//! Times are measured here, when the events arrive, so they include the event bus's small delay;
//! a task this process did not see boot (the node restarted) is counted when it ends but not
//! timed. If the follower falls behind the bus, what it missed is not counted.

use std::collections::HashMap;
use std::time::Instant;

use app::events::Event;
use app::model::{FailureReason, Phase};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

use super::PhaseLabels;

/// Tasks timed at once at most; beyond it the oldest timings are forgotten.
const MAX_TIMED: usize = 65_536;

#[derive(Clone, Debug)]
pub(super) struct TaskMetrics {
    ended: Family<PhaseLabels, Counter>,
    failures: Family<ReasonLabels, Counter>,
    boot_seconds: Histogram,
    run_seconds: Histogram,
}

impl TaskMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let ended = Family::<PhaseLabels, Counter>::default();
        // Every ending exists from the start at 0, so `increase()` sees the first one.
        for phase in Phase::ALL.iter().filter(|p| p.is_terminal()) {
            let _ = ended.get_or_create(&PhaseLabels {
                phase: phase.as_str().to_string(),
            });
        }
        registry.register(
            "tasks_ended",
            "Tasks that ended, by their final phase (succeeded, failed, timed_out, cancelled)",
            ended.clone(),
        );
        let failures = Family::<ReasonLabels, Counter>::default();
        for reason in FailureReason::ALL {
            let _ = failures.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        registry.register(
            "task_failures",
            "Tasks that ended failed or timed out, by why: program, crash, boot, download, deadline, limits, resources, not_deployed, node_stopped, other",
            failures.clone(),
        );
        // 0.25 s to ~2.3 h.
        let boot_seconds = Histogram::new(exponential_buckets(0.25, 2.0, 12));
        registry.register(
            "vm_boot_seconds",
            "From a task's VM booting to its program running",
            boot_seconds.clone(),
        );
        let run_seconds = Histogram::new(exponential_buckets(0.25, 2.0, 16));
        registry.register(
            "vm_run_seconds",
            "From a task's program running to its next phase (its result, a failure, a retry)",
            run_seconds.clone(),
        );
        Self {
            ended,
            failures,
            boot_seconds,
            run_seconds,
        }
    }

    /// Follows `events` until the bus closes.
    pub(super) fn follow(&self, mut events: broadcast::Receiver<Event>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut timings = Timings::default();
            loop {
                match events.recv().await {
                    Ok(Event::TaskChanged {
                        task_id,
                        phase,
                        failure,
                        ..
                    }) => {
                        this.changed(&mut timings, task_id, phase, Instant::now());
                        if let Some(reason) = failure {
                            this.failures
                                .get_or_create(&ReasonLabels {
                                    reason: reason.as_str(),
                                })
                                .inc();
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(target: "gevulot", missed, "task metrics fell behind the event bus");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    fn changed(&self, timings: &mut Timings, task: i64, phase: Phase, now: Instant) {
        if let Some(started) = timings.running.remove(&task) {
            self.run_seconds
                .observe(now.saturating_duration_since(started).as_secs_f64());
        }
        match phase {
            Phase::Booting => insert_bounded(&mut timings.booting, task, now),
            Phase::Running => {
                if let Some(booted) = timings.booting.remove(&task) {
                    self.boot_seconds
                        .observe(now.saturating_duration_since(booted).as_secs_f64());
                }
                insert_bounded(&mut timings.running, task, now);
            }
            _ => {
                timings.booting.remove(&task);
            }
        }
        if phase.is_terminal() {
            self.ended
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str().to_string(),
                })
                .inc();
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// When each task entered `booting` and `running`, bounded.
#[derive(Debug, Default)]
struct Timings {
    booting: HashMap<i64, Instant>,
    running: HashMap<i64, Instant>,
}

/// Records `at` for `task` in `times`, forgetting every timing first when it is full.
fn insert_bounded(times: &mut HashMap<i64, Instant>, task: i64, at: Instant) {
    if times.len() >= MAX_TIMED {
        times.clear();
    }
    times.insert(task, at);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn boot_and_run_times_and_endings() {
        let mut registry = Registry::default();
        let m = TaskMetrics::register(&mut registry);
        let mut t = Timings::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Task 1 boots in 2 s, runs 10 s, then submits and succeeds.
        m.changed(&mut t, 1, Phase::Booting, at(0));
        m.changed(&mut t, 1, Phase::Running, at(2));
        m.changed(&mut t, 1, Phase::Submitting, at(12));
        m.changed(&mut t, 1, Phase::Succeeded, at(13));
        // Task 2 never boots: cancelled while queued.
        m.changed(&mut t, 2, Phase::Cancelled, at(1));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            "vm_boot_seconds_sum 2.0",
            "vm_boot_seconds_count 1",
            "vm_run_seconds_sum 10.0",
            "vm_run_seconds_count 1",
            "tasks_ended_total{phase=\"succeeded\"} 1",
            "tasks_ended_total{phase=\"cancelled\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(t.booting.is_empty() && t.running.is_empty());
    }
}
