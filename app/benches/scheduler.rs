//! Scheduler decisions per second with 10,000 queued tasks of mixed sizes: each decision is one
//! `schedule()` pass after a running task finishes (a pass over the whole queue); and the cost
//! of a submission's pass while nothing was freed (it looks at the new task alone), with 10 and
//! with 10,000 tasks waiting, as a ratio (pure logic; no VMs). Prints and writes
//! `target/bench/scheduler.txt`.

use std::collections::BTreeSet;
use std::time::Instant;

use app::scheduler::{Request, Scheduler};

/// Mean time of `submit` + `schedule()` for tasks that cannot start (everything is held), with
/// `waiting` tasks already queued, in microseconds.
fn submission_pass_micros(waiting: i64) -> f64 {
    let mut s = Scheduler::new(4, 4096, BTreeSet::new(), None);
    let big = |task| Request {
        task,
        program: "p".into(),
        priority: 0,
        cpus: 4,
        mem_mib: 4096,
        gpus: 0,
    };
    s.submit(big(-1)).expect("fits");
    let _ = s.schedule();
    for task in 0..waiting {
        s.submit(big(task)).expect("fits");
    }
    let _ = s.schedule();
    let rounds = 20_000;
    let start = Instant::now();
    for task in waiting..waiting + rounds {
        s.submit(big(task)).expect("fits");
        assert!(s.schedule().is_empty());
    }
    start.elapsed().as_secs_f64() * 1e6 / rounds as f64
}

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
    let (few, many) = (submission_pass_micros(10), submission_pass_micros(queued));
    let report = format!(
        "scheduler benchmark: {queued} queued tasks (mixed CPUs, memory, GPUs, priorities; per-program limit 16)\n\
         {:<50} {:>10.0} decisions/s\n{:<50} {:>10}\n{:<50} {:>10.1} µs\n\
         {:<50} {:>10.2} µs\n{:<50} {:>10.2} µs\n{:<50} {:>10.2}x\n",
        "schedule() passes after a task finishes",
        decisions as f64 / secs,
        "tasks started",
        started,
        "mean time per decision",
        secs * 1e6 / decisions.max(1) as f64,
        "submission + pass, nothing freed, 10 waiting",
        few,
        "submission + pass, nothing freed, 10,000 waiting",
        many,
        "ratio (10,000 / 10 waiting)",
        many / few.max(1e-9),
    );
    print!("{report}");
    testkit::bench::Figures::new("scheduler")
        .add(
            "schedule() passes after a task finishes",
            decisions as f64 / secs,
            "decisions/s",
        )
        .against(
            "submission + pass, 10,000 waiting",
            many,
            "µs",
            "10 waiting",
            few,
        )
        .write(&report);
}
