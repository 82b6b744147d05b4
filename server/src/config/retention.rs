//! How long the node keeps what it only needs for a while (0 days: forever).

use std::time::Duration;

use clap::Args;

#[derive(Clone, Debug, Args)]
pub struct RetentionArgs {
    /// Days the input and output files of finished Runs and their results are kept (the
    /// transactions themselves stay).
    #[arg(long, env = "GEVULOT_OUTPUT_RETENTION_DAYS", default_value_t = 30)]
    pub output_retention_days: u64,

    /// Days a program image no task used is kept (a later Run downloads it again).
    #[arg(long, env = "GEVULOT_IMAGE_RETENTION_DAYS", default_value_t = 30)]
    pub image_retention_days: u64,

    /// Days a VM's console log is kept.
    #[arg(long, env = "GEVULOT_VM_LOG_RETENTION_DAYS", default_value_t = 14)]
    pub vm_log_retention_days: u64,

    /// Days an ended task's phase history is kept (the task keeps its final phase).
    #[arg(
        long,
        env = "GEVULOT_TASK_HISTORY_RETENTION_DAYS",
        default_value_t = 90
    )]
    pub task_history_retention_days: u64,

    /// Hours a console sign-in lasts; the hourly collector deletes expired sessions.
    #[arg(long, env = "GEVULOT_SESSION_HOURS", default_value_t = 12,
          value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub session_hours: u64,

    /// Days a webhook's delivery log keeps a finished delivery.
    #[arg(long, env = "GEVULOT_WEBHOOK_LOG_RETENTION_DAYS", default_value_t = 30)]
    pub webhook_log_retention_days: u64,

    /// Days the audit log keeps an entry.
    #[arg(long, env = "GEVULOT_AUDIT_RETENTION_DAYS", default_value_t = 365)]
    pub audit_retention_days: u64,
}

fn days(n: u64) -> Option<Duration> {
    (n > 0).then(|| Duration::from_secs(n.saturating_mul(86_400)))
}

impl RetentionArgs {
    /// The collector's settings; VM logs are in `vm_log_dir`.
    pub fn collector(&self, vm_log_dir: std::path::PathBuf) -> app::collect::Retention {
        app::collect::Retention {
            outputs: days(self.output_retention_days),
            images: days(self.image_retention_days),
            vm_logs: days(self.vm_log_retention_days),
            vm_log_dir: Some(vm_log_dir),
            task_history: days(self.task_history_retention_days),
            webhook_log: days(self.webhook_log_retention_days),
        }
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_hours.saturating_mul(3600))
    }

    pub fn audit(&self) -> Option<Duration> {
        days(self.audit_retention_days)
    }
}
