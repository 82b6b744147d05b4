//! The standard Prometheus process series of the node itself, without the `gevulot_` prefix so
//! that dashboards and alerts written for any Prometheus exporter work unchanged:
//! `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_threads` and `process_start_time_seconds`.
//! Read from the kernel at scrape time (`/proc/self` and the process CPU clock); a value that
//! cannot be read keeps its last one.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The process series and the registry that holds them.
pub(super) struct ProcessMetrics {
    pub(super) registry: Registry,
    cpu_seconds: Counter<f64, AtomicU64>,
    resident_bytes: Gauge,
    virtual_bytes: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    threads: Gauge,
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let cpu_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "process_cpu_seconds",
            "CPU time the node process has used, user and system, in seconds",
            cpu_seconds.clone(),
        );
        let mut gauge = |name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let resident_bytes = gauge(
            "process_resident_memory_bytes",
            "Resident memory of the node process, in bytes",
        );
        let virtual_bytes = gauge(
            "process_virtual_memory_bytes",
            "Virtual memory of the node process, in bytes",
        );
        let open_fds = gauge(
            "process_open_fds",
            "File descriptors the node process holds",
        );
        let max_fds = gauge(
            "process_max_fds",
            "The node process's limit of open file descriptors (its soft RLIMIT_NOFILE)",
        );
        let threads = gauge("process_threads", "Threads of the node process");
        let started = Gauge::<f64, AtomicU64>::default();
        started.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        registry.register(
            "process_start_time_seconds",
            "When the node started (its metrics were set up), in seconds since the Unix epoch",
            started,
        );
        Self {
            registry,
            cpu_seconds,
            resident_bytes,
            virtual_bytes,
            open_fds,
            max_fds,
            threads,
        }
    }
}

impl ProcessMetrics {
    /// Reads the process's figures now.
    pub(super) fn refresh(&self) {
        if let Ok(t) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID) {
            let seconds = t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9;
            let grown = seconds - self.cpu_seconds.get();
            if grown > 0.0 {
                self.cpu_seconds.inc_by(grown);
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let field = |name: &str| {
                status.lines().find_map(|l| {
                    l.strip_prefix(name)?
                        .trim()
                        .trim_end_matches(" kB")
                        .parse::<i64>()
                        .ok()
                })
            };
            if let Some(kib) = field("VmRSS:") {
                self.resident_bytes.set(kib.saturating_mul(1024));
            }
            if let Some(kib) = field("VmSize:") {
                self.virtual_bytes.set(kib.saturating_mul(1024));
            }
            if let Some(n) = field("Threads:") {
                self.threads.set(n);
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            // The directory being read holds one descriptor of its own.
            self.open_fds
                .set(i64::try_from(fds.count()).unwrap_or(i64::MAX) - 1);
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits")
            && let Some(soft) = max_open_files(&limits)
        {
            self.max_fds.set(soft);
        }
    }
}

/// The soft limit on the "Max open files" line of `/proc/<pid>/limits` (none when unlimited).
fn max_open_files(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_read_from_the_limits_table() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             127431               127431               processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            max_open_files(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
        assert_eq!(max_open_files("Max processes 1 1 processes\n"), None);
    }

    /// Refreshes `metrics` and reads the value of each series from its exposition.
    fn scrape(metrics: &ProcessMetrics) -> impl Fn(&str) -> f64 {
        metrics.refresh();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).expect("encode");
        move |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        }
    }

    #[test]
    fn the_series_follow_the_process() {
        let metrics = ProcessMetrics::default();
        // Some CPU to count.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        let value = scrape(&metrics);
        assert!(value("process_cpu_seconds_total") > 0.0);
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_threads") >= 1.0);
        assert!(value("process_start_time_seconds") > 1.6e9);
        // The counter only grows.
        let before = value("process_cpu_seconds_total");
        assert!(scrape(&metrics)("process_cpu_seconds_total") >= before);
    }
}
