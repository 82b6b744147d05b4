//! Which waiting task runs next: resource-aware (CPUs, memory in MiB, GPUs from the node's pool),
//! fair (higher priority first, FIFO within a priority), with per-program concurrency limits, and
//! without head-of-line blocking: a task that cannot start now never stops a later one that can.
//! A task that can never start on this node (it asks for more than the node has) is refused at
//! once with the reason. Pure logic: the pipeline persists tasks and calls this.

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
    #[error("the task asks for {asked} {what}, but this node offers at most {offered}")]
    NeverFits {
        what: &'static str,
        asked: u64,
        offered: u64,
    },
    #[error("task {0} is already known to the scheduler")]
    Duplicate(i64),
}

/// The scheduler's state.
#[derive(Clone, Debug)]
pub struct Scheduler {
    total_cpus: u64,
    total_mem_mib: u64,
    free_cpus: u64,
    free_mem_mib: u64,
    /// GPUs in the pool that no task holds.
    free_gpus: BTreeSet<String>,
    /// Every GPU in the pool (free or held).
    pool: BTreeSet<String>,
    /// Waiting tasks in the order they may start: (-priority, arrival) → request.
    queue: BTreeMap<(i32, u64), Request>,
    position: HashMap<i64, (i32, u64)>,
    arrivals: u64,
    running: HashMap<i64, Allocation>,
    per_program_limit: Option<usize>,
    running_per_program: HashMap<String, usize>,
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
            free_cpus: cpus,
            free_mem_mib: mem_mib,
            free_gpus: pool.clone(),
            pool,
            queue: BTreeMap::new(),
            position: HashMap::new(),
            arrivals: 0,
            running: HashMap::new(),
            per_program_limit,
            running_per_program: HashMap::new(),
        }
    }

    /// Queues a task, or refuses it when it can never start here.
    pub fn submit(&mut self, request: Request) -> Result<(), Refusal> {
        if self.position.contains_key(&request.task) || self.running.contains_key(&request.task) {
            return Err(Refusal::Duplicate(request.task));
        }
        for (what, asked, offered) in [
            ("CPUs", request.cpus, self.total_cpus),
            ("MiB of memory", request.mem_mib, self.total_mem_mib),
            ("GPUs", request.gpus, self.pool.len() as u64),
        ] {
            if asked > offered {
                return Err(Refusal::NeverFits {
                    what,
                    asked,
                    offered,
                });
            }
        }
        self.arrivals += 1;
        let key = (-request.priority, self.arrivals);
        self.position.insert(request.task, key);
        self.queue.insert(key, request);
        Ok(())
    }

    fn fits(&self, r: &Request) -> bool {
        r.cpus <= self.free_cpus
            && r.mem_mib <= self.free_mem_mib
            && r.gpus as usize <= self.free_gpus.len()
            && self.per_program_limit.is_none_or(|limit| {
                self.running_per_program
                    .get(&r.program)
                    .copied()
                    .unwrap_or(0)
                    < limit
            })
    }

    /// Starts every waiting task that fits now, in queue order, skipping those that do not.
    pub fn schedule(&mut self) -> Vec<Allocation> {
        let mut started = Vec::new();
        let mut keys = Vec::new();
        for (key, request) in &self.queue {
            if self.free_cpus == 0 && self.free_mem_mib == 0 {
                break;
            }
            if self.fits(request) {
                keys.push(*key);
                // Reserve now so later candidates in this pass see what is left.
                self.free_cpus -= request.cpus;
                self.free_mem_mib -= request.mem_mib;
                let gpus: Vec<String> = self
                    .free_gpus
                    .iter()
                    .take(request.gpus as usize)
                    .cloned()
                    .collect();
                for g in &gpus {
                    self.free_gpus.remove(g);
                }
                *self
                    .running_per_program
                    .entry(request.program.clone())
                    .or_default() += 1;
                started.push(Allocation {
                    task: request.task,
                    program: request.program.clone(),
                    cpus: request.cpus,
                    mem_mib: request.mem_mib,
                    gpus,
                });
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
        self.free_cpus += a.cpus;
        self.free_mem_mib += a.mem_mib;
        for g in a.gpus {
            // A GPU taken out of the pool while in use does not come back.
            if self.pool.contains(&g) {
                self.free_gpus.insert(g);
            }
        }
        if let Some(n) = self.running_per_program.get_mut(&a.program) {
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
        self.free_gpus = pool.difference(&held).cloned().collect();
        self.pool = pool;
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
        (self.free_cpus, self.free_mem_mib, self.free_gpus.len())
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
            "the task asks for 16 CPUs, but this node offers at most 8"
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
}
