//! Scheduler decisions per second with 10,000 queued tasks of mixed sizes: each decision is one
//! `schedule()` pass after a running task finishes (pure logic; no VMs). Prints and writes
//! `target/bench/scheduler.txt`.

use std::collections::BTreeSet;
use std::time::Instant;

use app::scheduler::{Request, Scheduler};

fn main() {
    let queued = 10_000i64;
    let pool: BTreeSet<String> = (0..8).map(|i| format!("0000:{:02x}:00.0", i + 1)).collect();
    let mut s = Scheduler::new(64, 512 * 1024, pool, Some(16));
    // A deterministic mix: most tasks small, some large, some with GPUs.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for task in 0..queued {
        let r = next();
        s.submit(Request {
            task,
            program: format!("p{}", r % 50),
            priority: (r % 3) as i32,
            cpus: 1 + (r >> 8) % 16,
            mem_mib: 1024 * (1 + (r >> 16) % 64),
            gpus: if (r >> 24) % 4 == 0 {
                1 + (r >> 28) % 2
            } else {
                0
            },
        })
        .expect("fits the node");
    }
    let mut running: Vec<i64> = s.schedule().into_iter().map(|a| a.task).collect();
    let start = Instant::now();
    let mut decisions = 0u64;
    let mut started = 0usize;
    while s.waiting() > queued as usize / 2 && !running.is_empty() {
        let i = (next() as usize) % running.len();
        let done = running.swap_remove(i);
        s.finish(done);
        let new = s.schedule();
        started += new.len();
        running.extend(new.into_iter().map(|a| a.task));
        decisions += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let report = format!(
        "scheduler benchmark: {queued} queued tasks (mixed CPUs, memory, GPUs, priorities; per-program limit 16)\n\
         {:<50} {:>10.0} decisions/s\n{:<50} {:>10}\n{:<50} {:>10.1} µs\n",
        "schedule() passes after a task finishes",
        decisions as f64 / secs,
        "tasks started",
        started,
        "mean time per decision",
        secs * 1e6 / decisions.max(1) as f64,
    );
    print!("{report}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join("scheduler.txt"), report);
}
