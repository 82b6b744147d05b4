//! Which waiting task runs next: resource-aware (CPUs, memory in MiB, GPUs from the node's pool),
//! fair (higher priority first, FIFO within a priority), with per-program concurrency limits, and
//! without head-of-line blocking: a task that cannot start now never stops a later one that can.
//! A task that can never start on this node (it asks for more than the node has) is refused at
//! once with the reason. Pure logic: the pipeline persists tasks and calls this.
//!
//! A pass over the whole queue happens only when something was freed (a task ended, GPUs joined
//! the pool). Otherwise free resources have only shrunk and per-program counts only grown since
//! the last pass, so no task that did not fit then fits now: a pass after new submissions looks
//! at those alone, and a submission costs the same with 10 or 10,000 tasks waiting.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What a task needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub task: i64,
    /// The program (hex hash), for per-program limits.
    pub program: String,
    /// Higher runs first.
    pub priority: i32,
    pub cpus: u64,
    pub mem_mib: u64,
    pub gpus: u64,
}

/// What a started task holds until it finishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub task: i64,
    pub program: String,
    pub cpus: u64,
    pub mem_mib: u64,
    /// PCI addresses of the GPUs given to this task (and no other).
    pub gpus: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("it asks for {asked} {what}, but this node offers at most {offered}")]
    NeverFits {
        what: &'static str,
        asked: u64,
        offered: u64,
    },
    #[error("task {0} is already known to the scheduler")]
    Duplicate(i64),
}

/// What is free now, and how many tasks of each program run.
#[derive(Clone, Debug)]
struct Free {
    cpus: u64,
    mem_mib: u64,
    /// GPUs in the pool that no task holds.
    gpus: BTreeSet<String>,
    per_program_limit: Option<usize>,
    running_per_program: HashMap<String, usize>,
}

impl Free {
    fn exhausted(&self) -> bool {
        self.cpus == 0 && self.mem_mib == 0
    }

    fn fits(&self, r: &Request) -> bool {
        r.cpus <= self.cpus
            && r.mem_mib <= self.mem_mib
            && r.gpus as usize <= self.gpus.len()
            && self.per_program_limit.is_none_or(|limit| {
                self.running_per_program
                    .get(&r.program)
                    .copied()
                    .unwrap_or(0)
                    < limit
            })
    }

    /// Reserves what `r` needs, when it fits.
    fn take(&mut self, r: &Request) -> Option<Allocation> {
        if !self.fits(r) {
            return None;
        }
        self.cpus -= r.cpus;
        self.mem_mib -= r.mem_mib;
        let gpus: Vec<String> = self.gpus.iter().take(r.gpus as usize).cloned().collect();
        for g in &gpus {
            self.gpus.remove(g);
        }
        *self
            .running_per_program
            .entry(r.program.clone())
            .or_default() += 1;
        Some(Allocation {
            task: r.task,
            program: r.program.clone(),
            cpus: r.cpus,
            mem_mib: r.mem_mib,
            gpus,
        })
    }
}

/// The scheduler's state.
#[derive(Clone, Debug)]
pub struct Scheduler {
    total_cpus: u64,
    total_mem_mib: u64,
    free: Free,
    /// Every GPU in the pool (free or held).
    pool: BTreeSet<String>,
    /// Waiting tasks in the order they may start: (-priority, arrival) → request.
    queue: BTreeMap<(i32, u64), Request>,
    position: HashMap<i64, (i32, u64)>,
    arrivals: u64,
    running: HashMap<i64, Allocation>,
    /// Keys queued since the last pass.
    fresh: Vec<(i32, u64)>,
    /// Something was freed since the last pass: the next one looks at the whole queue.
    freed: bool,
}

impl Scheduler {
    /// A node offering `cpus` and `mem_mib` and the GPUs of `pool`; at most
    /// `per_program_limit` tasks of one program at a time (`None`: no limit).
    pub fn new(
        cpus: u64,
        mem_mib: u64,
        pool: BTreeSet<String>,
        per_program_limit: Option<usize>,
    ) -> Self {
        Self {
            total_cpus: cpus,
            total_mem_mib: mem_mib,
            free: Free {
                cpus,
                mem_mib,
                gpus: pool.clone(),
                per_program_limit,
                running_per_program: HashMap::new(),
            },
            pool,
            queue: BTreeMap::new(),
            position: HashMap::new(),
            arrivals: 0,
            running: HashMap::new(),
            fresh: Vec::new(),
            freed: true,
        }
    }

    /// Why a task asking for `cpus`, `mem_mib` and `gpus` can never start here (it asks for more
    /// than the node has, GPUs counted in the pool as it is now); `None` when it can.
    pub fn never_fits(&self, cpus: u64, mem_mib: u64, gpus: u64) -> Option<Refusal> {
        [
            ("CPUs", cpus, self.total_cpus),
            ("MiB of memory", mem_mib, self.total_mem_mib),
            ("GPUs", gpus, self.pool.len() as u64),
        ]
        .into_iter()
        .find(|(_, asked, offered)| asked > offered)
        .map(|(what, asked, offered)| Refusal::NeverFits {
            what,
            asked,
            offered,
        })
    }

    /// Queues a task, or refuses it when it can never start here.
    pub fn submit(&mut self, request: Request) -> Result<(), Refusal> {
        if self.position.contains_key(&request.task) || self.running.contains_key(&request.task) {
            return Err(Refusal::Duplicate(request.task));
        }
        if let Some(refusal) = self.never_fits(request.cpus, request.mem_mib, request.gpus) {
            return Err(refusal);
        }
        self.arrivals += 1;
        let key = (-request.priority, self.arrivals);
        self.position.insert(request.task, key);
        self.queue.insert(key, request);
        self.fresh.push(key);
        Ok(())
    }

    /// Starts every waiting task that fits now, in queue order, skipping those that do not.
    pub fn schedule(&mut self) -> Vec<Allocation> {
        let mut started = Vec::new();
        let mut keys = Vec::new();
        if std::mem::take(&mut self.freed) {
            self.fresh.clear();
            for (key, request) in &self.queue {
                if self.free.exhausted() {
                    break;
                }
                if let Some(a) = self.free.take(request) {
                    keys.push(*key);
                    started.push(a);
                }
            }
        } else {
            let mut fresh = std::mem::take(&mut self.fresh);
            fresh.sort_unstable();
            for key in fresh {
                // A new task may have been cancelled since.
                let Some(request) = self.queue.get(&key) else {
                    continue;
                };
                if self.free.exhausted() {
                    break;
                }
                if let Some(a) = self.free.take(request) {
                    keys.push(key);
                    started.push(a);
                }
            }
        }
        for key in keys {
            if let Some(r) = self.queue.remove(&key) {
                self.position.remove(&r.task);
            }
        }
        for a in &started {
            self.running.insert(a.task, a.clone());
        }
        started
    }

    /// A running task ended: its resources are free again. Returns whether it was running.
    pub fn finish(&mut self, task: i64) -> bool {
        let Some(a) = self.running.remove(&task) else {
            return false;
        };
        self.freed = true;
        self.free.cpus += a.cpus;
        self.free.mem_mib += a.mem_mib;
        for g in a.gpus {
            // A GPU taken out of the pool while in use does not come back.
            if self.pool.contains(&g) {
                self.free.gpus.insert(g);
            }
        }
        if let Some(n) = self.free.running_per_program.get_mut(&a.program) {
            *n = n.saturating_sub(1);
        }
        true
    }

    /// Removes a task, waiting or running (freeing its resources). Returns whether it was known.
    pub fn cancel(&mut self, task: i64) -> bool {
        if let Some(key) = self.position.remove(&task) {
            self.queue.remove(&key);
            return true;
        }
        self.finish(task)
    }

    /// The operator changed the GPU pool: new GPUs become free; removed ones leave (a task that
    /// holds one keeps it until it ends).
    pub fn set_gpu_pool(&mut self, pool: BTreeSet<String>) {
        let held: BTreeSet<String> = self
            .running
            .values()
            .flat_map(|a| a.gpus.iter().cloned())
            .collect();
        self.free.gpus = pool.difference(&held).cloned().collect();
        self.pool = pool;
        self.freed = true;
    }

    /// What the running tasks hold.
    pub fn allocations(&self) -> impl Iterator<Item = &Allocation> {
        self.running.values()
    }

    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Free CPUs, memory (MiB) and GPUs.
    pub fn free(&self) -> (u64, u64, usize) {
        (self.free.cpus, self.free.mem_mib, self.free.gpus.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(task: i64, cpus: u64, mem: u64, gpus: u64) -> Request {
        Request {
            task,
            program: format!("p{task}"),
            priority: 0,
            cpus,
            mem_mib: mem,
            gpus,
        }
    }

    fn started(s: &mut Scheduler) -> Vec<i64> {
        s.schedule().into_iter().map(|a| a.task).collect()
    }

    fn pool(gpus: &[&str]) -> BTreeSet<String> {
        gpus.iter().map(|g| g.to_string()).collect()
    }

    #[test]
    fn a_task_that_can_never_fit_is_refused_at_once() {
        let mut s = Scheduler::new(8, 16_384, pool(&["0000:01:00.0"]), None);
        let e = s.submit(req(1, 16, 1024, 0)).expect_err("too many CPUs");
        assert_eq!(
            e.to_string(),
            "it asks for 16 CPUs, but this node offers at most 8"
        );
        assert!(
            s.submit(req(2, 1, 32_768, 0)).is_err(),
            "memory is counted in MiB"
        );
        assert!(s.submit(req(3, 1, 1024, 2)).is_err());
        assert!(
            s.submit(req(4, 8, 16_384, 1)).is_ok(),
            "exactly the whole node fits"
        );
        assert_eq!(s.submit(req(4, 1, 1, 0)), Err(Refusal::Duplicate(4)));
    }

    #[test]
    fn no_head_of_line_blocking() {
        // Two big runs that cannot fit together, and a small one behind them.
        let mut s = Scheduler::new(4, 4096, pool(&[]), None);
        for r in [req(1, 3, 1024, 0), req(2, 3, 1024, 0), req(3, 1, 1024, 0)] {
            s.submit(r).expect("fits");
        }
        assert_eq!(
            started(&mut s),
            [1, 3],
            "the small one passes the big one that must wait"
        );
        assert_eq!(started(&mut s), Vec::<i64>::new());
        assert!(s.finish(1));
        assert_eq!(started(&mut s), [2]);
        assert_eq!(s.free(), (0, 2048, 0));
    }

    #[test]
    fn priority_then_fifo() {
        let mut s = Scheduler::new(1, 1024, pool(&[]), None);
        s.submit(req(1, 1, 1, 0)).expect("ok");
        s.submit(Request {
            priority: 5,
            ..req(2, 1, 1, 0)
        })
        .expect("ok");
        s.submit(req(3, 1, 1, 0)).expect("ok");
        let mut order: Vec<i64> = Vec::new();
        for _ in 0..3 {
            let t = started(&mut s);
            order.extend(&t);
            s.finish(t[0]);
        }
        assert_eq!(order, [2, 1, 3]);
    }

    #[test]
    fn per_program_limit() {
        let mut s = Scheduler::new(16, 16_384, pool(&[]), Some(1));
        for (task, program) in [(1, "a"), (2, "a"), (3, "b")] {
            s.submit(Request {
                program: program.into(),
                ..req(task, 1, 1, 0)
            })
            .expect("ok");
        }
        assert_eq!(started(&mut s), [1, 3]);
        s.finish(1);
        assert_eq!(started(&mut s), [2]);
    }

    #[test]
    fn each_task_gets_only_its_own_gpus_from_the_pool() {
        let mut s = Scheduler::new(16, 16_384, pool(&["0000:01:00.0", "0000:41:00.0"]), None);
        for task in 1..=3 {
            s.submit(req(task, 1, 1, 1)).expect("ok");
        }
        let a = s.schedule();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].gpus, ["0000:01:00.0"]);
        assert_eq!(a[1].gpus, ["0000:41:00.0"]);
        s.finish(1);
        assert_eq!(s.schedule()[0].gpus, ["0000:01:00.0"]);
        // An operator releases 0000:41:00.0 while task 2 uses it: task 2 keeps it; it is not
        // handed out again.
        s.set_gpu_pool(pool(&["0000:01:00.0"]));
        s.finish(2);
        assert_eq!(
            s.free().2,
            0,
            "0000:01:00.0 is held by task 3; 0000:41:00.0 left the pool"
        );
        s.finish(3);
        assert_eq!(s.free().2, 1);
    }

    #[test]
    fn cancel_frees_resources_and_leaves_the_queue() {
        let mut s = Scheduler::new(2, 2048, pool(&["0000:01:00.0"]), None);
        s.submit(req(1, 2, 2048, 1)).expect("ok");
        s.submit(req(2, 2, 2048, 1)).expect("ok");
        assert_eq!(started(&mut s), [1]);
        assert!(s.cancel(2), "a waiting task");
        assert_eq!(s.waiting(), 0);
        assert!(s.cancel(1), "a running task");
        assert_eq!(s.free(), (2, 2048, 1));
        assert!(!s.cancel(1));
    }

    /// The passes that look only at new submissions start exactly what a pass over the whole
    /// queue would, through a long pseudo-random mix of submissions (priorities, GPUs,
    /// per-program limits), ends, cancels and pool changes.
    #[test]
    fn passes_over_new_submissions_decide_as_full_passes_do() {
        let gpus = pool(&["0000:01:00.0", "0000:41:00.0", "0000:81:00.0"]);
        let mut fast = Scheduler::new(16, 32_768, gpus.clone(), Some(2));
        let mut full = fast.clone();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut running: Vec<i64> = Vec::new();
        let mut task = 0;
        for step in 0..5_000 {
            match next(10) {
                0..=4 => {
                    task += 1;
                    let r = Request {
                        task,
                        program: format!("p{}", next(4)),
                        priority: next(3) as i32,
                        cpus: 1 + next(8),
                        mem_mib: 1024 * (1 + next(16)),
                        gpus: next(2),
                    };
                    assert_eq!(fast.submit(r.clone()), full.submit(r));
                }
                5..=7 if !running.is_empty() => {
                    let t = running.swap_remove(next(running.len() as u64) as usize);
                    assert_eq!(fast.finish(t), full.finish(t));
                }
                8 if task > 0 => {
                    let t = 1 + next(task as u64) as i64;
                    running.retain(|r| *r != t);
                    assert_eq!(fast.cancel(t), full.cancel(t));
                }
                9 if next(20) == 0 => {
                    let p: BTreeSet<String> =
                        gpus.iter().filter(|_| next(3) > 0).cloned().collect();
                    fast.set_gpu_pool(p.clone());
                    full.set_gpu_pool(p);
                }
                _ => {}
            }
            full.freed = true;
            let a = fast.schedule();
            assert_eq!(a, full.schedule(), "step {step}");
            running.extend(a.iter().map(|a| a.task));
            assert_eq!(fast.free(), full.free(), "step {step}");
            assert_eq!(fast.waiting(), full.waiting(), "step {step}");
        }
        assert!(
            running.len() > 1 && fast.waiting() > 10,
            "the mix exercised a busy queue"
        );
    }
}
