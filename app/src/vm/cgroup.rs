//! cgroup v2 bounds per VM, when the node may create cgroups: its own cgroup (from
//! `/proc/self/cgroup`) is on the unified hierarchy and delegates the `memory`, `pids` and `cpu`
//! controllers (a systemd service with `Delegate=yes`, a container with a private cgroup
//! namespace). The node then moves itself into a leaf (`node/`), enables the controllers for
//! its children, and puts each QEMU into a cgroup of its own (`vm-<name>/`) with `memory.max`
//! (guest memory plus room for QEMU), `pids.max` and `cpu.max` (its vCPUs' worth of time). Where
//! the node may not, resource limits alone apply (`confine.rs`), and `doctor` says why.

use std::path::{Path, PathBuf};

use super::confine::VmBounds;

/// The controllers the node needs.
const NEEDED: [&str; 3] = ["memory", "pids", "cpu"];
/// Room for QEMU's own memory beyond the guest's, in MiB.
const QEMU_MEMORY_MIB: u64 = 1024;
/// Threads of one QEMU (spawning processes is denied by its seccomp filter).
const VM_PIDS: u64 = 1024;

/// The node's delegated cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroups {
    root: PathBuf,
}

/// The node's own cgroup directory under `fs` (the cgroup v2 mount, `/sys/fs/cgroup`) when it
/// delegates the controllers the node needs, or why not. Reads only.
pub fn probe(fs: &Path, proc_root: &Path) -> Result<PathBuf, String> {
    let own = std::fs::read_to_string(proc_root.join("proc/self/cgroup"))
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let Some(rel) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        return Err("the node is not on a cgroup v2 (unified) hierarchy".into());
    };
    let dir = fs.join(rel.trim().trim_start_matches('/'));
    let controllers = std::fs::read_to_string(dir.join("cgroup.controllers")).map_err(|_| {
        format!(
            "{} is not a cgroup v2 directory (a cgroup v1 or hybrid host)",
            dir.display()
        )
    })?;
    let missing: Vec<&str> = NEEDED
        .into_iter()
        .filter(|c| !controllers.split_whitespace().any(|have| have == *c))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the node's cgroup {} does not delegate {} (run it with Delegate=yes, or in a \
             container with its own cgroup namespace)",
            dir.display(),
            missing.join(", ")
        ));
    }
    Ok(dir)
}

impl Cgroups {
    /// Takes over the node's cgroup found by [`probe`]: moves this process (`pid`) into a leaf
    /// and enables the controllers for the VMs' cgroups.
    pub fn delegate(fs: &Path, proc_root: &Path, pid: u32) -> Result<Cgroups, String> {
        let root = probe(fs, proc_root)?;
        let fail = |what: &str, e: std::io::Error| {
            format!("cannot {what} in the node's cgroup {}: {e}", root.display())
        };
        let leaf = root.join("node");
        std::fs::create_dir_all(&leaf).map_err(|e| fail("create node/", e))?;
        std::fs::write(leaf.join("cgroup.procs"), pid.to_string())
            .map_err(|e| fail("move the node into node/", e))?;
        let enable: Vec<String> = NEEDED.iter().map(|c| format!("+{c}")).collect();
        std::fs::write(root.join("cgroup.subtree_control"), enable.join(" "))
            .map_err(|e| fail("enable memory, pids and cpu", e))?;
        Ok(Cgroups { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, vm: &str) -> PathBuf {
        self.root.join(format!("vm-{vm}"))
    }

    /// Creates VM `vm`'s cgroup with its bounds and moves the QEMU process `pid` into it.
    pub fn enter(&self, vm: &str, pid: u32, bounds: &VmBounds) -> std::io::Result<()> {
        let dir = self.dir(vm);
        std::fs::create_dir_all(&dir)?;
        let memory = (bounds.mem_mib + QEMU_MEMORY_MIB).saturating_mul(1 << 20);
        std::fs::write(dir.join("memory.max"), memory.to_string())?;
        std::fs::write(dir.join("pids.max"), VM_PIDS.to_string())?;
        let period = 100_000u64;
        let quota = bounds.cpus.max(1).saturating_mul(period);
        std::fs::write(dir.join("cpu.max"), format!("{quota} {period}"))?;
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
    }

    /// Removes VM `vm`'s cgroup once its QEMU is gone.
    pub fn remove(&self, vm: &str) {
        let _ = std::fs::remove_dir(self.dir(vm));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A cgroup v2 tree as the kernel shows it to a delegated service (plain files here).
    fn tree(controllers: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(t.path().join("proc/self")).expect("proc");
        std::fs::write(
            t.path().join("proc/self/cgroup"),
            "0::/system.slice/gevulot.service\n",
        )
        .expect("cgroup");
        let own = t.path().join("fs/system.slice/gevulot.service");
        std::fs::create_dir_all(&own).expect("own");
        std::fs::write(own.join("cgroup.controllers"), controllers).expect("controllers");
        t
    }

    #[test]
    fn a_delegated_cgroup_bounds_each_vm() {
        let t = tree("cpuset cpu io memory pids\n");
        let c = Cgroups::delegate(&t.path().join("fs"), t.path(), 4242).expect("delegated");
        let own = t.path().join("fs/system.slice/gevulot.service");
        let read = |p: &str| std::fs::read_to_string(own.join(p)).expect(p);
        assert_eq!(read("node/cgroup.procs"), "4242");
        assert_eq!(read("cgroup.subtree_control"), "+memory +pids +cpu");
        let bounds = VmBounds {
            mem_mib: 512,
            cpus: 2,
            gpus: false,
            run_time: Duration::from_secs(60),
        };
        c.enter("task-7", 5151, &bounds).expect("enter");
        assert_eq!(
            read("vm-task-7/memory.max"),
            ((512u64 + 1024) << 20).to_string()
        );
        assert_eq!(read("vm-task-7/pids.max"), "1024");
        assert_eq!(read("vm-task-7/cpu.max"), "200000 100000");
        assert_eq!(read("vm-task-7/cgroup.procs"), "5151");
    }

    #[test]
    fn without_the_controllers_or_v2_it_says_why() {
        let t = tree("cpu io memory\n");
        let e = probe(&t.path().join("fs"), t.path()).expect_err("no pids");
        assert!(e.contains("does not delegate pids"), "{e}");
        std::fs::write(t.path().join("proc/self/cgroup"), "1:memory:/x\n").expect("v1");
        let e = probe(&t.path().join("fs"), t.path()).expect_err("v1");
        assert!(e.contains("not on a cgroup v2"), "{e}");
    }
}
